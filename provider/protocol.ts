/**
 * The move protocol's decisions, as pure functions (docs/protocol.md has the states, the
 * transitions and the invariants I1-I5). Given what a fresh read saw of every copy of one
 * instance, `decide` says the one next thing to do, or that the instance is settled, gone, or
 * that nothing may be decided now (a server that could hold a copy did not answer, another run
 * holds the lease, copies the provider did not make). The executor after any error, and every
 * later run (`settle`), call it in a loop: read both sides, decide, act, read again. The model
 * test (test/unit/protocol-model.test.ts) runs that same loop over every reachable state.
 */
import { COMPLETE_KEY, INCOMING_KEY, LEASE_KEY, MARK_PREFIX, MARKER_KEY, MOVE_KEY, OUTGOING_KEY, placeKey, samePlace, type Lease, type MoveMark, type Place } from "./marks";

/** One copy of the instance (an LXD instance carrying its ownership marker), as a read saw it. */
export interface Copy {
  place: Place;
  /** Cluster member ("" on a standalone server). */
  member: string;
  /** LXD's status: Running, Stopped, Frozen, Freezing, ... */
  status: string;
  /** The storage pool of its root disk, where known. */
  pool?: string;
  incoming?: string;
  outgoing?: string;
  complete?: string;
  move?: MoveMark | "invalid";
  lease?: Lease | "invalid";
  /** Whether `lease` holds now (not expired, holder not known dead): filled in by the reader. */
  leaseHolds?: boolean;
  /** From a single-instance read; lists carry none. */
  etag?: string;
  /** The server's own record of the instance, for the planner (LxdIo fills it in). */
  raw?: unknown;
}

export interface View {
  /** The resource's ID (the ownership marker's value). */
  id: string;
  copies: Copy[];
  /**
   * Remotes that could hold a copy and did not answer: the recorded placement's, those the marks
   * name (a move's source and target), a move in progress; when no copy was found, any remote.
   */
  silent: string[];
  /** Where the state says the instance is. */
  recorded?: Place;
}

/** What only this run knows about its own move of the instance. */
export interface Own {
  run: string;
  move?: {
    id: string;
    /** Whether this run ever sent the PATCH that marks its copy complete (answered or not). */
    completeSent: boolean;
    /** A live move: LXD itself starts the copy when its transfer succeeds, whatever this run sent. */
    live?: boolean;
  };
}

export interface Goal {
  /** Converge the instance's power to this; undefined leaves it as it is. */
  running?: boolean;
  /** The declared name: a committed copy left under its temporary name takes it. */
  name?: string;
  /** Destroy: remove every copy the provider made (never one made outside it). */
  absent?: boolean;
  /** Copies (placeKey) judged made outside the provider when destroy began: never removed, even once alone. */
  spare?: string[];
}

export type Action =
  /** Wait for any LXD transfer still writing it, stop it (forced) if it runs, delete it. */
  | { kind: "remove"; copy: Copy; why: string }
  /** Remove mark keys (PATCH with If-Match after re-reading it). Clearing `incoming` is the commit. */
  | { kind: "clear"; copy: Copy; keys: string[]; why: string }
  | { kind: "stop"; copy: Copy; force: boolean; why: string }
  | { kind: "start"; copy: Copy; why: string }
  | { kind: "thaw"; copy: Copy; why: string }
  | { kind: "rename"; copy: Copy; to: string; why: string };

export type Blocked =
  | { kind: "silent"; remotes: string[]; copies: Copy[] }
  | { kind: "leased"; copy: Copy; lease: Lease }
  | { kind: "several"; copies: Copy[]; recorded?: Place }
  | { kind: "orphan"; copy: Copy }
  | { kind: "inconsistent"; copies: Copy[]; why: string };

export type Decision = { kind: "act"; action: Action } | { kind: "done"; instance: Copy } | { kind: "gone"; left: Copy[] } | { kind: "blocked"; blocked: Blocked };

