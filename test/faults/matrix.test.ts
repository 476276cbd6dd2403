/**
 * The fault matrix (P5, R11, R15): for each kind of move (cross-server pull, push, relay;
 * cluster member; project) a fault is injected while the move is in flight:
 *   a. the target daemon SIGKILLed mid-transfer, then restarted
 *   b. the source daemon SIGKILLed mid-transfer, then restarted
 *   c. a daemon frozen (SIGSTOP) mid-move: the provider gives up within its deadline, then SIGCONT
 *   d. the `pulumi up` itself (engine and dynamic provider) SIGKILLed mid-move
 *   e. the target refusing the instance (a real project limit)
 * and after each: the instance exists exactly once (a partial copy marked `incoming` may be left
 * until the next run), its data is intact, it runs as before; one more `up` converges it at the
 * declared placement with no leftovers. Plus f: a live (CRIU) move refused by LXD (R11, R15).
 *
 * Speed (CI ran out of time twice): one stack and one instance per kind, reused by its cells;
 * each cell moves it A→B with a fault, converges at B; the next cell moves it back. Every
 * external call has its own timeout, each cell a hard test timeout and internal deadlines, and
 * each cell prints one progress line to stderr when it ends. The matrix is printed at the end.
 */
import * as pulumi from "@pulumi/pulumi";
import { TestStack } from "../helpers/engine";
import { deleteAll, exec, sha, shaStopped, type Seen } from "../helpers/sandbox";
import {
  INCOMING_KEY,
  OUTGOING_KEY,
  clearAllLimits,
  clearLimit,
  copiesOf,
  dropStackLock,
  fillProject,
  freezeDaemon,
  incomingOn,
  killDaemon,
  killEngine,
  progress,
  restoreEstate,
  sandboxUp,
  sleep,
  stuckInstanceOps,
  waitEstate,
  where,
  type Daemon,
} from "../helpers/faults";
// The built SDK, as a user's program loads it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Instance } = require("../../bin/sdk") as typeof import("../../sdk");

// A frozen daemon must end in an error within seconds, not the default 30 s per request. The
// Automation API starts the engine with this process's environment plus the stack's envVars
// (execa extends process.env), and the engine passes its environment on to the dynamic
// provider, so setting it here reaches the provider of every stack of this file.
const REQUEST_TIMEOUT_MS = 8_000;
process.env.LXD_PLACEMENT_REQUEST_TIMEOUT_MS = String(REQUEST_TIMEOUT_MS);
/** migration.timeoutSeconds of every move here: a 300 MB move takes ~10-15 s on the sandbox. */
const MOVE_TIMEOUT_S = 60;
/** Hard per-test limit of a cell, and the internal deadline its engine calls fit in. */
const CELL_TEST_MS = 180_000;
const CELL_DEADLINE_MS = 165_000;
/** Upper bound of the wait for the move to be in flight (the copy seen at the target). */
const INFLIGHT_WAIT_MS = 60_000;

const NAME_PREFIX = "fxm-";
const BIG_MIB = 300;
const DATA_FILE = "/root/data";

type FaultKey = "a" | "b" | "c" | "d" | "e";
const FAULTS: { key: FaultKey; title: string }[] = [
  { key: "a", title: "target daemon SIGKILLed mid-transfer" },
  { key: "b", title: "source daemon SIGKILLed mid-transfer" },
  { key: "c", title: "daemon frozen (SIGSTOP) mid-move" },
  { key: "d", title: "pulumi up (engine + dynamic provider) SIGKILLed mid-move" },
  { key: "e", title: "target refuses the instance (project limit)" },
];

interface Place {
  remote: string;
  project: string;
  /** Cluster member. */
  target?: string;
}

interface Kind {
  key: string;
  title: string;
  name: string;
  a: Place;
  b: Place;
  mode?: "pull" | "push" | "relay";
  /** Faults this kind does not run on its own, and why. */
  sameAs?: Partial<Record<FaultKey, string>>;
}

