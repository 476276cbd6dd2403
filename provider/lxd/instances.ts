/** Instances API: read, create, state, rename, server-side moves, migration sources, delete. */
import { z } from "zod";
import type { LxdClient, Operation } from "./client";
import { isNotFound, PlacementError } from "./errors";

export const InstanceSchema = z
  .object({
    name: z.string(),
    type: z.string().default("container"),
    status: z.string(),
    status_code: z.number().optional(),
    location: z.string().default(""),
    project: z.string().default("default"),
    architecture: z.string().default(""),
    config: z.record(z.string(), z.string()).default({}),
    expanded_config: z.record(z.string(), z.string()).default({}),
    devices: z.record(z.string(), z.record(z.string(), z.string())).default({}),
    expanded_devices: z.record(z.string(), z.record(z.string(), z.string())).default({}),
    profiles: z.array(z.string()).default([]),
    ephemeral: z.boolean().default(false),
    stateful: z.boolean().default(false),
    description: z.string().default(""),
  })
  .passthrough();
export type Instance = z.infer<typeof InstanceSchema>;

export function isRunning(i: Pick<Instance, "status">): boolean {
  return i.status === "Running" || i.status === "Frozen";
}

/** The storage pool of the instance's root disk. */
export function rootPool(i: Pick<Instance, "expanded_devices" | "devices">): string | undefined {
  for (const devs of [i.devices, i.expanded_devices]) {
    for (const d of Object.values(devs)) if (d.type === "disk" && d.path === "/" && d.pool) return d.pool;
  }
  return undefined;
}

export function rootDeviceName(i: Pick<Instance, "expanded_devices">): string {
  for (const [n, d] of Object.entries(i.expanded_devices)) if (d.type === "disk" && d.path === "/") return n;
  return "root";
}

