/**
 * The object Pulumi serializes into every resource's state (`__provider`). It stays thin: each
 * method loads the real implementation at call time, so no socket, agent, key or cached state is
 * captured, and a provider upgrade does not change what is serialized (pulumi/pulumi#6238).
 * The implementation is found by package name first (a user's install), else by the absolute
 * path of this build (a checkout).
 */
import type * as pulumi from "@pulumi/pulumi";

/* eslint-disable @typescript-eslint/no-require-imports -- resolved at call time, so the serialized provider captures no module */

const BUILD_PATH: string = require("node:path").join(__dirname, "index.js");

function impl(): typeof import("./index") {
  try {
    return require("lxd-placement/provider");
  } catch {
    return require(BUILD_PATH);
  }
}

// The engine passes the resource's current outputs (not its inputs) as `olds` to diff.
export const instanceProvider: pulumi.dynamic.ResourceProvider = {
  configure: (req) => impl().instance.configure(req),
  check: (olds, news) => impl().instance.check(olds, news),
  diff: (id, olds, news) => impl().instance.diff(id, olds, news),
  create: (inputs) => impl().instance.create(inputs),
  read: (id, props) => impl().instance.read(id, props),
  update: (id, olds, news) => impl().instance.update(id, olds, news),
  delete: (id, props) => impl().instance.remove(id, props),
};
