/**
 * InstanceGroup through the real engine against the sandbox cluster: six running containers
 * spread over m1..m3, then m3 drained with maxUnavailable 2 while a poller checks that at least
 * four of the six run at every sample, then m3 back with maxUnavailable 1 (the limit binding:
 * the two cutovers take turns), then a pin and an anti-affinity pair, then the cluster group
 * "@fast-group" as the only target. Instance names start with "grp-".
 */
import * as pulumi from "@pulumi/pulumi";
import { TestStack } from "../helpers/engine";
import { deleteAll, LXD_CONF, sha, writeData, findEverywhere, type Seen } from "../helpers/sandbox";
// The built SDK and provider, as a user's program loads them.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { InstanceGroup } = require("../../bin/sdk") as typeof import("../../sdk");
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Estate } = require("../../bin/provider/estate") as typeof import("../../provider/estate");

// The inline program runs in this process and reads the cluster itself.
process.env.LXD_CONF ??= LXD_CONF;

const PREFIX = "grp-";
const KEYS = ["w1", "w2", "w3", "w4", "w5", "w6"];
const lxdName = (k: string) => `${PREFIX}${k}`;
const mine = (s: Seen) => s.name.startsWith(PREFIX);

type Policy = Record<string, unknown>;
/** Per-instance policy options (pin, antiAffinity) by key; empty entries otherwise. */
const spec: { policy: Policy; instances: Record<string, Record<string, unknown>> } = { policy: {}, instances: {} };

function program() {
  return async () => {
    const g = new InstanceGroup("grp", {
      remote: "cluster",
      namePrefix: PREFIX,
      defaults: { image: "busybox" },
      instances: Object.fromEntries(KEYS.map((k) => [k, spec.instances[k] ?? {}])),
      policy: spec.policy as never,
    });
    const per = (f: (i: (typeof g.instances)[string]) => pulumi.Output<unknown>) => pulumi.all(KEYS.map((k) => pulumi.all([k, f(g.instances[k])]))).apply((pairs) => Object.fromEntries(pairs));
    return { plan: g.plan, assignment: g.assignment, locations: per((i) => i.location), lastMoves: per((i) => i.lastMove) };
  };
}

interface Row {
  instance: string;
  from: string;
  to: string;
  action: string;
  batch: number;
  strategy: string;
  why: string;
}
interface Move {
  downtimeSeconds: number;
  at: string;
  strategy: string;
}

let stack: TestStack;

/**
 * A preview in the engine's default display (no --diff), with the info diagnostics and the step
 * of each resource taken from the engine's events. Bounded like the helper's calls.
 */
async function defaultPreview(): Promise<{ stdout: string; info: string[]; ops: Record<string, string> }> {
  const info: string[] = [];
  const ops: Record<string, string> = {};
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 240_000);
  try {
    const r = await stack.stack.preview({
      signal: ac.signal,
      onEvent: (e) => {
        if (e.diagnosticEvent?.severity === "info") info.push(e.diagnosticEvent.message.trimEnd());
        const m = e.resourcePreEvent?.metadata;
        if (m) ops[m.urn.slice(m.urn.lastIndexOf("::") + 2)] = m.op;
      },
    });
    return { stdout: r.stdout, info, ops };
  } finally {
    clearTimeout(timer);
  }
}
const data: Record<string, string> = {};

/** Every copy of each group instance on the cluster: name → [location, status][]. */
async function copies(e: InstanceType<typeof Estate>): Promise<Map<string, { location: string; status: string; name: string }[]>> {
  const out = new Map<string, { location: string; status: string; name: string }[]>(KEYS.map((k) => [k, []]));
  for (const i of await e.instances("cluster", { fresh: true })) {
    const k = KEYS.find((x) => i.name === lxdName(x) || i.name.startsWith(`${lxdName(x)}-lxdp-`));
    if (k) out.get(k)!.push({ location: i.location, status: i.status, name: i.name });
  }
  return out;
}

/**
 * Poll the cluster while `work` runs: at each sample, how many of the six have a running copy.
 * One GET /instances per sample (the provider's client, not the lxc CLI: a sample every ~100 ms).
 */
