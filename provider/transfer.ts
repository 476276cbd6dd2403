/**
 * Copying an instance to another place: between servers in pull, push or relay mode (R5), or
 * inside one server (another member or project). The copy is one step of a move: the executor
 * deletes the source only after the copy is complete and verified (P5).
 */
import WebSocket from "ws";
import type { LxdClient, Operation } from "./lxd/client";
import { isNotFound, LxdApiError, PlacementError } from "./lxd/errors";
import { createInstance, getInstance, migrationSource, type Instance } from "./lxd/instances";
import { listMembers, listPools } from "./lxd/resources";

export interface CopySpec {
  /** Instance at the source as read before the copy. */
  source: Instance;
  /** Name at the target. */
  name: string;
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
  profiles: string[];
  live: boolean;
  /** Refresh an existing copy (only the delta moves; `container_incremental_copy`). */
  refresh: boolean;
  /**
   * Copy a running container without freezing it (`instance_allow_inconsistent_copy`). LXD
   * 5.0.2 otherwise freezes the container for the whole copy: fine when it is stopped, but it
   * turns a near-live pre-copy into downtime. The final copy, of a stopped source, is consistent.
   */
  allowInconsistent?: boolean;
  timeoutMs: number;
  onProgress?: (text: string) => void;
}

/** Secrets of a migration operation, taken from the creating response (later metadata mixes in progress keys). */
function secretsOf(op: Operation): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(op.metadata ?? {})) {
    // Newer LXD adds a non-secret `entity_url` key to push-mode metadata.
    if (typeof v === "string" && k !== "entity_url") out[k] = v;
  }
  if (!out.control) throw new LxdApiError(`migration operation has no "control" secret`, { operation: op.id });
  return out;
}

