/**
 * Instance moves through the real engine against the real sandbox: what a user sees after
 * `pulumi up`: where the instance is, whether its data survived, whether it runs.
 */
import * as pulumi from "@pulumi/pulumi";
import { MARKER_KEY } from "../../provider/marks";
import { TestStack } from "../helpers/engine";
import { config, deleteAll, exec, findEverywhere, lxc, sha, shaStopped } from "../helpers/sandbox";
// The built SDK, as a user's program loads it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Instance } = require("../../bin/sdk") as typeof import("../../sdk");

type Spec = Record<string, unknown>;

function programFor(spec: { current: Spec }) {
  return async () => {
    const i = new Instance("web", spec.current as never);
    return {
      remote: i.remote,
      location: i.location,
      status: i.status,
      lastMove: i.lastMove,
      instanceId: i.instanceId,
    };
  };
}

const NAME = "e2e-web";
const spec = { current: {} as Spec };
let stack: TestStack;
let data: string;
let mac: string;

beforeAll(async () => {
  await deleteAll((s) => s.name.startsWith(NAME));
  spec.current = { name: NAME, image: "busybox", remote: "s1" };
  stack = await TestStack.create({ projectName: "instance-move", program: programFor(spec) });
});
afterAll(async () => {
  await stack?.remove();
  await deleteAll((s) => s.name.startsWith(NAME));
});

async function only(): Promise<{ remote: string; project: string; name: string; status: string; location: string }> {
  // Every instance whose name starts with NAME, anywhere: the instance, renamed or not, and any leftover copy.
  const mine = await findEverywhere((s) => s.name.startsWith(NAME));
  expect(mine.map((s) => `${s.remote}:${s.project}/${s.name}`)).toHaveLength(1);
  return mine[0];
}

