/**
 * The GitOps pipeline (scripts/gitops.sh) played on the sandbox with a bare Git repository whose
 * post-receive hook runs it, as a Git server's CI would: a branch that changes the placement is
 * reviewed (the comment shows the move and "policies: passed", nothing moves), the merge applies
 * it (the instance is at its new place with its data), an out-of-band `lxc move` is caught by the
 * drift check naming the instance, and applying main again puts it back.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ROOT, deleteAll, findByName, lxc, run, sha, writeData } from "../helpers/sandbox";

const RUN = Math.random().toString(36).slice(2, 6);
const STACK = `gitops-${RUN}`;
const PREFIX = `go-${RUN}-`;
const NAME = `${PREFIX}app`;
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), "gitops-"));
const REPO = path.join(TMP, "placement.git");
const WORK = path.join(TMP, "work");
const OUT = path.join(TMP, "out");
const ENV = { GITOPS_STACK: STACK, GITOPS_OUT: OUT };
const GITOPS = path.join(ROOT, "scripts", "gitops.sh");

const git = async (args: string[]) => {
  const r = await run("git", ["-c", "user.name=Reviewer", "-c", "user.email=reviewer@example.org", ...args], { timeoutMs: 600_000, env: ENV });
  if (r.code !== 0) throw new Error(`git ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r;
};
/** git in the working clone (`-C`), as the person proposing the change. */
const g = (...args: string[]) => git(["-C", WORK, ...args]);
const gitops = (...args: string[]) => run("bash", [GITOPS, ...args], { timeoutMs: 600_000, env: ENV });

function stackConfig(placement: Record<string, unknown>): string {
  const lines = [`config:`, `  lxd-placement-gitops:namePrefix: ${PREFIX}`, `  lxd-placement-gitops:instances:`];
  for (const [k, v] of Object.entries(placement)) lines.push(`    ${k}: ${JSON.stringify(v)}`);
  return `${lines.join("\n")}\n`;
}

let data = "";
let where = "";

beforeAll(async () => {
  await deleteAll((s) => s.name.startsWith("go-") && Date.now() - Date.parse((s as unknown as { created_at: string }).created_at) > 30 * 60_000);
  await git(["init", "-q", "--bare", "-b", "main", REPO]);
  const hook = await gitops("install-hook", REPO);
  expect(hook.code).toBe(0);
  await git(["clone", "-q", REPO, WORK]);
  for (const f of ["Pulumi.yaml", "index.ts", "package.json", "tsconfig.json", "policy.json"]) fs.copyFileSync(path.join(ROOT, "examples", "gitops", f), path.join(WORK, f));
  fs.writeFileSync(path.join(WORK, ".gitignore"), "node_modules/\n");
  fs.writeFileSync(path.join(WORK, `Pulumi.${STACK}.yaml`), stackConfig({ app: { remote: "s1" } }));
  // The stack's policy config, on main: a branch cannot loosen it for its own review.
  fs.writeFileSync(path.join(WORK, "policy.json"), JSON.stringify({ "allowed-placements": { remotes: ["s1", "s2"] }, "max-moves-per-update": { maximum: 2 } }));
  await g("add", ".");
  await g("commit", "-q", "-m", "placement of the app");
});

afterAll(async () => {
  // The stack's resources: gone with the instances; then the stack itself.
  await deleteAll((s) => s.name.startsWith(PREFIX));
  if (fs.existsSync(path.join(WORK, "Pulumi.yaml"))) await run("bash", ["-c", `. scripts/env.sh && cd "${WORK}" && pulumi stack rm "${STACK}" --force --yes`], { timeoutMs: 120_000 });
  fs.rmSync(TMP, { recursive: true, force: true });
});

