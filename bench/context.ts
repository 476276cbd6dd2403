/**
 * What every part of `npm run bench` shares: the settings (read from the environment once, by
 * main), the run's tag and clock, the request tally, and what a part hands back.
 */
import { randomUUID } from "node:crypto";
import { Estate } from "../provider/estate";
import type { RequestSeen } from "../provider/lxd/client";
import type { Figure } from "./report";

export const ALL_PARTS = ["move", "downtime", "relay", "read", "drain"] as const;
export type PartName = (typeof ALL_PARTS)[number];
export const ALL_CASES = ["pull", "push", "relay", "member"] as const;
export type Case = (typeof ALL_CASES)[number];
export type Mode = Exclude<Case, "member">;
export const ALL_SIZES = ["small", "big"] as const;
export type Size = (typeof ALL_SIZES)[number];

/** The sandbox's remotes, where the parts create and look for instances. */
export const REMOTES = ["s1", "s2", "cluster"];
/** read() calls in flight at once in the c10 passes, as a refresh runs them (10). */
export const READ_CONCURRENCY = 10;

export interface Settings {
  parts: Set<PartName>;
  bigMb: number;
  repsSmall: number;
  repsBig: number;
  repsDowntime: number;
  readN: number;
  readReps: number;
  /** The stale-hint refresh lists every remote per resource: run it on a sample to bound the time. */
  readStaleN: number;
  /** Also time `lxc stop; lxc move; lxc start` by hand beside the provider's stop-move-start (+40 s). */
  downtimeLxc: boolean;
  cases: Case[];
  sizes: Size[];
  /** The deadline of one move, by the provider or by lxc. */
  moveTimeoutMs: number;
}

function listEnv<T extends string>(env: NodeJS.ProcessEnv, name: string, all: readonly T[]): T[] {
  const v = (env[name] ?? all.join(","))
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  for (const x of v) if (!(all as readonly string[]).includes(x)) throw new Error(`${name}: unknown value "${x}" (values: ${all.join(", ")})`);
  return v as T[];
}

/** The BENCH_* settings; throws on an unknown part, case or size. */
export function settingsFrom(env: NodeJS.ProcessEnv): Settings {
  const num = (v: string | undefined, d: number) => (v && Number(v) > 0 ? Math.floor(Number(v)) : d);
  const bigMb = num(env.BENCH_BIG_MB, 400);
  return {
    parts: new Set(listEnv(env, "BENCH_ONLY", ALL_PARTS)),
    bigMb,
    repsSmall: num(env.BENCH_REPS_SMALL, 2),
    repsBig: num(env.BENCH_REPS_BIG, 1),
    repsDowntime: num(env.BENCH_REPS_DOWNTIME, 1),
    readN: num(env.BENCH_READ_N, 200),
    readReps: num(env.BENCH_READ_REPS, 3),
    readStaleN: num(env.BENCH_READ_STALE_N, 10),
    downtimeLxc: env.BENCH_DOWNTIME_LXC === "1",
    cases: listEnv(env, "BENCH_CASES", ALL_CASES),
    sizes: listEnv(env, "BENCH_SIZES", ALL_SIZES),
    moveTimeoutMs: 300_000 + bigMb * 1_000,
  };
}

/** The size as figure names carry it: `small`, or the big instances' data size (`400MB`). */
export const sizeLabel = (s: Settings, size: Size) => (size === "big" ? `${s.bigMb}MB` : "small");

/**
 * LXD requests, counted as `LxdClient`'s `onRequest` reports them (each attempt of a retried
 * request counts): by method, by kind (list calls apart), and list calls by remote.
 */
export class RequestTally {
  private total = 0;
  private byMethod: Record<string, number> = {};
  private byKind: Record<string, number> = {};
  private listByRemote: Record<string, number> = {};

  readonly onRequest = (r: RequestSeen): void => {
    const kind = kindOf(r);
    this.total++;
    this.byMethod[r.method] = (this.byMethod[r.method] ?? 0) + 1;
    this.byKind[kind] = (this.byKind[kind] ?? 0) + 1;
    if (kind.startsWith("list")) this.listByRemote[r.remote] = (this.listByRemote[r.remote] ?? 0) + 1;
  };

  reset(): void {
    this.total = 0;
    this.byMethod = {};
    this.byKind = {};
    this.listByRemote = {};
  }

  snapshot(): Counts {
    return { total: this.total, byMethod: { ...this.byMethod }, byKind: { ...this.byKind }, listByRemote: { ...this.listByRemote } };
  }
}

export interface Counts {
  total: number;
  byMethod: Record<string, number>;
  byKind: Record<string, number>;
  listByRemote: Record<string, number>;
}

/** A request's kind, with instance names and operation ids folded: `GET /instances/{name}`. */
export function kindOf(r: Pick<RequestSeen, "method" | "path" | "query">): string {
  const { method, path: p } = r;
  if (method === "GET" && p === "/instances" && r.query.recursion) return "list GET /instances?recursion";
  if (/^\/instances\/[^/]+$/.test(p)) return `${method} /instances/{name}`;
  if (/^\/operations\/[^/]+\/wait$/.test(p)) return `${method} /operations/{id}/wait`;
  if (/^\/operations\//.test(p)) return `${method} /operations/{id}`;
  return `${method} ${p || "/1.0"}`;
}

/** What a part hands back to main: its figures, the raw samples behind them, notes for the reader. */
export interface PartResult {
  figures: Figure[];
  samples: Record<string, unknown>;
  notes: string[];
}
export const emptyResult = (): PartResult => ({ figures: [], samples: {}, notes: [] });

/** One run of the benchmark. */
export class Bench {
  /** Instances of this run carry this tag, so cleanup never touches another run's or person's. */
  readonly tag = randomUUID().slice(0, 6);
  readonly t0 = Date.now();
  readonly tally = new RequestTally();

  constructor(readonly settings: Settings) {}

  progress(text: string): void {
    process.stderr.write(`bench +${Math.round((Date.now() - this.t0) / 1000)}s: ${text}\n`);
  }

  /** An estate of the benchmark's own whose requests are counted with the provider's. */
  estate(): Estate {
    return new Estate(process.env, {}, { onRequest: this.tally.onRequest });
  }
}
