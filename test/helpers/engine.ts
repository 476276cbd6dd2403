// Automation API harness for end-to-end tests: drives the real Pulumi engine (built by
// `npm run setup` into .tools/bin, or a `pulumi` installed on PATH) against a throwaway local
// file backend per stack, under .sandbox/e2e/.
//
//   const s = await TestStack.create({ program: async () => { ... } });
//   const { outputs } = await s.up();
//   const { ops } = await s.preview();         // ops["my-resource"] === "update"
//   afterAll(() => TestStack.cleanupAll());
//
// Every engine call has an overall timeout (default 240 s, E2E_ENGINE_TIMEOUT_MS or
// `timeoutMs` overrides it): the engine is cancelled (SIGINT), and if it has not stopped 10 s
// later, it and its plugins are killed. A failure's error carries the engine's output. Engine
// calls are serialized process-wide: inline programs cannot run in parallel in one process.
// An inline program that throws fails the update with its error in the engine output (instead
// of also leaking an unhandled rejection into jest).
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { CommandError, EngineEvent, LocalWorkspace, OutputMap, PulumiCommand, PulumiFn, Stack } from "@pulumi/pulumi/automation";

export const ROOT = path.resolve(__dirname, "..", "..");
export const TOOLS_BIN = path.join(ROOT, ".tools", "bin");
export const E2E_DIR = path.join(ROOT, ".sandbox", "e2e");
export const DEFAULT_TIMEOUT_MS = Number(process.env.E2E_ENGINE_TIMEOUT_MS) || 240_000;
/** After a timeout, how long the cancelled (SIGINT) engine gets to stop before it is killed. */
const CANCEL_GRACE_MS = 10_000;
/** After the kill, how long to wait for the call to settle. */
const KILL_GRACE_MS = 5_000;
/** How much engine output an error message carries (its tail). */
const OUTPUT_IN_ERROR = 20_000;

export interface CreateOptions {
  projectName?: string;
  program: PulumiFn;
  config?: Record<string, string>;
  /** Overall timeout of each engine call of this stack, in ms. */
  timeoutMs?: number;
  /** Extra environment of the engine and the provider (e.g. another LXD_CONF). */
  env?: Record<string, string>;
}

export interface FromDirOptions {
  timeoutMs?: number;
  /** Extra environment of the engine, the program and the provider (e.g. another LXD_CONF). */
  env?: Record<string, string>;
}

/**
 * Step operation per resource name (the last part of its URN): "create", "update", "same",
 * "delete", "replace"... A replacement is reported by the engine as several steps
 * (create-replacement, replace, delete-replaced): it shows here as "replace"; `steps` has them all.
 */
export type Ops = Record<string, string>;
/** Every step operation per resource name, in the order the engine announced them. */
export type Steps = Record<string, string[]>;

export interface PreviewOutcome {
  summary: Record<string, number>;
  ops: Ops;
  steps: Steps;
  stdout: string;
  stderr?: string;
}

export interface UpOutcome {
  /** Stack outputs as plain values (secrets unwrapped). */
  outputs: Record<string, unknown>;
  summary: Record<string, number>;
  ops: Ops;
  steps: Steps;
  stdout: string;
  stderr?: string;
}

export interface OpOutcome {
  summary: Record<string, number>;
  ops: Ops;
  steps: Steps;
  stdout: string;
  stderr?: string;
}

export interface CallOptions {
  timeoutMs?: number;
}

/** A preview or an up with policy packs: the executables and their config files. */
export interface PolicyOptions extends CallOptions {
  policyPacks?: string[];
  policyPackConfigs?: string[];
}

// ---------------------------------------------------------------------------------------------

