/**
 * P5, I1-I5: the move protocol, checked over every reachable state of a model of the servers
 * (test/helpers/model-world.ts). The provider's own code runs against the model unchanged: the
 * planner, the executor (executeMove, with its recovery) and settle, with the decisions of
 * provider/protocol.ts. Only `update`'s orchestration (settle, plan, move, converge the power) is
 * restated here, in `converge`, because `update` itself reads capabilities through LXD clients.
 *
 * For each move kind (cross-server pull, push, relay; cluster member; project; pool; rename) and
 * strategy (cold, near-live, live, stop-move-start), the move runs once with one fault:
 *   - a crash of the provider process at every step boundary and before every request,
 *   - a lost response at every request (the request took effect, or not),
 *   - a transfer cut short (a partial copy; its server silent for the rest of the run, or not),
 *   - a server that stops answering from any request on;
 * then one more run (recovery) with one more fault: each server silent, both, or a crash before
 * any of its requests; then a run with every server answering, after which the instance must be
 * exactly once at the declared placement, complete, current, unmarked and powered as declared (I5).
 * I1-I4 are checked at every request of every run.
 */
import { executeMove } from "../../provider/executor";
import { settle } from "../../provider/facts";
import { InstanceInputsSchema, type Desired } from "../../provider/inputs";
import { MoveFailedError, PlacementError } from "../../provider/lxd/errors";
import { MARKER_KEY, MARK_PREFIX, placeKey, type Place } from "../../provider/marks";
import { plan, type Capabilities, type Facts } from "../../provider/planner";
import { decide, isRunning, type Copy, type Own } from "../../provider/protocol";
import { ModelCrash, ModelIo, World, type Faults, type MCopy, type Violation } from "../helpers/model-world";

const ID = "0f5c2a8e-aaaa-4bbb-8ccc-ddddeeeeffff";
const EXT = ["container_push", "container_push_target", "container_incremental_copy", "migration_stateful", "instance_pool_move", "instance_project_move", "clustering"];
const caps = (remote: string): Capabilities => ({
  remote,
  extensions: EXT,
  clustered: remote === "c",
  members: remote === "c" ? { m1: "Online", m2: "Online" } : {},
  groups: {},
  projects: ["default", "staging"],
  pools: ["default", "fast"],
});

function factsOf(c: Copy): Facts {
  const raw = c.raw as { pool: string };
  return {
    remote: c.place.remote,
    project: c.place.project,
    member: c.member,
    pool: raw.pool,
    name: c.place.name,
    type: "container",
    running: isRunning(c.status),
    config: {},
    devices: { root: { type: "disk", path: "/", pool: raw.pool } },
  };
}

/** `update`, restated against the model: settle, plan, move, converge the power. */
async function converge(io: ModelIo, recorded: Place, d: Desired): Promise<void> {
  const s = await settle(io, { id: ID, recorded, leaseWaitMs: 120_000 });
  if (s.decision.kind !== "done") throw new PlacementError(`settle: ${s.decision.kind}${s.decision.kind === "blocked" ? ` (${s.decision.blocked.kind})` : ""}`);
  const found = s.decision.instance;
  const p = plan({ facts: factsOf(found), desired: d, source: caps(found.place.remote), target: caps(d.remote) });
  if (p.kind === "refuse") throw new Error(`the model's plan was refused: ${p.reason}`);
  let at = found.place;
  if (p.kind === "move") {
    await executeMove({ io, id: ID, desired: d, plan: p, found, log: () => undefined });
    at = { remote: d.remote, project: d.project, name: d.name };
  }
  const cur = await io.get(at, ID);
  if (!cur) throw new PlacementError(`the instance is not at ${placeKey(at)}`);
  if (d.running && !isRunning(cur.status)) await io.start(at);
  if (!d.running && isRunning(cur.status)) await io.stop(at);
}

interface Scenario {
  name: string;
  from: Place & { member?: string; pool?: string };
  running: boolean;
  desired: Record<string, unknown>;
  liveSource?: "stopped" | "resumed";
}

