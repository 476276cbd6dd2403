/**
 * The Instance dynamic provider: check, diff, create, read, update, delete. Placement changes
 * are updates (P1) whose plan comes from the pure planner (P2); prerequisites that fail are
 * refused at preview (P3); after any failure the next run finds the instance and converges (P5);
 * read reports where the instance really is (P6).
 */
import { randomUUID } from "node:crypto";
import { Estate } from "./estate";
import { factsOf, foundOf, LEASE_TTL_MS, observe, settle } from "./facts";
import { parseInputs, type CheckFailure, type Desired, type InstanceInputs } from "./inputs";
import { applyDeclared, declaredConfig, declaredDevices, executeMove, type MoveRecord } from "./executor";
import { progress, type ClientOptions, type LxdClient } from "./lxd/client";
import { MoveFailedError, PlacementError, PlanRefusedError } from "./lxd/errors";
import { parseStackRemotes, STACK_REMOTES_KEY, type StackRemotes } from "./lxd/remotes";
import { createInstance, deleteInstance, getInstance, isRunning, rootPool, startInstance, stopInstance, type Instance } from "./lxd/instances";
import { resolveImage } from "./lxd/resources";
import { LxdIo } from "./lxd-io";
import { acquire } from "./limiter";
import { MARKER_KEY, type Place } from "./marks";
import { sameJson } from "./same";
import { placementErrors, plan, planText, resolveMember, type Plan } from "./planner";
import { authority, describeCopy, explain, where, type Blocked, type Copy } from "./protocol";

export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
const PROVIDER_KEY = "__provider";
/**
 * Set by check() on the checked inputs when the declared placement changed since the last run:
 * the placement declared before. Policies see checked inputs at preview (they see no old state),
 * so this is how a policy pack counts the moves of an update (policy/). Never a user input, never
 * an output, ignored by diff.
 */
export const MOVING_FROM = "movingFrom";

/** Fields that are outputs only: never parsed as inputs. */
const OUTPUT_ONLY = ["instanceId", "location", "status", "lastMove", "moves", "leftovers", MOVING_FROM, PROVIDER_KEY];
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
  /** Set by refresh when an interrupted move left copies or marks behind; the next `up` settles them. */
  leftovers?: string[];
}

/**
 * For a program that runs this provider in its own process (`npm run bench`) instead of under the
 * Pulumi engine: where the provider's log lines go, and a listener told of every LXD request.
 */
export interface InProcessOptions {
  /** Each log line, without its newline (default: stdout, which the engine shows as info). */
  log?: (line: string) => void;
  /** Every request to any LXD server, as `LxdClient`'s `onRequest` tells it. */
  onRequest?: ClientOptions["onRequest"];
}
let host: InProcessOptions = {};
/** Set the in-process options; the clients opened from then on use them. */
export function inProcess(opts: InProcessOptions): void {
  host = opts;
  void estateSingleton?.close();
  estateSingleton = undefined;
}

let estateSingleton: Estate | undefined;
let ioSingleton: LxdIo | undefined;
let stackRemotes: StackRemotes = {};
function estate(): Estate {
  // One estate per provider process: clients and capability caches are shared by all resources.
  if (!estateSingleton) estateSingleton = new Estate(process.env, stackRemotes, { onRequest: host.onRequest });
  return estateSingleton;
}
function io(): LxdIo {
  const e = estate();
  if (ioSingleton?.estate !== e) ioSingleton = new LxdIo(e);
  return ioSingleton;
}

/** How long a run waits for the lease of another that may have died (on another machine). */
const LEASE_WAIT_MS = LEASE_TTL_MS + 5_000;

/** configure: stack config `lxd-placement:remotes` (JSON; secret because it may hold the client key). */
export async function configure(req: { config: { get(key: string): string | undefined } }): Promise<void> {
  stackRemotes = parseStackRemotes(req.config.get(STACK_REMOTES_KEY));
  estateSingleton = undefined;
}

function emit(line: string): void {
  // A dynamic provider has no connection to the engine's log: what it writes to stdout the engine shows as info.
  if (host.log) host.log(line);
  else process.stdout.write(`${line}\n`);
}

// Transfer progress from LXD's operations, printed while a move runs.
progress.sink = (remote, text) => emit(`lxd-placement: progress on ${remote}: ${text}`);

export function log(name: string, text: string): void {
  emit(`lxd-placement: ${name}: ${text}`);
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
  const from = movedFrom(userInputs(olds), desired);
  return { inputs: { ...(desired as unknown as Record<string, unknown>), ...(from ? { [MOVING_FROM]: from } : {}) }, failures: more };
}

