/**
 * lxd-placement: the placement of LXD instances as desired state.
 *
 * ```ts
 * import { Instance } from "lxd-placement";
 * const web = new Instance("web", { image: "busybox", remote: "s1" });
 * ```
 * Change `remote`, `target`, `project`, `storagePool` or `name` and `pulumi up` moves the
 * instance (P1): live where possible, near-live or stop-move-start otherwise, never recreated.
 */
export * from "./instance";
export * from "./group";
