/**
 * Where an instance really is (P6), and settling what an interrupted move left behind (P5).
 *
 * `observe` reads every copy of the instance (an instance carrying its ownership marker) from the
 * servers that could hold one: the recorded placement, the servers the marks of a move name, and,
 * when the instance is not where it was recorded, every remote. A server among those that does not
 * answer is reported in the view, never read as "no copy there".
 *
 * `settle` is the protocol's loop (docs/protocol.md): read, decide (provider/protocol.ts), act,
 * read again, until the instance is settled, gone, or a decision is not possible now. The executor
 * runs it after any error of a move; `update` and `destroy` run it before anything else.
 * Refresh and preview only observe.
 */
import type { MoveIo } from "./io";
import type { Instance } from "./lxd/instances";
import { isRunning as lxdRunning, rootPool } from "./lxd/instances";
import { isConflict, isSilent, LxdApiError, PlacementError, RemoteConfigError } from "./lxd/errors";
import { formatLease, LEASE_KEY, placeKey, sameMachine, type Place } from "./marks";
import type { Facts } from "./planner";
import { decide, isClean, isRunning, spareOf, where, type Action, type Copy, type Decision, type Goal, type Own, type View } from "./protocol";

export interface Found {
  remote: string;
  instance: Instance;
}

export function factsOf(f: Found): Facts {
  const i = f.instance;
  return {
    remote: f.remote,
    project: i.project,
    member: i.location && i.location !== "none" ? i.location : "",
    pool: rootPool(i) ?? "",
    name: i.name,
    type: i.type === "virtual-machine" ? "virtual-machine" : "container",
    running: lxdRunning(i),
    config: i.expanded_config,
    devices: i.expanded_devices,
  };
}

/** The LXD instance behind a copy read by LxdIo. */
export function foundOf(c: Copy): Found {
  if (!c.raw) throw new Error(`no instance read for ${where(c)}`);
  return { remote: c.place.remote, instance: c.raw as Instance };
}

export interface ObserveRequest {
  id: string;
  /** Where the state says the instance is. */
  recorded?: Place;
  /** Remotes that must answer as well (a move in progress, what an earlier read found). */
  also?: string[];
  /** Read-only callers (refresh) may share one list per remote between concurrent reads. */
  shared?: boolean;
  /** List the relevant remotes even when the recorded copy carries no marks. */
  thorough?: boolean;
  /** List every remote (destroy's first read: it must see copies made outside the provider). */
  everywhere?: boolean;
}

/** A view, and the remotes whose answer it depends on (the next read must ask them again). */
export interface Observed extends View {
  relevant: string[];
}

/**
 * Read every copy that matters (see the module comment). One GET when the instance is where the
 * state says and carries no mark of a move; otherwise lists of the remotes the marks name, or of
 * every remote when the instance is not where it was recorded.
 */
