/**
 * The move protocol's requests (provider/io.ts) made to real LXD servers, through the estate's
 * clients: what the executor and settle run in production.
 */
import { randomUUID } from "node:crypto";
import { crashPoint } from "./crash";
import type { Estate } from "./estate";
import { applyDeclared, declaredConfig, declaredDevices } from "./executor";
import type { Desired } from "./inputs";
import type { MoveIo, ServerStep, TransferRequest } from "./io";
import type { LxdClient, Operation } from "./lxd/client";
import { isSilent, PlacementError } from "./lxd/errors";
import {
  deleteInstance,
  getInstance,
  isRunning,
  moveToPool,
  moveToProject,
  patchInstance,
  postInstance,
  rootPool,
  setState,
  startInstance,
  stopInstance,
  thawStuck,
  type Instance,
} from "./lxd/instances";
import { COMPLETE_KEY, INCOMING_KEY, LEASE_KEY, leaseHolds, MARKER_KEY, MOVE_KEY, OUTGOING_KEY, parseLease, parseMove, placeKey, thisHolder, type Holder, type Lease, type Place } from "./marks";
import type { Copy } from "./protocol";
import { copy } from "./transfer";

/** This provider process: one run, for leases. */
export const RUN_ID = randomUUID();

/** A copy as the protocol sees it, from LXD's record of the instance. */
export function copyOf(remote: string, i: Instance, etag?: string, now = Date.now()): Copy {
  const c = i.config;
  const lease = parseLease(c[LEASE_KEY]);
  return {
    place: { remote, project: i.project, name: i.name },
    member: i.location && i.location !== "none" ? i.location : "",
    status: i.status,
    pool: rootPool(i),
    incoming: c[INCOMING_KEY] || undefined,
    outgoing: c[OUTGOING_KEY] || undefined,
    complete: c[COMPLETE_KEY] || undefined,
    move: parseMove(c[MOVE_KEY]),
    lease,
    leaseHolds: lease && lease !== "invalid" ? leaseHolds(lease, now) : false,
    etag,
    raw: i,
  };
}

/** How long settle waits for a transfer an interrupted run left running on a partial copy. */
const LEFTOVER_TRANSFER_WAIT_MS = 120_000;

/**
 * Wait (bounded) until no LXD operation still works on instance `name` of the client's project.
 * A run killed mid-move leaves its transfer running inside LXD (pull and push are server to
 * server). Deleting the partial copy under it makes that transfer fail, and LXD's cleanup of the
 * failed transfer then removes the volume of the next copy of the same name while it is being
 * written (seen on 5.0.2: "Rsync receive failed ... No such file or directory").
 */
export async function waitTransfersOn(c: LxdClient, name: string, where: string): Promise<void> {
  const project = c.project;
  const ours = (op: Operation) =>
    Object.values((op as { resources?: Record<string, string[] | null> }).resources ?? {})
      .flatMap((urls) => urls ?? [])
      .some((u) => {
        const [p, q] = u.split("?");
        return p === `/1.0/instances/${encodeURIComponent(name)}` && (new URLSearchParams(q ?? "").get("project") ?? "default") === project;
      });
  const ops = await c.get<{ running?: Operation[] | null }>("/operations", undefined, { query: { recursion: "1" } });
  const deadline = Date.now() + LEFTOVER_TRANSFER_WAIT_MS;
  for (const op of (ops.running ?? []).filter(ours)) {
    try {
      await c.wait(op.id, Math.max(1_000, deadline - Date.now()));
    } catch (e) {
      if (!PlacementError.is(e)) throw e;
      if (e.code === "LXDP_TIMEOUT" && e.context.operation === op.id) {
        throw new PlacementError(`an LXD operation is still working on ${where} (operation ${op.id})`, c.ctx({ instance: name, operation: op.id }), "Run again once it has ended; nothing was changed");
      }
      // The server stopped answering: the caller cannot tell, and must not decide on it.
      if (isSilent(e)) throw e;
      // The operation failed or vanished: either way it has ended.
    }
  }
}

export class LxdIo implements MoveIo {
  constructor(
    readonly estate: Estate,
    readonly run: string = RUN_ID,
  ) {}

  private client(p: Place): LxdClient {
    return this.estate.client(p.remote, p.project);
  }

