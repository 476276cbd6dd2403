/**
 * Instance lists on lookups that miss their hint (docs/benchmarks.md, "What the figures say" 3):
 * a refresh's concurrent reads list each remote once, not once per resource; a safety lookup
 * (`fresh`) never gets a list older than its call, so a move that has just finished is seen; the
 * implicit `local` remote is searched only when its socket exists. Fake LXD servers on unix
 * sockets (test/helpers/fake-lxd.ts) answer each list slowly, so concurrent callers overlap.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Estate } from "../../provider/estate";
import { observe } from "../../provider/facts";
import { LxdIo } from "../../provider/lxd-io";
import { MARKER_KEY } from "../../provider/marks";
import { loadRemotes } from "../../provider/lxd/remotes";
import { configure, read } from "../../provider/resource";
import { startFakes, type FakeLxd } from "../helpers/fake-lxd";

const NAMES = ["a", "b", "c"];
const LIST_MS = 60;
const idOf = (i: number) => `0f5c2a8e-0000-4000-8000-${String(i).padStart(12, "0")}`;

let dir: string;
let fakes: FakeLxd[] = [];
let closeFakes: (() => Promise<void>) | undefined;
const estates: Estate[] = [];
const saved = { LXD_CONF: process.env.LXD_CONF, LXD_SOCKET: process.env.LXD_SOCKET, LXD_DIR: process.env.LXD_DIR };

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "refresh-lists-"));
});
afterEach(async () => {
  await Promise.all(estates.splice(0).map((e) => e.close()));
  await closeFakes?.();
  closeFakes = undefined;
  fakes = [];
  fs.rmSync(dir, { recursive: true, force: true });
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

/** Fakes named a, b, c and an lxc config naming exactly them; no local socket. */
async function setup(n = NAMES.length): Promise<NodeJS.ProcessEnv> {
  const started = await startFakes(...NAMES.slice(0, n).map((name, i) => ({ name, address: `127.0.1.${i + 1}:8443`, listDelayMs: LIST_MS })));
  closeFakes = started.close;
  fakes = started.fakes;
  const remotes = fakes.map((f) => `  ${f.name}:\n    addr: unix://${f.socketPath}\n    protocol: lxd`).join("\n");
  fs.writeFileSync(path.join(dir, "config.yml"), `default-remote: a\nremotes:\n${remotes}\n`);
  const env = { LXD_CONF: dir, LXD_SOCKET: path.join(dir, "no-such-daemon.socket") };
  delete process.env.LXD_DIR;
  Object.assign(process.env, env);
  return env;
}

const lists = (f: FakeLxd) => f.find("GET", "/1.0/instances").filter((r) => r.query.recursion).length;
const fake = (name: string) => fakes.find((f) => f.name === name)!;
const owned = (name: string, id: string) => ({ name, config: { [MARKER_KEY]: id } });

