/**
 * Instances managed through the provider in this process, as the engine would hold them (inputs
 * and outputs), and the sandbox-side helpers the move and downtime parts share.
 */
import * as path from "node:path";
import * as provider from "../provider/resource";
import { REMOTES, type Bench, type Counts } from "./context";
import { deadline, lxc, run } from "./shell";

export interface Managed {
  id: string;
  name: string;
  inputs: Record<string, unknown>;
  outs: Record<string, unknown>;
}

export async function createManaged(name: string, remote: string, opts: { target?: string; running?: boolean; migration?: Record<string, unknown> } = {}): Promise<Managed> {
  const inputs: Record<string, unknown> = { name, image: "busybox", remote, running: opts.running ?? false };
  if (opts.target) inputs.target = opts.target;
  if (opts.migration) inputs.migration = opts.migration;
  const r = await deadline(provider.create(inputs), 120_000, `create ${name}`);
  return { id: r.id, name, inputs, outs: r.outs as unknown as Record<string, unknown> };
}

/** Delete through the provider; a failure is reported, not thrown (cleanup sweeps what is left). */
export async function removeManaged(b: Bench, ms: (Managed | undefined)[]): Promise<void> {
  for (const m of ms) if (m) await provider.remove(m.id, m.outs).catch((e) => b.progress(`remove ${m.name}: ${(e as Error).message}`));
}

/** Write `mb` MiB of random data inside the instance (started for it); leave it running or stopped. */
export async function fill(remote: string, name: string, mb: number, keepRunning: boolean): Promise<void> {
  await lxc(["start", `${remote}:${name}`], 60_000).catch((e) => {
    if (!/already running/i.test(String(e))) throw e;
  });
  await lxc(["exec", `${remote}:${name}`, "--", "sh", "-c", `dd if=/dev/urandom of=/bench-data bs=1M count=${mb} 2>/dev/null && sync`], 120_000 + mb * 500);
  if (!keepRunning) await lxc(["stop", `${remote}:${name}`], 60_000);
}

export interface ProviderLeg {
  seconds: number;
  /** CPU seconds this process spent during the call (the relay's proxying is in it). */
  cpuSeconds: number;
  lastMove?: Record<string, unknown>;
  requests: Counts;
}

/** One move by the provider's update(), timed around the call exactly as the engine makes it. */
export async function providerMove(b: Bench, m: Managed, change: Record<string, unknown>): Promise<ProviderLeg> {
  const news = { ...m.inputs, ...change };
  b.tally.reset();
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const r = await deadline(provider.update(m.id, m.outs, news), b.settings.moveTimeoutMs, `provider update of ${m.name}`);
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const requests = b.tally.snapshot();
  m.inputs = news;
  m.outs = r.outs as unknown as Record<string, unknown>;
  return { seconds, cpuSeconds, lastMove: r.outs.lastMove as unknown as Record<string, unknown>, requests };
}

/** After a failed leg: find the instance (P6) and bring the engine's view of it up to date. */
export async function resync(m: Managed): Promise<void> {
  const r = await deadline(provider.read(m.id, m.outs), 120_000, `read ${m.name}`);
  if (!r.id) throw new Error(`${m.name} is gone after a failed leg`);
  m.outs = r.props;
  m.inputs = { ...m.inputs, remote: r.props.remote, ...(r.props.location ? { target: r.props.location } : {}) };
}

export async function lxcTimed(args: string[], timeoutMs: number): Promise<number> {
  return (await lxc(args, timeoutMs)).seconds;
}

/** Every instance of the sandbox's remotes, all projects (what lxc list says). */
export async function listEverywhere(remotes = REMOTES): Promise<{ remote: string; name: string; project: string; location: string; status: string }[]> {
  const out: { remote: string; name: string; project: string; location: string; status: string }[] = [];
  for (const r of remotes) {
    const list = JSON.parse((await lxc(["list", `${r}:`, "--format", "json", "--all-projects"], 60_000)).stdout) as { name: string; project: string; location: string; status: string }[];
    for (const i of list) out.push({ remote: r, ...i });
  }
  return out;
}

export async function whereIs(name: string): Promise<{ remote: string; location: string; status: string } | undefined> {
  return (await listEverywhere()).find((i) => i.name === name);
}

/** Bytes of an instance's files on a `dir` pool (what a cold move transfers). */
export async function instanceBytes(remote: string, name: string): Promise<number | undefined> {
  try {
    const pool = JSON.parse((await lxc(["query", `${remote}:/1.0/storage-pools/default`], 30_000)).stdout) as { config?: { source?: string } };
    const dir = path.join(pool.config?.source ?? "", "containers", name);
    const r = await run("du", ["-sb", dir], 60_000);
    const n = Number(r.stdout.split(/\s+/)[0]);
    return r.code === 0 && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
