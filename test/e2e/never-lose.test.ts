/**
 * P5, I1-I5: the scenario of issue "Never lose an instance", as a user meets it, through the real
 * engine against the real sandbox; and two runs at once (the lease).
 *
 *  1. A running container with 400 MB of data on s1; its placement changed to s2
 *     (stop-move-start, pull).
 *  2. Mid-transfer the s2 daemon dies (SIGKILL), and comes back after the failed `up`: a partial
 *     copy, marked incoming, is left on s2.
 *  3. The s1 daemon stops answering (SIGSTOP). `pulumi refresh`, `pulumi preview` and `pulumi up`
 *     each fail naming s1, and change nothing: the partial copy is not promoted (before, it was,
 *     and the next `up` deleted the only complete copy).
 *  4. s1 answers again. Refresh and preview still change nothing (they report the leftover);
 *     `pulumi up` removes the partial copy and moves the instance to s2: one copy, running, data
 *     intact.
 *
 * "Change nothing" is counted, not assumed: the stack runs with a client certificate of its own
 * and the daemons' logs must hold no POST/PUT/PATCH/DELETE of it for those commands.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TestStack } from "../helpers/engine";
import { freezeDaemon, killDaemon, progress, restoreEstate, sandboxUp, sleep, thawAll, waitFor } from "../helpers/faults";
import { COMPLETE_KEY, INCOMING_KEY, LEASE_KEY, MARK_PREFIX, MARKER_KEY, OUTGOING_KEY } from "../../provider/marks";
import { mark, Observer } from "../helpers/observer";
import { deleteAll, exec, findEverywhere, sha, type Seen } from "../helpers/sandbox";
// The built SDK and provider, as a user's program and a second provider process load them.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Instance } = require("../../bin/sdk") as typeof import("../../sdk");
// eslint-disable-next-line @typescript-eslint/no-require-imports
const provider = require("../../bin/provider") as typeof import("../../provider");

const NAME = "nl-web";
const DATA = "/root/data";
/** A frozen daemon must fail a request within seconds, not the default 30 s. */
const REQUEST_TIMEOUT_MS = "8000";

type Spec = Record<string, unknown>;
const spec: { current: Spec } = { current: {} };
const base = (remote: string): Spec => ({ name: NAME, image: "busybox", remote, migration: { strategy: "stop-move-start", mode: "pull", timeoutSeconds: 120 } });

let stack: TestStack;
let observer: Observer;
let id = "";
let data = "";

const copies = async (): Promise<Seen[]> => (await findEverywhere((s) => s.config?.[MARKER_KEY] === id, ["s1", "s2"])).sort((a, b) => a.remote.localeCompare(b.remote));
const show = (s: Seen) =>
  `${s.remote}:${s.project}/${s.name} ${s.status}${s.config[INCOMING_KEY] ? " [incoming]" : ""}${s.config[COMPLETE_KEY] ? " [complete]" : ""}${s.config[OUTGOING_KEY] ? " [outgoing]" : ""}`;
const errorOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected the engine call to fail");
};

beforeAll(async () => {
  await restoreEstate();
  await deleteAll((s) => s.name === NAME || s.name.startsWith(`${NAME}-`));
  observer = await Observer.create("nl-observer");
  spec.current = base("s1");
  stack = await TestStack.create({
    projectName: "never-lose",
    program: async () => {
      const i = new Instance("web", spec.current as never);
      return { instanceId: i.instanceId, remote: i.remote, status: i.status, leftovers: i.leftovers };
    },
    timeoutMs: 240_000,
  });
  // The engine, and the provider it starts, use the observer's certificate and short deadlines.
  Object.assign(stack.stack.workspace.envVars, { LXD_CONF: observer.confDir, LXD_PLACEMENT_REQUEST_TIMEOUT_MS: REQUEST_TIMEOUT_MS });
}, 300_000);

afterAll(async () => {
  thawAll();
  await restoreEstate().catch(() => undefined);
  await stack?.remove();
  await deleteAll((s) => s.name === NAME || s.name.startsWith(`${NAME}-`));
  await observer?.drop();
}, 300_000);

