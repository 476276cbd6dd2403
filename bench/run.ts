/**
 * `npm run bench`: what a move, a cutover and a refresh cost with this provider, each next to
 * what LXD's own CLI (or a floor measured by hand) costs on the same sandbox, in one process.
 *
 *   move.*       a cold move (stopped instance) by the provider's update() vs `lxc move`, same mode
 *   downtime.*   a running container moved s1 -> s2, small and big: stop-move-start vs near-live vs floors
 *   relay.*      MB/s of the provider's relay vs `lxc move --mode relay` (from the move runs)
 *   read.*       refresh of 200 instances: LXD requests and time per resource
 *   drain.*      cluster member m3 drained through the policy vs `lxc cluster evacuate` (bench/drain.ts)
 *
 * Names: move.<mode>.cross-remote.<size>, move.target.cross-member.<size>, downtime.<strategy>.<size>
 * with <size> `small` (the busybox image alone) or `<BENCH_BIG_MB>MB` (plus that many MiB of
 * random data). A figure's baseline is named by a stable identifier: another figure's name
 * (downtime.stop-move-start.400MB) or a tool (lxc-move, lxc-cluster-evacuate).
 *
 * Options (`npm run bench -- ...`): --json FILE writes the figures as a JSON array (name, value,
 * unit, baseline, baselineValue, ratio, ...); --chart FILE writes the downtime chart (SVG), which
 * every run also writes to .sandbox/bench/downtime.svg.
 *
 * The provider is called in-process (`update`, `read`, as the dynamic provider host calls them),
 * so the Pulumi engine's start-up is not in its figures; `lxc` runs as a child process, so the
 * CLI's start-up is in its figures (overhead.lxc-query shows how much that is).
 *
 * Environment: BENCH_ONLY=move,downtime,relay,read,drain (default all), BENCH_BIG_MB (400),
 * BENCH_REPS_SMALL (2), BENCH_REPS_BIG (1), BENCH_REPS_DOWNTIME (1), BENCH_READ_N (200),
 * BENCH_READ_REPS (3), BENCH_READ_STALE_N (10), BENCH_DOWNTIME_LXC=1; to look closer at some
 * move cases: BENCH_CASES=pull,push,relay,member and BENCH_SIZES=small,big (sizes apply to the
 * downtime part too); the drain part's own knobs are BENCH_DRAIN_* (bench/drain.ts).
 *
 * Each rep of a move case is four legs, provider and lxc interleaved so that both get both
 * directions and a steady drift of the machine's speed cancels out: provider there, lxc back,
 * lxc there, provider back (ABBA).
 */
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as provider from "../provider/resource";
import { LxdClient, requestCounter } from "../provider/lxd/client";
import { Estate } from "../provider/estate";
import { loadRemotes } from "../provider/lxd/remotes";
import { createInstance, deleteInstance, getInstance } from "../provider/lxd/instances";
import { MARKER_KEY } from "../provider/marks";
import { deadline, lxc, lxcWithCpu, pool, run, SANDBOX } from "./shell";
import { benchArgs, figure, fromDrain, median, table, toJson, USAGE, type BenchArgs, type Figure } from "./report";
import { watch } from "./observer";
import { downtimeChart } from "./chart";
import { runDrainBench } from "./drain";

