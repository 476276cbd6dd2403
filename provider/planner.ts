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

export function plan(input: PlanInput): Plan {
  const { facts: f, desired: d, source, target } = input;
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

  const steps: ("pool" | "project" | "member" | "rename")[] = [];
  if (!crossServer) {
    if (to.pool && to.pool !== f.pool) steps.push("pool");
    if (to.project !== f.project) steps.push("project");
    if (to.member && to.member !== f.member) steps.push("member");
    if (to.name !== f.name) steps.push("rename");
    if (!steps.length) return { kind: "noop" };
  }

  const mode = d.migration.mode;
  if (crossServer && mode !== "pull") {
    // R5: push and relay need the push protocol on both sides.
    for (const [c, side] of [
      [source, "source"],
      [target, "target"],
    ] as const) {
      if (!supports(c.extensions, "push")) return refuse("migration.mode", `mode "${mode}" needs push on the ${side}: ${lacking(c.remote, "push")}`, "R5");
    }
    if (!supports(source.extensions, "pushTarget")) return refuse("migration.mode", `mode "${mode}" needs it of the source: ${lacking(source.remote, "pushTarget")}`, "R5");
  }
  if (!crossServer && mode !== "pull") {
    // Not an error: inside one server there is no transfer to choose (R4, R5).
  }

  const serverSide: Route = { kind: "server-side", steps };
  const copyRoute = (sameServer: boolean): Route => ({ kind: "copy", mode: crossServer ? mode : "pull", sameServer });
  const baseRoute: Route = crossServer ? copyRoute(false) : serverSide;
  const onlyRename = !crossServer && steps.length === 1 && steps[0] === "rename";
  const noun = f.type === "virtual-machine" ? "VM" : "container";
  const move = (route: Route, strategy: Strategy, why: string, restart: boolean): Plan => {
    // LXD's own moves inside a server: the client checks the same before it sends (features.ts).
    if (route.kind === "server-side" && route.steps.includes("pool") && !supports(target.extensions, "poolMove")) return refuse("storagePool", lacking(target.remote, "poolMove"), "R6");
    if (route.kind === "server-side" && route.steps.includes("project") && !supports(target.extensions, "projectMove")) return refuse("project", lacking(target.remote, "projectMove"), "R6");
    return { kind: "move", from, to, route, strategy, why, restart };
  };

  if (!f.running) {
    return move(baseRoute, "cold", `the ${noun} is stopped: it moves as it is and stays stopped (P4)`, false);
  }
  if (!d.running) {
    return move(baseRoute, "cold", `the ${noun} is declared stopped: it is stopped first, then moves as it is (P4)`, false);
  }

  const m = d.migration;
  const live = liveBlockers(f, source, target);
  const nearLive = nearLiveBlockers(f, source, target);
  // Renaming a running instance is refused by LXD: it is a short stop and start (R2, R3).
  const restartRule = f.type === "virtual-machine" ? "R3" : "R2";
  const sms = (why: string, rule = live[0]?.rule ?? "P3"): Plan => {
    if (!m.allowRestart) {
      return refuse("migration.allowRestart", `${why}; moving it needs a restart (stop-move-start) and migration.allowRestart is false. Set allowRestart: true, or stop the instance first`, rule);
    }
    return move(baseRoute, "stop-move-start", `${why}: stop, move, start again (${restartRule}, P4)`, true);
  };
  const nl = (why: string): Plan => {
    if (nearLive.length) return sms(`${why}; near-live impossible: ${nearLive.map((b) => `${b.reason} (${b.rule})`).join("; ")}`);
    if (!m.allowRestart) return refuse("migration.allowRestart", `${why}; near-live stops the container for its final delta and migration.allowRestart is false`, "P3");
    if (!crossServer && steps.some((s) => s === "pool")) return sms(`${why}; near-live inside one server covers member and project moves, not pool moves`);
    return move(copyRoute(!crossServer), "near-live", `${why}: pre-copy while running, stop for the final delta only, start at the target (near-live, P4)`, true);
  };

  // A rename is no live move: live-migration blockers (R11/R12) are not why it is refused (P3).
  if (onlyRename) return sms(`LXD renames only stopped instances`, "P3");

  switch (m.strategy) {
    case "stop-move-start":
      return sms(`strategy "stop-move-start" was chosen`);
    case "near-live":
      return nl(`strategy "near-live" was chosen`);
    case "live":
      if (live.length) {
        const why = `live migration impossible: ${live.map((b) => `${b.reason} (${b.rule})`).join("; ")}`;
        if (!m.allowRestart) return refuse("migration.strategy", `${why}. Fix the prerequisites, or set migration.allowRestart: true to fall back to a restart (P3)`, live[0].rule);
        return f.type === "container" ? nl(why) : sms(why);
      }
      return move(baseRoute, "live", `live migration (R7): the ${noun} keeps running; if LXD refuses, nothing is lost (R15)`, false);
    case "auto":
    default:
      if (!live.length && (f.type === "virtual-machine" || !m.allowRestart)) {
        return move(baseRoute, "live", `live migration possible (R7): the ${noun} keeps running`, false);
      }
      if (!live.length && f.type === "container") {
        // A basic container (R12) on servers offering CRIU (R11): try live; CRIU often fails in
        // practice, and then (R15: nothing lost) the move runs again with a restart.
        const fb = nl("live migration was refused by LXD");
        const p = move(baseRoute, "live", `live migration looks possible (R7, R11, R12): trying it; if LXD refuses, nothing is lost (R15) and the move restarts the container instead`, false);
        return fb.kind === "move" && p.kind === "move" ? { ...p, fallback: fb } : p;
      }
      if (f.type === "container") {
        const why = live.length ? `live migration impossible: ${live[0].reason} (${live[0].rule})` : "container live migration is unreliable (R12)";
        if (!m.allowRestart)
          return refuse("migration.allowRestart", `${why}; allowRestart is false, so the running container cannot move. Set allowRestart: true, or stop it first (P3)`, live[0]?.rule ?? "R12");
        return nl(why);
      }
      return sms(`live migration impossible: ${live.map((b) => `${b.reason} (${b.rule})`).join("; ")}`);
  }
}

/** One line for preview and logs: what moves where, how and why. */
export function planText(p: Plan): string {
  if (p.kind === "noop") return "no move";
  if (p.kind === "refuse") return `refused: ${p.field}: ${p.reason}${p.rule ? ` (${p.rule})` : ""}`;
  const at = (x: Placement) => `${x.remote}:${x.project}/${x.name}${x.member ? `@${x.member}` : ""}${x.pool ? ` pool=${x.pool}` : ""}`;
  const how = p.route.kind === "copy" ? (p.route.sameServer ? "copy within the server" : `cross-server ${p.route.mode}`) : `server-side ${p.route.steps.join("+")}`;
  return `move ${at(p.from)} -> ${at(p.to)}; ${how}; strategy ${p.strategy}: ${p.why}`;
}
