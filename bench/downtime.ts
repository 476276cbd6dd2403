/**
 * downtime.*: a running container moved s1 -> s2 and back by the provider with stop-move-start
 * and with the default (near-live), watched from outside; then the floors by hand with lxc.
 */
import { Estate } from "../provider/estate";
import { emptyResult, sizeLabel, type Bench, type PartResult, type Size } from "./context";
import { createManaged, fill, lxcTimed, providerMove, removeManaged, type Managed } from "./managed";
import { watch } from "./observer";
import { figure, median, type Figure } from "./report";
import { lxc } from "./shell";

export async function downtimePart(b: Bench, sizes: Size[]): Promise<PartResult> {
  const out = emptyResult();
  for (const size of sizes) {
    const r = await downtimeSize(b, size);
    out.figures.push(...r.figures);
    Object.assign(out.samples, r.samples);
  }
  return out;
}

type Leg = { leg: string; reported: number; observed: number; frozen: number; duration: number; rounds?: number; strategy: string };
interface Samples {
  smsProvider: Leg[];
  nearLive: Leg[];
  smsLxc: { seconds: number; observed: number; leg: string }[];
  floorStopStart: number[];
  floorRefresh: { seconds: number; observed: number }[];
  floorPreCopy?: { seconds: number; frozen: number; observed: number };
  pollIntervalMs: number[];
  errors: string[];
}

/**
 * One size. Figures: downtime.<strategy>.<size> as observed (the chart's bars), .reported as
 * lastMove says, the floors, and duration.<strategy>.<size>.
 */
