/**
 * The sandbox's daemon list (scripts/sandbox/daemons.tsv) is what the sandbox documents, and
 * scripts/sandbox.sh derives the same list from it as the tests do (`sandbox.sh daemons` starts
 * nothing and needs no LXD).
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { DAEMONS, MEMBERS, parseDaemons, REMOTES, ROWS } from "../helpers/daemons";

const ROOT = path.resolve(__dirname, "../..");

describe("the sandbox's daemons", () => {
  it("are s1 and s2 standalone, and the cluster m1, m2, m3", () => {
    expect(ROWS).toEqual([
      { name: "s1", role: "standalone", address: "127.0.0.1:8443", remote: "s1" },
      { name: "s2", role: "standalone", address: "127.0.0.1:8444", remote: "s2" },
      { name: "m1", role: "member", address: "127.0.0.3:8443", remote: "cluster" },
      { name: "m2", role: "member", address: "127.0.0.4:8443", remote: "cluster" },
      { name: "m3", role: "member", address: "127.0.0.5:8443", remote: "cluster" },
    ]);
    expect(DAEMONS).toEqual(["s1", "s2", "m1", "m2", "m3"]);
    expect(MEMBERS).toEqual(["m1", "m2", "m3"]);
    expect(REMOTES).toEqual(["s1", "s2", "cluster"]);
  });

  it("are the list sandbox.sh derives", () => {
    const out = execFileSync("bash", [path.join(ROOT, "scripts/sandbox.sh"), "daemons"], { encoding: "utf8", timeout: 5_000, stdio: ["ignore", "pipe", "pipe"] });
    const derived = out
      .trimEnd()
      .split("\n")
      .map((l) => l.split(" "));
    expect(derived).toEqual(ROWS.map((r) => [r.name, r.role, r.address, r.remote]));
  });

  it("parse with comments, blank lines and any blanks between columns", () => {
    expect(parseDaemons("# name role address remote\n\n  a\tstandalone   10.0.0.1:1 ra\nb member 10.0.0.2:1 rb\n")).toEqual([
      { name: "a", role: "standalone", address: "10.0.0.1:1", remote: "ra" },
      { name: "b", role: "member", address: "10.0.0.2:1", remote: "rb" },
    ]);
    expect(() => parseDaemons("a standalone 10.0.0.1:1\n")).toThrow(/line 1: want 4 columns/);
    expect(() => parseDaemons("# x\na leader 10.0.0.1:1 ra\n")).toThrow(/line 2: role leader/);
  });
});
