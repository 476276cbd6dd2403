// One container whose project and root-disk storage pool are stack config. Both must exist on
// the server (R6); changing them moves the container inside the server, as an update:
//
//   pulumi config set project staging
//   pulumi config set pool fast
//   pulumi up
import * as pulumi from "@pulumi/pulumi";
import { Instance } from "lxd-placement";

const config = new pulumi.Config();

const app = new Instance("app", {
  name: config.get("name") ?? "app",
  image: "busybox",
  remote: config.get("remote") ?? "s1",
  project: config.get("project") ?? "default",
  storagePool: config.get("pool") ?? "default",
});

export const name = app.name;
export const remote = app.remote;
export const project = app.project;
export const storagePool = app.storagePool;
export const status = app.status;
/** What the last move did (null before the first move). */
export const lastMove = app.lastMove.apply((m) => m ?? null);
