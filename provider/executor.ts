/**
 * Runs a plan. Each strategy keeps P5: until the commit point the source is the instance and any
 * copy is marked `incoming`; the commit clears that mark while the source is marked `outgoing`;
 * only then is the source deleted. A failure before the commit removes the copy and restores the
 * source's power state; after it, the copy is the instance. The error says which happened.
 */
import { randomUUID } from "node:crypto";
import type { Estate } from "./estate";
import { OUTGOING_KEY, type Found } from "./facts";
import { INCOMING_KEY, MARKER_KEY, type Desired } from "./inputs";
import type { LxdClient } from "./lxd/client";
import { MoveFailedError, PlacementError } from "./lxd/errors";
import {
  deleteInstance,
  getInstance,
  isRunning,
  patchInstance,
  postInstance,
  putInstance,
  rootDeviceName,
  setState,
  startInstance,
  stopInstance,
  type Instance,
} from "./lxd/instances";
import { acquireGroupMove, acquireUnavailable } from "./limiter";
import type { Placement, Plan } from "./planner";
import { copy } from "./transfer";

export interface MoveRecord {
  kind: string;
  strategy: string;
  mode?: string;
  from: string;
  to: string;
  durationSeconds: number;
  /** Seconds the instance was not running (0 when it was not running before). */
  downtimeSeconds: number;
  preCopyRounds?: number;
  /** Set when a live move was refused by LXD and this move ran instead (R15, strategy auto). */
  fallbackFrom?: string;
  at: string;
}

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

/**
 * The commit point's patch of the copy: it loses its incoming mark and becomes the instance. It
 * loses the outgoing mark too: a refresh copies the source's config, mark and all, and a copy
 * committed with it would look like a second source to the next run's settle (P5).
 */
const COMMITTED = { [INCOMING_KEY]: "", [OUTGOING_KEY]: "" };

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

/** Bring config, devices, profiles and description to the declared values (PUT with the ETag). */
export async function applyDeclared(c: LxdClient, name: string, d: Desired, id: string): Promise<boolean> {
  const cur = await getInstance(c, name);
  if (!cur) throw new PlacementError("instance vanished while applying its settings", c.ctx({ instance: name }));
  const i = cur.instance;
  const config = declaredConfig(i.config, d, id);
  // Keep LXD-owned keys that must not be dropped on a live instance (e.g. last_state.power).
  for (const [k, v] of Object.entries(i.config)) if (k.startsWith("volatile.") && !(k in config)) config[k] = v;
  const devices = declaredDevices(d, i);
  const same = (a: unknown, b: unknown) => JSON.stringify(sortDeep(a)) === JSON.stringify(sortDeep(b));
  if (same(config, i.config) && same(devices, i.devices) && same(d.profiles, i.profiles) && d.description === i.description) return false;
  await putInstance(c, name, { architecture: i.architecture, config, devices, profiles: d.profiles, ephemeral: i.ephemeral, description: d.description }, cur.etag);
  return true;
}

function sortDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortDeep);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, sortDeep(x)]));
  return v;
}

export interface MoveContext {
  estate: Estate;
  id: string;
  desired: Desired;
  plan: Extract<Plan, { kind: "move" }>;
  found: Found;
  log: Logger;
}

/** The server a placement is on, for per-server limits: the remote, or "remote@member". */
const server = (p: Placement) => (p.member ? `${p.remote}@${p.member}` : p.remote);

/**
 * The group's downtime slot (migration.group + maxUnavailable): taken just before a running
 * instance stops (or is frozen by a transfer), released as soon as it runs again. Returns the
 * release function (a no-op without a group limit) and how long the wait took.
 */
async function downtimeSlot(ctx: MoveContext): Promise<{ release: () => void; waitedMs: number }> {
  const m = ctx.desired.migration;
  if (!m.group || !m.maxUnavailable) return { release: () => undefined, waitedMs: 0 };
  const t = Date.now();
  const release = await acquireUnavailable(m.group, m.maxUnavailable);
  const waitedMs = Date.now() - t;
  if (waitedMs > 200) ctx.log(`waited ${secs(waitedMs)}s for a downtime slot of group "${m.group}" (maxUnavailable ${m.maxUnavailable})`);
  return { release, waitedMs };
}