describe("placement through Git: review, merge, drift", () => {
  it("pushing main applies it: the instance is created on s1, running", async () => {
    const push = await g("push", "origin", "main");
    expect(push.stderr).toMatch(/remote: gitops: apply of main/);
    const now = await findByName(NAME);
    expect(now.map((s) => `${s.remote}:${s.name} ${s.status}`)).toEqual([`s1:${NAME} Running`]);
    data = await writeData("s1", "default", NAME, "/root/data", 1);
  });

  it("a branch that moves it is reviewed: the comment shows the move and passed policies; nothing moves", async () => {
    await g("checkout", "-q", "-b", "move-app");
    fs.writeFileSync(path.join(WORK, `Pulumi.${STACK}.yaml`), stackConfig({ app: { remote: "s2" } }));
    await g("commit", "-q", "-am", "move the app to s2");
    await g("push", "-q", "origin", "move-app");
    const comment = fs.readFileSync(path.join(OUT, "move-app.md"), "utf8");
    expect(comment).toMatch(/## Placement plan for stack `gitops-\w+`: `move-app` at [0-9a-f]{7}/);
    expect(comment).toMatch(new RegExp(`\\| ${NAME} \\| s1:default/${NAME}( pool=\\S+)? \\| s2:default/${NAME} \\| near-live \\| final sync and restart [^|]*\\| cross-server pull \\|`));
    expect(comment).toMatch(/\*\*policies: passed\*\* \(lxd-placement: [^)]*allowed-placements/);
    expect((await findByName(NAME)).map((s) => s.remote)).toEqual(["s1"]);
  });

  it("a branch that breaks a policy, and loosens the policy in the same change, is reviewed against main's policy: refused", async () => {
    await g("checkout", "-q", "-b", "too-far", "main");
    fs.writeFileSync(path.join(WORK, `Pulumi.${STACK}.yaml`), stackConfig({ app: { remote: "s1" }, other: { remote: "cluster", target: "m1" } }));
    fs.writeFileSync(path.join(WORK, "policy.json"), JSON.stringify({}));
    await g("commit", "-q", "-am", "an instance on a remote the stack does not allow");
    await g("push", "-q", "origin", "too-far");
    // What the hook ran, run again for its exit status (a CI check's red or green).
    const r = await gitops("on-push", REPO, "refs/heads/too-far");
    const comment = fs.readFileSync(path.join(OUT, "too-far.md"), "utf8");
    expect(r.code).not.toBe(0);
    expect(comment).toMatch(/\*\*policies: failed\*\*/);
    expect(comment).toMatch(new RegExp(`❌ \`allowed-placements\` \\(mandatory\\) on other: instance "${PREFIX}other": remote "cluster" is not allowed in this stack \\(allowed: s1, s2\\)`));
    expect((await findByName(`${PREFIX}other`)).length).toBe(0);
    await g("checkout", "-q", "main");
  });

  it("merging applies the move: the instance is on s2 with its data, running, one copy", async () => {
    const m = await gitops("merge", REPO, "move-app");
    expect(m.code).toBe(0);
    const now = await findByName(NAME);
    expect(now.map((s) => `${s.remote}:${s.name} ${s.status}`)).toEqual([`s2:${NAME} Running`]);
    expect(await sha("s2", "default", NAME, "/root/data")).toBe(data);
  });

  it("an out-of-band lxc move is drift: the check exits 7 naming the instance; applying main puts it back", async () => {
    const clean = await gitops("drift", REPO);
    expect(clean.stderr).toMatch(/no drift/);
    expect(clean.code).toBe(0);
    for (const args of [
      ["stop", `s2:${NAME}`],
      ["move", `s2:${NAME}`, `s1:${NAME}`],
      ["start", `s1:${NAME}`],
    ])
      await lxc(args, { timeoutMs: 120_000 });
    const d = await gitops("drift", REPO);
    expect(d.code).toBe(7);
    expect(d.stdout).toMatch(new RegExp(`drift: ${NAME} is at s1:default/${NAME}\\S*( pool=\\S+)?, Git declares s2:default/${NAME}`));
    const again = await gitops("on-push", REPO, "refs/heads/main");
    expect(again.code).toBe(0);
    where = (await findByName(NAME)).map((s) => `${s.remote}:${s.name} ${s.status}`).join(", ");
    expect(where).toBe(`s2:${NAME} Running`);
    expect(await sha("s2", "default", NAME, "/root/data")).toBe(data);
    expect((await gitops("drift", REPO)).code).toBe(0);
  });
});