export const COMMIT_KEYS = [INCOMING_KEY, COMPLETE_KEY, OUTGOING_KEY];
export const ROLLBACK_KEYS = [OUTGOING_KEY, MOVE_KEY, LEASE_KEY];
export const FINISH_KEYS = [MOVE_KEY, LEASE_KEY];

export const isRunning = (status: string): boolean => status === "Running" || status === "Frozen" || status === "Freezing";
const isFrozen = (status: string): boolean => status === "Frozen" || status === "Freezing";

/** The temporary name of a copy made in the namespace of its source (a cluster member move). */
export const tempName = (name: string, id: string): string => `${name.slice(0, 40)}-lxdp-${id.slice(0, 8)}`;
export const isTempName = (name: string, id: string): boolean => name.endsWith(`-lxdp-${id.slice(0, 8)}`);

export const where = (c: Copy): string => `${placeKey(c.place)}${c.member ? `@${c.member}` : ""}`;

/** A move's record as a copy carries it; undefined when it has none or it cannot be read. */
const recordOf = (c: Copy): MoveMark | undefined => (c.move && c.move !== "invalid" ? c.move : undefined);

/**
 * Whether a copy stands where its own move record says one of that move's copies is: the source,
 * the copy, or the copy renamed from its temporary name to the declared one. A copy of such a
 * copy made elsewhere (`lxc copy` keeps user.* keys) carries the same record but not the place.
 */
function whereItsRecordSays(c: Copy, id: string): boolean {
  const rec = recordOf(c);
  if (!rec) return false;
  const renamed = rec.to.remote === c.place.remote && rec.to.project === c.place.project && isTempName(rec.to.name, id) && rec.to.name === tempName(c.place.name, id);
  return samePlace(rec.from, c.place) || samePlace(rec.to, c.place) || renamed;
}

/** A copy that runs while marked incoming: LXD started it at the end of a successful live transfer, and it has served since. */
const liveCopy = (c: Copy): boolean => !!c.incoming && isRunning(c.status);

/**
 * Which copies are the provider's, by their marks and where they stand:
 *  - target: marked incoming (not the instance: never promoted unless complete);
 *  - source: marked outgoing, not incoming (the instance until its move commits);
 *  - plain: neither (the instance, or a committed copy whose old source is still to go);
 *  - outside: a marked copy standing where its own move record says no copy of that move is
 *    (made by `lxc copy` of a copy in flight): never touched, never the instance.
 */
export function classify(v: View): { targets: Copy[]; sources: Copy[]; plains: Copy[]; outside: Copy[] } {
  const targets: Copy[] = [];
  const sources: Copy[] = [];
  const plains: Copy[] = [];
  const outside: Copy[] = [];
  for (const c of v.copies) {
    const rec = recordOf(c);
    if (c.incoming) (rec && rec.id === c.incoming && !samePlace(rec.to, c.place) ? outside : targets).push(c);
    else if (c.outgoing) (rec && rec.id === c.outgoing && !samePlace(rec.from, c.place) ? outside : sources).push(c);
    else if (rec && !whereItsRecordSays(c, v.id)) outside.push(c);
    else plains.push(c);
  }
  return { targets, sources, plains, outside };
}

/** A plain copy that is the committed target of move `m` (it keeps the move's record until the old source is gone). */
const committedTo = (plains: Copy[], m: string): Copy | undefined => plains.find((p) => recordOf(p)?.id === m);

/** The lease of another run that holds now, if any copy carries one. */
function foreignLease(v: View, run: string): { copy: Copy; lease: Lease } | undefined {
  for (const c of v.copies) if (c.lease && c.lease !== "invalid" && c.lease.run !== run && c.leaseHolds) return { copy: c, lease: c.lease };
  return undefined;
}