/** Every copy of the instance as a fresh safety lookup sees it (observe, as settle reads); fails when a server that matters is silent. */
async function findCopies(e: Estate, id: string, recorded?: { remote: string; project: string; name: string }): Promise<{ remote: string; name: string }[]> {
  const v = await observe(new LxdIo(e), { id, recorded });
  if (v.silent.length) throw new Error(`cannot tell where instance ${id} is: ${v.silent.join(", ")} did not answer`);
  return v.copies.map((c) => ({ remote: c.place.remote, name: c.place.name }));
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 2_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe("refresh: reads that miss their hint share each remote's list (P6, O(remotes))", () => {
  it("20 concurrent reads with stale hints list each of 3 remotes at most twice, one at a time, and each finds its instance", async () => {
    await setup();
    // A new estate for this provider process, built from the config just written.
    await configure({ config: { get: () => "{}" } });
    const N = 20;
    for (let i = 0; i < N; i++) fakes[i % 3].addInstance({ ...owned(`c${i}`, idOf(i)), status: i % 2 ? "Running" : "Stopped" });
    const stale = (i: number) => ({ name: `c${i}`, remote: NAMES[(i + 1) % 3], project: "default", image: "img", running: true });

    // The engine reads 10 at a time during a refresh.
    const results: Array<{ id: string; props: Record<string, unknown> }> = [];
    const queue = [...Array(N).keys()];
    await Promise.all(
      [...Array(10)].map(async () => {
        for (let i = queue.shift(); i !== undefined; i = queue.shift()) results[i] = await read(idOf(i), stale(i));
      }),
    );

    for (let i = 0; i < N; i++) {
      expect(results[i].id).toBe(idOf(i));
      expect(results[i].props).toMatchObject({ name: `c${i}`, remote: NAMES[i % 3], project: "default", status: i % 2 ? "Running" : "Stopped" });
    }
    // Every read missed its hint: one GET of its instance on the wrong remote each.
    expect(fakes.reduce((n, f) => n + f.find("GET", /^\/1\.0\/instances\/c\d+$/).length, 0)).toBe(N);
    for (const f of fakes) {
      expect({ remote: f.name, lists: lists(f) <= 2, maxInFlight: f.maxListsInFlight }).toEqual({ remote: f.name, lists: true, maxInFlight: 1 });
    }
  });

  it("a read whose hint is right lists nothing", async () => {
    await setup();
    await configure({ config: { get: () => "{}" } });
    fake("b").addInstance(owned("web", idOf(1)));
    const r = await read(idOf(1), { name: "web", remote: "b", project: "default", image: "img" });
    expect(r.props).toMatchObject({ remote: "b", name: "web" });
    expect(fakes.map(lists)).toEqual([0, 0, 0]);
  });
});

describe("safety lookups (fresh) see a change made while a list was in flight (P5)", () => {
  it("a fresh findCopies after a move does not take the list sent before it; plain callers may", async () => {
    const env = await setup(2);
    const e = new Estate(env);
    estates.push(e);
    const id = idOf(7);
    fake("a").addInstance(owned("x", id));

    // A refresh-style list of both remotes is in flight, answered with the instance on a...
    const before = NAMES.slice(0, 2).map((r) => e.instances(r));
    await until(() => lists(fake("a")) === 1 && lists(fake("b")) === 1, "the first lists to arrive");
    // ...when a move of it from a to b finishes.
    fake("a").instances.delete("x");
    fake("b").addInstance(owned("x", id));

    const found = await findCopies(e, id);
    expect(found.map((f) => `${f.remote}/${f.name}`)).toEqual(["b/x"]);

    // The older lists still answered their own callers with what was true when they were sent.
    const [onA, onB] = await Promise.all(before);
    expect(onA.map((i) => i.name)).toEqual(["x"]);
    expect(onB.map((i) => i.name)).toEqual([]);
    // The fresh lookup waited for them: still one list per remote at a time, two in all.
    expect(fakes.map((f) => [lists(f), f.maxListsInFlight])).toEqual([
      [2, 1],
      [2, 1],
    ]);
    // A plain caller right after takes the fresh list (no request), which has the move.
    expect((await e.instances("b")).map((i) => i.name)).toEqual(["x"]);
    expect(lists(fake("b"))).toBe(2);
  });

  it("a fresh findCopies right after a finished list sends a new one", async () => {
    const env = await setup(2);
    const e = new Estate(env);
    estates.push(e);
    const id = idOf(8);
    fake("a").addInstance(owned("x", id));
    expect((await e.instances("a")).map((i) => i.name)).toEqual(["x"]);
    fake("a").instances.delete("x");
    fake("b").addInstance(owned("x", id));
    expect((await findCopies(e, id)).map((f) => f.remote)).toEqual(["b"]);
    expect(lists(fake("a"))).toBe(2);
  });

  it("forget(): a plain caller does not take a list sent before it", async () => {
    const env = await setup(1);
    const e = new Estate(env);
    estates.push(e);
    fake("a").addInstance({ name: "old" });
    const first = e.instances("a");
    await until(() => lists(fake("a")) === 1, "the first list to arrive");
    fake("a").addInstance({ name: "new" });
    e.forget();
    expect((await e.instances("a")).map((i) => i.name).sort()).toEqual(["new", "old"]);
    expect((await first).map((i) => i.name)).toEqual(["old"]);
    expect(fake("a").maxListsInFlight).toBe(1);
  });

  it("10 concurrent fresh lookups list each remote at most twice, one at a time", async () => {
    const env = await setup();
    const e = new Estate(env);
    estates.push(e);
    for (let i = 0; i < 10; i++) fakes[i % 3].addInstance(owned(`c${i}`, idOf(i)));
    const found = await Promise.all([...Array(10).keys()].map((i) => findCopies(e, idOf(i), { remote: NAMES[(i + 1) % 3], project: "default", name: `c${i}` })));
    found.forEach((f, i) => expect(f.map((x) => `${x.remote}/${x.name}`)).toEqual([`${NAMES[i % 3]}/c${i}`]));
    for (const f of fakes) {
      expect(lists(f)).toBeLessThanOrEqual(2);
      expect(f.maxListsInFlight).toBe(1);
    }
  });

  it("a failed list is not reused: the next caller sends a new one", async () => {
    const env = await setup(1);
    const e = new Estate(env);
    estates.push(e);
    fake("a").addInstance({ name: "x" });
    const sock = fake("a").socketPath;
    fs.renameSync(sock, `${sock}.away`);
    await expect(e.instances("a")).rejects.toThrow();
    fs.renameSync(`${sock}.away`, sock);
    expect((await e.instances("a")).map((i) => i.name)).toEqual(["x"]);
  });
});

describe("the implicit local remote", () => {
  it("is searched only when the config names it or its socket exists; get() resolves it either way", () => {
    const missing = path.join(dir, "missing.socket");
    const none = loadRemotes({ LXD_CONF: dir, LXD_SOCKET: missing });
    expect(none.names).toEqual([]);
    expect(none.get("local")).toMatchObject({ name: "local", socketPath: missing });
    expect(() => none.get("elsewhere")).toThrow(/unknown remote "elsewhere"/);

    const sock = path.join(dir, "unix.socket");
    fs.writeFileSync(sock, "");
    expect(loadRemotes({ LXD_CONF: dir, LXD_SOCKET: sock }).names).toEqual(["local"]);
    expect(loadRemotes({ LXD_CONF: dir, LXD_DIR: dir }).names).toEqual(["local"]);

    fs.writeFileSync(path.join(dir, "config.yml"), "remotes:\n  local:\n    addr: unix://\n");
    const named = loadRemotes({ LXD_CONF: dir, LXD_SOCKET: missing });
    expect(named.names).toEqual(["local"]);
    expect(named.get("local").socketPath).toBe(missing);
  });

  it("a lookup whose state says local, with no local socket, fails rather than reporting the instance gone", async () => {
    const env = await setup(1);
    const e = new Estate(env);
    estates.push(e);
    expect(e.remotes.names).toEqual(["a"]);
    const hint = { remote: "local", project: "default", name: "x" };
    await expect(findCopies(e, idOf(9), hint)).rejects.toThrow(/cannot tell where instance .* is: .*local/);
    // Without that hint nobody asks local: no instance anywhere means gone.
    expect(await findCopies(e, idOf(9))).toEqual([]);
  });
});
