/**
 * The example programs in examples/, run as a user runs them: on-disk Pulumi projects (linked to
 * this checkout by scripts/link-example.sh), through the real engine, against the sandbox. Each
 * one is created, its placement config changed, previewed (an update, never a replace: P1),
 * moved, checked with lxc (where it is, whether it runs, whether a file written before the move
 * survived) and destroyed. The VM example is only previewed: VMs cannot run on this machine.
 *
 * Instance names start with "ex-" so they never collide with other tests' instances, then a
 * short run ID, so two runs of this file against one shared sandbox do not touch each other's
 * instances. Leftovers of runs that died are deleted once they are an hour old.
 */
import * as path from "node:path";
import { TestStack } from "../helpers/engine";
import { deleteAll, exec, findByName, lxc, run, sha, writeData, type Seen } from "../helpers/sandbox";

const ROOT = path.resolve(__dirname, "../..");
const example = (name: string) => path.join(ROOT, "examples", name);
const RUN = Math.random().toString(36).slice(2, 6);
const PREFIX = `ex-${RUN}-`;
const mine = (s: Seen) => s.name.startsWith(PREFIX);
const STALE_MS = 60 * 60 * 1000;
const staleLeftover = (s: Seen) => s.name.startsWith("ex-") && Date.now() - Date.parse((s as Seen & { created_at?: string }).created_at ?? "") > STALE_MS;
/** What the engine printed: the provider's lines (`lxd-placement: <name>: plan: ...`) go to stderr in diff mode. */
const printed = (o: { stdout: string; stderr?: string }) => `${o.stdout}\n${o.stderr ?? ""}`;

beforeAll(async () => {
  for (const name of ["quickstart", "cluster-rebalance", "project-and-pool", "vm-live-migration"]) {
    const r = await run("bash", [path.join(ROOT, "scripts/link-example.sh"), example(name)]);
    if (r.code !== 0) throw new Error(`link-example ${name} failed: ${r.stderr}`);
  }
  await deleteAll(staleLeftover);
});

afterAll(async () => {
  await TestStack.cleanupAll();
  await deleteAll(mine);
});

/** The one instance called `name`, wherever it is (fails if there are copies or none). */
async function only(name: string): Promise<Seen> {
  const seen = (await findByName(name)).filter((s) => s.name === name || s.name.startsWith(`${name}-lxdp-`));
  expect(seen.map((s) => `${s.remote}:${s.project}/${s.name}`)).toHaveLength(1);
  return seen[0];
}

/** The pool of the instance's root disk, as LXD reports it. */
async function rootPool(remote: string, project: string, name: string): Promise<string> {
  const i = JSON.parse(await lxc(["query", `${remote}:/1.0/instances/${name}?project=${project}`])) as {
    expanded_devices: Record<string, Record<string, string>>;
  };
  const root = Object.values(i.expanded_devices).find((d) => d.type === "disk" && d.path === "/");
  return root?.pool ?? "";
}

describe("examples/quickstart", () => {
  const NAME = `${PREFIX}qs-web`;
  let stack: TestStack;
  let data: string;

  beforeAll(async () => {
    stack = await TestStack.fromDir(example("quickstart"), { name: NAME, placement: "s1" });
  });
  afterAll(() => stack?.remove());

  it("up creates the container on s1, running", async () => {
    const r = await stack.up();
    expect(r.outputs).toMatchObject({ name: NAME, remote: "s1", status: "Running", location: "" });
    expect(await only(NAME)).toMatchObject({ remote: "s1", project: "default", status: "Running" });
    data = await writeData("s1", "default", NAME, "/root/data");
  });

  it("P1/P2: placement s2 previews as an update with the move plan, and changes nothing", async () => {
    await stack.setConfig("placement", "s2");
    const p = await stack.preview();
    expect(p.ops.web).toBe("update");
    expect(p.summary.replace ?? 0).toBe(0);
    expect(printed(p)).toContain(`lxd-placement: ${NAME}: plan: move s1:default/${NAME}`);
    expect(await only(NAME)).toMatchObject({ remote: "s1", status: "Running" });
  });

  it("up moves it to s2: running, data intact, lastMove recorded", async () => {
    const r = await stack.up();
    expect(r.ops.web).toBe("update");
    expect(r.outputs).toMatchObject({ remote: "s2", status: "Running" });
    expect(r.outputs.lastMove).toMatchObject({
      kind: "cross-server",
      from: expect.stringMatching(new RegExp(`^s1:default/${NAME}\\b`)),
      to: expect.stringMatching(new RegExp(`^s2:default/${NAME}\\b`)),
    });
    expect(await only(NAME)).toMatchObject({ remote: "s2", project: "default", status: "Running" });
    expect(await sha("s2", "default", NAME, "/root/data")).toBe(data);
  });

  it("destroy leaves nothing behind", async () => {
    await stack.destroy();
    expect(await findByName(NAME)).toHaveLength(0);
  });
});

