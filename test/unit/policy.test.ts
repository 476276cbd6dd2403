/**
 * The placement policy (provider/policy.ts), property by property: spread, stability when an
 * instance or a member is added, drain, pin, anti-affinity, weights, bounded loads, cluster
 * groups, batches; then the limiter's group slots that make maxUnavailable and
 * maxConcurrentMoves real (provider/limiter.ts).
 */
import { formatPlan, hrwScore, place, ranking, type PolicyCandidate, type PolicyInput, type PolicyResult } from "../../provider/policy";
import { acquireGroupMove, acquireUnavailable, groupInFlight } from "../../provider/limiter";

const insts = (n: number, prefix = "web-") => Array.from({ length: n }, (_, k) => ({ name: `${prefix}${k + 1}` }));
const members = (n: number): PolicyCandidate[] => Array.from({ length: n }, (_, k) => ({ name: `m${k + 1}` }));
const counts = (r: PolicyResult) => {
  const out: Record<string, number> = {};
  for (const m of Object.values(r.placedOn)) if (m) out[m] = (out[m] ?? 0) + 1;
  return out;
};
/** Moves of instances that existed before (creates are not moves). */
const movedExisting = (r: PolicyResult) => r.moves.map((m) => m.instance);

/** Randomized properties run hundreds of placements: on a loaded machine they need more than the unit default. */
const SLOW = 60_000;

/** A small deterministic PRNG, so the randomized properties are the same on every run. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random groups: 1-40 instances over 2-6 candidates, half with weights, half with tolerance 0.25. */
function randomCases(n: number, seed = 7): { input: PolicyInput; N: number }[] {
  const rnd = prng(seed);
  const out: { input: PolicyInput; N: number }[] = [];
  for (let t = 0; t < n; t++) {
    const c = 2 + Math.floor(rnd() * 5);
    const N = 1 + Math.floor(rnd() * 40);
    const weighted = rnd() < 0.5;
    out.push({
      N,
      input: {
        instances: insts(N),
        candidates: Array.from({ length: c }, (_, k) => ({ name: `m${k + 1}`, weight: weighted ? 1 + Math.floor(rnd() * 3) : 1 })),
        tolerance: rnd() < 0.5 ? 0 : 0.25,
      },
    });
  }
  return out;
}

describe("spread: weighted rendezvous hashing with bounded loads", () => {
  it("6 instances over 3 members: 2 each; 12: 4 each; 7: 3/2/2", () => {
    expect(Object.values(counts(place({ instances: insts(6), candidates: members(3) }))).sort()).toEqual([2, 2, 2]);
    expect(Object.values(counts(place({ instances: insts(12), candidates: members(3) }))).sort()).toEqual([4, 4, 4]);
    expect(Object.values(counts(place({ instances: insts(7), candidates: members(3) }))).sort()).toEqual([2, 2, 3]);
  });

  it("is deterministic and does not depend on the order instances or candidates are given in", () => {
    const a = place({ instances: insts(20), candidates: members(4) });
    const b = place({ instances: insts(20).reverse(), candidates: members(4).reverse() });
    expect(b.assignment).toEqual(a.assignment);
  });

  it("HRW: an instance's ranking of two candidates does not depend on any third", () => {
    for (const i of insts(200).map((x) => x.name)) {
      const two = ranking(i, [{ name: "m1" }, { name: "m2" }]);
      const three = ranking(i, [{ name: "m1" }, { name: "m2" }, { name: "m3" }]).filter((m) => m !== "m3");
      expect(three).toEqual(two);
    }
  });

  it("weights: a candidate of weight 2 is first choice about twice as often (unbounded HRW, 6000 instances)", () => {
    const cands = [
      { name: "big", weight: 2 },
      { name: "a", weight: 1 },
      { name: "b", weight: 1 },
    ];
    const first: Record<string, number> = { big: 0, a: 0, b: 0 };
    for (let k = 0; k < 6_000; k++) first[ranking(`i-${k}`, cands)[0]]++;
    expect(first.big / 6_000).toBeCloseTo(0.5, 1);
    expect(first.a / 6_000).toBeCloseTo(0.25, 1);
    expect(first.b / 6_000).toBeCloseTo(0.25, 1);
    expect(hrwScore("x", "y", 0)).toBe(0);
  });

  it("weights with bounded loads: 12 instances over weights 2:1:1 land 6/3/3", () => {
    const r = place({ instances: insts(12), candidates: [{ name: "m1", weight: 2 }, { name: "m2" }, { name: "m3" }] });
    expect(counts(r)).toEqual({ m1: 6, m2: 3, m3: 3 });
    expect(r.bounds.m1).toMatchObject({ share: 6, lower: 6, upper: 6 });
  });

  it("instance weights count against the share: a weight-4 database and 4 small ones on 2 members", () => {
    const r = place({ instances: [{ name: "db", weight: 4 }, ...insts(4)], candidates: members(2) });
    expect(r.load).toEqual({ m1: 4, m2: 4 });
    const withDb = r.placedOn.db!;
    expect(
      Object.entries(r.placedOn)
        .filter(([, m]) => m === withDb)
        .map(([i]) => i),
    ).toEqual(["db"]);
  });

  it(
    "bounded loads: no candidate ever exceeds ceil(share·(1+ε)) without pins or anti-affinity (120 random groups)",
    () => {
      for (const { input } of randomCases(120)) {
        const r = place(input);
        expect(r.errors).toEqual([]);
        for (const [c, n] of Object.entries(r.load)) expect({ c, n, ok: n <= r.bounds[c].upper }).toEqual({ c, n, ok: true });
        expect(r.warnings).toEqual([]);
      }
    },
    SLOW,
  );

  it(
    "with tolerance 0 every load is within one instance of the share",
    () => {
      for (const { input } of randomCases(120, 11).filter((x) => x.input.tolerance === 0)) {
        const r = place(input);
        for (const [c, n] of Object.entries(r.load)) expect(Math.abs(n - r.bounds[c].share)).toBeLessThan(1);
      }
    },
    SLOW,
  );
});

