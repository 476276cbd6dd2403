/**
 * A small fake LXD server for contract tests of the transfer code: a Node HTTP server on a unix
 * socket that speaks just the endpoints the provider uses for cross-server moves, with the shapes
 * and behaviour of LXD's REST API (client/lxd_instances.go, lxd/migrate_instance.go):
 *
 *   GET  /1.0                                  server info (extensions, certificate, addresses)
 *   GET  /1.0/projects, /1.0/storage-pools     what capabilities read
 *   GET  /1.0/storage-pools/P/volumes/T/N      404 unless an instance N exists here
 *   GET  /1.0/instances[?recursion=1]          list (optionally slow: `listDelayMs`)
 *   GET  /1.0/instances/{name}                 one instance, with an ETag
 *   POST /1.0/instances/{name}                 migration source (pull/relay) or push to a target
 *   POST /1.0/instances                        target of a migration (pull or push mode)
 *   PUT|PATCH /1.0/instances/{name}            config (If-Match checked)
 *   PUT  /1.0/instances/{name}/state           start/stop
 *   DELETE /1.0/instances/{name}[?force=1]     400 "Instance is running" unless stopped, or forced
 *                                              where the server has `instance_force_delete` (6.7+)
 *   GET  /1.0/operations/{id}[/wait?timeout=N], DELETE /1.0/operations/{id}
 *   GET  /1.0/operations/{id}/websocket?secret=S   (upgrade) a migration channel, for relay
 *
 * Every request is recorded (method, path, query, JSON body) with a sequence number shared by
 * all fakes of the process, so a test can tell what was sent to which server and in which order.
 *
 * Two fakes find each other the way LXD servers do: by the operation URL
 * `https://ADDRESS/1.0/operations/ID` one receives (ADDRESS from `environment.addresses`). A
 * pull or push "transfer" is then a check of what each side was told (certificate, secrets,
 * `live`) followed by both operations succeeding; nothing moves. As in LXD, a VM live-migrated
 * away keeps running at the source (`sourceAfterLive`). A relay really moves frames:
 * the source sends a script of binary and text frames on each channel, ending with a zero-length
 * text frame (end of stream), part of it before the relay has connected the target's side of the
 * channel; the target records every frame, answers each end of stream with frames of its own,
 * and the source closes the channel once it has seen the target's end of stream. Operations
 * complete when their channels close.
 */
import { randomBytes, createHash } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import type { Duplex } from "node:stream";
import WebSocket, { WebSocketServer } from "ws";

export interface Frame {
  data: Buffer;
  binary: boolean;
}

export interface RecordedRequest {
  seq: number;
  server: string;
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
  /** The If-Match header, when one was sent. */
  ifMatch?: string;
}

export interface WsConnection {
  seq: number;
  server: string;
  opId: string;
  channel: string;
  /** Frames this server received on the channel, in order. */
  received: Frame[];
  /** Frames this server sent on the channel, in order, and the sequence number of each send. */
  sent: Frame[];
  sentSeq: number[];
  closed: boolean;
  /** Sequence number of the close, once closed. */
  closedSeq?: number;
}

export interface FakeInstance {
  name: string;
  type: "container" | "virtual-machine";
  status: "Running" | "Stopped" | "Frozen";
  architecture: string;
  project: string;
  location: string;
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
  profiles: string[];
  ephemeral: boolean;
  stateful: boolean;
  description: string;
}

export interface FakeOperation {
  id: string;
  class: "task" | "websocket";
  description: string;
  status: string;
  status_code: number;
  metadata: Record<string, unknown>;
  may_cancel: boolean;
  err: string;
  /** Migration role, if any. */
  role?: "source" | "sink";
  /** Channel name → secret (migration operations). */
  secrets: Record<string, string>;
  live: boolean;
  instance?: string;
  /** Relay: channels seen connected / closed, and which ended their stream properly. */
  connected: Set<string>;
  closedChannels: Set<string>;
  eos: Set<string>;
  linked: boolean;
  timer?: NodeJS.Timeout;
}

