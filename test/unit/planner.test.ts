import { InstanceInputsSchema, type Desired } from "../../provider/inputs";
import { planText, plan, type Capabilities, type Facts } from "../../provider/planner";

const EXT = ["container_push", "container_push_target", "container_incremental_copy", "migration_stateful", "instance_pool_move", "instance_project_move", "clustering"];
const standalone = (remote: string, extra: Partial<Capabilities> = {}): Capabilities => ({
  remote,
  extensions: EXT,
  clustered: false,
  members: {},
  groups: {},
  projects: ["default", "staging"],
  pools: ["default", "fast"],
  ...extra,
});
const cluster: Capabilities = {
  ...standalone("cluster"),
  clustered: true,
  members: { m1: "Online", m2: "Online", m3: "Offline" },
  groups: { "fast-group": ["m2", "m3"] },
  load: { m2: 3 },
};
const facts = (over: Partial<Facts> = {}): Facts => ({
  remote: "s1",
  project: "default",
  member: "",
  pool: "default",
  name: "web",
  type: "container",
  running: true,
  config: {},
  devices: { eth0: { type: "nic", nictype: "bridged", parent: "sbx0" }, root: { type: "disk", path: "/", pool: "default" } },
  ...over,
});
const desired = (over: Record<string, unknown> = {}): Desired => {
  const v = InstanceInputsSchema.parse({ name: "web", image: "busybox", remote: "s1", ...over });
  return { ...v, name: v.name!, remote: v.remote! };
};
const caps = (r: string) => (r === "cluster" ? cluster : standalone(r));
const run = (f: Facts, d: Desired, src?: Capabilities, tgt?: Capabilities) => plan({ facts: f, desired: d, source: src ?? caps(f.remote), target: tgt ?? caps(d.remote) });

