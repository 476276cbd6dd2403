/**
 * The pure planner (P2): (where the instance is and what it is, what both servers can do, what
 * the user declared) → a plan. No I/O here: preview shows exactly what `up` will do, and
 * test/unit/planner.test.ts proves each rule case by case.
 */
import { lacking, supports } from "./features";
import type { Desired } from "./inputs";

export interface Placement {
  remote: string;
  project: string;
  /** Cluster member the instance is on ("" on a standalone server). */
  member: string;
  pool: string;
  name: string;
}

export interface Facts extends Placement {
  type: "container" | "virtual-machine";
  running: boolean;
  /** Expanded config (profiles applied). */
  config: Record<string, string>;
  /** Expanded devices. */
  devices: Record<string, Record<string, string>>;
}

export interface Capabilities {
  remote: string;
  extensions: string[];
  clustered: boolean;
  /** Members and their status ("Online", ...), clusters only. */
  members: Record<string, string>;
  /** Cluster groups → members. */
  groups: Record<string, string[]>;
  /** Instances per member (for choosing within a group). */
  load?: Record<string, number>;
  projects: string[];
  pools: string[];
}

export type Strategy = "cold" | "live" | "near-live" | "stop-move-start";
export type Route =
  /** Steps run by the server itself: pool, project, member, rename (R4, R6). */
  | { kind: "server-side"; steps: ("pool" | "project" | "member" | "rename")[] }
  /** A copy at the target, then the source deleted (R1, R5). `sameServer` for near-live inside one server. */
  | { kind: "copy"; mode: "pull" | "push" | "relay"; sameServer: boolean };

export type Plan =
  | { kind: "noop" }
  | { kind: "refuse"; field: string; rule?: string; reason: string }
  | {
      kind: "move";
      from: Placement;
      to: Placement;
      route: Route;
      strategy: Strategy;
      why: string;
      restart: boolean;
      /** With `auto`: if LXD refuses the live move (R15: nothing lost), run this plan instead. */
      fallback?: Extract<Plan, { kind: "move" }>;
    };

export interface PlanInput {
  facts: Facts;
  desired: Desired;
  source: Capabilities;
  target: Capabilities;
}

const refuse = (field: string, reason: string, rule?: string): Plan => ({ kind: "refuse", field, reason, rule });

function hasNic(devices: Record<string, Record<string, string>>): boolean {
  return Object.values(devices).some((d) => d.type === "nic");
}

function bytes(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([KMGTP]i?B?|B)?$/i.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const u = (m[2] ?? "B").toUpperCase();
  const pow = { B: 0, K: 1, M: 2, G: 3, T: 4, P: 5 }[u[0] as "B"] ?? 0;
  const base = u.includes("I") || u.length === 1 ? 1024 : 1000;
  return n * base ** pow;
}

/** Why live migration cannot happen for this instance, each with its rule ID; empty = possible. */
export function liveBlockers(f: Facts, source: Capabilities, target: Capabilities): { rule: string; reason: string }[] {
  const out: { rule: string; reason: string }[] = [];
  if (f.type === "virtual-machine") {
    if (f.config["migration.stateful"] !== "true") out.push({ rule: "R8", reason: `VM live migration needs migration.stateful=true on the instance (set it while the VM is stopped)` });
    const root = Object.values(f.devices).find((d) => d.type === "disk" && d.path === "/");
    const state = bytes(root?.["size.state"]);
    const mem = bytes(f.config["limits.memory"] ?? "1GiB");
    if (state === undefined || mem === undefined || state < mem) {
      out.push({ rule: "R9", reason: `VM live migration needs the root disk's size.state (${root?.["size.state"] ?? "unset"}) >= limits.memory (${f.config["limits.memory"] ?? "1GiB"})` });
    }
    for (const c of [source, target]) {
      if (!supports(c.extensions, "vmLive")) out.push({ rule: "R10", reason: `${lacking(c.remote, "vmLive")} (LXD 5.0.2 and older)` });
    }
  } else {
    if (hasNic(f.devices)) out.push({ rule: "R12", reason: `container live migration (CRIU) is only reliable for very basic containers: this one has a network device` });
    for (const c of [source, target]) {
      if (!supports(c.extensions, "stateful")) out.push({ rule: "R11", reason: lacking(c.remote, "stateful") });
    }
  }
  return out;
}