/** `cmd` on PATH, leaving out .tools/bin; undefined when there is none. */
function externalCommand(cmd: string): string | undefined {
  const tools = fs.existsSync(TOOLS_BIN) ? fs.realpathSync(TOOLS_BIN) : TOOLS_BIN;
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    let real: string;
    try {
      real = fs.realpathSync(dir);
    } catch {
      continue;
    }
    if (real === tools) continue;
    const file = path.join(dir, cmd);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

let commandPromise: Promise<PulumiCommand> | undefined;

/**
 * The engine to use, by the same rule as scripts/setup.sh: an installed Pulumi (both `pulumi`
 * and `pulumi-language-nodejs` on PATH outside .tools/bin) wins, else the one built into .tools.
 */
export function pulumiCommand(): Promise<PulumiCommand> {
  if (!commandPromise) {
    const external = externalCommand("pulumi");
    let opts: { root?: string; skipVersionCheck: true };
    if (external && externalCommand("pulumi-language-nodejs")) {
      const dir = path.dirname(external);
      opts = path.basename(dir) === "bin" ? { root: path.dirname(dir), skipVersionCheck: true } : { skipVersionCheck: true };
    } else if (fs.existsSync(path.join(TOOLS_BIN, "pulumi"))) {
      opts = { root: path.join(ROOT, ".tools"), skipVersionCheck: true };
    } else {
      return Promise.reject(new Error(`The Pulumi engine is not installed: run \`npm run setup\` (builds it into ${TOOLS_BIN})`));
    }
    commandPromise = PulumiCommand.get(opts);
    commandPromise.catch(() => (commandPromise = undefined));
  }
  return commandPromise;
}

/** Environment for the engine: offline, state and home inside the stack's own temp dir. */
function engineEnv(dir: string): Record<string, string> {
  const env: Record<string, string> = {
    PULUMI_BACKEND_URL: `file://${path.join(dir, "state")}`,
    PULUMI_HOME: path.join(dir, "home"),
    PULUMI_CONFIG_PASSPHRASE: process.env.PULUMI_CONFIG_PASSPHRASE ?? "lxd-placement-e2e",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
    // The dynamic provider launcher (pulumi-resource-pulumi-nodejs) lives in .tools/bin.
    PATH: [TOOLS_BIN, process.env.PATH ?? ""].join(path.delimiter),
  };
  if (process.env.LXD_CONF) env.LXD_CONF = process.env.LXD_CONF;
  return env;
}

let counter = 0;
function uniqueStackName(): string {
  counter += 1;
  const rand = Math.random().toString(36).slice(2, 6);
  return `e2e-${process.pid}-${counter}-${Date.now().toString(36)}-${rand}`;
}

function makeTempDir(stackName: string): string {
  fs.mkdirSync(E2E_DIR, { recursive: true });
  const dir = fs.mkdtempSync(path.join(E2E_DIR, `${stackName}-`));
  fs.mkdirSync(path.join(dir, "state"));
  fs.mkdirSync(path.join(dir, "home"));
  return dir;
}

/** Resource name from a URN: urn:pulumi:stack::project::type::name. */
export function urnName(urn: string): string {
  const i = urn.lastIndexOf("::");
  return i >= 0 ? urn.slice(i + 2) : urn;
}

/** One op per resource from its steps: "replace" if any step is part of a replacement, else the last. */
function summarizeSteps(steps: Steps): Ops {
  const replaceSteps = new Set(["replace", "create-replacement", "delete-replaced", "discard-replaced", "import-replacement"]);
  return Object.fromEntries(Object.entries(steps).map(([name, list]) => [name, list.some((op) => replaceSteps.has(op)) ? "replace" : list[list.length - 1]]));
}

function plainOutputs(outputs: OutputMap): Record<string, unknown> {
  return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, v.value]));
}

function tail(text: string): string {
  return text.length > OUTPUT_IN_ERROR ? `...${text.slice(-OUTPUT_IN_ERROR)}` : text;
}

/**
 * Child processes of this process that run `pulumi` for the given (unique) stack, with all their
 * descendants (the language host, the dynamic provider), and their command lines.
 */
