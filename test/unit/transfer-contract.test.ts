/**
 * The transfer code against LXD's documented migration API, spoken by two fake servers
 * (test/helpers/fake-lxd.ts) on unix sockets: exact request shapes for pull, push and relay,
 * `live` always explicit, relay frames byte-exact and in order, cleanup of the other side on
 * failure, and a live VM move through the planner and the executor. No real LXD is needed: the
 * VM live path (QEMU on both ends) is checked against LXD's API contract here, not end to end.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Estate } from "../../provider/estate";
import { declaredConfig, executeMove } from "../../provider/executor";
import { factsOf, foundOf } from "../../provider/facts";
import { LxdIo } from "../../provider/lxd-io";
import { InstanceInputsSchema, type Desired } from "../../provider/inputs";
import { COMPLETE_KEY, INCOMING_KEY, MARK_PREFIX, MARKER_KEY, OUTGOING_KEY } from "../../provider/marks";
import { LxdClient } from "../../provider/lxd/client";
import { getInstance, type Instance } from "../../provider/lxd/instances";
import { plan } from "../../provider/planner";
import { copy, copyPull, copyPush, copyRelay, type CopySpec } from "../../provider/transfer";
import { DEFAULT_EXTENSIONS, defaultFrames, FakeLxd, liveVm, startFakes, type FakeLxdOptions, type FakeOperation, type Frame, type RecordedRequest } from "../helpers/fake-lxd";

const ID = "0f5c2a8e-1111-4222-8333-444455556666";
const SRC_ADDR = "127.0.0.1:9999";
const TGT_ADDR = "127.0.0.2:9999";

let closeFakes: (() => Promise<void>) | undefined;
const clients: LxdClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await closeFakes?.();
  closeFakes = undefined;
});

async function setup(src: Partial<FakeLxdOptions> = {}, tgt: Partial<FakeLxdOptions> = {}) {
  const started = await startFakes({ name: "src", address: SRC_ADDR, instances: [liveVm()], ...src }, { name: "tgt", address: TGT_ADDR, instances: [], ...tgt });
  closeFakes = started.close;
  const [s, t] = started.fakes;
  const sc = LxdClient.open(s.remote, { timeoutMs: 5_000 });
  const tc = LxdClient.open(t.remote, { timeoutMs: 5_000 });
  clients.push(sc, tc);
  return { s, t, sc, tc };
}

function desiredFor(i: Instance): Desired {
  const config = Object.fromEntries(Object.entries(i.config).filter(([k]) => !k.startsWith("volatile.") && !k.startsWith(MARK_PREFIX)));
  const v = InstanceInputsSchema.parse({ name: i.name, image: "img", type: i.type, remote: "tgt", config, devices: i.devices, profiles: i.profiles });
  return { ...v, name: v.name!, remote: v.remote! };
}

/** A copy spec as the executor builds it (config = carried volatile keys + declared + marker). */
async function specFor(sc: LxdClient, name: string, live: boolean): Promise<CopySpec> {
  const i = (await getInstance(sc, name))!.instance;
  const d = desiredFor(i);
  return { source: i, name, config: declaredConfig(i.config, d, ID), devices: i.devices, profiles: i.profiles, live, refresh: false, timeoutMs: 4_000 };
}

const only = <T>(xs: T[], what: string): T => {
  if (xs.length !== 1) throw new Error(`expected exactly one ${what}, got ${xs.length}`);
  return xs[0];
};
const ops = (f: FakeLxd, role: "source" | "sink"): FakeOperation[] => [...f.operations.values()].filter((o) => o.role === role);
const migrationPost = (f: FakeLxd, name = "vm1"): RecordedRequest => only(f.find("POST", `/1.0/instances/${name}`), `POST /1.0/instances/${name} on ${f.name}`);
const createPost = (f: FakeLxd): RecordedRequest => only(f.find("POST", "/1.0/instances"), `POST /1.0/instances on ${f.name}`);
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- request bodies of the documented API shape, read field by field
const bodyOf = (r: RecordedRequest) => r.body as Record<string, any>;
/** Frames compared by type, length and digest (a diff of a 256 KiB frame helps nobody). */
const frames = (list: Frame[]) => list.map((f) => ({ binary: f.binary, length: f.data.length, sha256: createHash("sha256").update(f.data).digest("hex").slice(0, 16) }));

