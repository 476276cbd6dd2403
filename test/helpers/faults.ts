/**
 * Fault injection for the fault matrix (test/faults): kill, freeze and restore sandbox daemons,
 * kill a running `pulumi up`, set project limits, and wait, always with a bound, until the
 * estate answers again. Every external call is async with its own timeout (see sandbox.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DAEMONS, MEMBERS, REMOTES, type Daemon } from "./daemons";
import { engineProcesses } from "./engine";
import { findEverywhere, lxc, ROOT, run, SANDBOX, type Seen } from "./sandbox";

export { DAEMONS, type Daemon } from "./daemons";

export { COMPLETE_KEY, INCOMING_KEY, LEASE_KEY, MARKER_KEY, MOVE_KEY, OUTGOING_KEY } from "../../provider/marks";
import { INCOMING_KEY, MARKER_KEY } from "../../provider/marks";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export function progress(line: string): void {
  // Straight to stderr, unbuffered by jest: CI logs show each cell as it ends.
  process.stderr.write(`[faults ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

/** Poll `check` every `everyMs` until it returns a value (not undefined) or `timeoutMs` passes. */
export async function waitFor<T>(what: string, timeoutMs: number, everyMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s${last ? ` (last error: ${(last as Error).message})` : ""}`);
    await sleep(everyMs);
  }
}

// ------------------------------------------------------------------------------ daemons

function pidOf(d: Daemon): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(SANDBOX, d, "lxd.pid"), "utf8").trim());
    if (!(pid > 0)) return undefined;
    // Only ever signal the sandbox's own lxd for this directory.
    if (fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "lxd") return undefined;
    if (
      !fs
        .readFileSync(`/proc/${pid}/environ`, "utf8")
        .split("\0")
        .includes(`LXD_DIR=${path.join(SANDBOX, d)}`)
    )
      return undefined;
    const state = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
    return state === "Z" || state === "X" ? undefined : pid;
  } catch {
    return undefined;
  }
}

export function daemonAlive(d: Daemon): boolean {
  return pidOf(d) !== undefined;
}

function signal(d: Daemon, sig: NodeJS.Signals): boolean {
  const pid = pidOf(d);
  if (pid === undefined) return false;
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILL the daemon (its containers keep running: they are not its children in the kill). */
export function killDaemon(d: Daemon): void {
  if (!signal(d, "SIGKILL")) throw new Error(`cannot SIGKILL daemon ${d}: no live lxd pid in .sandbox/${d}/lxd.pid`);
}

export function freezeDaemon(d: Daemon): void {
  if (!signal(d, "SIGSTOP")) throw new Error(`cannot SIGSTOP daemon ${d}: no live lxd pid in .sandbox/${d}/lxd.pid`);
}

export function thawAll(): void {
  for (const d of DAEMONS) signal(d, "SIGCONT");
}

/**
 * `scripts/sandbox.sh up`: restarts dead daemons (and is a quick no-op when all run). The
 * daemons it starts outlive this run, so they must not inherit this process's descriptors: run
 * under `flock .sandbox-lock npx jest ...`, a restarted daemon would otherwise keep the lock open
 * (and held) for good, and lock every other user of the sandbox out.
 */
export async function sandboxUp(timeoutMs = 150_000): Promise<void> {
  const closeFds = 'for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then exec {n}>&-; fi; done; exec bash "$0" up';
  const r = await run("bash", ["-c", closeFds, path.join(ROOT, "scripts/sandbox.sh")], { timeoutMs });
  if (r.code !== 0) throw new Error(`sandbox.sh up failed (${r.code}): ${r.stderr.trim().split("\n").slice(-8).join(" / ")}`);
}

/** Every remote lists its instances and every cluster member is ONLINE; bounded. */
export async function waitEstate(timeoutMs = 90_000): Promise<void> {
  await waitFor(`the sandbox answering again (lxc list on ${REMOTES.join(", ")}; members ONLINE)`, timeoutMs, 500, async () => {
    await Promise.all(REMOTES.map((r) => lxc(["list", `${r}:`, "--all-projects", "-f", "csv", "-c", "n"], { timeoutMs: 10_000 })));
    const out = await lxc(["cluster", "list", "cluster:", "-f", "csv"], { timeoutMs: 10_000 });
    const bad = MEMBERS.filter((m) => !new RegExp(`^${m},.*,ONLINE,`, "m").test(out));
    return bad.length ? undefined : true;
  });
}

/**
 * After any fault: thaw every daemon, restart dead ones, wait until the estate answers. Never
 * leaves a frozen or dead daemon behind; throws only if the estate cannot be brought back.
 */
export async function restoreEstate(): Promise<{ restarted: Daemon[] }> {
  thawAll();
  const dead = DAEMONS.filter((d) => !daemonAlive(d));
  if (dead.length) await sandboxUp();
  await waitEstate();
  return { restarted: dead };
}

/**
 * LXD 5.0.2 can lose an instance operation it was running when its daemon was frozen: a container
 * that shut down meanwhile never reports its stop (the stop hook could not reach the frozen
 * daemon), so "Stopping instance" stays Running for good and every later start, stop, delete or
 * file access of that instance waits on it. Nothing but a restart of the daemon ends it.
 * Returns such operations of `d`, created before `before`, that are still running after
 * `graceMs`; an empty list when the daemon finished its work.
 */
export async function stuckInstanceOps(d: Daemon, before: number, graceMs = 30_000): Promise<string[]> {
  const remote = d.startsWith("m") ? "cluster" : d;
  // A daemon just thawed may answer a query with nothing at all (seen once in CI): such an
  // answer says nothing, and is asked again within the grace period.
  const list = async () => {
    const out = await lxc(["query", `${remote}:/1.0/operations?recursion=1`], { timeoutMs: 10_000 }).catch((e: Error) => `unreadable: ${e.message}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(out);
    } catch {
      return [`(the operations could not be read: ${out.trim().slice(0, 120) || "an empty answer"})`];
    }
    const ops = (parsed as { running?: { class: string; description: string; created_at: string; location: string; id: string }[] }).running ?? [];
    return ops
      .filter((o) => o.class === "task" && /instance/i.test(o.description) && Date.parse(o.created_at) < before)
      .filter((o) => remote !== "cluster" || o.location === d)
      .map((o) => `${o.description} (${o.id.slice(0, 8)}, since ${o.created_at.slice(11, 19)})`);
  };
  const t0 = Date.now();
  for (;;) {
    const stuck = await list();
    if (!stuck.length || Date.now() - t0 >= graceMs) return stuck;
    await sleep(1_000);
  }
}

