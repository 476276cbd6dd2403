/**
 * The Instance dynamic provider: check, diff, create, read, update, delete. Placement changes
 * are updates (P1) whose plan comes from the pure planner (P2); prerequisites that fail are
 * refused at preview (P3); after any failure the next run finds the instance and converges (P5);
 * read reports where the instance really is (P6).
 */
import { randomUUID } from "node:crypto";
import { Estate } from "./estate";
import { ensurePower, factsOf, findCopies, locate, settle, type Found } from "./facts";
import { MARKER_KEY, parseInputs, type CheckFailure, type Desired, type InstanceInputs } from "./inputs";
import { applyDeclared, declaredConfig, declaredDevices, executeMove, type MoveRecord } from "./executor";
import { progress, type LxdClient } from "./lxd/client";
import { PlacementError, PlanRefusedError } from "./lxd/errors";
import { StackRemotesSchema, type StackRemotes } from "./lxd/remotes";
import { createInstance, deleteInstance, getInstance, isRunning, rootPool, startInstance, stopInstance, type Instance } from "./lxd/instances";
import { resolveImage } from "./lxd/resources";
import { acquire } from "./limiter";
import { describe, placementErrors, plan, resolveMember, type Placement, type Plan } from "./planner";

export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
const PROVIDER_KEY = "__provider";

/** Fields that are outputs only: never parsed as inputs. */
const OUTPUT_ONLY = ["instanceId", "location", "status", "lastMove", "moves", PROVIDER_KEY];
/** Changing these recreates the instance (the one true replace): everything else is an update. */
export const REPLACE_FIELDS = ["type", "image"] as const;
/** Placement (P1): a change moves the instance. */
export const PLACEMENT_FIELDS = ["remote", "target", "project", "storagePool", "name"] as const;

export interface InstanceOutputs extends Desired {
  instanceId: string;
  location: string;
  status: string;
  lastMove?: MoveRecord;
  moves: number;
}

let estateSingleton: Estate | undefined;
let stackRemotes: StackRemotes = {};
function estate(): Estate {
  // One estate per provider process: clients and capability caches are shared by all resources.
  if (!estateSingleton) estateSingleton = new Estate(process.env, stackRemotes);
  return estateSingleton;
}

/** configure: stack config `lxd-placement:remotes` (JSON; secret because it may hold the client key). */
export async function configure(req: { config: { get(key: string): string | undefined } }): Promise<void> {
  const raw = req.config.get("lxd-placement:remotes");
  if (!raw) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new PlacementError("stack config lxd-placement:remotes is not valid JSON", { field: "lxd-placement:remotes" });
  }
  const r = StackRemotesSchema.safeParse(parsed);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new PlacementError(`stack config lxd-placement:remotes: ${i.path.join(".")}: ${i.message}`, { field: "lxd-placement:remotes" });
  }
  stackRemotes = r.data;
  estateSingleton = undefined;
}

// Transfer progress from LXD's operations, printed while a move runs.
progress.sink = (remote, text) => process.stdout.write(`lxd-placement: progress on ${remote}: ${text}\n`);

export function log(name: string, text: string): void {
  // Dynamic providers have no engine log connection: stdout is shown as info (pulumi-notes.md).
  process.stdout.write(`lxd-placement: ${name}: ${text}\n`);
}

function hasUnknown(v: unknown): boolean {
  if (v === UNKNOWN) return true;
  if (Array.isArray(v)) return v.some(hasUnknown);
  if (v && typeof v === "object") return Object.values(v).some(hasUnknown);
  return false;
}

export function userInputs(raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw ?? {})) if (!OUTPUT_ONLY.includes(k) && v !== undefined && v !== null) out[k] = v;
  return out;
}

function resolveDesired(v: InstanceInputs, e: Estate): Desired {
  return { ...v, name: v.name!, remote: v.remote ?? e.remotes.defaultRemote };
}