describe("Instance placement through pulumi up", () => {
  it("creates the instance where declared, running, with the ownership marker", async () => {
    const r = await stack.up();
    expect(r.outputs.remote).toBe("s1");
    expect(r.outputs.status).toBe("Running");
    const at = await only();
    expect(at).toMatchObject({ remote: "s1", project: "default", status: "Running" });
    expect(await config("s1", "default", NAME, MARKER_KEY)).toBe(r.outputs.instanceId);
    data = await (async () => {
      await exec("s1", "default", NAME, "dd if=/dev/urandom of=/root/data bs=1M count=8 2>/dev/null; sync");
      return sha("s1", "default", NAME, "/root/data");
    })();
    mac = await config("s1", "default", NAME, "volatile.eth0.hwaddr");
    expect(mac).toMatch(/^00:16:3e/);
  });

  it("P1/P2: preview of a new remote is an update (never a replace) and prints the move plan", async () => {
    spec.current = { ...spec.current, remote: "s2" };
    const p = await stack.preview();
    expect(p.ops.web).toBe("update");
    expect(p.summary.replace ?? 0).toBe(0);
    expect(`${p.stdout}\n${p.stderr ?? ""}`).toMatch(/plan: move s1:default\/e2e-web .*-> s2:default\/e2e-web; cross-server pull; strategy near-live/);
    // Preview changed nothing.
    expect(await only()).toMatchObject({ remote: "s1", status: "Running" });
  });

  it("R1/R5/P4: up moves it s1 -> s2 (pull, near-live): one copy, data and MAC intact, running again", async () => {
    const r = await stack.up();
    expect(r.ops.web).toBe("update");
    expect(await only()).toMatchObject({ remote: "s2", project: "default", status: "Running" });
    expect(await sha("s2", "default", NAME, "/root/data")).toBe(data);
    expect(await config("s2", "default", NAME, "volatile.eth0.hwaddr")).toBe(mac);
    const move = r.outputs.lastMove as { strategy: string; mode: string; downtimeSeconds: number; kind: string };
    expect(move).toMatchObject({ kind: "cross-server", strategy: "near-live", mode: "pull" });
    expect(move.downtimeSeconds).toBeGreaterThan(0);
  });

  it("R5: push mode to the cluster, onto a named member (R4)", async () => {
    spec.current = { ...spec.current, remote: "cluster", target: "m1", migration: { mode: "push" } };
    const r = await stack.up();
    expect(r.outputs.location).toBe("m1");
    expect(await only()).toMatchObject({ remote: "cluster", location: "m1", status: "Running" });
    expect(await sha("cluster", "default", NAME, "/root/data")).toBe(data);
    expect(r.outputs.lastMove).toMatchObject({ mode: "push" });
  });

  it("R4: a member change moves it inside the cluster, near-live, same name", async () => {
    spec.current = { ...spec.current, target: "m3" };
    const r = await stack.up();
    expect(await only()).toMatchObject({ remote: "cluster", name: NAME, location: "m3", status: "Running" });
    expect(await sha("cluster", "default", NAME, "/root/data")).toBe(data);
    expect(r.outputs.lastMove).toMatchObject({ kind: "copy-within-server", strategy: "near-live" });
  });

  it("R6: project and storage pool move together, with a config change applied at the target", async () => {
    spec.current = { ...spec.current, project: "staging", storagePool: "fast", config: { "user.role": "web" } };
    await stack.up();
    const at = await only();
    expect(at).toMatchObject({ remote: "cluster", project: "staging", status: "Running" });
    expect(await config("cluster", "staging", NAME, "user.role")).toBe("web");
    const root = await lxc(["config", "device", "get", `cluster:${NAME}`, "root", "pool", "--project", "staging"]);
    expect(root.trim()).toBe("fast");
    expect(await sha("cluster", "staging", NAME, "/root/data")).toBe(data);
  });

  it("P4: a stopped instance relays back to s1 and stays stopped; then a rename (R1)", async () => {
    spec.current = { name: NAME, image: "busybox", remote: "s1", running: false, migration: { mode: "relay" } };
    let r = await stack.up();
    expect(await only()).toMatchObject({ remote: "s1", project: "default", status: "Stopped" });
    expect(r.outputs.lastMove).toMatchObject({ strategy: "cold", mode: "relay" });
    expect(await shaStopped("s1", "default", NAME, "/root/data")).toBe(data);
    spec.current = { ...spec.current, name: `${NAME}-b`, running: true };
    r = await stack.up();
    expect(await only()).toMatchObject({ remote: "s1", name: `${NAME}-b`, status: "Running" });
    expect(await sha("s1", "default", `${NAME}-b`, "/root/data")).toBe(data);
  });

  it("P6: a move made outside the program shows up as drift and the next up moves it back", async () => {
    await lxc(["stop", `s1:${NAME}-b`], { timeoutMs: 60_000 });
    await lxc(["move", `s1:${NAME}-b`, `s2:${NAME}-b`], { timeoutMs: 120_000 });
    await lxc(["start", `s2:${NAME}-b`], { timeoutMs: 60_000 });
    const refreshed = await stack.refresh();
    expect(refreshed.ops.web ?? "update").not.toBe("delete");
    const p = await stack.preview();
    expect(p.ops.web).toBe("update");
    expect(`${p.stdout}\n${p.stderr ?? ""}`).toMatch(/plan: move s2:default\/e2e-web-b.* -> s1:default\/e2e-web-b/);
    await stack.up();
    expect(await only()).toMatchObject({ remote: "s1", name: `${NAME}-b`, status: "Running" });
  });

  it("P3/R12: a live move of a container with a network device is refused at preview when restarts are not allowed", async () => {
    spec.current = { ...spec.current, remote: "s2", migration: { strategy: "live", allowRestart: false } };
    await expect(stack.preview()).rejects.toThrow(/migration\.strategy: live migration impossible: .*network device.*R12/s);
    expect(await only()).toMatchObject({ remote: "s1", status: "Running" });
  });

  it("changing the type is the one replace", async () => {
    spec.current = { ...spec.current, remote: "s1", migration: {}, type: "virtual-machine" };
    const p = await stack.preview();
    expect(p.ops.web).toBe("replace");
  });

  it("destroy removes the instance everywhere", async () => {
    spec.current = { name: `${NAME}-b`, image: "busybox", remote: "s1" };
    await stack.destroy();
    expect(await findEverywhere((s) => s.name.startsWith(NAME))).toHaveLength(0);
  });
});

// Keep the import used: the inline program runs in this process with this copy of @pulumi/pulumi.
void pulumi;

describe("live migration refused by LXD (CRIU fails on this kernel)", () => {
  const BASIC = "e2e-basic";
  const basic = { current: {} as Spec };
  let s: TestStack;
  beforeAll(async () => {
    await deleteAll((x) => x.name === BASIC);
    // A very basic container (R12): no network device, so live migration is worth trying.
    basic.current = { name: BASIC, image: "busybox", remote: "s1", profiles: [], devices: { root: { type: "disk", path: "/", pool: "default" } } };
    s = await TestStack.create({
      projectName: "live-refused",
      program: async () => {
        const i = new Instance("basic", basic.current as never);
        return { lastMove: i.lastMove };
      },
    });
    await s.up();
    await exec("s1", "default", BASIC, "echo kept > /root/kept");
  });
  afterAll(async () => {
    await s?.remove();
    await deleteAll((x) => x.name === BASIC);
  });

  it("R11/R15: strategy live without restarts fails, and the instance is untouched at the source, running", async () => {
    basic.current = { ...basic.current, remote: "s2", migration: { strategy: "live", allowRestart: false } };
    await expect(s.up()).rejects.toThrow(/Nothing was lost: the instance is still at s1:default\/e2e-basic.*still running \(R15\)/s);
    const seen = await findEverywhere((x) => x.name === BASIC);
    expect(seen.map((x) => [x.remote, x.status])).toEqual([["s1", "Running"]]);
    expect((await exec("s1", "default", BASIC, "cat /root/kept")).trim()).toBe("kept");
  });

  it("R15: strategy auto tries live, LXD refuses, and the move falls back to a restart and says so", async () => {
    basic.current = { ...basic.current, remote: "s2", migration: { strategy: "auto" } };
    const r = await s.up();
    expect(`${r.stdout}\n${r.stderr ?? ""}`).toMatch(/live migration failed .*falling back to near-live \(R15\)/);
    expect(r.outputs.lastMove).toMatchObject({ strategy: "near-live", fallbackFrom: "live" });
    const seen = await findEverywhere((x) => x.name === BASIC);
    expect(seen.map((x) => [x.remote, x.status])).toEqual([["s2", "Running"]]);
    expect((await exec("s2", "default", BASIC, "cat /root/kept")).trim()).toBe("kept");
  });
});