const STRATEGIES = [
  { running: false, strategy: "auto", allowRestart: true },
  { running: true, strategy: "near-live", allowRestart: true },
  { running: true, strategy: "stop-move-start", allowRestart: true },
  { running: true, strategy: "live", allowRestart: false },
];

const KINDS: { name: string; from: Scenario["from"]; to: Record<string, unknown> }[] = [
  { name: "cross-server pull", from: { remote: "s1", project: "default", name: "web" }, to: { remote: "s2", migration: { mode: "pull" } } },
  { name: "cross-server push", from: { remote: "s1", project: "default", name: "web" }, to: { remote: "s2", migration: { mode: "push" } } },
  { name: "cross-server relay", from: { remote: "s1", project: "default", name: "web" }, to: { remote: "s2", migration: { mode: "relay" } } },
  { name: "cluster member", from: { remote: "c", project: "default", name: "web", member: "m1" }, to: { remote: "c", target: "m2" } },
  { name: "project", from: { remote: "s1", project: "default", name: "web" }, to: { remote: "s1", project: "staging" } },
  { name: "pool", from: { remote: "s1", project: "default", name: "web" }, to: { remote: "s1", storagePool: "fast" } },
  { name: "rename", from: { remote: "s1", project: "default", name: "web" }, to: { remote: "s1", name: "web2" } },
];

function scenarios(): Scenario[] {
  const out: Scenario[] = [];
  for (const k of KINDS) {
    for (const st of STRATEGIES) {
      const to = k.to as { migration?: Record<string, unknown> };
      const desired = { name: "web", image: "busybox", ...k.to, running: st.running, migration: { ...(to.migration ?? {}), strategy: st.strategy, allowRestart: st.allowRestart, preCopyRounds: 1 } };
      const liveSources: ("stopped" | "resumed")[] = st.strategy === "live" ? ["stopped", "resumed"] : ["resumed"];
      for (const liveSource of liveSources) {
        out.push({ name: `${k.name}, ${st.running ? st.strategy : "cold"}${st.strategy === "live" ? ` (source ${liveSource} by LXD)` : ""}`, from: k.from, running: st.running, desired, liveSource });
      }
    }
  }
  return out;
}

function startWorld(sc: Scenario): World {
  const w = new World();
  w.liveSource = sc.liveSource ?? "resumed";
  const c: MCopy = {
    place: { remote: sc.from.remote, project: sc.from.project, name: sc.from.name },
    member: sc.from.member ?? "",
    pool: sc.from.pool ?? "default",
    status: sc.running ? "Running" : "Stopped",
    config: { [MARKER_KEY]: ID },
    version: w.latest,
    complete: true,
    etag: 1,
  };
  w.copies.set(placeKey(c.place), c);
  return w;
}

function desiredOf(sc: Scenario): Desired {
  const v = InstanceInputsSchema.parse(sc.desired);
  return { ...v, name: v.name!, remote: v.remote! };
}

/** I5: exactly one copy, at the declared placement, complete and current, unmarked, powered as declared. */
function converged(w: World, d: Desired): string | undefined {
  const copies = [...w.copies.values()];
  if (copies.length !== 1) return `${copies.length} copies: ${w.key()}`;
  const c = copies[0];
  const want = `${d.remote}:${d.project}/${d.name}${d.target ? `@${d.target}` : ""}${d.storagePool ? ` pool ${d.storagePool}` : ""} ${d.running ? "Running" : "Stopped"}`;
  const got = `${placeKey(c.place)}${d.target ? `@${c.member}` : ""}${d.storagePool ? ` pool ${c.pool}` : ""} ${c.status}`;
  if (want !== got) return `at ${got}, declared ${want}`;
  if (!c.complete || c.version !== w.latest) return `data not complete and current: ${w.key()}`;
  const marks = Object.keys(c.config).filter((k) => k.startsWith(MARK_PREFIX) && k !== MARKER_KEY);
  if (marks.length) return `marks left: ${marks.join(", ")}`;
  return undefined;
}

const range = (n: number) => [...Array(n).keys()];

/** An error a run may end with: the provider's own (it says where the instance is) or the model's crash. */
function expected(e: unknown): boolean {
  return e instanceof ModelCrash || PlacementError.is(e);
}

