/**
 * The lxd-placement policy pack: placement rules checked by `pulumi preview` and `pulumi up`
 * before anything runs. `. scripts/env.sh` exports LXD_PLACEMENT_POLICY_PACK (the launcher the
 * engine runs, policy/run), so:
 *
 *   pulumi preview --policy-pack "$LXD_PLACEMENT_POLICY_PACK" [--policy-pack-config FILE]
 *
 * Each rule is configured in the standard policy config file (a JSON object keyed by rule name:
 * `enforcementLevel` and the rule's own parameters). docs/gitops.md lists them.
 */
import { PolicyPack, type PolicyConfigSchema, type ReportViolation, type ResourceValidationArgs, type StackValidationArgs } from "@pulumi/policy";
import {
  allowedPlacements,
  groupAntiAffinity,
  INSTANCE_TYPES,
  maxMovesPerUpdate,
  noDrainingMembers,
  vmLivePrerequisites,
  type AllowedPlacements,
  type AntiAffinity,
  type Draining,
  type InstanceProps,
  type MaxMoves,
  type Seen,
} from "./rules";

const names = (description: string): PolicyConfigSchema => ({ properties: { [description]: { type: "array", items: { type: "string" } } } });

function eachInstance(check: (s: Seen, args: ResourceValidationArgs) => string[]) {
  return (args: ResourceValidationArgs, report: ReportViolation) => {
    if (!INSTANCE_TYPES.includes(args.type)) return;
    for (const v of check({ resource: args.name, props: args.props as InstanceProps }, args)) report(v);
  };
}

function allInstances(check: (all: Seen[], args: StackValidationArgs) => string[]) {
  return (args: StackValidationArgs, report: ReportViolation) => {
    const all = args.resources.filter((r) => INSTANCE_TYPES.includes(r.type)).map((r) => ({ resource: r.name, props: r.props as InstanceProps }));
    for (const v of check(all, args)) report(v);
  };
}

new PolicyPack("lxd-placement", {
  policies: [
    {
      name: "vm-live-prerequisites",
      description: "A virtual machine that moves live only has migration.stateful=true (R8) and a root disk whose size.state covers limits.memory (R9).",
      enforcementLevel: "mandatory",
      validateResource: eachInstance((s) => vmLivePrerequisites(s)),
    },
    {
      name: "allowed-placements",
      description: "Instances are only placed on the remotes and cluster members this stack allows (config remotes, members; absent or empty allows all).",
      enforcementLevel: "mandatory",
      configSchema: { properties: { ...names("remotes").properties, ...names("members").properties } },
      validateResource: eachInstance((s, args) => allowedPlacements(s, args.getConfig<AllowedPlacements>())),
    },
    {
      name: "no-draining-members",
      description: "No instance is declared on a cluster member under maintenance (config members).",
      enforcementLevel: "mandatory",
      configSchema: names("members"),
      validateResource: eachInstance((s, args) => noDrainingMembers(s, args.getConfig<Draining>())),
    },
    {
      name: "group-anti-affinity",
      description: "The instances of each listed group (migration.group, an InstanceGroup's name) never share a server (config groups).",
      enforcementLevel: "mandatory",
      configSchema: names("groups"),
      validateStack: allInstances((all, args) => groupAntiAffinity(all, args.getConfig<AntiAffinity>())),
    },
    {
      name: "max-moves-per-update",
      description: "At most this many instances change placement in one update (config maximum; absent: no limit).",
      enforcementLevel: "mandatory",
      configSchema: { properties: { maximum: { type: "integer", minimum: 0 } } },
      validateStack: allInstances((all, args) => maxMovesPerUpdate(all, args.getConfig<MaxMoves>())),
    },
  ],
});
