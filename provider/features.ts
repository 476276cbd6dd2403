/**
 * The optional LXD API features the provider uses, each by the API extension that announces it.
 * One list for both places that ask: the client checks before it sends a request that needs one
 * (as LXD's Go client does), the planner before it plans a move, so a move preview accepts is
 * one execution can send, and one it refuses names the same server and extension.
 */
export const FEATURES = {
  poolMove: { extension: "instance_pool_move", what: "moving an instance to another storage pool of its server" },
  projectMove: { extension: "instance_project_move", what: "moving an instance to another project of its server" },
  push: { extension: "container_push", what: "push and relay transfers" },
  pushTarget: { extension: "container_push_target", what: "a source that pushes to its target (push and relay)" },
  refresh: { extension: "container_incremental_copy", what: "incremental copies (near-live's later rounds)" },
  vmLive: { extension: "migration_vm_live", what: "live migration of VMs" },
  stateful: { extension: "migration_stateful", what: "stateful (CRIU) migration" },
  clusterGroups: { extension: "clustering_groups", what: "cluster groups" },
} as const;

export type Feature = keyof typeof FEATURES;

export function supports(extensions: readonly string[], f: Feature): boolean {
  return extensions.includes(FEATURES[f].extension);
}

/** Why a server cannot do it: names the server, the feature and the extension. */
export function lacking(remote: string, f: Feature): string {
  return `server "${remote}" cannot do ${FEATURES[f].what}: it lacks the "${FEATURES[f].extension}" API extension`;
}