describe("stability: as few moves as possible", () => {
  it(
    "running the policy on its own result moves nothing (120 random groups, with pins and anti-affinity too)",
    () => {
      for (const { input, N } of randomCases(120, 3)) {
        const extra: PolicyInput = {
          ...input,
          instances: input.instances.map((i, k) => (k === 0 && N > 3 ? { ...i, pin: "m1" } : k === 1 && N > 3 ? { ...i, antiAffinity: ["web-3"] } : i)),
        };
        for (const inp of [input, extra]) {
          const a = place(inp);
          const b = place({ ...inp, current: a.placedOn });
          expect(b.moves).toEqual([]);
          expect(b.assignment).toEqual(a.assignment);
        }
      }
    },
    SLOW,
  );

  it(
    "adding one instance moves at most one existing instance (120 random groups)",
    () => {
      let zero = 0;
      for (const { input, N } of randomCases(120, 5)) {
        const a = place(input);
        const b = place({ ...input, instances: insts(N + 1), current: a.placedOn });
        expect(movedExisting(b).length).toBeLessThanOrEqual(1);
        expect(b.creates.map((c) => c.instance)).toEqual([`web-${N + 1}`]);
        if (!b.moves.length) zero++;
      }
      expect(zero).toBeGreaterThan(100); // nearly always none at all
    },
    SLOW,
  );

  it(
    "removing one instance moves at most two others, nearly always none",
    () => {
      // Shares shrink with the total, so a candidate can end above its new upper bound and another
      // below its lower one: each costs at most one move.
      let none = 0;
      for (const { input, N } of randomCases(120, 9)) {
        if (N < 2) continue;
        const a = place(input);
        const b = place({ ...input, instances: insts(N - 1), current: a.placedOn });
        expect(b.moves.length).toBeLessThanOrEqual(2);
        if (!b.moves.length) none++;
      }
      expect(none).toBeGreaterThan(90);
    },
    SLOW,
  );

  it("adding a member moves its share, and only to it: 12 over 3 → 4 members moves 3", () => {
    const a = place({ instances: insts(12), candidates: members(3) });
    const b = place({ instances: insts(12), candidates: members(4), current: a.placedOn });
    expect(b.moves).toHaveLength(3);
    expect(new Set(b.moves.map((m) => m.to))).toEqual(new Set(["m4"]));
    expect(new Set(b.moves.map((m) => m.from))).toEqual(new Set(["m1", "m2", "m3"]));
    expect(counts(b)).toEqual({ m1: 3, m2: 3, m3: 3, m4: 3 });
  });

  it(
    "adding a member moves about N/(n+1) instances, all to the new member when weights are equal (random groups)",
    () => {
      for (const { input, N } of randomCases(120, 13)) {
        const a = place(input);
        const cands = [...input.candidates, { name: "new", weight: 1 }];
        const b = place({ ...input, candidates: cands, current: a.placedOn });
        const W = cands.reduce((s, c) => s + (c.weight ?? 1), 0);
        const share = N / W;
        expect(b.moves.length).toBeLessThanOrEqual(Math.ceil(share * (1 + (input.tolerance ?? 0))) + 1);
        expect(b.moves.length).toBeGreaterThanOrEqual(Math.floor(share * (1 - (input.tolerance ?? 0))));
        // With tolerance 0 and equal weights the old members were as even as can be: every move is
        // to the new member. (With slack, a member that was allowed to run above its share may
        // shed to the next member in an instance's ranking instead.)
        if (input.tolerance === 0 && input.candidates.every((c) => (c.weight ?? 1) === 1)) for (const m of b.moves) expect(m.to).toBe("new");
      }
    },
    SLOW,
  );
});