describe("planner", () => {
  it("P1: same placement is no move at all", () => {
    expect(run(facts(), desired())).toEqual({ kind: "noop" });
  });

  it("R1: the target name defaults to the source name; a cross-server move keeps it", () => {
    const p = run(facts(), desired({ remote: "s2" }));
    expect(p.kind).toBe("move");
    if (p.kind === "move") expect(p.to).toMatchObject({ remote: "s2", name: "web" });
  });

  it("R2/P4: a running container with a NIC moves near-live by default, restarted at the target", () => {
    const p = run(facts(), desired({ remote: "s2" }));
    expect(p).toMatchObject({ kind: "move", strategy: "near-live", restart: true, route: { kind: "copy", mode: "pull", sameServer: false } });
  });

  it("P4: a stopped instance moves cold and stays stopped", () => {
    const p = run(facts({ running: false }), desired({ remote: "s2" }));
    expect(p).toMatchObject({ kind: "move", strategy: "cold", restart: false });
  });

  it("P4: a running instance declared stopped is stopped first and moved cold", () => {
    const p = run(facts(), desired({ remote: "s2", running: false }));
    expect(p).toMatchObject({ kind: "move", strategy: "cold", restart: false });
  });

  it("R5: the transfer mode is the one declared", () => {
    for (const mode of ["pull", "push", "relay"]) {
      const p = run(facts({ running: false }), desired({ remote: "s2", migration: { mode } }));
      expect(p).toMatchObject({ route: { kind: "copy", mode } });
    }
  });

  it("R5: push and relay need container_push on both servers", () => {
    const old = standalone("s2", { extensions: ["container_incremental_copy"] });
    const p = run(facts({ running: false }), desired({ remote: "s2", migration: { mode: "push" } }), undefined, old);
    expect(p).toMatchObject({ kind: "refuse", field: "migration.mode", rule: "R5" });
  });

  it("R4: a member move inside a cluster is server-side and names the member", () => {
    const p = run(facts({ remote: "cluster", member: "m1", running: false }), desired({ remote: "cluster", target: "m2" }));
    expect(p).toMatchObject({ kind: "move", route: { kind: "server-side", steps: ["member"] }, to: { member: "m2" } });
  });

  it("R4: a running container moves between members near-live through a copy within the server", () => {
    const p = run(facts({ remote: "cluster", member: "m1" }), desired({ remote: "cluster", target: "m2" }));
    expect(p).toMatchObject({ kind: "move", strategy: "near-live", route: { kind: "copy", sameServer: true } });
  });

  it("R4: target on a standalone server is refused", () => {
    expect(run(facts(), desired({ target: "m2" }))).toMatchObject({ kind: "refuse", field: "target", rule: "R4" });
  });

  it("R4: an unknown member, an offline member and an unknown group are refused", () => {
    const f = facts({ remote: "cluster", member: "m1" });
    expect(run(f, desired({ remote: "cluster", target: "m9" }))).toMatchObject({ kind: "refuse", field: "target" });
    expect(run(f, desired({ remote: "cluster", target: "m3" }))).toMatchObject({ kind: "refuse", field: "target" });
    expect(run(f, desired({ remote: "cluster", target: "@nope" }))).toMatchObject({ kind: "refuse", field: "target" });
  });

  it("R4: a cluster group target picks an online member of the group, and stays put when already inside", () => {
    const p = run(facts({ remote: "cluster", member: "m1", running: false }), desired({ remote: "cluster", target: "@fast-group" }));
    expect(p).toMatchObject({ kind: "move", to: { member: "m2" } });
    expect(run(facts({ remote: "cluster", member: "m3" }), desired({ remote: "cluster", target: "@fast-group" }))).toEqual({ kind: "noop" });
  });

  it("R6: project and pool moves on one server are server-side steps, pool first", () => {
    const p = run(facts({ running: false }), desired({ project: "staging", storagePool: "fast" }));
    expect(p).toMatchObject({ kind: "move", route: { kind: "server-side", steps: ["pool", "project"] } });
  });

  it("R6: a project or pool the target lacks is refused naming the field", () => {
    expect(run(facts(), desired({ remote: "s2", project: "nope" }))).toMatchObject({ kind: "refuse", field: "project" });
    expect(run(facts(), desired({ remote: "s2", storagePool: "nope" }))).toMatchObject({ kind: "refuse", field: "storagePool" });
  });

  it("R2: renaming a running container is a stop-move-start; refused without allowRestart (P3)", () => {
    expect(run(facts(), desired({ name: "web2" }))).toMatchObject({ kind: "move", strategy: "stop-move-start", route: { steps: ["rename"] } });
    expect(run(facts(), desired({ name: "web2", migration: { allowRestart: false } }))).toMatchObject({ kind: "refuse", field: "migration.allowRestart" });
  });

  it("R12/P3: live for a container with a network device is refused at preview without allowRestart", () => {
    const p = run(facts(), desired({ remote: "s2", migration: { strategy: "live", allowRestart: false } }));
    expect(p).toMatchObject({ kind: "refuse", field: "migration.strategy", rule: "R12" });
  });

  it("R12: live for a container with a network device falls back to near-live when restarts are allowed", () => {
    const p = run(facts(), desired({ remote: "s2", migration: { strategy: "live" } }));
    expect(p).toMatchObject({ kind: "move", strategy: "near-live" });
    if (p.kind === "move") expect(p.why).toMatch(/R12/);
  });

  it("R11/R7: live for a basic container (no NIC) is attempted", () => {
    const p = run(facts({ devices: { root: { type: "disk", path: "/", pool: "default" } } }), desired({ remote: "s2", migration: { strategy: "live", allowRestart: false } }));
    expect(p).toMatchObject({ kind: "move", strategy: "live", restart: false });
  });

  it("R15: auto tries live for a basic container and keeps a restart plan to fall back on", () => {
    const p = run(facts({ devices: { root: { type: "disk", path: "/", pool: "default" } } }), desired({ remote: "s2" }));
    expect(p).toMatchObject({ kind: "move", strategy: "live", fallback: { strategy: "near-live" } });
  });

  it("R11: live is refused when a server offers no stateful migration", () => {
    const noCriu = standalone("s2", { extensions: EXT.filter((e) => e !== "migration_stateful") });
    const p = run(facts({ devices: {} }), desired({ remote: "s2", migration: { strategy: "live", allowRestart: false } }), undefined, noCriu);
    expect(p).toMatchObject({ kind: "refuse", rule: "R11" });
  });

  const vm = (config: Record<string, string>, root: Record<string, string> = {}) =>
    facts({ type: "virtual-machine", config, devices: { root: { type: "disk", path: "/", pool: "default", ...root } } });

  it("R8: VM live migration needs migration.stateful=true", () => {
    const p = run(vm({ "limits.memory": "1GiB" }, { "size.state": "2GiB" }), desired({ type: "virtual-machine", remote: "s2", migration: { strategy: "live", allowRestart: false } }));
    expect(p).toMatchObject({ kind: "refuse", rule: "R8" });
  });

  it("R9: VM live migration needs size.state >= limits.memory", () => {
    const p = run(
      vm({ "migration.stateful": "true", "limits.memory": "4GiB" }, { "size.state": "1GiB" }),
      desired({ type: "virtual-machine", remote: "s2", migration: { strategy: "live", allowRestart: false } }),
    );
    expect(p).toMatchObject({ kind: "refuse", rule: "R9" });
  });

  it("R10: a server without migration_vm_live (LXD 5.0.2) is handled as R3: stop-move-start when allowed", () => {
    const f = vm({ "migration.stateful": "true", "limits.memory": "1GiB" }, { "size.state": "2GiB" });
    const refused = run(f, desired({ type: "virtual-machine", remote: "s2", migration: { strategy: "live", allowRestart: false } }));
    expect(refused).toMatchObject({ kind: "refuse", rule: "R10" });
    const p = run(f, desired({ type: "virtual-machine", remote: "s2" }));
    expect(p).toMatchObject({ kind: "move", strategy: "stop-move-start" });
    if (p.kind === "move") expect(p.why).toMatch(/R3/);
  });

  it("R7/R3: a VM meeting R8-R10 moves live by default", () => {
    const live = [...EXT, "migration_vm_live"];
    const f = vm({ "migration.stateful": "true", "limits.memory": "1GiB" }, { "size.state": "2GiB" });
    const p = run(f, desired({ type: "virtual-machine", remote: "s2" }), standalone("s1", { extensions: live }), standalone("s2", { extensions: live }));
    expect(p).toMatchObject({ kind: "move", strategy: "live", restart: false });
  });

  it("near-live needs container_incremental_copy on both sides, else stop-move-start", () => {
    const old = standalone("s2", { extensions: ["container_push", "container_push_target"] });
    const p = run(facts(), desired({ remote: "s2", migration: { strategy: "near-live" } }), undefined, old);
    expect(p).toMatchObject({ kind: "move", strategy: "stop-move-start" });
  });

  it("R6: a pool or project move LXD's own move would make needs the server's extension, named at preview; near-live copies instead", () => {
    const noMoves = standalone("s1", { extensions: EXT.filter((e) => e !== "instance_pool_move" && e !== "instance_project_move") });
    expect(run(facts({ running: false }), desired({ storagePool: "fast" }), noMoves, noMoves)).toEqual({
      kind: "refuse",
      field: "storagePool",
      rule: "R6",
      reason: 'server "s1" cannot do moving an instance to another storage pool of its server: it lacks the "instance_pool_move" API extension',
    });
    expect(run(facts({ running: false }), desired({ project: "staging" }), noMoves, noMoves)).toMatchObject({
      kind: "refuse",
      field: "project",
      rule: "R6",
      reason: expect.stringContaining('"instance_project_move"'),
    });
    // A running container's project move is near-live by default: a copy inside the server, no LXD move.
    expect(run(facts(), desired({ project: "staging" }), noMoves, noMoves)).toMatchObject({ kind: "move", strategy: "near-live", route: { kind: "copy", sameServer: true } });
  });

  it("P2: describe says where, how and why", () => {
    const text = planText(run(facts(), desired({ remote: "s2", migration: { mode: "relay" } })));
    expect(text).toMatch(/s1:default\/web pool=default -> s2:default\/web; cross-server relay; strategy near-live: .*R12/);
  });
});