/** Run one move. Returns what happened; throws MoveFailedError saying where the instance is. */
export async function executeMove(ctx: MoveContext): Promise<MoveRecord> {
  const { plan } = ctx;
  const m = ctx.desired.migration;
  let releaseGroup = () => undefined as void;
  if (m.group && (m.maxConcurrentMoves || m.maxConcurrentMovesPerServer)) {
    const tw = Date.now();
    releaseGroup = await acquireGroupMove(m.group, [server(plan.from), server(plan.to)], { maxMoves: m.maxConcurrentMoves, maxMovesPerServer: m.maxConcurrentMovesPerServer });
    if (Date.now() - tw > 200) ctx.log(`waited ${secs(Date.now() - tw)}s for a move slot of group "${m.group}"`);
  }
  try {
    return await executeMoveNow(ctx);
  } finally {
    releaseGroup();
  }
}

async function executeMoveNow(ctx: MoveContext): Promise<MoveRecord> {
  const { plan } = ctx;
  const t0 = Date.now();
  ctx.log(`moving: ${at(plan.from)} -> ${at(plan.to)} (${plan.strategy}${plan.route.kind === "copy" && !plan.route.sameServer ? `, ${plan.route.mode}` : ""})`);
  const r = plan.route.kind === "server-side" ? await serverSide(ctx) : plan.strategy === "near-live" ? await nearLive(ctx) : await copyThenDelete(ctx);
  const rec: MoveRecord = {
    kind: plan.route.kind === "server-side" ? plan.route.steps.join("+") : plan.route.sameServer ? "copy-within-server" : "cross-server",
    strategy: plan.strategy,
    mode: plan.route.kind === "copy" && !plan.route.sameServer ? plan.route.mode : undefined,
    from: at(plan.from),
    to: at(plan.to),
    durationSeconds: secs(Date.now() - t0),
    downtimeSeconds: secs(r.downtimeMs),
    preCopyRounds: r.rounds,
    at: new Date().toISOString(),
  };
  ctx.log(`moved in ${rec.durationSeconds}s, downtime ${rec.downtimeSeconds}s`);
  return rec;
}

/** Same-server steps, in the order LXD 5.0.2 can do them one POST at a time (R4, R6). */
async function serverSide(ctx: MoveContext): Promise<{ downtimeMs: number; rounds?: number }> {
  const { plan, estate, desired: d, found } = ctx;
  if (plan.route.kind !== "server-side") throw new Error("unreachable");
  const timeout = d.migration.timeoutSeconds * 1000;
  let name = found.instance.name;
  let project = found.instance.project;
  const c = () => estate.client(found.remote, project);
  const wasRunning = isRunning(found.instance);
  const live = plan.strategy === "live";
  let stoppedAt: number | undefined;
  let failed: unknown;
  let down = { release: () => undefined as void, waitedMs: 0 };
  try {
    if (wasRunning && !live) {
      down = await downtimeSlot(ctx);
      stoppedAt = Date.now();
      ctx.log(`stopping ${name} (${plan.strategy})`);
      await stopInstance(c(), name);
    }
    for (const step of plan.route.steps) {
      ctx.log(`step: ${step}`);
      if (step === "pool") await postInstance(c(), name, { name, migration: true, pool: plan.to.pool, live }, timeout);
      if (step === "project") {
        await postInstance(c(), name, { name, migration: true, project: plan.to.project, live }, timeout);
        project = plan.to.project;
      }
      if (step === "member") await postInstance(c().useTarget(plan.to.member), name, { name, migration: true, live }, timeout);
      if (step === "rename") {
        await postInstance(c(), name, { name: plan.to.name }, timeout);
        name = plan.to.name;
      }
    }
    await applyDeclared(c(), name, d, ctx.id);
  } catch (e) {
    failed = e;
  }
  // P4: whatever happened, a running instance we stopped runs again, wherever it now is.
  const power = stoppedAt !== undefined && d.running ? await startAgain(c(), name, ctx.log) : undefined;
  down.release();
  if (failed) {
    throw new MoveFailedError(
      `move failed: ${(failed as Error).message}. The instance is at ${found.remote}:${project}/${name}${power ? `, ${power}` : ""}; the next run continues from there`,
      { remote: found.remote, project, instance: name },
      undefined,
      { cause: failed },
    );
  }
  return { downtimeMs: stoppedAt !== undefined ? Date.now() - stoppedAt : 0 };
}