describe("drain", () => {
  it("a draining member gets zero instances; only its instances move, spread over the rest", () => {
    const a = place({ instances: insts(6), candidates: members(3) });
    expect(counts(a)).toEqual({ m1: 2, m2: 2, m3: 2 });
    const b = place({ instances: insts(6), candidates: members(3), draining: ["m3"], current: a.placedOn, maxUnavailable: 2 });
    expect(counts(b)).toEqual({ m1: 3, m2: 3 });
    expect(b.moves).toHaveLength(2);
    for (const m of b.moves) expect(m).toMatchObject({ from: "m3", why: "drain m3", batch: 1 });
    expect(new Set(b.moves.map((m) => m.to))).toEqual(new Set(["m1", "m2"]));
    expect(b.bounds.m3).toBeUndefined();
    expect(b.load.m3).toBeUndefined();
  });

  it(
    "draining in random groups: nothing ends on the drained member and nothing else moves while within bounds",
    () => {
      for (const { input } of randomCases(120, 17)) {
        const a = place(input);
        const b = place({ ...input, draining: ["m1"], current: a.placedOn });
        expect(Object.values(b.placedOn)).not.toContain("m1");
        const fromOthers = b.moves.filter((m) => m.from !== "m1");
        // Others move only when the drained instances cannot all fit within the new upper bounds.
        if (input.candidates.every((c) => (c.weight ?? 1) === 1) && input.tolerance === 0) expect(fromOthers).toEqual([]);
      }
    },
    SLOW,
  );

  it("a drained member that comes back gets its share back, taken from the others", () => {
    const a = place({ instances: insts(6), candidates: members(3), draining: ["m3"] });
    const b = place({ instances: insts(6), candidates: members(3), current: a.placedOn });
    expect(counts(b)).toEqual({ m1: 2, m2: 2, m3: 2 });
    expect(b.moves.map((m) => m.to)).toEqual(["m3", "m3"]);
  });

  it("draining everything is an error", () => {
    const r = place({ instances: insts(2), candidates: members(2), draining: ["m1", "m2"] });
    expect(r.errors.join()).toMatch(/no candidate is left/);
  });
});

describe("pin", () => {
  it("a pinned instance goes to its pin and counts against that member's share", () => {
    const r = place({ instances: [{ name: "db", pin: "m1" }, ...insts(5)], candidates: members(3) });
    expect(r.assignment.db).toBe("m1");
    expect(counts(r)).toEqual({ m1: 2, m2: 2, m3: 2 });
  });

  it("moving a pin moves that instance only", () => {
    const a = place({ instances: [{ name: "db", pin: "m1" }, ...insts(5)], candidates: members(3) });
    const b = place({ instances: [{ name: "db", pin: "m2" }, ...insts(5)], candidates: members(3), current: a.placedOn });
    expect(b.moves.filter((m) => m.instance === "db")).toEqual([expect.objectContaining({ from: "m1", to: "m2", why: "pinned to m2" })]);
    expect(b.moves.length).toBeLessThanOrEqual(2); // db, and at most one instance to keep the spread
  });

  it("pins win over the spread: three pinned to m1 stay there, the rest go elsewhere", () => {
    const r = place({ instances: [...insts(3, "db-").map((i) => ({ ...i, pin: "m1" })), ...insts(3)], candidates: members(3) });
    expect(counts(r).m1).toBe(3);
    expect(Object.entries(r.placedOn).filter(([i, m]) => i.startsWith("web-") && m === "m1")).toEqual([]);
  });

  it("a pin to a member outside the candidates is kept and does not count", () => {
    const r = place({ instances: [{ name: "db", pin: "m9" }, ...insts(4)], candidates: members(2) });
    expect(r.assignment.db).toBe("m9");
    expect(r.load).toEqual({ m1: 2, m2: 2 });
  });

  it("a pin to a draining member is an error", () => {
    const r = place({ instances: [{ name: "db", pin: "m3" }], candidates: members(3), draining: ["m3"] });
    expect(r.errors).toEqual([expect.stringMatching(/db: pinned to m3, which is draining/)]);
  });
});

