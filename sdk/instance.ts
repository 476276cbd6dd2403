/** The Instance resource: one LXD instance whose placement is desired state. */
import * as pulumi from "@pulumi/pulumi";
import { instanceProvider } from "../provider/shim";

/** How a move is carried out. */
export interface MigrationArgs {
  /**
   * `auto` (default): live where the instance and both servers allow it (R7-R14), else
   * near-live for running containers, else stop-move-start. `live`: require live migration
   * (refused at preview if R8-R12 are unmet, unless `allowRestart`). `near-live`: containers only;
   * pre-copy while running, stop only for the final delta. `stop-move-start`: R2/R3.
   */
  strategy?: pulumi.Input<"auto" | "live" | "near-live" | "stop-move-start">;
  /** Transfer mode between servers (R5): `pull` (default), `push` or `relay`. Example: `"relay"`. */
  mode?: pulumi.Input<"pull" | "push" | "relay">;
  /** Whether a running instance may be stopped briefly to move (default true). With false, a move that needs a restart is refused at preview (P3). */
  allowRestart?: pulumi.Input<boolean>;
  /** Give up a move after this many seconds (default 900), waits for move slots included; the move is then rolled back, or finished if it had already committed (P5). */
  timeoutSeconds?: pulumi.Input<number>;
  /** Near-live: at most this many extra pre-copy rounds while the delta shrinks (default 2). */
  preCopyRounds?: pulumi.Input<number>;
  /** Group whose moves share the limits below (set by {@link InstanceGroup}). Example: `"web"`. */
  group?: pulumi.Input<string>;
  /** At most this many instances of the group down at once: a move holds a slot only for its downtime. Needs `group`. */
  maxUnavailable?: pulumi.Input<number>;
  /** At most this many moves of the group at once (on top of the process-wide limits). Needs `group`. */
  maxConcurrentMoves?: pulumi.Input<number>;
  /** At most this many moves of the group touching one server (a remote, or a cluster member) at once. Needs `group`. */
  maxConcurrentMovesPerServer?: pulumi.Input<number>;
}

/** Inputs of an {@link Instance}. */
export interface InstanceArgs {
  /** LXD name of the instance (default: the resource name). Changing it renames (P1). Example: `"web-1"`. */
  name?: pulumi.Input<string>;
  /** Image alias or fingerprint, resolved on the server the instance is created on. Changing it replaces the instance. Example: `"busybox"`. */
  image: pulumi.Input<string>;
  /** `container` (default) or `virtual-machine`. Changing it replaces the instance: the one true replace. */
  type?: pulumi.Input<"container" | "virtual-machine">;
  /** Instance config (`limits.memory`, `user.*`...). Applied at the target during a move (R6). Example: `{ "limits.memory": "256MiB" }`. */
  config?: pulumi.Input<Record<string, pulumi.Input<string | number | boolean>>>;
  /** Instance devices, e.g. `{ data: { type: "disk", source: "/srv", path: "/srv" } }`. Applied at the target during a move (R6). */
  devices?: pulumi.Input<Record<string, pulumi.Input<Record<string, pulumi.Input<string>>>>>;
  /** Profiles (default `["default"]`); replaced as a list at move time (R6). */
  profiles?: pulumi.Input<pulumi.Input<string>[]>;
  /** Whether the instance runs (default true). A running instance moved with a restart runs again at the target (P4). */
  running?: pulumi.Input<boolean>;
  /** Placement: the LXD server, a remote from the lxc config (`$LXD_CONF/config.yml`); default: its default remote. Example: `"s2"`. */
  remote?: pulumi.Input<string>;
  /** Placement: cluster member (`"m2"`) or cluster group (`"@fast-group"`); clustered remotes only (R4). */
  target?: pulumi.Input<string>;
  /** Placement: LXD project (default `"default"`). */
  project?: pulumi.Input<string>;
  /** Placement: storage pool of the root disk (default: as the profile says). Example: `"fast"`. */
  storagePool?: pulumi.Input<string>;
  /** Description stored on the instance. */
  description?: pulumi.Input<string>;
  /**
   * Take over an existing instance of this name at the declared placement on create, instead of
   * failing because it exists (dynamic providers cannot `pulumi import`). An instance carrying
   * another stack's ownership marker is never taken. Default false.
   */
  adopt?: pulumi.Input<boolean>;
  /** How moves are carried out. */
  migration?: pulumi.Input<MigrationArgs>;
}

import type { MoveRecord } from "../provider/move-record";
export type { MoveRecord };

/**
 * An LXD instance whose placement is desired state. Placement changes are updates that
 * migrate the instance; `pulumi preview` prints the move plan before anything changes (P2).
 */
export class Instance extends pulumi.dynamic.Resource {
  /** LXD name. */
  declare readonly name: pulumi.Output<string>;
  declare readonly image: pulumi.Output<string>;
  declare readonly type: pulumi.Output<"container" | "virtual-machine">;
  declare readonly config: pulumi.Output<Record<string, string>>;
  declare readonly devices: pulumi.Output<Record<string, Record<string, string>>>;
  declare readonly profiles: pulumi.Output<string[]>;
  declare readonly running: pulumi.Output<boolean>;
  /** The remote the instance is on. */
  declare readonly remote: pulumi.Output<string>;
  declare readonly target: pulumi.Output<string | undefined>;
  declare readonly project: pulumi.Output<string>;
  declare readonly storagePool: pulumi.Output<string | undefined>;
  declare readonly description: pulumi.Output<string>;
  declare readonly adopt: pulumi.Output<boolean>;
  declare readonly migration: pulumi.Output<Required<{ strategy: string; mode: string; allowRestart: boolean; timeoutSeconds: number; preCopyRounds: number }>>;
  /** The ownership marker (`user.lxd-placement.id`); also the resource ID. */
  declare readonly instanceId: pulumi.Output<string>;
  /** The cluster member the instance really runs on ("" on a standalone server). */
  declare readonly location: pulumi.Output<string>;
  /** LXD status: `Running`, `Stopped`, ... */
  declare readonly status: pulumi.Output<string>;
  /** What the last move did (absent until the first move). */
  declare readonly lastMove: pulumi.Output<MoveRecord | undefined>;
  /** How many moves this resource has made. */
  declare readonly moves: pulumi.Output<number>;
  /** Set by `pulumi refresh` when an interrupted move left something behind; the next `pulumi up` settles it. */
  declare readonly leftovers: pulumi.Output<string[] | undefined>;

  constructor(name: string, args: InstanceArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      instanceProvider,
      name,
      {
        ...args,
        name: args.name ?? name,
        instanceId: undefined,
        location: undefined,
        status: undefined,
        lastMove: undefined,
        moves: undefined,
        leftovers: undefined,
      },
      opts,
      "lxd-placement",
      "Instance",
    );
  }
}

// Placement policies over a set of instances (docs/policies.md).