/**
 * P4 after a failed move: start again an instance the move stopped. Returns how it ended, for
 * the error: a daemon that is down or frozen cannot start it, and the user must not read
 * "started again" then; the next run starts it (it converges the power state).
 */
async function startAgain(c: LxdClient, name: string, log: (s: string) => void): Promise<string> {
  try {
    await startInstance(c.withTimeout(60_000), name);
    return "started again";
  } catch (e) {
    log(`could not start ${name} again: ${(e as Error).message}`);
    return `stopped: it could not be started again (${(e as Error).message.split("\n")[0]}); the next run starts it`;
  }
}

function targetClient(ctx: MoveContext): LxdClient {
  const { estate, plan } = ctx;
  const c = estate.client(plan.to.remote, plan.to.project);
  return plan.to.member ? c.useTarget(plan.to.member) : c;
}

/** Remove the copy (if any) and unmark the source: the move is abandoned, the source is the instance. */
async function abandon(ctx: MoveContext, copyName: string, moveId: string): Promise<string> {
  const { estate, plan, found } = ctx;
  const notes: string[] = [];
  // Cleanup gives up sooner than a normal request, never later: with a shorter configured
  // deadline (LXD_PLACEMENT_REQUEST_TIMEOUT_MS), a frozen server holds the failed move that long.
  const cleanupMs = (c: LxdClient) => Math.min(20_000, c.defaultTimeoutMs);
  const tgt0 = estate.client(plan.to.remote, plan.to.project);
  const tgt = tgt0.withTimeout(cleanupMs(tgt0));
  let copyGone = true;
  try {
    const got = await getInstance(tgt, copyName);
    if (got && got.instance.config[MARKER_KEY] === ctx.id && got.instance.config[INCOMING_KEY] === moveId) {
      await deleteInstance(tgt, copyName);
      notes.push("the partial copy was removed");
    }
  } catch (e) {
    copyGone = false;
    notes.push(`the partial copy could not be removed yet (${(e as Error).message}); the next run removes it`);
  }
  // The source keeps its outgoing mark while a partial copy may be left: the mark is what makes
  // the next run's lookup (findCopies) search every remote and settle remove the copy (P5).
  // Cleared, the lookup stops at the unmarked source, and the leftover blocks every later move.
  if (copyGone) {
    const src0 = estate.client(found.remote, found.instance.project);
    const src = src0.withTimeout(cleanupMs(src0));
    await patchInstance(src, found.instance.name, { config: { [OUTGOING_KEY]: "" } }).catch(() => undefined);
  }
  return notes.join("; ");
}

function copyName(ctx: MoveContext): string {
  const { plan } = ctx;
  const sameNamespace = plan.from.remote === plan.to.remote && plan.from.project === plan.to.project;
  return sameNamespace && plan.to.name === plan.from.name ? `${plan.to.name.slice(0, 40)}-lxdp-${ctx.id.slice(0, 8)}` : plan.to.name;
}

/**
 * Delete the source of a live move once the copy is the instance. LXD resumes a live-migrated VM
 * at the source (for LXD that side of a migration is a copy) and refuses to delete a running
 * instance ("Instance is running"), so remove it as `lxc move` does (`lxc delete --force`):
 * `?force=1` where the server has `instance_force_delete` (LXD 6.7+), else a forced stop first.
 * The copy already runs at the target: this stop is no downtime.
 */
async function deleteLiveSource(c: LxdClient, name: string): Promise<void> {
  const cur = await getInstance(c, name);
  if (cur && isRunning(cur.instance)) {
    if (await c.hasExtension("instance_force_delete")) {
      const r = await c.call("DELETE", `/instances/${encodeURIComponent(name)}`, { query: { force: "1" }, noTarget: true });
      if (r.operation) await c.wait(r.operation, 120_000);
      return;
    }
    await setState(c, name, "stop", { force: true, timeout: -1 });
  }
  await deleteInstance(c, name);
}