describe("anti-affinity", () => {
  it("named instances never share a member, even when hashing would put them together", () => {
    // Find two instances whose first choice is the same member, then make them anti-affine.
    const cands = members(3);
    const names = insts(30).map((i) => i.name);
    const same = names.filter((n) => ranking(n, cands)[0] === ranking(names[0], cands)[0]).slice(0, 2);
    expect(same).toHaveLength(2);
    const r = place({ instances: names.map((n) => (n === same[0] ? { name: n, antiAffinity: [same[1]] } : { name: n })), candidates: cands, tolerance: 1 });
    expect(r.placedOn[same[0]]).not.toBe(r.placedOn[same[1]]);
  });

  it("is symmetric and holds for a set: 3 replicas over 3 members, one each", () => {
    const rs = [{ name: "db-1", antiAffinity: ["db-2", "db-3"] }, { name: "db-2" }, { name: "db-3", antiAffinity: ["db-2"] }];
    const r = place({ instances: [...rs, ...insts(6)], candidates: members(3) });
    expect(new Set(["db-1", "db-2", "db-3"].map((i) => r.placedOn[i])).size).toBe(3);
  });

  it("an existing violation is repaired by moving one of the two", () => {
    const r = place({
      instances: [{ name: "a", antiAffinity: ["b"] }, { name: "b" }],
      candidates: members(2),
      current: { a: "m1", b: "m1" },
    });
    expect(r.placedOn.a).not.toBe(r.placedOn.b);
    expect(r.moves).toHaveLength(1);
    expect(r.moves[0].why).toMatch(/anti-affinity|over its share/);
  });

  it("drain with anti-affinity that cannot hold on the members left is an error, not a silent violation", () => {
    const r = place({ instances: [{ name: "a", antiAffinity: ["b", "c"] }, { name: "b", antiAffinity: ["c"] }, { name: "c" }], candidates: members(3), draining: ["m3"] });
    expect(r.errors.join()).toMatch(/anti-affinity .* cannot be met on 2 candidate/);
  });
});

describe("cluster groups", () => {
  const groups = { "fast-group": ["m2", "m3"] };

  it('a candidate "@group" stands for its members', () => {
    const r = place({ instances: insts(4), candidates: [{ name: "@fast-group" }], groups });
    expect(counts(r)).toEqual({ m2: 2, m3: 2 });
  });

  it('a new instance pinned to "@group" targets the group: the cluster picks the member', () => {
    const r = place({ instances: [{ name: "db", pin: "@fast-group" }], candidates: members(3), groups });
    expect(r.assignment.db).toBe("@fast-group");
    expect(r.creates).toEqual([{ instance: "db", to: "@fast-group" }]);
  });

  it('an instance pinned to "@group" and already in it stays; one outside moves into it', () => {
    const r = place({
      instances: [
        { name: "a", pin: "@fast-group" },
        { name: "b", pin: "@fast-group" },
      ],
      candidates: members(3),
      groups,
      current: { a: "m3", b: "m1" },
    });
    expect(r.assignment.a).toBe("@fast-group");
    expect(r.moves).toEqual([expect.objectContaining({ instance: "b", from: "m1", why: "pinned to @fast-group" })]);
    expect(["m2", "m3"]).toContain(r.moves[0].to);
  });

  it("draining a member of the group: the policy picks another member of the group, not the cluster", () => {
    const r = place({ instances: [{ name: "a", pin: "@fast-group" }], candidates: members(3), groups, draining: ["m3"], current: { a: "m3" } });
    expect(r.assignment.a).toBe("m2");
    expect(r.moves).toEqual([expect.objectContaining({ from: "m3", to: "m2", why: "drain m3 (pinned to @fast-group)" })]);
  });

  it("an unknown group is an error", () => {
    expect(place({ instances: [{ name: "a", pin: "@nope" }], candidates: members(1), groups }).errors.join()).toMatch(/does not exist/);
  });
});