export async function observe(io: MoveIo, req: ObserveRequest): Promise<Observed> {
  const { id, recorded } = req;
  const copies = new Map<string, Copy>();
  const silent = new Set<string>();
  const relevant = new Set<string>(req.also ?? []);
  let everywhere = !recorded || !!req.everywhere;
  if (recorded) {
    if (!io.knows(recorded.remote)) {
      throw new RemoteConfigError(
        `the state records instance ${id} on remote "${recorded.remote}", which is not configured`,
        { remote: recorded.remote, field: "remote" },
        `Add the remote again under that name (lxc remote add), or set lxd-placement:remotes; a renamed remote is not taken for "gone"`,
      );
    }
    relevant.add(recorded.remote);
    let got: Copy | undefined;
    try {
      got = await io.get(recorded, id);
    } catch (e) {
      if (!isSilent(e)) throw e;
      silent.add(recorded.remote);
    }
    if (got && isClean(got) && !req.thorough && !req.everywhere && !req.also?.length) return { id, copies: [got], silent: [], recorded, relevant: [recorded.remote] };
    if (got) copies.set(placeKey(got.place), got);
    // Not where the state says: it moved outside the program (P6), or a move was interrupted.
    else if (!silent.has(recorded.remote)) everywhere = true;
  }
  const listed = new Set<string>();
  for (let pass = 0; pass < 8; pass++) {
    let all = everywhere;
    for (const c of copies.values()) {
      relevant.add(c.place.remote);
      if (c.move && c.move !== "invalid") {
        relevant.add(c.move.from.remote);
        relevant.add(c.move.to.remote);
      } else if (c.move === "invalid" || c.incoming || c.outgoing) {
        all = true; // marks without a readable record: any remote may hold the other copy
      }
    }
    const want = new Set(all ? [...io.remotes(), ...relevant] : relevant);
    const todo = [...want].filter((r) => !listed.has(r) && !silent.has(r));
    if (!todo.length) break;
    await Promise.all(
      todo.map(async (r) => {
        listed.add(r);
        if (!io.knows(r)) {
          throw new RemoteConfigError(
            `the marks of instance ${id} name remote "${r}", which is not configured`,
            { remote: r },
            `Add the remote again under that name, then run again; nothing was changed`,
          );
        }
        try {
          const onRemote = await io.list(r, id, { shared: req.shared });
          // The list replaces what a single read saw on that remote, keeping its ETag where the
          // list saw the copy unchanged.
          const before = new Map([...copies].filter(([, c]) => c.place.remote === r));
          for (const k of before.keys()) copies.delete(k);
          for (const c of onRemote) {
            const prev = before.get(placeKey(c.place));
            copies.set(placeKey(c.place), prev?.etag && sameMarks(prev, c) && prev.status === c.status ? prev : c);
          }
        } catch (e) {
          if (!isSilent(e)) throw e;
          silent.add(r);
        }
      }),
    );
  }
  const found = [...copies.values()];
  // A silent remote matters if a copy or a move names it; when nothing was found anywhere, any does.
  const silentThatMatters = [...silent].filter((r) => relevant.has(r) || found.length === 0);
  return { id, copies: found, silent: silentThatMatters, recorded, relevant: [...relevant] };
}

export function sameMarks(a: Copy, b: Copy): boolean {
  const lease = (c: Copy) => (c.lease && c.lease !== "invalid" ? `${c.lease.run}@${c.lease.until}` : String(c.lease ?? ""));
  const move = (c: Copy) => (c.move && c.move !== "invalid" ? `${c.move.id}` : String(c.move ?? ""));
  return a.incoming === b.incoming && a.outgoing === b.outgoing && a.complete === b.complete && move(a) === move(b) && lease(a) === lease(b);
}

/** A lease for this run, valid for `ttlMs` from now. */
export function leaseValue(io: MoveIo, ttlMs = LEASE_TTL_MS): string {
  return formatLease({ run: io.run, until: io.now() + ttlMs, ...io.holder() });
}

/** How long a lease holds unless renewed; a run renews it every third of that while it lives. */
export const LEASE_TTL_MS = 60_000;

/**
 * Read the copy again and check that it is still as `seen` (same marks): the decision was made on
 * that. Throws a conflict when it changed or is gone, so the caller reads everything again.
 */
async function reread(io: MoveIo, seen: Copy, id: string): Promise<Copy> {
  const cur = await io.get(seen.place, id);
  if (!cur || !sameMarks(cur, seen)) {
    throw new LxdApiError(`${where(seen)} changed since it was read`, { remote: seen.place.remote, project: seen.place.project, instance: seen.place.name, status: 412 });
  }
  return cur;
}

/** Take the lease on a copy before acting on it: If-Match on what was read, so no other run acts on it meanwhile. */
async function claim(io: MoveIo, seen: Copy, id: string): Promise<void> {
  const cur = await reread(io, seen, id);
  await io.patch(cur.place, { [LEASE_KEY]: leaseValue(io) }, cur.etag);
}