let ARGS: BenchArgs;
try {
  ARGS = benchArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\n${USAGE}\n`);
  process.exit(2);
}
if (ARGS.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

process.env.LXD_CONF ??= path.join(SANDBOX, "lxc");

const OUT_DIR = path.join(SANDBOX, "bench");
const num = (v: string | undefined, d: number) => (v && Number(v) > 0 ? Math.floor(Number(v)) : d);
const BIG_MB = num(process.env.BENCH_BIG_MB, 400);
const REPS_SMALL = num(process.env.BENCH_REPS_SMALL, 2);
const REPS_BIG = num(process.env.BENCH_REPS_BIG, 1);
const REPS_DOWNTIME = num(process.env.BENCH_REPS_DOWNTIME, 1);
const READ_N = num(process.env.BENCH_READ_N, 200);
const READ_REPS = num(process.env.BENCH_READ_REPS, 3);
/** The stale-hint refresh lists every remote per resource: run it on a sample to bound the time. */
const READ_STALE_N = num(process.env.BENCH_READ_STALE_N, 10);
/** Also time `lxc stop; lxc move; lxc start` by hand beside the provider's stop-move-start (+40 s). */
const DOWNTIME_LXC = process.env.BENCH_DOWNTIME_LXC === "1";
/** read() calls in flight at once in the c10 passes, as a refresh runs them (10). */
const READ_CONCURRENCY = 10;
const ALL_PARTS = ["move", "downtime", "relay", "read", "drain"] as const;
const PARTS = new Set(
  (process.env.BENCH_ONLY ?? ALL_PARTS.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
);
for (const p of PARTS) if (!(ALL_PARTS as readonly string[]).includes(p)) throw new Error(`BENCH_ONLY: unknown part "${p}" (parts: ${ALL_PARTS.join(", ")})`);
function listEnv<T extends string>(name: string, all: readonly T[]): T[] {
  const v = (process.env[name] ?? all.join(","))
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  for (const x of v) if (!(all as readonly string[]).includes(x)) throw new Error(`${name}: unknown value "${x}" (values: ${all.join(", ")})`);
  return v as T[];
}
const CASES = listEnv("BENCH_CASES", ["pull", "push", "relay", "member"] as const);
const SIZES = listEnv("BENCH_SIZES", ["small", "big"] as const);
type Size = (typeof SIZES)[number];
/** The size as figure names carry it: `small`, or the big instances' data size (`400MB`). */
const sizeLabel = (size: Size) => (size === "big" ? `${BIG_MB}MB` : "small");
const moveName = (kind: Mode | "member", size: Size) => (kind === "member" ? `move.target.cross-member.${sizeLabel(size)}` : `move.${kind}.cross-remote.${sizeLabel(size)}`);

/** Instances of this run carry this tag, so cleanup never touches another run's or person's. */
const TAG = randomUUID().slice(0, 6);
const REMOTES = ["s1", "s2", "cluster"];
const MOVE_TIMEOUT_MS = 300_000 + BIG_MB * 1_000;

const figures: Figure[] = [];
const samples: Record<string, unknown> = {};
const notes: string[] = [];
const t0 = Date.now();

function progress(text: string): void {
  process.stderr.write(`bench +${Math.round((Date.now() - t0) / 1000)}s: ${text}\n`);
}

// The provider logs to stdout (the dynamic provider host shows it as info): keep its lines, with
// timestamps, in a file beside the results, so the table stays readable and the log is evidence.
fs.mkdirSync(OUT_DIR, { recursive: true });
const providerLog = fs.createWriteStream(path.join(OUT_DIR, "provider.log"), { flags: "w" });
const stdoutWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
  const s = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
  if (s.startsWith("lxd-placement: ")) {
    providerLog.write(`${new Date().toISOString()} ${s}`);
    return true;
  }
  return (stdoutWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
}) as typeof process.stdout.write;

// ---------------------------------------------------------------------------------------------
// Counting requests: requestCounter counts by method; a wrapper on LxdClient.prototype.call (no
// change to the provider) also tells list calls (`GET /instances?recursion=1`) from the rest.

interface Tally {
  total: number;
  byKind: Record<string, number>;
  listByRemote: Record<string, number>;
}
const tally: Tally = { total: 0, byKind: {}, listByRemote: {} };
function resetCounts(): void {
  requestCounter.byMethod.clear();
  requestCounter.total = 0;
  tally.total = 0;
  tally.byKind = {};
  tally.listByRemote = {};
}
function snapshotCounts() {
  return { total: requestCounter.total, byMethod: Object.fromEntries(requestCounter.byMethod), byKind: { ...tally.byKind }, listByRemote: { ...tally.listByRemote } };
}
const originalCall = LxdClient.prototype.call;
LxdClient.prototype.call = function (this: LxdClient, method: string, p: string, opts: Parameters<LxdClient["call"]>[2] = {}, schema?: unknown) {
  const kind =
    method === "GET" && p === "/instances" && opts.query?.recursion
      ? "list GET /instances?recursion"
      : /^\/instances\/[^/]+$/.test(p)
        ? `${method} /instances/{name}`
        : /^\/operations\/[^/]+\/wait$/.test(p)
          ? `${method} /operations/{id}/wait`
          : /^\/operations\//.test(p)
            ? `${method} /operations/{id}`
            : `${method} ${p || "/1.0"}`;
  tally.total++;
  tally.byKind[kind] = (tally.byKind[kind] ?? 0) + 1;
  if (kind.startsWith("list")) tally.listByRemote[this.remote.name] = (tally.listByRemote[this.remote.name] ?? 0) + 1;
  return (originalCall as (...a: unknown[]) => ReturnType<LxdClient["call"]>).call(this, method, p, opts, schema);
} as LxdClient["call"];

// ---------------------------------------------------------------------------------------------
// Instances managed through the provider, as the engine would hold them: inputs and outputs.

interface Managed {
  id: string;
  name: string;
  inputs: Record<string, unknown>;
  outs: Record<string, unknown>;
}

async function createManaged(name: string, remote: string, opts: { target?: string; running?: boolean; migration?: Record<string, unknown> } = {}): Promise<Managed> {
  const inputs: Record<string, unknown> = { name, image: "busybox", remote, running: opts.running ?? false };
  if (opts.target) inputs.target = opts.target;
  if (opts.migration) inputs.migration = opts.migration;
  const r = await deadline(provider.create(inputs), 120_000, `create ${name}`);
  return { id: r.id, name, inputs, outs: r.outs as unknown as Record<string, unknown> };
}

/** Write `mb` MiB of random data inside the instance (started for it); leave it running or stopped. */
async function fill(remote: string, name: string, mb: number, keepRunning: boolean): Promise<void> {
  await lxc(["start", `${remote}:${name}`], 60_000).catch((e) => {
    if (!/already running/i.test(String(e))) throw e;
  });
  await lxc(["exec", `${remote}:${name}`, "--", "sh", "-c", `dd if=/dev/urandom of=/bench-data bs=1M count=${mb} 2>/dev/null && sync`], 120_000 + mb * 500);
  if (!keepRunning) await lxc(["stop", `${remote}:${name}`], 60_000);
}

interface ProviderLeg {
  seconds: number;
  /** CPU seconds this process spent during the call (the relay's proxying is in it). */
  cpuSeconds: number;
  lastMove?: Record<string, unknown>;
  requests: ReturnType<typeof snapshotCounts>;
}

/** One move by the provider's update(), timed around the call exactly as the engine makes it. */
async function providerMove(m: Managed, change: Record<string, unknown>): Promise<ProviderLeg> {
  const news = { ...m.inputs, ...change };
  resetCounts();
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const r = await deadline(provider.update(m.id, m.outs, news), MOVE_TIMEOUT_MS, `provider update of ${m.name}`);
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const requests = snapshotCounts();
  m.inputs = news;
  m.outs = r.outs as unknown as Record<string, unknown>;
  return { seconds, cpuSeconds, lastMove: r.outs.lastMove as unknown as Record<string, unknown>, requests };
}

/** After a failed leg: find the instance (P6) and bring the engine's view of it up to date. */
async function resync(m: Managed): Promise<void> {
  const r = await deadline(provider.read(m.id, m.outs), 120_000, `read ${m.name}`);
  if (!r.id) throw new Error(`${m.name} is gone after a failed leg`);
  m.outs = r.props;
  m.inputs = { ...m.inputs, remote: r.props.remote, ...(r.props.location ? { target: r.props.location } : {}) };
}

async function lxcTimed(args: string[], timeoutMs = MOVE_TIMEOUT_MS): Promise<number> {
  return (await lxc(args, timeoutMs)).seconds;
}

async function whereIs(name: string): Promise<{ remote: string; location: string; status: string } | undefined> {
  for (const r of REMOTES) {
    const list = JSON.parse((await lxc(["list", `${r}:`, "--format", "json", "--all-projects"], 60_000)).stdout) as { name: string; location: string; status: string }[];
    const hit = list.find((i) => i.name === name);
    if (hit) return { remote: r, location: hit.location, status: hit.status };
  }
  return undefined;
}

/** Bytes of an instance's files on a `dir` pool (what a cold move transfers). */
async function instanceBytes(remote: string, name: string): Promise<number | undefined> {
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

// ---------------------------------------------------------------------------------------------
// 1. move.*  and  3. relay.*

type Mode = "pull" | "push" | "relay";
interface MoveSamples {
  provider: { seconds: number; cpuSeconds: number; load1: number; leg: string; lastMove?: Record<string, unknown>; requests: number; byKind: Record<string, number> }[];
  lxc: { seconds: number; cpuSeconds?: number; load1: number; leg: string }[];
  error?: string;
}
const moveSamples: Record<string, MoveSamples> = {};
let relayBytes: number | undefined;

async function moveCase(m: Managed, kind: Mode | "member", reps: number, key: string): Promise<void> {
  const s: MoveSamples = (moveSamples[key] = { provider: [], lxc: [] });
  const legs =
    kind === "member"
      ? [
          { leg: "m1->m2", change: { target: "m2" }, args: ["move", `cluster:${m.name}`, "--target", "m2"] },
          { leg: "m2->m1", change: { target: "m1" }, args: ["move", `cluster:${m.name}`, "--target", "m1"] },
        ]
      : [
          { leg: "s1->s2", change: { remote: "s2", migration: { mode: kind } }, args: ["move", `s1:${m.name}`, `s2:${m.name}`, "--mode", kind] },
          { leg: "s2->s1", change: { remote: "s1", migration: { mode: kind } }, args: ["move", `s2:${m.name}`, `s1:${m.name}`, "--mode", kind] },
        ];
  const pLeg = async (l: (typeof legs)[number]) => {
    const r = await providerMove(m, l.change);
    if (r.lastMove?.strategy !== "cold") notes.push(`${key}: the provider chose strategy "${String(r.lastMove?.strategy)}", not "cold"`);
    s.provider.push({ seconds: r.seconds, cpuSeconds: r.cpuSeconds, load1: os.loadavg()[0], leg: l.leg, lastMove: r.lastMove, requests: r.requests.total, byKind: r.requests.byKind });
    progress(`${key} provider ${l.leg}: ${r.seconds.toFixed(2)}s, cpu ${r.cpuSeconds.toFixed(2)}s, ${r.requests.total} requests, load ${os.loadavg()[0].toFixed(1)}`);
  };
  const lLeg = async (l: (typeof legs)[number]) => {
    const r = await lxcWithCpu(l.args, MOVE_TIMEOUT_MS);
    s.lxc.push({ seconds: r.seconds, cpuSeconds: r.cpuSeconds, load1: os.loadavg()[0], leg: l.leg });
    progress(`${key} lxc ${l.leg}: ${r.seconds.toFixed(2)}s, cpu ${r.cpuSeconds?.toFixed(2) ?? "?"}s, load ${os.loadavg()[0].toFixed(1)}`);
  };
  try {
    for (let rep = 0; rep < reps; rep++) {
      // ABBA. After lxc's two legs the instance is back where the provider's state says it is.
      await pLeg(legs[0]);
      await lLeg(legs[1]);
      await lLeg(legs[0]);
      await pLeg(legs[1]);
    }
  } catch (e) {
    s.error = (e as Error).message;
    progress(`${key}: FAILED: ${s.error}`);
    // Put the instance back where the next case expects it.
    await resync(m).catch(() => undefined);
    const home = kind === "member" ? { target: "m1" } : { remote: "s1" };
    const at = await whereIs(m.name);
    if (at && (kind === "member" ? at.location !== "m1" : at.remote !== "s1")) {
      await lxc(kind === "member" ? ["move", `cluster:${m.name}`, "--target", "m1"] : ["move", `${at.remote}:${m.name}`, `s1:${m.name}`], MOVE_TIMEOUT_MS);
      await resync(m);
    }
    m.inputs = { ...m.inputs, ...home };
  }
}

async function movePart(cases: (Mode | "member")[], sizes: Size[]): Promise<void> {
  for (const size of sizes) {
    const reps = size === "big" ? REPS_BIG : REPS_SMALL;
    const needServers = cases.some((c) => c !== "member");
    const needCluster = cases.includes("member");
    const srv = needServers ? await createManaged(`bench-mv-${size}-${TAG}`, "s1") : undefined;
    const mem = needCluster ? await createManaged(`bench-mc-${size}-${TAG}`, "cluster", { target: "m1" }) : undefined;
    if (size === "big") {
      progress(`writing ${BIG_MB} MiB into the ${size} instances`);
      if (srv) await fill("s1", srv.name, BIG_MB, false);
      if (mem) await fill("cluster", mem.name, BIG_MB, false);
      if (srv) relayBytes = await instanceBytes("s1", srv.name);
    }
    for (const c of cases) {
      const m = c === "member" ? mem! : srv!;
      await moveCase(m, c, reps, moveName(c, size));
    }
    for (const m of [srv, mem]) if (m) await provider.remove(m.id, m.outs).catch((e) => progress(`remove ${m.name}: ${(e as Error).message}`));
  }
}

function moveFigures(): void {
  for (const [key, s] of Object.entries(moveSamples)) {
    const p = median(s.provider.map((x) => x.seconds));
    const l = median(s.lxc.map((x) => x.seconds));
    const kind = key.split(".")[1];
    const base = kind === "target" ? "lxc move --target" : `lxc move --mode ${kind}`;
    const reqs = median(s.provider.map((x) => x.requests));
    figures.push(
      figure(key, "s", p, {
        baselineName: "lxc-move",
        baselineDetail: `${base}, same instance, ABBA`,
        baseline: l,
        target: { op: "<=", limit: 1.05 },
        samples: Math.min(s.provider.length, s.lxc.length),
        note: `${s.error ? `ERROR: ${s.error}; ` : ""}provider requests per move (median): ${reqs}`,
      }),
    );
    samples[key] = s;
  }
  const r = moveSamples[moveName("relay", "big")];
  if (r && relayBytes) {
    const mb = relayBytes / 1024 / 1024;
    const p = median(r.provider.map((x) => mb / x.seconds));
    const l = median(r.lxc.map((x) => mb / x.seconds));
    figures.push(
      figure("relay.throughput", "MiB/s", p, {
        baselineName: "lxc-move",
        baselineDetail: "lxc move --mode relay",
        baseline: l,
        samples: Math.min(r.provider.length, r.lxc.length),
        note: `${mb.toFixed(0)} MiB on disk (du -sb), cold move, both directions`,
      }),
    );
    const lc = r.lxc.map((x) => x.cpuSeconds).filter((x): x is number => x !== undefined);
    figures.push(
      figure("relay.cpu", "cpu-s", median(r.provider.map((x) => x.cpuSeconds)), {
        baselineName: "lxc-move",
        baselineDetail: "CPU seconds of the lxc CLI process of lxc move --mode relay (GNU time)",
        baseline: lc.length ? median(lc) : null,
        samples: r.provider.length,
        note: `CPU seconds of the relaying process per cold ${BIG_MB} MiB relay (provider: this Node process, whole update())`,
      }),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// 2. downtime.*

async function downtimePart(sizes: Size[]): Promise<void> {
  for (const size of sizes) await downtimeSize(size);
}

/**
 * One size: a running container moved s1 -> s2 and back by the provider with stop-move-start and
 * with the default (near-live), watched from outside; then the floors by hand with lxc.
 * Figures: downtime.<strategy>.<size> as observed (the chart's bars), .reported as lastMove says.
 */
async function downtimeSize(size: Size): Promise<void> {
  const L = sizeLabel(size);
  const sms = await createManaged(`bench-dt-sms-${size}-${TAG}`, "s1", { running: true, migration: { strategy: "stop-move-start" } });
  const nl = await createManaged(`bench-dt-nl-${size}-${TAG}`, "s1", { running: true });
  const floorName = `bench-dt-floor-${size}-${TAG}`;
  if (size === "big") {
    progress(`writing ${BIG_MB} MiB into two running containers`);
    await fill("s1", sms.name, BIG_MB, true);
    await fill("s1", nl.name, BIG_MB, true);
  }
  type Leg = { leg: string; reported: number; observed: number; frozen: number; duration: number; rounds?: number; strategy: string };
  const out = {
    smsProvider: [] as Leg[],
    nearLive: [] as Leg[],
    smsLxc: [] as { seconds: number; observed: number; leg: string }[],
    floorStopStart: [] as number[],
    floorRefresh: [] as { seconds: number; observed: number }[],
    floorPreCopy: undefined as { seconds: number; frozen: number; observed: number } | undefined,
    pollIntervalMs: [] as number[],
    errors: [] as string[],
  };
  samples[`downtime.${L}`] = out;
  const eyes = new Estate();
  const both = (name: string) => [
    { remote: "s1", name },
    { remote: "s2", name },
  ];
  try {
    // Floor 1: stop + start alone, nothing moved.
    for (let i = 0; i < 3; i++) {
      const a = await lxcTimed(["stop", `s1:${sms.name}`], 60_000);
      const b = await lxcTimed(["start", `s1:${sms.name}`], 60_000);
      out.floorStopStart.push(a + b);
    }
    progress(`downtime ${L} floor stop+start: ${out.floorStopStart.map((x) => x.toFixed(2)).join(", ")}s`);
    // Provider: stop-move-start and near-live interleaved, each there and back, watched from outside.
    const leg = async (m: Managed, to: string, into: "smsProvider" | "nearLive") => {
      const from = to === "s2" ? "s1" : "s2";
      const { result: r, seen } = await watch(eyes, both(m.name), () => providerMove(m, { remote: to }));
      const lm = r.lastMove ?? {};
      const rec: Leg = {
        leg: `${from}->${to}`,
        reported: Number(lm.downtimeSeconds),
        observed: seen.unavailableSeconds,
        frozen: seen.frozenSeconds,
        duration: Number(lm.durationSeconds),
        rounds: lm.preCopyRounds as number | undefined,
        strategy: String(lm.strategy),
      };
      out[into].push(rec);
      out.pollIntervalMs.push(seen.meanIntervalMs);
      progress(
        `downtime ${L} ${into} ${rec.leg}: strategy ${rec.strategy}, reported downtime ${rec.reported}s, observed ${rec.observed.toFixed(2)}s (frozen ${rec.frozen.toFixed(2)}s), move ${rec.duration}s`,
      );
      if (into === "nearLive" && rec.strategy !== "near-live") out.errors.push(`near-live leg ${rec.leg}: provider chose "${rec.strategy}"`);
    };
    for (let rep = 0; rep < REPS_DOWNTIME; rep++) {
      await leg(sms, "s2", "smsProvider");
      await leg(nl, "s2", "nearLive");
      await leg(sms, "s1", "smsProvider");
      await leg(nl, "s1", "nearLive");
    }
    // lxc by hand: stop + move + start, there and back (sms is on s1, running).
    for (const [from, to] of DOWNTIME_LXC
      ? [
          ["s1", "s2"],
          ["s2", "s1"],
        ]
      : []) {
      const { result: secs, seen } = await watch(eyes, both(sms.name), async () => {
        const a = await lxcTimed(["stop", `${from}:${sms.name}`], 60_000);
        const b = await lxcTimed(["move", `${from}:${sms.name}`, `${to}:${sms.name}`]);
        const c = await lxcTimed(["start", `${to}:${sms.name}`], 60_000);
        return a + b + c;
      });
      out.smsLxc.push({ seconds: secs, observed: seen.unavailableSeconds, leg: `${from}->${to}` });
      progress(`downtime ${L} lxc stop+move+start ${from}->${to}: ${secs.toFixed(2)}s (observed ${seen.unavailableSeconds.toFixed(2)}s)`);
    }
    // Floor 2: what near-live could reach by hand. Pre-copy while running with
    // --allow-inconsistent (without it LXD freezes the container for the whole transfer), then
    // stop + `lxc copy --refresh` (consistent: the source is stopped) + start the copy.
    const watchedFloor = [
      { remote: "s1", name: sms.name },
      { remote: "s2", name: floorName },
    ];
    const pre = await watch(eyes, [{ remote: "s1", name: sms.name }], () => lxcTimed(["copy", `s1:${sms.name}`, `s2:${floorName}`, "--stateless", "--allow-inconsistent"]));
    out.floorPreCopy = { seconds: pre.result, frozen: pre.seen.frozenSeconds, observed: pre.seen.unavailableSeconds };
    progress(
      `downtime ${L} floor pre-copy --allow-inconsistent: ${pre.result.toFixed(2)}s, source unavailable ${pre.seen.unavailableSeconds.toFixed(2)}s (frozen ${pre.seen.frozenSeconds.toFixed(2)}s)`,
    );
    for (let i = 0; i < 2; i++) {
      const { result: secs, seen } = await watch(eyes, watchedFloor, async () => {
        const a = await lxcTimed(["stop", `s1:${sms.name}`], 60_000);
        const b = await lxcTimed(["copy", `s1:${sms.name}`, `s2:${floorName}`, "--refresh"]);
        const c = await lxcTimed(["start", `s2:${floorName}`], 60_000);
        return a + b + c;
      });
      out.floorRefresh.push({ seconds: secs, observed: seen.unavailableSeconds });
      progress(`downtime ${L} floor stop+copy --refresh+start: ${secs.toFixed(2)}s (observed ${seen.unavailableSeconds.toFixed(2)}s)`);
      await lxc(["stop", `s2:${floorName}`, "--force"], 60_000);
      await lxc(["start", `s1:${sms.name}`], 60_000);
    }
  } catch (e) {
    out.errors.push((e as Error).message);
    progress(`downtime ${L}: FAILED: ${(e as Error).message}`);
  } finally {
    // The floor's copy carries the instance's marker: it must go before the provider looks again.
    await lxc(["delete", "--force", `s2:${floorName}`], 60_000).catch(() => undefined);
    await eyes.close();
  }
  const med = (xs: Leg[], f: (l: Leg) => number) => median(xs.map(f));
  const err = out.errors.length ? `ERROR: ${out.errors.join("; ")}; ` : "";
  const res = `polled every ${median(out.pollIntervalMs)?.toFixed(0)} ms`;
  const what = size === "big" ? `running busybox container with ${BIG_MB} MiB of random data` : "running busybox container, no data";
  const n = (x: string) => `${x}.${L}`;
  const smsObserved = med(out.smsProvider, (l) => l.observed);
  const smsReported = med(out.smsProvider, (l) => l.reported);
  const refreshObserved = median(out.floorRefresh.map((x) => x.observed));
  const stopStart = median(out.floorStopStart);
  figures.push(
    figure(
      n("downtime.near-live"),
      "s",
      med(out.nearLive, (l) => l.observed),
      {
        baselineName: n("downtime.stop-move-start"),
        baseline: smsObserved,
        target: { op: "<=", limit: 0.15 },
        samples: out.nearLive.length,
        note: `${err}${what}; seconds in which no copy was Running, seen from outside (${res}); Frozen counts as down; pre-copy rounds ${out.nearLive.map((x) => x.rounds).join(",")}`,
      },
    ),
    figure(
      n("downtime.near-live.reported"),
      "s",
      med(out.nearLive, (l) => l.reported),
      {
        baselineName: n("downtime.stop-move-start.reported"),
        baseline: smsReported,
        target: { op: "<=", limit: 0.15 },
        samples: out.nearLive.length,
        note: "as the provider reports it (lastMove.downtimeSeconds)",
      },
    ),
    figure(
      n("downtime.near-live.frozen"),
      "s",
      med(out.nearLive, (l) => l.frozen),
      { samples: out.nearLive.length, note: "of the observed downtime, seconds the source was Frozen by LXD during pre-copy" },
    ),
    figure(
      n("downtime.near-live.vs-floor"),
      "s",
      med(out.nearLive, (l) => l.observed),
      { baselineName: n("downtime.floor.refresh"), baseline: refreshObserved, samples: out.nearLive.length, note: "both observed from outside" },
    ),
    DOWNTIME_LXC
      ? figure(n("downtime.stop-move-start"), "s", smsObserved, {
          baselineName: n("downtime.lxc-stop-move-start"),
          baseline: median(out.smsLxc.map((x) => x.observed)),
          samples: out.smsProvider.length,
          note: `observed from outside (${res})`,
        })
      : figure(n("downtime.stop-move-start"), "s", smsObserved, { samples: out.smsProvider.length, note: `observed from outside (${res}); BENCH_DOWNTIME_LXC=1 adds lxc stop+move+start beside it` }),
    figure(n("downtime.stop-move-start.reported"), "s", smsReported, {
      baselineName: n("downtime.stop-move-start"),
      baseline: smsObserved,
      samples: out.smsProvider.length,
      note: "provider lastMove.downtimeSeconds, against the observed downtime",
    }),
    ...(DOWNTIME_LXC
      ? [
          figure(n("downtime.lxc-stop-move-start"), "s", median(out.smsLxc.map((x) => x.observed)), {
            samples: out.smsLxc.length,
            note: `by hand: lxc stop; lxc move; lxc start, observed (CLI wall time ${median(out.smsLxc.map((x) => x.seconds))?.toFixed(2)} s)`,
          }),
        ]
      : []),
    figure(n("downtime.floor.refresh"), "s", refreshObserved, {
      baselineName: n("downtime.floor.stop-start"),
      baseline: stopStart,
      samples: out.floorRefresh.length,
      note: `by hand, observed: lxc stop; lxc copy --refresh; lxc start (CLI wall time ${median(out.floorRefresh.map((x) => x.seconds))?.toFixed(2)} s), after a pre-copy with --allow-inconsistent`,
    }),
    figure(n("downtime.floor.pre-copy"), "s", out.floorPreCopy?.observed ?? null, {
      samples: out.floorPreCopy ? 1 : 0,
      note: `source unavailable (frozen ${out.floorPreCopy?.frozen.toFixed(2)} s) during lxc copy --stateless --allow-inconsistent of the running container, which took ${out.floorPreCopy?.seconds.toFixed(1)} s`,
    }),
    figure(n("downtime.floor.stop-start"), "s", stopStart, { samples: out.floorStopStart.length, note: "lxc stop; lxc start (CLI wall time): the lowest possible" }),
    figure(
      n("duration.near-live"),
      "s",
      med(out.nearLive, (l) => l.duration),
      { baselineName: n("duration.stop-move-start"), baseline: med(out.smsProvider, (l) => l.duration), samples: out.nearLive.length, note: "whole move (lastMove.durationSeconds)" },
    ),
    figure(
      n("duration.stop-move-start"),
      "s",
      med(out.smsProvider, (l) => l.duration),
      { samples: out.smsProvider.length, note: "whole move (lastMove.durationSeconds)" },
    ),
  );
  for (const m of [sms, nl]) await provider.remove(m.id, m.outs).catch((e) => progress(`remove ${m.name}: ${(e as Error).message}`));
}

// ---------------------------------------------------------------------------------------------
// 4. read.*

interface ReadItem {
  id: string;
  name: string;
  remote: string;
  member: string;
}

function propsOf(it: ReadItem, remote = it.remote): Record<string, unknown> {
  // What create() would have left in the state for this instance.
  return {
    name: it.name,
    image: "busybox",
    type: "container",
    config: {},
    devices: {},
    profiles: ["default"],
    running: false,
    remote,
    project: "default",
    description: "",
    migration: { strategy: "auto", mode: "pull", allowRestart: true, timeoutSeconds: 900, preCopyRounds: 2 },
    instanceId: it.id,
    location: it.member,
    status: "Stopped",
    moves: 0,
  };
}

async function readPart(): Promise<void> {
  const items: ReadItem[] = Array.from({ length: READ_N }, (_, i) => {
    const remote = REMOTES[i % REMOTES.length];
    const member = remote === "cluster" ? `m${(Math.floor(i / REMOTES.length) % 3) + 1}` : "";
    return { id: randomUUID(), name: `bench-rd-${TAG}-${String(i).padStart(3, "0")}`, remote, member };
  });
  const out: Record<string, unknown> = {};
  samples.read = out;
  let created: ReadItem[] = [];
  const setup = new Estate();
  try {
    // Created through the API in-process, 8 at a time: 200 `lxc init` processes cost ~40% more
    // wall time on 2 cores (CLI start-up), and this is set-up, not a measurement.
    const c0 = performance.now();
    const made = await pool(items, 8, async (it) => {
      const c = it.member ? setup.client(it.remote).useTarget(it.member) : setup.client(it.remote);
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          const op = await createInstance(c, { name: it.name, source: { type: "image", alias: "busybox" }, config: { [MARKER_KEY]: it.id }, profiles: ["default"] });
          await c.wait(op, 120_000);
          return true;
        } catch (e) {
          // A create whose answer was lost may still have happened: ours if it has our marker.
          const got = await getInstance(c.withTimeout(30_000), it.name).catch(() => undefined);
          if (got?.instance.config[MARKER_KEY] === it.id) return true;
          if (attempt === 1) progress(`create ${it.name}: ${(e as Error).message}`);
        }
      }
      return false;
    });
    created = items.filter((_, i) => made[i]);
    out.createSeconds = (performance.now() - c0) / 1000;
    progress(`created ${created.length}/${items.length} instances in ${(out.createSeconds as number).toFixed(1)}s`);
    if (created.length < items.length) notes.push(`read: only ${created.length} of ${items.length} instances could be created`);
    const n = created.length;
    if (n === 0) throw new Error("read: no instance could be created");
    const remotes = loadRemotes(process.env).names;
    out.remotesSeenByProvider = remotes;

    const floorEstate = new Estate();
    const noop = async (it: ReadItem) => ({ id: it.id, props: propsOf(it) });
    const floorGet = async (it: ReadItem) => floorEstate.client(it.remote).call("GET", `/instances/${it.name}`);
    let wrong = 0;
    const check = (it: ReadItem, r: { id: string; props: Record<string, unknown> }) => {
      if (r.id !== it.id || r.props.remote !== it.remote || r.props.name !== it.name) wrong++;
    };
    const providerRead = (stale: boolean) => async (it: ReadItem) => {
      // Stale: the state says the instance is on another remote (moved outside Pulumi).
      const hint = stale ? REMOTES[(REMOTES.indexOf(it.remote) + 1) % REMOTES.length] : it.remote;
      const r = await provider.read(it.id, propsOf(it, hint));
      check(it, r);
      return r;
    };
    const pass = async (label: string, fn: (it: ReadItem) => Promise<unknown>, concurrency: number, subset = created) => {
      resetCounts();
      const s = performance.now();
      await deadline(pool(subset, concurrency, fn), 600_000, label);
      const seconds = (performance.now() - s) / 1000;
      return { label, n: subset.length, seconds, msPerResource: (seconds * 1000) / subset.length, requests: snapshotCounts() };
    };
    type Pass = Awaited<ReturnType<typeof pass>>;
    const runs: Record<string, Pass[]> = {};
    const add = (p: Pass) => (
      (runs[p.label] ??= []).push(p),
      progress(`read ${p.label}: ${p.seconds.toFixed(2)}s, ${p.requests.total} requests, ${p.requests.byKind["list GET /instances?recursion"] ?? 0} list calls`)
    );
    // One untimed pass of each first: connections open, and LXD done with the burst of creates
    // (the first timed pass after it was up to 20x slower than the next in trial runs).
    await pool(created, READ_CONCURRENCY, providerRead(false));
    await pool(created, READ_CONCURRENCY, floorGet);
    wrong = 0;
    for (let rep = 0; rep < READ_REPS; rep++) {
      add(await pass("noop.seq", noop, 1));
      add(await pass("noop.c10", noop, READ_CONCURRENCY));
      // ABBA across reps: the floor first in even reps, the provider first in odd ones.
      const order: [string, (it: ReadItem) => Promise<unknown>][] =
        rep % 2 === 0
          ? [
              ["floor-get", floorGet],
              ["hinted", providerRead(false)],
            ]
          : [
              ["hinted", providerRead(false)],
              ["floor-get", floorGet],
            ];
      for (const [label, fn] of order) add(await pass(`${label}.seq`, fn, 1));
      for (const [label, fn] of order) add(await pass(`${label}.c10`, fn, READ_CONCURRENCY));
    }
    // One list per remote: the O(remotes) way to see every instance at once.
    for (let rep = 0; rep < READ_REPS; rep++) {
      resetCounts();
      const s = performance.now();
      await Promise.all(REMOTES.map((r) => floorEstate.instances(r, { fresh: true })));
      const seconds = (performance.now() - s) / 1000;
      add({ label: "floor-list.all", n, seconds, msPerResource: (seconds * 1000) / n, requests: snapshotCounts() });
    }
    // Every instance exists while a sample of them is read with a stale hint: lists are full size.
    const staleSample = created.filter((_, i) => i % Math.max(1, Math.floor(n / READ_STALE_N)) === 0).slice(0, READ_STALE_N);
    add(await pass("stale.c10", providerRead(true), READ_CONCURRENCY, staleSample));
    await floorEstate.close();
    out.passes = runs;
    out.wrongResults = wrong;
    if (wrong) notes.push(`read: ${wrong} read() results did not report the instance's real remote/name`);

    const med = (label: string, f: (p: Pass) => number) => median((runs[label] ?? []).map(f));
    const ms = (label: string) => med(label, (p) => p.msPerResource);
    const perInstance = (label: string) => med(label, (p) => p.requests.total / p.n);
    const lists = (label: string) => med(label, (p) => p.requests.byKind["list GET /instances?recursion"] ?? 0);
    const listTarget = { op: "<=" as const, limit: remotes.length, on: "value" as const };
    for (const mode of ["seq", "c10"]) {
      figures.push(
        figure(`read.hinted.${mode}.time`, "ms/resource", ms(`hinted.${mode}`), {
          baselineName: "noop-async-fn",
          baselineDetail: "a no-op async function per resource",
          baseline: ms(`noop.${mode}`),
          samples: runs[`hinted.${mode}`]?.length,
        }),
        figure(`read.hinted.${mode}.vs-get`, "ms/resource", ms(`hinted.${mode}`), {
          baselineName: "raw-get-instance",
          baselineDetail: "one raw GET /instances/{name} per instance",
          baseline: ms(`floor-get.${mode}`),
          samples: runs[`hinted.${mode}`]?.length,
        }),
      );
    }
    figures.push(
      figure("read.hinted.c10.requests", "req/instance", perInstance("hinted.c10"), { samples: runs["hinted.c10"]?.length, note: JSON.stringify(runs["hinted.c10"]?.[0]?.requests.byKind ?? {}) }),
      figure("read.hinted.c10.list-calls", "calls", lists("hinted.c10"), {
        target: listTarget,
        samples: runs["hinted.c10"]?.length,
        note: `for ${n} instances; target: O(remotes), ${remotes.length} remotes (${remotes.join(", ")})`,
      }),
      figure("read.stale.c10.time", "ms/resource", ms("stale.c10"), {
        baselineName: "list-per-remote",
        baselineDetail: `one list per remote, once, divided by ${n}`,
        baseline: ms("floor-list.all"),
        samples: 1,
        note: `state names the wrong remote (moved outside Pulumi); ${staleSample.length} of ${n} instances read`,
      }),
      figure("read.stale.c10.requests", "req/instance", perInstance("stale.c10"), { samples: 1, note: JSON.stringify(runs["stale.c10"]?.[0]?.requests.byKind ?? {}) }),
      figure("read.stale.c10.list-calls", "calls", lists("stale.c10"), {
        target: listTarget,
        samples: 1,
        note: `for ${staleSample.length} instances (${((lists("stale.c10") ?? 0) / staleSample.length).toFixed(1)} per instance), by remote ${JSON.stringify(runs["stale.c10"]?.[0]?.requests.listByRemote ?? {})}`,
      }),
    );
  } finally {
    const d0 = performance.now();
    const left: string[] = [];
    await pool(created, 8, async (it) => deleteInstance(setup.client(it.remote).withTimeout(60_000), it.name).catch(() => left.push(`${it.remote}:${it.name}`)));
    if (left.length) await deleteNames(left);
    await setup.close();
    out.deleteSeconds = (performance.now() - d0) / 1000;
    progress(`deleted the read instances in ${(out.deleteSeconds as number).toFixed(1)}s`);
  }
}

