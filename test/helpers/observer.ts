/**
 * Which API requests a run made, from the sandbox daemons' own logs: the run gets a client
 * certificate of its own (an lxc config directory that copies the sandbox's remotes), trusted on
 * every server, and every request LXD logs (`--debug`: `Handling API request`, `username=<the
 * certificate's fingerprint>`) is attributable to it even while other suites use the sandbox.
 * Used to prove that previews and refreshes change nothing (P2, P5).
 */
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DAEMONS, REMOTES } from "./daemons";
import { LXD_CONF, SANDBOX, lxc, run } from "./sandbox";

export { DAEMONS, REMOTES } from "./daemons";
export const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** Observer certificates a crashed run left trusted, older than this, are removed. */
const STALE_MS = 30 * 60_000;

export interface Request {
  daemon: string;
  method: string;
  url: string;
  username: string;
}

const logFile = (daemon: string) => path.join(SANDBOX, daemon, "lxd.log");

/** Where each daemon's log ends now: requestsSince(mark) reads what comes after. */
export function mark(): Record<string, number> {
  return Object.fromEntries(DAEMONS.map((d) => [d, fs.existsSync(logFile(d)) ? fs.statSync(logFile(d)).size : 0]));
}

/** The API requests each daemon logged since `from` (byte offsets). */
export function requestsSince(from: Record<string, number>): Request[] {
  const out: Request[] = [];
  for (const d of DAEMONS) {
    const file = logFile(d);
    if (!fs.existsSync(file)) continue;
    const size = fs.statSync(file).size;
    const start = size >= (from[d] ?? 0) ? (from[d] ?? 0) : 0; // a restarted daemon starts a new log
    const buf = Buffer.alloc(size - start);
    const fd = fs.openSync(file, "r");
    try {
      fs.readSync(fd, buf, 0, buf.length, start);
    } finally {
      fs.closeSync(fd);
    }
    for (const line of buf.toString("utf8").split("\n")) {
      if (!line.includes('msg="Handling API request"')) continue;
      const field = (k: string) => new RegExp(`\\b${k}=("[^"]*"|\\S+)`).exec(line)?.[1]?.replace(/^"|"$/g, "") ?? "";
      out.push({ daemon: d, method: field("method"), url: field("url"), username: field("username") });
    }
  }
  return out;
}

export class Observer {
  private constructor(
    readonly name: string,
    /** An lxc config directory (LXD_CONF) with the sandbox's remotes and this observer's certificate. */
    readonly confDir: string,
    readonly fingerprint: string,
  ) {}

  /** A certificate of its own, trusted on every remote as `<tag>-<random>`. */
  static async create(tag: string): Promise<Observer> {
    for (const d of fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(`${tag}-conf-`))) {
      const p = path.join(os.tmpdir(), d);
      if (Date.now() - fs.statSync(p).mtimeMs > STALE_MS) fs.rmSync(p, { recursive: true, force: true });
    }
    const confDir = fs.mkdtempSync(path.join(os.tmpdir(), `${tag}-conf-`));
    fs.copyFileSync(path.join(LXD_CONF, "config.yml"), path.join(confDir, "config.yml"));
    fs.cpSync(path.join(LXD_CONF, "servercerts"), path.join(confDir, "servercerts"), { recursive: true });
    const r = await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      path.join(confDir, "client.key"),
      "-out",
      path.join(confDir, "client.crt"),
      "-days",
      "2",
      "-subj",
      `/CN=${tag}`,
    ]);
    if (r.code !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    const fingerprint = new X509Certificate(fs.readFileSync(path.join(confDir, "client.crt"))).fingerprint256.replace(/:/g, "").toLowerCase();
    const name = `${tag}-${Math.random().toString(36).slice(2, 6)}`;
    for (const remote of REMOTES) {
      await dropStale(remote, tag);
      await lxc(["config", "trust", "add", `${remote}:`, path.join(confDir, "client.crt"), "--name", name], { timeoutMs: 30_000 });
    }
    return new Observer(name, confDir, fingerprint);
  }

  /** This observer's requests since `from`. */
  requestsSince(from: Record<string, number>): Request[] {
    return requestsSince(from).filter((r) => r.username === this.fingerprint);
  }

  /** This observer's mutating requests since `from`, as "daemon METHOD url". */
  mutationsSince(from: Record<string, number>): string[] {
    return this.requestsSince(from)
      .filter((r) => MUTATING.has(r.method))
      .map((r) => `${r.daemon} ${r.method} ${r.url}`);
  }

  async drop(): Promise<void> {
    for (const remote of REMOTES) await lxc(["config", "trust", "remove", `${remote}:`, this.fingerprint], { timeoutMs: 30_000 }).catch(() => undefined);
    fs.rmSync(this.confDir, { recursive: true, force: true });
  }
}

/** Observer certificates of `tag` that a crashed run left trusted are removed. */
async function dropStale(remote: string, tag: string): Promise<void> {
  const list = JSON.parse(await lxc(["config", "trust", "list", `${remote}:`, "-f", "json"], { timeoutMs: 30_000 })) as { name: string; certificate: string; fingerprint: string }[];
  for (const c of list) {
    if (!c.name.startsWith(`${tag}-`)) continue;
    if (Date.now() - Date.parse(new X509Certificate(c.certificate).validFrom) < STALE_MS) continue;
    await lxc(["config", "trust", "remove", `${remote}:`, c.fingerprint], { timeoutMs: 30_000 }).catch(() => undefined);
  }
}
