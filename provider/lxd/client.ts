/**
 * The LXD REST client, in the layers of LXD's Go client: a raw request over a transport; a
 * scope (`/1.0`, `project`, `target`) that is a *copy* of the client; the envelope parsed with
 * zod; async responses waited on as operations. Every call has a deadline: a frozen server
 * produces a TimeoutError, never a hang.
 */
import { request as undiciRequest } from "undici";
import WebSocket from "ws";
import { z } from "zod";
import {
  CertificateMismatchError,
  isNotFound,
  isTransient,
  LxdApiError,
  MissingExtensionError,
  NotFoundError,
  NotTrustedError,
  PlacementError,
  TimeoutError,
  UnreachableError,
  type ErrorContext,
} from "./errors";
import { FEATURES, lacking, type Feature } from "../features";
import type { Remote } from "./remotes";
import { openTransport, type Transport } from "./transport";

export const OperationSchema = z
  .object({
    id: z.string(),
    class: z.string().optional(),
    description: z.string().optional(),
    status: z.string(),
    status_code: z.number(),
    metadata: z.record(z.string(), z.unknown()).nullable().optional(),
    may_cancel: z.boolean().optional(),
    err: z.string().optional(),
    location: z.string().optional(),
  })
  .passthrough();
export type Operation = z.infer<typeof OperationSchema>;

const Envelope = z.object({
  type: z.enum(["sync", "async", "error"]),
  status_code: z.number().optional(),
  error_code: z.number().optional(),
  error: z.string().optional(),
  operation: z.string().optional(),
  metadata: z.unknown().optional(),
});

export const ServerSchema = z
  .object({
    api_extensions: z.array(z.string()).default([]),
    auth: z.string().optional(),
    environment: z
      .object({
        certificate: z.string().optional(),
        addresses: z.array(z.string()).nullable().optional(),
        server_clustered: z.boolean().optional(),
        server_name: z.string().optional(),
        server_version: z.string().optional(),
        driver: z.string().optional(),
      })
      .passthrough()
      .default({}),
  })
  .passthrough();
export type Server = z.infer<typeof ServerSchema>;

export interface Scope {
  project?: string;
  target?: string;
}

export interface CallOptions {
  body?: unknown;
  query?: Record<string, string | undefined>;
  timeoutMs?: number;
  etag?: string;
}

/**
 * The requests that carry the scope's `target` (a cluster member): creating an instance there
 * and moving one there (POST /instances, POST /instances/{name}). Decided here, once: every other
 * request is about the cluster as a whole, or about an instance wherever it is.
 */
function takesTarget(method: string, path: string): boolean {
  return method === "POST" && /^\/instances(\/[^/]+)?$/.test(path);
}

export interface Response<T> {
  value: T;
  etag?: string;
  status: number;
  /** Set for async responses. */
  operation?: Operation;
}

/**
 * Where transfer progress goes (`fs_progress` and similar keys of running operations). When set,
 * operation waits poll in short slices so progress appears while a copy runs.
 */
export const progress: { sink?: (remote: string, text: string) => void } = {};

function progressText(meta: Record<string, unknown> | null | undefined): string | undefined {
  if (!meta) return undefined;
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v === "string" && /progress/.test(k) && v) return v;
  }
  return undefined;
}

/** Backoff between attempts of a repeatable request that met a transient LXD error. */
const RETRY_DELAYS_MS = [100, 250, 500, 1_000, 2_000];

/** One request as it is sent, as `onRequest` is told of it. */
export interface RequestSeen {
  remote: string;
  method: string;
  /** Under `/1.0`, without the query: `/instances/c1`, `` for `/1.0` itself. */
  path: string;
  /** The whole query, scope included (`project`, `target`, `recursion`). */
  query: Record<string, string>;
}

export interface ClientOptions {
  /** Per-request deadline in ms (default `LXD_PLACEMENT_REQUEST_TIMEOUT_MS`, else 30 s). */
  timeoutMs?: number;
  /**
   * Told of every request just before it is sent, by this client and every scoped copy of it
   * (a repeat after a transient error is a request too). For programs that run the provider in
   * process and count what it sends (`npm run bench`); it must not throw.
   */
  onRequest?: (r: RequestSeen) => void;
}