// ---------------------------------------------------------------------------------------------
// 5. drain.*  (bench/drain.ts: creates, drains, evacuates and deletes its own `drain-<tag>-N`)

/** The member bench/drain.ts drains and evacuates. */
const DRAIN_MEMBER = "m3";
/** `drain-*` instances that were there before the drain part: not ours, never deleted. */
let drainBefore: Set<string> | undefined;
/** The drain part is under way: an interruption may leave the member evacuated. */
let drainRunning = false;

async function drainInstances(): Promise<{ name: string; project: string }[]> {
  const list = JSON.parse((await lxc(["list", "cluster:", "--format", "json", "--all-projects"], 60_000)).stdout) as { name: string; project: string }[];
  return list.filter((i) => i.name.startsWith("drain-"));
}

async function drainPart(): Promise<void> {
  drainBefore = new Set((await drainInstances()).map((i) => `${i.project}/${i.name}`));
  drainRunning = true;
  let got: Figure[];
  try {
    got = (await runDrainBench()).map(fromDrain);
  } catch (e) {
    const msg = (e as Error).message;
    progress(`drain: FAILED: ${msg}`);
    notes.push(`drain: ${msg}`);
    got = ["drain.wall", "drain.downtime.max"].map((name) => ({ ...figure(name, "s", null, { baselineName: "lxc-cluster-evacuate", baseline: null }), met: "no" as const, note: `ERROR: ${msg}` }));
  } finally {
    drainRunning = false;
  }
  figures.push(...got);
}