interface Totals {
  scenarios: number;
  runs: number;
  violations: Violation[];
  states: Map<string, World>;
  transitions: Set<string>;
  firstFaults: number;
  outcomes: Map<string, number>;
  skipped: string[];
  strategies: Set<string>;
}

async function runOnce(w: World, run: string, faults: Faults, sc: Scenario, t: Totals): Promise<{ io: ModelIo; error?: unknown }> {
  const io = new ModelIo(w, run, faults, t.violations, ID);
  const recorded = { ...sc.from, name: sc.from.name };
  let error: unknown;
  try {
    await converge(io, { remote: recorded.remote, project: recorded.project, name: recorded.name }, desiredOf(sc));
  } catch (e) {
    error = e;
    if (!expected(e)) t.violations.push({ invariant: "error", detail: `${sc.name}, run ${run} ${JSON.stringify(faults)}: unexpected ${(e as Error).stack}` });
  } finally {
    io.end();
  }
  // A run that reports success has reached the declared state: success is never claimed for a rollback.
  const claim = error ? undefined : converged(w, desiredOf(sc));
  if (claim) t.violations.push({ invariant: "I5", detail: `${sc.name}, run ${run} ${JSON.stringify(faults)} succeeded but: ${claim}` });
  t.runs++;
  for (const [k, w] of io.states) if (!t.states.has(k)) t.states.set(k, w);
  for (const x of io.transitions) t.transitions.add(x);
  return { io, error };
}

/** The recorded placement stays the source's: a failed `up` keeps the old state in Pulumi. */
async function explore(sc: Scenario, t: Totals): Promise<void> {
  t.scenarios++;
  const d = desiredOf(sc);
  const w0 = startWorld(sc);
  const src = [...w0.copies.values()][0];
  const p0 = plan({
    facts: { remote: src.place.remote, project: src.place.project, member: src.member, pool: src.pool, name: src.place.name, type: "container", running: sc.running, config: {}, devices: {} },
    desired: d,
    source: caps(src.place.remote),
    target: caps(d.remote),
  });
  if (p0.kind !== "move") {
    // Not a move the planner allows (a live rename, say): the protocol has nothing to do.
    t.skipped.push(`${sc.name} (${p0.kind === "refuse" ? p0.reason.split(";")[0] : p0.kind})`);
    return;
  }
  t.strategies.add(
    `${sc.name}: ${p0.route.kind === "copy" ? (p0.route.sameServer ? "copy within the server" : `cross-server ${p0.route.mode}`) : `server-side ${p0.route.steps.join("+")}`}, ${p0.strategy}`,
  );
  const base = await runOnce(w0, "base", {}, sc, t);
  if (base.error) throw new Error(`${sc.name}: the move failed without a fault: ${(base.error as Error).message}`);
  const bad = converged(base.io.world, d);
  if (bad) throw new Error(`${sc.name}: without a fault: ${bad}`);
  const involved = [...new Set([sc.from.remote, d.remote])];
  const N = base.io.calls;
  const first: Faults[] = [
    ...range(base.io.boundaries.length).map((k) => ({ crashAtBoundary: k })),
    ...range(N).map((k) => ({ crashAtCall: k })),
    ...range(N).flatMap((k) => [{ lostAtCall: { k, applied: true } }, { lostAtCall: { k, applied: false } }, { lostAtCall: { k, applied: true, thenSilent: true } }]),
    ...range(base.io.transfers).flatMap((k) => [{ cutTransfer: { k, targetSilent: true } }, { cutTransfer: { k, targetSilent: false } }]),
    ...range(N).flatMap((k) => involved.map((remote) => ({ silentFrom: { k, remote } }))),
  ];
  for (const f1 of first) {
    t.firstFaults++;
    const a = await runOnce(startWorld(sc), "A", f1, sc, t);
    const outcome = a.error ? (a.error instanceof ModelCrash ? "crashed" : a.error instanceof MoveFailedError ? `move failed (${a.error.outcome})` : "failed") : "succeeded";
    t.outcomes.set(outcome, (t.outcomes.get(outcome) ?? 0) + 1);
    const probe = await runOnce(a.io.world.clone(), "B-probe", {}, sc, t);
    const second: Faults[] = [{}, ...involved.map((r) => ({ silent: [r] })), ...(involved.length > 1 ? [{ silent: involved }] : []), ...range(probe.io.calls).map((k) => ({ crashAtCall: k }))];
    for (const f2 of second) {
      const b = await runOnce(a.io.world.clone(), "B", f2, sc, t);
      const c = await runOnce(b.io.world.clone(), "C", {}, sc, t);
      const why = c.error ? `the last run failed: ${(c.error as Error).message}` : converged(c.io.world, d);
      if (why) t.violations.push({ invariant: "I5", detail: `${sc.name}: first fault ${JSON.stringify(f1)}, then ${JSON.stringify(f2)}: ${why}` });
    }
  }
}

