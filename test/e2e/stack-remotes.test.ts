/**
 * Remotes only in the stack config `lxd-placement:remotes` (secret), with an empty lxc
 * configuration for both the program and the provider: an InstanceGroup spread over two servers
 * and an Instance preview, create and move; a group over a remote that exists nowhere fails with
 * the provider's error, not a trace. Instance names start with "srm-".
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { ROOT, TestStack } from "../helpers/engine";
import { deleteAll, findEverywhere, LXD_CONF, run, type Seen } from "../helpers/sandbox";
// The built SDK, as a user's program loads it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Instance, InstanceGroup } = require("../../bin/sdk") as typeof import("../../sdk");

const PREFIX = "srm-";
const mine = (s: Seen) => s.name.startsWith(PREFIX);
const read = (f: string) => fs.readFileSync(path.join(LXD_CONF, f), "utf8");
/** s1 and s2 under other names, with the client's certificate: nothing of them is in any lxc config. */
const REMOTES = Object.fromEntries(
  [
    ["sa", "s1", "https://127.0.0.1:8443"],
    ["sb", "s2", "https://127.0.0.1:8444"],
  ].map(([name, server, addr]) => [name, { addr, serverCert: read(path.join("servercerts", `${server}.crt`)), clientCert: read("client.crt"), clientKey: read("client.key") }]),
);

const SERVER: Record<string, string> = { sa: "s1", sb: "s2" };

const spec = { soloRemote: "sa", groupRemotes: ["sa", "sb"], draining: [] as string[] };

function program() {
  return async () => {
    const g = new InstanceGroup("g", {
      namePrefix: `${PREFIX}g-`,
      defaults: { image: "busybox", running: false },
      instances: { a: {}, b: {} },
      policy: { remotes: spec.groupRemotes, draining: spec.draining },
    });
    const solo = new Instance("solo", { name: `${PREFIX}solo`, image: "busybox", running: false, remote: spec.soloRemote });
    return {
      solo: solo.remote,
      group: pulumi.all([g.instances.a.remote, g.instances.b.remote]),
    };
  };
}

const where = async () => (await findEverywhere(mine)).map((s) => `${s.name}@${s.remote}`).sort();

let stack: TestStack;
let emptyConf: string;
const savedConf = process.env.LXD_CONF;

beforeAll(async () => {
  await deleteAll(mine);
  // An lxc configuration directory with nothing in it: no config.yml, no certificates.
  emptyConf = fs.mkdtempSync(path.join(os.tmpdir(), "lxdp-empty-conf-"));
  // The inline program (the group reads LXD) runs in this process; the provider in the engine's.
  process.env.LXD_CONF = emptyConf;
  stack = await TestStack.create({ projectName: "stack-remotes-only", program: program(), env: { LXD_CONF: emptyConf } });
  await stack.setConfig("lxd-placement:remotes", JSON.stringify(REMOTES), true);
});

afterAll(async () => {
  await stack?.remove();
  if (savedConf === undefined) delete process.env.LXD_CONF;
  else process.env.LXD_CONF = savedConf;
  await deleteAll(mine);
  if (emptyConf) fs.rmSync(emptyConf, { recursive: true, force: true });
});

describe("remotes only in stack config (empty lxc config)", () => {
  it("preview plans the group over both servers and the instance, and changes nothing", async () => {
    const p = await stack.preview();
    expect(p.ops).toMatchObject({ g: "create", "g-a": "create", "g-b": "create", solo: "create" });
    expect(await where()).toEqual([]);
  });

  it("up creates them where the stack's remotes point: one group instance on each server", async () => {
    const r = await stack.up();
    expect(r.outputs.solo).toBe("sa");
    expect([...(r.outputs.group as string[])].sort()).toEqual(["sa", "sb"]);
    const [a, b] = (r.outputs.group as string[]).map((x) => SERVER[x]);
    expect(await where()).toEqual([`${PREFIX}g-a@${a}`, `${PREFIX}g-b@${b}`, `${PREFIX}solo@s1`]);
  });

  it("a changed placement moves them: the group drains sb, the instance goes to sb", async () => {
    spec.soloRemote = "sb";
    spec.draining = ["sb"];
    const r = await stack.up();
    expect(r.summary.create ?? 0).toBe(0);
    expect(r.summary.delete ?? 0).toBe(0);
    expect(r.outputs).toMatchObject({ solo: "sb", group: ["sa", "sa"] });
    expect(await where()).toEqual([`${PREFIX}g-a@s1`, `${PREFIX}g-b@s1`, `${PREFIX}solo@s2`]);
  });

  it("a group over a remote no configuration names fails with the provider's error, once, not a trace", async () => {
    // A program of its own on disk, run by the engine's Node.js language host as a user's is (an
    // inline program's failure would surface inside jest instead).
    fs.mkdirSync(path.join(ROOT, ".sandbox", "e2e"), { recursive: true });
    const dir = fs.mkdtempSync(path.join(ROOT, ".sandbox", "e2e", "group-nowhere-"));
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), "name: group-nowhere\nruntime: nodejs\nmain: index.js\n");
    fs.writeFileSync(
      path.join(dir, "index.js"),
      [
        'const { InstanceGroup } = require("lxd-placement");',
        `new InstanceGroup("g", { namePrefix: "${PREFIX}x-", defaults: { image: "busybox", running: false }, instances: { a: {}, b: {} }, policy: { remotes: ["sa", "nowhere"] } });`,
      ].join("\n"),
    );
    const linked = await run("bash", [path.join(ROOT, "scripts/link-example.sh"), dir]);
    expect(linked.code).toBe(0);
    const bad = await TestStack.fromDir(dir, undefined, { env: { LXD_CONF: emptyConf } });
    try {
      await bad.setConfig("lxd-placement:remotes", JSON.stringify(REMOTES), true);
      const err = await bad.preview().then(
        () => new Error("preview succeeded"),
        (e: unknown) => e as Error,
      );
      // The engine's own lines (the harness's first line repeats the first of them).
      const said = err.message.split("\n").filter((l) => /^\s*error: .*unknown remote "nowhere"/.test(l));
      expect(said[0]).toMatch(
        /error: (PlacementError: )?InstanceGroup g: cannot read where the instances are: cannot read remote "nowhere": unknown remote "nowhere".*Known remotes .*: (local, )?sa, sb.*stack config lxd-placement:remotes/,
      );
      expect(said).toHaveLength(1);
      expect(err.message).not.toMatch(/unhandled exception|error serializing property|<ref \*1>|\n\s+at /);
    } finally {
      await bad.remove();
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // Nothing moved.
    expect(await where()).toEqual([`${PREFIX}g-a@s1`, `${PREFIX}g-b@s1`, `${PREFIX}solo@s2`]);
  });
});
