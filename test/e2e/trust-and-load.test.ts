/**
 * Trust and load through the real engine against the real sandbox:
 * - the client key never reaches the Pulumi state or the engine's output, on success or error;
 * - a server whose certificate is not the pinned one, or that does not trust the client, fails
 *   the preview with a sentence that says so and how to fix it, not a stack trace;
 * - one `pulumi up` moving 12 running containers s1 -> s2 with
 *   LXD_PLACEMENT_MAX_MOVES_PER_REMOTE=3 moves each exactly once, and never has more than 3
 *   copies in flight on s2.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { INCOMING_KEY } from "../../provider/marks";
import { TestStack } from "../helpers/engine";
import { LXD_CONF, deleteAll, findEverywhere, run } from "../helpers/sandbox";
// The built SDK, as a user's program loads it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Instance } = require("../../bin/sdk") as typeof import("../../sdk");

type Spec = Record<string, unknown>;

// This run's own names: other runs of this file may use the sandbox at the same time.
const RUN = Math.random().toString(36).slice(2, 6);
const PREFIX = `tl-${RUN}-`;
const SECRET_NAME = `${PREFIX}sec`;
const LOAD = 20;
/** Of the LOAD, these many move between servers (s1 -> s2); the rest between cluster members (m1 -> m2). */
const CROSS = 12;
const LIMIT = 3;
const loadName = (i: number) => `${PREFIX}l${String(i).padStart(2, "0")}`;
/** Leftovers of earlier, crashed runs: tl-* instances older than this are removed first. */
const STALE_MS = 30 * 60_000;
const INCOMING = INCOMING_KEY;

/** A program of one resource per entry, exporting each one's placement. */
function programOf(specs: { current: Record<string, Spec> }) {
  return async () => {
    const out: Record<string, unknown> = {};
    for (const [name, spec] of Object.entries(specs.current)) {
      const i = new Instance(name, spec as never);
      out[name] = { remote: i.remote, location: i.location, status: i.status, moves: i.moves, lastMove: i.lastMove };
    }
    return out;
  };
}

const tempDirs: string[] = [];
function tempDir(tag: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `tl-${tag}-`));
  tempDirs.push(d);
  return d;
}

/** A self-signed EC certificate and key, as `lxc` would make for a client (or a stranger server). */
async function makeCert(dir: string, cn: string): Promise<{ crt: string; key: string }> {
  const crt = path.join(dir, `${cn}.crt`);
  const key = path.join(dir, `${cn}.key`);
  const r = await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", `/CN=${cn}`]);
  if (r.code !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return { crt, key };
}

/** A copy of the sandbox's lxc config to tamper with. */
function copyConf(tag: string): string {
  const d = tempDir(tag);
  fs.cpSync(LXD_CONF, d, { recursive: true });
  return d;
}

/** The base64 body lines of the client key: none of them may leave the provider. */
const keyPem = fs.readFileSync(path.join(LXD_CONF, "client.key"), "utf8");
const keyLines = keyPem
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("-----"));

function leaks(text: string): string[] {
  const found = keyLines.filter((l) => text.includes(l)).map((l) => `key line ${l.slice(0, 8)}...`);
  if (text.includes("PRIVATE KEY")) found.push('"PRIVATE KEY"');
  return found;
}

/**
 * A failed engine call: `shown` is what the user sees (the engine's error lines and output), and
 * `all` adds the Automation API's own error (its full stdout/stderr), for the leak checks.
 */
async function rejection(p: Promise<unknown>): Promise<{ shown: string; all: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as Error & { cause?: unknown };
    return { shown: err.message, all: [err.message, String(err.cause ?? "")].join("\n") };
  }
  throw new Error("expected the engine call to fail, it succeeded");
}

/** Every file under a directory, concatenated (the backend's state, history and backups). */
function allFiles(dir: string): string {
  let out = "";
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out += allFiles(p);
    else if (e.isFile()) out += `\n${fs.readFileSync(p, "latin1")}`;
  }
  return out;
}

