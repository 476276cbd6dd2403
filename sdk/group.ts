/**
 * InstanceGroup: a set of instances and a placement policy, instead of one target per instance.
 *
 * ```ts
 * import { InstanceGroup } from "lxd-placement";
 * const web = new InstanceGroup("web", {
 *   remote: "cluster",
 *   defaults: { image: "busybox" },
 *   instances: { "web-1": {}, "web-2": {}, "web-3": {}, "db": { pin: "m1" } },
 *   policy: { draining: ["m3"], maxUnavailable: 1 },
 * });
 * export const plan = web.plan;
 * ```
 *
 * Each run (preview and up alike) the component reads where the instances are now and which
 * cluster members are online, computes the placement with provider/policy.ts (weighted
 * rendezvous hashing with bounded loads, sticky), logs the move plan as a table and declares one
 * {@link Instance} per entry with `target` (or `remote`) set to its place. Changing the policy
 * changes those inputs; `pulumi up` then moves the instances through the same planner and
 * executor as any Instance, with the group's limits (maxUnavailable, maxConcurrentMoves) enforced
 * by the provider process's limiter (`migration.group`). See docs/policies.md.
 */
import * as pulumi from "@pulumi/pulumi";
import type { Estate } from "../provider/estate";
import type { Desired } from "../provider/inputs";
import { InputError, PlacementError } from "../provider/lxd/errors";
import { INCOMING_KEY } from "../provider/marks";
import { formatPlan, place, type PolicyInput, type PolicyResult } from "../provider/policy";
import { Instance, type InstanceArgs, type MigrationArgs } from "./instance";

/** One instance of the group: Instance inputs without the placement, plus its policy options. */
export interface GroupInstanceArgs extends Omit<InstanceArgs, "remote" | "target" | "image"> {
  /** Image (default: `defaults.image`). */
  image?: pulumi.Input<string>;
  /** Place it here whatever the spread says: a member (`"m1"`), a cluster group (`"@fast-group"`), or a remote when spreading over remotes. */
  pin?: string;
  /** Keys of instances of this group it must never share a member (or remote) with. */
  antiAffinity?: string[];
  /** How much of a member's share it uses (positive integer, default 1). */
  weight?: number;
  /** Cluster member when spreading over remotes (passed through). */
  target?: pulumi.Input<string>;
}

/** How the group is placed and moved. */
export interface PlacementPolicyArgs {
  /**
   * Spread over these members of the `remote` cluster: names, `"@group"` for every member of a
   * cluster group, or name → weight. Default: every online member.
   */
  members?: string[] | Record<string, number>;
  /** Spread over these remotes instead of members (standalone servers, or clusters as a whole); or remote → weight. */
  remotes?: string[] | Record<string, number>;
  /** Members (or remotes) that must end up empty, e.g. before maintenance. `"@group"` drains a whole cluster group. */
  draining?: string[];
  /** Slack of the bounded loads: 0 (default) keeps each load within one instance of its weighted share; 0.25 allows 25% above and below. */
  tolerance?: number;
  /** At most this many instances of the group down at once during `pulumi up` (a move's downtime window holds one slot). */
  maxUnavailable?: number;
  /** At most this many moves of the group at once. */
  maxConcurrentMoves?: number;
  /** At most this many moves of the group touching one member (or remote) at once. */
  maxConcurrentMovesPerServer?: number;
}

export interface InstanceGroupArgs {
  /** The clustered remote whose members the group spreads over (default: the lxc default remote). Not used with `policy.remotes`. */
  remote?: string;
  /** The instances, by key. The LXD name is `namePrefix + key` unless the entry sets `name`. */
  instances: Record<string, GroupInstanceArgs>;
  /** Inputs every instance gets unless its entry says otherwise (image, config, migration...). */
  defaults?: Omit<GroupInstanceArgs, "pin" | "antiAffinity" | "weight" | "name">;
  /** Prefix of the LXD names (default ""). */
  namePrefix?: string;
  policy?: PlacementPolicyArgs;
  /** Name of the group for the provider's limiter (default: the component's name). */
  groupName?: string;
  /**
   * Where each instance (by key) is now, and the cluster groups: given, the component asks LXD
   * nothing (for tests and for programs that run without access to the servers). Default: read
   * from LXD at every run.
   */
  observed?: { current: Record<string, string | undefined>; groups?: Record<string, string[]>; running?: Record<string, boolean>; online?: string[] };
}

