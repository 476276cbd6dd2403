/**
 * P5: every branch of the protocol's decisions (provider/protocol.ts, `decide`), then settle,
 * observe and the executor's recovery against fake LXD servers (test/helpers/fake-lxd.ts: real
 * HTTP on unix sockets) for what a real sandbox cannot stage at will: a server that stops
 * answering at an exact moment, a response lost after its request took effect, a lease held by
 * another run, a copy made outside the provider. Each test says where the instance ends up, what
 * was sent to each server (and that nothing was, where nothing may be), and what the user reads.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Estate } from "../../provider/estate";
import { executeMove } from "../../provider/executor";
import { factsOf, foundOf, observe, settle } from "../../provider/facts";
import { InstanceInputsSchema, type Desired } from "../../provider/inputs";
import { LxdClient } from "../../provider/lxd/client";
import { MoveFailedError } from "../../provider/lxd/errors";
import { getInstance } from "../../provider/lxd/instances";
import { LxdIo } from "../../provider/lxd-io";
import { configure, diff } from "../../provider/resource";
import { COMPLETE_KEY, formatLease, formatMove, INCOMING_KEY, LEASE_KEY, MARK_PREFIX, MARKER_KEY, MOVE_KEY, OUTGOING_KEY, thisHolder, type Place } from "../../provider/marks";
import { plan } from "../../provider/planner";
import { decide, explain, type Copy, type View } from "../../provider/protocol";
import { startFakes, type FakeInstance, type FakeLxd } from "../helpers/fake-lxd";

const ID = "0f5c2a8e-5e77-4e00-8000-000000000001";
const M = "9a1b0c4d-0000-4000-8000-00000000000a";
const S1: Place = { remote: "s1", project: "default", name: "web" };
const S2: Place = { remote: "s2", project: "default", name: "web" };
const RECORD = formatMove({ id: M, from: S1, to: S2 });

// ------------------------------------------------------------------------------ decide, by table

const copy = (place: Place, over: Partial<Copy> = {}): Copy => ({ place, member: "", status: "Stopped", ...over });
const view = (copies: Copy[], silent: string[] = []): View => ({ id: ID, copies, silent, recorded: S1 });
const rec = { id: M, from: S1, to: S2 };
const src = (over: Partial<Copy> = {}) => copy(S1, { outgoing: M, move: rec, ...over });
const tgt = (over: Partial<Copy> = {}) => copy(S2, { incoming: M, move: rec, ...over });
const own = { run: "this-run" };
const summary = (d: ReturnType<typeof decide>) =>
  d.kind === "act"
    ? `${d.action.kind} ${d.action.copy.place.remote}${d.action.kind === "clear" ? ` ${d.action.keys.map((k) => k.split(".").pop()).join(",")}` : ""}`
    : d.kind === "blocked"
      ? `blocked ${d.blocked.kind}`
      : d.kind === "done"
        ? `done ${d.instance.place.remote}`
        : d.kind;

describe("P5: decide, branch by branch", () => {
  const cases: [string, View, string, object?][] = [
    ["a partial copy beside its source is removed", view([src(), tgt()]), "remove s2"],
    ["a complete copy beside its stopped source is committed", view([src(), tgt({ complete: M })]), "clear s2 incoming,complete,outgoing"],
    ["a complete copy beside a source that ran since is stale: removed", view([src({ status: "Running" }), tgt({ complete: M })]), "remove s2"],
    ["live handover: both run, the copy is complete: the source stops first", view([src({ status: "Running" }), tgt({ complete: M, status: "Running" })]), "stop s1"],
    ["the source of a committed move is removed", view([src(), copy(S2, { move: rec })]), "remove s1"],
    ["a source whose move did not commit loses its marks", view([src()]), "clear s1 outgoing,move,lease"],
    ["a source an interrupted copy left frozen is thawed first", view([src({ status: "Frozen" })]), "thaw s1"],
    ["a committed copy whose source is gone loses its record", view([copy(S2, { move: rec })]), "clear s2 move"],
    ["a lone partial copy is never promoted: reported", view([tgt()]), "blocked orphan"],
    ["a lone complete copy is never promoted either: reported", view([tgt({ complete: M })]), "blocked orphan"],
    ["a partial copy whose source lost its marks is removed: the instance is elsewhere", view([copy(S1), tgt()]), "remove s2"],
    ["two unmarked copies (one made by lxc copy) are reported, neither deleted", view([copy(S1), copy(S2)]), "blocked several"],
    ["a live copy LXD started (running, incoming) beside its stopped source has served: committed", view([src(), tgt({ status: "Running" })]), "clear s2 incoming,complete,outgoing"],
    ["a live copy LXD started beside the source it resumed: the source stops first", view([src({ status: "Running" }), tgt({ status: "Running" })]), "stop s1"],
    [
      "I4: no exception for a live move: its copy may run whatever this run sent",
      view([src({ lease: { run: "this-run", until: Date.now() + 60_000 } })], ["s2"]),
      "blocked silent",
      { run: "this-run", move: { id: M, completeSent: false, live: true } },
    ],
    ["a copy of a copy in flight (lxc copy) is outside the provider: never touched", view([src(), tgt(), copy({ ...S2, name: "web-copy" }, { incoming: M, move: rec })]), "remove s2"],
    ["marks without a move record beside an unmarked copy: undecidable, reported", view([copy(S1, { outgoing: M }), copy(S2)]), "blocked inconsistent"],
    ["I4: a partial copy and a silent source's server: nothing decided", view([tgt()], ["s1"]), "blocked silent"],
    ["I4: a complete copy and a silent source's server: nothing decided", view([tgt({ complete: M })], ["s1"]), "blocked silent"],
    ["I4: a source and a silent copy's server: nothing decided for a later run", view([src()], ["s2"]), "blocked silent"],
    [
      "I4: this run's own source may start again when it never marked its copy complete",
      view([src({ lease: { run: "this-run", until: Date.now() + 60_000 } })], ["s2"]),
      "start s1",
      { run: "this-run", move: { id: M, completeSent: false } },
    ],
    [
      "I4: ... but not once it sent the complete mark, answered or not",
      view([src({ lease: { run: "this-run", until: Date.now() + 60_000 } })], ["s2"]),
      "blocked silent",
      { run: "this-run", move: { id: M, completeSent: true } },
    ],
    ["another run's lease that holds blocks everything", view([src({ lease: { run: "other", until: Date.now() + 60_000 }, leaseHolds: true }), tgt()]), "blocked leased"],
    ["another run's lease that ended does not", view([src({ lease: { run: "other", until: Date.now() - 1 }, leaseHolds: false }), tgt()]), "remove s2"],
    ["a clean instance at its place is done", view([copy(S1, { status: "Running" })]), "done s1"],
    ["nothing anywhere, every server answered: gone", view([]), "gone"],
    ["nothing found and a server silent: never gone", view([], ["s2"]), "blocked silent"],
  ];
  for (const [title, v, want, who] of cases) {
    it(title, () => {
      const goal = (who as { move?: unknown } | undefined)?.move ? { running: true } : {};
      expect(summary(decide(v, (who as typeof own) ?? own, goal))).toBe(want);
    });
  }

  it("power and names converge last: a committed copy left under its temporary name takes the declared one", () => {
    const temp = copy({ ...S2, name: `web-lxdp-${ID.slice(0, 8)}` });
    expect(summary(decide({ ...view([temp]), recorded: S1 }, own, { name: "web", running: true }))).toBe("rename s2");
    expect(summary(decide(view([copy(S2)]), own, { running: true }))).toBe("start s2");
    expect(summary(decide(view([copy(S2, { status: "Running" })]), own, { running: false }))).toBe("stop s2");
  });

  it("destroy removes the provider's copies and leaves one made outside it", () => {
    const outside = copy(S2);
    expect(summary(decide(view([copy(S1), outside]), own, { absent: true }))).toBe("remove s1");
    expect(decide(view([outside]), own, { absent: true })).toMatchObject({ kind: "act" });
    const left = decide({ id: ID, copies: [outside], silent: [], recorded: S1 }, own, { absent: true });
    expect(left.kind).toBe("act"); // a lone copy is the instance, wherever it is (P6)
    const d = decide({ id: ID, copies: [copy({ ...S2, name: "other" }), copy(S1)], silent: [], recorded: S1 }, own, { absent: true });
    expect(summary(d)).toBe("remove s1");
  });

  it("the messages name the servers, the copies and the fix", () => {
    const silent = explain({ kind: "silent", remotes: ["s1"], copies: [tgt()] }, ID);
    expect(silent.message).toMatch(/remote "s1" did not answer.*nothing was deleted, promoted or started \(I4\)/);
    const orphan = explain({ kind: "orphan", copy: tgt() }, ID);
    expect(orphan.message).toMatch(/only a partial copy of instance .* remains, at s2:default\/web \(marked incoming\); the source was deleted outside the provider/);
    const leased = explain({ kind: "leased", copy: src(), lease: { run: "r-2", until: Date.parse("2030-01-01T00:00:00Z"), host: "h", pid: 42 } }, ID);
    expect(leased.message).toMatch(/is being moved by another run \(r-2 on h pid 42\) until 2030-01-01T00:00:00.000Z/);
    const several = explain({ kind: "several", copies: [copy(S1), copy(S2)], recorded: S1 }, ID);
    expect(several.message).toMatch(/s1:default\/web Stopped \(recorded in the state\), s2:default\/web Stopped; copies the provider did not make are never deleted by it/);
  });
});

// ------------------------------------------------------------------------------ against fake servers

let dir: string;
let fakes: FakeLxd[] = [];
let closeFakes: (() => Promise<void>) | undefined;
const estates: Estate[] = [];

afterEach(async () => {
  await Promise.all(estates.splice(0).map((e) => e.close()));
  for (const f of fakes) f.comeBack();
  await closeFakes?.();
  closeFakes = undefined;
  fakes = [];
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function setup(names = ["s1", "s2", "s3"]): Promise<{ io: LxdIo; s1: FakeLxd; s2: FakeLxd; s3: FakeLxd; e: Estate }> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "settle-"));
  const started = await startFakes(...names.map((name, i) => ({ name, address: `127.0.2.${i + 1}:8443`, transferMs: 5 })));
  closeFakes = started.close;
  fakes = started.fakes;
  fs.writeFileSync(path.join(dir, "config.yml"), `default-remote: s1\nremotes:\n${fakes.map((f) => `  ${f.name}:\n    addr: unix://${f.socketPath}`).join("\n")}\n`);
  const e = new Estate({ LXD_CONF: dir, LXD_SOCKET: path.join(dir, "none.socket") });
  estates.push(e);
  const [s1, s2, s3] = fakes;
  return { io: new LxdIo(e, "this-run"), s1, s2, s3, e };
}

const inst = (config: Record<string, string>, over: Partial<FakeInstance> = {}): Partial<FakeInstance> => ({ name: "web", status: "Stopped", config: { [MARKER_KEY]: ID, ...config }, ...over });
const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const mutations = (f: FakeLxd) => f.requests.filter((r) => MUTATING.has(r.method)).map((r) => `${r.method} ${r.path}`);
const marksOf = (f: FakeLxd) => {
  const i = f.instances.get("web");
  return i ? Object.fromEntries(Object.entries(i.config).filter(([k]) => k.startsWith(MARK_PREFIX) && k !== MARKER_KEY)) : undefined;
};

describe("P5: settle against servers", () => {
  it("the issue's scenario: a partial copy on s2 and a silent s1: nothing is promoted, deleted or started, and the error names s1", async () => {
    const { io, s1, s2 } = await setup();
    s1.addInstance(inst({ [OUTGOING_KEY]: M, [MOVE_KEY]: RECORD }, { status: "Running" }));
    s2.addInstance(inst({ [INCOMING_KEY]: M, [MOVE_KEY]: RECORD }));
    s1.goSilent();
    const r = await settle(io, { id: ID, recorded: S1 });
    expect(r.decision).toMatchObject({ kind: "blocked", blocked: { kind: "silent", remotes: ["s1"] } });
    expect(mutations(s2)).toEqual([]);
    expect(marksOf(s2)).toMatchObject({ [INCOMING_KEY]: M });
    // When s1 answers again, the partial copy goes and the source is the instance, running as it was.
    s1.comeBack();
    const again = await settle(io, { id: ID, recorded: S1 });
    expect(again.decision).toMatchObject({ kind: "done", instance: { place: S1, status: "Running" } });
    expect(s2.instances.has("web")).toBe(false);
    expect(marksOf(s1)).toEqual({});
    expect(mutations(s2)).toEqual(["DELETE /1.0/instances/web"]);
    // Marks are written only on what was just read (If-Match).
    expect(s1.find("PATCH", "/1.0/instances/web").every((r) => r.ifMatch)).toBe(true);
  });

  it("a complete copy beside its stopped source is committed (If-Match), then the source goes and the record is cleared", async () => {
    const { io, s1, s2 } = await setup();
    s1.addInstance(inst({ [OUTGOING_KEY]: M, [MOVE_KEY]: RECORD }));
    s2.addInstance(inst({ [INCOMING_KEY]: M, [COMPLETE_KEY]: M, [MOVE_KEY]: RECORD }));
    const r = await settle(io, { id: ID, recorded: S1 });
    expect(r.decision).toMatchObject({ kind: "done", instance: { place: S2 } });
    expect(s1.instances.has("web")).toBe(false);
    expect(marksOf(s2)).toEqual({});
    const commit = s2.find("PATCH", "/1.0/instances/web")[0];
    expect(commit.body).toEqual({ config: { [INCOMING_KEY]: "", [COMPLETE_KEY]: "", [OUTGOING_KEY]: "" } });
    expect(commit.ifMatch).toBeTruthy();
    expect(r.acted.map((a) => a.slice(0, a.indexOf(": ")))).toEqual(["clear s2:default/web", "remove s1:default/web", "clear s2:default/web"]);
  });

  it("a source left frozen by an interrupted copy is thawed, then loses its marks; the copy beside it goes first", async () => {
    const { io, s1, s2 } = await setup();
    s1.addInstance(inst({ [OUTGOING_KEY]: M, [MOVE_KEY]: RECORD }, { status: "Frozen" }));
    s2.addInstance(inst({ [INCOMING_KEY]: M, [MOVE_KEY]: RECORD }));
    const r = await settle(io, { id: ID, recorded: S1 });
    expect(r.decision).toMatchObject({ kind: "done", instance: { place: S1, status: "Running" } });
    expect(s2.instances.has("web")).toBe(false);
    expect(s1.find("PUT", "/1.0/instances/web/state").map((x) => (x.body as { action: string }).action)).toEqual(["unfreeze"]);
  });

  it("a lone copy marked incoming is reported and left for the user, whatever its completeness", async () => {
    const { io, s1, s2 } = await setup();
    s2.addInstance(inst({ [INCOMING_KEY]: M, [COMPLETE_KEY]: M, [MOVE_KEY]: RECORD }));
    const r = await settle(io, { id: ID, recorded: S1 });
    expect(r.decision).toMatchObject({ kind: "blocked", blocked: { kind: "orphan" } });
    expect([...mutations(s1), ...mutations(s2)]).toEqual([]);
  });

  it("a copy made with lxc copy (same marker, no marks, not at the recorded place) is never deleted: reported with both", async () => {
    const { io, s1, s2 } = await setup();
    s1.addInstance(inst({}, { status: "Running" }));
    s2.addInstance(inst({}));
    // The recorded copy carries no mark: a fast read stops there; an update's thorough read sees both.
    const r = await settle(io, { id: ID, recorded: S1, thorough: true, also: ["s2"] });
    expect(r.decision).toMatchObject({ kind: "blocked", blocked: { kind: "several" } });
    expect([...mutations(s1), ...mutations(s2)]).toEqual([]);
    // Destroy takes the recorded one and leaves the other, naming it.
    const d = await settle(io, { id: ID, recorded: S1, goal: { absent: true }, thorough: true, also: ["s2"] });
    expect(d.decision).toMatchObject({ kind: "gone", left: [{ place: S2 }] });
    expect(s1.instances.has("web")).toBe(false);
    expect(s2.instances.has("web")).toBe(true);
  });

  it("destroy lists every remote before it judges: a copy made outside the provider survives even when the recorded copy is clean", async () => {
    const { io, s1, s3 } = await setup();
    s1.addInstance(inst({}, { status: "Running" }));
    s3.addInstance(inst({}, { name: "web" }));
    const d = await settle(io, { id: ID, recorded: S1, goal: { absent: true } });
    expect(d.decision).toMatchObject({ kind: "gone", left: [{ place: { remote: "s3", name: "web" } }] });
    expect(s1.instances.has("web")).toBe(false);
    expect(s3.instances.has("web")).toBe(true);
    expect(mutations(s3)).toEqual([]);
  });

  it("a user's copy of a copy that still carries a move record (not where the record says) is never the provider's", async () => {
    const { io, s1, s2, s3 } = await setup();
    s2.addInstance(inst({ [MOVE_KEY]: RECORD }, { status: "Running" }));
    s3.addInstance(inst({ [MOVE_KEY]: RECORD }));
    // An update reads the servers the record names (s1, s2): it finishes the move on s2, and s3's copy is untouched.
    const r = await settle(io, { id: ID, recorded: S2 });
    expect(r.decision).toMatchObject({ kind: "done", instance: { place: S2 } });
    expect(mutations(s3)).toEqual([]);
    // Destroy reads every remote: the copy on s3 stands where no copy of that move is, so it is not the provider's.
    s2.instances.get("web")!.config[MOVE_KEY] = RECORD;
    const d = await settle(io, { id: ID, recorded: S2, goal: { absent: true } });
    expect(d.decision).toMatchObject({ kind: "gone", left: [{ place: { remote: "s3" } }] });
    expect(s2.instances.has("web")).toBe(false);
    expect(s3.instances.has("web")).toBe(true);
    expect(mutations(s1)).toEqual([]);
  });

  it("another run's lease keeps this one out (nothing sent); a lease whose time is up does not", async () => {
    const { io, s1, s2 } = await setup();
    const lease = (until: number) => formatLease({ run: "other-run", until, host: "elsewhere", pid: 1 });
    s1.addInstance(inst({ [OUTGOING_KEY]: M, [MOVE_KEY]: RECORD, [LEASE_KEY]: lease(Date.now() + 60_000) }));
    s2.addInstance(inst({ [INCOMING_KEY]: M, [MOVE_KEY]: RECORD }));
    const r = await settle(io, { id: ID, recorded: S1 });
    expect(r.decision).toMatchObject({ kind: "blocked", blocked: { kind: "leased", lease: { run: "other-run" } } });
    expect([...mutations(s1), ...mutations(s2)]).toEqual([]);
    s1.instances.get("web")!.config[LEASE_KEY] = lease(Date.now() - 1);
    const again = await settle(io, { id: ID, recorded: S1 });
    expect(again.decision).toMatchObject({ kind: "done", instance: { place: S1 } });
  });

  it("a lease about to end is waited out (a run that died elsewhere); one that is renewed meanwhile is not", async () => {
    const { io, s1 } = await setup(["s1", "s2"]);
    s1.addInstance(inst({ [LEASE_KEY]: formatLease({ run: "dead-run", until: Date.now() + 300, host: "elsewhere" }) }));
    const r = await settle(io, { id: ID, recorded: S1, leaseWaitMs: 5_000 });
    expect(r.decision).toMatchObject({ kind: "done", instance: { place: S1 } });
    expect(marksOf(s1)).toEqual({});
  });

  it("a lease held by a process of this machine that is gone holds no more (the next run need not wait)", async () => {
    const { io, s1 } = await setup(["s1", "s2"]);
    const me = thisHolder();
    s1.addInstance(inst({ [LEASE_KEY]: formatLease({ run: "killed-run", until: Date.now() + 60_000, ...me, pid: 2 ** 22 + 7, start: "1" }) }));
    const r = await settle(io, { id: ID, recorded: S1 });
    expect(r.decision).toMatchObject({ kind: "done", instance: { place: S1 } });
    // The same host name in another pid namespace (a container sharing the host's network): its pid means nothing here.
    s1.instances.get("web")!.config[LEASE_KEY] = formatLease({ run: "other-container", until: Date.now() + 60_000, ...me, pid: 2 ** 22 + 7, pidns: "pid:[1]" });
    const other = await settle(io, { id: ID, recorded: S1 });
    expect(other.decision).toMatchObject({ kind: "blocked", blocked: { kind: "leased", lease: { run: "other-container" } } });
  });
});

describe("P5/P6: observe reads what matters, never less", () => {
  it("a clean instance where the state says: one GET, no list", async () => {
    const { io, s1, s2, s3 } = await setup();
    s1.addInstance(inst({}));
    const v = await observe(io, { id: ID, recorded: S1 });
    expect(v.copies.map((c) => c.place.remote)).toEqual(["s1"]);
    expect([s1, s2, s3].map((f) => f.requests.length)).toEqual([1, 0, 0]);
  });

  it("marks on the recorded copy: the servers its move names are listed, and only those", async () => {
    const { io, s1, s2, s3 } = await setup();
    s1.addInstance(inst({ [OUTGOING_KEY]: M, [MOVE_KEY]: RECORD }));
    s2.addInstance(inst({ [INCOMING_KEY]: M, [MOVE_KEY]: RECORD }));
    const v = await observe(io, { id: ID, recorded: S1 });
    expect(v.copies.map((c) => c.place.remote).sort()).toEqual(["s1", "s2"]);
    expect(s3.requests).toEqual([]);
  });

  it("not where the state says: every remote is listed; a silent one that holds nothing of it does not block", async () => {
    const { io, s1, s2, s3 } = await setup();
    s2.addInstance(inst({}, { status: "Running" }));
    s3.goSilent();
    const v = await observe(io, { id: ID, recorded: S1 });
    expect(v.copies.map((c) => c.place.remote)).toEqual(["s2"]);
    expect(v.silent).toEqual([]);
    expect(s1.find("GET", "/1.0/instances").length).toBe(1);
  });

  it("nothing found while a remote is silent: never 'gone'", async () => {
    const { io, s3 } = await setup();
    s3.goSilent();
    const v = await observe(io, { id: ID, recorded: S1 });
    expect(v).toMatchObject({ copies: [], silent: ["s3"] });
    expect(decide(v, own).kind).toBe("blocked");
  });

  it("a remote in the state that is not configured (renamed) is an error, never 'gone'", async () => {
    const { io } = await setup();
    await expect(observe(io, { id: ID, recorded: { remote: "old-name", project: "default", name: "web" } })).rejects.toThrow(/records instance .* on remote "old-name", which is not configured/);
  });
});

describe("P5: the executor reads both sides after an error instead of assuming", () => {
  async function moveCold(io: LxdIo, e: Estate) {
    const found = (await io.get(S1, ID))!;
    const v = InstanceInputsSchema.parse({ name: "web", image: "img", remote: "s2", running: false, profiles: ["default"] });
    const desired: Desired = { ...v, name: "web", remote: "s2" };
    const [source, target] = await Promise.all([e.capabilities("s1"), e.capabilities("s2")]);
    const p = plan({ facts: factsOf(foundOf(found)), desired, source, target });
    if (p.kind !== "move") throw new Error(`no move: ${JSON.stringify(p)}`);
    const log: string[] = [];
    return { run: () => executeMove({ io, id: ID, desired, plan: p, found, log: (l) => log.push(l) }), log };
  }
  /** Plans the running instance's stop-move-start move s1 -> s2 and runs it; returns what it threw. */
  async function failedStopMoveStart(io: LxdIo, e: Estate): Promise<unknown> {
    const found = (await io.get(S1, ID))!;
    const v = InstanceInputsSchema.parse({ name: "web", image: "img", remote: "s2", migration: { strategy: "stop-move-start" } });
    const desired: Desired = { ...v, name: "web", remote: "s2" };
    const p = plan({ facts: factsOf(foundOf(found)), desired, source: await e.capabilities("s1"), target: await e.capabilities("s2") });
    if (p.kind !== "move") throw new Error(`no move: ${JSON.stringify(p)}`);
    return executeMove({ io, id: ID, desired, plan: p, found, log: () => undefined }).then(
      () => undefined,
      (x: unknown) => x,
    );
  }
  const starts = (f: FakeLxd) => f.find("PUT", "/1.0/instances/web/state").filter((r) => (r.body as { action: string }).action === "start");

  it("the commit's answer is lost: the copy is found committed and the move finishes (the source is never started again)", async () => {
    const { io, s1, s2, e } = await setup(["s1", "s2"]);
    s1.addInstance(inst({}));
    // The second PATCH of the copy is the commit (the first marks it complete): it takes effect, its answer is lost.
    s2.inject("PATCH", /^\/1\.0\/instances\/web$/, 500, "connection reset (lost answer)", { skip: 1, applied: true });
    const m = await moveCold(io, e);
    const rec = await m.run();
    expect(rec).toMatchObject({ strategy: "cold", to: "s2:default/web" });
    expect(s1.instances.has("web")).toBe(false);
    expect(marksOf(s2)).toEqual({});
    expect(starts(s1)).toEqual([]);
    expect(m.log.join("\n")).toMatch(/finished the move after the error/);
  });

  it("the commit's answer is lost and the target's server goes silent: nothing more is done, the source stays stopped and marked; the next run finishes the move", async () => {
    const { io, s1, s2, e } = await setup(["s1", "s2"]);
    s1.addInstance(inst({}));
    s2.inject("PATCH", /^\/1\.0\/instances\/web$/, 500, "connection reset (lost answer)", { skip: 1, applied: true, then: () => s2.goSilent() });
    const m = await moveCold(io, e);
    const err = await m.run().then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(err).toBeInstanceOf(MoveFailedError);
    expect((err as MoveFailedError).outcome).toBe("undecided");
    expect((err as Error).message).toMatch(/Remote "s2" did not answer: the instance is at s1:default\/web, stopped; nothing was deleted, promoted or started/);
    expect(s1.instances.get("web")?.config[OUTGOING_KEY]).toBeTruthy();
    expect(starts(s1)).toEqual([]);
    expect(s1.find("DELETE", "/1.0/instances/web")).toEqual([]);
    // The run's lease stays on the source until its process ends; here the process lives on, so
    // its lease is made to run out, as it does 60 s after a run ends elsewhere.
    for (const f of [s1, s2]) {
      const c = f.instances.get("web")!;
      expect(JSON.parse(c.config[LEASE_KEY]).run).toBe("this-run");
      c.config[LEASE_KEY] = formatLease({ run: "this-run", until: Date.now() - 1 });
    }
    // s2 answers again: a later run (another process) finishes the move from what it reads.
    s2.comeBack();
    const later = new LxdIo(e, "later-run");
    const r = await settle(later, { id: ID, recorded: S1 });
    expect(r.decision).toMatchObject({ kind: "done", instance: { place: S2 } });
    expect(s1.instances.has("web")).toBe(false);
  });

  it("the source's server goes silent right after the cutover's stop: nothing is started or deleted, and the error says the instance was stopped and the next run starts it (P4)", async () => {
    const { io, s1, e } = await setup(["s1", "s2"]);
    s1.addInstance(inst({}, { status: "Running" }));
    // The stop takes effect; its answer is lost and s1 stops answering.
    s1.inject("PUT", /^\/1\.0\/instances\/web\/state$/, 500, "connection reset (lost answer)", { applied: true, then: () => s1.goSilent() });
    const err = await failedStopMoveStart(io, e);
    expect(err).toBeInstanceOf(MoveFailedError);
    expect((err as MoveFailedError).outcome).toBe("undecided");
    expect((err as Error).message).toMatch(
      /Remote "s1" did not answer: nothing was deleted, promoted or started .*could not be started again while the server does not answer, and the next run starts it \(P4\)/,
    );
    s1.comeBack();
    expect(s1.instances.get("web")).toMatchObject({ status: "Stopped" });
    expect(starts(s1)).toEqual([]);
    expect(s1.find("DELETE", "/1.0/instances/web")).toEqual([]);
  });

  it("the target's server goes silent mid-transfer after the cutover's stop: the source serves again (its copy was never complete) and the error says where it runs", async () => {
    const { io, s1, s2, e } = await setup(["s1", "s2"]);
    s1.addInstance(inst({}, { status: "Running" }));
    s2.inject("POST", /^\/1\.0\/instances$/, 500, "connection reset (lost answer)", { then: () => s2.goSilent() });
    const err = await failedStopMoveStart(io, e);
    expect((err as MoveFailedError).outcome).toBe("undecided");
    expect((err as Error).message).toMatch(/Remote "s2" did not answer: the instance is at s1:default\/web, running; nothing was deleted/);
    expect(err).toMatchObject({ at: "s1:default/web", running: true });
    expect((err as Error).message).not.toMatch(/could not be started again/);
    expect(s1.instances.get("web")).toMatchObject({ status: "Running" });
  });

  it("the source's server goes silent at the source's delete, after the copy was committed and started: the error says where it runs, and no cutover note", async () => {
    const { io, s1, s2, e } = await setup(["s1", "s2"]);
    s1.addInstance(inst({}, { status: "Running" }));
    s1.inject("DELETE", /^\/1\.0\/instances\/web$/, 500, "connection reset (lost answer)", { then: () => s1.goSilent() });
    const err = await failedStopMoveStart(io, e);
    expect((err as MoveFailedError).outcome).toBe("undecided");
    expect((err as Error).message).toMatch(/Remote "s1" did not answer: the instance is at s2:default\/web, running; nothing was deleted/);
    expect((err as Error).message).not.toMatch(/could not be started again/);
    expect(err).toMatchObject({ at: "s2:default/web", running: true });
    expect(s2.instances.get("web")).toMatchObject({ status: "Running" });
  });

  it("the copy's transfer fails on the target: the partial copy is removed and the source keeps running, unmarked (nothing lost)", async () => {
    const { io, s1, s2, e } = await setup(["s1", "s2"]);
    s1.addInstance(inst({}, { status: "Running" }));
    s2.inject("POST", /^\/1\.0\/instances$/, 500, "Failed creating instance record: project limit reached");
    const err = await failedStopMoveStart(io, e);
    expect(err).toMatchObject({ outcome: "rolled-back", at: "s1:default/web", running: true });
    expect((err as Error).message).toMatch(/move failed: .*project limit reached.*Nothing was lost: the instance is still at s1:default\/web, running \(P5\)/);
    expect(s1.instances.get("web")).toMatchObject({ status: "Running" });
    expect(marksOf(s1)).toEqual({});
  });
});