async function operationUrl(c: LxdClient, opId: string, location?: string): Promise<{ url: string; certificate: string }> {
  const s = await c.server();
  const cert = s.environment.certificate;
  if (location && location !== "none") {
    // On a cluster the operation lives on the member that holds the instance, which need not be
    // the member this client talks to: the peer must reach that member (its cluster address).
    const m = (await listMembers(c)).find((x) => x.server_name === location);
    if (m?.url && cert) return { url: `${m.url.replace(/\/+$/, "")}/1.0/operations/${opId}`, certificate: cert };
  }
  const host = c.remote.addr.replace(/^https:\/\//, "");
  const addrs = s.environment.addresses ?? [];
  if (!addrs.length) {
    throw new PlacementError("the server isn't listening on the network", c.ctx(), `Set core.https_address on ${c.remote.name}: pull and push need the servers to reach each other (R5)`);
  }
  const addr = addrs.includes(host) ? host : addrs[0];
  if (!cert) throw new PlacementError("the server did not return its certificate", c.ctx());
  return { url: `https://${addr}/1.0/operations/${opId}`, certificate: cert };
}

function body(spec: CopySpec, source: Record<string, unknown>) {
  const s = spec.source;
  return {
    name: spec.name,
    type: s.type,
    architecture: s.architecture,
    config: spec.config,
    devices: spec.devices,
    profiles: spec.profiles,
    ephemeral: s.ephemeral,
    description: s.description,
    stateful: false,
    source: {
      ...source,
      "base-image": s.config["volatile.base_image"] ?? "",
      live: spec.live,
      instance_only: false,
      refresh: spec.refresh,
      allow_inconsistent: !!spec.allowInconsistent,
    },
  };
}

/**
 * Wait on both sides; on failure cancel the other side so no half-open operation lingers. LXD
 * cannot cancel a migration operation, and a side whose peer is frozen or gone may wait on it
 * for the whole move's deadline (migration.timeoutSeconds, 15 min by default): once one side has
 * failed, the other gets one request deadline to end, then the move fails with the first error.
 */
async function waitBoth(src: LxdClient, srcOp: Operation | undefined, dst: LxdClient, dstOp: Operation | undefined, timeoutMs: number) {
  let firstFailure!: (e: unknown) => void;
  const failedFirst = new Promise<unknown>((resolve) => (firstFailure = resolve));
  const w = async (c: LxdClient, op: Operation | undefined, other: () => Promise<void>) => {
    if (!op) return;
    try {
      await c.wait(op, timeoutMs);
    } catch (e) {
      firstFailure(e);
      await other();
      throw e;
    }
  };
  const both = Promise.allSettled([w(dst, dstOp, async () => (srcOp ? src.cancel(srcOp.id) : undefined)), w(src, srcOp, async () => (dstOp ? dst.cancel(dstOp.id) : undefined))]);
  const graceMs = Math.min(src.defaultTimeoutMs, dst.defaultTimeoutMs);
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = failedFirst.then((e) => new Promise<{ gaveUp: unknown }>((r) => (timer = setTimeout(() => r({ gaveUp: e }), graceMs))));
  try {
    const results = await Promise.race([both, gaveUp]);
    if (!Array.isArray(results)) throw results.gaveUp;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  } finally {
    if (timer) clearTimeout(timer);
  }
}

export async function copyPull(src: LxdClient, dst: LxdClient, spec: CopySpec): Promise<void> {
  const srcOp = await migrationSource(src, spec.source.name, { migration: true, live: spec.live, instance_only: false, allow_inconsistent: !!spec.allowInconsistent });
  let dstOp: Operation | undefined;
  try {
    const { url, certificate } = await operationUrl(src, srcOp.id, srcOp.location);
    dstOp = await createInstance(dst, body(spec, { type: "migration", mode: "pull", operation: url, certificate, secrets: secretsOf(srcOp) }));
  } catch (e) {
    await src.cancel(srcOp.id);
    throw e;
  }
  await waitBoth(src, srcOp, dst, dstOp, spec.timeoutMs);
}

export async function copyPush(src: LxdClient, dst: LxdClient, spec: CopySpec): Promise<void> {
  const dstOp = await createInstance(dst, body(spec, { type: "migration", mode: "push" }));
  let srcOp: Operation | undefined;
  try {
    const { url, certificate } = await operationUrl(dst, dstOp.id, dstOp.location);
    srcOp = await migrationSource(src, spec.source.name, {
      migration: true,
      live: spec.live,
      instance_only: false,
      allow_inconsistent: !!spec.allowInconsistent,
      target: { certificate, operation: url, secrets: secretsOf(dstOp) },
    });
  } catch (e) {
    await dst.cancel(dstOp.id);
    throw e;
  }
  await waitBoth(src, srcOp, dst, dstOp, spec.timeoutMs);
}

/**
 * Proxy one websocket pair, interpreting nothing: every frame keeps its binary/text type (a
 * zero-length text frame ends a stream). Frames that arrive before the other side is open are
 * held, not dropped. When either side closes or fails, both close.
 */
export function proxy(a: WebSocket, b: WebSocket, stats?: { bytes: number }): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      for (const s of [a, b]) {
        if (s.readyState === WebSocket.OPEN) s.close();
        else if (s.readyState === WebSocket.CONNECTING) s.terminate();
      }
      resolve();
    };
    const pipe = (from: WebSocket, to: WebSocket) => {
      from.on("message", (data: Buffer, isBinary: boolean) => {
        if (stats) stats.bytes += data.length;
        if (to.readyState !== WebSocket.OPEN) return finish();
        to.send(data, { binary: isBinary }, (err) => err && finish());
        // Back-pressure: stop reading while the other side has a backlog.
        if (to.bufferedAmount > 8 * 1024 * 1024) {
          from.pause();
          const resume = () => (to.bufferedAmount < 1024 * 1024 || to.readyState !== WebSocket.OPEN ? from.resume() : setTimeout(resume, 5));
          setTimeout(resume, 5);
        }
      });
      from.once("close", finish);
      from.once("error", finish);
    };
    pipe(a, b);
    pipe(b, a);
    // A side that closed while its frames were held (before this proxy started) has no "close"
    // event left to fire: end the pair once the caller has passed the held frames on (it does so
    // right after this returns), or the other side would wait for a stream that never ends.
    if (a.readyState === WebSocket.CLOSED || b.readyState === WebSocket.CLOSED) setImmediate(finish);
  });
}

/** Connect a websocket and hold its frames until the caller starts proxying. */
async function connectHeld(c: LxdClient, opId: string, secret: string): Promise<{ ws: WebSocket; release: (to: WebSocket) => void }> {
  const ws = await c.websocket(opId, secret);
  return {
    ws,
    release: (to) => {
      for (const [d, bin] of ws.takeHeld()) to.send(d, { binary: bin });
    },
  };
}

