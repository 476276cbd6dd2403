/**
 * The policy pack (policy/) through the real engine against the sandbox: for each rule, a program
 * that breaks it is refused at preview with the rule's name and message, the same program without
 * the violation previews clean, and no preview sent a mutating request to any LXD daemon (the
 * daemons log every request; the previews run with a client certificate of their own, as in
 * bad-input.test.ts).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TestStack } from "../helpers/engine";
import { mark, MUTATING, Observer, requestsSince } from "../helpers/observer";
import { ROOT, deleteAll, findEverywhere } from "../helpers/sandbox";

type Spec = Record<string, unknown>;

const RUN = Math.random().toString(36).slice(2, 6);
const PREFIX = `pp-${RUN}-`;
const PACK = path.join(ROOT, "policy", "run");
const PROGRAM_DIR = path.join(ROOT, ".sandbox", "e2e", "policy-pack-program");
const CONFIG_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "policy-pack-"));

/** The program: one Instance per entry of the stack config `specs`. */
function writeProgram(): void {
  fs.mkdirSync(PROGRAM_DIR, { recursive: true });
  fs.writeFileSync(path.join(PROGRAM_DIR, "Pulumi.yaml"), "name: policy-pack\nruntime: nodejs\ndescription: the policy pack's rules, one preview each\n");
  fs.writeFileSync(path.join(PROGRAM_DIR, "package.json"), JSON.stringify({ name: "policy-pack-program", private: true, main: "index.js" }));
  fs.writeFileSync(
    path.join(PROGRAM_DIR, "index.js"),
    [
      `const pulumi = require("@pulumi/pulumi");`,
      `const { Instance } = require(${JSON.stringify(path.join(ROOT, "bin", "sdk"))});`,
      `const specs = JSON.parse(new pulumi.Config().require("specs"));`,
      `for (const [name, spec] of Object.entries(specs)) new Instance(name, spec);`,
      ``,
    ].join("\n"),
  );
}

const a: Spec = { name: `${PREFIX}a`, image: "busybox", remote: "s1", running: false };
const b: Spec = { name: `${PREFIX}b`, image: "busybox", remote: "s1", running: false };
const vm: Spec = { name: `${PREFIX}vm`, image: "busybox", remote: "s1", type: "virtual-machine", running: false, migration: { strategy: "live" } };

interface Case {
  rule: string;
  /** The rule's parameters (the policy config file's entry for it). */
  config?: Record<string, unknown>;
  bad: Record<string, Spec>;
  good: Record<string, Spec>;
  text: RegExp;
}

const CASES: Case[] = [
  {
    rule: "vm-live-prerequisites",
    bad: { a, b, vm },
    good: { a, b, vm: { ...vm, config: { "migration.stateful": "true" } } },
    text: /instance "pp-\w+-vm": config\["migration.stateful"\] must be "true" for a virtual machine that moves live only .*\(R8\)/,
  },
  {
    rule: "allowed-placements",
    config: { remotes: ["s1", "cluster"], members: ["m1", "m2"] },
    bad: { a: { ...a, remote: "s2" }, b },
    good: { a: { ...a, remote: "cluster", target: "m2" }, b },
    text: /instance "pp-\w+-a": remote "s2" is not allowed in this stack \(allowed: s1, cluster\)/,
  },
  {
    rule: "no-draining-members",
    config: { members: ["m3"] },
    bad: { a: { ...a, remote: "cluster", target: "m3" }, b },
    good: { a: { ...a, remote: "cluster", target: "m2" }, b },
    text: /instance "pp-\w+-a": target "m3" is draining/,
  },
  {
    rule: "group-anti-affinity",
    config: { groups: ["db"] },
    bad: { a: { ...a, remote: "cluster", target: "m1", migration: { group: "db" } }, b: { ...b, remote: "cluster", target: "m1", migration: { group: "db" } } },
    good: { a: { ...a, remote: "cluster", target: "m1", migration: { group: "db" } }, b: { ...b, remote: "cluster", target: "m2", migration: { group: "db" } } },
    text: /group "db" is anti-affine, but "pp-\w+-a", "pp-\w+-b" share cluster member m1/,
  },
  {
    rule: "max-moves-per-update",
    config: { maximum: 1 },
    bad: { a: { ...a, remote: "s2" }, b: { ...b, remote: "s2" } },
    good: { a: { ...a, remote: "s2" }, b },
    // Both moves are listed, in the engine's order.
    text: /2 instances move in this update, at most 1 may: (?=[^\n]*pp-\w+-a \(s1 -> s2\))(?=[^\n]*pp-\w+-b \(s1 -> s2\))/,
  },
];

function configFile(c: Case): string {
  const file = path.join(CONFIG_DIR, `${c.rule}.json`);
  fs.writeFileSync(file, JSON.stringify(c.config ? { [c.rule]: c.config } : {}));
  return file;
}

let stack: TestStack;
let observer: Observer;
let beforePreviews: Record<string, number>;

beforeAll(async () => {
  await deleteAll((s) => s.name.startsWith("pp-") && Date.now() - Date.parse((s as unknown as { created_at: string }).created_at) > 30 * 60_000);
  observer = await Observer.create("pp-observer");
  writeProgram();
  stack = await TestStack.fromDir(PROGRAM_DIR, { specs: JSON.stringify({ a, b }) });
  stack.stack.workspace.envVars.LXD_CONF = observer.confDir;
  await stack.up();
  beforePreviews = mark();
});

afterAll(async () => {
  await stack?.remove();
  await deleteAll((s) => s.name.startsWith(PREFIX));
  await observer?.drop();
  fs.rmSync(CONFIG_DIR, { recursive: true, force: true });
});

describe("the policy pack refuses at preview what breaks a rule, and passes the same program without it", () => {
  it.each(CASES.map((c) => [c.rule, c] as const))("%s", async (_rule, c) => {
    const opts = { policyPacks: [PACK], policyPackConfigs: [configFile(c)] };
    await stack.setConfig("specs", JSON.stringify(c.bad));
    const refused = await stack.preview(opts).then(
      (p) => `UNEXPECTED SUCCESS: ${p.stdout}`,
      (e: Error) => e.message,
    );
    expect(refused).toMatch(new RegExp(`\\[mandatory\\]\\s+${c.rule}\\b`));
    expect(refused).toMatch(c.text);
    // Only this rule is broken.
    for (const other of CASES) if (other.rule !== c.rule) expect(refused).not.toMatch(new RegExp(`\\]\\s+${other.rule}\\b`));

    await stack.setConfig("specs", JSON.stringify(c.good));
    const clean = await stack.preview(opts);
    // The pack ran, and found nothing.
    expect(clean.stdout).toMatch(/Policy Packs run:\s+Name\s+Version\s+lxd-placement\|local\|\S+policy\/run\s+0\.1\.0/);
    expect(clean.stdout).not.toMatch(/\[(mandatory|advisory)\]/);
  });

  it("none of the previews changed anything: no mutating request, both instances where they were", async () => {
    const mine = requestsSince(beforePreviews).filter((r) => r.username === observer.fingerprint);
    expect(mine.filter((r) => r.method === "GET").length).toBeGreaterThan(0);
    expect(mine.filter((r) => MUTATING.has(r.method)).map((r) => `${r.daemon} ${r.method} ${r.url}`)).toEqual([]);
    const now = await findEverywhere((s) => s.name.startsWith(PREFIX));
    expect(now.map((s) => `${s.remote}:${s.project}/${s.name} ${s.status}`).sort()).toEqual([`s1:default/${PREFIX}a Stopped`, `s1:default/${PREFIX}b Stopped`]);
  });
});