/** The placement `olds` declared, when it differs from `d`'s (a move); undefined for a new resource. */
function movedFrom(olds: Record<string, unknown>, d: Desired): Record<string, string> | undefined {
  if (typeof olds.remote !== "string" || typeof olds.name !== "string") return undefined;
  const was: Record<string, string> = {};
  for (const k of PLACEMENT_FIELDS) if (typeof olds[k] === "string") was[k] = olds[k] as string;
  const now = d as unknown as Record<string, unknown>;
  const same = PLACEMENT_FIELDS.every((k) => (was[k] ?? (k === "project" ? "default" : "")) === ((now[k] as string | undefined) ?? (k === "project" ? "default" : "")));
  return same ? undefined : was;
}

function placementOf(o: Record<string, unknown>): Place | undefined {
  if (!o || typeof o.remote !== "string" || typeof o.name !== "string") return undefined;
  return { remote: o.remote, project: (o.project as string) ?? "default", name: o.name };
}

/** A blocked decision as the error the user sees. */
function blockedError(b: Blocked, id: string, name: string): PlacementError {
  const e = explain(b, id);
  return new PlacementError(e.message, { instance: name }, e.remedy);
}

function changedKeys(olds: Record<string, unknown>, news: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(userInputs(olds)), ...Object.keys(userInputs(news))]);
  return [...keys].filter((k) => !sameJson(olds[k], news[k]));
}

/**
 * Where the instance is, for planning. Preview (`settle: false`) only reads: it reports the
 * instance where it is now and changes nothing, leftovers and all. `up` (`settle: true`) first
 * settles what an interrupted move left (P5), waiting out the lease of a run that died.
 */
export async function locateFor(id: string, olds: Record<string, unknown>, name: string, lg: (s: string) => void, opts: { settle: boolean }): Promise<Copy | undefined> {
  const x = io();
  const recorded = placementOf(olds);
  if (!opts.settle) {
    const a = authority(await observe(x, { id, recorded }));
    if (a.blocked) throw blockedError(a.blocked, id, name);
    return a.instance;
  }
  const s = await settle(x, { id, recorded, log: lg, leaseWaitMs: LEASE_WAIT_MS });
  if (s.decision.kind === "blocked") throw blockedError(s.decision.blocked, id, name);
  if (s.decision.kind === "gone") return undefined;
  return s.decision.instance;
}

/** Compute the move plan for an existing instance: locate it, read both servers' capabilities. */
export async function planFor(id: string, olds: Record<string, unknown>, desired: Desired, e: Estate, lg: (s: string) => void, opts: { settle: boolean }): Promise<{ plan: Plan; found?: Copy }> {
  const found = await locateFor(id, olds, desired.name, lg, opts);
  if (!found) return { plan: { kind: "refuse", field: "name", reason: `instance ${id} no longer exists anywhere; run "pulumi refresh" to drop it from the state` } };
  const [source, target] = await Promise.all([e.capabilities(found.place.remote), e.capabilities(desired.remote)]);
  if (desired.target?.startsWith("@")) target.load = await e.load(desired.remote);
  const p = plan({ facts: factsOf(foundOf(found)), desired, source, target });
  return { plan: p.kind === "move" ? ((await preflight(e, p, desired, id)) ?? p) : p, found };
}

/**
 * What the target must offer before anything stops (P3): the declared profiles exist in its
 * project, and its name is free (or taken by this very instance). Reads only.
 */
async function preflight(e: Estate, p: Extract<Plan, { kind: "move" }>, d: Desired, id: string): Promise<Plan | undefined> {
  const c = e.client(p.to.remote, p.to.project);
  const sameName = p.to.remote === p.from.remote && p.to.project === p.from.project && p.to.name === p.from.name;
  const [profiles, taken] = await Promise.all([d.profiles.length ? e.profiles(p.to.remote, p.to.project) : Promise.resolve([]), sameName ? Promise.resolve(undefined) : getInstance(c, p.to.name)]);
  const missing = d.profiles.filter((x) => !profiles.includes(x));
  if (missing.length) {
    return {
      kind: "refuse",
      field: "profiles",
      rule: "R6",
      reason: `profile${missing.length > 1 ? "s" : ""} ${missing.map((x) => `"${x}"`).join(", ")} do${missing.length > 1 ? "" : "es"} not exist in project "${p.to.project}" on "${p.to.remote}" (profiles: ${profiles.join(", ") || "none"})`,
    };
  }
  if (taken && taken.instance.config[MARKER_KEY] !== id) {
    return {
      kind: "refuse",
      field: "name",
      reason: `an instance named "${p.to.name}" already exists on ${p.to.remote}:${p.to.project}${taken.instance.config[MARKER_KEY] ? " (managed by another resource or stack)" : ""}; choose another name or remove it`,
    };
  }
  return undefined;
}