/**
 * The one next step for this instance, from a fresh read (see docs/protocol.md, "Decisions").
 * Rules, in order:
 *  0. A silent server that could hold a copy: decide nothing that deletes, promotes or starts
 *     (I4), with one exception: this run's own source, whose copy this run never marked
 *     complete, may start again: that copy can never be promoted (I3), so no second copy serves.
 *  1. Another run's lease that holds: touch nothing.
 *  2. A copy marked incoming: beside its source, it becomes the instance (commit) only when it is
 *     complete and the source is stopped; otherwise it is removed. Without its source it is never
 *     promoted: removed when the instance is elsewhere, else reported and left for the user.
 *  3. A source marked outgoing: removed once its move committed; otherwise thawed if an
 *     interrupted copy left it frozen, then its marks go (the move is rolled back).
 *  4. Several unmarked copies: reported, none deleted (I4: made outside the provider).
 *  5. The one unmarked copy: its move record and lease go, it takes its declared name if it was
 *     left under a temporary one, and its power converges to the goal.
 */
export function decide(v: View, own: Own, goal: Goal = {}): Decision {
  const act = (action: Action): Decision => ({ kind: "act", action });
  const { targets, sources, plains, outside } = classify(v);

  if (v.silent.length) {
    const m = own.move;
    const src = m && !m.completeSent && !m.live ? sources.find((s) => s.outgoing === m.id) : undefined;
    const mine = src && (!src.lease || (src.lease !== "invalid" && src.lease.run === own.run));
    const completeSeen = m && v.copies.some((c) => c.complete === m.id);
    if (src && mine && !completeSeen && !foreignLease(v, own.run)) {
      if (goal.running && src.status === "Freezing") return act({ kind: "thaw", copy: src, why: "the interrupted copy left it freezing" });
      if (goal.running && !isRunning(src.status)) {
        return act({ kind: "start", copy: src, why: "this run never marked its copy complete, so that copy can never become the instance (I3): the source serves again" });
      }
    }
    return { kind: "blocked", blocked: { kind: "silent", remotes: [...v.silent], copies: v.copies } };
  }

  const leased = foreignLease(v, own.run);
  if (leased) return { kind: "blocked", blocked: { kind: "leased", ...leased } };

  if (goal.absent)
    return decideAbsent(
      v,
      targets,
      sources,
      plains.filter((p) => !goal.spare?.includes(placeKey(p.place))),
      [...outside, ...plains.filter((p) => goal.spare?.includes(placeKey(p.place)))],
    );

  for (const c of targets) {
    const m = c.incoming!;
    const src = sources.find((s) => s.outgoing === m);
    // Known complete: marked so after LXD confirmed the transfer, or started by LXD itself (live).
    const complete = c.complete === m || liveCopy(c);
    if (src) {
      if (complete && !isRunning(src.status)) return act({ kind: "clear", copy: c, keys: COMMIT_KEYS, why: `commit: the copy is complete and its source ${where(src)} is stopped` });
      if (complete && isRunning(c.status)) {
        // A live move's handover: LXD runs both sides at its end. The source stops first.
        return act({ kind: "stop", copy: src, force: true, why: `the live copy at ${where(c)} is complete: the source stops before the copy becomes the instance` });
      }
      return act({ kind: "remove", copy: c, why: complete ? `the source ${where(src)} ran after this copy was made: the copy is stale` : `a partial copy beside its source ${where(src)}` });
    }
    const instanceElsewhere = plains.length + sources.length > 0;
    if (!complete && !liveCopy(c) && instanceElsewhere) return act({ kind: "remove", copy: c, why: `a partial copy; the instance is at ${where((plains[0] ?? sources[0])!)}` });
    if (!instanceElsewhere && outside.length === 0) return { kind: "blocked", blocked: { kind: "orphan", copy: c } };
    return { kind: "blocked", blocked: { kind: "inconsistent", copies: v.copies, why: `${where(c)} is marked as a ${complete ? "complete" : "partial"} copy of a move whose source is not there` } };
  }

  for (const s of sources) {
    const m = s.outgoing!;
    const committed = committedTo(plains, m);
    if (committed) return act({ kind: "remove", copy: s, why: `the move committed to ${where(committed)}: the old copy goes` });
    if (!recordOf(s) && plains.length) {
      // Marks without a move record (an older version of the provider) beside an unmarked copy:
      // no way to tell a committed copy from one made outside the provider.
      return { kind: "blocked", blocked: { kind: "inconsistent", copies: v.copies, why: `${where(s)} is marked outgoing and ${plains.map(where).join(", ")} is not marked` } };
    }
    if (isFrozen(s.status)) return act({ kind: "thaw", copy: s, why: "the interrupted move's copy left it frozen" });
    return act({ kind: "clear", copy: s, keys: ROLLBACK_KEYS, why: "the move did not commit: the source is the instance" });
  }

  if (outside.length || plains.length > 1) return { kind: "blocked", blocked: { kind: "several", copies: [...plains, ...outside], recorded: v.recorded } };
  const p = plains[0];
  if (!p) return { kind: "gone", left: [] };
  const ownLease = p.lease !== undefined;
  if (p.move || ownLease) return act({ kind: "clear", copy: p, keys: FINISH_KEYS.filter((k) => (k === MOVE_KEY ? p.move : ownLease)), why: "the move is finished" });
  if (p.status === "Freezing") return act({ kind: "thaw", copy: p, why: "it was left freezing" });
  if (goal.name && p.place.name !== goal.name && isTempName(p.place.name, v.id)) {
    if (isRunning(p.status)) return act({ kind: "stop", copy: p, force: false, why: `LXD renames only stopped instances` });
    return act({ kind: "rename", copy: p, to: goal.name, why: "the committed copy takes its declared name" });
  }
  if (goal.running === true && !isRunning(p.status)) return act({ kind: "start", copy: p, why: "declared running" });
  if (goal.running === false && isRunning(p.status)) return act({ kind: "stop", copy: p, force: false, why: "declared stopped" });
  return { kind: "done", instance: p };
}

