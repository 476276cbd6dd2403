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
 * Code: this file is main (options, the parts in order, outputs, cleanup); each part is a module
 * returning its figures (move.ts, downtime.ts, read.ts, drain.ts, overhead.ts); context.ts holds
 * the settings and the request tally (LxdClient's `onRequest`), managed.ts the provider-side
 * helpers, cleanup.ts what deletes this run's instances.
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
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as provider from "../provider/resource";
import { Bench, emptyResult, READ_CONCURRENCY, settingsFrom, type PartResult, type Settings } from "./context";
import { cleanup } from "./cleanup";
import { downtimeChart } from "./chart";
import { downtimePart } from "./downtime";
import { drainPart, type DrainState } from "./drain";
import { movePart } from "./move";
import { overheadPart } from "./overhead";
import { readPart } from "./read";
import { benchArgs, table, toJson, USAGE, type BenchArgs, type Figure } from "./report";
import { run, SANDBOX } from "./shell";

const OUT_DIR = path.join(SANDBOX, "bench");

/** The command that reproduces this run: the BENCH_* and provider settings in effect, and the options. */
function commandOf(s: Settings, argv: string[]): string {
  return [
    ...Object.keys(process.env)
      // The provider's settings; LXD_PLACEMENT_POLICY_PACK (exported by env.sh) is not one.
      .filter((k) => (k.startsWith("BENCH_") && k !== "BENCH_ONLY") || (k.startsWith("LXD_PLACEMENT_") && k !== "LXD_PLACEMENT_POLICY_PACK"))
      .sort()
      .map((k) => `${k}=${process.env[k]}`),
    `BENCH_ONLY=${[...s.parts].join(",")}`,
    "npm run bench",
    ...(argv.length ? ["--", ...argv] : []),
  ].join(" ");
}

/** The downtime chart (always, beside results.json, and to --chart FILE) and --json FILE. */
function writeOutputs(b: Bench, args: BenchArgs, figures: Figure[], startedAt: string, head: string, cmd: string): string[] {
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
  if (args.chart) {
    // A run without the downtime part has no bars: keep the chart a previous run left there.
    if (figures.some((f) => f.name.startsWith("downtime."))) write(args.chart, svg);
    else b.progress(`--chart ${args.chart}: not written, this run has no downtime figures`);
  }
  if (args.json) write(args.json, `${JSON.stringify(toJson(figures), null, 2)}\n`);
  return written;
}

/** What is measured: the provider as built from the work tree (bench.sh builds it just before). */
async function gitState(): Promise<{ head: string; uncommittedProviderFiles: string[] }> {
  const head = await run("git", ["rev-parse", "--short", "HEAD"], 10_000);
  const dirty = await run("git", ["status", "--porcelain", "--", "provider"], 10_000);
  return {
    head: head.stdout.trim(),
    uncommittedProviderFiles: dirty.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => l.slice(3)),
  };
}

/** The parts in order; each one's figures, samples and notes gathered as it ends. */
async function runParts(b: Bench, drain: DrainState, into: PartResult): Promise<void> {
  const { parts, cases, sizes } = b.settings;
  const take = (r: PartResult) => {
    into.figures.push(...r.figures);
    Object.assign(into.samples, r.samples);
    into.notes.push(...r.notes);
  };
  take(await overheadPart());
  if (parts.has("move")) take(await movePart(b, cases, sizes));
  else if (parts.has("relay")) take(await movePart(b, ["relay"], ["big"]));
  if (parts.has("downtime")) take(await downtimePart(b, sizes));
  if (parts.has("read")) take(await readPart(b));
  if (parts.has("drain")) take(await drainPart(b, drain));
}

async function main(argv: string[]): Promise<number> {
  let args: BenchArgs;
  let settings: Settings;
  try {
    args = benchArgs(argv);
    settings = settingsFrom(process.env);
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  process.env.LXD_CONF ??= path.join(SANDBOX, "lxc");
  const b = new Bench(settings);
  const s = b.settings;
  // The provider logs to stdout (the dynamic provider host shows it as info): keep its lines, with
  // timestamps, in a file beside the results, so the table stays readable and the log is evidence.
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const providerLog = fs.createWriteStream(path.join(OUT_DIR, "provider.log"), { flags: "w" });
  provider.inProcess({ log: (line) => providerLog.write(`${new Date().toISOString()} ${line}\n`), onRequest: b.tally.onRequest });
  const command = commandOf(s, argv);
  b.progress(`parts: ${[...s.parts].join(",")}; big instance ${s.bigMb} MiB; reps small ${s.repsSmall}, big ${s.repsBig}, downtime ${s.repsDowntime}; tag ${b.tag}`);
  const load0 = os.loadavg();
  const git = await gitState();
  const drain: DrainState = { running: false };
  let interrupted = false;
  const onSignal = (sig: string) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    b.progress(`${sig}: cleaning up`);
    cleanup(b, drain).finally(() => process.exit(130));
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  const got = emptyResult();
  let failed: unknown;
  try {
    await runParts(b, drain, got);
  } catch (e) {
    failed = e;
    b.progress(`FAILED: ${(e as Error).stack ?? e}`);
  } finally {
    await cleanup(b, drain);
  }
  const { figures, notes } = got;
  const result = {
    git,
    command,
    startedAt: new Date(b.t0).toISOString(),
    seconds: Math.round((Date.now() - b.t0) / 1000),
    machine: { cpus: os.cpus().length, loadavgStart: load0, loadavgEnd: os.loadavg() },
    settings: { BIG_MB: s.bigMb, REPS_SMALL: s.repsSmall, REPS_BIG: s.repsBig, REPS_DOWNTIME: s.repsDowntime, READ_N: s.readN, READ_REPS: s.readReps, READ_CONCURRENCY },
    figures: toJson(figures),
    notes,
    error: failed ? String((failed as Error).message ?? failed) : undefined,
    samples: got.samples,
  };
  fs.writeFileSync(path.join(OUT_DIR, "results.json"), JSON.stringify(result, null, 2));
  const written = writeOutputs(b, args, figures, result.startedAt, git.head, command);
  const out = (text: string) => process.stdout.write(text);
  out(`\n${table(figures)}\n`);
  for (const f of figures) if (f.note) out(`  ${f.name}: ${f.note}\n`);
  for (const n of notes) out(`note: ${n}\n`);
  out(
    `\n${figures.filter((f) => f.met === "yes").length} of ${figures.filter((f) => f.met !== "n/a").length} targets met; ${result.seconds}s; results in ${path.relative(process.cwd(), path.join(OUT_DIR, "results.json"))}\n`,
  );
  out(`command: ${command}\nwritten: ${written.join(", ")}\n`);
  await new Promise((r) => providerLog.end(r));
  return failed ? 1 : 0;
}

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