export async function getInstance(c: LxdClient, name: string): Promise<{ instance: Instance; etag?: string } | undefined> {
  try {
    const r = await c.call("GET", `/instances/${encodeURIComponent(name)}`, {}, InstanceSchema);
    return { instance: r.value, etag: r.etag };
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** One request per (remote, project): every instance with its config, location and status. */
export async function listInstances(c: LxdClient, opts: { allProjects?: boolean } = {}): Promise<Instance[]> {
  const r = await c.call("GET", "/instances", { query: { recursion: "1", "all-projects": opts.allProjects ? "true" : undefined } }, z.array(InstanceSchema));
  return r.value;
}

export interface InstanceBody {
  name: string;
  type?: string;
  architecture?: string;
  config?: Record<string, string>;
  devices?: Record<string, Record<string, string>>;
  profiles?: string[];
  ephemeral?: boolean;
  description?: string;
  source: Record<string, unknown>;
}

/** POST /1.0/instances (scope's project and target apply). Returns the operation, not waited. */
export async function createInstance(c: LxdClient, body: InstanceBody): Promise<Operation> {
  const r = await c.call("POST", "/instances", { body });
  if (!r.operation) throw new PlacementError("create did not return an operation", c.ctx({ instance: body.name }));
  return r.operation;
}

export async function setState(
  c: LxdClient,
  name: string,
  action: "start" | "stop" | "restart" | "freeze" | "unfreeze",
  opts: { force?: boolean; timeout?: number; stateful?: boolean; waitMs?: number } = {},
): Promise<void> {
  const r = await c.call("PUT", `/instances/${encodeURIComponent(name)}/state`, {
    body: { action, timeout: opts.timeout ?? 30, force: opts.force ?? false, stateful: opts.stateful ?? false },
  });
  if (r.operation) await c.wait(r.operation, opts.waitMs ?? 120_000);
}

/**
 * Thaw a container stuck "Freezing": a daemon that died while LXD froze the container for a copy
 * leaves it so when it comes back (seen on 5.0.2), and then it takes neither start ("already
 * running") nor stop. LXD unfreezes only a Frozen container, so the freeze is finished first.
 */
export async function thawStuck(c: LxdClient, name: string, status: string): Promise<boolean> {
  if (status !== "Freezing") return false;
  await setState(c, name, "freeze");
  await setState(c, name, "unfreeze");
  return true;
}

/** Stop, tolerating an instance that is already stopped. Falls back to force after the grace period. */
export async function stopInstance(c: LxdClient, name: string, graceSeconds = 20): Promise<void> {
  const cur = await getInstance(c, name);
  if (cur && (await thawStuck(c, name, cur.instance.status))) cur.instance.status = "Running";
  if (!cur || !isRunning(cur.instance)) return;
  try {
    await setState(c, name, "stop", { timeout: graceSeconds, waitMs: (graceSeconds + 30) * 1000 });
  } catch (e) {
    const again = await getInstance(c, name);
    if (again && isRunning(again.instance)) await setState(c, name, "stop", { force: true });
  }
}

/**
 * Start, tolerating an instance that is already running, also one that LXD itself started
 * between our look and our request (a cluster member move restarts it): start is safe to repeat.
 */
export async function startInstance(c: LxdClient, name: string): Promise<void> {
  const cur = await getInstance(c, name);
  if (cur && (await thawStuck(c, name, cur.instance.status))) return;
  if (cur && isRunning(cur.instance)) return;
  try {
    await setState(c, name, "start");
  } catch (e) {
    const again = await getInstance(c, name).catch(() => undefined);
    if (again && again.instance.status === "Running") return;
    throw e;
  }
}

/** DELETE; a missing instance counts as deleted (delete is safe to repeat). */
export async function deleteInstance(c: LxdClient, name: string): Promise<void> {
  try {
    const r = await c.call("DELETE", `/instances/${encodeURIComponent(name)}`);
    if (r.operation) await c.wait(r.operation, 120_000);
  } catch (e) {
    if (isNotFound(e)) return;
    throw e;
  }
}

/** Move to another storage pool of the same server (LXD's own move; needs instance_pool_move). */
export async function moveToPool(c: LxdClient, name: string, pool: string, opts: { live: boolean; waitMs?: number }): Promise<Operation> {
  await c.requireFeature("poolMove");
  return postInstance(c, name, { name, migration: true, pool, live: opts.live }, opts.waitMs);
}

/** Move to another project of the same server (LXD's own move; needs instance_project_move). */
export async function moveToProject(c: LxdClient, name: string, project: string, opts: { live: boolean; waitMs?: number }): Promise<Operation> {
  await c.requireFeature("projectMove");
  return postInstance(c, name, { name, migration: true, project, live: opts.live }, opts.waitMs);
}

/** POST /1.0/instances/{name}: rename or server-side move (scope's target = cluster member). */
export async function postInstance(c: LxdClient, name: string, body: Record<string, unknown>, waitMs = 600_000): Promise<Operation> {
  const r = await c.call("POST", `/instances/${encodeURIComponent(name)}`, { body });
  if (!r.operation) throw new PlacementError("instance POST did not return an operation", c.ctx({ instance: name }));
  return c.wait(r.operation, waitMs);
}

/** Start a migration source (pull and relay) or push to a target; returns the un-waited operation. */
export async function migrationSource(c: LxdClient, name: string, body: Record<string, unknown>): Promise<Operation> {
  // The source side of a migration is the instance wherever it is: never a member move.
  const r = await c.useTarget(undefined).call("POST", `/instances/${encodeURIComponent(name)}`, { body });
  if (!r.operation) throw new PlacementError("migration source did not return an operation", c.ctx({ instance: name }));
  return r.operation;
}

export async function patchInstance(c: LxdClient, name: string, body: Record<string, unknown>, etag?: string): Promise<void> {
  const r = await c.call("PATCH", `/instances/${encodeURIComponent(name)}`, { body, etag });
  if (r.operation) await c.wait(r.operation, 60_000);
}

export async function putInstance(c: LxdClient, name: string, body: Record<string, unknown>, etag?: string): Promise<void> {
  const r = await c.call("PUT", `/instances/${encodeURIComponent(name)}`, { body, etag });
  if (r.operation) await c.wait(r.operation, 60_000);
}