export function nearLiveBlockers(f: Facts, source: Capabilities, target: Capabilities): { rule: string; reason: string }[] {
  const out: { rule: string; reason: string }[] = [];
  if (f.type !== "container") out.push({ rule: "R3", reason: "near-live is for containers" });
  for (const c of [source, target]) {
    if (!supports(c.extensions, "refresh")) out.push({ rule: "R5", reason: lacking(c.remote, "refresh") });
  }
  return out;
}

/** Resolve `target` ("m2" or "@group") to a member; undefined = leave it to the server / stay. */
export function resolveMember(desired: Desired, facts: Facts | undefined, target: Capabilities): { member?: string; error?: Plan } {
  const t = desired.target;
  if (!t) return {};
  if (!target.clustered) return { error: refuse("target", `remote "${desired.remote}" is a standalone server; "target" names a cluster member and needs a clustered remote`, "R4") };
  const online = (m: string) => target.members[m] === "Online";
  if (t.startsWith("@")) {
    const g = target.groups[t.slice(1)];
    if (!g) return { error: refuse("target", `cluster group "${t.slice(1)}" does not exist on "${desired.remote}" (groups: ${Object.keys(target.groups).join(", ") || "none"})`, "R4") };
    if (facts && facts.remote === desired.remote && g.includes(facts.member)) return { member: facts.member };
    const cands = g.filter(online).sort((a, b) => (target.load?.[a] ?? 0) - (target.load?.[b] ?? 0) || a.localeCompare(b));
    if (!cands.length) return { error: refuse("target", `no member of cluster group "${t.slice(1)}" is online`, "R4") };
    return { member: cands[0] };
  }
  if (!(t in target.members)) return { error: refuse("target", `"${t}" is not a member of cluster "${desired.remote}" (members: ${Object.keys(target.members).join(", ")})`, "R4") };
  if (!online(t) && !(facts && facts.member === t && facts.remote === desired.remote)) {
    return { error: refuse("target", `cluster member "${t}" is ${target.members[t]}, not Online`, "R4") };
  }
  return { member: t };
}

/** Checks that need only the target server (used by create as well as by moves). */
export function placementErrors(desired: Desired, target: Capabilities): Plan | undefined {
  if (!target.projects.includes(desired.project)) return refuse("project", `project "${desired.project}" does not exist on "${desired.remote}" (projects: ${target.projects.join(", ")})`, "R6");
  if (desired.storagePool && !target.pools.includes(desired.storagePool)) {
    return refuse("storagePool", `storage pool "${desired.storagePool}" does not exist on "${desired.remote}" (pools: ${target.pools.join(", ")})`, "R6");
  }
  return undefined;
}

type Step = "pool" | "project" | "member" | "rename";
type Move = Extract<Plan, { kind: "move" }>;

/** Where the instance goes and which server-side steps that takes; a refusal or "nothing to do" otherwise. */
function destination(input: PlanInput): { from: Placement; to: Placement; steps: Step[]; crossServer: boolean } | Plan {
  const { facts: f, desired: d, target } = input;
  const bad = placementErrors(d, target);
  if (bad) return bad;
  const rm = resolveMember(d, f, target);
  if (rm.error) return rm.error;
  const crossServer = f.remote !== d.remote;
  const to: Placement = {
    remote: d.remote,
    project: d.project,
    member: rm.member ?? (crossServer ? "" : f.member),
    pool: d.storagePool ?? (crossServer ? "" : f.pool),
    name: d.name,
  };
  const from: Placement = { remote: f.remote, project: f.project, member: f.member, pool: f.pool, name: f.name };
  const steps: Step[] = [];
  if (!crossServer) {
    if (to.pool && to.pool !== f.pool) steps.push("pool");
    if (to.project !== f.project) steps.push("project");
    if (to.member && to.member !== f.member) steps.push("member");
    if (to.name !== f.name) steps.push("rename");
    if (!steps.length) return { kind: "noop" };
  }
  return { from, to, steps, crossServer };
}