function refusal(p: Extract<Plan, { kind: "refuse" }>, name: string): PlacementError {
  return new PlanRefusedError(`${p.field}: ${p.reason}`, { instance: name, field: p.field, rule: p.rule });
}

export async function diff(id: string, olds: Record<string, unknown>, news: Record<string, unknown>): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }> {
  const changed = changedKeys(olds, news);
  const replaces = changed.filter((k) => (REPLACE_FIELDS as readonly string[]).includes(k));
  if (replaces.length) return { changes: true, replaces, deleteBeforeReplace: true };
  const leftovers = Array.isArray(olds.leftovers) ? (olds.leftovers as string[]) : [];
  if (!changed.length && leftovers.length) {
    // Refresh found what an interrupted move left: an update settles it (P5); preview changes nothing.
    log(String(news.name ?? olds.name ?? id), `plan: settle what an interrupted move left (${leftovers.join(", ")})`);
    return { changes: true, replaces: [], deleteBeforeReplace: false };
  }
  if (!changed.length) return { changes: false, replaces: [], deleteBeforeReplace: false };
  if (changed.some((k) => (PLACEMENT_FIELDS as readonly string[]).includes(k) || k === "running") && !hasUnknown(news)) {
    const parsed = parseInputs(userInputs(news));
    if (parsed.value) {
      const e = estate();
      const desired = resolveDesired(parsed.value, e);
      const { plan: p } = await planFor(id, olds, desired, e, () => undefined, { settle: false });
      // P3: a refused plan fails the preview, before anything changes.
      if (p.kind === "refuse") throw refusal(p, desired.name);
      log(desired.name, `plan: ${planText(p)}`);
    }
  }
  return { changes: true, replaces: [], deleteBeforeReplace: false };
}

/** Drop undefined values: the engine's struct encoding rejects them ("Unexpected struct type"). */
function compact<T>(v: T): T {
  if (Array.isArray(v)) return v.map(compact) as T;
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== undefined)
        .map(([k, x]) => [k, compact(x)]),
    ) as T;
  }
  return v;
}

function outputs(d: Desired, id: string, i: Instance, prev?: Partial<InstanceOutputs>, move?: MoveRecord): InstanceOutputs {
  return compact({
    ...d,
    instanceId: id,
    location: i.location && i.location !== "none" ? i.location : "",
    status: i.status,
    ...((move ?? prev?.lastMove) ? { lastMove: move ?? prev!.lastMove } : {}),
    moves: (prev?.moves ?? 0) + (move ? 1 : 0),
  });
}

async function refetch(e: Estate, p: Place): Promise<Instance> {
  const got = await getInstance(e.client(p.remote, p.project), p.name);
  if (!got) throw new PlacementError("the instance vanished", { remote: p.remote, project: p.project, instance: p.name });
  return got.instance;
}

/** Start or stop the instance as declared (both are safe to repeat); whether anything was sent. */
async function ensurePower(e: Estate, p: Place, i: Instance, running: boolean): Promise<boolean> {
  const c = e.client(p.remote, p.project);
  if (running && !isRunning(i)) await startInstance(c, p.name);
  else if (!running && isRunning(i)) await stopInstance(c, p.name);
  else return false;
  return true;
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
    if (mine && mine.instance.config[MARKER_KEY] === id) {
      await stopInstance(c.withTimeout(30_000), d.name, 0).catch(() => undefined);
      await deleteInstance(c.withTimeout(30_000), d.name).catch(() => undefined);
    }
    throw err;
  }
  const got = await getInstance(c, d.name);
  if (!got) throw new PlacementError("instance vanished right after creation", c.ctx({ instance: d.name }));
  return { id, outs: outputs(d, id, got.instance) };
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
    throw new PlacementError(
      `instance "${d.name}" is already managed (ownership marker ${owner}); it cannot be adopted`,
      c.ctx({ instance: d.name, field: "adopt" }),
      "Remove it from the other stack first, or choose another name",
    );
  }
  const id = randomUUID();
  lg(`adopting the existing instance ${d.remote}:${d.project}/${d.name}`);
  await applyDeclared(c, d.name, d, id);
  const at: Place = { remote: d.remote, project: d.project, name: d.name };
  await ensurePower(e, at, await refetch(e, at), d.running);
  return { id, outs: outputs(d, id, await refetch(e, at)) };
}