describe("examples/cluster-rebalance", () => {
  const prefix = `${PREFIX}cr-`;
  const KEYS = ["web-1", "web-2", "web-3", "web-4"];
  const BEFORE = { "web-1": "m1", "web-2": "m2", "web-3": "m3", "web-4": "m1" };
  const AFTER = { "web-1": "m2", "web-2": "m2", "web-3": "m3", "web-4": "m3" };
  let stack: TestStack;
  const data: Record<string, string> = {};

  async function members(): Promise<Record<string, { location: string; status: string }>> {
    const out: Record<string, { location: string; status: string }> = {};
    for (const k of KEYS) {
      const s = await only(`${prefix}${k}`);
      expect(s).toMatchObject({ remote: "cluster", project: "default" });
      out[k] = { location: s.location, status: s.status };
    }
    return out;
  }
  const expected = (map: Record<string, string>) => Object.fromEntries(Object.entries(map).map(([k, m]) => [k, { location: m, status: "Running" }]));

  beforeAll(async () => {
    // The example's default map is BEFORE; only the prefix is set.
    stack = await TestStack.fromDir(example("cluster-rebalance"), { prefix });
  });
  afterAll(() => stack?.remove());

  it("up spreads the containers over m1..m3 as the default map says (R4)", async () => {
    const r = await stack.up();
    expect(r.outputs.locations).toEqual(Object.fromEntries(Object.entries(BEFORE).map(([k, m]) => [`${prefix}${k}`, m])));
    expect(await members()).toEqual(expected(BEFORE));
    for (const k of ["web-1", "web-4"]) data[k] = await writeData("cluster", "default", `${prefix}${k}`, "/root/data");
  });

  it("P1: a new map previews as updates of exactly the moved containers", async () => {
    await stack.setConfig("placement", JSON.stringify(AFTER));
    const p = await stack.preview();
    expect(p.ops).toMatchObject({ "web-1": "update", "web-4": "update", "web-2": "same", "web-3": "same" });
    expect(p.summary.replace ?? 0).toBe(0);
    expect(printed(p)).toMatch(new RegExp(`plan: move cluster:default/${prefix}web-1@m1\\b.* -> cluster:default/${prefix}web-1@m2\\b`));
    expect(await members()).toEqual(expected(BEFORE));
  });

  it("up moves them inside the cluster: new members, running, data intact", async () => {
    const r = await stack.up();
    expect(r.ops).toMatchObject({ "web-1": "update", "web-4": "update" });
    expect(await members()).toEqual(expected(AFTER));
    for (const k of ["web-1", "web-4"]) expect(await sha("cluster", "default", `${prefix}${k}`, "/root/data")).toBe(data[k]);
  });

  it("destroy leaves nothing behind", async () => {
    await stack.destroy();
    for (const k of KEYS) expect(await findByName(`${prefix}${k}`)).toHaveLength(0);
  });
});

describe("examples/project-and-pool", () => {
  const NAME = `${PREFIX}pp-app`;
  let stack: TestStack;
  let data: string;

  beforeAll(async () => {
    // The example's defaults: remote s1, project default, pool default.
    stack = await TestStack.fromDir(example("project-and-pool"), { name: NAME });
  });
  afterAll(() => stack?.remove());

  it("up creates it in project default, on pool default", async () => {
    const r = await stack.up();
    expect(r.outputs).toMatchObject({ remote: "s1", project: "default", storagePool: "default", status: "Running" });
    expect(await only(NAME)).toMatchObject({ remote: "s1", project: "default", status: "Running" });
    expect(await rootPool("s1", "default", NAME)).toBe("default");
    data = await writeData("s1", "default", NAME, "/root/data");
  });

  it("P1: project staging and pool fast preview as an update", async () => {
    await stack.setAllConfig({ name: NAME, project: "staging", pool: "fast" });
    const p = await stack.preview();
    expect(p.ops.app).toBe("update");
    expect(p.summary.replace ?? 0).toBe(0);
    expect(printed(p)).toContain(`lxd-placement: ${NAME}: plan: move s1:default/${NAME}`);
    expect(await only(NAME)).toMatchObject({ project: "default" });
  });

  it("R6: up moves it to project staging on pool fast: running, data intact", async () => {
    const r = await stack.up();
    expect(r.ops.app).toBe("update");
    expect(r.outputs).toMatchObject({ project: "staging", storagePool: "fast", status: "Running" });
    expect(await only(NAME)).toMatchObject({ remote: "s1", project: "staging", status: "Running" });
    expect(await rootPool("s1", "staging", NAME)).toBe("fast");
    expect(await sha("s1", "staging", NAME, "/root/data")).toBe(data);
    expect((await exec("s1", "staging", NAME, "echo ok")).trim()).toBe("ok");
  });

  it("destroy leaves nothing behind", async () => {
    await stack.destroy();
    expect(await findByName(NAME)).toHaveLength(0);
  });
});

describe("examples/vm-live-migration", () => {
  const NAME = `${PREFIX}vm`;
  let stack: TestStack;

  beforeAll(async () => {
    // VMs cannot be created here (no working QEMU), and the sandbox has no VM image. Preview only
    // checks that the image alias exists, so the container image stands in for one.
    stack = await TestStack.fromDir(example("vm-live-migration"), { name: NAME, image: "busybox" });
  });
  afterAll(() => stack?.remove());

  it("preview shows a create of the VM (R8/R9 settings accepted) and changes nothing", async () => {
    const p = await stack.preview();
    expect(p.ops.vm).toBe("create");
    expect(p.summary).toEqual({ create: 2 }); // the stack and the VM
    expect(await findByName(NAME)).toHaveLength(0);
  });
});