/** R5: push and relay between servers need the push protocol on both sides. Inside one server there is no transfer to choose. */
function modeRefusal(input: PlanInput, crossServer: boolean): Plan | undefined {
  const { desired: d, source, target } = input;
  const mode = d.migration.mode;
  if (!crossServer || mode === "pull") return undefined;
  for (const [c, side] of [
    [source, "source"],
    [target, "target"],
  ] as const) {
    if (!supports(c.extensions, "push")) return refuse("migration.mode", `mode "${mode}" needs push on the ${side}: ${lacking(c.remote, "push")}`, "R5");
  }
  if (!supports(source.extensions, "pushTarget")) return refuse("migration.mode", `mode "${mode}" needs it of the source: ${lacking(source.remote, "pushTarget")}`, "R5");
  return undefined;
}

/** The ways one instance can move, each a plan or a refusal that says why not. */
class Moves {
  readonly noun: string;
  readonly liveBlocks: { rule: string; reason: string }[];
  private readonly nearLive: { rule: string; reason: string }[];
  private readonly base: Route;

  constructor(
    private readonly input: PlanInput,
    private readonly where: { from: Placement; to: Placement; steps: Step[]; crossServer: boolean },
  ) {
    const { facts: f, source, target } = input;
    this.noun = f.type === "virtual-machine" ? "VM" : "container";
    this.liveBlocks = liveBlockers(f, source, target);
    this.nearLive = nearLiveBlockers(f, source, target);
    this.base = where.crossServer ? this.copyRoute() : { kind: "server-side", steps: where.steps };
  }

  private copyRoute(): Route {
    return { kind: "copy", mode: this.where.crossServer ? this.input.desired.migration.mode : "pull", sameServer: !this.where.crossServer };
  }

  /** A move along `route`; refused when it takes LXD's own move and the server lacks it (the client checks the same, features.ts). */
  move(route: Route, strategy: Strategy, why: string, restart: boolean): Plan {
    const target = this.input.target;
    if (route.kind === "server-side" && route.steps.includes("pool") && !supports(target.extensions, "poolMove")) return refuse("storagePool", lacking(target.remote, "poolMove"), "R6");
    if (route.kind === "server-side" && route.steps.includes("project") && !supports(target.extensions, "projectMove")) return refuse("project", lacking(target.remote, "projectMove"), "R6");
    return { kind: "move", from: this.where.from, to: this.where.to, route, strategy, why, restart };
  }

  /** As it is: stopped, or declared stopped (P4). */
  cold(why: string): Plan {
    return this.move(this.base, "cold", why, false);
  }

  /** The instance keeps running (R7); if LXD refuses, nothing is lost (R15). */
  live(why: string): Plan {
    return this.move(this.base, "live", why, false);
  }

  /** Stop, move, start again (R2, R3), if a restart is allowed (P3). */
  stopMoveStart(why: string, rule = this.liveBlocks[0]?.rule ?? "P3"): Plan {
    if (!this.input.desired.migration.allowRestart) {
      return refuse("migration.allowRestart", `${why}; moving it needs a restart (stop-move-start) and migration.allowRestart is false. Set allowRestart: true, or stop the instance first`, rule);
    }
    const restartRule = this.input.facts.type === "virtual-machine" ? "R3" : "R2";
    return this.move(this.base, "stop-move-start", `${why}: stop, move, start again (${restartRule}, P4)`, true);
  }

  /** Pre-copy while running, stop for the final delta only; stop-move-start where it cannot be. */
  nearLiveMove(why: string): Plan {
    if (this.nearLive.length) return this.stopMoveStart(`${why}; near-live impossible: ${this.nearLive.map((b) => `${b.reason} (${b.rule})`).join("; ")}`);
    if (!this.input.desired.migration.allowRestart) return refuse("migration.allowRestart", `${why}; near-live stops the container for its final delta and migration.allowRestart is false`, "P3");
    if (!this.where.crossServer && this.where.steps.some((s) => s === "pool")) return this.stopMoveStart(`${why}; near-live inside one server covers member and project moves, not pool moves`);
    return this.move(this.copyRoute(), "near-live", `${why}: pre-copy while running, stop for the final delta only, start at the target (near-live, P4)`, true);
  }

