/**
 * Drain benchmark: empty cluster member m3 of N running containers (BENCH_DRAIN_N, default 6,
 * at least 6; every other one holds a 60 MB file), two ways, same instances, same run:
 *
 *   policy    the placement policy (provider/policy.ts) with m3 draining computes each
 *             instance's new member; then the provider's update() runs for every instance at
 *             once, in this process, as the engine runs the updates of one `pulumi up`; the
 *             moves share the process limiter (LXD_PLACEMENT_MAX_MOVES_PER_REMOTE, default 4)
 *             and the group's maxUnavailable (BENCH_DRAIN_MAX_UNAVAILABLE, default 2).
 *   baseline  `lxc cluster evacuate cluster:m3`, then `lxc cluster restore cluster:m3`.
 *
 * On LXD 5.0.2 an evacuation migrates an instance only if `cluster.evacuate` on the instance says
 * so or every device can migrate; a NIC on an unmanaged bridge (the sandbox's `nictype: bridged,
 * parent: sbx0`) cannot, so with the default `auto` the containers would only be stopped and left
 * on m3. `cluster.evacuate` is an instance option (not a member one): the containers here are
 * created with `cluster.evacuate=migrate`, so the evacuation stops, moves and starts each one, one
 * after another. The benchmark checks that they really left m3 and says so in its notes.
 *
 * Figures:
 *   drain.wall           seconds until m3 is empty and every instance runs again; target ratio <= 0.6
 *   drain.downtime.max   the longest time one instance was not running (a frozen container counts
 *                        as not running), as a poller of the cluster's instance list saw it, the
 *                        same poller for both ways; target: at most twice the near-live floor,
 *                        measured first in the same run the same way (the longest window of one
 *                        near-live member move of a 60 MB container, alone)
 *
 * Pre-copies between members pull from the source member with allow_inconsistent, so the
 * container keeps running through them; the drain runs with preCopyRounds 0
 * (BENCH_DRAIN_PRECOPY_ROUNDS) to keep the moves short. BENCH_DRAIN_STRATEGY=stop-move-start runs the drain
 * (and the floor) with that strategy instead, to compare.
 *
 * Run alone: `node bin/bench/drain.js` (after `npx tsc -p .`, under `flock -s .sandbox-lock`);
 * bench/run.ts calls runDrainBench().
 *
 * The evacuation moves every instance on m3, not only these: before it, the benchmark waits
 * (BENCH_DRAIN_WAIT_S, default 180) until no other running instance is on m3, and skips the
 * baseline if one stays, rather than stop someone else's container.
 */
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Estate } from "../provider/estate";
import { place } from "../provider/policy";
import * as provider from "../provider/resource";
import { emptyResult, type Bench, type PartResult } from "./context";
import type { Managed } from "./managed";
import { figure, fromDrain } from "./report";
import { deadline, lxc, SANDBOX } from "./shell";

export interface DrainFigure {
  name: string;
  value: number;
  baseline: number;
  ratio: number;
  target: string;
  met: boolean;
  /** What was measured and how (not needed by the caller; printed by `node bin/bench/drain.js`). */
  note?: string;
}

const num = (v: string | undefined, d: number) => (v && Number(v) > 0 ? Math.floor(Number(v)) : d);
const REMOTE = "cluster";
const DRAIN = "m3";
const MEMBERS = ["m1", "m2", "m3"];
const BIG_MB = 60;

function log(text: string): void {
  process.stderr.write(`bench drain: ${text}\n`);
}

/**
 * Watches the cluster's instance list (one GET per sample) and records, per instance, the
 * stretches during which no copy of it was running. `downtime(name)` is the longest stretch.
 */