describe("P5: never lose an instance (the issue's scenario)", () => {
  it("1. a running container with 400 MB of data on s1", async () => {
    const r = await stack.up();
    id = r.outputs.instanceId as string;
    await exec("s1", "default", NAME, "dd if=/dev/urandom of=/root/big bs=1M count=400 2>/dev/null; sync", 180_000);
    await exec("s1", "default", NAME, `dd if=/dev/urandom of=${DATA} bs=1M count=1 2>/dev/null; sync`);
    data = await sha("s1", "default", NAME, DATA);
    expect((await copies()).map(show)).toEqual([`s1:default/${NAME} Running`]);
  }, 300_000);

  it("2. the s2 daemon dies mid-transfer: the move fails, a partial copy stays on s2, the instance is still on s1", async () => {
    spec.current = base("s2");
    const t0 = Date.now();
    let ended = false;
    const up = stack.up({ timeoutMs: 240_000 }).then(
      () => "up succeeded",
      (e: Error) => e.message,
    );
    void up.then(() => (ended = true));
    // In flight: the copy exists on s2, marked incoming; strike a moment into the transfer.
    await waitFor("the copy on s2", 90_000, 150, async () => (ended ? "ended" : (await copies()).some((c) => c.remote === "s2" && c.config[INCOMING_KEY]) ? true : undefined));
    expect(ended).toBe(false);
    await sleep(1_500);
    killDaemon("s2");
    const msg = await up;
    progress(`never-lose: s2 killed ${((Date.now() - t0) / 1000).toFixed(1)} s into the up; it said: ${msg.split("\n").find((l) => /error: .*move failed/.test(l)) ?? msg.slice(-300)}`);
    expect(msg).toMatch(/move failed/);
    // s2 comes back, as a supervisor would bring it, after the failed up.
    await sandboxUp();
    await restoreEstate();
    const seen = await copies();
    expect(seen.filter((c) => !c.config[INCOMING_KEY]).map(show)).toEqual([expect.stringMatching(new RegExp(`^s1:default/${NAME} `))]);
    expect(seen.some((c) => c.remote === "s2" && c.config[INCOMING_KEY] && !c.config[COMPLETE_KEY])).toBe(true);
  }, 400_000);

  it("3. s1 stops answering: refresh, preview and up each fail naming s1 and change nothing; the partial copy is not promoted", async () => {
    const before = await copies();
    const from = mark();
    freezeDaemon("s1");
    try {
      const refresh = await errorOf(stack.refresh({ timeoutMs: 120_000 }));
      expect(refresh).toMatch(/remote "s1" did not answer.*nothing was deleted, promoted or started/s);
      const preview = await errorOf(stack.preview({ timeoutMs: 120_000 }));
      expect(preview).toMatch(/remote "s1" did not answer/);
      const up = await errorOf(stack.up({ timeoutMs: 120_000 }));
      expect(up).toMatch(/remote "s1" did not answer.*nothing was deleted, promoted or started/s);
      // What s2 holds is as it was: the partial copy, still marked incoming, not complete.
      const s2now = (await findEverywhere((s) => s.config?.[MARKER_KEY] === id, ["s2"])).map(show);
      expect(s2now).toEqual(before.filter((c) => c.remote === "s2").map(show));
    } finally {
      thawAll();
    }
    await restoreEstate();
    expect((await copies()).map(show)).toEqual(before.map(show));
    expect(observer.mutationsSince(from)).toEqual([]);
  }, 400_000);

  it("4. s1 answers again: refresh and preview report the leftover and change nothing; up settles it and moves the instance, data intact", async () => {
    const before = await copies();
    const from = mark();
    const r = await stack.refresh({ timeoutMs: 120_000 });
    expect(r.stdout).toMatch(/an interrupted move left .*refresh changes nothing/);
    const p = await stack.preview({ timeoutMs: 120_000 });
    expect(p.ops.web).toBe("update");
    expect(observer.mutationsSince(from)).toEqual([]);
    expect(observer.requestsSince(from).length).toBeGreaterThan(0); // it did read, with this certificate
    expect((await copies()).map(show)).toEqual(before.map(show));

    const up = await stack.up({ timeoutMs: 240_000 });
    expect(up.outputs).toMatchObject({ remote: "s2", status: "Running" });
    expect(up.outputs.leftovers).toBeUndefined();
    const now = await copies();
    expect(now.map(show)).toEqual([`s2:default/${NAME} Running`]);
    expect(Object.keys(now[0].config).filter((k) => k.startsWith(MARK_PREFIX) && k !== MARKER_KEY)).toEqual([]);
    expect(await sha("s2", "default", NAME, DATA)).toBe(data);
  }, 400_000);
});

describe("P5: two runs at once (the lease)", () => {
  it("a second provider process gets 'being moved by another run until …' while a move holds the lease, and changes nothing; the first finishes", async () => {
    const hold = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "nl-hold-")), "held");
    spec.current = { ...base("s1"), migration: { strategy: "stop-move-start", mode: "pull", timeoutSeconds: 120 } };
    // The first run stops right after its copy is made, lease held, until the test lets it go on.
    stack.stack.workspace.envVars.LXD_PLACEMENT_CRASH_AT = `copied@${NAME}:hold=${hold}`;
    let first: Promise<string> | undefined;
    try {
      first = stack.up({ timeoutMs: 240_000 }).then(
        () => "ok",
        (e: Error) => e.message,
      );
      await waitFor("the first run to reach its hold point", 120_000, 100, async () => (fs.existsSync(hold) ? true : undefined));
      const before = await copies();
      expect(before.map(show)).toEqual([`s1:default/${NAME} Stopped [incoming]`, `s2:default/${NAME} Stopped [outgoing]`]);
      const lease = JSON.parse(before.find((c) => c.remote === "s2")!.config[LEASE_KEY]) as { run: string; pid: number };
      // A second provider process (this one: another run ID, the same lxc config) asked to do the same move.
      const olds = { name: NAME, image: "busybox", remote: "s2", project: "default", instanceId: id };
      const news = { ...olds, remote: "s1", migration: { strategy: "stop-move-start", mode: "pull", timeoutSeconds: 120 } };
      const t0 = Date.now();
      const err = await provider.instance.update(id, olds, news).then(
        () => "no error",
        (e: Error) => e.message,
      );
      expect(err).toMatch(new RegExp(`being moved by another run \\(${lease.run} on ${os.hostname()} pid ${lease.pid}\\) until \\d{4}-`));
      expect(Date.now() - t0).toBeLessThan(15_000); // a holder alive on this machine is not waited for
      expect((await copies()).map(show)).toEqual(before.map(show));
    } finally {
      fs.rmSync(hold, { force: true });
      delete stack.stack.workspace.envVars.LXD_PLACEMENT_CRASH_AT;
    }
    expect(await first).toBe("ok");
    expect((await copies()).map(show)).toEqual([`s1:default/${NAME} Running`]);
    expect(await sha("s1", "default", NAME, DATA)).toBe(data);
  }, 400_000);
});