/** One row of the group's plan. */
export interface GroupPlanRow {
  /** Key of the instance in the group. */
  instance: string;
  /** LXD name. */
  name: string;
  /** Where it is now ("" if it does not exist yet). */
  from: string;
  /** Where it goes: a member, a remote, or "@group". */
  to: string;
  /** "move", "create" or "stay". */
  action: "move" | "create" | "stay";
  /** Batch of the move (1-based; 0 when it does not move). */
  batch: number;
  /** How the planner will move it (near-live, live, stop-move-start, cold), when known at preview. */
  strategy: string;
  why: string;
}

interface Observed {
  current: Record<string, string | undefined>;
  groups: Record<string, string[]>;
  running: Record<string, boolean>;
  /** Candidate names that can take instances (online members; reachable remotes). */
  online?: string[];
  /** Strategy per moving instance, from the provider's own planner. */
  strategies: Record<string, string>;
  /** The remote of member spreads. */
  remote?: string;
}

const isPlain = (v: unknown): v is string => typeof v === "string";

function weights(v: string[] | Record<string, number> | undefined): { name: string; weight: number }[] | undefined {
  if (!v) return undefined;
  return Array.isArray(v) ? v.map((name) => ({ name, weight: 1 })) : Object.entries(v).map(([name, weight]) => ({ name, weight }));
}

export class InstanceGroup extends pulumi.ComponentResource {
  /** The Instance resources, by key. */
  readonly instances: Record<string, Instance>;
  /** The move plan of this run: one row per instance. */
  readonly plan: pulumi.Output<GroupPlanRow[]>;
  /** The plan as the table logged at preview. */
  readonly planText: pulumi.Output<string>;
  /** Key → member (or remote, or "@group") the policy assigns. */
  readonly assignment: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: InstanceGroupArgs, opts?: pulumi.ComponentResourceOptions) {
    super("lxd-placement:index:InstanceGroup", name, {}, opts);
    const g = shapeOf(name, args);
    const out = pulumi.output(decision(g));
    this.assignment = out.apply(({ r }) => r.assignment);
    this.plan = out.apply(({ r, obs }) => rows(r, obs, g.names));
    this.planText = out.apply(async ({ r, obs, input }) => {
      const text = planTable(name, rows(r, obs, g.names), r, limitsOf(g.policy, input));
      await pulumi.log.info(text, this);
      return text;
    });
    this.instances = Object.fromEntries(g.keys.map((k) => [k, new Instance(`${name}-${k}`, memberArgs(g, k, out), { parent: this })]));
    this.registerOutputs({ plan: this.plan, planText: this.planText, assignment: this.assignment });
  }
}

/** A group's arguments, checked, with what every step needs. */
interface Shape {
  name: string;
  args: InstanceGroupArgs;
  policy: PlacementPolicyArgs;
  /** Instance keys, sorted. */
  keys: string[];
  /** Key → LXD instance name. */
  names: Record<string, string>;
  byRemote: boolean;
}

interface Decided {
  r: PolicyResult;
  obs: Observed;
  input: PolicyInput;
}

/** Checks what can be checked without LXD; throws InputError naming the field. */
function shapeOf(name: string, args: InstanceGroupArgs): Shape {
  const policy = args.policy ?? {};
  const keys = Object.keys(args.instances).sort();
  const byRemote = !!policy.remotes;
  const names: Record<string, string> = {};
  for (const k of keys) {
    const n = args.instances[k].name;
    if (n !== undefined && !isPlain(n))
      throw new InputError(`InstanceGroup ${name}: instances.${k}.name must be a plain string (the policy looks the instance up by name)`, { field: `instances.${k}.name` });
    names[k] = n ?? `${args.namePrefix ?? ""}${k}`;
  }
  if (byRemote && policy.members) throw new InputError(`InstanceGroup ${name}: policy.members and policy.remotes exclude each other`, { field: "policy.remotes" });
  for (const k of keys) {
    if ({ ...args.defaults, ...args.instances[k] }.image === undefined)
      throw new InputError(`InstanceGroup ${name}: instances.${k} has no image (set it, or defaults.image)`, { field: `instances.${k}.image` });
  }
  return { name, args, policy, keys, names, byRemote };
}

/**
 * Given what is observed, the decision is made at once and an impossible policy throws from the
 * constructor; otherwise it waits for LXD's answer and an impossible policy fails the program.
 */