/** check: parse inputs and validate what can be validated without changing anything. */
export async function check(olds: Record<string, unknown>, news: Record<string, unknown>): Promise<{ inputs: Record<string, unknown>; failures: CheckFailure[] }> {
  const raw = userInputs(news);
  const { value, failures } = parseInputs(raw);
  if (!value) return { inputs: news, failures };
  if (!value.name) return { inputs: news, failures: [{ property: "name", reason: "name is required" }] };
  if (hasUnknown(raw)) return { inputs: { ...raw }, failures: [] };
  const e = estate();
  let desired: Desired;
  try {
    desired = resolveDesired(value, e);
    e.remotes.get(desired.remote);
  } catch (err) {
    return { inputs: news, failures: [{ property: "remote", reason: (err as Error).message }] };
  }
  const more: CheckFailure[] = [];
  try {
    const caps = await e.capabilities(desired.remote);
    const bad = placementErrors(desired, caps) ?? resolveMember(desired, undefined, caps).error;
    if (bad && bad.kind === "refuse") more.push({ property: bad.field, reason: `${bad.reason}${bad.rule ? ` (${bad.rule})` : ""}` });
    // check() receives the old *inputs* (never outputs such as instanceId): a resource that
    // exists already has some; only a new one has none. An existing resource's own instance (or
    // a copy an interrupted move left) at the declared placement is not a name clash (P5).
    if (!olds || Object.keys(userInputs(olds)).length === 0) {
      // A new instance: its image must exist on the server it will be created on.
      const fp = await resolveImage(e.client(desired.remote, desired.project), desired.image);
      if (!fp) more.push({ property: "image", reason: `image "${desired.image}" not found on remote "${desired.remote}" (project "${desired.project}")` });
      // An unmanaged instance of that name is a clash unless adopted. A managed one (marker) may
      // be this very resource's, about to be replaced (check of a replacement has no olds, and the
      // old instance is deleted first): create() refuses it if it is really someone else's.
      const existing = await getInstance(e.client(desired.remote, desired.project), desired.name);
      if (existing && !existing.instance.config[MARKER_KEY] && !desired.adopt) {
        more.push({ property: "name", reason: `an instance named "${desired.name}" already exists on ${desired.remote}:${desired.project}; set adopt: true to take it over` });
      }
    }
  } catch (err) {
    more.push({ property: "remote", reason: `cannot validate against remote "${desired.remote}": ${(err as Error).message}` });
  }
  return { inputs: { ...(desired as unknown as Record<string, unknown>) }, failures: more };
}

function placementOf(o: Record<string, unknown>): Placement | undefined {
  if (!o || typeof o.remote !== "string" || typeof o.name !== "string") return undefined;
  return { remote: o.remote, project: (o.project as string) ?? "default", member: (o.location as string) ?? "", pool: (o.storagePool as string) ?? "", name: o.name };
}

function changedKeys(olds: Record<string, unknown>, news: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(userInputs(olds)), ...Object.keys(userInputs(news))]);
  return [...keys].filter((k) => JSON.stringify(sorted(olds[k])) !== JSON.stringify(sorted(news[k])));
}
function sorted(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sorted);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, sorted(x)]));
  return v;
}

/** Compute the move plan for an existing instance: locate it, read both servers' capabilities. */
export async function planFor(id: string, olds: Record<string, unknown>, desired: Desired, e: Estate, lg: (s: string) => void, opts: { settle: boolean }): Promise<{ plan: Plan; found?: Found }> {
  const copies = await findCopies(e, id, placementOf(olds));
  const found = opts.settle ? await settle(e, copies, lg) : copies.find((c) => !c.instance.config["user.lxd-placement.incoming"]) ?? copies[0];
  if (!found) return { plan: { kind: "refuse", field: "name", reason: `instance ${id} no longer exists anywhere; run "pulumi refresh" to drop it from the state` } };
  const [source, target] = await Promise.all([e.capabilities(found.remote), e.capabilities(desired.remote)]);
  if (desired.target?.startsWith("@")) target.load = await e.load(desired.remote);
  return { plan: plan({ facts: factsOf(found), desired, source, target }), found };
}

function refusal(p: Extract<Plan, { kind: "refuse" }>, name: string): PlanRefusedError {
  return new PlanRefusedError(`${p.field}: ${p.reason}`, { instance: name, field: p.field, rule: p.rule });
}

export async function diff(id: string, olds: Record<string, unknown>, news: Record<string, unknown>): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }> {
  const changed = changedKeys(olds, news);
  const replaces = changed.filter((k) => (REPLACE_FIELDS as readonly string[]).includes(k));
  if (replaces.length) return { changes: true, replaces, deleteBeforeReplace: true };
  if (!changed.length) return { changes: false, replaces: [], deleteBeforeReplace: false };
  if (changed.some((k) => (PLACEMENT_FIELDS as readonly string[]).includes(k) || k === "running") && !hasUnknown(news)) {
    const parsed = parseInputs(userInputs(news));
    if (parsed.value) {
      const e = estate();
      const desired = resolveDesired(parsed.value, e);
      const { plan: p } = await planFor(id, olds, desired, e, () => undefined, { settle: false });
      // P3: a refused plan fails the preview, before anything changes.
      if (p.kind === "refuse") throw refusal(p, desired.name);
      log(desired.name, `plan: ${describe(p)}`);
    }
  }
  return { changes: true, replaces: [], deleteBeforeReplace: false };
}