const KINDS: Kind[] = [
  { key: "pull", title: "cross-server pull", name: `${NAME_PREFIX}pull`, a: { remote: "s1", project: "default" }, b: { remote: "s2", project: "default" }, mode: "pull" },
  { key: "push", title: "cross-server push", name: `${NAME_PREFIX}push`, a: { remote: "s1", project: "default" }, b: { remote: "s2", project: "default" }, mode: "push" },
  { key: "relay", title: "cross-server relay", name: `${NAME_PREFIX}relay`, a: { remote: "s1", project: "default" }, b: { remote: "s2", project: "default" }, mode: "relay" },
  // Cells alternate m1→m2, m2→m1, ...: a kills the target m2, b the source m2, c freezes m2. m1
  // (the `cluster` remote's address) is never the one killed.
  { key: "member", title: "cluster member", name: `${NAME_PREFIX}member`, a: { remote: "cluster", project: "default", target: "m1" }, b: { remote: "cluster", project: "default", target: "m2" } },
  // Starts in staging so that e (the 4th move, b being skipped) targets staging, not default.
  {
    key: "project",
    title: "project",
    name: `${NAME_PREFIX}project`,
    a: { remote: "s1", project: "staging" },
    b: { remote: "s1", project: "default" },
    sameAs: { b: "same as a (source = target = s1)" },
  },
];

/** The daemon that serves a placement. */
function daemonOf(p: Place): Daemon {
  if (p.remote === "cluster") return (p.target ?? "m1") as Daemon;
  return p.remote as Daemon;
}
const fmt = (p: Place) => `${p.remote}:${p.project}${p.target ? `@${p.target}` : ""}`;
const secs = (ms: number) => Math.round(ms / 100) / 10;
const msgOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** The provider's own error line from an engine failure (the whole engine output is in the message). */
function providerError(e: unknown): string {
  const text = msgOf(e);
  const lines = text.split("\n").map((l) => l.trim());
  const hit =
    lines.find((l) => /^error: .*(move failed|Nothing was lost|cannot tell where|no answer within|did not finish|Reached|limit|CRIU|criu|migrat)/i.test(l)) ??
    lines.find((l) => /^error: /.test(l) && !/update failed|preview failed/.test(l)) ??
    lines[0];
  return hit.replace(/^error: /, "");
}

// ------------------------------------------------------------------------------ the matrix record

interface CellResult {
  outcome: string;
  seconds: number;
  detail?: string;
}
const matrix = new Map<string, CellResult>();
const key = (kind: string, fault: string) => `${kind}/${fault}`;
const suiteStart = Date.now();

function record(kind: string, fault: string, r: CellResult): void {
  matrix.set(key(kind, fault), r);
  progress(`${kind} × ${fault}: ${r.outcome} (${r.seconds} s)${r.detail ? ` — ${r.detail}` : ""}`);
}

function printMatrix(): void {
  const cols = [...FAULTS.map((f) => f.key), "f"];
  const rows = [...KINDS.map((k) => k.key), "live"];
  const w = 34;
  const lines = [`fault matrix (${secs(Date.now() - suiteStart)} s in all)`, `${"".padEnd(8)}| ${cols.map((c) => c.padEnd(w)).join("| ")}`];
  for (const r of rows) {
    lines.push(
      `${r.padEnd(8)}| ${cols
        .map((c) => {
          const m = matrix.get(key(r, c));
          return (m ? `${m.outcome} (${m.seconds}s)` : "—").slice(0, w).padEnd(w);
        })
        .join("| ")}`,
    );
  }
  lines.push("faults: " + FAULTS.map((f) => `${f.key} = ${f.title}`).join("; ") + "; f = live (CRIU) move refused by LXD (R11, R15)");
  for (const [k, m] of matrix) if (m.detail) lines.push(`  ${k}: ${m.detail}`);
  process.stderr.write(lines.join("\n") + "\n");
}

// ------------------------------------------------------------------------------ per-kind state

type Spec = Record<string, unknown>;

interface KindState {
  kind: Kind;
  spec: { current: Spec };
  stack?: TestStack;
  id?: string;
  data?: string;
  /** Where the instance is (declared and, after a converged cell, real). */
  at: Place;
  /** Set when a cell left the instance in an unknown state: the next cell converges first. */
  broken?: string;
  cells: number;
}

function specAt(k: Kind, p: Place): Spec {
  return {
    name: k.name,
    image: "busybox",
    remote: p.remote,
    project: p.project,
    ...(p.target ? { target: p.target } : {}),
    // No extra pre-copy rounds: faults land in the first (full) copy, and each later round only
    // adds time to every move of the suite.
    migration: { mode: k.mode ?? "pull", timeoutSeconds: MOVE_TIMEOUT_S, preCopyRounds: 0 },
  };
}