describe("transfer contract: pull (R5)", () => {
  it("R7/R8/R9/R10: a running VM pulled live sends exactly the documented source and target requests", async () => {
    const { s, t, sc, tc } = await setup();
    await copyPull(sc, tc, await specFor(sc, "vm1", true));

    // 1. The source: exactly the documented body, `live` explicit.
    const srcPost = migrationPost(s);
    expect(srcPost.body).toEqual({ migration: true, live: true, instance_only: false, allow_inconsistent: false });
    expect(srcPost.query).toEqual({});
    const srcOp = only(ops(s, "source"), "source operation");
    expect(srcOp.class).toBe("websocket");
    expect(Object.keys(srcOp.secrets).sort()).toEqual(["control", "criu", "fs"]);

    // 2. The target, after the source: a VM (type must be sent), MAC kept, power state dropped.
    const create = createPost(t);
    expect(create.seq).toBeGreaterThan(srcPost.seq);
    const b = bodyOf(create);
    expect(b.name).toBe("vm1");
    expect(b.type).toBe("virtual-machine");
    expect(b.stateful).toBe(false);
    expect(b.config["volatile.eth0.hwaddr"]).toBe("00:16:3e:12:34:56");
    expect(b.config).not.toHaveProperty(["volatile.last_state.power"]);
    expect(b.config["migration.stateful"]).toBe("true");
    expect(b.config[MARKER_KEY]).toBe(ID);
    expect(b.devices.root).toEqual({ type: "disk", path: "/", pool: "default", "size.state": "2GiB" });
    expect(b.source).toEqual({
      type: "migration",
      mode: "pull",
      operation: `https://${SRC_ADDR}/1.0/operations/${srcOp.id}`,
      certificate: s.certificate,
      secrets: srcOp.secrets,
      "base-image": "b".repeat(64),
      live: true,
      instance_only: false,
      refresh: false,
      allow_inconsistent: false,
    });
    expect(b.source.secrets).toHaveProperty("criu");

    // 3. Both operations were waited on; the VM runs at the target; nothing was cancelled.
    expect(s.find("GET", `/1.0/operations/${srcOp.id}/wait`).length).toBeGreaterThan(0);
    const sink = only(ops(t, "sink"), "target operation");
    expect(t.find("GET", `/1.0/operations/${sink.id}/wait`).length).toBeGreaterThan(0);
    expect(srcOp.status).toBe("Success");
    expect(sink.status).toBe("Success");
    expect(t.instances.get("vm1")?.status).toBe("Running");
    expect(s.find("DELETE", /^\/1\.0\/operations\//)).toEqual([]);
    expect(t.find("DELETE", /^\/1\.0\/operations\//)).toEqual([]);
  });
});

describe("transfer contract: push (R5)", () => {
  it("R7: the target is created first in push mode, then the source pushes to its operation (entity_url filtered out)", async () => {
    const { s, t, sc, tc } = await setup({}, { entityUrlInPushMetadata: true });
    await copyPush(sc, tc, await specFor(sc, "vm1", true));

    const create = createPost(t);
    const srcPost = migrationPost(s);
    expect(create.seq).toBeLessThan(srcPost.seq);
    expect(bodyOf(create).type).toBe("virtual-machine");
    expect(bodyOf(create).source).toEqual({
      type: "migration",
      mode: "push",
      "base-image": "b".repeat(64),
      live: true,
      instance_only: false,
      refresh: false,
      allow_inconsistent: false,
    });

    const sink = only(ops(t, "sink"), "target operation");
    expect(sink.metadata).toHaveProperty("entity_url");
    const b = bodyOf(srcPost);
    expect(b.migration).toBe(true);
    expect(b.live).toBe(true);
    expect(b.target).toEqual({ certificate: t.certificate, operation: `https://${TGT_ADDR}/1.0/operations/${sink.id}`, secrets: sink.secrets });
    expect(Object.keys(b.target.secrets).sort()).toEqual(["control", "criu", "fs"]);
    expect(b.target.secrets).not.toHaveProperty("entity_url");

    const srcOp = only(ops(s, "source"), "source operation");
    expect([srcOp.status, sink.status]).toEqual(["Success", "Success"]);
    expect(t.instances.get("vm1")?.status).toBe("Running");
  });
});

describe("transfer contract: relay (R5)", () => {
  const checkFrames = (s: FakeLxd, t: FakeLxd, channels: string[]) => {
    for (const ch of channels) {
      const a = only(
        s.websockets.filter((w) => w.channel === ch),
        `source "${ch}" channel`,
      );
      const b = only(
        t.websockets.filter((w) => w.channel === ch),
        `target "${ch}" channel`,
      );
      // Source → target: every frame, binary and text alike, the zero-length text frame (end of
      // stream) included, byte-exact and in order.
      expect(frames(b.received)).toEqual(frames(defaultFrames(ch)));
      expect(frames(b.received)).toEqual(frames(a.sent));
      // Target → source (the protocols are two-way).
      expect(frames(a.received)).toEqual(frames(b.sent));
    }
  };

  it("R7: every frame arrives byte-exact and in order, control first; frames sent before the target side is connected are not lost", async () => {
    const { s, t, sc, tc } = await setup();
    await copyRelay(sc, tc, await specFor(sc, "vm1", true));

    const channels = ["control", "fs", "criu"];
    checkFrames(s, t, channels);
    for (const ch of channels) {
      const a = s.websockets.find((w) => w.channel === ch)!;
      const b = t.websockets.find((w) => w.channel === ch)!;
      expect(a.seq).toBeLessThan(b.seq);
      // The source sent part of its script as soon as its side was connected, before the target's
      // side of this channel existed: the relay held those frames.
      expect(a.sentSeq[0]).toBeLessThan(b.seq);
      expect(a.received.length).toBe(2);
    }
    // Control is connected first, at the source and then at the target.
    const order = [...s.websockets, ...t.websockets].sort((x, y) => x.seq - y.seq).map((w) => `${w.server}:${w.channel}`);
    expect(order.slice(0, 2)).toEqual(["src:control", "tgt:control"]);
    expect(order.filter((o) => o.startsWith("tgt:"))[0]).toBe("tgt:control");

    // The documented request shapes: source as in pull, target in push mode.
    expect(migrationPost(s).body).toEqual({ migration: true, live: true, instance_only: false, allow_inconsistent: false });
    expect(bodyOf(createPost(t)).source).toMatchObject({ type: "migration", mode: "push", live: true });
    const srcOp = only(ops(s, "source"), "source operation");
    const sink = only(ops(t, "sink"), "target operation");
    expect([srcOp.status, sink.status]).toEqual(["Success", "Success"]);
    expect(t.instances.get("vm1")?.status).toBe("Running");
  });

  // `ws` can emit frames that came in the same read as the 101 response before an awaiting caller
  // listens; LxdClient.websocket() holds frames from the socket's creation so none is lost.
  it("R5: frames that arrive in the same read as the handshake response are relayed too", async () => {
    const { s, t, sc, tc } = await setup({ relaySendOnHandshake: true });
    await copyRelay(sc, tc, await specFor(sc, "vm1", true));
    checkFrames(s, t, ["control", "fs", "criu"]);
  });

  it("R5: a source that sends its whole stream and closes before the target side is connected loses nothing, and the target's side is closed too", async () => {
    const { s, t, sc, tc } = await setup({ relayEarly: 99, relayCloseAfterSend: true }, { relayTargetReplies: false });
    const t0 = Date.now();
    await copyRelay(sc, tc, await specFor(sc, "vm1", true));
    // Not a wait for a timeout: the close is passed on as soon as the frames are.
    expect(Date.now() - t0).toBeLessThan(2_000);
    for (const ch of ["control", "fs", "criu"]) {
      const a = only(
        s.websockets.filter((w) => w.channel === ch),
        `source "${ch}" channel`,
      );
      const b = only(
        t.websockets.filter((w) => w.channel === ch),
        `target "${ch}" channel`,
      );
      // The case under test: the source's side was gone before the target's side existed.
      expect(a.closedSeq).toBeLessThan(b.seq);
      expect(frames(b.received)).toEqual(frames(defaultFrames(ch)));
      expect(b.closed).toBe(true);
    }
    expect(only(ops(t, "sink"), "target operation").status).toBe("Success");
  });
});

describe("transfer contract: live is always explicit", () => {
  for (const mode of ["pull", "push", "relay"] as const) {
    it(`R5: a cold ${mode} copy sends live:false on both sides (LXD reads an omitted live as true)`, async () => {
      const stopped = {
        name: "c1",
        type: "container" as const,
        status: "Stopped" as const,
        config: { "volatile.eth0.hwaddr": "00:16:3e:aa:bb:cc" },
        devices: { root: { type: "disk", path: "/", pool: "default" } },
      };
      const { s, t, sc, tc } = await setup({ instances: [stopped] });
      await copy(mode, sc, tc, await specFor(sc, "c1", false));
      const srcBody = bodyOf(migrationPost(s, "c1"));
      expect(Object.prototype.hasOwnProperty.call(srcBody, "live")).toBe(true);
      expect(srcBody.live).toBe(false);
      const tgtSource = bodyOf(createPost(t)).source;
      expect(Object.prototype.hasOwnProperty.call(tgtSource, "live")).toBe(true);
      expect(tgtSource.live).toBe(false);
      expect(t.instances.get("c1")?.status).toBe("Stopped");
      if (mode === "relay") expect(t.websockets.map((w) => w.channel).sort()).toEqual(["control", "fs"]);
    });
  }

  for (const mode of ["pull", "push", "relay"] as const) {
    it(`R7: a live ${mode} copy sends live:true on both sides`, async () => {
      const { s, t, sc, tc } = await setup();
      await copy(mode, sc, tc, await specFor(sc, "vm1", true));
      expect(bodyOf(migrationPost(s)).live).toBe(true);
      expect(bodyOf(createPost(t)).source.live).toBe(true);
    });
  }
});

describe("transfer contract: a failure on one side cancels the other (R15: nothing lost)", () => {
  it("R15: pull: the target's operation fails → the source operation is cancelled (DELETE /1.0/operations/{id})", async () => {
    const { s, t, sc, tc } = await setup({}, { failTargetOperation: "Failed creating instance from migration: no space left on device" });
    await expect(copyPull(sc, tc, await specFor(sc, "vm1", true))).rejects.toThrow(/no space left on device/);
    const srcOp = only(ops(s, "source"), "source operation");
    expect(s.find("DELETE", `/1.0/operations/${srcOp.id}`)).toHaveLength(1);
    expect(srcOp.status).toBe("Cancelled");
    expect(s.instances.get("vm1")?.status).toBe("Running");
    expect(t.instances.has("vm1")).toBe(false);
  });

  it("R15: pull: the target refuses the create → the source operation is cancelled", async () => {
    const { s, sc, tc } = await setup({}, { failCreate: { status: 400, error: "Invalid devices: Device validation failed" } });
    await expect(copyPull(sc, tc, await specFor(sc, "vm1", true))).rejects.toThrow(/Device validation failed/);
    const srcOp = only(ops(s, "source"), "source operation");
    expect(s.find("DELETE", `/1.0/operations/${srcOp.id}`)).toHaveLength(1);
    expect(srcOp.status).toBe("Cancelled");
  });

  it("R15: relay: the target's operation fails → the source operation is cancelled", async () => {
    const { s, sc, tc } = await setup({ relayLaterMs: 300 }, { failTargetOperation: "Failed migration on target: storage error" });
    await expect(copyRelay(sc, tc, await specFor(sc, "vm1", true))).rejects.toThrow(/storage error/);
    const srcOp = only(ops(s, "source"), "source operation");
    expect(s.find("DELETE", `/1.0/operations/${srcOp.id}`).length).toBeGreaterThanOrEqual(1);
    expect(srcOp.status).toBe("Cancelled");
  });

  it("R15: push: the source refuses → the target's operation is cancelled", async () => {
    const { t, sc, tc } = await setup({ failSource: { status: 500, error: "Failed to connect to the target" } });
    await expect(copyPush(sc, tc, await specFor(sc, "vm1", true))).rejects.toThrow(/Failed to connect to the target/);
    const sink = only(ops(t, "sink"), "target operation");
    expect(t.find("DELETE", `/1.0/operations/${sink.id}`)).toHaveLength(1);
    expect(sink.status).toBe("Cancelled");
  });
});

describe("a live VM move through the planner and the executor", () => {
  let confDir: string | undefined;
  afterEach(() => {
    if (confDir) fs.rmSync(confDir, { recursive: true, force: true });
    confDir = undefined;
  });

  async function moveLive(src: Partial<FakeLxdOptions> = {}, tgt: Partial<FakeLxdOptions> = {}) {
    const vm = liveVm();
    vm.config = { ...vm.config, [MARKER_KEY]: ID };
    const { s, t } = await setup({ instances: [vm], ...src }, tgt);
    confDir = fs.mkdtempSync(path.join(os.tmpdir(), "lxdp-conf-"));
    fs.writeFileSync(path.join(confDir, "config.yml"), `default-remote: src\nremotes:\n  src:\n    addr: unix://${s.socketPath}\n  tgt:\n    addr: unix://${t.socketPath}\n`);
    const estate = new Estate({ ...process.env, LXD_CONF: confDir });
    try {
      const io = new LxdIo(estate);
      const found = (await io.get({ remote: "src", project: "default", name: "vm1" }, ID))!;
      const desired = desiredFor(foundOf(found).instance);
      const [source, target] = await Promise.all([estate.capabilities("src"), estate.capabilities("tgt")]);
      const p = plan({ facts: factsOf(foundOf(found)), desired, source, target });
      expect(p).toMatchObject({ kind: "move", strategy: "live", restart: false, route: { kind: "copy", mode: "pull", sameServer: false } });
      if (p.kind !== "move") throw new Error("no move");
      const log: string[] = [];
      const rec = await executeMove({ io, id: ID, desired, plan: p, found, log: (l) => log.push(l) });
      return { s, t, rec, log };
    } finally {
      await estate.close();
    }
  }

  const stops = (f: FakeLxd) => f.find("PUT", /^\/1\.0\/instances\/[^/]+\/state$/).filter((r) => bodyOf(r).action === "stop");
  const checkMoved = (s: FakeLxd, t: FakeLxd) => {
    const srcOp = only(ops(s, "source"), "source operation");
    const sink = only(ops(t, "sink"), "target operation");
    expect(bodyOf(migrationPost(s))).toEqual({ migration: true, live: true, instance_only: false, allow_inconsistent: false });
    expect(bodyOf(createPost(t)).source).toMatchObject({ mode: "pull", live: true, secrets: srcOp.secrets });
    // The copy completed, then was marked complete, then committed, before anything was deleted (P5).
    const del = only(s.find("DELETE", "/1.0/instances/vm1"), "DELETE of the source");
    const lastWait = Math.max(...t.find("GET", `/1.0/operations/${sink.id}/wait`).map((r) => r.seq));
    const complete = t.find("PATCH", "/1.0/instances/vm1").find((r) => bodyOf(r).config?.[COMPLETE_KEY]);
    const commit = t.find("PATCH", "/1.0/instances/vm1").find((r) => bodyOf(r).config?.[INCOMING_KEY] === "");
    expect(complete).toBeDefined();
    expect(commit).toBeDefined();
    expect(lastWait).toBeLessThan(complete!.seq);
    expect(complete!.seq).toBeLessThan(commit!.seq);
    expect(commit!.seq).toBeLessThan(del.seq);
    // Every write of marks was conditional on what had just been read (If-Match).
    for (const f of [s, t]) for (const r of f.find("PATCH", "/1.0/instances/vm1")) expect(r.ifMatch).toBeTruthy();
    // Where the instance is now: only at the target, running, MAC kept, marks cleared, never restarted there.
    expect(s.instances.has("vm1")).toBe(false);
    const moved = t.instances.get("vm1")!;
    expect(moved.status).toBe("Running");
    expect(moved.config["volatile.eth0.hwaddr"]).toBe("00:16:3e:12:34:56");
    expect(moved.config[MARKER_KEY]).toBe(ID);
    expect(moved.config).not.toHaveProperty([INCOMING_KEY]);
    expect(moved.config).not.toHaveProperty([OUTGOING_KEY]);
    expect(t.find("PUT", "/1.0/instances/vm1/state")).toEqual([]);
    return { del, commit: commit! };
  };

  it("R7/R8/R9/R10: a running VM meeting R8-R10 on servers with migration_vm_live moves live: the copy never stops, source deleted after the copy", async () => {
    const ext = [...DEFAULT_EXTENSIONS, "instance_force_delete"];
    const { s, t, rec } = await moveLive({ extensions: ext }, { extensions: ext });
    expect(rec).toMatchObject({ strategy: "live", kind: "cross-server", mode: "pull", downtimeSeconds: 0 });
    expect(stops(t)).toEqual([]);
    const { del, commit } = checkMoved(s, t);
    // LXD resumes the source VM after the live transfer (its side is a copy): it is force-stopped
    // before the copy becomes the instance, so two copies never both count as the instance (I2).
    const st = only(stops(s), "stop of the old source");
    expect(bodyOf(st)).toMatchObject({ action: "stop", force: true });
    expect(st.seq).toBeLessThan(commit.seq);
    expect(del.query).toEqual({});
  });

  it("R7/R10: where LXD already stopped the source after the live transfer, it is deleted with no stop request at all", async () => {
    const { s, t, rec } = await moveLive({ sourceAfterLive: "Stopped" });
    expect(rec.strategy).toBe("live");
    expect(stops(s)).toEqual([]);
    expect(stops(t)).toEqual([]);
    const { del } = checkMoved(s, t);
    expect(del.query).toEqual({});
  });

  it("R7/R10: on LXD 5.0.3-6.6 (no instance_force_delete) the resumed source is force-stopped after the copy is marked complete and before the commit", async () => {
    const { s, t, rec } = await moveLive();
    expect(rec).toMatchObject({ strategy: "live", downtimeSeconds: 0 });
    const { del, commit } = checkMoved(s, t);
    // The only stop is of the old copy, forced, once the live copy is known complete.
    const complete = t.find("PATCH", "/1.0/instances/vm1").find((r) => bodyOf(r).config?.[COMPLETE_KEY])!;
    const st = only(stops(s), "stop of the old source");
    expect(bodyOf(st)).toMatchObject({ action: "stop", force: true });
    expect(st.seq).toBeGreaterThan(complete.seq);
    expect(st.seq).toBeLessThan(commit.seq);
    expect(st.seq).toBeLessThan(del.seq);
    expect(del.query).toEqual({});
    expect(stops(t)).toEqual([]);
  });
});