describe("batches: maxUnavailable and maxConcurrentMoves", () => {
  const from = (m: string) => Object.fromEntries(insts(6).map((i) => [i.name, m]));

  it("maxUnavailable 2: six moves in three batches of two, in plan order", () => {
    const r = place({ instances: insts(6), candidates: members(3), current: from("m9"), maxUnavailable: 2 });
    expect(r.moves).toHaveLength(6);
    expect(r.batches).toBe(3);
    for (let b = 1; b <= 3; b++) expect(r.moves.filter((m) => m.batch === b)).toHaveLength(2);
    expect(r.moves.map((m) => m.batch)).toEqual([...r.moves.map((m) => m.batch)].sort());
  });

  it("stopped instances are no downtime: they do not use maxUnavailable", () => {
    const r = place({ instances: insts(6), candidates: members(3), current: from("m9"), maxUnavailable: 1, running: { "web-1": false, "web-2": false } });
    expect(r.batches).toBe(4);
  });

  it("maxConcurrentMoves caps every batch; per server caps moves touching one member", () => {
    expect(place({ instances: insts(6), candidates: members(3), current: from("m9"), maxConcurrentMoves: 4 }).batches).toBe(2);
    // Every move leaves m9: one per batch.
    expect(place({ instances: insts(6), candidates: members(3), current: from("m9"), maxConcurrentMovesPerServer: 1 }).batches).toBe(6);
  });

  it("no limits: one batch", () => {
    expect(place({ instances: insts(6), candidates: members(3), current: from("m9") }).batches).toBe(1);
  });

  it("moves off draining members come first", () => {
    const a = place({ instances: insts(9), candidates: members(3) });
    const cur = { ...a.placedOn, "web-1": "m9" }; // web-1 is on a member outside the candidates
    const r = place({ instances: insts(9), candidates: members(3), draining: ["m3"], current: cur, maxUnavailable: 1 });
    expect(r.moves[0].from).toBe("m3");
    expect(r.moves[r.moves.length - 1].instance).toBe("web-1");
  });
});

describe("formatPlan", () => {
  it("lists every instance: moves by batch, new ones, the ones that stay, and the loads after", () => {
    const a = place({ instances: insts(6), candidates: members(3) });
    const b = place({ instances: [...insts(6), { name: "web-7" }], candidates: members(3), draining: ["m3"], current: a.placedOn, maxUnavailable: 2 });
    const text = formatPlan(b, { title: "InstanceGroup web", current: a.placedOn });
    expect(text).toMatch(/^InstanceGroup web: 2 move\(s\) in 1 batch\(es\), 1 new; load after/);
    expect(text).toMatch(/batch\s+instance\s+from\s+to\s+why/);
    expect(text).toMatch(/\n\s+1\s+web-\d\s+m3\s+m[12]\s+drain m3/);
    expect(text).toMatch(/\n\s+new\s+web-7\s+-\s+m[12]\s+create/);
    expect(text.match(/stays/g)).toHaveLength(4);
  });
});

describe("limiter: group slots", () => {
  const tick = () => new Promise((r) => setImmediate(r));

  it("maxUnavailable: at most N downtime slots of a group at once; other groups are not held up", async () => {
    const r1 = await acquireUnavailable("g1", 2);
    const r2 = await acquireUnavailable("g1", 2);
    let third = false;
    const p = acquireUnavailable("g1", 2).then((r) => ((third = true), r));
    const other = await acquireUnavailable("g2", 2); // another group is independent
    await tick();
    expect(third).toBe(false);
    expect(groupInFlight("g1").down).toBe(2);
    r1();
    r1(); // releasing twice releases once
    const r3 = await p;
    expect(third).toBe(true);
    expect(groupInFlight("g1").down).toBe(2);
    for (const r of [r2, r3, other]) r();
    expect(groupInFlight("g1").down).toBe(0);
  });

  it("no limit: no slot", async () => {
    const r = await acquireUnavailable("g3", undefined);
    expect(groupInFlight("g3").down).toBe(0);
    r();
  });

  it("maxConcurrentMoves overall and per server", async () => {
    const a = await acquireGroupMove("g4", ["cluster@m3", "cluster@m1"], { maxMoves: 3, maxMovesPerServer: 2 });
    const b = await acquireGroupMove("g4", ["cluster@m3", "cluster@m2"], { maxMoves: 3, maxMovesPerServer: 2 });
    let c = false;
    const pc = acquireGroupMove("g4", ["cluster@m3", "cluster@m1"], { maxMoves: 3, maxMovesPerServer: 2 }).then((r) => ((c = true), r));
    const d = await acquireGroupMove("g4", ["cluster@m2", "cluster@m1"], { maxMoves: 3, maxMovesPerServer: 2 }); // m3 is full, m1/m2 are not
    await tick();
    expect(c).toBe(false);
    expect(groupInFlight("g4")).toEqual({ moves: 3, perServer: { "cluster@m3": 2, "cluster@m1": 2, "cluster@m2": 2 }, down: 0 });
    a();
    d();
    const rc = await pc;
    expect(c).toBe(true);
    for (const r of [b, rc]) r();
    expect(groupInFlight("g4")).toEqual({ moves: 0, perServer: {}, down: 0 });
  });
});