describe("P3/R6: what the target must offer is checked at preview, before anything stops", () => {
  async function previewMove(change: Record<string, unknown>, prepare: (s1: FakeLxd, s2: FakeLxd) => void): Promise<string> {
    const { s1, s2 } = await setup(["s1", "s2"]);
    s1.addInstance(inst({}, { status: "Running" }));
    prepare(s1, s2);
    process.env.LXD_CONF = dir;
    await configure({ config: { get: () => "{}" } });
    const olds = { name: "web", image: "img", remote: "s1", project: "default", profiles: ["default"], instanceId: ID };
    const err = await diff(ID, olds, { ...olds, remote: "s2", ...change }).then(
      () => "no refusal",
      (e: Error) => e.message,
    );
    expect([...mutations(s1), ...mutations(s2)]).toEqual([]);
    return err;
  }
  const savedConf = process.env.LXD_CONF;
  afterEach(() => {
    if (savedConf === undefined) delete process.env.LXD_CONF;
    else process.env.LXD_CONF = savedConf;
  });

  it("R6: a profile the target's project lacks refuses the move, naming the field", async () => {
    expect(await previewMove({ profiles: ["default", "gpu"] }, () => undefined)).toMatch(/^profiles: profile "gpu" does not exist in project "default" on "s2" \(profiles: default\) \(rule R6/);
  });

  it("a name taken at the target by another instance refuses the move, naming the field", async () => {
    expect(await previewMove({}, (_s1, s2) => s2.addInstance({ name: "web", config: {} }))).toMatch(/^name: an instance named "web" already exists on s2:default; choose another name or remove it/);
  });
});

describe("LXD's transient errors", () => {
  it("a GET that meets 'database is locked' is retried; a POST is not", async () => {
    const { s1 } = await setup(["s1"]);
    s1.addInstance(inst({}));
    const c = LxdClient.open(s1.remote);
    try {
      s1.inject("GET", /^\/1\.0\/instances\/web$/, 500, "database is locked", { times: 2 });
      expect((await getInstance(c, "web"))?.instance.name).toBe("web");
      expect(s1.find("GET", "/1.0/instances/web")).toHaveLength(3);
      s1.inject("POST", /^\/1\.0\/instances\/web$/, 500, "database is locked");
      await expect(c.call("POST", "/instances/web", { body: { name: "x" } })).rejects.toThrow(/database is locked/);
      expect(s1.find("POST", "/1.0/instances/web")).toHaveLength(1);
    } finally {
      await c.close();
    }
  });

  it("a PATCH with If-Match is retried; one without is not", async () => {
    const { s1 } = await setup(["s1"]);
    s1.addInstance(inst({}));
    const c = LxdClient.open(s1.remote);
    try {
      const etag = (await getInstance(c, "web"))!.etag!;
      s1.inject("PATCH", /^\/1\.0\/instances\/web$/, 500, "database is locked", { times: 1 });
      await c.call("PATCH", "/instances/web", { body: { config: { "user.x": "1" } }, etag });
      expect(s1.instances.get("web")!.config["user.x"]).toBe("1");
      s1.inject("PATCH", /^\/1\.0\/instances\/web$/, 500, "database is locked", { times: 1 });
      await expect(c.call("PATCH", "/instances/web", { body: { config: { "user.x": "2" } } })).rejects.toThrow(/database is locked/);
    } finally {
      await c.close();
    }
  });
});