function programFor(spec: { current: Spec }) {
  return async () => {
    const i = new Instance("vm", spec.current as never);
    return { instanceId: i.instanceId, remote: i.remote, location: i.location, status: i.status };
  };
}

const other = (k: Kind, p: Place) => (fmt(p) === fmt(k.a) ? k.b : k.a);

/** Partial copies (incoming), the instance, and any other copy. */
function classify(copies: Seen[]): { partial: Seen[]; settled: Seen[] } {
  return { partial: copies.filter((c) => c.config[INCOMING_KEY]), settled: copies.filter((c) => !c.config[INCOMING_KEY]) };
}

async function dataSha(s: Seen): Promise<string> {
  return s.status === "Running" ? sha(s.remote, s.project, s.name, DATA_FILE) : shaStopped(s.remote, s.project, s.name, DATA_FILE);
}

function atPlace(s: Seen, p: Place): boolean {
  return s.remote === p.remote && s.project === p.project && (!p.target || s.location === p.target);
}

/**
 * Right after the fault (estate restored): the instance exists exactly once (besides partial
 * copies marked incoming), runs, and its data is intact. Returns a note on what was left.
 */
async function checkAfterFault(st: KindState, label: string, fault: FaultKey, ctx: { failedMsg: string; to: Place }): Promise<{ the: Seen; note: string }> {
  const notes: string[] = [];
  // LXD freezes a running container for the whole of a non-live transfer and thaws it when the
  // transfer ends; after a fault that end may come a moment later (c: the transfer resumes once
  // the daemon is thawed). Wait for it, bounded.
  let copies = await copiesOf(st.id!);
  const t0 = Date.now();
  while (copies.some((c) => c.status === "Frozen" || c.status === "Freezing") && Date.now() - t0 < (fault === "b" ? 5_000 : 30_000)) {
    await sleep(500);
    copies = await copiesOf(st.id!);
  }
  const { partial, settled } = classify(copies);
  const seen = copies.map((c) => `${where(c)} ${c.status}${c.config[INCOMING_KEY] ? " [incoming]" : ""}${c.config[OUTGOING_KEY] ? " [outgoing]" : ""}`).join(", ");
  if (settled.length !== 1) throw new Error(`${label}: after the fault the instance must exist exactly once (besides partial copies marked incoming); seen: ${seen || "nothing"}`);
  const the = settled[0];
  notes.push(`at ${where(the)}${the.status !== "Running" ? ` ${the.status}` : ""}`);
  if (fault === "b" && (the.status === "Frozen" || the.status === "Freezing")) {
    // The source daemon died while LXD held the freeze of a consistent copy (cluster members:
    // LXD freezes the source for the whole copy); LXD 5.0.2 does not thaw it when it restarts.
    // Nothing the provider can do while it is down: allowed here, recorded; the converging up
    // must leave it Running (settle thaws it).
    notes.push(`left ${the.status} by LXD (its daemon died mid-copy)`);
  } else if (the.status === "Stopped" && stoppedInCutover(fault, the, ctx)) {
    // The fault struck in the cutover, the short window in which a move keeps the instance
    // stopped by design: a frozen daemon cannot start it again (the provider's error says so),
    // a killed provider cannot start anything. Recorded; the converging up must start it (P4).
    notes.push("left stopped: the fault struck in the cutover");
  } else {
    expect(`${where(the)} ${the.status}`).toBe(`${where(the)} Running`);
  }
  expect(await dataSha(the)).toBe(st.data);
  if (the.config[OUTGOING_KEY]) notes.push("outgoing mark left");
  if (partial.length) notes.push(`partial copy left at ${partial.map(where).join(", ")}`);
  return { the, note: notes.join(", ") };
}

/**
 * Whether a stopped instance after the fault is the cutover's own stop left in place: c, the
 * provider said it could not start it again; d, the killed run had marked it (outgoing, the
 * move's source) or had already committed the copy at the target.
 */
function stoppedInCutover(fault: FaultKey, the: Seen, ctx: { failedMsg: string; to: Place }): boolean {
  if (fault === "c") return /could not be started again/.test(ctx.failedMsg);
  if (fault === "d") return Boolean(the.config[OUTGOING_KEY]) || atPlace(the, ctx.to);
  return false;
}