/** Cold, stop-move-start and live moves through a copy: copy, commit, delete the source (R1, R5). */
async function copyThenDelete(ctx: MoveContext): Promise<{ downtimeMs: number; rounds?: number }> {
  const { plan, estate, desired: d, found } = ctx;
  if (plan.route.kind !== "copy") throw new Error("unreachable");
  const moveId = randomUUID();
  const src = estate.client(found.remote, found.instance.project);
  const tgt = targetClient(ctx);
  const name = copyName(ctx);
  const wasRunning = isRunning(found.instance);
  const live = plan.strategy === "live";
  let stoppedAt: number | undefined;
  let down = { release: () => undefined as void, waitedMs: 0 };
  try {
    await patchInstance(src, found.instance.name, { config: { [OUTGOING_KEY]: moveId } });
    if (wasRunning && !live) {
      down = await downtimeSlot(ctx);
      stoppedAt = Date.now();
      ctx.log(`stopping ${found.instance.name}`);
      await stopInstance(src, found.instance.name);
    }
    const now = (await getInstance(src, found.instance.name))?.instance ?? found.instance;
    ctx.log(`copying to ${at(plan.to)}`);
    await copy(plan.route.sameServer ? "local" : plan.route.mode, src, tgt, {
      source: now,
      name,
      config: { ...declaredConfig(now.config, d, ctx.id), [INCOMING_KEY]: moveId },
      devices: declaredDevices(d, now),
      profiles: d.profiles,
      live,
      refresh: false,
      timeoutMs: d.migration.timeoutSeconds * 1000,
    });
    // Commit point: the copy is complete; it becomes the instance.
    await patchInstance(tgt, name, { config: COMMITTED });
  } catch (e) {
    const notes = await abandon(ctx, name, moveId);
    const again = stoppedAt !== undefined ? await startAgain(src, found.instance.name, ctx.log) : undefined;
    down.release();
    const state = live && wasRunning ? "still running (R15)" : again ?? (wasRunning ? "running" : "stopped, as before");
    throw new MoveFailedError(
      `move failed: ${(e as Error).message}. Nothing was lost: the instance is still at ${at(plan.from)}, ${state}${notes ? `; ${notes}` : ""} (P5)`,
      { remote: found.remote, project: found.instance.project, instance: found.instance.name },
      live ? `Set migration.strategy to "stop-move-start" or "near-live" (with allowRestart: true) to move it with a restart` : undefined,
      { cause: e },
    );
  }
  try {
    await (live ? deleteLiveSource(src, found.instance.name) : deleteInstance(src, found.instance.name));
    if (name !== plan.to.name) await postInstance(tgt, name, { name: plan.to.name });
    // P4: a running instance runs again at the target (after a live move it already does).
    if (wasRunning && d.running) await startInstance(estate.client(plan.to.remote, plan.to.project), plan.to.name);
  } catch (e) {
    down.release();
    throw new MoveFailedError(
      `the instance was copied to ${at(plan.to)} and is the instance now, but finishing failed: ${(e as Error).message}. The next run finishes the move (P5)`,
      { remote: plan.to.remote, project: plan.to.project, instance: plan.to.name },
      undefined,
      { cause: e },
    );
  }
  const downtimeMs = stoppedAt !== undefined ? Date.now() - stoppedAt : 0;
  down.release();
  return { downtimeMs };
}

/**
 * Near-live (containers): pre-copy while the source serves, repeat the refresh while the delta
 * shrinks, then stop, copy only the final delta, commit, start the copy, delete the source.
 */