  now(): number {
    return Date.now();
  }
  sleep(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms));
  }
  every(ms: number, fn: () => Promise<void>): () => Promise<void> {
    let running: Promise<void> | undefined;
    const t = setInterval(() => {
      if (running) return;
      running = fn()
        .catch(() => undefined)
        .finally(() => (running = undefined));
    }, ms);
    t.unref();
    return async () => {
      clearInterval(t);
      await running;
    };
  }
  remotes(): string[] {
    return this.estate.remotes.names;
  }
  knows(remote: string): boolean {
    try {
      this.estate.remotes.get(remote);
      return true;
    } catch {
      return false;
    }
  }
  async get(p: Place, id: string): Promise<Copy | undefined> {
    const got = await getInstance(this.client(p), p.name);
    if (!got || got.instance.config[MARKER_KEY] !== id) return undefined;
    return copyOf(p.remote, got.instance, got.etag);
  }
  async list(remote: string, id: string, opts: { shared?: boolean } = {}): Promise<Copy[]> {
    const now = Date.now();
    return (await this.estate.instances(remote, { fresh: !opts.shared })).filter((i) => i.config[MARKER_KEY] === id).map((i) => copyOf(remote, i, undefined, now));
  }
  async patch(p: Place, set: Record<string, string>, etag?: string): Promise<void> {
    await patchInstance(this.client(p), p.name, { config: set }, etag);
  }
  async stop(p: Place, opts: { force?: boolean; graceSeconds?: number } = {}): Promise<void> {
    const c = this.client(p);
    if (!opts.force) return stopInstance(c, p.name, opts.graceSeconds);
    const cur = await getInstance(c, p.name);
    if (!cur) return;
    if (await thawStuck(c, p.name, cur.instance.status)) cur.instance.status = "Running";
    if (isRunning(cur.instance)) await setState(c, p.name, "stop", { force: true, timeout: -1 });
  }
  start(p: Place): Promise<void> {
    return startInstance(this.client(p), p.name);
  }
  async thaw(p: Place): Promise<void> {
    const c = this.client(p);
    const cur = await getInstance(c, p.name);
    if (!cur) return;
    const s = cur.instance.status;
    if (s === "Freezing") await thawStuck(c, p.name, s);
    else if (s === "Frozen") await setState(c, p.name, "unfreeze");
  }
  settleTransfers(p: Place): Promise<void> {
    return waitTransfersOn(this.client(p), p.name, placeKey(p));
  }
  async delete(p: Place): Promise<void> {
    await deleteInstance(this.client(p), p.name);
  }
  async rename(p: Place, to: string): Promise<void> {
    await postInstance(this.client(p), p.name, { name: to });
  }
  async transfer(req: TransferRequest): Promise<void> {
    const src = this.client(req.from);
    const got = await getInstance(src, req.from.name);
    if (!got) throw new PlacementError(`the source ${placeKey(req.from)} vanished before its copy`, src.ctx({ instance: req.from.name }));
    const source = got.instance;
    const tgt0 = this.client(req.to);
    const tgt = req.member ? tgt0.useTarget(req.member) : tgt0;
    await copy(req.mode, src, tgt, {
      source,
      name: req.to.name,
      config: { ...declaredConfig(source.config, req.desired, req.id), ...req.marks },
      devices: declaredDevices(req.desired, source),
      profiles: req.desired.profiles,
      live: req.live,
      refresh: req.refresh,
      allowInconsistent: req.allowInconsistent,
      timeoutMs: req.timeoutMs,
    });
  }
  async serverStep(p: Place, step: ServerStep, live: boolean, timeoutMs: number): Promise<void> {
    const c = this.client(p);
    if (step.kind === "pool") await moveToPool(c, p.name, step.pool, { live, waitMs: timeoutMs });
    if (step.kind === "project") await moveToProject(c, p.name, step.project, { live, waitMs: timeoutMs });
    if (step.kind === "member") await postInstance(c.useTarget(step.member), p.name, { name: p.name, migration: true, live }, timeoutMs);
    if (step.kind === "rename") await postInstance(c, p.name, { name: step.name }, timeoutMs);
  }
  applyDeclared(p: Place, d: Desired, id: string): Promise<boolean> {
    return applyDeclared(this.client(p), p.name, d, id);
  }
  boundary(step: string, p?: Place): Promise<void> {
    return crashPoint(step, p);
  }
  holder(): Holder {
    return thisHolder();
  }
  leaseHolds(l: Lease): boolean {
    return leaseHolds(l, Date.now());
  }
}
