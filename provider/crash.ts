/**
 * Crash points: a supported way to end the provider process at a named step boundary of a move,
 * as a crash would (SIGKILL), so that recovery can be tested on real servers. Read only by the
 * provider process:
 *
 *   LXD_PLACEMENT_CRASH_AT=<step>[@<name>][:lost][:hold=<file>][,...]
 *
 *   <step>        a boundary: marked, pre-copied, stopped, copied, complete, source-stopped,
 *                 committed, source-deleted, renamed, started, finished, moved-<pool|project|
 *                 member|rename> (docs/protocol.md lists what each follows)
 *   @<name>       only for the instance of that LXD name (at either side of the move)
 *   :lost         instead of exiting, fail as if the response to the step's last request was
 *                 lost: the request took effect, the provider does not know it
 *   :hold=<file>  instead of exiting, create <file> and wait (up to 10 minutes) until it is
 *                 deleted, then go on (with :lost, then fail as above): a test can act on the
 *                 servers at that exact moment (kill a daemon, run a second provider)
 *
 * Unset (the default), a boundary costs nothing.
 */
import * as fs from "node:fs";
import { TimeoutError } from "./lxd/errors";
import type { Place } from "./marks";

interface CrashSpec {
  step: string;
  name?: string;
  lost: boolean;
  hold?: string;
}

export function parseCrashSpec(v: string | undefined): CrashSpec[] {
  if (!v) return [];
  return v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const [head, ...opts] = entry.split(":");
      const [step, name] = head.split("@");
      const hold = opts.find((o) => o.startsWith("hold="))?.slice(5);
      return { step, name: name || undefined, lost: opts.includes("lost"), hold };
    });
}

const HOLD_MAX_MS = 600_000;

export async function crashPoint(step: string, p?: Place, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const spec = parseCrashSpec(env.LXD_PLACEMENT_CRASH_AT).find((s) => s.step === step && (!s.name || !p || p.name === s.name || p.name.startsWith(`${s.name}-lxdp-`)));
  if (!spec) return;
  const where = p ? ` (${p.remote}:${p.project}/${p.name})` : "";
  if (spec.hold) {
    fs.writeFileSync(spec.hold, `${step}${where}\n`);
    const deadline = Date.now() + HOLD_MAX_MS;
    while (fs.existsSync(spec.hold) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  }
  if (spec.hold && !spec.lost) return;
  if (spec.lost) {
    process.stdout.write(`lxd-placement: LXD_PLACEMENT_CRASH_AT: the response after step "${step}"${where} is treated as lost\n`);
    throw new TimeoutError(`no answer after step "${step}"${where} (LXD_PLACEMENT_CRASH_AT=${step}:lost)`, p ? { remote: p.remote, project: p.project, instance: p.name } : {});
  }
  process.stdout.write(`lxd-placement: LXD_PLACEMENT_CRASH_AT: ending the provider process at step "${step}"${where}\n`);
  process.kill(process.pid, "SIGKILL");
  // SIGKILL to oneself is delivered at once; never go on past a crash point.
  await new Promise(() => undefined);
}
