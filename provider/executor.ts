/**
 * Runs a plan, step by step, with the protocol of docs/protocol.md:
 *
 *   mark the source (outgoing, the move's record, this run's lease; If-Match on what was planned)
 *   [pre-copy while it runs (near-live)] [stop it] copy it, the copy marked incoming
 *   mark the copy complete (only once LXD confirmed the transfer)
 *   [live: stop the source LXD resumed] commit (the copy loses incoming: it is the instance)
 *   start the copy, delete the source, clear the record and the lease
 *
 * Each step ends at a named boundary (`io.boundary`), where LXD_PLACEMENT_CRASH_AT can end the
 * process. After any error or lost response the executor does not guess which side won: it reads
 * both sides again and lets the protocol's loop (`settle`, provider/facts.ts) roll the move back
 * or forward from what it finds, or stop there when a server that could hold a copy is silent.
 * The error then says where the instance is.
 */
import { randomUUID } from "node:crypto";
import { LEASE_TTL_MS, leaseValue, powerWord, settle, type Settled } from "./facts";
import type { Desired } from "./inputs";
import type { MoveIo } from "./io";
import type { LxdClient } from "./lxd/client";
import { isConflict, LeasedError, MoveFailedError, PlacementError, TimeoutError } from "./lxd/errors";
import { getInstance, putInstance, rootDeviceName, type Instance } from "./lxd/instances";
import { acquireGroupMove, acquireUnavailable } from "./limiter";
import { sameJson } from "./same";
import { COMPLETE_KEY, formatMove, INCOMING_KEY, LEASE_KEY, MARKER_KEY, MARK_PREFIX, MOVE_KEY, OUTGOING_KEY, placeKey, samePlace, type Place } from "./marks";
import type { Placement, Plan } from "./planner";
import { COMMIT_KEYS, describeCopy, explain, FINISH_KEYS, isRunning, tempName, where, type Copy, type Own } from "./protocol";

import type { MoveRecord } from "./move-record";
export type { MoveRecord };

export type Logger = (text: string) => void;

const at = (p: Placement) => `${p.remote}:${p.project}/${p.name}${p.member ? `@${p.member}` : ""}${p.pool ? ` (pool ${p.pool})` : ""}`;
const secs = (ms: number) => Math.round(ms / 10) / 100;

/** Keys LXD owns and a move must carry (MAC address, idmap, base image), minus per-host ones. */
export function carriedVolatile(config: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(config)) {
    if (!(k.startsWith("volatile.") || k.startsWith("image."))) continue;
    if (k === "volatile.last_state.power" || k.endsWith(".host_name") || k.endsWith(".last_state.created")) continue;
    out[k] = v;
  }
  return out;
}

/** The instance's local config as declared (R6): user config + LXD-owned keys + the marker. */
export function declaredConfig(src: Record<string, string>, d: Desired, id: string): Record<string, string> {
  return { ...carriedVolatile(src), ...d.config, [MARKER_KEY]: id };
}

/** Declared devices; a `storagePool` becomes a root disk device on that pool (R6). */
export function declaredDevices(d: Desired, src?: Instance): Record<string, Record<string, string>> {
  const devices = { ...d.devices };
  if (d.storagePool) {
    const name = src ? rootDeviceName(src) : "root";
    const base = src?.expanded_devices[name] ?? {};
    devices[name] = { ...base, ...(d.devices[name] ?? {}), type: "disk", path: "/", pool: d.storagePool };
  }
  return devices;
}

/**
 * Bring config, devices, profiles and description to the declared values (PUT with the ETag).
 * The marks of a move in progress are kept: only the protocol clears them.
 */
