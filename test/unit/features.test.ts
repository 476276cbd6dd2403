/**
 * Optional LXD features are checked where the request is made, before it is sent (features.ts):
 * against a fake server that lacks the extension, the client refuses with an error naming the
 * server and the extension, and the server receives nothing that changes anything.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Estate } from "../../provider/estate";
import { MissingExtensionError } from "../../provider/lxd/errors";
import { getInstance, moveToPool, moveToProject } from "../../provider/lxd/instances";
import { copy, type CopySpec } from "../../provider/transfer";
import { DEFAULT_EXTENSIONS, startFakes, type FakeLxd } from "../helpers/fake-lxd";

let close: (() => Promise<void>) | undefined;
let estate: Estate | undefined;
let dir: string | undefined;
afterEach(async () => {
  await estate?.close();
  await close?.();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  estate = close = dir = undefined;
});

async function servers(ext: { s1: string[]; s2: string[] }): Promise<{ e: Estate; s1: FakeLxd; s2: FakeLxd }> {
  const started = await startFakes({ name: "s1", address: "127.0.2.1:8443", extensions: ext.s1 }, { name: "s2", address: "127.0.2.2:8443", extensions: ext.s2 });
  close = started.close;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "features-"));
  fs.writeFileSync(path.join(dir, "config.yml"), `remotes:\n${started.fakes.map((f) => `  ${f.name}:\n    addr: unix://${f.socketPath}`).join("\n")}\n`);
  estate = new Estate({ LXD_CONF: dir, LXD_SOCKET: path.join(dir, "none.socket") });
  const [s1, s2] = started.fakes;
  s1.addInstance({ name: "web", status: "Stopped" });
  return { e: estate, s1, s2 };
}
const without = (...gone: string[]) => DEFAULT_EXTENSIONS.filter((x) => !gone.includes(x));
const sent = (f: FakeLxd) => f.requests.filter((r) => r.method !== "GET").map((r) => `${r.method} ${r.path}`);

describe("features are checked in the client, before the request", () => {
  it("a pool move on a server without instance_pool_move: refused naming the server and the extension, nothing sent", async () => {
    const { e, s1 } = await servers({ s1: without("instance_pool_move"), s2: DEFAULT_EXTENSIONS });
    const err = await moveToPool(e.client("s1"), "web", "fast", { live: false }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(MissingExtensionError);
    expect((err as Error).message).toMatch(/server "s1" cannot do moving an instance to another storage pool of its server: it lacks the "instance_pool_move" API extension/);
    expect(sent(s1)).toEqual([]);
  });

  it("a project move on a server without instance_project_move: refused, nothing sent", async () => {
    const { e, s1 } = await servers({ s1: without("instance_project_move"), s2: DEFAULT_EXTENSIONS });
    const err = await moveToProject(e.client("s1"), "web", "staging", { live: false }).catch((x: unknown) => x);
    expect((err as Error).message).toMatch(/server "s1" .*"instance_project_move"/);
    expect(sent(s1)).toEqual([]);
  });

  it("a push transfer to a server without container_push: refused naming it, nothing sent to either side", async () => {
    const { e, s1, s2 } = await servers({ s1: DEFAULT_EXTENSIONS, s2: without("container_push") });
    const source = (await getInstance(e.client("s1"), "web"))!.instance;
    const spec: CopySpec = { name: "web", source, config: {}, devices: {}, profiles: ["default"], live: false, refresh: false, timeoutMs: 10_000 };
    const err = await copy("push", e.client("s1"), e.client("s2"), spec).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(MissingExtensionError);
    expect((err as Error).message).toMatch(/server "s2" cannot do push and relay transfers: it lacks the "container_push" API extension/);
    expect([...sent(s1), ...sent(s2)]).toEqual([]);
  });
});

describe("the scope's target (a cluster member) is sent in one place: creating or moving an instance there", () => {
  it("a client scoped to member m2 sends target=m2 on POST /instances and POST /instances/{name}, on nothing else", async () => {
    const { e, s1 } = await servers({ s1: DEFAULT_EXTENSIONS, s2: DEFAULT_EXTENSIONS });
    const c = e.client("s1").useTarget("m2");
    await getInstance(c, "web");
    await c.call("PATCH", "/instances/web", { body: { description: "x" } });
    await c.call("POST", "/instances/web", { body: { name: "web2" } }).catch(() => undefined);
    await c.call("POST", "/instances", { body: { name: "new", source: { type: "none" } } }).catch(() => undefined);
    const seen = s1.requests.filter((r) => r.path.startsWith("/1.0/instances")).map((r) => `${r.method} ${r.path}${r.query.target ? ` target=${r.query.target}` : ""}`);
    expect(seen).toEqual(["GET /1.0/instances/web", "PATCH /1.0/instances/web", "POST /1.0/instances/web target=m2", "POST /1.0/instances target=m2"]);
  });
});