function decision(g: Shape): Promise<Decided> {
  const { args } = g;
  if (args.observed) {
    const o = args.observed;
    return Promise.resolve(decide(g, { current: o.current, groups: o.groups ?? {}, running: o.running ?? {}, online: o.online, strategies: {}, remote: args.remote }));
  }
  const result = (async () => {
    const e = await programEstate();
    try {
      const d = decide(g, await observe(e, g.name, args, g.names, g.byRemote));
      d.obs.strategies = await strategies(e, g.name, args, g.names, d.r, d.obs, g.byRemote);
      return d;
    } finally {
      await e.close().catch(() => undefined);
    }
  })().catch((err: unknown) => {
    throw asProgramError(err);
  });
  // The outputs wait on this; keep an unobserved rejection from being reported twice.
  result.catch(() => undefined);
  return result;
}

/** The policy's decision from what was observed; throws when the policy cannot be met. */
function decide(g: Shape, obs: Observed): Decided {
  const { name, args, policy, keys } = g;
  let candidates = weights(g.byRemote ? policy.remotes : policy.members);
  if (!candidates) {
    if (!obs.online) throw new InputError(`InstanceGroup ${name}: policy.members is required when the group does not read the cluster (observed is given)`, { field: "policy.members" });
    candidates = obs.online.map((m) => ({ name: m, weight: 1 }));
  }
  // A member that is not online cannot take instances: it is treated as draining.
  const offline: string[] = [];
  if (obs.online) {
    const online = new Set(obs.online);
    const expand = (c: string) => (c.startsWith("@") ? (obs.groups[c.slice(1)] ?? []) : [c]);
    for (const c of candidates) for (const m of expand(c.name)) if (!online.has(m)) offline.push(m);
  }
  const input: PolicyInput = {
    instances: keys.map((k) => ({ name: k, pin: args.instances[k].pin, antiAffinity: args.instances[k].antiAffinity, weight: args.instances[k].weight })),
    candidates,
    draining: [...new Set([...(policy.draining ?? []), ...offline])],
    current: obs.current,
    groups: obs.groups,
    tolerance: policy.tolerance,
    maxUnavailable: policy.maxUnavailable,
    maxConcurrentMoves: policy.maxConcurrentMoves,
    maxConcurrentMovesPerServer: policy.maxConcurrentMovesPerServer,
    running: obs.running,
  };
  const r = place(input);
  if (offline.length) r.warnings.push(`not online, so treated as draining: ${offline.join(", ")}`);
  if (r.errors.length) {
    throw new InputError(
      `InstanceGroup ${name}: the placement policy cannot be met:\n  ${r.errors.join("\n  ")}\n${formatPlan(r, { title: `InstanceGroup ${name}`, names: g.names, current: obs.current })}`,
      { field: "policy" },
    );
  }
  return { r, obs, input };
}

/** The group's limits, as the plan's heading names them. */
function limitsOf(policy: PlacementPolicyArgs, input: PolicyInput): string[] {
  return [
    policy.maxUnavailable ? `maxUnavailable ${policy.maxUnavailable}` : "",
    policy.maxConcurrentMoves ? `maxConcurrentMoves ${policy.maxConcurrentMoves}` : "",
    policy.maxConcurrentMovesPerServer ? `maxConcurrentMovesPerServer ${policy.maxConcurrentMovesPerServer}` : "",
    input.draining?.length ? `draining ${input.draining.join(", ")}` : "",
  ].filter(Boolean);
}

/** The Instance of key k: its own arguments over the defaults, placed where the decision says, moved under the group's limits. */
function memberArgs(g: Shape, k: string, out: pulumi.Output<Decided>): InstanceArgs {
  const { policy, args } = g;
  const { pin: _pin, antiAffinity: _anti, weight: _weight, ...spec } = { ...args.defaults, ...args.instances[k] } as GroupInstanceArgs;
  const placed = out.apply(({ r }) => r.assignment[k]);
  const migration = pulumi.output((spec.migration ?? {}) as pulumi.Input<MigrationArgs>).apply((m) => ({
    ...m,
    group: args.groupName ?? g.name,
    ...(policy.maxUnavailable ? { maxUnavailable: policy.maxUnavailable } : {}),
    ...(policy.maxConcurrentMoves ? { maxConcurrentMoves: policy.maxConcurrentMoves } : {}),
    ...(policy.maxConcurrentMovesPerServer ? { maxConcurrentMovesPerServer: policy.maxConcurrentMovesPerServer } : {}),
  }));
  return {
    ...spec,
    image: spec.image!,
    name: g.names[k],
    remote: g.byRemote ? placed : (args.remote ?? out.apply(({ obs }) => obs.remote!)),
    target: g.byRemote ? spec.target : placed,
    migration,
  };
}

