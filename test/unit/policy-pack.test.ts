/**
 * The policy pack's rules (policy/rules.ts) on the inputs a policy sees: each rule's violation
 * names the instance, the field and the rule ID where one applies, and a program that keeps the
 * rule has none. (test/e2e/policy-pack.test.ts runs the same rules through the real engine.)
 */
import { allowedPlacements, bytes, groupAntiAffinity, maxMovesPerUpdate, noDrainingMembers, vmLivePrerequisites, type InstanceProps, type Seen } from "../../policy/rules";

const seen = (props: InstanceProps, resource = props.name ?? "r"): Seen => ({ resource, props });
const vm = (extra: InstanceProps = {}): Seen =>
  seen({ name: "vm1", type: "virtual-machine", remote: "s1", config: { "migration.stateful": "true", "limits.memory": "1GiB" }, migration: { strategy: "live" }, ...extra });

describe("vm-live-prerequisites (R8, R9)", () => {
  it("a VM that moves live only, without migration.stateful: refused naming R8", () => {
    expect(vmLivePrerequisites(vm({ config: {} }))).toEqual([
      'instance "vm1": config["migration.stateful"] must be "true" for a virtual machine that moves live only (migration.strategy is "live") (R8)',
    ]);
    expect(vmLivePrerequisites(vm({ config: {}, migration: { strategy: "auto", allowRestart: false } }))[0]).toMatch(/migration.allowRestart is false\) \(R8\)$/);
  });

  it("a declared root disk whose size.state is below limits.memory, or missing: refused naming R9", () => {
    expect(vmLivePrerequisites(vm({ devices: { root: { type: "disk", path: "/", pool: "default", "size.state": "512MiB" } } }))).toEqual([
      'instance "vm1": devices.root "size.state" (512MiB) is less than config["limits.memory"] (1GiB) (R9)',
    ]);
    expect(vmLivePrerequisites(vm({ devices: { root: { type: "disk", path: "/", pool: "default" } } }))[0]).toMatch(/devices.root needs "size.state".*\(R9\)$/);
  });

  it("kept: stateful with enough state; a VM that may restart; a container; nothing to say", () => {
    expect(vmLivePrerequisites(vm({ devices: { root: { type: "disk", path: "/", "size.state": "2GB" } } }))).toEqual([]);
    expect(vmLivePrerequisites(vm({ config: {}, migration: { strategy: "auto" } }))).toEqual([]);
    expect(vmLivePrerequisites(vm({ config: {}, migration: { strategy: "stop-move-start" } }))).toEqual([]);
    expect(vmLivePrerequisites(seen({ name: "c", type: "container", migration: { strategy: "live" } }))).toEqual([]);
  });

  it("reads LXD sizes", () => {
    expect([bytes("1GiB"), bytes("1GB"), bytes("512MiB"), bytes("100"), bytes(2048), bytes("lots")]).toEqual([2 ** 30, 1e9, 512 * 2 ** 20, 100, 2048, undefined]);
  });
});

describe("allowed-placements", () => {
  const cfg = { remotes: ["s1", "cluster"], members: ["m1", "m2"] };
  it("a remote or a member outside the lists: refused naming it and what is allowed", () => {
    expect(allowedPlacements(seen({ name: "web", remote: "s2" }), cfg)).toEqual(['instance "web": remote "s2" is not allowed in this stack (allowed: s1, cluster)']);
    expect(allowedPlacements(seen({ name: "web", remote: "cluster", target: "m3" }), cfg)).toEqual(['instance "web": target "m3" is not allowed in this stack (allowed members: m1, m2)']);
  });
  it("inside the lists, or with no lists: allowed", () => {
    expect(allowedPlacements(seen({ name: "web", remote: "cluster", target: "m2" }), cfg)).toEqual([]);
    expect(allowedPlacements(seen({ name: "web", remote: "s2", target: "m3" }), {})).toEqual([]);
    expect(allowedPlacements(seen({ name: "web", remote: "s2" }), { remotes: [], members: [] })).toEqual([]);
  });
});

describe("no-draining-members", () => {
  it("an instance declared on a draining member: refused; elsewhere, or nothing draining: allowed", () => {
    expect(noDrainingMembers(seen({ name: "web", remote: "cluster", target: "m3" }), { members: ["m3"] })[0]).toMatch(/^instance "web": target "m3" is draining/);
    expect(noDrainingMembers(seen({ name: "web", remote: "cluster", target: "m2" }), { members: ["m3"] })).toEqual([]);
    expect(noDrainingMembers(seen({ name: "web", remote: "cluster", target: "m3" }), {})).toEqual([]);
  });
});

describe("group-anti-affinity", () => {
  const db = (name: string, remote: string, target?: string): Seen => seen({ name, remote, target, migration: { group: "db" } });
  it("two instances of a listed group on one server: refused naming both and the server", () => {
    expect(groupAntiAffinity([db("db-1", "cluster", "m1"), db("db-2", "cluster", "m1"), db("db-3", "cluster", "m2")], { groups: ["db"] })).toEqual([
      'group "db" is anti-affine, but "db-1", "db-2" share cluster member m1',
    ]);
    // Whatever order the engine registered them in.
    expect(groupAntiAffinity([db("db-2", "s1"), db("db-1", "s1")], { groups: ["db"] })).toEqual(['group "db" is anti-affine, but "db-1", "db-2" share s1']);
  });
  it("a member of the group placed on a cluster group: refused, it could land anywhere", () => {
    expect(groupAntiAffinity([db("db-1", "cluster", "@fast-group")], { groups: ["db"] })[0]).toMatch(/target "@fast-group" is a cluster group; name a member/);
  });
  it("spread, or a group not listed: allowed", () => {
    expect(groupAntiAffinity([db("db-1", "cluster", "m1"), db("db-2", "cluster", "m2"), db("db-3", "s1")], { groups: ["db"] })).toEqual([]);
    expect(groupAntiAffinity([db("db-1", "cluster", "m1"), db("db-2", "cluster", "m1")], {})).toEqual([]);
  });
});

describe("max-moves-per-update", () => {
  const moving = (name: string): Seen => seen({ name, remote: "s2", movingFrom: { remote: "s1", name } });
  it("more moves than the maximum: refused, listing each move", () => {
    expect(maxMovesPerUpdate([moving("b"), seen({ name: "c", remote: "s1" }), moving("a")], { maximum: 1 })).toEqual([
      "2 instances move in this update, at most 1 may: a (s1 -> s2), b (s1 -> s2); split the change into smaller updates",
    ]);
  });
  it("at most the maximum, or no maximum: allowed", () => {
    expect(maxMovesPerUpdate([moving("a"), moving("b")], { maximum: 2 })).toEqual([]);
    expect(maxMovesPerUpdate([moving("a"), moving("b")], {})).toEqual([]);
  });
});