/**
 * I4 on the decisions themselves: in every state the runs reached, with every non-empty set of
 * the servers holding a copy silent, `decide` neither deletes nor promotes anything, and starts
 * only this run's own source whose copy it never marked complete. Checked for a later run (no
 * knowledge of its own) and for the run that made the move (its source's move is its own).
 */
function checkDecisionsWhenSilent(t: Totals): number {
  let n = 0;
  for (const w of t.states.values()) {
    const io = new ModelIo(w.clone(), "judge", {}, [], ID);
    const all = [...w.copies.values()];
    const remotes = [...new Set(all.map((c) => c.place.remote))];
    for (let mask = 1; mask < 1 << remotes.length; mask++) {
      const silent = remotes.filter((_, i) => mask & (1 << i));
      const copies = all.filter((c) => !silent.includes(c.place.remote)).map((c) => io.view(c));
      const sources = copies.filter((c) => c.outgoing && !c.incoming);
      const owns: Own[] = [
        { run: "later" },
        ...sources.map((s) => ({ run: "later", move: { id: s.outgoing!, completeSent: false } })),
        ...sources.map((s) => ({ run: "later", move: { id: s.outgoing!, completeSent: true } })),
      ];
      for (const own of owns) {
        for (const goal of [{}, { running: true }]) {
          n++;
          const d = decide({ id: ID, copies, silent, recorded: undefined }, own, goal);
          if (d.kind !== "act") continue;
          const a = d.action;
          const allowed = (a.kind === "start" || a.kind === "thaw") && own.move && !own.move.completeSent && a.copy.outgoing === own.move.id && !a.copy.incoming;
          if (!allowed)
            t.violations.push({ invariant: "I4", detail: `with ${silent.join(", ")} silent, decide chose ${a.kind} ${placeKey(a.copy.place)} (${a.why}) in ${w.key()} for ${JSON.stringify(own)}` });
        }
      }
    }
  }
  return n;
}

describe("P5: the move protocol over every reachable state of the model", () => {
  it("I1-I5 hold for every move kind and strategy, one fault during the move and one during recovery", async () => {
    const t: Totals = { scenarios: 0, runs: 0, violations: [], states: new Map(), transitions: new Set(), firstFaults: 0, outcomes: new Map(), skipped: [], strategies: new Set() };
    const t0 = Date.now();
    for (const sc of scenarios()) await explore(sc, t);
    const summary =
      `protocol model: ${t.scenarios} scenarios (move kind x strategy), ${t.firstFaults} first faults, ${t.runs} runs; ` +
      `${t.states.size} distinct states, ${t.transitions.size} distinct transitions; ` +
      `first runs: ${[...t.outcomes].map(([k, n]) => `${k} ${n}`).join(", ")}; ${((Date.now() - t0) / 1000).toFixed(1)} s`;
    process.stderr.write(`${summary}\nmoves: ${[...t.strategies].join("; ")}\nnot applicable: ${t.skipped.join("; ")}\n`);
    const decisions = checkDecisionsWhenSilent(t);
    process.stderr.write(`protocol model: I4 checked on ${decisions} decisions (every state seen x every set of silent servers holding a copy)\n`);
    const shown = t.violations.slice(0, 8).map((v) => `${v.invariant}: ${v.detail}`);
    expect(shown).toEqual([]);
    expect(t.states.size).toBeGreaterThan(50);
  }, 600_000);
});
