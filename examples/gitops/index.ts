// Placement as data in Git: each stack's Pulumi.<stack>.yaml maps an instance to where it lives.
// A pull request that edits the map is reviewed as a move plan (scripts/gitops.sh), and the merge
// applies it. The instances share one move group, so a merge that moves many of them keeps at
// most `maxUnavailable` down at once.
import * as pulumi from "@pulumi/pulumi";
import { Instance } from "lxd-placement";

interface Placement {
  remote: string;
  target?: string;
  project?: string;
  storagePool?: string;
  running?: boolean;
}

const config = new pulumi.Config();
const instances = config.requireObject<Record<string, Placement>>("instances");
const prefix = config.get("namePrefix") ?? "";
const group = config.get("group") ?? pulumi.getStack();
const maxUnavailable = config.getNumber("maxUnavailable") ?? 1;

const made = Object.entries(instances).map(
  ([key, p]) =>
    new Instance(key, {
      name: `${prefix}${key}`,
      image: config.get("image") ?? "busybox",
      remote: p.remote,
      target: p.target,
      project: p.project,
      storagePool: p.storagePool,
      running: p.running ?? true,
      migration: { group, maxUnavailable },
    }),
);

/** Where each instance is, as LXD reports it after the run. */
export const placement = pulumi.all(made.map((i) => pulumi.all([i.name, i.remote, i.location]))).apply((xs) => Object.fromEntries(xs.map(([n, r, l]) => [n, l ? `${r}@${l}` : r])));