export function engineProcesses(stackName: string): { pid: number; cmd: string }[] {
  const parents = new Map<number, number>();
  const cmds = new Map<number, string>();
  let entries: string[];
  try {
    entries = fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e));
  } catch {
    return []; // no /proc: nothing we can find
  }
  for (const e of entries) {
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
      parents.set(Number(e), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
      cmds.set(Number(e), fs.readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0").join(" ").trim());
    } catch {
      // gone meanwhile
    }
  }
  const tree = new Set<number>();
  for (const [pid, ppid] of parents) if (ppid === process.pid && (cmds.get(pid) ?? "").split(" ").includes(stackName)) tree.add(pid);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!tree.has(pid) && tree.has(ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  return [...tree].map((pid) => ({ pid, cmd: cmds.get(pid) ?? "" }));
}

function killEngine(stackName: string): void {
  for (const { pid } of engineProcesses(stackName)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Inline program wrapper: a throw becomes an error diagnostic, which fails the update. */
function guarded(program: PulumiFn): PulumiFn {
  return async () => {
    try {
      return await program();
    } catch (e) {
      await pulumi.log.error(`inline program failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      return undefined;
    }
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

// One engine call at a time in this process.
let queue: Promise<unknown> = Promise.resolve();
function serialized<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

interface CallIO {
  signal: AbortSignal;
  onOutput: (out: string) => void;
  onError: (err: string) => void;
  onEvent: (e: EngineEvent) => void;
}

// ---------------------------------------------------------------------------------------------

export class TestStack {
  private static readonly live = new Set<TestStack>();
  private removed = false;
  /** Set when an engine call had to be killed: its lock on the stack is left behind. */
  private killed = false;

  private constructor(
    readonly stack: Stack,
    /** The stack's own temp dir (backend state, PULUMI_HOME, inline workDir). */
    readonly dir: string,
    readonly timeoutMs: number,
    /** For on-disk programs: the program's directory (its Pulumi.<stack>.yaml is removed). */
    private readonly programDir?: string,
  ) {
    TestStack.live.add(this);
  }

  get name(): string {
    return this.stack.name;
  }

  /** A stack of an inline program, in a fresh local backend. */
  static async create(opts: CreateOptions): Promise<TestStack> {
    const stackName = uniqueStackName();
    const projectName = opts.projectName ?? "lxd-placement-e2e";
    const dir = makeTempDir(stackName);
    const workDir = path.join(dir, "work");
    fs.mkdirSync(workDir);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    try {
      const pulumiCmd = await pulumiCommand();
      const stack = await serialized(() =>
        withTimeout(`creating stack ${stackName}`, timeoutMs, { kill: () => killEngine(stackName) }, () =>
          LocalWorkspace.createOrSelectStack(
            { stackName, projectName, program: guarded(opts.program) },
            {
              workDir,
              envVars: { ...engineEnv(dir), ...opts.env },
              pulumiCommand: pulumiCmd,
              projectSettings: { name: projectName, runtime: "nodejs", main: workDir },
            },
          ),
        ),
      );
      return await TestStack.configured(new TestStack(stack, dir, timeoutMs), opts.config);
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** A stack of an on-disk program (a directory with Pulumi.yaml), in a fresh local backend. */
  static async fromDir(workDir: string, config?: Record<string, string>, opts: FromDirOptions = {}): Promise<TestStack> {
    const stackName = uniqueStackName();
    const programDir = path.resolve(workDir);
    const dir = makeTempDir(stackName);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    try {
      const pulumiCmd = await pulumiCommand();
      const stack = await serialized(() =>
        withTimeout(`creating stack ${stackName} of ${programDir}`, timeoutMs, { kill: () => killEngine(stackName) }, () =>
          LocalWorkspace.createOrSelectStack({ stackName, workDir: programDir }, { envVars: { ...engineEnv(dir), ...opts.env }, pulumiCommand: pulumiCmd }),
        ),
      );
      return await TestStack.configured(new TestStack(stack, dir, timeoutMs, programDir), config);
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  private static async configured(ts: TestStack, config?: Record<string, string>): Promise<TestStack> {
    try {
      if (config) await ts.setAllConfig(config);
      return ts;
    } catch (e) {
      await ts.remove();
      throw e;
    }
  }

  /** Removes every stack not yet removed (for afterAll). Never throws. */
  static async cleanupAll(): Promise<void> {
    for (const s of [...TestStack.live]) await s.remove();
  }

  async setConfig(key: string, value: string, secret = false): Promise<void> {
    await this.call(`config set ${key}`, () => this.stack.setConfig(key, { value, secret }));
  }

  async setAllConfig(config: Record<string, string>): Promise<void> {
    const map = Object.fromEntries(Object.entries(config).map(([k, value]) => [k, { value }]));
    await this.call("config set-all", () => this.stack.setAllConfig(map));
  }

  async preview(opts: PolicyOptions = {}): Promise<PreviewOutcome> {
    const { policyPacks, policyPackConfigs } = opts;
    const { value: r, ops, steps } = await this.call("preview", (io) => this.stack.preview({ ...io, diff: true, policyPacks, policyPackConfigs }), opts.timeoutMs);
    return { summary: { ...r.changeSummary }, ops, steps, stdout: r.stdout, stderr: r.stderr || undefined };
  }

  async up(opts: CallOptions = {}): Promise<UpOutcome> {
    const { value: r, ops, steps } = await this.call("up", (io) => this.stack.up({ ...io, diff: true }), opts.timeoutMs);
    return {
      outputs: plainOutputs(r.outputs),
      summary: { ...(r.summary.resourceChanges ?? {}) },
      ops,
      steps,
      stdout: r.stdout,
      stderr: r.stderr || undefined,
    };
  }

  async refresh(opts: CallOptions = {}): Promise<OpOutcome> {
    const { value: r, ops, steps } = await this.call("refresh", (io) => this.stack.refresh(io), opts.timeoutMs);
    return { summary: { ...(r.summary.resourceChanges ?? {}) }, ops, steps, stdout: r.stdout, stderr: r.stderr || undefined };
  }

  async destroy(opts: CallOptions = {}): Promise<OpOutcome> {
    const { value: r, ops, steps } = await this.call("destroy", (io) => this.stack.destroy(io), opts.timeoutMs);
    return { summary: { ...(r.summary.resourceChanges ?? {}) }, ops, steps, stdout: r.stdout, stderr: r.stderr || undefined };
  }

  /** The stack's state (a Deployment) as JSON text. */
  async exportStack(): Promise<string> {
    const { value } = await this.call("stack export", () => this.stack.exportStack());
    return JSON.stringify(value, null, 2);
  }

  /** Destroys the resources, removes the stack and its temp dir. Never throws: logs instead. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    TestStack.live.delete(this);
    const name = this.name;
    if (this.killed) {
      // A killed engine leaves its lock; the state is ours alone (temp dir), so drop it.
      try {
        fs.rmSync(path.join(this.dir, "state", ".pulumi", "locks"), { recursive: true, force: true });
      } catch (e) {
        console.warn(`TestStack.remove: removing the locks of ${name} failed: ${msg(e)}`);
      }
    }
    try {
      await this.destroy();
    } catch (e) {
      console.warn(`TestStack.remove: destroy of ${name} failed (resources may be left behind): ${msg(e)}`);
    }
    try {
      await this.call("stack rm", () => this.stack.workspace.removeStack(name, { force: true }));
    } catch (e) {
      console.warn(`TestStack.remove: removing stack ${name} failed: ${msg(e)}`);
    }
    for (const p of [this.dir, this.programDir && path.join(this.programDir, `Pulumi.${name}.yaml`)]) {
      if (!p) continue;
      try {
        fs.rmSync(p, { recursive: true, force: true });
      } catch (e) {
        console.warn(`TestStack.remove: removing ${p} failed: ${msg(e)}`);
      }
    }
  }

  /**
   * Runs one engine call, serialized, with the overall timeout; collects output and step ops,
   * and puts the engine's output into the error when it fails.
   */
  private async call<T>(label: string, fn: (io: CallIO) => Promise<T>, timeoutMs = this.timeoutMs): Promise<{ value: T; ops: Ops; steps: Steps; output: string }> {
    return serialized(async () => {
      let output = "";
      const steps: Steps = {};
      const controller = new AbortController();
      const io: CallIO = {
        signal: controller.signal,
        onOutput: (out) => (output += out),
        onError: (err) => (output += err),
        onEvent: (e) => {
          const m = e.resourcePreEvent?.metadata;
          if (m) (steps[urnName(m.urn)] ??= []).push(m.op);
        },
      };
      try {
        const value = await withTimeout(
          `${label} of stack ${this.name}`,
          timeoutMs,
          {
            cancel: () => controller.abort(),
            kill: () => {
              this.killed = true;
              killEngine(this.name);
            },
          },
          () => fn(io),
        );
        return { value, ops: summarizeSteps(steps), steps, output };
      } catch (e) {
        const err = new Error(`${label} of stack ${this.name} failed: ${describeFailure(e, output)}`);
        (err as { cause?: unknown }).cause = e;
        throw err;
      }
    });
  }
}

/**
 * The message of a failed call: for the engine's own failures (CommandError, whose message
 * repeats all its output) the "error:" lines, then the engine's output once.
 */
function describeFailure(e: unknown, output: string): string {
  if (!output) return msg(e);
  let head = msg(e);
  if (e instanceof CommandError) {
    const errors = output.split("\n").filter((l) => l.startsWith("error:"));
    head = `${e.name}${errors.length ? `: ${errors.join(" / ")}` : ""}`;
  }
  return `${head}\n--- engine output ---\n${tail(output)}`;
}

function msg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Runs fn with an overall timeout. On timeout the engine is cancelled (SIGINT through the
 * abort signal); if the call has not settled CANCEL_GRACE_MS later, the engine is killed. Then
 * the call rejects with a timeout error.
 */
async function withTimeout<T>(what: string, timeoutMs: number, stop: { cancel?: () => void; kill: () => void }, fn: () => Promise<T>): Promise<T> {
  const op = fn();
  const settled = op.then(
    () => true,
    () => true,
  );
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    if (await Promise.race([settled, timedOut])) return await op;
    let how = "engine killed";
    if (stop.cancel) {
      stop.cancel();
      how = "engine cancelled";
      if (!(await Promise.race([settled, sleep(CANCEL_GRACE_MS).then(() => false)]))) {
        stop.kill();
        how = `engine cancelled, then killed after ${CANCEL_GRACE_MS / 1000} s`;
        await Promise.race([settled, sleep(KILL_GRACE_MS)]);
      }
    } else {
      stop.kill();
      await Promise.race([settled, sleep(KILL_GRACE_MS)]);
    }
    throw new Error(`${what} timed out after ${Math.round(timeoutMs / 1000)} s (${how})`);
  } finally {
    if (timer) clearTimeout(timer);
  }
}