/** Carry out one decided action. Each step is safe to repeat; the caller reads again afterwards. */
export async function apply(io: MoveIo, a: Action, id: string): Promise<void> {
  const p = a.copy.place;
  switch (a.kind) {
    case "remove": {
      const partial = !!a.copy.incoming && a.copy.complete !== a.copy.incoming;
      // A partial copy is deleted without a claim: deleting it never loses the instance, and a
      // copy whose transfer died may not take a config write at all ("Failed to write backup file").
      if (!partial) await claim(io, a.copy, id);
      await io.settleTransfers(p);
      await io.stop(p, { force: true });
      await io.delete(p);
      return;
    }
    case "clear": {
      const cur = await reread(io, a.copy, id);
      await io.patch(p, Object.fromEntries(a.keys.map((k) => [k, ""])), cur.etag);
      return;
    }
    case "stop":
      return io.stop(p, { force: a.force });
    case "start":
      await reread(io, a.copy, id);
      return io.start(p);
    case "thaw":
      return io.thaw(p);
    case "rename":
      await claim(io, a.copy, id);
      return io.rename(p, a.to);
  }
}

export interface SettleRequest extends ObserveRequest {
  own?: Own;
  goal?: Goal;
  log?: (s: string) => void;
  /** Wait at most this long for another run's lease to end (a run that died); 0: do not wait. */
  leaseWaitMs?: number;
}

export interface Settled {
  /** done, gone or blocked. */
  decision: Exclude<Decision, { kind: "act" }>;
  view: Observed;
  /** What was done, one line per action. */
  acted: string[];
}

/** Action failures in a row before the last error is given up on. */
const MAX_FAILURES = 3;

/** The protocol's loop: read, decide, act, read again (docs/protocol.md). */
export async function settle(io: MoveIo, req: SettleRequest): Promise<Settled> {
  const own: Own = req.own ?? { run: io.run };
  let goal: Goal = req.goal ?? {};
  const log = req.log ?? (() => undefined);
  const acted: string[] = [];
  const relevant = new Set<string>(req.also ?? []);
  let failures = 0;
  let lastError: unknown;
  let waitedFor: number | undefined;
  for (let step = 0; step < 64; step++) {
    // Destroy's first read lists every remote: which copies were made outside the provider is
    // judged on it, and a copy not seen then would pass for the instance once the instance is gone.
    const view = await observe(io, { ...req, also: [...relevant], thorough: req.thorough || step > 0, everywhere: req.everywhere || (!!goal.absent && step === 0) });
    for (const r of view.relevant) relevant.add(r);
    // Destroy judges once, on its first read, which copies were made outside the provider: once
    // the instance is gone such a copy is alone, and a lone copy would pass for the instance.
    if (goal.absent && !goal.spare) goal = { ...goal, spare: spareOf(view) };
    const d = decide(view, own, goal);
    if (d.kind === "act") {
      const line = `${d.action.kind} ${where(d.action.copy)}${d.action.kind === "rename" ? ` -> ${d.action.to}` : ""}: ${d.action.why}`;
      try {
        await apply(io, d.action, req.id);
        acted.push(line);
        log(`${line} (P5)`);
        failures = 0;
      } catch (e) {
        lastError = e;
        if (++failures >= MAX_FAILURES && !isSilent(e) && !isConflict(e)) throw e;
        if (failures >= MAX_FAILURES * 2) throw e;
        log(`${d.action.kind} ${where(d.action.copy)} failed (${(e as Error).message.split("\n")[0]}); reading again`);
      }
      continue;
    }
    // A holder on this machine is known alive (its process is there): no wait. One elsewhere may
    // have died: its lease is waited out if it ends soon and is not renewed meanwhile.
    if (d.kind === "blocked" && d.blocked.kind === "leased" && req.leaseWaitMs && !sameMachine(d.blocked.lease, io.holder())) {
      const until = d.blocked.lease.until;
      // A lease that moved on was renewed: its run is alive. Only a lease that ends soon is waited out.
      if (waitedFor === undefined || until <= waitedFor) {
        if (until - io.now() <= req.leaseWaitMs) {
          waitedFor = until;
          log(`waiting until ${new Date(until).toISOString()} for the lease of run ${d.blocked.lease.run} to end`);
          await io.sleep(Math.max(0, until - io.now()) + 1_000);
          continue;
        }
      }
    }
    return { decision: d, view, acted };
  }
  throw new PlacementError(`settling instance ${req.id} did not converge`, {}, `Last error: ${(lastError as Error | undefined)?.message ?? "none"}`);
}

/** The instance's status in words, for messages. */
export function powerWord(c: Copy): string {
  return isRunning(c.status) ? "running" : c.status.toLowerCase();
}
