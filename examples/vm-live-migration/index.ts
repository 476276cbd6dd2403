// A virtual machine that may only move live: it keeps running while it changes server (R7).
// `pulumi config set placement s2` then `pulumi up` live-migrates it, or, if a prerequisite is
// missing, `pulumi preview` refuses the move before anything changes, naming the rule (P3).
//
// Live migration of a VM needs, on the instance:
//   R8  migration.stateful=true                       (config below)
//   R9  root disk size.state >= limits.memory         (the root device override below)
// and on both servers:
//   R10 the "migration_vm_live" API extension         (LXD 5.0.x lacks it)
import * as pulumi from "@pulumi/pulumi";
import { Instance } from "lxd-placement";

const config = new pulumi.Config();
const memory = config.get("memory") ?? "1GiB";

const vm = new Instance("vm", {
  name: config.get("name") ?? "vm",
  type: "virtual-machine",
  // An alias of a VM image on the server the VM is created on.
  image: config.require("image"),
  remote: config.get("placement") ?? "s1",
  storagePool: config.get("pool") ?? "default",
  config: {
    "limits.memory": memory,
    // R8: keep the VM's state across moves; set while the VM is stopped, so set it from the start.
    "migration.stateful": "true",
  },
  devices: {
    // R9: room on the root disk for the memory state, at least limits.memory. The pool of the
    // root disk comes from storagePool.
    root: { type: "disk", path: "/", "size.state": memory },
  },
  migration: {
    // Live or not at all: never stop the VM to move it (P3 refuses at preview instead).
    strategy: "live",
    allowRestart: false,
  },
});

export const name = vm.name;
export const remote = vm.remote;
export const status = vm.status;
/** What the last move did (null before the first move). */
export const lastMove = vm.lastMove.apply((m) => m ?? null);