async function downtimeSize(b: Bench, size: Size): Promise<PartResult> {
  const result = emptyResult();
  const { bigMb, repsDowntime, downtimeLxc, moveTimeoutMs } = b.settings;
  const L = sizeLabel(b.settings, size);
  const lxcMove = (args: string[]) => lxcTimed(args, moveTimeoutMs);
  const sms = await createManaged(`bench-dt-sms-${size}-${b.tag}`, "s1", { running: true, migration: { strategy: "stop-move-start" } });
  const nl = await createManaged(`bench-dt-nl-${size}-${b.tag}`, "s1", { running: true });
  const floorName = `bench-dt-floor-${size}-${b.tag}`;
  if (size === "big") {
    b.progress(`writing ${bigMb} MiB into two running containers`);
    await fill("s1", sms.name, bigMb, true);
    await fill("s1", nl.name, bigMb, true);
  }
  const out: Samples = { smsProvider: [], nearLive: [], smsLxc: [], floorStopStart: [], floorRefresh: [], pollIntervalMs: [], errors: [] };
  result.samples[`downtime.${L}`] = out;
  const eyes = new Estate();
  const both = (name: string) => [
    { remote: "s1", name },
    { remote: "s2", name },
  ];
  try {
    // Floor 1: stop + start alone, nothing moved.
    for (let i = 0; i < 3; i++) {
      const t1 = await lxcTimed(["stop", `s1:${sms.name}`], 60_000);
      const t2 = await lxcTimed(["start", `s1:${sms.name}`], 60_000);
      out.floorStopStart.push(t1 + t2);
    }
    b.progress(`downtime ${L} floor stop+start: ${out.floorStopStart.map((x) => x.toFixed(2)).join(", ")}s`);
    // Provider: stop-move-start and near-live interleaved, each there and back, watched from outside.
    const leg = async (m: Managed, to: string, into: "smsProvider" | "nearLive") => {
      const from = to === "s2" ? "s1" : "s2";
      const { result: r, seen } = await watch(eyes, both(m.name), () => providerMove(b, m, { remote: to }));
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
      b.progress(
        `downtime ${L} ${into} ${rec.leg}: strategy ${rec.strategy}, reported downtime ${rec.reported}s, observed ${rec.observed.toFixed(2)}s (frozen ${rec.frozen.toFixed(2)}s), move ${rec.duration}s`,
      );
      if (into === "nearLive" && rec.strategy !== "near-live") out.errors.push(`near-live leg ${rec.leg}: provider chose "${rec.strategy}"`);
    };
    for (let rep = 0; rep < repsDowntime; rep++) {
      await leg(sms, "s2", "smsProvider");
      await leg(nl, "s2", "nearLive");
      await leg(sms, "s1", "smsProvider");
      await leg(nl, "s1", "nearLive");
    }
    // lxc by hand: stop + move + start, there and back (sms is on s1, running).
    for (const [from, to] of downtimeLxc
      ? [
          ["s1", "s2"],
          ["s2", "s1"],
        ]
      : []) {
      const { result: secs, seen } = await watch(eyes, both(sms.name), async () => {
        const t1 = await lxcTimed(["stop", `${from}:${sms.name}`], 60_000);
        const t2 = await lxcMove(["move", `${from}:${sms.name}`, `${to}:${sms.name}`]);
        const t3 = await lxcTimed(["start", `${to}:${sms.name}`], 60_000);
        return t1 + t2 + t3;
      });
      out.smsLxc.push({ seconds: secs, observed: seen.unavailableSeconds, leg: `${from}->${to}` });
      b.progress(`downtime ${L} lxc stop+move+start ${from}->${to}: ${secs.toFixed(2)}s (observed ${seen.unavailableSeconds.toFixed(2)}s)`);
    }
    // Floor 2: what near-live could reach by hand. Pre-copy while running with
    // --allow-inconsistent (without it LXD freezes the container for the whole transfer), then
    // stop + `lxc copy --refresh` (consistent: the source is stopped) + start the copy.
    const watchedFloor = [
      { remote: "s1", name: sms.name },
      { remote: "s2", name: floorName },
    ];
    const pre = await watch(eyes, [{ remote: "s1", name: sms.name }], () => lxcMove(["copy", `s1:${sms.name}`, `s2:${floorName}`, "--stateless", "--allow-inconsistent"]));
    out.floorPreCopy = { seconds: pre.result, frozen: pre.seen.frozenSeconds, observed: pre.seen.unavailableSeconds };
    b.progress(
      `downtime ${L} floor pre-copy --allow-inconsistent: ${pre.result.toFixed(2)}s, source unavailable ${pre.seen.unavailableSeconds.toFixed(2)}s (frozen ${pre.seen.frozenSeconds.toFixed(2)}s)`,
    );
    for (let i = 0; i < 2; i++) {
      const { result: secs, seen } = await watch(eyes, watchedFloor, async () => {
        const t1 = await lxcTimed(["stop", `s1:${sms.name}`], 60_000);
        const t2 = await lxcMove(["copy", `s1:${sms.name}`, `s2:${floorName}`, "--refresh"]);
        const t3 = await lxcTimed(["start", `s2:${floorName}`], 60_000);
        return t1 + t2 + t3;
      });
      out.floorRefresh.push({ seconds: secs, observed: seen.unavailableSeconds });
      b.progress(`downtime ${L} floor stop+copy --refresh+start: ${secs.toFixed(2)}s (observed ${seen.unavailableSeconds.toFixed(2)}s)`);
      await lxc(["stop", `s2:${floorName}`, "--force"], 60_000);
      await lxc(["start", `s1:${sms.name}`], 60_000);
    }
  } catch (e) {
    out.errors.push((e as Error).message);
    b.progress(`downtime ${L}: FAILED: ${(e as Error).message}`);
  } finally {
    // The floor's copy carries the instance's marker: it must go before the provider looks again.
    await lxc(["delete", "--force", `s2:${floorName}`], 60_000).catch(() => undefined);
    await eyes.close();
  }
  result.figures.push(...downtimeFigures(b, size, out));
  await removeManaged(b, [sms, nl]);
  return result;
}

/** The figures of one size from its samples. */
function downtimeFigures(b: Bench, size: Size, out: Samples): Figure[] {
  const { bigMb, downtimeLxc } = b.settings;
  const L = sizeLabel(b.settings, size);
  const med = (xs: Leg[], f: (l: Leg) => number) => median(xs.map(f));
  const err = out.errors.length ? `ERROR: ${out.errors.join("; ")}; ` : "";
  const res = `polled every ${median(out.pollIntervalMs)?.toFixed(0)} ms`;
  const what = size === "big" ? `running busybox container with ${bigMb} MiB of random data` : "running busybox container, no data";
  const n = (x: string) => `${x}.${L}`;
  const smsObserved = med(out.smsProvider, (l) => l.observed);
  const smsReported = med(out.smsProvider, (l) => l.reported);
  const refreshObserved = median(out.floorRefresh.map((x) => x.observed));
  const stopStart = median(out.floorStopStart);
  return [
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
    downtimeLxc
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
    ...(downtimeLxc
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
  ];
}