export async function applyDeclared(c: LxdClient, name: string, d: Desired, id: string): Promise<boolean> {
  const cur = await getInstance(c, name);
  if (!cur) throw new PlacementError("instance vanished while applying its settings", c.ctx({ instance: name }));
  const i = cur.instance;
  const config = declaredConfig(i.config, d, id);
  for (const [k, v] of Object.entries(i.config)) {
    // Keep LXD-owned keys that must not be dropped on a live instance (e.g. last_state.power), and the marks.
    if ((k.startsWith("volatile.") || (k.startsWith(MARK_PREFIX) && k !== MARKER_KEY)) && !(k in config)) config[k] = v;
  }
  const devices = declaredDevices(d, i);
  if (sameJson(config, i.config) && sameJson(devices, i.devices) && sameJson(d.profiles, i.profiles) && d.description === i.description) return false;
  await putInstance(c, name, { architecture: i.architecture, config, devices, profiles: d.profiles, ephemeral: i.ephemeral, description: d.description }, cur.etag);
  return true;
}

export interface MoveContext {
  io: MoveIo;
  id: string;
  desired: Desired;
  plan: Extract<Plan, { kind: "move" }>;
  /** The source as the plan saw it (a fresh read). */
  found: Copy;
  log: Logger;
}

/** The server a placement is on, for per-server limits: the remote, or "remote@member". */
const server = (p: Placement) => (p.member ? `${p.remote}@${p.member}` : p.remote);

interface Slot {
  release: () => void;
  waitedMs: number;
}
const NO_SLOT: Slot = { release: () => undefined, waitedMs: 0 };

/**
 * The group's downtime slot (migration.group + maxUnavailable): taken just before a running
 * instance stops (or is frozen by a transfer), released as soon as it runs again. Returns the
 * release function (a no-op without a group limit) and how long the wait took.
 */
async function downtimeSlot(ctx: MoveContext, deadline: number): Promise<Slot> {
  const m = ctx.desired.migration;
  if (!m.group || !m.maxUnavailable) return NO_SLOT;
  const t = Date.now();
  const release = await acquireUnavailable(m.group, m.maxUnavailable, deadline);
  const waitedMs = Date.now() - t;
  if (waitedMs > 200) ctx.log(`waited ${secs(waitedMs)}s for a downtime slot of group "${m.group}" (maxUnavailable ${m.maxUnavailable})`);
  return { release, waitedMs };
}

/** Run one move. Returns what happened; throws MoveFailedError saying where the instance is. */
export async function executeMove(ctx: MoveContext): Promise<MoveRecord> {
  const { plan } = ctx;
  const m = ctx.desired.migration;
  // migration.timeoutSeconds bounds the whole move: the slot waits, every step and transfer.
  const deadline = ctx.io.now() + m.timeoutSeconds * 1000;
  let releaseGroup = () => undefined as void;
  if (m.group && (m.maxConcurrentMoves || m.maxConcurrentMovesPerServer)) {
    const tw = Date.now();
    releaseGroup = await acquireGroupMove(m.group, [server(plan.from), server(plan.to)], { maxMoves: m.maxConcurrentMoves, maxMovesPerServer: m.maxConcurrentMovesPerServer }, deadline);
    if (Date.now() - tw > 200) ctx.log(`waited ${secs(Date.now() - tw)}s for a move slot of group "${m.group}"`);
  }
  try {
    const t0 = ctx.io.now();
    ctx.log(`moving: ${at(plan.from)} -> ${at(plan.to)} (${plan.strategy}${plan.route.kind === "copy" && !plan.route.sameServer ? `, ${plan.route.mode}` : ""})`);
    const r = plan.route.kind === "server-side" ? await serverSide(ctx, deadline) : await copyMove(ctx, deadline);
    const rec: MoveRecord = {
      kind: plan.route.kind === "server-side" ? plan.route.steps.join("+") : plan.route.sameServer ? "copy-within-server" : "cross-server",
      strategy: plan.strategy,
      mode: plan.route.kind === "copy" && !plan.route.sameServer ? plan.route.mode : undefined,
      from: at(plan.from),
      to: at(plan.to),
      durationSeconds: secs(ctx.io.now() - t0),
      downtimeSeconds: secs(r.downtimeMs),
      preCopyRounds: r.rounds,
      at: new Date(ctx.io.now()).toISOString(),
    };
    ctx.log(`moved in ${rec.durationSeconds}s, downtime ${rec.downtimeSeconds}s`);
    return rec;
  } finally {
    releaseGroup();
  }
}

