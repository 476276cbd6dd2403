/**
 * The placement rules of the policy pack, as pure functions of what a policy sees: each
 * Instance's checked inputs (`props`: the declared placement, type, config, devices, migration,
 * and `movingFrom` when the declared placement changed in this update). Each returns the
 * violations as sentences that name the instance, the field and, where one applies, the rule ID
 * of docs/rules.md. index.ts wires them into the pack.
 */

/** The resource types an Instance has: as a dynamic resource, and as the native provider's. */
export const INSTANCE_TYPES = ["pulumi-nodejs:dynamic/lxd-placement:Instance", "lxd-placement:index:Instance"];

/** What a rule reads of an Instance's inputs. */
export interface InstanceProps {
  name?: string;
  type?: string;
  remote?: string;
  target?: string;
  project?: string;
  storagePool?: string;
  running?: boolean;
  config?: Record<string, unknown>;
  devices?: Record<string, Record<string, unknown>>;
  migration?: { strategy?: string; allowRestart?: boolean; group?: string };
  movingFrom?: Record<string, string>;
}

/** An Instance as a stack policy sees it. */
export interface Seen {
  /** The Pulumi resource name (for messages when the LXD name is unknown). */
  resource: string;
  props: InstanceProps;
}

const nameOf = (s: Seen) => `instance "${s.props.name ?? s.resource}"`;
const at = (p: InstanceProps) => `${p.remote ?? "(default remote)"}${p.target ? ` member ${p.target}` : ""}`;

/** Bytes of an LXD size ("4GiB", "512MB", "1073741824"); undefined if it is not one. */
export function bytes(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]i?B|B)?\s*$/i.exec(v);
  if (!m) return undefined;
  const unit = (m[2] ?? "B").toUpperCase();
  const pow = "BKMGTPE".indexOf(unit[0]);
  const base = unit.length === 3 ? 1024 : unit === "B" ? 1 : 1000;
  return Number(m[1]) * base ** pow;
}

/**
 * `vm-live-prerequisites` (R8, R9): a virtual machine that may only move live (strategy `live`,
 * or `auto` with `allowRestart: false`) needs `migration.stateful=true` (R8), and, where the root
 * disk device is declared, its `size.state` at least `limits.memory` (R9). The provider refuses
 * such a move at preview too, but only when the instance moves; the rule holds at every preview.
 */
export function vmLivePrerequisites(s: Seen): string[] {
  const p = s.props;
  if (p.type !== "virtual-machine") return [];
  const strategy = p.migration?.strategy ?? "auto";
  const liveOnly = strategy === "live" || (strategy === "auto" && p.migration?.allowRestart === false);
  if (!liveOnly) return [];
  const out: string[] = [];
  const why = strategy === "live" ? 'migration.strategy is "live"' : "migration.allowRestart is false";
  if (String(p.config?.["migration.stateful"] ?? "") !== "true") {
    out.push(`${nameOf(s)}: config["migration.stateful"] must be "true" for a virtual machine that moves live only (${why}) (R8)`);
  }
  const root = p.devices?.root;
  if (root) {
    const state = bytes(root["size.state"]);
    const memory = bytes(p.config?.["limits.memory"]);
    if (state === undefined) out.push(`${nameOf(s)}: devices.root needs "size.state" (at least limits.memory) for a virtual machine that moves live only (${why}) (R9)`);
    else if (memory !== undefined && state < memory)
      out.push(`${nameOf(s)}: devices.root "size.state" (${String(root["size.state"])}) is less than config["limits.memory"] (${String(p.config?.["limits.memory"])}) (R9)`);
  }
  return out;
}

/** Config of `allowed-placements`: absent or empty lists allow everything. */
export interface AllowedPlacements {
  remotes?: string[];
  members?: string[];
}

/** `allowed-placements`: the instance's remote and cluster member are among those allowed for the stack. */
export function allowedPlacements(s: Seen, cfg: AllowedPlacements): string[] {
  const p = s.props;
  const out: string[] = [];
  if (cfg.remotes?.length && p.remote !== undefined && !cfg.remotes.includes(p.remote)) {
    out.push(`${nameOf(s)}: remote "${p.remote}" is not allowed in this stack (allowed: ${cfg.remotes.join(", ")})`);
  }
  if (cfg.members?.length && p.target !== undefined && !cfg.members.includes(p.target)) {
    out.push(`${nameOf(s)}: target "${p.target}" is not allowed in this stack (allowed members: ${cfg.members.join(", ")})`);
  }
  return out;
}

/** Config of `no-draining-members`: members (or `@group`s) under maintenance. */
export interface Draining {
  members?: string[];
}

/** `no-draining-members`: no instance declared on a member that is draining. */
export function noDrainingMembers(s: Seen, cfg: Draining): string[] {
  const t = s.props.target;
  if (!t || !cfg.members?.includes(t)) return [];
  return [`${nameOf(s)}: target "${t}" is draining (no-draining-members: ${cfg.members.join(", ")}); place it elsewhere, e.g. through an InstanceGroup's policy.draining`];
}

/** Config of `group-anti-affinity`: the groups (`migration.group`, an InstanceGroup's name) whose instances never share a server. */
export interface AntiAffinity {
  groups?: string[];
}

/**
 * `group-anti-affinity`: in each listed group, no two instances on the same server (the same
 * remote and member; a standalone remote is one server). An instance placed on a cluster group
 * (`@name`) could land anywhere in it: it must name a member.
 */
export function groupAntiAffinity(all: Seen[], cfg: AntiAffinity): string[] {
  const out: string[] = [];
  for (const g of cfg.groups ?? []) {
    const by = new Map<string, Seen[]>();
    for (const s of all.filter((x) => x.props.migration?.group === g)) {
      if (s.props.target?.startsWith("@")) {
        out.push(`${nameOf(s)} of anti-affine group "${g}": target "${s.props.target}" is a cluster group; name a member`);
        continue;
      }
      const key = at(s.props);
      by.set(key, [...(by.get(key) ?? []), s]);
    }
    // Names sorted: the message must not depend on the order the engine registered them in.
    for (const [where, xs] of by)
      if (xs.length > 1)
        out.push(
          `group "${g}" is anti-affine, but ${xs
            .map(nameOf)
            .map((x) => x.replace("instance ", ""))
            .sort()
            .join(", ")} share ${where}`,
        );
  }
  return out;
}

/** Config of `max-moves-per-update`: absent means no limit. */
export interface MaxMoves {
  maximum?: number;
}

/** `max-moves-per-update`: at most `maximum` instances change placement in one update. */
export function maxMovesPerUpdate(all: Seen[], cfg: MaxMoves): string[] {
  if (cfg.maximum === undefined) return [];
  const moving = all.filter((s) => s.props.movingFrom).sort((x, y) => String(x.props.name ?? x.resource).localeCompare(String(y.props.name ?? y.resource)));
  if (moving.length <= cfg.maximum) return [];
  const list = moving.map((s) => `${s.props.name ?? s.resource} (${at(s.props.movingFrom as InstanceProps)} -> ${at(s.props)})`);
  return [`${moving.length} ${moving.length === 1 ? "instance moves" : "instances move"} in this update, at most ${cfg.maximum} may: ${list.join(", ")}; split the change into smaller updates`];
}