class Watch {
  private down = new Map<string, number | undefined>();
  private longest = new Map<string, number>();
  private stop = false;
  private loop: Promise<void>;
  samples = 0;
  constructor(
    private e: Estate,
    private names: string[],
  ) {
    this.loop = this.run();
  }
  private async run(): Promise<void> {
    while (!this.stop) {
      const list = await this.e.instances(REMOTE, { fresh: true }).catch(() => undefined);
      const now = performance.now();
      if (list) {
        this.samples++;
        for (const n of this.names) {
          const up = list.some((i) => (i.name === n || i.name.startsWith(`${n}-lxdp-`)) && i.status === "Running");
          const since = this.down.get(n);
          if (!up && since === undefined) this.down.set(n, now);
          if (up && since !== undefined) {
            this.longest.set(n, Math.max(this.longest.get(n) ?? 0, (now - since) / 1000));
            this.down.set(n, undefined);
          }
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  async finish(): Promise<Record<string, number>> {
    this.stop = true;
    await this.loop;
    const now = performance.now();
    const out: Record<string, number> = {};
    for (const n of this.names) {
      const since = this.down.get(n);
      out[n] = Math.max(this.longest.get(n) ?? 0, since !== undefined ? (now - since) / 1000 : 0);
    }
    return out;
  }
}

async function locations(e: Estate, names: string[]): Promise<Record<string, { location: string; status: string }>> {
  const out: Record<string, { location: string; status: string }> = {};
  for (const i of await e.instances(REMOTE, { fresh: true })) if (names.includes(i.name)) out[i.name] = { location: i.location, status: i.status };
  return out;
}

/** Transfers the sandbox fails now and then when it is busy: run again, as the next `pulumi up` would. */
const retried: string[] = [];

async function update(m: Managed, change: Record<string, unknown>): Promise<Record<string, unknown>> {
  const news = { ...m.inputs, ...change };
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await deadline(provider.update(m.id, m.outs, news), 600_000, `update of ${m.name}`);
      m.inputs = news;
      m.outs = r.outs as unknown as Record<string, unknown>;
      return m.outs;
    } catch (err) {
      const msg = (err as Error).message;
      if (attempt >= 3 || !/bad handshake|websocket|Nothing was lost/.test(msg)) throw err;
      retried.push(`${m.name}: ${msg.slice(0, 120)}`);
      log(`${m.name}: move failed (${msg.slice(0, 160)}); running it again`);
    }
  }
}

/** Other running instances on m3 (the evacuation would stop or move them too). */
async function othersOnDrained(e: Estate, mine: string[]): Promise<string[]> {
  return (await e.instances(REMOTE, { fresh: true }))
    .filter((i) => i.location === DRAIN && i.status === "Running" && !mine.some((n) => i.name === n || i.name.startsWith(`${n}-lxdp-`)))
    .map((i) => `${i.project}/${i.name}`);
}

const round = (x: number) => Math.round(x * 100) / 100;

export async function runDrainBench(): Promise<DrainFigure[]> {
  retried.length = 0;
  const N = Math.max(6, num(process.env.BENCH_DRAIN_N, 6));
  const maxUnavailable = num(process.env.BENCH_DRAIN_MAX_UNAVAILABLE, 2);
  // On dir pools a refresh round costs about what the final delta costs (LXD walks the whole
  // tree), so extra pre-copy rounds only lengthen each move: none by default.
  const preCopyRounds = process.env.BENCH_DRAIN_PRECOPY_ROUNDS ? Math.max(0, Math.floor(Number(process.env.BENCH_DRAIN_PRECOPY_ROUNDS))) : 0;
  // "auto" (near-live for these containers) by default; "stop-move-start" to compare.
  const strategy = (process.env.BENCH_DRAIN_STRATEGY ?? "auto") as "auto" | "near-live" | "stop-move-start";
  const waitS = num(process.env.BENCH_DRAIN_WAIT_S, 180);
  const tag = randomUUID().slice(0, 6);
  const names = Array.from({ length: N }, (_, k) => `drain-${tag}-${k + 1}`);
  const e = new Estate();
  const managed: Managed[] = [];
  const notes: string[] = [];
  let evacuated = false;
  try {
    // 1. N running containers on m3, every other one with a 60 MB file.
    log(`creating ${N} containers on ${REMOTE}:${DRAIN} (${names[0]}..)`);
    await Promise.all(
      names.map(async (name) => {
        const inputs = { name, image: "busybox", remote: REMOTE, target: DRAIN, config: { "cluster.evacuate": "migrate" } };
        const r = await deadline(provider.create(inputs), 180_000, `create ${name}`);
        managed.push({ id: r.id, name, inputs, outs: r.outs as unknown as Record<string, unknown> });
      }),
    );
    managed.sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name));
    await Promise.all(
      names.filter((_, k) => k % 2 === 0).map((n) => lxc(["exec", `${REMOTE}:${n}`, "--", "sh", "-c", `dd if=/dev/urandom of=/bench-data bs=1M count=${BIG_MB} 2>/dev/null && sync`], 300_000)),
    );
    log(`wrote ${BIG_MB} MB into ${Math.ceil(N / 2)} of them`);

    // 2. The near-live floor: one container with the 60 MB file moved alone, m3 -> m1 -> m3,
    //    with the drain's migration settings; its longest window as the same poller sees it.
    const probe = managed[0];
    const migration = { preCopyRounds, strategy };
    const floors: number[] = [];
    const floorRec: number[] = [];
    for (const t of ["m1", DRAIN]) {
      const w = new Watch(e, [probe.name]);
      const out = await update(probe, { target: t, migration });
      floors.push((await w.finish())[probe.name]);
      floorRec.push(Number((out.lastMove as { downtimeSeconds: number }).downtimeSeconds));
    }
    const floor = round(Math.min(...floors));
    log(`near-live floor (one move alone): ${floor}s as polled (${floors.map(round).join(", ")}); cutover ${floorRec.join(", ")}s as the provider measured`);

    // 3. Drain through the policy: every update at once, as the engine runs one `pulumi up`.
    const r = place({
      instances: names.map((n) => ({ name: n })),
      candidates: MEMBERS.map((m) => ({ name: m })),
      draining: [DRAIN],
      current: Object.fromEntries(names.map((n) => [n, DRAIN])),
      maxUnavailable,
    });
    if (r.errors.length) throw new Error(`policy: ${r.errors.join("; ")}`);
    log(`policy: ${r.moves.map((m) => `${m.instance}->${m.to}`).join(", ")} (${r.batches} batches of maxUnavailable ${maxUnavailable})`);
    const group = `bench-drain-${tag}`;
    let watch = new Watch(e, names);
    let t0 = performance.now();
    const outs = await Promise.all(managed.map((m) => update(m, { target: r.assignment[m.name], migration: { ...migration, group, maxUnavailable } })));
    const policyWall = (performance.now() - t0) / 1000;
    const policyDown = await watch.finish();
    const recDown = outs.map((o) => Number((o.lastMove as { downtimeSeconds: number }).downtimeSeconds));
    const after = await locations(e, names);
    const leftOnDrained = names.filter((n) => after[n]?.location === DRAIN || after[n]?.status !== "Running");
    if (leftOnDrained.length) throw new Error(`policy drain left ${leftOnDrained.join(", ")} on ${DRAIN} or not running`);
    log(
      `policy drain: ${round(policyWall)}s wall; downtime max ${round(Math.max(...Object.values(policyDown)))}s as polled (${watch.samples} samples), ${Math.max(...recDown)}s as the provider measured`,
    );

    // 4. Back to m3 (not measured), then the evacuation of the same member with the same instances.
    await Promise.all(managed.map((m) => update(m, { target: DRAIN, migration: { ...migration, group, maxUnavailable: N } })));
    let others = await othersOnDrained(e, names);
    for (const until = Date.now() + waitS * 1000; others.length && Date.now() < until; others = await othersOnDrained(e, names)) {
      log(`waiting for other running instances to leave ${DRAIN} before evacuating it: ${others.join(", ")}`);
      await new Promise((res) => setTimeout(res, 10_000));
    }
    let evacWall = NaN;
    let evacDown: Record<string, number> = {};
    if (others.length) {
      notes.push(`baseline skipped: other running instances stayed on ${DRAIN} (${others.join(", ")}); evacuating would have stopped them`);
    } else {
      const cfg = (await lxc(["config", "get", `${REMOTE}:${names[0]}`, "cluster.evacuate"], 120_000)).stdout.trim();
      watch = new Watch(e, names);
      t0 = performance.now();
      evacuated = true;
      await lxc(["cluster", "evacuate", `${REMOTE}:${DRAIN}`, "--force"], 1_800_000);
      evacWall = (performance.now() - t0) / 1000;
      evacDown = await watch.finish();
      const ev = await locations(e, names);
      const moved = names.filter((n) => ev[n] && ev[n].location !== DRAIN).length;
      const running = names.filter((n) => ev[n]?.status === "Running").length;
      notes.push(`lxc cluster evacuate with cluster.evacuate=${cfg} on the instances: ${moved}/${N} moved off ${DRAIN}, ${running}/${N} running after`);
      log(`evacuate: ${round(evacWall)}s wall; downtime max ${round(Math.max(...Object.values(evacDown)))}s (${watch.samples} samples); ${moved}/${N} moved, ${running}/${N} running`);
      const rt = await lxc(["cluster", "restore", `${REMOTE}:${DRAIN}`, "--force"], 1_800_000);
      evacuated = false;
      log(`restore: ${round(rt.seconds)}s`);
      if (moved < N) notes.push(`the evacuation did not move every instance: its downtime is a stop, not a move`);
    }

    const pMax = Math.max(...Object.values(policyDown));
    const eMax = others.length ? NaN : Math.max(...Object.values(evacDown));
    const wallRatio = policyWall / evacWall;
    if (retried.length) notes.push(`moves run again after a sandbox transfer failure (their time is in the figures): ${retried.length}`);
    notes.push(
      `policy: ${N} containers (${Math.ceil(N / 2)} with ${BIG_MB} MB), strategy ${strategy} (${[...new Set(outs.map((o) => String((o.lastMove as { strategy: string }).strategy)))].join(", ")}), maxUnavailable ${maxUnavailable}, preCopyRounds ${preCopyRounds}, process limits ${process.env.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE ?? 4}/remote ${process.env.LXD_PLACEMENT_MAX_MOVES ?? 8} overall; provider-measured downtime max ${Math.max(...recDown)}s`,
    );
    return [
      {
        name: "drain.wall",
        value: round(policyWall),
        baseline: round(evacWall),
        ratio: round(wallRatio),
        target: "ratio <= 0.6 (baseline lxc-cluster-evacuate)",
        met: wallRatio <= 0.6,
        note: notes.join("; "),
      },
      {
        name: "drain.downtime.max",
        value: round(pMax),
        baseline: round(eMax),
        ratio: round(pMax / eMax),
        target: `value <= 2 x near-live floor (${floor} s); baseline lxc-cluster-evacuate`,
        met: pMax <= 2 * floor,
        note: `near-live floor ${floor}s: the longest window of one near-live member move of a ${BIG_MB} MB container alone (cutover ${floorRec.join(", ")}s as the provider measured); downtimes as polled every ~0.1 s, a frozen container counts as down`,
      },
    ];
  } finally {
    if (evacuated) await lxc(["cluster", "restore", `${REMOTE}:${DRAIN}`, "--force"], 1_800_000).catch((err) => log(`restore failed: ${(err as Error).message}`));
    await Promise.all(managed.map((m) => deadline(provider.remove(m.id, m.outs), 120_000, `remove ${m.name}`).catch((err) => log(`cleanup of ${m.name}: ${(err as Error).message}`))));
    // Whatever a failure left behind (copies included).
    const left = (await e.instances(REMOTE, { fresh: true }).catch(() => [])).filter((i) => i.name.startsWith(`drain-${tag}-`));
    for (const i of left) await lxc(["delete", "--force", `${REMOTE}:${i.name}`, "--project", i.project], 120_000).catch(() => undefined);
    await e.close();
  }
}

