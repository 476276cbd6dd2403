/**
 * Remotes come from the very file a user's `lxc` reads: `$LXD_CONF/config.yml` (default
 * `~/.config/lxc`), with the client certificate beside it and each server's pinned certificate in
 * `servercerts/<remote>.crt`. Nothing here is captured in Pulumi state: the provider reads it at
 * call time, so keys never land in the serialized program (README, "Reliability": Trust).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { RemoteConfigError } from "./errors";

export interface Remote {
  name: string;
  /** `https://host:port` or `unix://` (local socket). */
  addr: string;
  /** Unix socket path for local remotes. */
  socketPath?: string;
  /** PEM of the pinned server certificate (https remotes). */
  serverCert?: string;
  clientCert?: string;
  clientKey?: string;
}

export interface RemoteSet {
  confDir: string;
  defaultRemote: string;
  /** The remotes to search. The implicit `local` is among them only if its socket exists; get() resolves it either way. */
  names: string[];
  get(name: string): Remote;
}

const ConfigYaml = z.object({
  "default-remote": z.string().optional(),
  remotes: z.record(z.string(), z.object({ addr: z.string(), protocol: z.string().optional(), public: z.boolean().optional() }).passthrough()).optional(),
});

export function confDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.LXD_CONF || path.join(os.homedir(), ".config", "lxc");
}

function readIf(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

function localSocket(env: NodeJS.ProcessEnv): string {
  if (env.LXD_SOCKET) return env.LXD_SOCKET;
  if (env.LXD_DIR) return path.join(env.LXD_DIR, "unix.socket");
  for (const p of ["/var/lib/lxd/unix.socket", "/var/snap/lxd/common/lxd/unix.socket"]) if (fs.existsSync(p)) return p;
  return "/var/lib/lxd/unix.socket";
}

/**
 * Remotes declared in stack config (`lxd-placement:remotes`, a JSON object; set it with
 * `pulumi config set --secret` since it carries the client key). They add to, and override, the
 * lxc config's remotes. They reach the provider through `configure()`, never through resource
 * inputs, so neither the key nor the certificates land in resource state.
 */
export const StackRemotesSchema = z.record(
  z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/),
  z
    .object({
      addr: z.string().regex(/^https:\/\/[^/]+$/, "addr must be https://HOST:PORT"),
      serverCert: z.string().includes("BEGIN CERTIFICATE", { message: "serverCert must be the server's PEM certificate (pinned)" }),
      clientCert: z.string().includes("BEGIN CERTIFICATE").optional(),
      clientKey: z.string().includes("PRIVATE KEY").optional(),
    })
    .strict(),
);
export type StackRemotes = z.infer<typeof StackRemotesSchema>;

/** The stack config key both the provider and the program (InstanceGroup) read remotes from. */
export const STACK_REMOTES_KEY = "lxd-placement:remotes";

/** Parse the stack config `lxd-placement:remotes` (JSON); absent or empty means none. */
export function parseStackRemotes(raw: string | undefined): StackRemotes {
  if (!raw) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new RemoteConfigError(`stack config ${STACK_REMOTES_KEY} is not valid JSON`, { field: STACK_REMOTES_KEY });
  }
  const r = StackRemotesSchema.safeParse(parsed);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new RemoteConfigError(`stack config ${STACK_REMOTES_KEY}: ${i.path.join(".")}: ${i.message}`, { field: STACK_REMOTES_KEY });
  }
  return r.data;
}

/**
 * Load remotes from `$LXD_CONF/config.yml`. A missing file means only the local socket exists.
 * `lxc` always knows a `local` remote, even when its config names none: so does get(). It is
 * searched (in `names`) only when the config names it or its socket exists, so that hosts without
 * a local daemon do not probe it on every lookup.
 */
export function loadRemotes(env: NodeJS.ProcessEnv = process.env, stack: StackRemotes = {}): RemoteSet {
  const dir = confDir(env);
  const file = path.join(dir, "config.yml");
  const text = readIf(file);
  let parsed: z.infer<typeof ConfigYaml> = {};
  if (text !== undefined) {
    const r = ConfigYaml.safeParse(parseYaml(text) ?? {});
    if (!r.success) throw new RemoteConfigError(`cannot read ${file}: ${r.error.issues[0]?.message}`);
    parsed = r.data;
  }
  const implicitLocal = !parsed.remotes?.local && !stack.local;
  const entries: Record<string, { addr: string }> = { local: { addr: "unix://" }, ...(parsed.remotes ?? {}) };
  const clientCert = readIf(path.join(dir, "client.crt"));
  const clientKey = readIf(path.join(dir, "client.key"));
  for (const [n, r] of Object.entries(stack)) entries[n] = { addr: r.addr };
  const names = Object.keys(entries).filter((n) => !["images", "ubuntu", "ubuntu-daily", "ubuntu-minimal"].includes(n) && !(n === "local" && implicitLocal && !fs.existsSync(localSocket(env))));
  const defaultRemote = parsed["default-remote"] ?? "local";
  return {
    confDir: dir,
    defaultRemote,
    names,
    get(name: string): Remote {
      const e = entries[name];
      if (!e || !(names.includes(name) || (name === "local" && implicitLocal))) {
        throw new RemoteConfigError(
          `unknown remote "${name}"`,
          { remote: name, field: "remote" },
          `Known remotes (${file}${Object.keys(stack).length ? ` and stack config ${STACK_REMOTES_KEY}` : ""}): ${names.join(", ")}. Add it with "lxc remote add ${name} https://HOST:8443", or to stack config ${STACK_REMOTES_KEY}`,
        );
      }
      const fromStack = stack[name];
      if (fromStack) {
        const cert = fromStack.clientCert ?? clientCert;
        const key = fromStack.clientKey ?? clientKey;
        if (!cert || !key) throw new RemoteConfigError(`remote "${name}" from stack config has no client certificate/key, and ${dir} has none either`, { remote: name });
        return { name, addr: fromStack.addr, serverCert: fromStack.serverCert, clientCert: cert, clientKey: key };
      }
      if (e.addr.startsWith("unix:")) {
        const p = e.addr.replace(/^unix:\/\//, "");
        return { name, addr: e.addr, socketPath: p || localSocket(env) };
      }
      const serverCert = readIf(path.join(dir, "servercerts", `${name}.crt`));
      if (!serverCert) {
        throw new RemoteConfigError(
          `no pinned certificate for remote "${name}" (${path.join(dir, "servercerts", `${name}.crt`)})`,
          { remote: name },
          `Re-add the remote with "lxc remote add ${name} ${e.addr}" to pin its certificate`,
        );
      }
      if (!clientCert || !clientKey) {
        throw new RemoteConfigError(`no client certificate in ${dir} (client.crt, client.key)`, { remote: name });
      }
      return { name, addr: e.addr.replace(/\/+$/, ""), serverCert, clientCert, clientKey };
    },
  };
}