/**
 * read (refresh): report where the instance really is (P6); gone everywhere = empty id. Reads
 * only: what an interrupted move left is reported (log and `leftovers`) and settled by `up`.
 */
export async function read(id: string, props: Record<string, unknown>): Promise<{ id: string; props: Record<string, unknown> }> {
  const name = String(props.name ?? id);
  // The engine reads many resources at once: those whose recorded copy misses share each remote's list.
  const a = authority(await observe(io(), { id, recorded: placementOf(props), shared: true }));
  if (a.blocked) throw blockedError(a.blocked, id, name);
  if (!a.instance) return { id: "", props: {} };
  const found = a.instance;
  if (a.leftovers.length || found.outgoing || found.move || found.lease) {
    log(
      name,
      `an interrupted move left ${[...a.leftovers.map(describeCopy), ...(found.outgoing || found.move ? [`marks on ${where(found)}`] : [])].join(", ") || "a lease"}; refresh changes nothing: the next "pulumi up" settles it (P5)`,
    );
  }
  const leftovers = [...a.leftovers.map(describeCopy), ...(found.outgoing || found.move || found.lease ? [`marks on ${describeCopy(found)}`] : [])];
  const i = foundOf(found).instance;
  const location = found.member;
  const target = props.target as string | undefined;
  const targetNow = target && !target.startsWith("@") && location && target !== location ? location : target;
  const pool = rootPool(i);
  return {
    id,
    props: compact({
      ...props,
      remote: found.place.remote,
      project: found.place.project,
      name: found.place.name,
      target: targetNow,
      storagePool: props.storagePool !== undefined ? pool : undefined,
      running: props.running === undefined ? isRunning(i) : isRunning(i) === props.running ? props.running : isRunning(i),
      location,
      status: i.status,
      leftovers: leftovers.length ? leftovers : undefined,
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
  let at: Place = found!.place;
  let move: MoveRecord | undefined;
  if (p.kind === "move") {
    lg(`plan: ${planText(p)}`);
    const release = await acquire([p.from.remote, p.to.remote], Date.now() + d.migration.timeoutSeconds * 1000);
    try {
      try {
        move = await executeMove({ io: io(), id, desired: d, plan: p, found: found!, log: lg });
      } catch (err) {
        // R15: LXD refused the live move and the instance is intact at the source (the executor
        // read it back there); say so and move it with a restart instead (strategy "auto" only).
        if (!p.fallback || !(err instanceof MoveFailedError) || err.outcome !== "rolled-back") throw err;
        const why = ((err.cause as Error | undefined)?.message ?? err.message).replace(/\s+/g, " ").slice(0, 300);
        lg(`live migration failed (${why}); falling back to ${p.fallback.strategy} (R15)`);
        e.forget();
        const back = await locateFor(id, { remote: p.from.remote, project: p.from.project, name: p.from.name }, d.name, lg, { settle: true });
        if (!back) throw err;
        move = await executeMove({ io: io(), id, desired: d, plan: p.fallback, found: back, log: lg });
        move.fallbackFrom = "live";
      }
    } finally {
      release();
    }
    e.forget();
    at = { remote: p.to.remote, project: p.to.project, name: p.to.name };
  }
  const c = e.client(at.remote, at.project);
  // A move the server made itself applied the declared settings before its restart (serverSide).
  const applied = p.kind === "move" && p.route.kind === "server-side";
  if (!applied && (await applyDeclared(c, at.name, d, id))) lg("settings updated (R6)");
  const now = await refetch(e, at);
  const changed = await ensurePower(e, at, now, d.running);
  return { outs: outputs(d, id, changed ? await refetch(e, at) : now, olds as Partial<InstanceOutputs>, move) };
}

/**
 * delete (destroy): every copy the provider made goes, leftovers of an interrupted move included;
 * a copy made outside the provider stays, and is named. Fails closed like everything that deletes.
 */
export async function remove(id: string, props: Record<string, unknown>): Promise<void> {
  const name = String(props.name ?? id);
  const s = await settle(io(), { id, recorded: placementOf(props), goal: { absent: true }, log: (t) => log(name, t), leaseWaitMs: LEASE_WAIT_MS });
  if (s.decision.kind === "blocked") throw blockedError(s.decision.blocked, id, name);
  if (s.decision.kind === "gone" && s.decision.left.length) {
    log(name, `left alone, not made by the provider: ${s.decision.left.map(describeCopy).join(", ")} (it still carries the ownership marker ${MARKER_KEY})`);
  }
}

export { startInstance };
