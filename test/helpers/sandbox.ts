/**
 * Test-side view of the sandbox: every lxc call is async with its own timeout, so a frozen daemon
 * fails a test instead of hanging the run.
 */
import { execFile } from "node:child_process";
import * as path from "node:path";
import { REMOTES } from "./daemons";

export const ROOT = path.resolve(__dirname, "../..");
export const SANDBOX = path.join(ROOT, ".sandbox");
export const LXD_CONF = path.join(SANDBOX, "lxc");

export function run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 60_000, killSignal: "SIGKILL", maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LXD_CONF, ...opts.env } },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 124) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) + (err && code === 124 ? `\n(${cmd} ${args.join(" ")}: timed out)` : "") });
      },
    );
    // Always close stdin: `lxc launch`/`init` read instance config from a non-terminal stdin.
    child.stdin?.end(opts.input ?? "");
  });
}

export async function lxc(args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
  const r = await run("lxc", args, opts);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

export interface Seen {
  remote: string;
  name: string;
  project: string;
  status: string;
  location: string;
  config: Record<string, string>;
}

/** Every instance with the provider's marker, on every remote and project: where things really are. */
export async function findEverywhere(filter: (s: Seen) => boolean = () => true, remotes: readonly string[] = REMOTES): Promise<Seen[]> {
  const out: Seen[] = [];
  for (const r of remotes) {
    const text = await lxc(["list", `${r}:`, "--all-projects", "--format", "json"], { timeoutMs: 30_000 });
    for (const i of JSON.parse(text) as Seen[]) {
      const s = { ...i, remote: r };
      if (filter(s)) out.push(s);
    }
  }
  return out;
}

export async function findByName(name: string): Promise<Seen[]> {
  return findEverywhere((s) => s.name === name || s.name.startsWith(`${name}-lxdp-`));
}

const ref = (remote: string, name: string) => `${remote}:${name}`;

export async function exec(remote: string, project: string, name: string, cmd: string, timeoutMs = 30_000): Promise<string> {
  return lxc(["exec", ref(remote, name), "--project", project, "--", "sh", "-c", cmd], { timeoutMs });
}

/** Write a file of N MiB of random data inside the instance and return its sha256. */
export async function writeData(remote: string, project: string, name: string, file: string, mib = 1): Promise<string> {
  await exec(remote, project, name, `dd if=/dev/urandom of=${file} bs=1M count=${mib} 2>/dev/null && sync`, 120_000);
  return sha(remote, project, name, file);
}

export async function sha(remote: string, project: string, name: string, file: string): Promise<string> {
  const out = await exec(remote, project, name, `sha256sum ${file}`);
  return out.split(/\s+/)[0];
}

/** sha256 of a file read from the instance's filesystem, running or not (lxc file pull). */
export async function shaStopped(remote: string, project: string, name: string, file: string): Promise<string> {
  const fs = await import("node:fs");
  const os = await import("node:os");
  const crypto = await import("node:crypto");
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lxdp-"));
  try {
    await lxc(["file", "pull", `${ref(remote, name)}${file}`, path.join(tmp, "f"), "--project", project], { timeoutMs: 60_000 });
    return crypto
      .createHash("sha256")
      .update(fs.readFileSync(path.join(tmp, "f")))
      .digest("hex");
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export async function config(remote: string, project: string, name: string, key: string): Promise<string> {
  return (await lxc(["config", "get", ref(remote, name), key, "--project", project])).trim();
}

export async function deleteAll(filter: (s: Seen) => boolean): Promise<void> {
  for (const s of await findEverywhere(filter)) {
    await lxc(["delete", "--force", ref(s.remote, s.name), "--project", s.project], { timeoutMs: 60_000 }).catch(() => undefined);
  }
}

export async function sandboxUp(): Promise<void> {
  const r = await run("bash", [path.join(ROOT, "scripts/sandbox.sh"), "up"], { timeoutMs: 180_000 });
  if (r.code !== 0) throw new Error(`sandbox up failed: ${r.stderr}`);
}