/** What a client and its scoped copies share: the server's description, the request listener. */
interface Shared {
  server?: Promise<Server>;
  onRequest?: (r: RequestSeen) => void;
}

export class LxdClient {
  constructor(
    readonly remote: Remote,
    private readonly transport: Transport,
    readonly scope: Scope = {},
    readonly defaultTimeoutMs = 30_000,
    private readonly shared: Shared = {},
  ) {}

  /**
   * Per-request deadline: `LXD_PLACEMENT_REQUEST_TIMEOUT_MS` (default 30 s). Operations (copies)
   * have their own, longer deadline: the instance's `migration.timeoutSeconds`.
   */
  static open(remote: Remote, opts: ClientOptions = {}): LxdClient {
    const env = Number(process.env.LXD_PLACEMENT_REQUEST_TIMEOUT_MS);
    return new LxdClient(remote, openTransport(remote), {}, opts.timeoutMs ?? (env > 0 ? env : 30_000), { onRequest: opts.onRequest });
  }

  get name(): string {
    return this.remote.name;
  }
  get project(): string {
    return this.scope.project ?? "default";
  }

  useProject(project: string | undefined): LxdClient {
    return new LxdClient(this.remote, this.transport, { ...this.scope, project }, this.defaultTimeoutMs, this.shared);
  }
  useTarget(target: string | undefined): LxdClient {
    return new LxdClient(this.remote, this.transport, { ...this.scope, target }, this.defaultTimeoutMs, this.shared);
  }
  /** A copy whose calls give up sooner (cleanup after a failure must not hang on a frozen server). */
  withTimeout(ms: number): LxdClient {
    return new LxdClient(this.remote, this.transport, this.scope, ms, this.shared);
  }

  ctx(extra: ErrorContext = {}): ErrorContext {
    return { remote: this.remote.name, project: this.scope.project, ...extra };
  }