const placeOf = (p: Placement): Place => ({ remote: p.remote, project: p.project, name: p.name });

/** The name the copy is made under: a temporary one when the source holds the target's name in the same namespace. */
export function copyPlace(plan: Extract<Plan, { kind: "move" }>, id: string): Place {
  const sameNamespace = plan.from.remote === plan.to.remote && plan.from.project === plan.to.project;
  return { remote: plan.to.remote, project: plan.to.project, name: sameNamespace && plan.to.name === plan.from.name ? tempName(plan.to.name, id) : plan.to.name };
}

/**
 * Keeps this run's lease on the instance alive while the move runs: renewed every third of its
 * life on the copy that holds it (the source, then the committed copy). A renewal that finds
 * another run's lease there marks the lease lost; the move stops at its next boundary.
 */
class LeaseKeeper {
  lost?: string;
  private holder: Place;
  private stopTimer: () => Promise<void>;
  /** Until when the lease is known to hold: the expiry last written. */
  private heldUntil: number;
  constructor(
    private readonly io: MoveIo,
    private readonly id: string,
    at: Place,
    private readonly log: Logger,
  ) {
    this.holder = at;
    this.heldUntil = io.now() + LEASE_TTL_MS;
    this.stopTimer = io.every(LEASE_TTL_MS / 3, () => this.renew());
  }
  moveTo(p: Place): void {
    this.holder = p;
  }
  private async renew(): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const cur = await this.io.get(this.holder, this.id);
        if (!cur) return;
        const l = cur.lease;
        if (l && l !== "invalid" && l.run !== this.io.run && cur.leaseHolds) {
          this.lost = `run ${l.run} took the lease on ${where(cur)}`;
          return;
        }
        const until = this.io.now() + LEASE_TTL_MS;
        await this.io.patch(this.holder, { [LEASE_KEY]: leaseValue(this.io) }, cur.etag);
        this.heldUntil = until;
        return;
      } catch (e) {
        if (!isConflict(e)) {
          this.log(`could not renew the lease on ${placeKey(this.holder)} (${(e as Error).message.split("\n")[0]})`);
          return;
        }
      }
    }
  }
  check(): void {
    // A lease this run could not renew may have run out: another run may act on the instance now.
    if (!this.lost && this.io.now() > this.heldUntil - LEASE_MARGIN_MS) this.lost = `it could not be renewed before it ran out at ${new Date(this.heldUntil).toISOString()}`;
    if (this.lost) throw new LeasedError(`this run lost the lease of the move: ${this.lost}`, {}, "Another run may act on the instance now; this one stops here and reads both sides again");
  }
  /** Stop renewing; resolves once a renewal in flight has ended (it must not write the lease back after the move clears it). */
  stop(): Promise<void> {
    return this.stopTimer();
  }
}

/**
 * Write marks on a copy with If-Match, after checking on a fresh read that it is what the step
 * expects. A conflict (the copy changed between the read and the write, e.g. a lease renewal)
 * reads again and retries; anything else is the step's error.
 */
async function writeMarks(io: MoveIo, p: Place, id: string, set: Record<string, string>, expect: (c: Copy) => string | undefined): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const cur = await io.get(p, id);
    if (!cur) throw new PlacementError(`${placeKey(p)} is gone`, { remote: p.remote, project: p.project, instance: p.name });
    const bad = expect(cur);
    if (bad) throw new PlacementError(`${describeCopy(cur)} is not as the move left it: ${bad}`, { remote: p.remote, project: p.project, instance: p.name });
    try {
      await io.patch(p, set, cur.etag);
      return;
    } catch (e) {
      if (!isConflict(e) || attempt >= 3) throw e;
    }
  }
}

