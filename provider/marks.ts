/**
 * The keys the provider writes on instances, in one place (docs/protocol.md explains each).
 *
 *   user.lxd-placement.id        ownership marker: the resource's ID, on the instance for life
 *   user.lxd-placement.outgoing  on the source of a move in progress: the move's ID
 *   user.lxd-placement.incoming  on a copy that is not the instance (yet): the move's ID; never
 *                                empty on a copy that is not committed
 *   user.lxd-placement.complete  on an incoming copy once LXD confirmed its final transfer: the
 *                                move's ID (only a complete copy may become the instance)
 *   user.lxd-placement.move      the move's record, {"id","from","to"}: where its copies are, so a
 *                                later run knows which servers must answer before it decides
 *   user.lxd-placement.lease     who may act on the instance now: {"run","until",...}
 */
import * as fs from "node:fs";
import * as os from "node:os";

export const MARKER_KEY = "user.lxd-placement.id";
export const INCOMING_KEY = "user.lxd-placement.incoming";
export const OUTGOING_KEY = "user.lxd-placement.outgoing";
export const COMPLETE_KEY = "user.lxd-placement.complete";
export const MOVE_KEY = "user.lxd-placement.move";
export const LEASE_KEY = "user.lxd-placement.lease";
export const MARK_PREFIX = "user.lxd-placement.";

/** The keys that say a move is (or was) in progress; the marker is not one of them. */
export const MOVE_MARKS = [INCOMING_KEY, OUTGOING_KEY, COMPLETE_KEY, MOVE_KEY, LEASE_KEY] as const;

/** An instance's address: the name is unique per (remote, project), whatever the cluster member. */
export interface Place {
  remote: string;
  project: string;
  name: string;
}

export const placeKey = (p: Place): string => `${p.remote}:${p.project}/${p.name}`;

export function parsePlace(s: string): Place | undefined {
  const m = /^([^:]+):([^/]+)\/(.+)$/.exec(s);
  return m ? { remote: m[1], project: m[2], name: m[3] } : undefined;
}

export const samePlace = (a: Place, b: Place): boolean => a.remote === b.remote && a.project === b.project && a.name === b.name;

/** The record of a move, written on its source and its copy. */
export interface MoveMark {
  id: string;
  from: Place;
  to: Place;
}

export function formatMove(m: MoveMark): string {
  return JSON.stringify({ id: m.id, from: placeKey(m.from), to: placeKey(m.to) });
}

/** undefined for an absent record; "invalid" for one that cannot be read (then every remote is searched). */
export function parseMove(v: string | undefined): MoveMark | "invalid" | undefined {
  if (!v) return undefined;
  try {
    const o = JSON.parse(v) as { id?: unknown; from?: unknown; to?: unknown };
    const from = typeof o.from === "string" ? parsePlace(o.from) : undefined;
    const to = typeof o.to === "string" ? parsePlace(o.to) : undefined;
    if (typeof o.id !== "string" || !o.id || !from || !to) return "invalid";
    return { id: o.id, from, to };
  } catch {
    return "invalid";
  }
}

/**
 * A lease: the run that may act on the instance until `until` (ms since the epoch). A run renews
 * it while it lives; one that died stops renewing, so its lease ends by itself. On the machine
 * that wrote it, a holder whose process is gone (host, pid and process start time) has no lease
 * even before `until`: the next run on that machine need not wait.
 */
export interface Lease {
  run: string;
  until: number;
  host?: string;
  pid?: number;
  /** The holder process's start time (/proc/PID/stat field 22), against pid reuse. */
  start?: string;
  /** The holder's kernel boot and pid namespace: a pid means this process only where both are ours. */
  boot?: string;
  pidns?: string;
}

export function formatLease(l: Lease): string {
  return JSON.stringify({ run: l.run, until: new Date(l.until).toISOString(), host: l.host, pid: l.pid, start: l.start, boot: l.boot, pidns: l.pidns });
}

export function parseLease(v: string | undefined): Lease | "invalid" | undefined {
  if (!v) return undefined;
  try {
    const o = JSON.parse(v) as { run?: unknown; until?: unknown; host?: unknown; pid?: unknown; start?: unknown; boot?: unknown; pidns?: unknown };
    const until = typeof o.until === "string" ? Date.parse(o.until) : NaN;
    if (typeof o.run !== "string" || !o.run || !Number.isFinite(until)) return "invalid";
    return {
      run: o.run,
      until,
      host: typeof o.host === "string" ? o.host : undefined,
      pid: typeof o.pid === "number" ? o.pid : undefined,
      start: typeof o.start === "string" ? o.start : undefined,
      boot: typeof o.boot === "string" ? o.boot : undefined,
      pidns: typeof o.pidns === "string" ? o.pidns : undefined,
    };
  } catch {
    return "invalid";
  }
}

/** The start time of process `pid` (jiffies since boot), or undefined when there is none. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (comm) may hold spaces and parentheses: count fields after the last ")".
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19];
  } catch {
    return undefined;
  }
}

function readOr(f: () => string): string | undefined {
  try {
    return f().trim();
  } catch {
    return undefined;
  }
}
const BOOT = readOr(() => fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8"));
const PIDNS = readOr(() => fs.readlinkSync("/proc/self/ns/pid"));

export type Holder = Pick<Lease, "host" | "pid" | "start" | "boot" | "pidns">;

/** Whether a lease was written by a process that shares this one's host, kernel boot and pid namespace. */
export function sameMachine(l: Holder, me: Holder): boolean {
  return !!l.host && l.host === me.host && !!l.boot && l.boot === me.boot && !!l.pidns && l.pidns === me.pidns;
}

/** This process, as a lease holder. */
export function thisHolder(): Holder {
  return { host: os.hostname(), pid: process.pid, start: processStart(process.pid), boot: BOOT, pidns: PIDNS };
}

/**
 * Whether the lease still holds at `now`: not expired, and not held by a process that is gone
 * from this very machine (a run that was killed: its lease must not block the next run for a
 * minute). Only a holder with our host name, kernel boot and pid namespace is looked up by pid:
 * containers on one host may share a host name and not their pids.
 */
export function leaseHolds(l: Lease, now: number, me: Holder = thisHolder()): boolean {
  if (l.until <= now) return false;
  if (sameMachine(l, me) && l.pid) {
    const start = processStart(l.pid);
    if (start === undefined) return false;
    if (l.start && start !== l.start) return false;
  }
  return true;
}