  /**
   * One request. Requests that are safe to repeat (GET, and PUT/PATCH conditional on an ETag,
   * which a repeat after a success turns into a 412) are retried with backoff when LXD answers
   * with a transient error ("database is locked" under load, 503); anything else is sent once.
   */
  async call<T = unknown>(method: string, path: string, opts: CallOptions = {}, schema?: z.ZodType<T>): Promise<Response<T>> {
    const repeatable = method === "GET" || ((method === "PUT" || method === "PATCH") && !!opts.etag);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.callOnce(method, path, opts, schema);
      } catch (e) {
        if (!repeatable || attempt >= RETRY_DELAYS_MS.length || !isTransient(e)) throw e;
        await new Promise((r) => setTimeout(r, RETRY_DELAYS_MS[attempt]));
      }
    }
  }

  private async callOnce<T>(method: string, path: string, opts: CallOptions, schema?: z.ZodType<T>): Promise<Response<T>> {
    const query = new URLSearchParams();
    if (this.scope.project && this.scope.project !== "default") query.set("project", this.scope.project);
    if (this.scope.target && takesTarget(method, path)) query.set("target", this.scope.target);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) query.set(k, v);
    const qs = query.toString();
    const url = `${this.transport.base}/1.0${path}${qs ? `?${qs}` : ""}`;
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const headers: Record<string, string> = {};
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    if (opts.etag) headers["if-match"] = opts.etag;
    this.shared.onRequest?.({ remote: this.remote.name, method, path, query: Object.fromEntries(query) });
    let res;
    try {
      res = await undiciRequest(url, {
        method: method as "GET",
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        dispatcher: this.transport.dispatcher,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      throw this.transportError(e, method, path, timeoutMs);
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (e) {
      throw this.transportError(e, method, path, timeoutMs);
    }
    let env: z.infer<typeof Envelope>;
    try {
      env = Envelope.parse(JSON.parse(text));
    } catch {
      throw new LxdApiError(`${method} ${path}: unexpected response (HTTP ${res.statusCode}): ${text.slice(0, 200)}`, this.ctx({ status: res.statusCode }));
    }
    if (env.type === "error" || res.statusCode >= 400) {
      const msg = env.error || `HTTP ${res.statusCode}`;
      const c = this.ctx({ status: env.error_code ?? res.statusCode });
      if ((env.error_code ?? res.statusCode) === 404) throw new NotFoundError(`${method} ${path}: ${msg}`, c);
      if ((env.error_code ?? res.statusCode) === 403) {
        throw new NotTrustedError(
          `${method} ${path}: ${msg}`,
          c,
          `The server does not trust this client's certificate; trust it with "lxc config trust add" on the server, or re-add the remote with a trust token/password`,
        );
      }
      throw new LxdApiError(`${method} ${path}: ${msg}`, c);
    }
    const etag = typeof res.headers.etag === "string" ? res.headers.etag : undefined;
    if (env.type === "async") {
      const op = OperationSchema.parse(env.metadata);
      return { value: op as unknown as T, etag, status: res.statusCode, operation: op };
    }
    const value = schema ? schema.parse(env.metadata) : (env.metadata as T);
    return { value, etag, status: res.statusCode };
  }

  async get<T = unknown>(path: string, schema?: z.ZodType<T>, opts: CallOptions = {}): Promise<T> {
    return (await this.call("GET", path, opts, schema)).value;
  }

  private transportError(e: unknown, method: string, path: string, timeoutMs: number): PlacementError {
    for (let c: unknown = e; c; c = (c as { cause?: unknown }).cause) {
      if (PlacementError.is(c)) return c;
      const code = (c as { code?: string }).code;
      const name = (c as { name?: string }).name;
      if (name === "TimeoutError" || code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT" || code === "UND_ERR_CONNECT_TIMEOUT" || code === "UND_ERR_ABORTED") {
        return new TimeoutError(`${method} ${path}: no answer within ${Math.round(timeoutMs / 1000)}s`, this.ctx(), "The server may be frozen or overloaded", { cause: e });
      }
      if (code === "ECONNREFUSED" || code === "ENOENT" || code === "ECONNRESET" || code === "EHOSTUNREACH" || code === "UND_ERR_SOCKET") {
        return new UnreachableError(`${method} ${path}: cannot reach ${this.remote.addr} (${code})`, this.ctx(), undefined, { cause: e });
      }
      if (typeof code === "string" && /CERT|SELF_SIGNED|UNABLE_TO/.test(code)) {
        return new CertificateMismatchError(
          `the server's certificate is not the pinned one (${code})`,
          this.ctx(),
          `If the server was reinstalled on purpose, re-trust it: "lxc remote remove ${this.remote.name}" then "lxc remote add ${this.remote.name} ${this.remote.addr}"`,
          { cause: e },
        );
      }
    }
    return new UnreachableError(`${method} ${path}: ${(e as Error)?.message ?? String(e)}`, this.ctx(), undefined, { cause: e });
  }

  /** `GET /1.0`, cached per remote for the life of the client. */
  server(): Promise<Server> {
    if (!this.shared.server) {
      this.shared.server = this.get("", ServerSchema).catch((e) => {
        this.shared.server = undefined;
        throw e;
      });
    }
    return this.shared.server;
  }

  async hasExtension(name: string): Promise<boolean> {
    return (await this.server()).api_extensions.includes(name);
  }

  /** Check extensions before anything is sent (as LXD's Go client does). */
  async requireExtensions(names: string[], side: string): Promise<void> {
    const s = await this.server();
    if (s.auth && s.auth !== "trusted") {
      throw new NotTrustedError(
        `the server ${side ? `(${side}) ` : ""}does not trust this client`,
        this.ctx(),
        `Trust the client certificate on ${this.remote.name} ("lxc config trust add"), then run again`,
      );
    }
    for (const n of names) {
      if (!s.api_extensions.includes(n)) {
        throw new MissingExtensionError(`the ${side} server is missing the required "${n}" API extension`, this.ctx());
      }
    }
  }

  /** Before a request that needs an optional feature: an error naming the server and the extension, nothing sent. */
  async requireFeature(f: Feature): Promise<void> {
    const s = await this.server();
    if (!s.api_extensions.includes(FEATURES[f].extension)) throw new MissingExtensionError(lacking(this.remote.name, f), this.ctx());
  }

  /** Wait for an operation to finish; throws LxdApiError with the operation's `err` on failure. */
  async wait(op: Operation | string, timeoutMs = 600_000): Promise<Operation> {
    const id = typeof op === "string" ? op : op.id;
    const deadline = Date.now() + timeoutMs;
    let lastProgress: string | undefined;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new TimeoutError(`operation did not finish within ${Math.round(timeoutMs / 1000)}s`, this.ctx({ operation: id }));
      }
      const slice = Math.max(1, Math.min(progress.sink ? 3 : 30, Math.floor(left / 1000)));
      let cur: Operation;
      try {
        cur = (await this.call("GET", `/operations/${id}/wait`, { query: { timeout: String(slice) }, timeoutMs: slice * 1000 + Math.min(15_000, this.defaultTimeoutMs) }, OperationSchema)).value;
      } catch (e) {
        if (isNotFound(e)) {
          throw new LxdApiError(`operation vanished before its result was read`, this.ctx({ operation: id }));
        }
        throw e;
      }
      if (cur.status_code >= 400) throw new LxdApiError(cur.err || cur.status, this.ctx({ operation: id }));
      if (cur.status_code === 200) return cur;
      const p = progressText(cur.metadata);
      if (p && progress.sink && p !== lastProgress) progress.sink(this.remote.name, p);
      lastProgress = p;
    }
  }

  /** Cancel an operation if LXD allows it; errors are swallowed (best effort during cleanup). */
  async cancel(opId: string): Promise<void> {
    await this.withTimeout(5_000)
      .call("DELETE", `/operations/${opId}`)
      .catch(() => undefined);
  }

  /**
   * Open an operation websocket (relay). Resolves once open. Frames are held from the moment the
   * socket exists (`ws` can deliver frames that came in the same read as the handshake before a
   * caller could listen); `takeHeld()` stops holding and hands them over in order.
   */
  websocket(opId: string, secret: string, timeoutMs = 10_000): Promise<HeldSocket> {
    const qs = new URLSearchParams({ secret });
    if (this.scope.project && this.scope.project !== "default") qs.set("project", this.scope.project);
    const url = `${this.transport.wsBase}/1.0/operations/${opId}/websocket?${qs}`;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { ...this.transport.wsOptions, handshakeTimeout: timeoutMs });
      ws.binaryType = "nodebuffer";
      const held: [Buffer, boolean][] = [];
      const hold = (d: Buffer, bin: boolean) => held.push([d, bin]);
      ws.on("message", hold);
      const takeHeld = () => {
        ws.off("message", hold);
        return held.splice(0);
      };
      ws.once("open", () => resolve(Object.assign(ws, { takeHeld })));
      ws.once("error", (e) => reject(this.transportError(e, "WS", `/operations/${opId}/websocket`, timeoutMs)));
    });
  }

  async close(): Promise<void> {
    await this.transport.close().catch(() => undefined);
  }
}

export type HeldSocket = WebSocket & { takeHeld(): [Buffer, boolean][] };

/** Opens one client per remote and closes them all; the unit of work for one provider call. */
export class ClientPool {
  private clients = new Map<string, LxdClient>();
  constructor(
    private readonly resolve: (name: string) => Remote,
    private readonly opts: ClientOptions = {},
  ) {}
  get(name: string): LxdClient {
    let c = this.clients.get(name);
    if (!c) {
      c = LxdClient.open(this.resolve(name), this.opts);
      this.clients.set(name, c);
    }
    return c;
  }
  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.close()));
    this.clients.clear();
  }
}