// ---------------------------------------------------------------------------------------------

async function deleteNames(refs: string[]): Promise<void> {
  const chunks: string[][] = [];
  for (let i = 0; i < refs.length; i += 10) chunks.push(refs.slice(i, i + 10));
  await pool(chunks, 4, async (c) => {
    await lxc(["delete", "--force", ...c], 180_000).catch(async () => {
      // One missing name fails the whole call: retry one by one.
      for (const r of c) await lxc(["delete", "--force", r], 60_000).catch(() => undefined);
    });
  });
}

/** Delete every instance of this run, wherever it is (the tag is in every name). */
async function cleanup(): Promise<void> {
  const refs: string[] = [];
  for (const r of REMOTES) {
    try {
      const list = JSON.parse((await lxc(["list", `${r}:`, "--format", "json", "--all-projects"], 60_000)).stdout) as { name: string; project: string }[];
      for (const i of list) if (i.name.startsWith("bench-") && i.name.includes(TAG)) refs.push(`${r}:${i.name}`);
    } catch (e) {
      progress(`cleanup: cannot list ${r}: ${(e as Error).message}`);
    }
  }
  if (refs.length) {
    progress(`cleanup: deleting ${refs.length} leftover instance(s)`);
    await deleteNames(refs);
  }
  if (drainBefore) await drainCleanup(drainBefore);
}