/** Destroy: every copy the provider made goes; copies made outside it stay (I4). */
function decideAbsent(v: View, targets: Copy[], sources: Copy[], plains: Copy[], outside: Copy[]): Decision {
  const act = (copy: Copy, why: string): Decision => ({ kind: "act", action: { kind: "remove", copy, why } });
  if (targets[0]) return act(targets[0], "destroy: a copy of an unfinished move");
  const ours = ownPlains(v, plains);
  if (!ours) return { kind: "blocked", blocked: { kind: "several", copies: plains, recorded: v.recorded } };
  const mine = [...sources, ...ours];
  if (mine[0]) return act(mine[0], "destroy");
  return { kind: "gone", left: [...plains.filter((p) => !ours.includes(p)), ...outside] };
}

/**
 * Which unmarked copies are the provider's: a lone one is the instance wherever it is (P6);
 * among several, the one at the recorded placement and any committed copy still carrying its
 * move's record; the others were made outside the provider. Several and none recorded: no way
 * to tell (undefined).
 */
function ownPlains(v: View, plains: Copy[]): Copy[] | undefined {
  if (plains.length <= 1) return plains;
  const ours = plains.filter((p) => (v.recorded && samePlace(p.place, v.recorded)) || recordOf(p));
  return ours.length ? ours : undefined;
}

/** Copies a destroy must leave alone (made outside the provider), as judged on its first read. */
export function spareOf(v: View): string[] {
  const { plains, outside } = classify(v);
  const ours = ownPlains(v, plains) ?? plains;
  return [...plains.filter((p) => !ours.includes(p)), ...outside].map((c) => placeKey(c.place));
}

/**
 * Where the instance is now, without changing anything (refresh, preview): the source of a move
 * that has not committed, the committed copy of one that has, else the one unmarked copy; and
 * what an interrupted move left beside it for the next `up` to settle.
 */