/** After the converging up: one copy, at the declared placement, running, data intact, no marks. */
async function checkConverged(st: KindState, p: Place): Promise<void> {
  const copies = await copiesOf(st.id!);
  const show = (c: Seen) => `${where(c)} ${c.status}${c.config[INCOMING_KEY] ? " [incoming]" : ""}${c.config[OUTGOING_KEY] ? " [outgoing]" : ""}`;
  expect(copies.map(show)).toEqual([`${p.remote}:${p.project}/${st.kind.name}${p.target ? `@${p.target}` : ""} Running`]);
  expect(await dataSha(copies[0])).toBe(st.data);
}

type UpResult = { ok: true; ms: number } | { ok: false; ms: number; error: unknown };

function startUp(st: KindState, timeoutMs: number): { done: Promise<UpResult>; settled: () => boolean } {
  const t0 = Date.now();
  let settled = false;
  const done = st.stack!.up({ timeoutMs }).then(
    (): UpResult => ({ ok: true, ms: Date.now() - t0 }),
    (error): UpResult => ({ ok: false, ms: Date.now() - t0, error }),
  );
  void done.then(() => (settled = true));
  return { done, settled: () => settled };
}

/** Poll (every 150 ms, bounded) until the move's copy exists at the target, or the up ended. */
async function waitInFlight(st: KindState, to: Place, up: { settled: () => boolean }): Promise<boolean> {
  const deadline = Date.now() + INFLIGHT_WAIT_MS;
  while (Date.now() < deadline && !up.settled()) {
    const hit = await incomingOn(to.remote, st.id!).catch(() => undefined);
    if (hit) return true;
    await sleep(150);
  }
  return false;
}

const left = (deadline: number, min = 20_000) => Math.max(min, deadline - Date.now());

/** Converge a kind that a failed cell left in an unknown state, before the next cell. */
async function recover(st: KindState): Promise<void> {
  if (!st.broken) return;
  progress(`${st.kind.key}: converging first (${st.broken})`);
  await restoreEstate();
  st.spec.current = specAt(st.kind, st.at);
  // refresh settles what the failed cell left (read: locate + settle), then up converges.
  await st.stack!.refresh({ timeoutMs: 60_000 });
  await st.stack!.up({ timeoutMs: 120_000 });
  await checkConverged(st, st.at);
  st.broken = undefined;
}