/** A lease closer than this to its end no longer counts as held. */
const LEASE_MARGIN_MS = 10_000;

const clearing = (keys: string[]) => Object.fromEntries(keys.map((k) => [k, ""]));

/**
 * Take the lease and write the move's first marks on the source, with If-Match on a fresh read
 * that must still be the copy that was planned: no mark of a move, no lease of another run.
 */
async function takeLease(io: MoveIo, id: string, src: Place, marks: Record<string, string>, planned?: Copy): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    // The read the plan was made on serves the first attempt (If-Match fails if it is stale).
    const cur = attempt === 0 && planned?.etag ? planned : await io.get(src, id);
    if (!cur)
      throw new PlacementError(`the instance is no longer at ${placeKey(src)}`, { remote: src.remote, project: src.project, instance: src.name }, "Run again: the next run finds it where it is");
    const l = cur.lease;
    if (l && l !== "invalid" && l.run !== io.run && cur.leaseHolds) {
      const b = explain({ kind: "leased", copy: cur, lease: l }, id);
      throw new LeasedError(b.message, { remote: src.remote, project: src.project, instance: src.name }, b.remedy);
    }
    if (cur.incoming || cur.outgoing)
      throw new PlacementError(`${describeCopy(cur)} carries the marks of another move`, { remote: src.remote, instance: src.name }, "Run again: the next run settles it first");
    try {
      await io.patch(src, { ...marks, [LEASE_KEY]: leaseValue(io) }, cur.etag);
      return;
    } catch (e) {
      if (!isConflict(e) || attempt >= 3) throw e;
    }
  }
}