export function authority(v: View): { instance?: Copy; leftovers: Copy[]; blocked?: Blocked } {
  if (v.silent.length) return { leftovers: [], blocked: { kind: "silent", remotes: v.silent, copies: v.copies } };
  const { targets, sources, plains, outside } = classify(v);
  const candidates = [...sources.filter((s) => !committedTo(plains, s.outgoing!)), ...plains];
  if (candidates.length === 1) {
    const instance = candidates[0];
    return { instance, leftovers: v.copies.filter((c) => c !== instance && !outside.includes(c)) };
  }
  if (candidates.length === 0) {
    if (targets.length === 1 && !outside.length) return { leftovers: [], blocked: { kind: "orphan", copy: targets[0] } };
    if (targets.length) return { leftovers: [], blocked: { kind: "inconsistent", copies: v.copies, why: "only copies marked incoming remain" } };
    return { leftovers: [] };
  }
  return { leftovers: [], blocked: { kind: "several", copies: candidates, recorded: v.recorded } };
}

/** Whether a copy carries any mark of a move (a fast read may stop at a copy without any). */
export function isClean(c: Copy): boolean {
  return !c.incoming && !c.outgoing && !c.complete && !c.move && !c.lease;
}

/** The user-facing sentence for a blocked decision; `nothing` says whether this run changed nothing. */
export function explain(b: Blocked, id: string): { message: string; remedy: string } {
  switch (b.kind) {
    case "silent":
      return {
        message: `cannot decide where instance ${id} is: ${b.remotes.map((r) => `remote "${r}"`).join(", ")} did not answer, and ${b.remotes.length > 1 ? "they" : "it"} could hold a copy of it${b.copies.length ? ` (seen: ${b.copies.map(describeCopy).join(", ")})` : ""}; nothing was deleted, promoted or started (I4)`,
        remedy: `Run again when ${b.remotes.join(", ")} answer${b.remotes.length > 1 ? "" : "s"}. If a server is gone for good, drop the resource from the state (pulumi state delete) and adopt the instance where it is (adopt: true)`,
      };
    case "leased":
      return {
        message: `instance ${id} is being moved by another run (${b.lease.run}${b.lease.host ? ` on ${b.lease.host}${b.lease.pid ? ` pid ${b.lease.pid}` : ""}` : ""}) until ${new Date(b.lease.until).toISOString()} (lease on ${where(b.copy)})`,
        remedy: "Wait for that run to end (a run that died loses its lease when it expires), then run again; nothing was changed",
      };
    case "several":
      return {
        message: `instance ${id} exists in several places: ${b.copies.map((c) => `${describeCopy(c)}${b.recorded && samePlace(c.place, b.recorded) ? " (recorded in the state)" : ""}`).join(", ")}; copies the provider did not make are never deleted by it`,
        remedy: `Delete the copies that are not wanted (lxc delete), or remove the ownership marker ${MARKER_KEY} from them, then run again; nothing was changed`,
      };
    case "orphan":
      return {
        message: `only a ${b.copy.complete && b.copy.complete === b.copy.incoming ? "complete" : "partial"} copy of instance ${id} remains, at ${where(b.copy)} (marked incoming); the source was deleted outside the provider`,
        remedy: `Inspect it; to keep it as the instance, clear its marks (lxc config unset ${b.copy.place.remote}:${b.copy.place.name} ${INCOMING_KEY} --project ${b.copy.place.project}), then run again; nothing was changed`,
      };
    case "inconsistent":
      return {
        message: `the copies of instance ${id} do not match any state a move leaves (${b.why}; seen: ${b.copies.map(describeCopy).join(", ")})`,
        remedy: `Delete the copies that are not wanted, or clear their ${MARK_PREFIX}* marks, then run again; nothing was changed`,
      };
  }
}

export function describeCopy(c: Copy): string {
  const marks = [c.incoming && "incoming", c.complete && "complete", c.outgoing && "outgoing"].filter(Boolean);
  return `${where(c)} ${c.status}${marks.length ? ` [${marks.join(", ")}]` : ""}`;
}
