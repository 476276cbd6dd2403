/**
 * The LXD client against the real sandbox, and against real servers on port 0 for what the
 * sandbox cannot produce (a server that never answers, an impostor certificate).
 */
import * as fs from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { LxdClient } from "../../provider/lxd/client";
import { getInstance } from "../../provider/lxd/instances";
import { loadRemotes } from "../../provider/lxd/remotes";
import { listMembers, listPools, listProjects, resolveImage } from "../../provider/lxd/resources";
import { LXD_CONF, run } from "../helpers/sandbox";

const remotes = loadRemotes({ ...process.env, LXD_CONF });
const clients: LxdClient[] = [];
const open = (name: string, timeoutMs?: number) => {
  const c = LxdClient.open(remotes.get(name), { timeoutMs });
  clients.push(c);
  return c;
};
afterAll(async () => Promise.all(clients.map((c) => c.close())));

describe("LxdClient against the sandbox", () => {
  it("reads server info, projects, pools and the image through the pinned certificate", async () => {
    const c = open("s1");
    const s = await c.server();
    expect(s.auth).toBe("trusted");
    expect(s.api_extensions).toContain("container_incremental_copy");
    expect(await listProjects(c)).toEqual(expect.arrayContaining(["default", "staging"]));
    expect(await listPools(c)).toEqual(expect.arrayContaining(["default", "fast"]));
    expect(await resolveImage(c, "busybox")).toMatch(/^[0-9a-f]{64}$/);
    expect(await resolveImage(c, "no-such-image")).toBeUndefined();
  });

  it("reads cluster members through the cluster remote", async () => {
    const members = await listMembers(open("cluster"));
    expect(members.map((m) => m.server_name).sort()).toEqual(["m1", "m2", "m3"]);
  });

  it("a missing instance is undefined, not an error (read and delete are safe to repeat)", async () => {
    expect(await getInstance(open("s2"), "does-not-exist")).toBeUndefined();
  });

  it("a missing API extension is refused before anything is sent, naming the side and the extension", async () => {
    await expect(open("s1").requireExtensions(["no_such_extension"], "target")).rejects.toMatchObject({
      code: "LXDP_MISSING_EXTENSION",
      message: expect.stringMatching(/target server is missing the required "no_such_extension" API extension/),
    });
  });

  it("an unknown remote names the known ones", () => {
    expect(() => remotes.get("nope")).toThrow(/unknown remote "nope".*Known remotes.*s1/s);
  });
});

describe("LxdClient against servers that misbehave", () => {
  it("a server that accepts but never answers ends in a TimeoutError, not a hang", async () => {
    const sockets: net.Socket[] = [];
    const sock = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lxdp-")), "unix.socket");
    const frozen = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => frozen.listen(sock, r));
    try {
      const c = LxdClient.open({ name: "frozen", addr: "unix://", socketPath: sock }, { timeoutMs: 1_500 });
      clients.push(c);
      const t = Date.now();
      await expect(c.server()).rejects.toMatchObject({ code: "LXDP_TIMEOUT", message: expect.stringMatching(/no answer within/) });
      expect(Date.now() - t).toBeLessThan(10_000);
    } finally {
      sockets.forEach((s) => s.destroy());
      frozen.close();
    }
  });

  it("a server presenting another certificate than the pinned one is refused, with how to re-trust it", async () => {
    // An impostor: a real TLS server with its own key on port 0, reached as remote "s1" with s1's pin.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lxdp-"));
    const r = await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${dir}/k.pem`,
      "-out",
      `${dir}/c.pem`,
      "-days",
      "1",
      "-subj",
      "/CN=impostor",
    ]);
    expect(r.code).toBe(0);
    const server = https.createServer({ key: fs.readFileSync(`${dir}/k.pem`), cert: fs.readFileSync(`${dir}/c.pem`) }, (_q, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ type: "sync", status_code: 200, metadata: { api_extensions: [], auth: "trusted" } }));
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const real = remotes.get("s1");
      const c = LxdClient.open({ ...real, addr: `https://127.0.0.1:${port}` });
      clients.push(c);
      await expect(c.server()).rejects.toMatchObject({
        code: "LXDP_CERT_MISMATCH",
        message: expect.stringMatching(/not the pinned.*re-trust it: "lxc remote remove s1"/s),
      });
    } finally {
      server.close();
    }
  });

  it("a server that does not trust the client says so, not a stack trace", async () => {
    const real = remotes.get("s2");
    // A client certificate the server has never seen.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lxdp-"));
    await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${dir}/k.pem`,
      "-out",
      `${dir}/c.pem`,
      "-days",
      "1",
      "-subj",
      "/CN=stranger",
    ]);
    const c = LxdClient.open({ ...real, clientCert: fs.readFileSync(`${dir}/c.pem`, "utf8"), clientKey: fs.readFileSync(`${dir}/k.pem`, "utf8") });
    clients.push(c);
    await expect(c.requireExtensions([], "target")).rejects.toMatchObject({ code: "LXDP_NOT_TRUSTED", message: expect.stringMatching(/does not trust this client/) });
    await expect(c.get("/instances")).rejects.toMatchObject({ code: "LXDP_NOT_TRUSTED" });
  });
});