async function nearLive(ctx: MoveContext): Promise<{ downtimeMs: number; rounds: number }> {
  const { plan, estate, desired: d, found } = ctx;
  if (plan.route.kind !== "copy") throw new Error("unreachable");
  const moveId = randomUUID();
  const src = estate.client(found.remote, found.instance.project);
  const tgt = targetClient(ctx);
  const name = copyName(ctx);
  // Between two members of a cluster, LXD's own copy (source type "copy") freezes a running
  // container for the whole transfer even with allow_inconsistent (LXD 5.0.2), which makes every
  // pre-copy downtime. A migration pulled from the source member's operation honours it: the
  // container keeps running. Inside one server (a project move) only LXD's copy exists.
  const betweenMembers = plan.route.sameServer && !!plan.to.member && !!found.instance.location && found.instance.location !== "none" && found.instance.location !== plan.to.member;
  const mode = !plan.route.sameServer ? plan.route.mode : betweenMembers ? "pull" : "local";
  const timeoutMs = d.migration.timeoutSeconds * 1000;
  let stoppedAt: number | undefined;
  let rounds = 0;
  let down = { release: () => undefined as void, waitedMs: 0 };
  try {
    await patchInstance(src, found.instance.name, { config: { [OUTGOING_KEY]: moveId } });
    const spec = (source: Instance, refresh: boolean) => ({
      source,
      name,
      config: { ...declaredConfig(source.config, d, ctx.id), [INCOMING_KEY]: moveId },
      devices: declaredDevices(d, source),
      profiles: d.profiles,
      live: false,
      refresh,
      // Pre-copies of the running container must not freeze it (that would be downtime); the
      // final copy of the stopped source is consistent and carries every change.
      allowInconsistent: isRunning(source),
      timeoutMs,
    });
    let last = Infinity;
    for (let i = 0; i <= d.migration.preCopyRounds; i++) {
      const t = Date.now();
      const cur = (await getInstance(src, found.instance.name))?.instance ?? found.instance;
      ctx.log(i === 0 ? `pre-copy to ${at(plan.to)} while ${found.instance.name} keeps running` : `pre-copy round ${i + 1} (delta only)`);
      // LXD's own copy inside a server freezes a running container for the whole transfer
      // (5.0.2, allow_inconsistent or not): such a pre-copy round is time the container does not
      // serve, so it holds a downtime slot of the group too. A migration with allow_inconsistent
      // does not freeze it: no slot, so the pre-copies of a group run side by side.
      const frozen = mode === "local" && isRunning(cur) ? await downtimeSlot(ctx) : { release: () => undefined as void, waitedMs: 0 };
      try {
        await copy(mode, src, tgt, spec(cur, i > 0));
      } finally {
        frozen.release();
      }
      rounds++;
      const took = Date.now() - t - frozen.waitedMs;
      // Adaptive: stop repeating once a round is short or no longer shrinking.
      if (i > 0 && (took < 2_000 || took >= last * 0.8)) break;
      last = took;
    }
    down = await downtimeSlot(ctx);
    stoppedAt = Date.now();
    ctx.log(`cutover: stopping ${found.instance.name} for the final delta`);
    await stopInstance(src, found.instance.name, 10);
    const stopped = (await getInstance(src, found.instance.name))?.instance ?? found.instance;
    await copy(mode, src, tgt, spec(stopped, true));
    await patchInstance(tgt, name, { config: COMMITTED });
  } catch (e) {
    const notes = await abandon(ctx, name, moveId);
    const again = stoppedAt !== undefined ? await startAgain(src, found.instance.name, ctx.log) : undefined;
    down.release();
    throw new MoveFailedError(
      `near-live move failed: ${(e as Error).message}. Nothing was lost: the instance is still at ${at(plan.from)}, ${again ?? "running"}${notes ? `; ${notes}` : ""} (P5)`,
      { remote: found.remote, project: found.instance.project, instance: found.instance.name },
      undefined,
      { cause: e },
    );
  }
  try {
    if (name !== plan.to.name) {
      // Same namespace (cluster member move): the source must go before the copy takes its name.
      await deleteInstance(src, found.instance.name);
      await postInstance(tgt, name, { name: plan.to.name });
      await startInstance(estate.client(plan.to.remote, plan.to.project), plan.to.name);
    } else {
      await startInstance(estate.client(plan.to.remote, plan.to.project), plan.to.name);
    }
  } catch (e) {
    down.release();
    throw new MoveFailedError(
      `near-live move committed to ${at(plan.to)} but finishing failed: ${(e as Error).message}. The next run finishes it (P5)`,
      { remote: plan.to.remote, project: plan.to.project, instance: plan.to.name },
      undefined,
      { cause: e },
    );
  }
  const downtimeMs = Date.now() - stoppedAt;
  down.release();
  if (name === plan.to.name) await deleteInstance(src, found.instance.name).catch((e) => ctx.log(`old copy not deleted yet (${(e as Error).message}); the next run deletes it`));
  return { downtimeMs, rounds };
}