/** Cold, stop-move-start, live and near-live moves through a copy (R1, R5, R7, R2). */
async function copyMove(ctx: MoveContext, deadline: number): Promise<{ downtimeMs: number; rounds?: number }> {
  const { io, plan, desired: d, id, found } = ctx;
  if (plan.route.kind !== "copy") throw new Error("unreachable");
  const moveId = randomUUID();
  const from = found.place;
  const to = copyPlace(plan, id);
  const final = placeOf(plan.to);
  const record = formatMove({ id: moveId, from, to });
  const wasRunning = isRunning(found.status);
  const live = plan.strategy === "live";
  const nearLive = plan.strategy === "near-live";
  // Between two members of a cluster, LXD's own copy (source type "copy") freezes a running
  // container for the whole transfer even with allow_inconsistent (LXD 5.0.2); a migration pulled
  // from the source member's operation does not. Inside one server (a project move) only LXD's
  // copy exists.
  const betweenMembers = plan.route.sameServer && !!plan.to.member && !!found.member && found.member !== plan.to.member;
  const mode = !plan.route.sameServer ? plan.route.mode : betweenMembers ? "pull" : "local";
  const own: Own = { run: io.run, move: { id: moveId, completeSent: false, live } };
  const left = () => {
    const ms = deadline - io.now();
    if (ms <= 0) throw new TimeoutError(`the move did not finish within migration.timeoutSeconds (${d.migration.timeoutSeconds}s)`, { instance: final.name });
    return ms;
  };
  let stoppedAt: number | undefined;
  let rounds = 0;
  let down = NO_SLOT;
  let committed = false;
  let keeper: LeaseKeeper | undefined;
  const boundary = async (step: string, p: Place) => {
    await io.boundary(step, p);
    keeper?.check();
  };
  try {
    await takeLease(io, id, from, { [OUTGOING_KEY]: moveId, [MOVE_KEY]: record }, found);
    keeper = new LeaseKeeper(io, id, from, ctx.log);
    await boundary("marked", from);
    const transfer = (refresh: boolean, allowInconsistent: boolean) =>
      io.transfer({
        from,
        to,
        member: plan.to.member || undefined,
        mode,
        marks: { [INCOMING_KEY]: moveId, [MOVE_KEY]: record, [LEASE_KEY]: leaseValue(io) },
        live,
        refresh,
        allowInconsistent,
        desired: d,
        id,
        timeoutMs: left(),
      });
    if (nearLive && wasRunning) {
      let last = Infinity;
      for (let i = 0; i <= d.migration.preCopyRounds; i++) {
        const t = io.now();
        ctx.log(i === 0 ? `pre-copy to ${at(plan.to)} while ${from.name} keeps running` : `pre-copy round ${i + 1} (delta only)`);
        // LXD's own copy inside a server freezes a running container for the whole transfer
        // (5.0.2, allow_inconsistent or not): such a pre-copy round is time the container does
        // not serve, so it holds a downtime slot of the group too.
        const frozen = mode === "local" ? await downtimeSlot(ctx, deadline) : NO_SLOT;
        try {
          await transfer(i > 0, true);
        } finally {
          frozen.release();
        }
        rounds++;
        await boundary("pre-copied", to);
        const took = io.now() - t - frozen.waitedMs;
        // Adaptive: stop repeating once a round is short or no longer shrinking.
        if (i > 0 && (took < 2_000 || took >= last * 0.8)) break;
        last = took;
      }
    }
    if (wasRunning && !live) {
      down = await downtimeSlot(ctx, deadline);
      stoppedAt = io.now();
      ctx.log(nearLive ? `cutover: stopping ${from.name} for the final delta` : `stopping ${from.name}`);
      await io.stop(from, { graceSeconds: nearLive ? 10 : 20 });
      await boundary("stopped", from);
    }
    ctx.log(rounds ? `final copy of the delta to ${at(plan.to)}` : `copying to ${at(plan.to)}`);
    await transfer(rounds > 0, false);
    await boundary("copied", to);
    // LXD confirmed the transfer: the copy is complete. Only this mark lets it become the instance.
    own.move!.completeSent = true;
    await writeMarks(io, to, id, { [COMPLETE_KEY]: moveId }, (c) => (c.incoming !== moveId ? "not this move's copy" : undefined));
    await boundary("complete", to);
    if (live) {
      // LXD runs both sides at the end of a live transfer: the source stops before the copy is the instance.
      await io.stop(from, { force: true });
      await boundary("source-stopped", from);
    }
    await writeMarks(io, to, id, clearing(COMMIT_KEYS), (c) => (c.incoming !== moveId || c.complete !== moveId ? "not this move's complete copy" : undefined));
    committed = true;
    keeper.moveTo(to);
    await boundary("committed", to);
    if (!samePlace(to, final)) {
      // Same namespace (a cluster member move): the source goes before the copy takes its name.
      await io.delete(from);
      await boundary("source-deleted", from);
      await io.rename(to, final.name);
      keeper.moveTo(final);
      await boundary("renamed", final);
    }
    // P4: a running instance runs again at the target (after a live move it already does).
    if (wasRunning && d.running && !live) {
      await io.start(final);
      await boundary("started", final);
    }
    const downtimeMs = stoppedAt !== undefined ? io.now() - stoppedAt : 0;
    down.release();
    if (samePlace(to, final)) {
      await io.delete(from);
      await boundary("source-deleted", from);
    }
    await keeper.stop();
    keeper.check();
    await writeMarks(io, final, id, clearing(FINISH_KEYS), (c) => (c.incoming || c.outgoing ? "marked as a copy in flight" : undefined));
    await io.boundary("finished", final);
    return { downtimeMs, rounds: nearLive ? rounds : undefined };
  } catch (e) {
    await keeper?.stop();
    if (e instanceof LeasedError && !committed && !keeper) throw e;
    const r = await recover(ctx, own, e, { from, to, final, wasRunning, stopped: stoppedAt !== undefined });
    down.release();
    return { downtimeMs: stoppedAt !== undefined ? io.now() - stoppedAt : 0, rounds: nearLive ? rounds : undefined, ...r };
  } finally {
    down.release();
  }
}