/**
 * What the drain part left (bench/drain.ts cleans up after itself, but not when this process is
 * interrupted): the member still evacuated, and `drain-*` instances that were not there before it.
 */
async function drainCleanup(before: Set<string>): Promise<void> {
  if (drainRunning) {
    try {
      const members = JSON.parse((await lxc(["cluster", "list", "cluster:", "--format", "json"], 60_000)).stdout) as { server_name: string; status: string }[];
      if (members.some((m) => m.server_name === DRAIN_MEMBER && /evacuat/i.test(m.status))) {
        progress(`cleanup: restoring cluster member ${DRAIN_MEMBER}, left evacuated by the drain part`);
        await lxc(["cluster", "restore", `cluster:${DRAIN_MEMBER}`, "--force"], 1_800_000);
      }
    } catch (e) {
      progress(`cleanup: cannot check or restore ${DRAIN_MEMBER} (run \`lxc cluster restore cluster:${DRAIN_MEMBER}\`): ${(e as Error).message}`);
    }
  }
  try {
    const left = (await drainInstances()).filter((i) => !before.has(`${i.project}/${i.name}`));
    if (left.length) progress(`cleanup: deleting ${left.length} instance(s) left by the drain part`);
    for (const i of left) await lxc(["delete", "--force", `cluster:${i.name}`, "--project", i.project], 120_000).catch((e) => progress(`cleanup: ${i.name}: ${(e as Error).message}`));
  } catch (e) {
    progress(`cleanup: cannot list the drain part's instances: ${(e as Error).message}`);
  }
}