describe("InstanceGroup (sdk/group.ts) with Pulumi's mocks: the policy's result becomes Instance inputs", () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pulumi = require("@pulumi/pulumi") as typeof import("@pulumi/pulumi");
  const created: { type: string; name: string; inputs: Record<string, unknown> }[] = [];
  let sdk: typeof import("../../sdk");
  const value = <T>(o: import("@pulumi/pulumi").Output<T>) => new Promise<T>((resolve) => o.apply(resolve));

  beforeAll(() => {
    pulumi.runtime.setMocks(
      {
        newResource: (a) => {
          created.push({ type: a.type, name: a.name, inputs: a.inputs });
          return { id: `${a.name}-id`, state: a.inputs };
        },
        call: (a) => a.inputs,
      },
      "project",
      "stack",
      true,
    );
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    sdk = require("../../sdk");
  });

  it("declares one Instance per key, targeted where the policy says, with the group's limits in migration", async () => {
    const g = new sdk.InstanceGroup("web", {
      remote: "cluster",
      namePrefix: "web-",
      defaults: { image: "busybox", migration: { strategy: "near-live" } },
      instances: { a: {}, b: {}, c: {}, d: { pin: "m1" } },
      policy: { members: ["m1", "m2", "m3"], draining: ["m3"], maxUnavailable: 1, maxConcurrentMoves: 2 },
      observed: { current: { a: "m3", b: "m1", c: "m2", d: "m1" } },
    });
    expect(Object.keys(g.instances)).toEqual(["a", "b", "c", "d"]);
    expect(await value(g.assignment)).toEqual({ a: "m2", b: "m1", c: "m2", d: "m1" });
    expect(await value(g.instances.a.target)).toBe("m2");
    expect(await value(g.instances.a.remote)).toBe("cluster");
    expect(await value(g.instances.a.name)).toBe("web-a");
    expect(await value(g.instances.a.migration)).toEqual({ strategy: "near-live", group: "web", maxUnavailable: 1, maxConcurrentMoves: 2 });
    const plan = await value(g.plan);
    expect(plan[0]).toMatchObject({ instance: "a", name: "web-a", from: "m3", to: "m2", action: "move", batch: 1, why: "drain m3" });
    expect(plan.slice(1).map((r) => r.action)).toEqual(["stay", "stay", "stay"]);
    expect(await value(g.planText)).toMatch(/^InstanceGroup web plan: 1 move\(s\) in 1 batch\(es\), 0 new, 3 staying; maxUnavailable 1, maxConcurrentMoves 2, draining m3\n\s+batch\s+instance/);
    expect(created.filter((c) => c.name.startsWith("web-")).map((c) => c.type)).toEqual(Array(4).fill("pulumi-nodejs:dynamic/lxd-placement:Instance"));
  });

  it("spreads over remotes with policy.remotes: remote is the assignment, target passes through", async () => {
    const g = new sdk.InstanceGroup("edge", {
      defaults: { image: "busybox" },
      instances: { x: {}, y: {} },
      policy: { remotes: ["s1", "s2"] },
      observed: { current: {} },
    });
    const a = await value(g.assignment);
    expect(Object.values(a).sort()).toEqual(["s1", "s2"]);
    expect(await value(g.instances.x.remote)).toBe(a.x);
    expect((await value(g.plan)).map((r) => r.action)).toEqual(["create", "create"]);
  });

  it("a policy that cannot be met fails the program with the reason", () => {
    const make = () =>
      new sdk.InstanceGroup("bad", {
        remote: "cluster",
        defaults: { image: "busybox" },
        instances: { db: { pin: "m3" } },
        policy: { members: ["m1", "m2", "m3"], draining: ["m3"] },
        observed: { current: { db: "m3" } },
      });
    expect(make).toThrow(/the placement policy cannot be met:\n\s+db: pinned to m3, which is draining/);
  });
});