const NO_STACK = /\n\s+at .+:\d+:\d+/;

beforeAll(async () => {
  expect(keyLines.length).toBeGreaterThanOrEqual(2);
  expect(keyPem).toContain("PRIVATE KEY");
  await deleteAll((s) => s.name.startsWith("tl-") && Date.now() - Date.parse((s as unknown as { created_at: string }).created_at) > STALE_MS);
});

afterAll(async () => {
  await TestStack.cleanupAll();
  await deleteAll((s) => s.name.startsWith(PREFIX));
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

describe("trust: secrets stay out of the state and the output", () => {
  const specs = { current: {} as Record<string, Spec> };
  let stack: TestStack;
  const sandboxConf = process.env.LXD_CONF ?? LXD_CONF;

  beforeAll(async () => {
    specs.current = { sec: { name: SECRET_NAME, image: "busybox", remote: "s1" } };
    stack = await TestStack.create({ projectName: "trust", program: programOf(specs) });
    stack.stack.workspace.envVars.LXD_CONF = sandboxConf;
  });

  it("an up that creates an instance: neither the exported state, the state files nor the engine output carry the client key", async () => {
    const r = await stack.up();
    expect(r.ops.sec).toBe("create");
    expect((r.outputs.sec as { status: string }).status).toBe("Running");
    const state = await stack.exportStack();
    // The state is the real thing: the instance and its serialized provider are in it.
    expect(state).toContain(SECRET_NAME);
    expect(state).toContain("__provider");
    expect(leaks(state)).toEqual([]);
    expect(leaks(allFiles(path.join(stack.dir, "state")))).toEqual([]);
    expect(leaks(r.stdout)).toEqual([]);
    expect(leaks(r.stderr ?? "")).toEqual([]);
  });

  it("P3: a refused preview (R12) says why, and its output does not carry the client key either", async () => {
    specs.current = { sec: { name: SECRET_NAME, image: "busybox", remote: "s2", migration: { strategy: "live", allowRestart: false } } };
    const out = await rejection(stack.preview());
    expect(out.shown).toMatch(/error: migration\.strategy: live migration impossible: .*network device.*R12/);
    expect(leaks(out.all)).toEqual([]);
    specs.current = { sec: { name: SECRET_NAME, image: "busybox", remote: "s1" } };
  });

  it("a check failure (unknown remote) does not carry the client key", async () => {
    specs.current = {
      sec: { name: SECRET_NAME, image: "busybox", remote: "s1" },
      other: { name: `${PREFIX}other`, image: "busybox", remote: "no-such-remote" },
    };
    const out = await rejection(stack.preview());
    expect(out.shown).toMatch(/property remote value \{no-such-remote\} has a problem: unknown remote "no-such-remote"/);
    expect(leaks(out.all)).toEqual([]);
    specs.current = { sec: { name: SECRET_NAME, image: "busybox", remote: "s1" } };
  });

  describe("an untrusted or impostor server, through the engine", () => {
    afterEach(() => {
      stack.stack.workspace.envVars.LXD_CONF = sandboxConf;
      specs.current = { sec: { name: SECRET_NAME, image: "busybox", remote: "s1" } };
    });

    it("s2 presenting a certificate other than the pinned one: the preview says so and how to re-trust it, no stack trace", async () => {
      const conf = copyConf("pin");
      const other = await makeCert(tempDir("cert"), "not-s2");
      fs.copyFileSync(other.crt, path.join(conf, "servercerts", "s2.crt"));
      stack.stack.workspace.envVars.LXD_CONF = conf;
      specs.current = {
        sec: { name: SECRET_NAME, image: "busybox", remote: "s1" },
        onS2: { name: `${PREFIX}new`, image: "busybox", remote: "s2" },
      };
      const out = await rejection(stack.preview());
      const errors = out.shown
        .split("\n")
        .filter((l) => l.startsWith("error:"))
        .join("\n");
      expect(errors).toMatch(/resource 'onS2': property remote .*has a problem: cannot validate against remote "s2": the server's certificate is not the pinned one/);
      expect(errors).toMatch(/re-trust it: "lxc remote remove s2" then "lxc remote add s2 https:\/\/127\.0\.0\.1:8444"/);
      expect(out.shown).not.toMatch(NO_STACK);
      expect(leaks(out.all)).toEqual([]);
      // Nothing was created anywhere.
      expect(await findEverywhere((s) => s.name === `${PREFIX}new`)).toEqual([]);
    });

    it("a client certificate s2 does not trust: the preview says so and how to trust it, no stack trace", async () => {
      const conf = copyConf("untrusted");
      const stranger = await makeCert(tempDir("cert"), "stranger");
      fs.copyFileSync(stranger.crt, path.join(conf, "client.crt"));
      fs.copyFileSync(stranger.key, path.join(conf, "client.key"));
      stack.stack.workspace.envVars.LXD_CONF = conf;
      specs.current = {
        onS2: { name: `${PREFIX}new`, image: "busybox", remote: "s2" },
      };
      const out = await rejection(stack.preview());
      const errors = out.shown
        .split("\n")
        .filter((l) => l.startsWith("error:"))
        .join("\n");
      expect(errors).toMatch(/property remote .*has a problem: cannot validate against remote "s2": .*does not trust this client/);
      expect(errors).toMatch(/lxc config trust add/);
      expect(out.shown).not.toMatch(NO_STACK);
      // Neither this key nor the real one appears.
      expect(leaks(out.all)).toEqual([]);
      const strangerLines = fs
        .readFileSync(stranger.key, "utf8")
        .split("\n")
        .filter((l) => l && !l.startsWith("-----"));
      expect(strangerLines.filter((l) => out.all.includes(l))).toEqual([]);
    });
  });
});

describe(`load: one up moves ${LOAD} running containers, ${CROSS} s1 -> s2 and ${LOAD - CROSS} cluster m1 -> m2, at most ${LIMIT} at a time per remote`, () => {
  const specs = { current: {} as Record<string, Spec> };
  let stack: TestStack;
  const names = Array.from({ length: LOAD }, (_, i) => loadName(i));
  const cross = names.slice(0, CROSS);
  const members = names.slice(CROSS);
  // before: s1 and cluster member m1; after: s2 and member m2.
  const at = (phase: "before" | "after") =>
    Object.fromEntries([
      ...cross.map((n) => [n, { name: n, image: "busybox", remote: phase === "before" ? "s1" : "s2" }]),
      ...members.map((n) => [n, { name: n, image: "busybox", remote: "cluster", target: phase === "before" ? "m1" : "m2" }]),
    ]);
  const expected = (phase: "before" | "after") =>
    [...cross.map((n) => `${phase === "before" ? "s1" : "s2"} ${n} Running`), ...members.map((n) => `cluster@${phase === "before" ? "m1" : "m2"} ${n} Running`)].sort();
  const seenAs = (s: { remote: string; name: string; status: string; location?: string }) => `${s.remote}${s.remote === "cluster" ? `@${s.location}` : ""} ${s.name} ${s.status}`;

  beforeAll(async () => {
    specs.current = at("before");
    stack = await TestStack.create({ projectName: "load", program: programOf(specs), timeoutMs: 600_000 });
    stack.stack.workspace.envVars.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE = String(LIMIT);
  }, 120_000);

  it(`creates ${LOAD} running containers on s1 and m1`, async () => {
    const t = Date.now();
    const r = await stack.up();
    console.log(`load: created ${LOAD} containers on s1 and m1 in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    expect(names.map((n) => r.ops[n])).toEqual(names.map(() => "create"));
    const seen = await findEverywhere((s) => s.name.startsWith(PREFIX) && names.includes(s.name));
    expect(seen.map(seenAs).sort()).toEqual(expected("before"));
  }, 600_000);

  it(`moves all ${LOAD} in one up, each exactly once, with at most ${LIMIT} moves in flight per remote`, async () => {
    specs.current = at("after");
    // A move is in flight on a remote while a copy of it there is marked incoming, or (a member
    // move inside the cluster) while one of its copies there is not running.
    const peak: Record<string, number> = { s2: 0, cluster: 0 };
    const flight: Record<string, number> = { s2: 0, cluster: 0 };
    let polls = 0;
    let done = false;
    const poll = (async () => {
      while (!done) {
        for (const remote of ["s2", "cluster"]) {
          const r = await run("lxc", ["list", `${remote}:`, "-f", "json"], { timeoutMs: 30_000 });
          if (r.code !== 0) continue;
          const list = JSON.parse(r.stdout) as { name: string; status: string; config: Record<string, string> }[];
          // A near-live copy inside the cluster runs under a temporary name, "<name>-lxdp-<id>".
          const base = (n: string) => n.replace(/-lxdp-[0-9a-f]+$/, "");
          const moving = new Set(list.filter((i) => names.includes(base(i.name)) && (i.config[INCOMING] || i.status !== "Running")).map((i) => base(i.name)));
          if (remote === "s2") polls++;
          if (moving.size) flight[remote]++;
          peak[remote] = Math.max(peak[remote], moving.size);
        }
        await new Promise((ok) => setTimeout(ok, 200));
      }
    })();
    const t = Date.now();
    let r: Awaited<ReturnType<TestStack["up"]>>;
    try {
      r = await stack.up();
    } finally {
      done = true;
      await poll;
    }
    const seconds = (Date.now() - t) / 1000;
    console.log(
      `load: moved ${LOAD} running containers (${CROSS} s1 -> s2, ${LOAD - CROSS} m1 -> m2) in ${seconds.toFixed(1)} s with LXD_PLACEMENT_MAX_MOVES_PER_REMOTE=${stack.stack.workspace.envVars.LXD_PLACEMENT_MAX_MOVES_PER_REMOTE}; ` +
        `peak moves in flight: s2 ${peak.s2}, cluster ${peak.cluster} (${polls} polls; with a move in flight: s2 ${flight.s2}, cluster ${flight.cluster})`,
    );
    expect(names.map((n) => r.ops[n])).toEqual(names.map(() => "update"));
    // Each exactly once: one move recorded per resource, and one copy of each, where declared, running.
    for (const n of cross) {
      const o = r.outputs[n] as { remote: string; status: string; moves: number; lastMove: { kind: string } };
      expect({ n, remote: o.remote, status: o.status, moves: o.moves, kind: o.lastMove?.kind }).toEqual({ n, remote: "s2", status: "Running", moves: 1, kind: "cross-server" });
    }
    for (const n of members) {
      const o = r.outputs[n] as { remote: string; location: string; status: string; moves: number };
      expect({ n, remote: o.remote, location: o.location, status: o.status, moves: o.moves }).toEqual({ n, remote: "cluster", location: "m2", status: "Running", moves: 1 });
    }
    const seen = await findEverywhere((s) => s.name.startsWith(PREFIX) && s.name !== SECRET_NAME);
    expect(seen.map(seenAs).sort()).toEqual(expected("after"));
    expect(seen.filter((s) => s.config[INCOMING])).toEqual([]);
    // The limit held on both remotes, and the poller did see moves in flight (it can see them).
    expect(polls).toBeGreaterThan(5);
    expect(peak.s2).toBeGreaterThanOrEqual(1);
    expect(peak.cluster).toBeGreaterThanOrEqual(1);
    expect(peak.s2).toBeLessThanOrEqual(LIMIT);
    expect(peak.cluster).toBeLessThanOrEqual(LIMIT);
  }, 900_000);
});

// Keep the import used: the inline program runs in this process with this copy of @pulumi/pulumi.
void pulumi;
