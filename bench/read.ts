/**
 * read.*: refresh of many instances (BENCH_readN, 200) by the provider's read(), in LXD
 * requests and time per resource, next to a no-op, a raw GET per instance, and one list per
 * remote; and with a stale hint (the state names the wrong remote).
 */
import { randomUUID } from "node:crypto";
import * as provider from "../provider/resource";
import { Estate } from "../provider/estate";
import { createInstance, deleteInstance, getInstance } from "../provider/lxd/instances";
import { loadRemotes } from "../provider/lxd/remotes";
import { MARKER_KEY } from "../provider/marks";
import { emptyResult, READ_CONCURRENCY, REMOTES, type Bench, type Counts, type PartResult } from "./context";
import { deleteNames } from "./cleanup";
import { figure, median, type Figure } from "./report";
import { deadline, pool } from "./shell";

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

interface Pass {
  label: string;
  n: number;
  seconds: number;
  msPerResource: number;
  requests: Counts;
}
type Passes = Record<string, Pass[]>;
const LIST = "list GET /instances?recursion";

export async function readPart(b: Bench): Promise<PartResult> {
  const result = emptyResult();
  const items: ReadItem[] = Array.from({ length: b.settings.readN }, (_, i) => {
    const remote = REMOTES[i % REMOTES.length];
    const member = remote === "cluster" ? `m${(Math.floor(i / REMOTES.length) % 3) + 1}` : "";
    return { id: randomUUID(), name: `bench-rd-${b.tag}-${String(i).padStart(3, "0")}`, remote, member };
  });
  const out: Record<string, unknown> = {};
  result.samples.read = out;
  let created: ReadItem[] = [];
  const setup = new Estate();
  try {
    const c0 = performance.now();
    created = await createAll(b, setup, items);
    out.createSeconds = (performance.now() - c0) / 1000;
    b.progress(`created ${created.length}/${items.length} instances in ${(out.createSeconds as number).toFixed(1)}s`);
    if (created.length < items.length) result.notes.push(`read: only ${created.length} of ${items.length} instances could be created`);
    if (created.length === 0) throw new Error("read: no instance could be created");
    const remotes = loadRemotes(process.env).names;
    out.remotesSeenByProvider = remotes;
    const { runs, wrong, staleSample } = await passes(b, created);
    out.passes = runs;
    out.wrongResults = wrong;
    if (wrong) result.notes.push(`read: ${wrong} read() results did not report the instance's real remote/name`);
    result.figures.push(...readFigures(runs, created.length, staleSample.length, remotes));
  } finally {
    const d0 = performance.now();
    const left: string[] = [];
    await pool(created, 8, async (it) => deleteInstance(setup.client(it.remote).withTimeout(60_000), it.name).catch(() => left.push(`${it.remote}:${it.name}`)));
    if (left.length) await deleteNames(left);
    await setup.close();
    out.deleteSeconds = (performance.now() - d0) / 1000;
    b.progress(`deleted the read instances in ${(out.deleteSeconds as number).toFixed(1)}s`);
  }
  return result;
}

/**
 * Create the instances through the API in-process, 8 at a time (200 `lxc init` processes cost
 * ~40% more wall time on 2 cores: CLI start-up, and this is set-up, not a measurement); the ones
 * that exist at the end.
 */
async function createAll(b: Bench, setup: Estate, items: ReadItem[]): Promise<ReadItem[]> {
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
        if (attempt === 1) b.progress(`create ${it.name}: ${(e as Error).message}`);
      }
    }
    return false;
  });
  return items.filter((_, i) => made[i]);
}