async function pollWhile<T>(work: Promise<T>): Promise<{ value: T; samples: number[]; down: string[] }> {
  const e = new Estate();
  const samples: number[] = [];
  /** Samples with an instance down: when, and which copies were seen (for the failure message). */
  const down: string[] = [];
  let done = false;
  const poller = (async () => {
    while (!done) {
      const c = await copies(e);
      const up = [...c.values()].filter((cs) => cs.some((x) => x.status === "Running")).length;
      samples.push(up);
      if (up < KEYS.length) {
        const seen = [...c.entries()].map(([k, cs]) => `${k}:${cs.map((x) => `${x.name.slice(lxdName(k).length) || "="}@${x.location}/${x.status}`).join("+") || "none"}`);
        down.push(`${new Date().toISOString()} ${up} up: ${seen.join(" ")}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    const value = await work;
    return { value, samples, down };
  } finally {
    done = true;
    await poller.catch(() => undefined);
    await e.close();
  }
}

/** Each instance exactly once on the cluster, running: key → member. */
async function where(): Promise<Record<string, string>> {
  const seen = await findEverywhere(mine);
  const out: Record<string, string> = {};
  for (const k of KEYS) {
    const cs = seen.filter((s) => s.name === lxdName(k) || s.name.startsWith(`${lxdName(k)}-lxdp-`));
    expect({ k, copies: cs.map((s) => `${s.remote}:${s.name}@${s.location} ${s.status}`) }).toEqual({ k, copies: [`cluster:${lxdName(k)}@${cs[0]?.location} Running`] });
    out[k] = cs[0].location;
  }
  return out;
}

/**
 * `lxc exec` through the cluster now and then fails when the sandbox is busy ("websocket: bad
 * handshake", "i/o timeout"): try such a call again, a few times. Only reads and writes of the
 * test's own data go through this; the moves under test are never retried.
 */
async function retry<T>(fn: () => Promise<T>, times = 3): Promise<T> {
  for (let k = 1; ; k++) {
    try {
      return await fn();
    } catch (e) {
      if (k >= times || !/bad handshake|timed out|i\/o timeout|EOF|connection reset/.test(String(e))) throw e;
      await new Promise((r) => setTimeout(r, 1000 * k));
    }
  }
}

const count = (at: Record<string, string>) => {
  const n: Record<string, number> = {};
  for (const m of Object.values(at)) n[m] = (n[m] ?? 0) + 1;
  return n;
};

/** Downtime windows [start, end] in ms from lastMove (end = finish time; the source is deleted after). */
const windows = (moves: Move[]) => moves.map((m) => ({ end: Date.parse(m.at), start: Date.parse(m.at) - m.downtimeSeconds * 1000 }));

beforeAll(async () => {
  await deleteAll(mine);
  stack = await TestStack.create({ projectName: "instance-group", program: program() });
});
afterAll(async () => {
  await stack?.remove();
  await deleteAll(mine);
});

describe("InstanceGroup on the sandbox cluster", () => {
  it("spreads six running containers evenly over m1, m2, m3", async () => {
    spec.policy = { members: ["m1", "m2", "m3"], maxUnavailable: 2 };
    const r = await stack.up();
    const at = await where();
    expect(count(at)).toEqual({ m1: 2, m2: 2, m3: 2 });
    expect(r.outputs.locations).toEqual(at);
    expect((r.outputs.plan as Row[]).map((x) => x.action)).toEqual(KEYS.map(() => "create"));
    for (const k of KEYS) data[k] = await retry(() => writeData("cluster", "default", lxdName(k), "/root/data", 2));
  });

  it("preview of draining m3 shows the group's plan (2 moves, batch 1, near-live) and changes nothing", async () => {
    spec.policy = { members: ["m1", "m2", "m3"], maxUnavailable: 2, draining: ["m3"] };
    const before = await where();
    // The default display, as `pulumi preview` shows it: the plan is an info diagnostic of the
    // component (the helper's preview asks for --diff, which leaves info diagnostics out).
    const p = await defaultPreview();
    // Only the two instances on m3 change (their target); the other four are untouched.
    const onM3 = KEYS.filter((k) => before[k] === "m3");
    for (const k of KEYS) expect({ k, op: p.ops[`grp-${k}`] }).toEqual({ k, op: onM3.includes(k) ? "update" : "same" });
    const table = p.info.find((m) => m.startsWith("InstanceGroup grp plan:")) ?? "";
    expect(table).toMatch(/^InstanceGroup grp plan: 2 move\(s\) in 1 batch\(es\), 0 new, 4 staying; maxUnavailable 2, draining m3/);
    expect(table).toMatch(/batch\s+instance\s+from\s+to\s+strategy\s+why/);
    for (const k of onM3) expect(table).toMatch(new RegExp(`\\n\\s+1\\s+${lxdName(k)}\\s+m3\\s+m[12]\\s+near-live\\s+drain m3`));
    for (const k of KEYS.filter((x) => !onM3.includes(x))) expect(table).toMatch(new RegExp(`\\n\\s+-\\s+${lxdName(k)}\\s+(m[12])\\s+\\1\\s+stays`));
    expect(table).toMatch(/load after: m1 3, m2 3/);
    // The same table is what a user sees under "Diagnostics:".
    expect(p.stdout).toContain("InstanceGroup grp plan: 2 move(s) in 1 batch(es)");
    expect(await where()).toEqual(before);
  });

  it("up drains m3: zero left there, all running, each once, data intact; >= 4 of 6 running at every poll", async () => {
    const { value: r, samples, down } = await pollWhile(stack.up());
    const at = await where();
    expect(count(at)).toEqual({ m1: 3, m2: 3 });
    expect(samples.length).toBeGreaterThan(5);
    if (Math.min(...samples) < 4) throw new Error(`fewer than 4 of 6 running at some sample:\n${down.join("\n")}`);
    for (const k of KEYS) expect(await retry(() => sha("cluster", "default", lxdName(k), "/root/data"))).toBe(data[k]);
    const plan = r.outputs.plan as Row[];
    expect(plan.filter((x) => x.action === "move").map((x) => x.from)).toEqual(["m3", "m3"]);
    const moved = Object.values(r.outputs.lastMoves as Record<string, Move | undefined>).filter((m): m is Move => !!m);
    expect(moved.map((m) => m.strategy)).toEqual(["near-live", "near-live"]);
  });

  it("m3 back with maxUnavailable 1: two moves to m3 in two batches whose cutovers take turns; >= 5 of 6 running at every poll", async () => {
    spec.policy = { members: ["m1", "m2", "m3"], maxUnavailable: 1 };
    const { value: r, samples, down } = await pollWhile(stack.up());
    const plan = (r.outputs.plan as Row[]).filter((x) => x.action === "move");
    expect(plan.map((x) => x.to)).toEqual(["m3", "m3"]);
    expect(plan.map((x) => x.batch)).toEqual([1, 2]);
    expect(count(await where())).toEqual({ m1: 2, m2: 2, m3: 2 });
    expect(samples.length).toBeGreaterThan(5);
    if (Math.min(...samples) < 5) throw new Error(`fewer than 5 of 6 running at some sample:\n${down.join("\n")}`);
    const moves = Object.values(r.outputs.lastMoves as Record<string, (Move & { to: string }) | undefined>).filter((m): m is Move & { to: string } => !!m && /@m3\b/.test(m.to));
    expect(moves).toHaveLength(2);
    const [a, b] = windows(moves).sort((x, y) => x.start - y.start);
    // One down at a time: the second cutover starts after the first ends (stamps taken a little apart).
    expect(a.end).toBeLessThanOrEqual(b.start + 250);
    for (const k of KEYS) expect(await retry(() => sha("cluster", "default", lxdName(k), "/root/data"))).toBe(data[k]);
  });

  it("pin and anti-affinity: a pinned instance goes to its member, two anti-affine ones end apart; all running, data intact", async () => {
    const before = await where();
    // Pin one instance to a member it is not on; declare two that share a member anti-affine.
    const pinned = KEYS[0];
    const pinTo = ["m1", "m2", "m3"].find((m) => m !== before[pinned])!;
    const pair = KEYS.slice(1).flatMap((x, i, rest) =>
      rest
        .slice(i + 1)
        .filter((y) => before[x] === before[y])
        .map((y) => [x, y]),
    )[0];
    expect(pair).toBeDefined();
    spec.policy = { members: ["m1", "m2", "m3"], maxUnavailable: 2 };
    spec.instances = { [pinned]: { pin: pinTo }, [pair[0]]: { antiAffinity: [pair[1]] } };
    const { value: r, samples, down } = await pollWhile(stack.up());
    const at = await where();
    expect({ [pinned]: at[pinned] }).toEqual({ [pinned]: pinTo });
    expect(at[pair[0]]).not.toBe(at[pair[1]]);
    // Still an even spread, and only what had to move moved.
    expect(Object.values(count(at)).sort()).toEqual([2, 2, 2]);
    const moved = (r.outputs.plan as Row[]).filter((x) => x.action === "move").map((x) => x.instance);
    expect(moved.length).toBeLessThanOrEqual(4);
    expect(KEYS.filter((k) => at[k] !== before[k]).sort()).toEqual([...moved].sort());
    if (Math.min(...samples) < 4) throw new Error(`fewer than 4 of 6 running at some sample:\n${down.join("\n")}`);
    for (const k of KEYS) expect(await retry(() => sha("cluster", "default", lxdName(k), "/root/data"))).toBe(data[k]);
  });

  it('a cluster group as the target: members ["@fast-group"] puts all six on m2 and m3, three each', async () => {
    spec.policy = { members: ["@fast-group"], maxUnavailable: 2 };
    spec.instances = {};
    const { samples, down } = await pollWhile(stack.up());
    expect(count(await where())).toEqual({ m2: 3, m3: 3 });
    if (Math.min(...samples) < 4) throw new Error(`fewer than 4 of 6 running at some sample:\n${down.join("\n")}`);
    for (const k of KEYS) expect(await retry(() => sha("cluster", "default", lxdName(k), "/root/data"))).toBe(data[k]);
  });

  it("destroy removes the group", async () => {
    await stack.destroy();
    expect(await findEverywhere(mine)).toEqual([]);
  });
});
