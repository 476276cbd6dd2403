/**
 * A counting limiter shared by every move the provider process runs: at most
 * LXD_PLACEMENT_MAX_MOVES_PER_REMOTE moves touch one remote at a time, and at most
 * LXD_PLACEMENT_MAX_MOVES run overall. Pulumi runs resources of one `pulumi up` in parallel in one
 * provider process, so the limit is real across resources, not advisory.
 */
const perRemote = new Map<string, number>();
let overall = 0;
const waiters: (() => void)[] = [];

function limits(): { remote: number; overall: number } {
  const n = (v: string | undefined, d: number) => (v && Number(v) > 0 ? Math.floor(Number(v)) : d);
  return { remote: n(process.env.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE, 4), overall: n(process.env.LXD_PLACEMENT_MAX_MOVES, 8) };
}

function fits(remotes: string[]): boolean {
  const l = limits();
  return overall < l.overall && remotes.every((r) => (perRemote.get(r) ?? 0) < l.remote);
}

/** Wait for a slot on every remote named; returns the release function. */
export async function acquire(remotes: string[]): Promise<() => void> {
  const rs = [...new Set(remotes)];
  while (!fits(rs)) await new Promise<void>((r) => waiters.push(r));
  overall++;
  for (const r of rs) perRemote.set(r, (perRemote.get(r) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    overall--;
    for (const r of rs) perRemote.set(r, (perRemote.get(r) ?? 1) - 1);
    for (const w of waiters.splice(0)) w();
  };
}

export function inFlight(): { overall: number; perRemote: Record<string, number> } {
  return { overall, perRemote: Object.fromEntries(perRemote) };
}