/** The timed passes over the created instances, and how many read() results were wrong. */
async function passes(b: Bench, created: ReadItem[]): Promise<{ runs: Passes; wrong: number; staleSample: ReadItem[] }> {
  const { readReps, readStaleN } = b.settings;
  const n = created.length;
  const floorEstate = b.estate();
  const noop = async (it: ReadItem) => ({ id: it.id, props: propsOf(it) });
  const floorGet = async (it: ReadItem) => floorEstate.client(it.remote).call("GET", `/instances/${it.name}`);
  let wrong = 0;
  const providerRead = (stale: boolean) => async (it: ReadItem) => {
    // Stale: the state says the instance is on another remote (moved outside Pulumi).
    const hint = stale ? REMOTES[(REMOTES.indexOf(it.remote) + 1) % REMOTES.length] : it.remote;
    const r = await provider.read(it.id, propsOf(it, hint));
    if (r.id !== it.id || r.props.remote !== it.remote || r.props.name !== it.name) wrong++;
    return r;
  };
  const pass = async (label: string, fn: (it: ReadItem) => Promise<unknown>, concurrency: number, subset = created): Promise<Pass> => {
    b.tally.reset();
    const s = performance.now();
    await deadline(pool(subset, concurrency, fn), 600_000, label);
    const seconds = (performance.now() - s) / 1000;
    return { label, n: subset.length, seconds, msPerResource: (seconds * 1000) / subset.length, requests: b.tally.snapshot() };
  };
  const runs: Passes = {};
  const add = (p: Pass) => {
    (runs[p.label] ??= []).push(p);
    b.progress(`read ${p.label}: ${p.seconds.toFixed(2)}s, ${p.requests.total} requests, ${p.requests.byKind[LIST] ?? 0} list calls`);
  };
  try {
    // One untimed pass of each first: connections open, and LXD done with the burst of creates
    // (the first timed pass after it was up to 20x slower than the next in trial runs).
    await pool(created, READ_CONCURRENCY, providerRead(false));
    await pool(created, READ_CONCURRENCY, floorGet);
    wrong = 0;
    for (let rep = 0; rep < readReps; rep++) {
      add(await pass("noop.seq", noop, 1));
      add(await pass("noop.c10", noop, READ_CONCURRENCY));
      // ABBA across reps: the floor first in even reps, the provider first in odd ones.
      const ab: [string, (it: ReadItem) => Promise<unknown>][] = [
        ["floor-get", floorGet],
        ["hinted", providerRead(false)],
      ];
      const order = rep % 2 === 0 ? ab : [...ab].reverse();
      for (const [label, fn] of order) add(await pass(`${label}.seq`, fn, 1));
      for (const [label, fn] of order) add(await pass(`${label}.c10`, fn, READ_CONCURRENCY));
    }
    // One list per remote: the O(remotes) way to see every instance at once.
    for (let rep = 0; rep < readReps; rep++) {
      b.tally.reset();
      const s = performance.now();
      await Promise.all(REMOTES.map((r) => floorEstate.instances(r, { fresh: true })));
      const seconds = (performance.now() - s) / 1000;
      add({ label: "floor-list.all", n, seconds, msPerResource: (seconds * 1000) / n, requests: b.tally.snapshot() });
    }
    // Every instance exists while a sample of them is read with a stale hint: lists are full size.
    const staleSample = created.filter((_, i) => i % Math.max(1, Math.floor(n / readStaleN)) === 0).slice(0, readStaleN);
    add(await pass("stale.c10", providerRead(true), READ_CONCURRENCY, staleSample));
    return { runs, wrong, staleSample };
  } finally {
    await floorEstate.close();
  }
}

function readFigures(runs: Passes, n: number, staleN: number, remotes: string[]): Figure[] {
  const med = (label: string, f: (p: Pass) => number) => median((runs[label] ?? []).map(f));
  const ms = (label: string) => med(label, (p) => p.msPerResource);
  const perInstance = (label: string) => med(label, (p) => p.requests.total / p.n);
  const lists = (label: string) => med(label, (p) => p.requests.byKind[LIST] ?? 0);
  const listTarget = { op: "<=" as const, limit: remotes.length, on: "value" as const };
  return [
    ...["seq", "c10"].flatMap((mode) => [
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
    ]),
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
      note: `state names the wrong remote (moved outside Pulumi); ${staleN} of ${n} instances read`,
    }),
    figure("read.stale.c10.requests", "req/instance", perInstance("stale.c10"), { samples: 1, note: JSON.stringify(runs["stale.c10"]?.[0]?.requests.byKind ?? {}) }),
    figure("read.stale.c10.list-calls", "calls", lists("stale.c10"), {
      target: listTarget,
      samples: 1,
      note: `for ${staleN} instances (${((lists("stale.c10") ?? 0) / staleN).toFixed(1)} per instance), by remote ${JSON.stringify(runs["stale.c10"]?.[0]?.requests.listByRemote ?? {})}`,
    }),
  ];
}