/** What the drain part left to clean up if this process is interrupted. */
export interface DrainState {
  /** `drain-*` instances that were there before the drain part: not ours, never deleted. */
  before?: Set<string>;
  /** The drain part is under way: an interruption may leave the member evacuated. */
  running: boolean;
}

async function drainInstances(): Promise<{ name: string; project: string }[]> {
  const list = JSON.parse((await lxc(["list", `${REMOTE}:`, "--format", "json", "--all-projects"], 60_000)).stdout) as { name: string; project: string }[];
  return list.filter((i) => i.name.startsWith("drain-"));
}

/** drain.* for `npm run bench`: runDrainBench's figures, or the two figures marked failed. */
export async function drainPart(b: Bench, state: DrainState): Promise<PartResult> {
  const out = emptyResult();
  state.before = new Set((await drainInstances()).map((i) => `${i.project}/${i.name}`));
  state.running = true;
  try {
    out.figures.push(...(await runDrainBench()).map(fromDrain));
  } catch (e) {
    const msg = (e as Error).message;
    b.progress(`drain: FAILED: ${msg}`);
    out.notes.push(`drain: ${msg}`);
    out.figures.push(
      ...["drain.wall", "drain.downtime.max"].map((name) => ({ ...figure(name, "s", null, { baselineName: "lxc-cluster-evacuate", baseline: null }), met: "no" as const, note: `ERROR: ${msg}` })),
    );
  } finally {
    state.running = false;
  }
  return out;
}