/** Same-server steps, in the order LXD 5.0.2 can do them one POST at a time (R4, R6). */
async function serverSide(ctx: MoveContext, deadline: number): Promise<{ downtimeMs: number; rounds?: number }> {
  const { io, plan, desired: d, id, found } = ctx;
  if (plan.route.kind !== "server-side") throw new Error("unreachable");
  const from = found.place;
  const final = placeOf(plan.to);
  const wasRunning = isRunning(found.status);
  const live = plan.strategy === "live";
  const moveId = randomUUID();
  const own: Own = { run: io.run };
  let stoppedAt: number | undefined;
  let down = NO_SLOT;
  let keeper: LeaseKeeper | undefined;
  let cur = from;
  try {
    // No copy is made: the record names both places; the lease keeps other runs out.
    await takeLease(io, id, from, { [MOVE_KEY]: formatMove({ id: moveId, from, to: final }) }, found);
    keeper = new LeaseKeeper(io, id, from, ctx.log);
    await io.boundary("marked", from);
    keeper.check();
    if (wasRunning && !live) {
      down = await downtimeSlot(ctx, deadline);
      stoppedAt = io.now();
      ctx.log(`stopping ${from.name} (${plan.strategy})`);
      await io.stop(from);
      await io.boundary("stopped", from);
    }
    for (const step of plan.route.steps) {
      ctx.log(`step: ${step}`);
      const left = Math.max(1_000, deadline - io.now());
      if (step === "pool") await io.serverStep(cur, { kind: "pool", pool: plan.to.pool }, live, left);
      if (step === "project") {
        await io.serverStep(cur, { kind: "project", project: plan.to.project }, live, left);
        cur = { ...cur, project: plan.to.project };
      }
      if (step === "member") await io.serverStep(cur, { kind: "member", member: plan.to.member }, live, left);
      if (step === "rename") {
        await io.serverStep(cur, { kind: "rename", name: plan.to.name }, live, left);
        cur = { ...cur, name: plan.to.name };
      }
      keeper.moveTo(cur);
      await io.boundary(`moved-${step}`, cur);
      keeper.check();
    }
    await io.applyDeclared(cur, d, id);
    if (stoppedAt !== undefined && d.running) {
      await io.start(cur);
      await io.boundary("started", cur);
    }
    const downtimeMs = stoppedAt !== undefined ? io.now() - stoppedAt : 0;
    down.release();
    await keeper.stop();
    keeper.check();
    await writeMarks(io, cur, id, clearing(FINISH_KEYS), () => undefined);
    await io.boundary("finished", cur);
    return { downtimeMs };
  } catch (e) {
    await keeper?.stop();
    if (e instanceof LeasedError && !keeper) throw e;
    // LXD may still be running the step whose answer was lost: let it end before reading.
    await io.settleTransfers(cur).catch(() => undefined);
    const r = await recover(ctx, own, e, { from, to: final, final, wasRunning, stopped: stoppedAt !== undefined });
    return { downtimeMs: stoppedAt !== undefined ? io.now() - stoppedAt : 0, ...r };
  } finally {
    down.release();
  }
}

/**
 * After an error or a lost response: read both sides again and let the protocol roll the move
 * back or forward from what is there. Returns when the move ended at its target after all;
 * throws MoveFailedError saying where the instance is otherwise.
 */
