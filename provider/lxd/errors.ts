/**
 * One error family for everything the provider reports. Each class carries a stable `code`
 * (what scripts and tests match on), the context it happened in, and where possible a
 * remediation sentence. Identity survives two copies of this module being loaded (the dynamic
 * provider host may load the package twice) through a `Symbol.for` marker, as undici does.
 */
const MARK = Symbol.for("lxd-placement.error");

export interface ErrorContext {
  remote?: string;
  project?: string;
  instance?: string;
  operation?: string;
  status?: number;
  field?: string;
  rule?: string;
}

export class PlacementError extends Error {
  readonly code: string = "LXDP_ERROR";
  readonly context: ErrorContext;
  readonly remedy?: string;
  readonly [MARK] = true;

  constructor(message: string, context: ErrorContext = {}, remedy?: string, options?: { cause?: unknown }) {
    super(PlacementError.compose(message, context, remedy), options);
    this.name = new.target.name;
    this.context = context;
    this.remedy = remedy;
    // These errors are written for users: the engine prints `stack`, and a JavaScript trace
    // under a refusal that names the field, the rule and the fix only hides it.
    this.stack = `${this.name}: ${this.message}`;
    // Thrown in a program (InstanceGroup reads LXD there), the Node.js language host prints a
    // RunError's message alone instead of an "unhandled exception" dump; it knows the brand.
    Object.defineProperty(this, "__pulumiRunError", { value: true });
  }

  static is(e: unknown): e is PlacementError {
    return typeof e === "object" && e !== null && (e as Record<symbol, unknown>)[MARK] === true;
  }

  private static compose(message: string, c: ErrorContext, remedy?: string): string {
    const where = [
      c.rule && `rule ${c.rule}`,
      c.remote && `remote "${c.remote}"`,
      c.project && `project "${c.project}"`,
      c.instance && `instance "${c.instance}"`,
      c.operation && `operation ${c.operation}`,
    ].filter(Boolean);
    let text = message;
    if (where.length) text += ` (${where.join(", ")})`;
    if (remedy) text += `. ${remedy}`;
    return text;
  }
}

/**
 * A member of the family: a class of its own, so that `instanceof` and the printed name say which,
 * with its stable code. The members differ in nothing else.
 */
function kind(name: string, code: string): typeof PlacementError {
  const named = {
    [name]: class extends PlacementError {
      override readonly code = code;
    },
  };
  return named[name];
}

/** LXD answered with an error envelope or a non-2xx status. */
export const LxdApiError = kind("LxdApiError", "LXDP_API");
/** The instance (or another named object) does not exist. */
export const NotFoundError = kind("NotFoundError", "LXDP_NOT_FOUND");
/** A server lacks an API extension a step needs; nothing was sent. */
export const MissingExtensionError = kind("MissingExtensionError", "LXDP_MISSING_EXTENSION");
/** The server could not be reached (refused, reset, DNS, socket missing). */
export const UnreachableError = kind("UnreachableError", "LXDP_UNREACHABLE");
/** A call or an operation did not finish within its deadline. */
export const TimeoutError = kind("TimeoutError", "LXDP_TIMEOUT");
/** The server presented a certificate other than the pinned one. */
export const CertificateMismatchError = kind("CertificateMismatchError", "LXDP_CERT_MISMATCH");
/** The server does not trust the client certificate. */
export const NotTrustedError = kind("NotTrustedError", "LXDP_NOT_TRUSTED");
/** The remote is not configured (lxc config.yml or stack config). */
export const RemoteConfigError = kind("RemoteConfigError", "LXDP_REMOTE_CONFIG");
/** An input is invalid or violates a rule; raised at check/preview before any change. */
export const InputError = kind("InputError", "LXDP_INPUT");
/** A move was refused (prerequisites unmet); raised before anything changes. */
export const PlanRefusedError = kind("PlanRefusedError", "LXDP_PLAN_REFUSED");
/** Another run holds the instance's lease (it is moving or settling it); nothing was changed. */
export const LeasedError = kind("LeasedError", "LXDP_LEASED");

/**
 * How a failed move ended, read from the servers afterwards (never assumed): rolled back (the
 * instance is at its source), finished anyway, or undecided (a server did not answer; nothing more
 * was changed and a later run decides).
 */
export type MoveOutcome = "rolled-back" | "undecided";

/** A move failed part-way; the message says where the instance is now, and so do the fields. */
export class MoveFailedError extends PlacementError {
  readonly code = "LXDP_MOVE_FAILED";
  outcome: MoveOutcome = "undecided";
  /** Where the instance was read after the failure (`remote:project/name`), when it could be read. */
  at?: string;
  /** Whether it was running there. */
  running?: boolean;
  static with(outcome: MoveOutcome, message: string, context: ErrorContext, remedy?: string, options?: { cause?: unknown; at?: string; running?: boolean }): MoveFailedError {
    const e = new MoveFailedError(message, context, remedy, options);
    e.outcome = outcome;
    e.at = options?.at;
    e.running = options?.running;
    return e;
  }
}

/** The server did not answer (no connection, or no answer in time): a mutating request may or may not have taken effect. */
export function isSilent(e: unknown): boolean {
  return PlacementError.is(e) && (e.code === "LXDP_TIMEOUT" || e.code === "LXDP_UNREACHABLE");
}

/** A write with If-Match found the instance changed since it was read (HTTP 412). */
export function isConflict(e: unknown): boolean {
  return PlacementError.is(e) && e.context.status === 412;
}

export function isNotFound(e: unknown): boolean {
  return PlacementError.is(e) && e.code === "LXDP_NOT_FOUND";
}

/**
 * LXD's transient errors: its database briefly busy (a cluster under load answers "database is
 * locked"), or a 503 while a member starts. Worth retrying for requests that are safe to repeat.
 */
export function isTransient(e: unknown): boolean {
  if (!PlacementError.is(e) || e.code !== "LXDP_API") return false;
  return e.context.status === 503 || /database is locked|database is busy|database table is locked|\bSQLITE_BUSY\b/i.test(e.message);
}
