/**
 * What the last update's move did: the `lastMove` output of an Instance. One definition, used by
 * the executor that fills it and the SDK that types it (schema.json's MoveRecord agrees: a unit
 * test compares them).
 */
export interface MoveRecord {
  /** `cross-server`, `copy-within-server`, or the server-side steps (`member`, `project`, `pool`, `rename`, joined with `+`). */
  kind: string;
  /** `cold` (stopped instance), `live`, `near-live` or `stop-move-start`. */
  strategy: string;
  /** Transfer mode for cross-server moves. */
  mode?: string;
  from: string;
  to: string;
  /** Wall time of the move, seconds. */
  durationSeconds: number;
  /** Seconds the instance was not running. */
  downtimeSeconds: number;
  /** Near-live pre-copy rounds performed. */
  preCopyRounds?: number;
  /** `live` when LXD refused a live move (nothing lost, R15) and this move ran instead (strategy `auto`). */
  fallbackFrom?: string;
  /** When the move finished (ISO 8601). */
  at: string;
}