export interface FakeLxdOptions {
  /** Used in records and messages ("src", "tgt"). */
  name: string;
  /** The address this server "listens" on (environment.addresses); peers are found by it. */
  address?: string;
  extensions?: string[];
  certificate?: string;
  instances?: Partial<FakeInstance>[];
  /** Newer LXD adds a non-secret `entity_url` key to push-mode operation metadata. */
  entityUrlInPushMetadata?: boolean;
  /** How long after linking pull/push operations complete. */
  transferMs?: number;
  /** LXD fails a migration source whose channels are not connected within ~10 s. */
  connectTimeoutMs?: number;
  /** What LXD does with a running VM once it has been live-migrated away (current LXD resumes it: a copy). */
  sourceAfterLive?: "Running" | "Stopped";
  /** Target-side failures: refuse the create POST, or fail its operation. */
  failCreate?: { status: number; error: string };
  failTargetOperation?: string;
  /** Source-side failure: refuse the migration POST. */
  failSource?: { status: number; error: string };
  /** Relay script of the source, per channel (default: a few binary frames, a text frame, end of stream). */
  relayFrames?: (channel: string) => Frame[];
  /**
   * How many frames of the script the source sends "early": after its side of the channel is
   * connected, before the relay's target side of that channel is (the source sends them when the
   * target fake receives the upgrade request for the channel, and the target completes its
   * handshake `relayHandshakeDelayMs` later). Default: half of the script.
   */
  relayEarly?: number;
  relayHandshakeDelayMs?: number;
  /** The rest of the script follows this long after the early frames. */
  relayLaterMs?: number;
  /**
   * Send the early frames right behind the handshake response instead, so that they arrive in
   * the same read as the client's 101 (two fakes share one process: deterministic).
   */
  relaySendOnHandshake?: boolean;
  /** The source closes each channel right after its script instead of waiting for the target's end of stream. */
  relayCloseAfterSend?: boolean;
  /** The target answers each end of stream with frames of its own (default true). */
  relayTargetReplies?: boolean;
  /** GET /1.0/instances answers this long after it arrived, with the instances as they were then (a big server's slow list). */
  listDelayMs?: number;
}

export const PEM = "-----BEGIN CERTIFICATE-----\nMIIBfakeLXDcertificateForContractTestsOnly\n-----END CERTIFICATE-----\n";

export const DEFAULT_EXTENSIONS = [
  "container_push",
  "container_push_target",
  "container_incremental_copy",
  "container_only_migration",
  "instance_allow_inconsistent_copy",
  "migration_stateful",
  "migration_vm_live",
  "instance_pool_move",
  "instance_project_move",
  "operation_wait",
  "etag",
];

/** The VM of the brief: meets R8 (migration.stateful), R9 (size.state >= limits.memory). */
export function liveVm(over: Partial<FakeInstance> = {}): Partial<FakeInstance> {
  return {
    name: "vm1",
    type: "virtual-machine",
    status: "Running",
    config: {
      "migration.stateful": "true",
      "limits.memory": "1GiB",
      "volatile.eth0.hwaddr": "00:16:3e:12:34:56",
      "volatile.last_state.power": "RUNNING",
      "volatile.base_image": "b".repeat(64),
      "volatile.uuid": "8a1d0f66-0000-4000-8000-000000000001",
    },
    devices: {
      root: { type: "disk", path: "/", pool: "default", "size.state": "2GiB" },
      eth0: { type: "nic", network: "lxdbr0", name: "eth0" },
    },
    ...over,
  };
}

/** Default relay script: binary frames (one large), a text frame, an empty binary frame, end of stream. */
export function defaultFrames(channel: string): Frame[] {
  const big = createHash("sha256").update(channel).digest();
  const large = Buffer.alloc(256 * 1024);
  for (let i = 0; i < large.length; i += big.length) big.copy(large, i);
  return [
    { data: Buffer.from(`${channel}:hello`), binary: true },
    { data: Buffer.from([0, 1, 2, 255, 254, 0x0a, 0x0d]), binary: true },
    { data: large, binary: true },
    { data: Buffer.from(`${channel}: a text frame`), binary: false },
    { data: Buffer.alloc(0), binary: true },
    { data: Buffer.from(`${channel}:last`), binary: true },
    { data: Buffer.alloc(0), binary: false },
  ];
}

const isEos = (f: Frame) => !f.binary && f.data.length === 0;

/** Replies of the target to a source's end of stream on a channel. */
export function replyFrames(channel: string): Frame[] {
  return [
    { data: Buffer.from(`${channel}:ack`), binary: true },
    { data: Buffer.alloc(0), binary: false },
  ];
}

