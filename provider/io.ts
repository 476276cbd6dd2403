/**
 * What the move protocol asks of the servers, in its own terms: read copies, write marks, stop,
 * start, delete, copy. The executor and settle are written against this interface only, so the
 * very code that runs against LXD (LxdIo, provider/lxd-io.ts) also runs, unchanged, against the
 * in-memory model of test/unit/protocol-model.test.ts, which injects a crash or a lost response
 * at every step.
 *
 * Errors: a server that does not answer throws an error for which `isSilent` holds (the caller
 * cannot tell whether a mutating request took effect); a PATCH whose If-Match no longer matches
 * throws one for which `isConflict` holds.
 */
import type { Desired } from "./inputs";
import type { Holder, Lease, Place } from "./marks";
import type { Copy } from "./protocol";

export interface TransferRequest {
  from: Place;
  to: Place;
  /** Cluster member to create the copy on (a cluster remote), if one is named. */
  member?: string;
  /** How the data flows: between servers as declared (R5); inside one server "local" or a member-to-member pull. */
  mode: "pull" | "push" | "relay" | "local";
  /** Mark keys the copy is created with (incoming, move, lease). */
  marks: Record<string, string>;
  live: boolean;
  /** Refresh an existing copy (the delta only). */
  refresh: boolean;
  /** Copy a running container without freezing it (a near-live pre-copy). */
  allowInconsistent: boolean;
  desired: Desired;
  id: string;
  timeoutMs: number;
}

export type ServerStep = { kind: "pool"; pool: string } | { kind: "project"; project: string } | { kind: "member"; member: string } | { kind: "rename"; name: string };

export interface MoveIo {
  /** This run: one provider process. */
  readonly run: string;
  now(): number;
  sleep(ms: number): Promise<void>;
  /** Call `fn` every `ms` until the returned function is called; it resolves once a call in flight has ended (lease renewal). */
  every(ms: number, fn: () => Promise<void>): () => Promise<void>;
  /** Every remote a search for a lost instance lists. */
  remotes(): string[];
  /** Whether a remote is configured at all (an unknown remote in the state is an error, never "gone"). */
  knows(remote: string): boolean;
  /** One copy, with its ETag; undefined when there is no instance of that name or it is not this one's. */
  get(p: Place, id: string): Promise<Copy | undefined>;
  /** Every copy of instance `id` on a remote (all projects); `shared` lets concurrent reads share one list. */
  list(remote: string, id: string, opts?: { shared?: boolean }): Promise<Copy[]>;
  /** PATCH config keys ("" removes one), with If-Match when an ETag is given. */
  patch(p: Place, set: Record<string, string>, etag?: string): Promise<void>;
  stop(p: Place, opts?: { force?: boolean; graceSeconds?: number }): Promise<void>;
  start(p: Place): Promise<void>;
  /** Bring a Frozen or stuck Freezing container back to Running. */
  thaw(p: Place): Promise<void>;
  /** Wait (bounded) for an LXD operation an interrupted run left working on this instance. */
  settleTransfers(p: Place): Promise<void>;
  /** Delete; an absent instance counts as deleted. */
  delete(p: Place): Promise<void>;
  rename(p: Place, to: string): Promise<void>;
  transfer(req: TransferRequest): Promise<void>;
  /** A move the server does by itself (R4, R6): one step of pool, project, member or rename. */
  serverStep(p: Place, step: ServerStep, live: boolean, timeoutMs: number): Promise<void>;
  /** Config, devices, profiles and description as declared (R6); true when something changed. */
  applyDeclared(p: Place, d: Desired, id: string): Promise<boolean>;
  /** A step boundary of a move: `LXD_PLACEMENT_CRASH_AT` may end the process here. */
  boundary(step: string, p?: Place): Promise<void>;
  /** This process as a lease holder, and whether another holder's lease still holds. */
  holder(): Holder;
  leaseHolds(l: Lease): boolean;
}