function rows(r: PolicyResult, obs: Observed, names: Record<string, string>): GroupPlanRow[] {
  const moves = new Map(r.moves.map((m) => [m.instance, m]));
  const creates = new Set(r.creates.map((c) => c.instance));
  return Object.keys(r.assignment)
    .sort()
    .map((k) => {
      const m = moves.get(k);
      const action = m ? "move" : creates.has(k) ? "create" : "stay";
      return {
        instance: k,
        name: names[k],
        from: obs.current[k] ?? "",
        to: r.assignment[k],
        action,
        batch: m?.batch ?? 0,
        strategy: m ? (obs.strategies[k] ?? "decided at update") : "",
        why: m?.why ?? (action === "create" ? "new" : ""),
      } as GroupPlanRow;
    })
    .sort((a, b) => (a.action === "move" ? 0 : a.action === "create" ? 1 : 2) - (b.action === "move" ? 0 : b.action === "create" ? 1 : 2) || a.batch - b.batch || (a.instance < b.instance ? -1 : 1));
}

function planTable(name: string, rs: GroupPlanRow[], r: PolicyResult, limits: string[]): string {
  const table = [["batch", "instance", "from", "to", "strategy", "why"]];
  for (const x of rs)
    table.push([x.action === "move" ? String(x.batch) : x.action === "create" ? "new" : "-", x.name, x.from || "-", x.to, x.strategy || (x.action === "stay" ? "stays" : "create"), x.why]);
  const width = table[0].map((_, k) => Math.max(...table.map((row) => row[k].length)));
  const body = table.map(
    (row) =>
      `  ${row
        .map((c, k) => (k === row.length - 1 ? c : c.padEnd(width[k])))
        .join("  ")
        .trimEnd()}`,
  );
  const moves = rs.filter((x) => x.action === "move").length;
  const loads = Object.entries(r.load)
    .map(([c, n]) => `${c} ${n}`)
    .join(", ");
  const head = `InstanceGroup ${name} plan: ${moves} move(s) in ${r.batches} batch(es), ${rs.filter((x) => x.action === "create").length} new, ${rs.filter((x) => x.action === "stay").length} staying${limits.length ? `; ${limits.join(", ")}` : ""}`;
  return [head, ...body, `  load after: ${loads || "-"}`, ...r.warnings.map((w) => `  warning: ${w}`)].join("\n");
}

/** Read, from LXD, where each instance is, which members are online and the cluster groups. */
async function observe(e: Estate, name: string, args: InstanceGroupArgs, names: Record<string, string>, byRemote: boolean): Promise<Observed> {
  try {
    const current: Record<string, string | undefined> = {};
    const running: Record<string, boolean> = {};
    const byName = new Map(Object.entries(names).map(([k, n]) => [n, k]));
    const project = (k: string) => {
      const p = (args.instances[k].project ?? args.defaults?.project) as unknown;
      return isPlain(p) ? p : undefined;
    };
    const seen = (remote: string, list: Awaited<ReturnType<typeof e.instances>>, where: (i: (typeof list)[number]) => string) => {
      for (const i of list) {
        const k = byName.get(i.name);
        if (k === undefined || i.config[INCOMING_KEY]) continue;
        if ((project(k) ?? "default") !== i.project) continue;
        current[k] = where(i);
        running[k] = i.status === "Running";
      }
    };
    if (byRemote) {
      const policy = args.policy ?? {};
      const cands = (weights(policy.remotes) ?? []).map((c) => c.name);
      const look = [...new Set([...cands, ...(policy.draining ?? [])])];
      const online: string[] = [];
      await Promise.all(
        look.map(async (r) => {
          try {
            seen(r, await e.instances(r, { fresh: true }), () => r);
            online.push(r);
          } catch (err) {
            if (!(policy.draining ?? []).includes(r)) throw new PlacementError(`cannot read remote "${r}": ${(err as Error).message}`, {}, undefined, { cause: err });
            throw new PlacementError(`cannot read the draining remote "${r}", so its instances cannot be moved off it: ${(err as Error).message}`, {}, undefined, { cause: err });
          }
        }),
      );
      return { current, running, groups: {}, online, strategies: {} };
    }
    const remote = args.remote ?? e.remotes.defaultRemote;
    const caps = await e.capabilities(remote, { fresh: true });
    if (!caps.clustered) throw new InputError(`remote "${remote}" is not a cluster; spread over servers with policy.remotes`, { remote, field: "remote" });
    seen(remote, await e.instances(remote, { fresh: true }), (i) => i.location);
    const online = Object.entries(caps.members)
      .filter(([, s]) => s === "Online")
      .map(([m]) => m);
    return { current, running, groups: caps.groups, online, strategies: {}, remote };
  } catch (err) {
    // A wrong argument (a remote that is no cluster) is not a failed read: it keeps its class and field.
    if (err instanceof InputError) throw new InputError(`InstanceGroup ${name}: ${err.message}`, { field: err.context.field });
    throw new PlacementError(`InstanceGroup ${name}: cannot read where the instances are: ${(err as Error).message}`, {}, undefined, { cause: err });
  }
}