// Shared by every fake of this process: peers by address, and one sequence for ordering.
const peers = new Map<string, FakeLxd>();
/** Relay: source channels waiting for the target side of their channel to be connected. */
type Waiting = { channel: string; fire: () => Promise<void> };
const awaitingTarget = new Set<Waiting>();
let seq = 0;
const nextSeq = () => ++seq;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class FakeLxd {
  readonly name: string;
  readonly address: string;
  readonly certificate: string;
  readonly extensions: string[];
  readonly socketPath: string;
  readonly requests: RecordedRequest[] = [];
  readonly websockets: WsConnection[] = [];
  readonly instances = new Map<string, FakeInstance>();
  readonly operations = new Map<string, FakeOperation>();
  /** Instance lists (GET /1.0/instances) being answered now, and the most at any one time. */
  listsInFlight = 0;
  maxListsInFlight = 0;
  private readonly server: http.Server;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  private readonly waiters = new Set<{ op: FakeOperation; done: () => void }>();
  private readonly sockets = new Set<WebSocket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly waiting = new Set<Waiting>();
  private readonly upgrading = new Set<Duplex>();
  private readonly dir: string;

  private constructor(readonly opts: FakeLxdOptions) {
    this.name = opts.name;
    this.address = opts.address ?? "127.0.0.1:9999";
    this.certificate = opts.certificate ?? PEM.replace("fake", `fake${opts.name}`);
    this.extensions = opts.extensions ?? DEFAULT_EXTENSIONS;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `fake-lxd-${opts.name}-`));
    this.socketPath = path.join(this.dir, "unix.socket");
    for (const i of opts.instances ?? []) this.addInstance(i);
    this.server = http.createServer((req, res) => this.onRequest(req, res));
    this.server.on("upgrade", (req, socket, head) => this.onUpgrade(req, socket, head));
  }

  static async start(opts: FakeLxdOptions): Promise<FakeLxd> {
    const f = new FakeLxd(opts);
    if (peers.has(f.address)) throw new Error(`a fake LXD already listens on ${f.address}`);
    await new Promise<void>((resolve, reject) => {
      f.server.once("error", reject);
      f.server.listen(f.socketPath, () => resolve());
    });
    peers.set(f.address, f);
    return f;
  }

  /** The remote an `LxdClient` needs to reach this fake. */
  get remote(): { name: string; addr: string; socketPath: string } {
    return { name: this.name, addr: "unix://", socketPath: this.socketPath };
  }

  addInstance(i: Partial<FakeInstance>): FakeInstance {
    const inst: FakeInstance = {
      name: "c1",
      type: "container",
      status: "Stopped",
      architecture: "x86_64",
      project: "default",
      location: "none",
      config: {},
      devices: {},
      profiles: ["default"],
      ephemeral: false,
      stateful: false,
      description: "",
      ...i,
    };
    inst.config = { ...inst.config };
    inst.devices = JSON.parse(JSON.stringify(inst.devices));
    this.instances.set(inst.name, inst);
    return inst;
  }

  /**
   * Errors to answer instead of the real thing: `times` requests matching method and path, after
   * `skip` of them went through. With `applied`, the request takes effect first and only its
   * answer is replaced (a lost response); `then` runs right after (e.g. `goSilent`).
   */
  readonly injected: { method: string; path: RegExp; status: number; error: string; times: number; skip: number; applied: boolean; then?: () => void }[] = [];
  inject(method: string, path: RegExp, status: number, error: string, opts: { times?: number; skip?: number; applied?: boolean; then?: () => void } = {}): void {
    this.injected.push({ method, path, status, error, times: opts.times ?? 1, skip: opts.skip ?? 0, applied: !!opts.applied, then: opts.then });
  }

  /** Stop answering: the socket goes away and open connections are cut (a daemon that died). */
  goSilent(): void {
    if (fs.existsSync(this.socketPath)) fs.renameSync(this.socketPath, `${this.socketPath}.away`);
    this.server.closeAllConnections();
  }
  comeBack(): void {
    if (fs.existsSync(`${this.socketPath}.away`)) fs.renameSync(`${this.socketPath}.away`, this.socketPath);
  }

  /** Requests matching a method and a path (string: exact; RegExp: test). */
  find(method: string, p: string | RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && (typeof p === "string" ? r.path === p : p.test(r.path)));
  }

  async close(): Promise<void> {
    if (peers.get(this.address) === this) peers.delete(this.address);
    for (const t of this.timers) clearTimeout(t);
    for (const w of this.waiting) awaitingTarget.delete(w);
    for (const op of this.operations.values()) if (op.timer) clearTimeout(op.timer);
    for (const w of this.waiters) w.done();
    for (const s of this.sockets) s.terminate();
    for (const s of this.upgrading) s.destroy();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // ---------------------------------------------------------------------------- plumbing

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private etag(i: FakeInstance): string {
    return `"${createHash("sha256")
      .update(JSON.stringify([i.config, i.devices, i.profiles, i.description, i.ephemeral]))
      .digest("hex")
      .slice(0, 16)}"`;
  }

  private view(i: FakeInstance) {
    return {
      ...i,
      status_code: i.status === "Running" ? 103 : i.status === "Frozen" ? 110 : 102,
      expanded_config: { ...i.config },
      expanded_devices: JSON.parse(JSON.stringify(i.devices)),
    };
  }

  private opView(op: FakeOperation) {
    return {
      id: op.id,
      class: op.class,
      description: op.description,
      created_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
      status: op.status,
      status_code: op.status_code,
      resources: op.instance ? { instances: [`/1.0/instances/${op.instance}`] } : {},
      metadata: op.metadata,
      may_cancel: op.may_cancel,
      err: op.err,
      location: "none",
    };
  }

  private newOp(cls: "task" | "websocket", description: string, extra: Partial<FakeOperation> = {}): FakeOperation {
    const op: FakeOperation = {
      id: randomBytes(16)
        .toString("hex")
        .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5"),
      class: cls,
      description,
      status: "Running",
      status_code: 103,
      metadata: {},
      may_cancel: false,
      err: "",
      secrets: {},
      live: false,
      connected: new Set(),
      closedChannels: new Set(),
      eos: new Set(),
      linked: false,
      ...extra,
    };
    this.operations.set(op.id, op);
    return op;
  }

  private finish(op: FakeOperation, err?: string, cancelled = false): void {
    if (op.status_code !== 103) return;
    if (op.timer) clearTimeout(op.timer);
    op.status = cancelled ? "Cancelled" : err ? "Failure" : "Success";
    op.status_code = cancelled ? 401 : err ? 400 : 200;
    op.err = err ?? (cancelled ? "Operation cancelled" : "");
    for (const w of [...this.waiters]) if (w.op === op) w.done();
    // Close this operation's channels: LXD tears down a finished migration's websockets.
    if (err || cancelled) for (const c of this.websockets) if (c.opId === op.id) this.socketOf(c)?.close();
  }

  private wsOf = new Map<WsConnection, WebSocket>();
  private socketOf(c: WsConnection): WebSocket | undefined {
    return this.wsOf.get(c);
  }

  private doneOp(op: FakeOperation, afterMs = 0): FakeOperation {
    if (afterMs > 0) this.later(afterMs, () => this.finish(op));
    else this.finish(op);
    return op;
  }

  private channelsFor(live: boolean): string[] {
    return live ? ["control", "fs", "criu"] : ["control", "fs"];
  }

  private secretsFor(channels: string[]): Record<string, string> {
    return Object.fromEntries(channels.map((c) => [c, randomBytes(32).toString("hex")]));
  }

  /** The peer and operation named by an operation URL `https://ADDRESS/1.0/operations/ID`. */
  private peerOp(url: unknown): { peer: FakeLxd; op: FakeOperation } {
    const m = typeof url === "string" ? /^https:\/\/([^/]+)\/1\.0\/operations\/([^/?]+)$/.exec(url) : null;
    if (!m) throw new HttpError(400, `Invalid operation URL ${JSON.stringify(url)}`);
    const peer = peers.get(m[1]);
    if (!peer) throw new HttpError(500, `Failed to connect to ${m[1]}: connection refused`);
    const op = peer.operations.get(m[2]);
    if (!op) throw new HttpError(500, `Failed getting migration operation: not found`);
    return { peer, op };
  }

  // ---------------------------------------------------------------------------- HTTP

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const u = new URL(req.url ?? "/", "http://lxd");
      const text = Buffer.concat(chunks).toString("utf8");
      let body: unknown = undefined;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
      }
      const ifMatch = typeof req.headers["if-match"] === "string" ? req.headers["if-match"] : undefined;
      const rec: RecordedRequest = {
        seq: nextSeq(),
        server: this.name,
        method: req.method ?? "GET",
        path: u.pathname,
        query: Object.fromEntries(u.searchParams),
        body,
        ...(ifMatch ? { ifMatch } : {}),
      };
      this.requests.push(rec);
      const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
        if (res.writableEnded) return;
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(JSON.stringify(payload));
      };
      const sync = (metadata: unknown, headers: Record<string, string> = {}) => send(200, { type: "sync", status: "Success", status_code: 200, metadata }, headers);
      const async = (op: FakeOperation) =>
        send(202, { type: "async", status: "Operation created", status_code: 100, operation: `/1.0/operations/${op.id}`, metadata: this.opView(op) }, { location: `/1.0/operations/${op.id}` });
      let fault = this.injected.find((f) => f.times > 0 && f.method === rec.method && f.path.test(rec.path));
      if (fault && fault.skip > 0) {
        fault.skip--;
        fault = undefined;
      }
      if (fault) {
        fault.times--;
        const f = fault;
        const fail = () => {
          send(f.status, { type: "error", error: f.error, error_code: f.status });
          f.then?.();
        };
        if (!f.applied) return fail();
        try {
          const swallow = () => undefined;
          this.route(rec, req, res, swallow, swallow as (op: FakeOperation) => void, swallow);
        } catch {
          // the request failed by itself: its answer is lost all the same
        }
        return fail();
      }
      try {
        this.route(rec, req, res, sync, async, send);
      } catch (e) {
        const status = e instanceof HttpError ? e.status : 500;
        send(status, { type: "error", error: (e as Error).message, error_code: status });
      }
    });
  }

  private route(
    r: RecordedRequest,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    sync: (m: unknown, h?: Record<string, string>) => void,
    async: (op: FakeOperation) => void,
    send: (status: number, payload: unknown, headers?: Record<string, string>) => void,
  ): void {
    const p = r.path.replace(/\/+$/, "");
    const seg = p.split("/").slice(1).map(decodeURIComponent); // ["1.0", ...]
    const body = (r.body ?? {}) as Record<string, unknown>;
    if (seg[0] !== "1.0") throw new HttpError(404, "not found");
    const [, coll, name, sub] = seg;

    if (r.method === "GET" && !coll) {
      return sync({
        api_extensions: this.extensions,
        api_status: "stable",
        api_version: "1.0",
        auth: "trusted",
        public: false,
        auth_methods: ["tls"],
        environment: {
          addresses: [this.address],
          certificate: this.certificate,
          server_clustered: false,
          server_name: this.name,
          server_version: "5.21.0",
          driver: "qemu | lxc",
        },
      });
    }
    if (r.method === "GET" && coll === "projects" && !name) return sync(["/1.0/projects/default"]);
    if (r.method === "GET" && coll === "profiles" && !name) return sync(["/1.0/profiles/default"]);
    if (r.method === "GET" && coll === "storage-pools" && !name) return sync(["/1.0/storage-pools/default"]);
    if (r.method === "GET" && coll === "storage-pools" && name && sub === "volumes") {
      const volName = seg[5];
      if (name === "default" && volName && this.instances.has(volName)) return sync({ name: volName, type: seg[4] });
      throw new HttpError(404, "Storage volume not found");
    }

    if (r.method === "GET" && coll === "operations" && !name) {
      const running = [...this.operations.values()].filter((o) => o.status_code === 103).map((o) => this.opView(o));
      return sync(r.query.recursion ? { running } : { running: running.map((o) => `/1.0/operations/${(o as { id: string }).id}`) });
    }
    if (coll === "operations" && name) {
      const op = this.operations.get(name);
      if (!op) throw new HttpError(404, "Operation not found");
      if (r.method === "GET" && sub === "wait") {
        const t = Number(r.query.timeout ?? "-1");
        if (op.status_code !== 103) return sync(this.opView(op));
        const w = {
          op,
          done: () => {
            this.waiters.delete(w);
            if (timer) clearTimeout(timer);
            sync(this.opView(op));
          },
        };
        const timer = t >= 0 ? setTimeout(() => w.done(), t * 1000) : undefined;
        this.waiters.add(w);
        res.once("close", () => {
          this.waiters.delete(w);
          if (timer) clearTimeout(timer);
        });
        return;
      }
      if (r.method === "GET" && !sub) return sync(this.opView(op));
      if (r.method === "DELETE" && !sub) {
        if (op.status_code !== 103) throw new HttpError(400, "Only running operations can be cancelled");
        if (!op.may_cancel) throw new HttpError(403, "This operation can't be cancelled");
        this.finish(op, undefined, true);
        return sync({});
      }
    }

    if (coll === "instances" && !name) {
      if (r.method === "GET") {
        const list = [...this.instances.values()];
        const snapshot = JSON.parse(JSON.stringify(r.query.recursion ? list.map((i) => this.view(i)) : list.map((i) => `/1.0/instances/${i.name}`)));
        this.maxListsInFlight = Math.max(this.maxListsInFlight, ++this.listsInFlight);
        const answer = () => {
          this.listsInFlight--;
          sync(snapshot);
        };
        return this.opts.listDelayMs ? this.later(this.opts.listDelayMs, answer) : answer();
      }
      if (r.method === "POST") return async(this.createTarget(body));
    }

    if (coll === "instances" && name) {
      const inst = this.instances.get(name);
      if (r.method === "GET" && !sub) {
        if (!inst) throw new HttpError(404, "Instance not found");
        return sync(this.view(inst), { etag: this.etag(inst) });
      }
      if (!inst) throw new HttpError(404, "Instance not found");
      if (r.method === "POST" && !sub) return async(this.instancePost(inst, body));
      if ((r.method === "PUT" || r.method === "PATCH") && !sub) {
        const ifMatch = req.headers["if-match"];
        if (ifMatch && ifMatch !== this.etag(inst)) throw new HttpError(412, "ETag doesn't match");
        const cfg = (body.config ?? {}) as Record<string, string>;
        if (r.method === "PUT") {
          inst.config = {};
          if (body.devices) inst.devices = JSON.parse(JSON.stringify(body.devices));
          if (body.profiles) inst.profiles = [...(body.profiles as string[])];
          if (typeof body.description === "string") inst.description = body.description;
        } else if (body.devices) {
          Object.assign(inst.devices, body.devices);
        }
        for (const [k, v] of Object.entries(cfg)) {
          if (v === "") delete inst.config[k];
          else inst.config[k] = String(v);
        }
        if (r.method === "PATCH") return sync({});
        return async(this.doneOp(this.newOp("task", "Updating instance", { instance: name })));
      }
      if (r.method === "PUT" && sub === "state") {
        const action = body.action;
        if (action === "start") inst.status = "Running";
        else if (action === "stop") inst.status = "Stopped";
        else if (action === "freeze") inst.status = "Frozen";
        else if (action === "unfreeze") inst.status = "Running";
        return async(this.doneOp(this.newOp("task", `${String(action)} instance`, { instance: name })));
      }
      if (r.method === "DELETE" && !sub) {
        // `?force=1` is only understood with `instance_force_delete` (LXD 6.7+); older servers ignore it.
        const force = r.query.force === "1" && this.extensions.includes("instance_force_delete");
        if (inst.status !== "Stopped" && !force) throw new HttpError(400, "Instance is running");
        this.instances.delete(name);
        return async(this.doneOp(this.newOp("task", "Deleting instance", { instance: name })));
      }
    }
    send(404, { type: "error", error: "not found", error_code: 404 });
  }

  /** POST /1.0/instances/{name} with `migration: true`: a source (pull, relay) or a push to a target. */
  private instancePost(inst: FakeInstance, body: Record<string, unknown>): FakeOperation {
    if (body.migration !== true) throw new HttpError(400, "this fake only implements migration POSTs");
    if (this.opts.failSource) throw new HttpError(this.opts.failSource.status, this.opts.failSource.error);
    // LXD: an omitted `live` means true (Incus: false); live only counts for a running instance.
    const live = body.live === undefined ? true : body.live === true;
    if (live && inst.status === "Running" && inst.type === "container") throw new HttpError(400, "Live migration is not supported for containers");
    const effLive = live && inst.status === "Running";
    if (effLive && inst.type === "virtual-machine" && inst.config["migration.stateful"] !== "true") {
      throw new HttpError(400, "Stateful stop requires migration.stateful to be set to true");
    }
    const channels = this.channelsFor(effLive);
    const target = body.target as { certificate?: string; operation?: string; secrets?: Record<string, string> } | undefined;
    if (target) {
      // Push: dial the target's operation inside the POST (5.0.2 style: failures are a 500 here).
      for (const ch of channels) {
        if (!target.secrets?.[ch]) throw new HttpError(500, `Expected "${ch}" connection secret missing from migration source target request`);
      }
      const { peer, op: sink } = this.peerOp(target.operation);
      if (target.certificate !== peer.certificate) throw new HttpError(500, "Failed to connect to the target: certificate mismatch");
      for (const ch of channels) if (sink.secrets[ch] !== target.secrets?.[ch]) throw new HttpError(500, `Failed to connect the "${ch}" channel: bad secret`);
      const op = this.newOp("task", "Migrating instance", { role: "source", live: effLive, instance: inst.name, may_cancel: true, secrets: {} });
      this.link(op, inst, peer, sink);
      return op;
    }
    const secrets = this.secretsFor(channels);
    const op = this.newOp("websocket", "Migrating instance", { role: "source", live: effLive, instance: inst.name, may_cancel: true, secrets, metadata: { ...secrets } });
    op.timer = setTimeout(() => {
      if (!op.linked && op.connected.size < channels.length) this.finish(op, "Failed waiting for migration connections: context deadline exceeded");
    }, this.opts.connectTimeoutMs ?? 10_000);
    return op;
  }

  /** POST /1.0/instances with `source.type: migration`: the target of a pull, push or relay. */
  private createTarget(body: Record<string, unknown>): FakeOperation {
    const src = (body.source ?? {}) as Record<string, unknown>;
    if (src.type !== "migration") throw new HttpError(400, "this fake only implements migration targets");
    if (this.opts.failCreate) throw new HttpError(this.opts.failCreate.status, this.opts.failCreate.error);
    const name = String(body.name ?? "");
    if (!name) throw new HttpError(400, "Instance name is required");
    if (this.instances.has(name) && src.refresh !== true) throw new HttpError(409, "Instance already exists");
    const live = src.live === undefined ? true : src.live === true;
    const type = body.type === "virtual-machine" ? "virtual-machine" : "container";
    const inst =
      this.instances.get(name) ??
      this.addInstance({
        name,
        type,
        status: "Stopped",
        architecture: String(body.architecture ?? "x86_64"),
        config: (body.config ?? {}) as Record<string, string>,
        devices: (body.devices ?? {}) as Record<string, Record<string, string>>,
        profiles: (body.profiles ?? ["default"]) as string[],
        ephemeral: body.ephemeral === true,
        description: String(body.description ?? ""),
      });
    const channels = this.channelsFor(live && type === "virtual-machine");
    if (src.mode === "push") {
      const secrets = this.secretsFor(channels);
      const metadata: Record<string, unknown> = { ...secrets };
      if (this.opts.entityUrlInPushMetadata) metadata.entity_url = `/1.0/instances/${name}`;
      const op = this.newOp("websocket", "Creating instance", { role: "sink", live, instance: name, may_cancel: true, secrets, metadata });
      return op;
    }
    // Pull: dial the source's operation (after the 202, as LXD does inside the operation).
    const op = this.newOp("task", "Creating instance", { role: "sink", live, instance: name, may_cancel: false });
    this.later(5, () => {
      if (op.status_code !== 103) return;
      if (this.opts.failTargetOperation) return this.failSink(op, inst);
      let peer: FakeLxd;
      let srcOp: FakeOperation;
      try {
        ({ peer, op: srcOp } = this.peerOp(src.operation));
      } catch (e) {
        return this.failSink(op, inst, (e as Error).message);
      }
      if (src.certificate !== peer.certificate) return this.failSink(op, inst, "Failed migration on target: certificate of the source does not match");
      const secrets = (src.secrets ?? {}) as Record<string, string>;
      for (const ch of channels) {
        if (!secrets[ch] || secrets[ch] !== srcOp.secrets[ch]) return this.failSink(op, inst, `Expected "${ch}" connection secret missing from migration sink target request`);
      }
      // The source waits for every channel it offered (a live source also for "criu").
      const missing = Object.keys(srcOp.secrets).filter((ch) => !channels.includes(ch));
      if (missing.length) {
        peer.finish(srcOp, `Failed waiting for migration "${missing[0]}" connection: context deadline exceeded`);
        return this.failSink(op, inst, `Failed migration on target: source went away`);
      }
      const srcInst = peer.instances.get(srcOp.instance ?? "");
      if (!srcInst) return this.failSink(op, inst, "source instance vanished");
      peer.link(srcOp, srcInst, this, op);
    });
    return op;
  }

  private failSink(op: FakeOperation, inst: FakeInstance, err = this.opts.failTargetOperation ?? "failed"): void {
    this.instances.delete(inst.name);
    this.finish(op, err);
  }

  /** Source `op` of `inst` (on this fake) transfers to `sink` on `peer`: both succeed shortly after. */
  private link(op: FakeOperation, inst: FakeInstance, peer: FakeLxd, sink: FakeOperation): void {
    op.linked = sink.linked = true;
    if (peer.opts.failTargetOperation) {
      const inst2 = peer.instances.get(sink.instance ?? "");
      peer.later(5, () => (inst2 ? peer.failSink(sink, inst2) : peer.finish(sink, peer.opts.failTargetOperation)));
      this.later(10, () => this.finish(op, "Migration target went away"));
      return;
    }
    if (op.live !== sink.live && inst.status === "Running") {
      const e = `Expected "criu" connection secret missing`;
      this.later(5, () => this.finish(op, e));
      peer.later(5, () => peer.finish(sink, e));
      return;
    }
    const ms = this.opts.transferMs ?? 30;
    this.later(ms, () => {
      if (op.status_code !== 103 || sink.status_code !== 103) {
        if (op.status_code === 103) this.finish(op, "Migration target went away");
        if (sink.status_code === 103) peer.finish(sink, "Migration source went away");
        return;
      }
      this.afterSend(op, inst);
      peer.afterReceive(sink);
      this.finish(op);
      peer.finish(sink);
    });
  }

  private afterSend(op: FakeOperation, inst: FakeInstance): void {
    if (op.live && inst.type === "virtual-machine") inst.status = this.opts.sourceAfterLive ?? "Running";
  }

  private afterReceive(sink: FakeOperation): void {
    const t = this.instances.get(sink.instance ?? "");
    if (t) t.status = sink.live && t.type === "virtual-machine" ? "Running" : "Stopped";
  }

  // ---------------------------------------------------------------------------- websockets (relay)

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const u = new URL(req.url ?? "/", "http://lxd");
    const m = /^\/1\.0\/operations\/([^/]+)\/websocket$/.exec(u.pathname);
    const op = m ? this.operations.get(m[1]) : undefined;
    const secret = u.searchParams.get("secret") ?? "";
    const channel = op ? Object.keys(op.secrets).find((k) => op.secrets[k] === secret) : undefined;
    this.requests.push({ seq: nextSeq(), server: this.name, method: "GET", path: u.pathname, query: Object.fromEntries(u.searchParams), body: undefined });
    if (!op || !channel || op.status_code !== 103 || op.connected.has(channel)) {
      socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    op.connected.add(channel);
    this.upgrading.add(socket);
    const complete = () => {
      this.upgrading.delete(socket);
      if (!socket.destroyed) this.wss.handleUpgrade(req, socket, head, (ws) => this.onChannel(op, channel, ws));
    };
    if (op.role !== "sink") return complete();
    // The relay is connecting the target side of this channel: a source that waits for that
    // moment sends its early frames now, before this handshake completes.
    const fired: Promise<void>[] = [];
    for (const w of [...awaitingTarget]) {
      if (w.channel !== channel) continue;
      awaitingTarget.delete(w);
      fired.push(w.fire());
    }
    if (!fired.length) return complete();
    void Promise.all(fired).then(() => this.later(this.opts.relayHandshakeDelayMs ?? 20, complete));
  }

  private onChannel(op: FakeOperation, channel: string, ws: WebSocket): void {
    const conn: WsConnection = { seq: nextSeq(), server: this.name, opId: op.id, channel, received: [], sent: [], sentSeq: [], closed: false };
    this.websockets.push(conn);
    this.sockets.add(ws);
    this.wsOf.set(conn, ws);
    const sendFrame = (f: Frame) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      conn.sent.push(f);
      conn.sentSeq.push(nextSeq());
      ws.send(f.data, { binary: f.binary });
    };
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      const f = { data: Buffer.from(data), binary: isBinary };
      conn.received.push(f);
      if (!isEos(f)) return;
      if (op.role === "sink") {
        // The target answers each end of stream (rsync and the control protocol go both ways).
        if (this.opts.relayTargetReplies !== false) for (const r of replyFrames(channel)) sendFrame(r);
      } else {
        // The source has seen the target's end of stream: the channel is done.
        ws.close(1000);
      }
    });
    ws.on("close", () => {
      conn.closed = true;
      conn.closedSeq = nextSeq();
      this.sockets.delete(ws);
      op.closedChannels.add(channel);
      // A channel ended properly when the target saw the source's end of stream (and the source sent it).
      if (op.role === "sink" ? conn.received.some(isEos) : conn.sent.some(isEos)) op.eos.add(channel);
      const all = Object.keys(op.secrets);
      if (!all.every((c) => op.closedChannels.has(c))) return;
      const bad = all.find((c) => !op.eos.has(c));
      if (bad) {
        if (op.role === "sink" && op.instance) this.instances.delete(op.instance);
        return this.finish(op, `Failed migration: the "${bad}" stream ended early`);
      }
      if (op.role === "sink") this.afterReceive(op);
      else {
        const inst = this.instances.get(op.instance ?? "");
        if (inst) this.afterSend(op, inst);
      }
      this.finish(op);
    });
    ws.on("error", () => undefined);
    if (op.role === "sink") {
      // A failing target fails once the relay has connected all its channels.
      if (this.opts.failTargetOperation && Object.keys(op.secrets).every((c) => op.connected.has(c))) {
        this.later(20, () => {
          if (op.instance) this.instances.delete(op.instance);
          this.finish(op, this.opts.failTargetOperation);
        });
      }
      return;
    }
    const script = (this.opts.relayFrames ?? defaultFrames)(channel);
    const early = Math.min(script.length, this.opts.relayEarly ?? Math.ceil(script.length / 2));
    const closed = new Promise<void>((r) => ws.once("close", () => r()));
    const rest = () => {
      for (const f of script.slice(early)) sendFrame(f);
      if (this.opts.relayCloseAfterSend) ws.close(1000);
    };
    // Resolves when the target's handshake may complete: at once, or, when the whole script went
    // early and the source closes after it, once this side is closed.
    const sendEarly = (): Promise<void> => {
      for (const f of script.slice(0, early)) sendFrame(f);
      if (early < script.length) {
        this.later(this.opts.relayLaterMs ?? 30, rest);
        return Promise.resolve();
      }
      rest();
      return this.opts.relayCloseAfterSend ? closed : Promise.resolve();
    };
    if (this.opts.relaySendOnHandshake) return void sendEarly();
    const w = { channel, fire: sendEarly };
    awaitingTarget.add(w);
    this.waiting.add(w);
  }
}

/** Start fakes; close them all with the returned function. */
export async function startFakes(...opts: FakeLxdOptions[]): Promise<{ fakes: FakeLxd[]; close: () => Promise<void> }> {
  const fakes: FakeLxd[] = [];
  try {
    for (const o of opts) fakes.push(await FakeLxd.start(o));
  } catch (e) {
    await Promise.all(fakes.map((f) => f.close()));
    throw e;
  }
  return { fakes, close: async () => void (await Promise.all(fakes.map((f) => f.close()))) };
}