  /** Why live migration is impossible, as one clause. */
  liveImpossible(): string {
    return `live migration impossible: ${this.liveBlocks.map((b) => `${b.reason} (${b.rule})`).join("; ")}`;
  }
}

/** A running instance: the declared strategy, or for `auto` the least disruptive one the servers allow. */
function runningMove(m: Moves, input: PlanInput): Plan {
  const { facts: f, desired: d } = input;
  const mig = d.migration;
  switch (mig.strategy) {
    case "stop-move-start":
      return m.stopMoveStart(`strategy "stop-move-start" was chosen`);
    case "near-live":
      return m.nearLiveMove(`strategy "near-live" was chosen`);
    case "live":
      if (m.liveBlocks.length) {
        const why = m.liveImpossible();
        if (!mig.allowRestart) return refuse("migration.strategy", `${why}. Fix the prerequisites, or set migration.allowRestart: true to fall back to a restart (P3)`, m.liveBlocks[0].rule);
        return f.type === "container" ? m.nearLiveMove(why) : m.stopMoveStart(why);
      }
      return m.live(`live migration (R7): the ${m.noun} keeps running; if LXD refuses, nothing is lost (R15)`);
    case "auto":
    default:
      return autoMove(m, input);
  }
}

function autoMove(m: Moves, input: PlanInput): Plan {
  const { facts: f, desired: d } = input;
  if (!m.liveBlocks.length && (f.type === "virtual-machine" || !d.migration.allowRestart)) return m.live(`live migration possible (R7): the ${m.noun} keeps running`);
  if (!m.liveBlocks.length && f.type === "container") {
    // A basic container (R12) on servers offering CRIU (R11): try live; CRIU often fails in
    // practice, and then (R15: nothing lost) the move runs again with a restart.
    const fb = m.nearLiveMove("live migration was refused by LXD");
    const p = m.live(`live migration looks possible (R7, R11, R12): trying it; if LXD refuses, nothing is lost (R15) and the move restarts the container instead`);
    return fb.kind === "move" && p.kind === "move" ? { ...p, fallback: fb as Move } : p;
  }
  if (f.type === "container") {
    const why = m.liveBlocks.length ? `live migration impossible: ${m.liveBlocks[0].reason} (${m.liveBlocks[0].rule})` : "container live migration is unreliable (R12)";
    if (!d.migration.allowRestart)
      return refuse("migration.allowRestart", `${why}; allowRestart is false, so the running container cannot move. Set allowRestart: true, or stop it first (P3)`, m.liveBlocks[0]?.rule ?? "R12");
    return m.nearLiveMove(why);
  }
  return m.stopMoveStart(m.liveImpossible());
}

export function plan(input: PlanInput): Plan {
  const where = destination(input);
  if ("kind" in where) return where;
  const refused = modeRefusal(input, where.crossServer);
  if (refused) return refused;
  const m = new Moves(input, where);
  const { facts: f, desired: d } = input;
  if (!f.running) return m.cold(`the ${m.noun} is stopped: it moves as it is and stays stopped (P4)`);
  if (!d.running) return m.cold(`the ${m.noun} is declared stopped: it is stopped first, then moves as it is (P4)`);
  // A rename is no live move: live-migration blockers (R11/R12) are not why it is refused (P3).
  const onlyRename = !where.crossServer && where.steps.length === 1 && where.steps[0] === "rename";
  if (onlyRename) return m.stopMoveStart(`LXD renames only stopped instances`, "P3");
  return runningMove(m, input);
}

/** One line for preview and logs: what moves where, how and why. */
export function planText(p: Plan): string {
  if (p.kind === "noop") return "no move";
  if (p.kind === "refuse") return `refused: ${p.field}: ${p.reason}${p.rule ? ` (${p.rule})` : ""}`;
  const at = (x: Placement) => `${x.remote}:${x.project}/${x.name}${x.member ? `@${x.member}` : ""}${x.pool ? ` pool=${x.pool}` : ""}`;
  const how = p.route.kind === "copy" ? (p.route.sameServer ? "copy within the server" : `cross-server ${p.route.mode}`) : `server-side ${p.route.steps.join("+")}`;
  return `move ${at(p.from)} -> ${at(p.to)}; ${how}; strategy ${p.strategy}: ${p.why}`;
}