async function runCell(st: KindState, fault: FaultKey): Promise<void> {
  const k = st.kind;
  const t0 = Date.now();
  const deadline = t0 + CELL_DEADLINE_MS;
  const label = `${k.key} × ${fault}`;
  let outcome = "FAILED";
  let detail = "";
  const from = st.at;
  const to = other(k, from);
  try {
    expect(st.stack && st.id).toBeTruthy();
    await recover(st);
    st.broken = `cell ${fault} did not finish`;
    st.spec.current = specAt(k, to);
    const victim: Daemon | undefined = fault === "a" ? daemonOf(to) : fault === "b" ? daemonOf(from) : fault === "c" ? daemonOf(to) : undefined;
    let res: UpResult;
    let injected = "";
    let restart: Promise<void> | undefined;
    // Where the cell's time goes (printed in the detail): CI logs show what to speed up.
    const phases: string[] = [];
    let mark = Date.now();
    const phase = (name: string) => {
      phases.push(`${name} ${secs(Date.now() - mark)}`);
      mark = Date.now();
    };
    try {
      if (fault === "e") {
        const n = await fillProject(to.remote, to.project);
        injected = `limits.instances=${n} on ${to.remote}:${to.project}`;
        try {
          res = await startUp(st, left(deadline) - 60_000).done;
        } finally {
          await clearLimit(to.remote, to.project);
        }
        phase("refused-up");
      } else {
        const up = startUp(st, Math.min(130_000, left(deadline) - 30_000));
        if (!(await waitInFlight(st, to, up))) {
          const r = await up.done;
          throw new Error(
            `${label}: the move was never seen in flight (no copy marked incoming at ${to.remote}); up ${r.ok ? "succeeded" : `failed: ${providerError((r as { error: unknown }).error)}`} after ${secs(r.ms)} s`,
          );
        }
        phase("in-flight");
        // In flight: the copy exists at the target; let the transfer run a moment, then strike.
        await sleep(800);
        if (fault === "a" || fault === "b") {
          killDaemon(victim!);
          injected = `SIGKILL ${victim}`;
          // Restarted at once, as a supervisor would; the move is already broken.
          restart = sandboxUp();
          restart.catch(() => undefined);
        } else if (fault === "c") {
          freezeDaemon(victim!);
          injected = `SIGSTOP ${victim}`;
        } else {
          const killed = killEngine(st.stack!.name);
          const dyn = killed.filter((p) => p.cmd.includes("dynamic-provider")).length;
          injected = `SIGKILL engine tree (${killed.length} processes, ${dyn} dynamic-provider)`;
          expect(killed.length).toBeGreaterThan(0);
        }
        res = await up.done;
        phase("fault→up-ended");
        if (fault === "d") {
          const locks = dropStackLock(st.stack!.dir);
          injected += locks ? `, dropped ${locks} stale stack lock(s)` : "";
        }
      }
    } finally {
      // Whatever happened: no daemon stays frozen or dead, and the estate answers before asserting.
      if (restart) await restart.catch(() => undefined);
      const thawedAt = Date.now();
      await restoreEstate();
      if (fault === "c" && victim) {
        // An operation LXD lost while frozen never ends (see stuckInstanceOps): only a restart of
        // the daemon ends it, as an operator would restart a wedged daemon. Recorded in the matrix.
        const stuck = await stuckInstanceOps(victim, thawedAt);
        if (stuck.length) {
          injected += `; LXD lost ${stuck.join(", ")} while frozen: ${victim} restarted`;
          killDaemon(victim);
          await restoreEstate();
        }
      }
      phase("restore");
    }

    const failedMsg = res.ok ? "" : providerError(res.error);
    if (fault === "c") {
      // The provider gives up on a frozen daemon within its deadlines, with a clear error.
      expect(res.ok ? "up succeeded" : failedMsg).toMatch(/no answer within|did not finish within/);
    }
    if (fault === "e") {
      expect(res.ok ? "up succeeded" : failedMsg).toMatch(/move failed.*(maximum number of instances|limit)/i);
    }
    if (fault === "d") expect(res.ok).toBe(false);
    const after = await checkAfterFault(st, label, fault, { failedMsg: res.ok ? "" : msgOf(res.error), to });
    if (fault === "e") {
      // Refused: the instance stayed at the source, running, and no copy was left anywhere.
      expect(atPlace(after.the, from)).toBe(true);
      expect((await copiesOf(st.id!)).length).toBe(1);
    }
    const first = res.ok ? "completed despite fault" : fault === "d" ? "killed" : "failed cleanly";
    phase("check");

    // One more up converges at the declared placement, with no leftovers.
    const c0 = Date.now();
    await st.stack!.up({ timeoutMs: Math.min(120_000, left(deadline)) });
    await checkConverged(st, to);
    phase("converge+check");
    st.at = to;
    st.broken = undefined;
    outcome = `${first} → converged`;
    detail = `${injected}; up ${res.ok ? "ok" : "failed"} after ${secs(res.ms)} s${failedMsg ? ` ("${failedMsg.slice(0, 300)}")` : ""}; then ${after.note}; converge ${secs(Date.now() - c0)} s; phases (s): ${phases.join(", ")}`;
  } catch (e) {
    detail = msgOf(e).split("\n").slice(0, 3).join(" / ").slice(0, 400);
    throw e;
  } finally {
    record(k.key, fault, { outcome, seconds: secs(Date.now() - t0), detail });
  }
}

// ------------------------------------------------------------------------------ the suite

beforeAll(async () => {
  await restoreEstate();
  await clearAllLimits();
  await deleteAll((s) => s.name.startsWith(NAME_PREFIX));
}, 180_000);

afterAll(async () => {
  const t0 = Date.now();
  try {
    await restoreEstate().catch((e) => progress(`afterAll: estate not restored: ${msgOf(e)}`));
    await clearAllLimits();
    await TestStack.cleanupAll();
    await deleteAll((s) => s.name.startsWith(NAME_PREFIX));
  } finally {
    progress(`cleanup ${secs(Date.now() - t0)} s`);
    printMatrix();
  }
}, 240_000);