async function overhead(): Promise<void> {
  // What the CLI pays per invocation (process start, config, TLS, one GET): in every lxc figure.
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) xs.push((await lxc(["query", "s1:/1.0"], 30_000)).seconds);
  const e = new Estate();
  const ys: number[] = [];
  for (let i = 0; i < 5; i++) {
    const s = performance.now();
    await e.client("s1").call("GET", "");
    ys.push((performance.now() - s) / 1000);
  }
  await e.close();
  figures.push(
    figure("overhead.lxc-query", "s", median(xs), {
      baselineName: "in-process-get",
      baselineDetail: "GET /1.0 by the provider's client, in-process",
      baseline: median(ys),
      samples: 5,
      note: "CLI start-up is inside every lxc figure; engine start-up is not inside the provider's",
    }),
  );
}

/** The command that reproduces this run: the BENCH_* and provider settings in effect, and the options. */
const command = [
  ...Object.keys(process.env)
    .filter((k) => (k.startsWith("BENCH_") && k !== "BENCH_ONLY") || k.startsWith("LXD_PLACEMENT_"))
    .sort()
    .map((k) => `${k}=${process.env[k]}`),
  `BENCH_ONLY=${[...PARTS].join(",")}`,
  "npm run bench",
  ...(process.argv.length > 2 ? ["--", ...process.argv.slice(2)] : []),
].join(" ");

