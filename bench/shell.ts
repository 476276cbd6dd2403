/**
 * The benchmark's side of the sandbox: every `lxc` call is a child process with its own deadline
 * (a frozen daemon fails the benchmark instead of hanging it), and its arguments are an array,
 * never a string built by interpolation.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export const ROOT = path.resolve(__dirname, "../..");
export const SANDBOX = path.join(ROOT, ".sandbox");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

export function run(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 256 * 1024 * 1024, env: process.env }, (err, stdout, stderr) => {
      const seconds = (performance.now() - t0) / 1000;
      if (!err) return resolve({ code: 0, stdout: String(stdout), stderr: String(stderr), seconds });
      const killed = (err as { killed?: boolean }).killed;
      const code = typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 124;
      const note = killed ? `\n(${cmd} ${args.join(" ")}: killed after ${Math.round(timeoutMs / 1000)}s)` : "";
      resolve({ code: killed ? 124 : code, stdout: String(stdout), stderr: String(stderr) + note, seconds });
    });
    // EOF on stdin at once: `lxc init` and `lxc launch` read a YAML config from a non-terminal
    // stdin and would wait for it forever.
    child.stdin?.end();
  });
}

/** Run lxc; throws with its stderr when it fails. Returns stdout and the wall time (CLI start-up included). */
export async function lxc(args: string[], timeoutMs = 60_000): Promise<RunResult> {
  const r = await run("lxc", args, timeoutMs);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed (${r.code}): ${lastLine(r.stderr)}`);
  return r;
}

const TIME = "/usr/bin/time";
const hasTime = fs.existsSync(TIME);

/**
 * Run lxc under GNU time when it is there, to learn the CPU seconds the CLI process itself spent
 * (in relay mode every byte passes through it). `cpuSeconds` is undefined without GNU time.
 */
export async function lxcWithCpu(args: string[], timeoutMs: number): Promise<RunResult & { cpuSeconds?: number }> {
  if (!hasTime) return lxc(args, timeoutMs);
  const r = await run(TIME, ["-f", "lxcbench-cpu %U %S", "lxc", ...args], timeoutMs);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed (${r.code}): ${lastLine(r.stderr)}`);
  const m = /lxcbench-cpu ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  return { ...r, cpuSeconds: m ? Number(m[1]) + Number(m[2]) : undefined };
}

/** lxc's progress output is one long line of carriage returns: keep the part a person needs. */
function lastLine(s: string): string {
  const lines = s
    .split(/[\r\n]+/)
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.slice(-2).join(" | ").slice(0, 500);
}

/** Reject if `p` has not settled within `ms` (the work itself may go on; cleanup handles it). */
export function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${Math.round(ms / 1000)}s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Run `fn` over `items` with at most `limit` in flight; results in input order. */
export async function pool<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