for (const kind of KINDS) {
  describe(`P5 fault matrix: ${kind.title} (${fmt(kind.a)} <-> ${fmt(kind.b)})`, () => {
    const st: KindState = { kind, spec: { current: specAt(kind, kind.a) }, at: kind.a, cells: 0 };

    beforeAll(async () => {
      const t0 = Date.now();
      st.stack = await TestStack.create({ projectName: `faults-${kind.key}`, program: programFor(st.spec), timeoutMs: 120_000 });
      const r = await st.stack.up();
      st.id = r.outputs.instanceId as string;
      const p = kind.a;
      // Big enough that a transfer lasts seconds (the fault lands mid-transfer), plus a small
      // data file whose checksum proves the data survived.
      await exec(p.remote, p.project, kind.name, `dd if=/dev/urandom of=/root/big bs=1M count=${BIG_MIB} 2>/dev/null; sync`, 120_000);
      await exec(p.remote, p.project, kind.name, `dd if=/dev/urandom of=${DATA_FILE} bs=1M count=1 2>/dev/null; sync`, 30_000);
      st.data = await sha(p.remote, p.project, kind.name, DATA_FILE);
      progress(`${kind.key}: created at ${fmt(p)} with ${BIG_MIB} MiB (${secs(Date.now() - t0)} s)`);
    }, 180_000);

    afterAll(async () => {
      const t0 = Date.now();
      await restoreEstate().catch(() => undefined);
      await st.stack?.remove();
      await deleteAll((s) => s.name === kind.name || s.name.startsWith(`${kind.name}-lxdp-`));
      progress(`${kind.key}: removed (${secs(Date.now() - t0)} s)`);
    }, 180_000);

    for (const f of FAULTS) {
      const same = kind.sameAs?.[f.key];
      if (same) {
        // Not a test of its own (it could not fail): the matrix shows the cell as covered by another.
        matrix.set(key(kind.key, f.key), { outcome: same, seconds: 0 });
        continue;
      }
      it(`P5 ${f.key}: ${f.title}: exactly one copy, data intact, running; the next up converges`, () => runCell(st, f.key), CELL_TEST_MS);
    }
  });
}

describe("R11/R15: a live (CRIU) move refused by LXD", () => {
  const NAME = `${NAME_PREFIX}live`;
  const spec = { current: {} as Spec };
  let stack: TestStack;

  it(
    "R11/R15 f: up fails with LXD's CRIU error; the container is still at s1, running, data intact, no copy on s2",
    async () => {
      const t0 = Date.now();
      let outcome = "FAILED";
      let detail = "";
      try {
        const base = { name: NAME, image: "busybox", remote: "s1", profiles: [], devices: { root: { type: "disk", path: "/", pool: "default" } } };
        spec.current = base;
        stack = await TestStack.create({ projectName: "faults-live", program: programFor(spec), timeoutMs: 120_000 });
        const created = await stack.up();
        const id = created.outputs.instanceId as string;
        await exec("s1", "default", NAME, `dd if=/dev/urandom of=${DATA_FILE} bs=1M count=1 2>/dev/null; sync`);
        const data = await sha("s1", "default", NAME, DATA_FILE);

        spec.current = { ...base, remote: "s2", migration: { strategy: "live", allowRestart: false, timeoutSeconds: MOVE_TIMEOUT_S } };
        let error: unknown;
        await stack.up({ timeoutMs: 120_000 }).catch((e) => (error = e));
        expect(error).toBeDefined();
        // LXD's own words for a refused CRIU dump ("migration dump failed"), then the provider's.
        const text = providerError(error);
        expect(text).toMatch(/migration dump failed|criu/i);
        expect(msgOf(error)).toMatch(/Nothing was lost: the instance is still at s1:default\/fxm-live.*still running \(R15\)/s);

        await waitEstate();
        const copies = await copiesOf(id);
        expect(copies.map((c) => `${where(c)} ${c.status}`)).toEqual([`s1:default/${NAME} Running`]);
        expect(copies[0].config[OUTGOING_KEY] ?? "").toBe("");
        expect(await sha("s1", "default", NAME, DATA_FILE)).toBe(data);
        outcome = "refused by LXD → still at s1, running";
        detail = `"${text.slice(0, 200)}"`;
      } catch (e) {
        detail = msgOf(e).split("\n").slice(0, 3).join(" / ").slice(0, 400);
        throw e;
      } finally {
        record("live", "f", { outcome, seconds: secs(Date.now() - t0), detail });
        await stack?.remove();
        await deleteAll((s) => s.name === NAME);
      }
    },
    CELL_TEST_MS,
  );
});

// Keep the import used: the inline programs run in this process with this copy of @pulumi/pulumi.
void pulumi;
