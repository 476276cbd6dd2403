// One container whose placement is stack config. `pulumi config set placement s2` followed by
// `pulumi up` moves it from s1 to s2: an update, never a delete and create, so what is inside
// the container survives.
import * as pulumi from "@pulumi/pulumi";
import { Instance } from "lxd-placement";

const config = new pulumi.Config();

const web = new Instance("web", {
  // The LXD name; defaults to the resource name ("web").
  name: config.get("name") ?? "web",
  image: "busybox",
  // A remote of the lxc client config ($LXD_CONF/config.yml).
  remote: config.get("placement") ?? "s1",
});

export const name = web.name;
export const remote = web.remote;
export const location = web.location;
export const status = web.status;
/** What the last move did: from, to, strategy, duration and downtime in seconds (null before the first move). */
export const lastMove = web.lastMove.apply((m) => m ?? null);
