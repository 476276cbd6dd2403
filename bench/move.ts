/**
 * move.* and relay.*: a cold move (stopped instance) by the provider's update() next to
 * `lxc move` in the same mode, on the same instance, ABBA (see run.ts); relay throughput and CPU
 * come from the big relay case.
 */
import * as os from "node:os";
import { emptyResult, sizeLabel, type Bench, type Case, type Mode, type PartResult, type Size } from "./context";
import { createManaged, fill, instanceBytes, providerMove, removeManaged, resync, whereIs, type Managed } from "./managed";
import { figure, median } from "./report";
import { lxc, lxcWithCpu } from "./shell";

interface MoveSamples {
  provider: { seconds: number; cpuSeconds: number; load1: number; leg: string; lastMove?: Record<string, unknown>; requests: number; byKind: Record<string, number> }[];
  lxc: { seconds: number; cpuSeconds?: number; load1: number; leg: string }[];
  error?: string;
}

export const moveName = (b: Bench, kind: Case, size: Size) =>
  kind === "member" ? `move.target.cross-member.${sizeLabel(b.settings, size)}` : `move.${kind}.cross-remote.${sizeLabel(b.settings, size)}`;

/** The move part over `cases` x `sizes`: every case's figure, and relay.* when the big relay case ran. */
export async function movePart(b: Bench, cases: Case[], sizes: Size[]): Promise<PartResult> {
  const out = emptyResult();
  const moveSamples: Record<string, MoveSamples> = {};
  let relayBytes: number | undefined;
  for (const size of sizes) {
    const reps = size === "big" ? b.settings.repsBig : b.settings.repsSmall;
    const needServers = cases.some((c) => c !== "member");
    const needCluster = cases.includes("member");
    const srv = needServers ? await createManaged(`bench-mv-${size}-${b.tag}`, "s1") : undefined;
    const mem = needCluster ? await createManaged(`bench-mc-${size}-${b.tag}`, "cluster", { target: "m1" }) : undefined;
    if (size === "big") {
      b.progress(`writing ${b.settings.bigMb} MiB into the ${size} instances`);
      if (srv) await fill("s1", srv.name, b.settings.bigMb, false);
      if (mem) await fill("cluster", mem.name, b.settings.bigMb, false);
      if (srv) relayBytes = await instanceBytes("s1", srv.name);
    }
    for (const c of cases) {
      const key = moveName(b, c, size);
      await moveCase(b, c === "member" ? mem! : srv!, c, reps, key, (moveSamples[key] = { provider: [], lxc: [] }), out.notes);
    }
    await removeManaged(b, [srv, mem]);
  }
  for (const [key, s] of Object.entries(moveSamples)) {
    const kind = key.split(".")[1];
    const base = kind === "target" ? "lxc move --target" : `lxc move --mode ${kind}`;
    out.figures.push(
      figure(key, "s", median(s.provider.map((x) => x.seconds)), {
        baselineName: "lxc-move",
        baselineDetail: `${base}, same instance, ABBA`,
        baseline: median(s.lxc.map((x) => x.seconds)),
        target: { op: "<=", limit: 1.05 },
        samples: Math.min(s.provider.length, s.lxc.length),
        note: `${s.error ? `ERROR: ${s.error}; ` : ""}provider requests per move (median): ${median(s.provider.map((x) => x.requests))}`,
      }),
    );
    out.samples[key] = s;
  }
  const r = moveSamples[moveName(b, "relay", "big")];
  if (r && relayBytes) out.figures.push(...relayFigures(b, r, relayBytes));
  return out;
}

function relayFigures(b: Bench, r: MoveSamples, bytes: number) {
  const mb = bytes / 1024 / 1024;
  const lc = r.lxc.map((x) => x.cpuSeconds).filter((x): x is number => x !== undefined);
  return [
    figure("relay.throughput", "MiB/s", median(r.provider.map((x) => mb / x.seconds)), {
      baselineName: "lxc-move",
      baselineDetail: "lxc move --mode relay",
      baseline: median(r.lxc.map((x) => mb / x.seconds)),
      samples: Math.min(r.provider.length, r.lxc.length),
      note: `${mb.toFixed(0)} MiB on disk (du -sb), cold move, both directions`,
    }),
    figure("relay.cpu", "cpu-s", median(r.provider.map((x) => x.cpuSeconds)), {
      baselineName: "lxc-move",
      baselineDetail: "CPU seconds of the lxc CLI process of lxc move --mode relay (GNU time)",
      baseline: lc.length ? median(lc) : null,
      samples: r.provider.length,
      note: `CPU seconds of the relaying process per cold ${b.settings.bigMb} MiB relay (provider: this Node process, whole update())`,
    }),
  ];
}

/** One case, `reps` times four legs, into `s`; a failure is recorded there and the instance put back. */
async function moveCase(b: Bench, m: Managed, kind: Mode | "member", reps: number, key: string, s: MoveSamples, notes: string[]): Promise<void> {
  const timeout = b.settings.moveTimeoutMs;
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
    const r = await providerMove(b, m, l.change);
    if (r.lastMove?.strategy !== "cold") notes.push(`${key}: the provider chose strategy "${String(r.lastMove?.strategy)}", not "cold"`);
    s.provider.push({ seconds: r.seconds, cpuSeconds: r.cpuSeconds, load1: os.loadavg()[0], leg: l.leg, lastMove: r.lastMove, requests: r.requests.total, byKind: r.requests.byKind });
    b.progress(`${key} provider ${l.leg}: ${r.seconds.toFixed(2)}s, cpu ${r.cpuSeconds.toFixed(2)}s, ${r.requests.total} requests, load ${os.loadavg()[0].toFixed(1)}`);
  };
  const lLeg = async (l: (typeof legs)[number]) => {
    const r = await lxcWithCpu(l.args, timeout);
    s.lxc.push({ seconds: r.seconds, cpuSeconds: r.cpuSeconds, load1: os.loadavg()[0], leg: l.leg });
    b.progress(`${key} lxc ${l.leg}: ${r.seconds.toFixed(2)}s, cpu ${r.cpuSeconds?.toFixed(2) ?? "?"}s, load ${os.loadavg()[0].toFixed(1)}`);
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
    b.progress(`${key}: FAILED: ${s.error}`);
    // Put the instance back where the next case expects it.
    await resync(m).catch(() => undefined);
    const home = kind === "member" ? { target: "m1" } : { remote: "s1" };
    const at = await whereIs(m.name);
    if (at && (kind === "member" ? at.location !== "m1" : at.remote !== "s1")) {
      await lxc(kind === "member" ? ["move", `cluster:${m.name}`, "--target", "m1"] : ["move", `${at.remote}:${m.name}`, `s1:${m.name}`], timeout);
      await resync(m);
    }
    m.inputs = { ...m.inputs, ...home };
  }
}