describe("adopting an existing instance (no pulumi import for dynamic providers)", () => {
  const ADOPT = "e2e-adopt";
  const a = { current: {} as Spec };
  let s: TestStack;
  beforeAll(async () => {
    await deleteAll((x) => x.name === ADOPT);
    await lxc(["launch", "busybox", `s1:${ADOPT}`], { timeoutMs: 120_000 });
    await exec("s1", "default", ADOPT, "echo mine > /root/mine");
    a.current = { name: ADOPT, image: "busybox", remote: "s1" };
    s = await TestStack.create({ projectName: "adopt", program: async () => ({ id: new Instance("adopted", a.current as never).instanceId }) });
  });
  afterAll(async () => {
    await s?.remove();
    await deleteAll((x) => x.name === ADOPT);
  });

  it("without adopt, preview refuses: the name is taken, and says how to take it over", async () => {
    await expect(s.preview()).rejects.toThrow(/name.*already exists on s1:default; set adopt: true/s);
  });

  it("with adopt, up takes it over in place (marker set, data kept) and it then moves like any other (P1)", async () => {
    a.current = { ...a.current, adopt: true };
    const r = await s.up();
    expect(await config("s1", "default", ADOPT, MARKER_KEY)).toBe(r.outputs.id);
    a.current = { ...a.current, remote: "s2" };
    await s.up();
    const seen = await findEverywhere((x) => x.name === ADOPT);
    expect(seen.map((x) => [x.remote, x.status])).toEqual([["s2", "Running"]]);
    expect((await exec("s2", "default", ADOPT, "cat /root/mine")).trim()).toBe("mine");
  });
});

describe("remotes from stack config (secret), not only the lxc config", () => {
  const NAMEC = "e2e-stackremote";
  let s: TestStack;
  afterAll(async () => {
    await s?.remove();
    await deleteAll((x) => x.name === NAMEC);
  });

  it("an instance placed on a remote declared only in stack config; the client key stays out of state", async () => {
    const fs = await import("node:fs");
    const path = await import("node:path");
    const { LXD_CONF } = await import("../helpers/sandbox");
    const key = fs.readFileSync(path.join(LXD_CONF, "client.key"), "utf8");
    const remotes = {
      "s2-from-stack": {
        addr: "https://127.0.0.1:8444",
        serverCert: fs.readFileSync(path.join(LXD_CONF, "servercerts", "s2.crt"), "utf8"),
        clientCert: fs.readFileSync(path.join(LXD_CONF, "client.crt"), "utf8"),
        clientKey: key,
      },
    };
    await deleteAll((x) => x.name === NAMEC);
    s = await TestStack.create({ projectName: "stack-remotes", program: async () => ({ remote: new Instance("c", { name: NAMEC, image: "busybox", remote: "s2-from-stack" }).remote }) });
    await s.setConfig("lxd-placement:remotes", JSON.stringify(remotes), true);
    const r = await s.up();
    expect(r.outputs.remote).toBe("s2-from-stack");
    expect((await findEverywhere((x) => x.name === NAMEC)).map((x) => x.remote)).toEqual(["s2"]);
    // What is stored: every file of the stack's backend and config (the export API decrypts
    // secrets, so the files on disk are what must not hold the key).
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile() && fs.statSync(p).size < 5_000_000) files.push(fs.readFileSync(p, "latin1"));
      }
    };
    walk(s.dir);
    const stored = files.join("\n");
    expect(stored).toContain("s2-from-stack");
    const body = key.split("\n").filter((l) => l && !l.startsWith("-----"));
    for (const line of body) expect(stored).not.toContain(line);
    expect(stored).not.toContain("PRIVATE KEY");
  });
});
