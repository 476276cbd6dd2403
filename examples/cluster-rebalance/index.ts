// Containers spread over the members of one LXD cluster. Which member each one runs on is a
// map in stack config; edit the map and `pulumi up` moves exactly the containers whose entry
// changed, inside the cluster (R4), each as an update.
//
//   pulumi config set placement '{"web-1":"m2","web-2":"m2","web-3":"m3","web-4":"m3"}'
//   pulumi up
import * as pulumi from "@pulumi/pulumi";
import { Instance } from "lxd-placement";

const config = new pulumi.Config();

/** Instance → cluster member (or "@group"). */
const placement: Record<string, string> = config.getObject<Record<string, string>>("placement") ?? {
  "web-1": "m1",
  "web-2": "m2",
  "web-3": "m3",
  "web-4": "m1",
};
/** Prefix of the LXD names, to keep several stacks apart on one cluster. */
const prefix = config.get("prefix") ?? "";
const remote = config.get("remote") ?? "cluster";

const instances = Object.entries(placement).map(
  ([key, member]) =>
    new Instance(key, {
      name: `${prefix}${key}`,
      image: "busybox",
      remote,
      target: member,
    }),
);

/** Where each instance really runs: LXD name → cluster member. */
export const locations = pulumi.all(instances.map((i) => pulumi.all([i.name, i.location]))).apply((pairs) => Object.fromEntries(pairs));
export const lastMoves = pulumi.all(instances.map((i) => pulumi.all([i.name, i.lastMove]))).apply((pairs) => Object.fromEntries(pairs.filter(([, m]) => m !== undefined)));
