/**
 * The process-wide move limiter (provider/limiter.ts): a limit holds when several slots free at
 * once (every woken waiter checks and takes in one step), and a wait ends at the move's deadline
 * with an error that says what was waited for, having taken nothing.
 */
import { acquire, acquireUnavailable, groupInFlight, inFlight } from "../../provider/limiter";

const tick = () => new Promise((r) => setImmediate(r));

describe("the move limiter", () => {
  const saved = process.env.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE;
  afterEach(() => {
    if (saved === undefined) delete process.env.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE;
    else process.env.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE = saved;
  });

  it("at most LXD_PLACEMENT_MAX_MOVES_PER_REMOTE moves per remote, also when several slots free at once", async () => {
    process.env.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE = "3";
    let peak = 0;
    const held: (() => void)[] = [];
    const all = Array.from({ length: 12 }, () =>
      acquire(["lim-a", "lim-b"]).then((release) => {
        peak = Math.max(peak, inFlight().perRemote["lim-b"] ?? 0);
        held.push(release);
      }),
    );
    for (let round = 0; round < 6; round++) {
      await tick();
      expect(inFlight().perRemote["lim-b"]).toBeLessThanOrEqual(3);
      // Free every slot held at once: the woken waiters must not all get through.
      for (const r of held.splice(0)) r();
    }
    await Promise.all(all);
    for (const r of held.splice(0)) r();
    expect(peak).toBe(3);
    expect(inFlight().perRemote["lim-b"]).toBe(0);
  });

  it("a wait for a slot ends at the deadline, naming what it waited for, and takes nothing", async () => {
    process.env.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE = "1";
    const first = await acquire(["lim-c"]);
    await expect(acquire(["lim-c"], Date.now() + 50)).rejects.toThrow(/waited for a move slot on lim-c .*until the move's deadline .*nothing was changed/);
    expect(inFlight().perRemote["lim-c"]).toBe(1);
    first();
    const downs = [await acquireUnavailable("lim-g", 1)];
    await expect(acquireUnavailable("lim-g", 1, Date.now() + 50)).rejects.toThrow(/downtime slot of group "lim-g"/);
    expect(groupInFlight("lim-g").down).toBe(1);
    downs[0]();
    expect(groupInFlight("lim-g").down).toBe(0);
  });
});