/** Drop undefined values: the engine's struct encoding rejects them ("Unexpected struct type"). */
function compact<T>(v: T): T {
  if (Array.isArray(v)) return v.map(compact) as T;
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, compact(x)])) as T;
  }
  return v;
}

function outputs(d: Desired, id: string, f: Found, prev?: Partial<InstanceOutputs>, move?: MoveRecord): InstanceOutputs {
  return compact({
    ...d,
    instanceId: id,
    location: f.instance.location && f.instance.location !== "none" ? f.instance.location : "",
    status: f.instance.status,
    ...(move ?? prev?.lastMove ? { lastMove: move ?? prev!.lastMove } : {}),
    moves: (prev?.moves ?? 0) + (move ? 1 : 0),
  });
}

async function refetch(e: Estate, f: Found): Promise<Found> {
  const got = await getInstance(e.client(f.remote, f.instance.project), f.instance.name);
  return got ? { remote: f.remote, instance: got.instance } : f;
}

export async function create(inputs: Record<string, unknown>): Promise<{ id: string; outs: InstanceOutputs }> {
  const parsed = parseInputs(userInputs(inputs));
  if (!parsed.value) throw new PlacementError(`invalid inputs: ${parsed.failures.map((f) => `${f.property}: ${f.reason}`).join("; ")}`);
  const e = estate();
  const d = resolveDesired(parsed.value, e);
  const id = randomUUID();
  const lg = (s: string) => log(d.name, s);
  const caps = await e.capabilities(d.remote);
  const bad = placementErrors(d, caps) ?? resolveMember(d, undefined, caps).error;
  if (bad && bad.kind === "refuse") throw refusal(bad, d.name);
  let c = e.client(d.remote, d.project);
  const fp = await resolveImage(c, d.image);
  if (!fp) throw new PlacementError(`image "${d.image}" not found`, c.ctx({ field: "image" }));
  if (d.target) {
    if (d.target.startsWith("@")) caps.load = await e.load(d.remote);
    c = c.useTarget(resolveMember(d, undefined, caps).member);
  }
  const existing = await getInstance(c, d.name);
  if (existing) return adoptInstance(e, d, existing.instance, c, lg);
  lg(`creating on ${d.remote}:${d.project}${d.target ? ` (target ${d.target})` : ""}`);
  try {
    const op = await createInstance(c, {
      name: d.name,
      type: d.type,
      config: declaredConfig({}, d, id),
      devices: declaredDevices(d),
      profiles: d.profiles,
      description: d.description,
      source: { type: "image", fingerprint: fp },
    });
    await c.wait(op, d.migration.timeoutSeconds * 1000);
    if (d.running) await startInstance(c, d.name);
  } catch (err) {
    // create is transactional: if it fails, the instance must not exist.
    const mine = await getInstance(c.withTimeout(20_000), d.name).catch(() => undefined);
    if (mine && mine.instance.config["user.lxd-placement.id"] === id) {
      await stopInstance(c.withTimeout(30_000), d.name, 0).catch(() => undefined);
      await deleteInstance(c.withTimeout(30_000), d.name).catch(() => undefined);
    }
    throw err;
  }
  const got = await getInstance(c, d.name);
  if (!got) throw new PlacementError("instance vanished right after creation", c.ctx({ instance: d.name }));
  return { id, outs: outputs(d, id, { remote: d.remote, instance: got.instance }) };
}

/**
 * An instance of this name already exists at the declared placement: take it over when `adopt`
 * is set (the way to bring existing instances under management: dynamic providers cannot
 * `pulumi import`), else fail before changing anything.
 */