/** The strategy of each move, from the provider's own planner, so the preview table says how. */
async function strategies(e: Estate, name: string, args: InstanceGroupArgs, names: Record<string, string>, r: PolicyResult, obs: Observed, byRemote: boolean): Promise<Record<string, string>> {
  if (!r.moves.length) return {};
  const [{ plan }, { factsOf }, { InstanceInputsSchema }] = await Promise.all([import("../provider/planner"), import("../provider/facts"), import("../provider/inputs")]);
  const out: Record<string, string> = {};
  try {
    for (const m of r.moves) {
      const k = m.instance;
      const spec = { ...args.defaults, ...args.instances[k] } as GroupInstanceArgs;
      const fromRemote = byRemote ? m.from : obs.remote!;
      const toRemote = byRemote ? m.to : obs.remote!;
      const list = await e.instances(fromRemote);
      const inst = list.find((i) => i.name === names[k] && !i.config[INCOMING_KEY]);
      if (!inst) continue;
      const mig = (spec.migration ?? {}) as Record<string, unknown>;
      const plainMig = Object.fromEntries(
        ["strategy", "mode", "allowRestart", "timeoutSeconds", "preCopyRounds"].filter((x) => ["string", "boolean", "number"].includes(typeof mig[x])).map((x) => [x, mig[x]]),
      );
      const parsed = InstanceInputsSchema.safeParse({
        name: names[k],
        image: "-",
        type: inst.type === "virtual-machine" ? "virtual-machine" : "container",
        remote: toRemote,
        target: byRemote ? (isPlain(spec.target) ? spec.target : undefined) : m.to,
        project: inst.project,
        storagePool: isPlain(spec.storagePool) ? spec.storagePool : undefined,
        migration: plainMig,
      });
      if (!parsed.success) continue;
      const desired = { ...parsed.data, name: names[k], remote: toRemote } as Desired;
      const [source, target] = await Promise.all([e.capabilities(fromRemote), e.capabilities(toRemote)]);
      const p = plan({ facts: factsOf({ remote: fromRemote, instance: inst }), desired, source, target });
      out[k] = p.kind === "move" ? p.strategy : p.kind === "refuse" ? `refused: ${p.field}: ${p.reason}` : "none";
    }
  } catch (err) {
    // The table is still useful without strategies; the provider decides them at update.
    void pulumi.log.warn(`InstanceGroup ${name}: could not work out the move strategies for the plan: ${(err as Error).message}`);
  }
  return out;
}

/**
 * The group's failure as the user should read it, once. Every Instance of the group waits on the
 * same rejection, and the SDK prefixes the message of an error it meets while serializing an
 * input ("error serializing property …") in place, once per input, before its handler prints it
 * (once: it knows the error by identity). The message is pinned so it reads as written; a
 * PlacementError carries the brand that makes the handler print the message without a trace.
 */
function asProgramError(err: unknown): PlacementError {
  const e = PlacementError.is(err) ? err : new PlacementError(String((err as Error)?.message ?? err), {}, undefined, { cause: err });
  const text = e.message;
  Object.defineProperty(e, "message", {
    get: () => text,
    set: () => undefined,
    configurable: true,
  });
  return e;
}

/**
 * The remotes the provider sees: the lxc configuration and the stack config
 * `lxd-placement:remotes`, which the engine gives the program as it gives the provider.
 * Loaded here, not at the top: importing the SDK must not load the LXD client.
 */
async function programEstate(): Promise<Estate> {
  const [{ Estate }, { parseStackRemotes, STACK_REMOTES_KEY }] = await Promise.all([import("../provider/estate"), import("../provider/lxd/remotes")]);
  return new Estate(process.env, parseStackRemotes(pulumi.runtime.getConfig(STACK_REMOTES_KEY)));
}