/**
 * What the drain part left (runDrainBench cleans up after itself, but not when this process is
 * interrupted): the member still evacuated, and `drain-*` instances that were not there before it.
 */
export async function drainCleanup(b: Bench, state: DrainState): Promise<void> {
  if (!state.before) return;
  if (state.running) {
    try {
      const members = JSON.parse((await lxc(["cluster", "list", `${REMOTE}:`, "--format", "json"], 60_000)).stdout) as { server_name: string; status: string }[];
      if (members.some((m) => m.server_name === DRAIN && /evacuat/i.test(m.status))) {
        b.progress(`cleanup: restoring cluster member ${DRAIN}, left evacuated by the drain part`);
        await lxc(["cluster", "restore", `${REMOTE}:${DRAIN}`, "--force"], 1_800_000);
      }
    } catch (e) {
      b.progress(`cleanup: cannot check or restore ${DRAIN} (run \`lxc cluster restore ${REMOTE}:${DRAIN}\`): ${(e as Error).message}`);
    }
  }
  try {
    const before = state.before;
    const left = (await drainInstances()).filter((i) => !before.has(`${i.project}/${i.name}`));
    if (left.length) b.progress(`cleanup: deleting ${left.length} instance(s) left by the drain part`);
    for (const i of left) await lxc(["delete", "--force", `${REMOTE}:${i.name}`, "--project", i.project], 120_000).catch((e) => b.progress(`cleanup: ${i.name}: ${(e as Error).message}`));
  } catch (e) {
    b.progress(`cleanup: cannot list the drain part's instances: ${(e as Error).message}`);
  }
}

if (require.main === module) {
  // Keep the provider's log lines out of the figures: into a file beside the results.
  process.env.LXD_CONF ??= path.join(SANDBOX, "lxc");
  const dir = path.join(SANDBOX, "bench");
  fs.mkdirSync(dir, { recursive: true });
  const file = fs.createWriteStream(path.join(dir, "drain-provider.log"), { flags: "w" });
  provider.inProcess({ log: (line) => file.write(`${new Date().toISOString()} ${line}\n`) });
  runDrainBench().then(
    (figs) => {
      process.stdout.write(`${JSON.stringify(figs, null, 2)}\n`);
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`bench drain failed: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}