// ------------------------------------------------------------------------------ engine

/** SIGKILL a running engine call of the stack and its plugins (all at once, collected first). */
export function killEngine(stackName: string): { pid: number; cmd: string }[] {
  const procs = engineProcesses(stackName);
  for (const p of procs) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  return procs;
}

/**
 * A killed engine leaves its lock in the file backend (state/.pulumi/locks/...), and every
 * later `pulumi up` of the stack refuses to run until it is removed. That lock is Pulumi's,
 * not the provider's; a user would run `pulumi cancel` or delete the lock file. The state is
 * this test's alone (TestStack's own temp dir), so the harness removes it.
 */
export function dropStackLock(stackDir: string): number {
  const dir = path.join(stackDir, "state", ".pulumi", "locks");
  let n = 0;
  const walk = (d: string) => {
    for (const e of fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }) : []) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else n++;
    }
  };
  walk(dir);
  fs.rmSync(dir, { recursive: true, force: true });
  return n;
}

// ------------------------------------------------------------------------------ estate views

/** Every copy of the provider-managed instance `id`, on every remote and project. */
export async function copiesOf(id: string): Promise<Seen[]> {
  const lists = await Promise.all(REMOTES.map((r) => findEverywhere((s) => s.config?.[MARKER_KEY] === id, [r])));
  return lists.flat();
}

export const where = (s: Seen) => `${s.remote}:${s.project}/${s.name}${s.location && s.location !== "none" ? `@${s.location}` : ""}`;

/** A copy on `remote` marked incoming (the move's copy at the target exists: the move is in flight). */
export async function incomingOn(remote: string, id: string): Promise<Seen | undefined> {
  const text = await lxc(["list", `${remote}:`, "--all-projects", "-f", "json"], { timeoutMs: 5_000 });
  const found = (JSON.parse(text) as Seen[]).find((i) => i.config?.[MARKER_KEY] === id && i.config?.[INCOMING_KEY]);
  return found ? { ...found, remote } : undefined;
}

// ------------------------------------------------------------------------------ project limits

const limitsSet = new Set<string>();

/**
 * Make `remote:project` refuse one more instance: `limits.instances` = the number it holds now
 * (0 when empty). A real LXD project limit; undone by clearLimit/clearAllLimits.
 */
export async function fillProject(remote: string, project: string): Promise<number> {
  const text = await lxc(["list", `${remote}:`, "--project", project, "-f", "csv", "-c", "n"], { timeoutMs: 15_000 });
  const n = text.split("\n").filter((l) => l.trim()).length;
  limitsSet.add(`${remote}:${project}`);
  await lxc(["project", "set", `${remote}:${project}`, `limits.instances=${n}`], { timeoutMs: 15_000 });
  return n;
}

export async function clearLimit(remote: string, project: string): Promise<void> {
  await lxc(["project", "unset", `${remote}:${project}`, "limits.instances"], { timeoutMs: 15_000 });
  limitsSet.delete(`${remote}:${project}`);
}

export async function clearAllLimits(): Promise<void> {
  for (const rp of [...limitsSet]) {
    const [remote, project] = rp.split(":");
    await clearLimit(remote, project).catch((e) => progress(`could not unset limits.instances on ${rp}: ${(e as Error).message}`));
  }
}