export async function copyRelay(src: LxdClient, dst: LxdClient, spec: CopySpec, stats?: { bytes: number }): Promise<void> {
  const srcOp = await migrationSource(src, spec.source.name, { migration: true, live: spec.live, instance_only: false, allow_inconsistent: !!spec.allowInconsistent });
  let dstOp: Operation | undefined;
  const sockets: WebSocket[] = [];
  try {
    const srcSecrets = secretsOf(srcOp);
    dstOp = await createInstance(dst, body(spec, { type: "migration", mode: "push" }));
    const dstSecrets = secretsOf(dstOp);
    for (const k of Object.keys(dstSecrets)) {
      if (!(k in srcSecrets)) throw new LxdApiError(`relay: the target expects a "${k}" channel the source does not offer`, dst.ctx());
    }
    const order = ["control", ...Object.keys(dstSecrets).filter((k) => k !== "control")];
    const pipes: Promise<void>[] = [];
    for (const ch of order) {
      const s = await connectHeld(src, srcOp.id, srcSecrets[ch]);
      sockets.push(s.ws);
      const t = await connectHeld(dst, dstOp.id, dstSecrets[ch]);
      sockets.push(t.ws);
      const p = proxy(s.ws, t.ws, stats);
      s.release(t.ws);
      t.release(s.ws);
      pipes.push(p);
    }
    await waitBoth(src, srcOp, dst, dstOp, spec.timeoutMs);
    // Give the pipes a moment to drain; the grace timer must not outlive the copy.
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(pipes), new Promise((r) => (grace = setTimeout(r, 5_000)))]);
    clearTimeout(grace);
  } catch (e) {
    await src.cancel(srcOp.id);
    if (dstOp) await dst.cancel(dstOp.id);
    throw e;
  } finally {
    for (const s of sockets) if (s.readyState === WebSocket.OPEN || s.readyState === WebSocket.CONNECTING) s.terminate();
  }
}

/** Copy inside one server (another cluster member or project): `source.type = "copy"`. */
export async function copyLocal(src: LxdClient, dst: LxdClient, spec: CopySpec): Promise<void> {
  const op = await createInstance(dst, body(spec, { type: "copy", source: spec.source.name, project: spec.source.project }));
  await dst.wait(op, spec.timeoutMs);
}

/**
 * After a failed transfer LXD 5.0.2 removes the target's half-made storage volume a moment after
 * the operation has already failed; a new copy started in between fails with "Cannot create
 * volume, already exists on migration target storage". Wait (bounded) for such a leftover to go.
 */
export async function waitTargetClear(dst: LxdClient, name: string, type: string, waitMs = 20_000): Promise<void> {
  const volType = type === "virtual-machine" ? "virtual-machine" : "container";
  const pools = await listPools(dst);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const left: string[] = [];
    for (const pool of pools) {
      const got = await dst
        .call("GET", `/storage-pools/${encodeURIComponent(pool)}/volumes/${volType}/${encodeURIComponent(name)}`)
        .then(() => true)
        .catch((e) => (isNotFound(e) ? false : Promise.reject(e)));
      if (got) left.push(pool);
    }
    if (!left.length) return;
    if (Date.now() > deadline) {
      throw new PlacementError(
        `a storage volume named "${name}" is left on pool ${left.join(", ")} of the target, from an earlier failed transfer`,
        dst.ctx({ instance: name }),
        `Remove it ("lxc storage volume delete ${dst.remote.name}:${left[0]} ${volType}/${name}") and run again`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function copy(mode: "pull" | "push" | "relay" | "local", src: LxdClient, dst: LxdClient, spec: CopySpec): Promise<void> {
  // What each transfer needs of the servers, checked before anything is sent (the planner asks the same).
  if (mode === "push" || mode === "relay") await Promise.all([src.requireFeature("push"), dst.requireFeature("push"), src.requireFeature("pushTarget")]);
  if (spec.refresh) await Promise.all([src.requireFeature("refresh"), dst.requireFeature("refresh")]);
  if (spec.live && spec.source.type === "virtual-machine") await Promise.all([src.requireFeature("vmLive"), dst.requireFeature("vmLive")]);
  if (spec.live && spec.source.type !== "virtual-machine") await Promise.all([src.requireFeature("stateful"), dst.requireFeature("stateful")]);
  if (!spec.refresh && !(await getInstance(dst, spec.name))) await waitTargetClear(dst, spec.name, spec.source.type);
  switch (mode) {
    case "push":
      return copyPush(src, dst, spec);
    case "relay":
      return copyRelay(src, dst, spec);
    case "local":
      return copyLocal(src, dst, spec);
    default:
      return copyPull(src, dst, spec);
  }
}
