/**
 * `onRequest` (LxdClient, Estate) and the provider's `inProcess` options: a program that runs the
 * provider in its own process (`npm run bench`) is told of every request a server receives, with
 * its scope, and takes the provider's log lines; nothing is patched or counted globally.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Estate } from "../../provider/estate";
import type { RequestSeen } from "../../provider/lxd/client";
import { getInstance, listInstances } from "../../provider/lxd/instances";
import { MARKER_KEY } from "../../provider/marks";
import * as provider from "../../provider/resource";
import { kindOf, RequestTally } from "../../bench/context";
import { startFakes, type FakeLxd } from "../helpers/fake-lxd";

let close: (() => Promise<void>) | undefined;
let dir: string | undefined;
const savedConf = process.env.LXD_CONF;
afterEach(async () => {
  provider.inProcess({});
  await close?.();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  close = dir = undefined;
  process.env.LXD_CONF = savedConf;
});

async function servers(): Promise<{ env: NodeJS.ProcessEnv; s1: FakeLxd; s2: FakeLxd }> {
  const started = await startFakes({ name: "s1", address: "127.0.2.1:8443" }, { name: "s2", address: "127.0.2.2:8443" });
  close = started.close;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "on-request-"));
  fs.writeFileSync(path.join(dir, "config.yml"), `remotes:\n${started.fakes.map((f) => `  ${f.name}:\n    addr: unix://${f.socketPath}`).join("\n")}\n`);
  const [s1, s2] = started.fakes;
  return { env: { LXD_CONF: dir, LXD_SOCKET: path.join(dir, "none.socket") }, s1, s2 };
}

/** What the servers recorded, as onRequest reports it (REST only: websockets are not requests). */
const received = (...fs: FakeLxd[]) =>
  fs
    .flatMap((f) => f.requests.filter((r) => !r.path.endsWith("/websocket")))
    .sort((a, b) => a.seq - b.seq)
    .map((r) => ({ remote: r.server, method: r.method, path: r.path.replace(/^\/1\.0/, ""), query: r.query }));

describe("onRequest", () => {
  it("an estate's clients and their scoped copies report each request as the server receives it", async () => {
    const { env, s1, s2 } = await servers();
    s1.addInstance({ name: "web", status: "Stopped", project: "staging" });
    const seen: RequestSeen[] = [];
    const e = new Estate(env, {}, { onRequest: (r) => seen.push(r) });
    try {
      await e.client("s1").server();
      expect((await getInstance(e.client("s1", "staging"), "web"))?.instance.name).toBe("web");
      await listInstances(e.client("s2"));
    } finally {
      await e.close();
    }
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen).toEqual(received(s1, s2));
    expect(seen).toContainEqual({ remote: "s1", method: "GET", path: "/instances/web", query: { project: "staging" } });
  });

  it("the provider run in process: inProcess' listener sees every request of a read(), its log takes the lines", async () => {
    const { env, s1, s2 } = await servers();
    s1.addInstance({ name: "web", status: "Stopped", config: { [MARKER_KEY]: "id-1" } });
    process.env.LXD_CONF = env.LXD_CONF;
    const tally = new RequestTally();
    const lines: string[] = [];
    provider.inProcess({ onRequest: tally.onRequest, log: (l) => lines.push(l) });
    // The state says s2 (moved outside Pulumi): read() looks for it, finds it on s1 (P6).
    const r = await provider.read("id-1", { name: "web", remote: "s2", project: "default", image: "busybox", instanceId: "id-1" });
    expect(r.props.remote).toBe("s1");
    const all = received(s1, s2);
    expect(tally.snapshot().total).toBe(all.length);
    expect(tally.snapshot().byKind).toEqual(all.reduce<Record<string, number>>((m, x) => ((m[kindOf(x)] = (m[kindOf(x)] ?? 0) + 1), m), {}));
    provider.log("web", "a line");
    expect(lines).toContain("lxd-placement: web: a line");
  });
});