/** The downtime chart (always, beside results.json, and to --chart FILE) and --json FILE. */
function writeOutputs(startedAt: string, head: string, cmd: string): string[] {
  const written: string[] = [];
  const write = (file: string, text: string) => {
    const p = path.resolve(file);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
    written.push(path.relative(process.cwd(), p));
  };
  const svg = downtimeChart(figures, {
    subtitle: `observed from outside; run of ${startedAt.slice(0, 16).replace("T", " ")} UTC, HEAD ${head}, ${os.cpus().length} cores`,
    description: `Produced by: ${cmd}`,
  });
  write(path.join(OUT_DIR, "downtime.svg"), svg);
  if (ARGS.chart) {
    // A run without the downtime part has no bars: keep the chart a previous run left there.
    if (figures.some((f) => f.name.startsWith("downtime."))) write(ARGS.chart, svg);
    else progress(`--chart ${ARGS.chart}: not written, this run has no downtime figures`);
  }
  if (ARGS.json) write(ARGS.json, `${JSON.stringify(toJson(figures), null, 2)}\n`);
  return written;
}

async function main(): Promise<void> {
  progress(`parts: ${[...PARTS].join(",")}; big instance ${BIG_MB} MiB; reps small ${REPS_SMALL}, big ${REPS_BIG}, downtime ${REPS_DOWNTIME}; tag ${TAG}`);
  const load0 = os.loadavg();
  // What is measured: the provider as built from the work tree (bench.sh builds it just before).
  const head = await run("git", ["rev-parse", "--short", "HEAD"], 10_000);
  const dirty = await run("git", ["status", "--porcelain", "--", "provider"], 10_000);
  const git = {
    head: head.stdout.trim(),
    uncommittedProviderFiles: dirty.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => l.slice(3)),
  };
  let failed: unknown;
  let interrupted = false;
  const onSignal = (sig: string) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    progress(`${sig}: cleaning up`);
    cleanup().finally(() => process.exit(130));
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  try {
    await overhead();
    if (PARTS.has("move")) await movePart(CASES, SIZES);
    else if (PARTS.has("relay")) await movePart(["relay"], ["big"]);
    moveFigures();
    if (PARTS.has("downtime")) await downtimePart(SIZES);
    if (PARTS.has("read")) await readPart();
    if (PARTS.has("drain")) await drainPart();
  } catch (e) {
    failed = e;
    progress(`FAILED: ${(e as Error).stack ?? e}`);
  } finally {
    await cleanup();
  }
  const result = {
    git,
    command,
    startedAt: new Date(t0).toISOString(),
    seconds: Math.round((Date.now() - t0) / 1000),
    machine: { cpus: os.cpus().length, loadavgStart: load0, loadavgEnd: os.loadavg() },
    settings: { BIG_MB, REPS_SMALL, REPS_BIG, REPS_DOWNTIME, READ_N, READ_REPS, READ_CONCURRENCY },
    figures: toJson(figures),
    notes,
    error: failed ? String((failed as Error).message ?? failed) : undefined,
    samples,
  };
  fs.writeFileSync(path.join(OUT_DIR, "results.json"), JSON.stringify(result, null, 2));
  const written = writeOutputs(result.startedAt, git.head, command);
  stdoutWrite(`\n${table(figures)}\n`);
  for (const f of figures) if (f.note) stdoutWrite(`  ${f.name}: ${f.note}\n`);
  for (const n of notes) stdoutWrite(`note: ${n}\n`);
  stdoutWrite(
    `\n${figures.filter((f) => f.met === "yes").length} of ${figures.filter((f) => f.met !== "n/a").length} targets met; ${result.seconds}s; results in ${path.relative(process.cwd(), path.join(OUT_DIR, "results.json"))}\n`,
  );
  stdoutWrite(`command: ${command}\nwritten: ${written.join(", ")}\n`);
  providerLog.end();
  process.exitCode = failed ? 1 : 0;
}

void main();
