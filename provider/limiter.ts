/**
 * A counting limiter shared by every move the provider process runs: at most
 * LXD_PLACEMENT_MAX_MOVES_PER_REMOTE moves touch one remote at a time, and at most
 * LXD_PLACEMENT_MAX_MOVES run overall. Pulumi runs resources of one `pulumi up` in parallel in one
 * provider process, so the limit is real across resources, not advisory.
 *
 * Groups (InstanceGroup, `migration.group`) add their own slots on top:
 *  - move slots: at most `migration.maxConcurrentMoves` moves of the group at once, and at most
 *    `migration.maxConcurrentMovesPerServer` touching one server (a remote, or one cluster
 *    member: "cluster@m2"), held for the whole move;
 *  - downtime slots: at most `migration.maxUnavailable` instances of the group down at once, held
 *    by the executor only around a move's downtime (the cutover of a near-live move, the whole
 *    stop-move-start), so pre-copies run side by side while cutovers take turns.
 * Slots are always taken in the same order (process, group moves, group downtime), so waiting
 * cannot deadlock.
 */
import { TimeoutError } from "./lxd/errors";

const perRemote = new Map<string, number>();
let overall = 0;
/** Group slots by key: "<group>\0moves", "<group>\0server\0<server>", "<group>\0down". */
const groupSlots = new Map<string, number>();
const waiters: (() => void)[] = [];

function limits(): { remote: number; overall: number } {
  const n = (v: string | undefined, d: number) => (v && Number(v) > 0 ? Math.floor(Number(v)) : d);
  return { remote: n(process.env.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE, 4), overall: n(process.env.LXD_PLACEMENT_MAX_MOVES, 8) };
}

function fits(remotes: string[]): boolean {
  const l = limits();
  return overall < l.overall && remotes.every((r) => (perRemote.get(r) ?? 0) < l.remote);
}

function wake(): void {
  for (const w of waiters.splice(0)) w();
}

/**
 * Wait until `tryTake()` succeeds or `deadline` (ms since the epoch) has passed; a wait that runs
 * out throws a TimeoutError saying what was waited for, and nothing was taken. `tryTake` checks
 * and takes in one synchronous step: woken waiters run one after another, and a check separated
 * from its take by an await would let several through on one free slot.
 */
async function waitUntil(tryTake: () => boolean, deadline: number | undefined, what: string): Promise<void> {
  while (!tryTake()) {
    let timer: NodeJS.Timeout | undefined;
    let wake!: () => void;
    const woken = new Promise<void>((r) => (wake = r));
    waiters.push(wake);
    if (deadline !== undefined) {
      const left = deadline - Date.now();
      if (left <= 0) {
        const i = waiters.indexOf(wake);
        if (i >= 0) waiters.splice(i, 1);
        throw new TimeoutError(
          `waited for ${what} until the move's deadline (migration.timeoutSeconds) passed; nothing was changed`,
          {},
          "Raise migration.timeoutSeconds, or lower the number of moves that run at once",
        );
      }
      timer = setTimeout(wake, left);
    }
    await woken;
    if (timer) clearTimeout(timer);
  }
}

/** Wait for a slot on every remote named (until `deadline`, if given); returns the release function. */
export async function acquire(remotes: string[], deadline?: number): Promise<() => void> {
  const rs = [...new Set(remotes)];
  await waitUntil(
    () => {
      if (!fits(rs)) return false;
      overall++;
      for (const r of rs) perRemote.set(r, (perRemote.get(r) ?? 0) + 1);
      return true;
    },
    deadline,
    `a move slot on ${rs.join(", ")} (LXD_PLACEMENT_MAX_MOVES_PER_REMOTE, LXD_PLACEMENT_MAX_MOVES)`,
  );
  let released = false;
  return () => {
    if (released) return;
    released = true;
    overall--;
    for (const r of rs) perRemote.set(r, (perRemote.get(r) ?? 1) - 1);
    wake();
  };
}

/** Wait until every key is below its limit, then take one of each; returns the release function. */
async function take(slots: [key: string, limit: number][], deadline: number | undefined, what: string): Promise<() => void> {
  const ks = slots.filter(([, l]) => Number.isFinite(l) && l > 0);
  await waitUntil(
    () => {
      if (!ks.every(([k, l]) => (groupSlots.get(k) ?? 0) < l)) return false;
      for (const [k] of ks) groupSlots.set(k, (groupSlots.get(k) ?? 0) + 1);
      return true;
    },
    deadline,
    what,
  );
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const [k] of ks) {
      const n = (groupSlots.get(k) ?? 1) - 1;
      if (n > 0) groupSlots.set(k, n);
      else groupSlots.delete(k);
    }
    wake();
  };
}

const noop = () => undefined;

/** A move slot of a group: the whole move, within the group's overall and per-server limits. */
export async function acquireGroupMove(group: string, servers: string[], l: { maxMoves?: number; maxMovesPerServer?: number }, deadline?: number): Promise<() => void> {
  const slots: [string, number][] = [];
  if (l.maxMoves) slots.push([`${group}\0moves`, l.maxMoves]);
  if (l.maxMovesPerServer) for (const s of new Set(servers)) slots.push([`${group}\0server\0${s}`, l.maxMovesPerServer]);
  return slots.length ? take(slots, deadline, `a move slot of group "${group}" (maxConcurrentMoves, maxConcurrentMovesPerServer)`) : noop;
}

/** A downtime slot of a group: at most `maxUnavailable` of its instances down at once. */
export async function acquireUnavailable(group: string, maxUnavailable: number | undefined, deadline?: number): Promise<() => void> {
  return maxUnavailable ? take([[`${group}\0down`, maxUnavailable]], deadline, `a downtime slot of group "${group}" (maxUnavailable ${maxUnavailable})`) : noop;
}

export function inFlight(): { overall: number; perRemote: Record<string, number> } {
  return { overall, perRemote: Object.fromEntries(perRemote) };
}

/** What a group holds now: moves, moves per server, instances down. */
export function groupInFlight(group: string): { moves: number; perServer: Record<string, number>; down: number } {
  const perServer: Record<string, number> = {};
  for (const [k, n] of groupSlots) {
    const [g, kind, server] = k.split("\0");
    if (g === group && kind === "server") perServer[server] = n;
  }
  return { moves: groupSlots.get(`${group}\0moves`) ?? 0, perServer, down: groupSlots.get(`${group}\0down`) ?? 0 };
}