async function adoptInstance(e: Estate, d: Desired, i: Instance, c: LxdClient, lg: (s: string) => void): Promise<{ id: string; outs: InstanceOutputs }> {
  const owner = i.config[MARKER_KEY];
  if (!d.adopt) {
    throw new PlacementError(
      `an instance named "${d.name}" already exists`,
      c.ctx({ instance: d.name, field: "name" }),
      owner ? "It is managed by another stack or resource" : `Set adopt: true to take it over, or choose another name`,
    );
  }
  if (owner) {
    throw new PlacementError(`instance "${d.name}" is already managed (ownership marker ${owner}); it cannot be adopted`, c.ctx({ instance: d.name, field: "adopt" }), "Remove it from the other stack first, or choose another name");
  }
  const id = randomUUID();
  lg(`adopting the existing instance ${d.remote}:${d.project}/${d.name}`);
  await applyDeclared(c, d.name, d, id);
  let f: Found = await refetch(e, { remote: d.remote, instance: i });
  await ensurePower(e, f, d.running);
  f = await refetch(e, f);
  return { id, outs: outputs(d, id, f) };
}

/** read (refresh): report where the instance really is (P6); gone everywhere = empty id. */
export async function read(id: string, props: Record<string, unknown>): Promise<{ id: string; props: Record<string, unknown> }> {
  const e = estate();
  // The engine reads many resources at once: those whose hint misses share each remote's list.
  const found = await locate(e, id, placementOf(props), (s) => log(String(props.name ?? id), s), { shared: true });
  if (!found) return { id: "", props: {} };
  const i = found.instance;
  const location = i.location && i.location !== "none" ? i.location : "";
  const target = props.target as string | undefined;
  const targetNow = target && !target.startsWith("@") && location && target !== location ? location : target;
  const pool = rootPool(i);
  return {
    id,
    props: compact({
      ...props,
      remote: found.remote,
      project: i.project,
      name: i.name,
      target: targetNow,
      storagePool: props.storagePool !== undefined ? pool : undefined,
      running: props.running === undefined ? isRunning(i) : isRunning(i) === props.running ? props.running : isRunning(i),
      location,
      status: i.status,
    }),
  };
}

export async function update(id: string, olds: Record<string, unknown>, news: Record<string, unknown>): Promise<{ outs: InstanceOutputs }> {
  const parsed = parseInputs(userInputs(news));
  if (!parsed.value) throw new PlacementError(`invalid inputs: ${parsed.failures.map((f) => `${f.property}: ${f.reason}`).join("; ")}`);
  const e = estate();
  const d = resolveDesired(parsed.value, e);
  const lg = (s: string) => log(d.name, s);
  const { plan: p, found } = await planFor(id, olds, d, e, lg, { settle: true });
  if (p.kind === "refuse") throw refusal(p, d.name);
  let f = found!;
  let move: MoveRecord | undefined;
  if (p.kind === "move") {
    lg(`plan: ${describe(p)}`);
    const release = await acquire([p.from.remote, p.to.remote]);
    try {
      try {
        move = await executeMove({ estate: e, id, desired: d, plan: p, found: f, log: lg });
      } catch (err) {
        if (!p.fallback) throw err;
        // R15: LXD refused the live move and the instance is intact at the source; say so and
        // move it with a restart instead (strategy "auto" only).
        const why = (err as Error).message.split(". Nothing was lost")[0].replace(/\s+/g, " ").slice(0, 300);
        lg(`live migration failed (${why}); falling back to ${p.fallback.strategy} (R15)`);
        e.forget();
        const back = await locate(e, id, p.from, lg);
        if (!back) throw err;
        move = await executeMove({ estate: e, id, desired: d, plan: p.fallback, found: back, log: lg });
        move.fallbackFrom = "live";
      }
    } finally {
      release();
    }
    e.forget();
    const now = await locate(e, id, p.to, lg);
    if (!now) throw new PlacementError("the instance cannot be found after its move", { instance: d.name });
    f = now;
  }
  const c = e.client(f.remote, f.instance.project);
  if (await applyDeclared(c, f.instance.name, d, id)) lg("settings updated (R6)");
  f = await refetch(e, f);
  await ensurePower(e, f, d.running);
  f = await refetch(e, f);
  return { outs: outputs(d, id, f, olds as Partial<InstanceOutputs>, move) };
}

export async function remove(id: string, props: Record<string, unknown>): Promise<void> {
  const e = estate();
  const copies = await findCopies(e, id, placementOf(props));
  for (const f of copies) {
    const c = e.client(f.remote, f.instance.project);
    await stopInstance(c, f.instance.name, 0).catch(() => undefined);
    const again = await getInstance(c, f.instance.name);
    if (again && isRunning(again.instance)) await stopInstance(c, f.instance.name, 0);
    await deleteInstance(c, f.instance.name);
  }
}

export { ensurePower, startInstance };