async function recover(ctx: MoveContext, own: Own, cause: unknown, m: { from: Place; to: Place; final: Place; wasRunning: boolean; stopped: boolean }): Promise<Record<string, never>> {
  const { io, id, desired: d } = ctx;
  const why = (cause as Error).message;
  // P4 cannot be kept while the server is silent: say so rather than let "nothing was started" read as "still running".
  const stoppedNote =
    m.stopped && m.wasRunning && d.running
      ? " The move stopped (or was stopping) the instance for its cutover; it could not be started again while the server does not answer, and the next run starts it (P4)."
      : "";
  ctx.log(`the move hit an error (${why.split("\n")[0]}); reading both sides again`);
  let s: Settled;
  try {
    s = await settle(io, {
      id,
      recorded: m.from,
      also: [...new Set([m.from.remote, m.to.remote])],
      own,
      // P4: a running instance this move stopped runs again, wherever it now is.
      goal: { running: m.wasRunning && d.running ? true : undefined, name: m.final.name },
      log: ctx.log,
    });
  } catch (e) {
    throw MoveFailedError.with(
      "undecided",
      `move failed: ${why}. Reading the servers again failed too (${(e as Error).message}); nothing more was changed, and the next run settles the move from what it finds (P5).${stoppedNote}`,
      { instance: d.name },
      undefined,
      { cause },
    );
  }
  const dec = s.decision;
  if (dec.kind === "done") {
    const i = dec.instance;
    // A member or pool move keeps remote, project and name: the member and the pool tell where it ended.
    const { member, pool } = ctx.plan.to;
    if (samePlace(i.place, m.final) && (!member || i.member === member) && (!pool || i.pool === pool)) {
      ctx.log(`finished the move after the error: ${where(i)} is the instance, ${powerWord(i)} (P5)`);
      return {};
    }
    const live = ctx.plan.strategy === "live" && m.wasRunning;
    throw MoveFailedError.with(
      "rolled-back",
      `move failed: ${why}. Nothing was lost: the instance is still at ${where(i)}, ${live && isRunning(i.status) ? "still running (R15)" : powerWord(i)} (P5)`,
      { remote: i.place.remote, project: i.place.project, instance: i.place.name },
      live ? `Set migration.strategy to "stop-move-start" or "near-live" (with allowRestart: true) to move it with a restart` : undefined,
      { cause, at: where(i), running: isRunning(i.status) },
    );
  }
  if (dec.kind === "blocked") {
    const b = dec.blocked;
    if (b.kind === "silent") {
      // Say what is known: a copy that serves (the committed copy, or the source started again by
      // rule 0 of decide), else the source this run still holds; and what stays for a later run.
      const ours = (c: Copy) => c.outgoing === own.move?.id || [m.from, m.to, m.final].some((p) => samePlace(c.place, p));
      const serving = s.view.copies.find((c) => ours(c) && !c.incoming && isRunning(c.status));
      const src = serving ?? s.view.copies.find((c) => c.outgoing === own.move?.id && !c.incoming);
      const where_ = src ? `the instance is at ${where(src)}, ${powerWord(src)}; ` : "";
      const note = serving ? "" : stoppedNote;
      throw MoveFailedError.with(
        "undecided",
        `move failed: ${why}. ${b.remotes.map((r) => `Remote "${r}"`).join(", ")} did not answer: ${where_}nothing was deleted, promoted or started on the strength of ${b.remotes.length > 1 ? "them" : "it"} (I4), and the next run finishes or rolls back the move once ${b.remotes.length > 1 ? "they answer" : "it answers"} (P5).${note}`,
        { instance: d.name },
        undefined,
        { cause, ...(src ? { at: where(src), running: isRunning(src.status) } : {}) },
      );
    }
    const e = explain(b, id);
    throw MoveFailedError.with("undecided", `move failed: ${why}. ${e.message}`, { instance: d.name }, e.remedy, { cause });
  }
  throw MoveFailedError.with(
    "undecided",
    `move failed: ${why}. No copy of the instance was found afterwards (${s.view.copies.map(describeCopy).join(", ") || "none"})`,
    { instance: d.name },
    undefined,
    { cause },
  );
}
