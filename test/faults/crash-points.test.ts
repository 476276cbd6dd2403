/**
 * P5, I1-I5 on real LXD: the provider process killed at every step boundary of a move
 * (LXD_PLACEMENT_CRASH_AT, docs/protocol.md), then one converging `pulumi up` with the servers
 * exactly as the crash left them: no repair in between. For a cross-server pull, a cluster member
 * and a project move (near-live, the default for a running container with a network device):
 *   crash at every boundary -> the converging up ends with exactly one copy, at the declared
 *   placement, running, unmarked, its data's checksum intact; right after the crash at most one
 *   copy runs (I2).
 * Plus three cells about a server in trouble during the recovery:
 *   X1 crash once the copy is complete, then the target daemon killed and restarted;
 *   X2 crash after the copy, then the source daemon frozen during the recovery run: that run fails
 *      naming it and changes nothing on the other server; thawed, the next up converges;
 *   X3 the commit's response lost, the target daemon killed right after the PATCH: the move fails
 *      naming it, the source is not started again; restarted, the next up finishes the move.
 * The matrix (kind x boundary -> outcome) is printed at the end.
 *
 * Budget: about 30 cells of 10-20 s. CRASH_POINTS_CELLS=pull limits the run to one kind (a
 * comma-separated list of kinds, or "all", the default).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TestStack } from "../helpers/engine";
import { INCOMING_KEY, MARKER_KEY, copiesOf, freezeDaemon, killDaemon, progress, restoreEstate, sandboxUp, thawAll, waitFor, where, type Daemon } from "../helpers/faults";
import { COMPLETE_KEY, MARK_PREFIX, OUTGOING_KEY } from "../../provider/marks";
import { deleteAll, exec, findEverywhere, sha, type Seen } from "../helpers/sandbox";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Instance } = require("../../bin/sdk") as typeof import("../../sdk");

const PREFIX = "fxc-";
const DATA = "/root/data";
const CELL_MS = 150_000;

interface Place {
  remote: string;
  project: string;
  target?: string;
}
interface Kind {
  key: string;
  title: string;
  a: Place;
  b: Place;
  /** The boundaries a near-live move of this kind passes, in order. */
  steps: string[];
}
const NEAR_LIVE = ["marked", "pre-copied", "stopped", "copied", "complete", "committed", "started", "source-deleted", "finished"];
const KINDS: Kind[] = [
  { key: "pull", title: "cross-server pull", a: { remote: "s1", project: "default" }, b: { remote: "s2", project: "default" }, steps: NEAR_LIVE },
  // Same name in the same project: the source goes before the copy takes its name.
  {
    key: "member",
    title: "cluster member",
    a: { remote: "cluster", project: "default", target: "m1" },
    b: { remote: "cluster", project: "default", target: "m2" },
    steps: ["marked", "pre-copied", "stopped", "copied", "complete", "committed", "source-deleted", "renamed", "started", "finished"],
  },
  { key: "project", title: "project", a: { remote: "s1", project: "default" }, b: { remote: "s1", project: "staging" }, steps: NEAR_LIVE },
];
const selected = (process.env.CRASH_POINTS_CELLS ?? "all").split(",").map((s) => s.trim());
const kinds = KINDS.filter((k) => selected.includes("all") || selected.includes(k.key));

const fmt = (p: Place) => `${p.remote}:${p.project}${p.target ? `@${p.target}` : ""}`;
const daemonOf = (p: Place): Daemon => (p.remote === "cluster" ? ((p.target ?? "m1") as Daemon) : (p.remote as Daemon));
const marksOf = (s: Seen) => [s.config[INCOMING_KEY] && "incoming", s.config[COMPLETE_KEY] && "complete", s.config[OUTGOING_KEY] && "outgoing"].filter(Boolean).join(",");
const show = (s: Seen) => `${where(s)} ${s.status}${marksOf(s) ? ` [${marksOf(s)}]` : ""}`;
const secs = (ms: number) => Math.round(ms / 100) / 10;

const matrix = new Map<string, string>();
function record(kind: string, cell: string, outcome: string): void {
  matrix.set(`${kind} × ${cell}`, outcome);
  progress(`crash ${kind} × ${cell}: ${outcome}`);
}

interface State {
  kind: Kind;
  name: string;
  spec: { current: Record<string, unknown> };
  stack?: TestStack;
  id?: string;
  data?: string;
  at: Place;
}

function specAt(st: State, p: Place): Record<string, unknown> {
  return { name: st.name, image: "busybox", remote: p.remote, project: p.project, ...(p.target ? { target: p.target } : {}), migration: { timeoutSeconds: 90, preCopyRounds: 0 } };
}
const other = (st: State) => (fmt(st.at) === fmt(st.kind.a) ? st.kind.b : st.kind.a);

async function dataOf(st: State, s: Seen): Promise<string> {
  return sha(s.remote, s.project, s.name, DATA);
}

/** I5 after the converging up: one copy, at the declared placement, running, unmarked, data intact. */
async function converged(st: State, p: Place): Promise<void> {
  const copies = await copiesOf(st.id!);
  expect(copies.map(show)).toEqual([`${p.remote}:${p.project}/${st.name}${p.target ? `@${p.target}` : ""} Running`]);
  expect(Object.keys(copies[0].config).filter((k) => k.startsWith(MARK_PREFIX) && k !== MARKER_KEY)).toEqual([]);
  expect(await dataOf(st, copies[0])).toBe(st.data);
}

/** Run an up that is expected to fail; its error text. */
async function failingUp(st: State, env: Record<string, string>): Promise<string> {
  const vars = st.stack!.stack.workspace.envVars;
  Object.assign(vars, env);
  try {
    await st.stack!.up({ timeoutMs: 120_000 });
    return "";
  } catch (e) {
    return (e as Error).message;
  } finally {
    for (const k of Object.keys(env)) delete vars[k];
  }
}

const firstError = (text: string) =>
  text
    .split("\n")
    .find((l) => /^error: /.test(l.trim()) && !/update failed/.test(l))
    ?.trim() ?? text.slice(0, 300);

beforeAll(async () => {
  await restoreEstate();
  await deleteAll((s) => s.name.startsWith(PREFIX));
}, 180_000);

afterAll(async () => {
  thawAll();
  await restoreEstate().catch(() => undefined);
  await TestStack.cleanupAll();
  await deleteAll((s) => s.name.startsWith(PREFIX));
  const lines = [`crash points (${matrix.size} cells):`, ...[...matrix].map(([k, v]) => `  ${k}: ${v}`)];
  process.stderr.write(lines.join("\n") + "\n");
}, 240_000);

for (const kind of kinds) {
  describe(`P5 crash points: ${kind.title} (${fmt(kind.a)} <-> ${fmt(kind.b)})`, () => {
    const st: State = { kind, name: `${PREFIX}${kind.key}`, spec: { current: {} }, at: kind.a };

    beforeAll(async () => {
      st.spec.current = specAt(st, kind.a);
      st.stack = await TestStack.create({
        projectName: `crash-${kind.key}`,
        program: async () => {
          const i = new Instance("vm", st.spec.current as never);
          return { instanceId: i.instanceId };
        },
        timeoutMs: 180_000,
      });
      st.stack.stack.workspace.envVars.LXD_PLACEMENT_REQUEST_TIMEOUT_MS = "8000";
      st.id = (await st.stack.up()).outputs.instanceId as string;
      await exec(kind.a.remote, kind.a.project, st.name, `dd if=/dev/urandom of=${DATA} bs=1M count=2 2>/dev/null; sync`);
      st.data = await sha(kind.a.remote, kind.a.project, st.name, DATA);
    }, 180_000);

    afterAll(async () => {
      thawAll();
      await restoreEstate().catch(() => undefined);
      await st.stack?.remove();
    }, 180_000);

    for (const step of kind.steps) {
      it(
        `P5 crash at "${step}": one converging up leaves one copy at the declared placement, running, data intact`,
        async () => {
          const t0 = Date.now();
          const to = other(st);
          st.spec.current = specAt(st, to);
          const msg = await failingUp(st, { LXD_PLACEMENT_CRASH_AT: `${step}@${st.name}` });
          // The process died at the boundary: the engine lost its provider mid-update.
          expect(msg).toMatch(/error reading from server|EOF|transport is closing|connection|Unavailable/i);
          const after = await copiesOf(st.id!);
          const running = after.filter((c) => c.status === "Running");
          expect({ running: running.length <= 1, seen: after.map(show) }).toMatchObject({ running: true });
          await st.stack!.up({ timeoutMs: 120_000 });
          await converged(st, to);
          st.at = to;
          record(kind.key, step, `killed → ${after.map(show).join(", ")} → converged (${secs(Date.now() - t0)} s)`);
        },
        CELL_MS,
      );
    }

    if (kind.key !== "pull") return;

    it(
      "P5 X1: crash once the copy is complete, then the target daemon killed and restarted: the next up finishes the move",
      async () => {
        const t0 = Date.now();
        const to = other(st);
        st.spec.current = specAt(st, to);
        const msg = await failingUp(st, { LXD_PLACEMENT_CRASH_AT: `complete@${st.name}` });
        expect(msg).not.toBe("");
        killDaemon(daemonOf(to));
        await sandboxUp();
        await restoreEstate();
        const after = (await copiesOf(st.id!)).map(show);
        await st.stack!.up({ timeoutMs: 120_000 });
        await converged(st, to);
        st.at = to;
        record(kind.key, "X1 target killed", `${after.join(", ")} → converged (${secs(Date.now() - t0)} s)`);
      },
      CELL_MS,
    );

    it(
      "P5 X2: crash after the copy, then the source daemon frozen during recovery: that up fails naming it and changes nothing; thawed, the next up converges",
      async () => {
        const t0 = Date.now();
        const from = st.at;
        const to = other(st);
        st.spec.current = specAt(st, to);
        await failingUp(st, { LXD_PLACEMENT_CRASH_AT: `copied@${st.name}` });
        const onTarget = async () => (await findEverywhere((s) => s.config?.[MARKER_KEY] === st.id, [to.remote])).map(show);
        const before = await onTarget();
        expect(before).toEqual([`${to.remote}:${to.project}/${st.name} Stopped [incoming]`]);
        freezeDaemon(daemonOf(from));
        let msg = "";
        try {
          msg = await failingUp(st, {});
        } finally {
          thawAll();
        }
        expect(firstError(msg)).toMatch(new RegExp(`remote "${from.remote}" did not answer.*nothing was deleted, promoted or started`));
        expect(await onTarget()).toEqual(before);
        await restoreEstate();
        await st.stack!.up({ timeoutMs: 120_000 });
        await converged(st, to);
        st.at = to;
        record(kind.key, "X2 source frozen in recovery", `failed closed ("${firstError(msg).slice(0, 120)}") → converged (${secs(Date.now() - t0)} s)`);
      },
      CELL_MS,
    );

    it(
      "P5 X3: the commit's response lost, the target daemon killed right after the PATCH: the move fails naming it, the source is not started; restarted, the next up finishes the move",
      async () => {
        const t0 = Date.now();
        const from = st.at;
        const to = other(st);
        st.spec.current = specAt(st, to);
        const hold = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "fxc-hold-")), "held");
        const vars = st.stack!.stack.workspace.envVars;
        vars.LXD_PLACEMENT_CRASH_AT = `committed@${st.name}:lost:hold=${hold}`;
        let up: Promise<string> | undefined;
        try {
          up = st.stack!.up({ timeoutMs: 120_000 }).then(
            () => "",
            (e: Error) => e.message,
          );
          await waitFor("the commit to be sent", 90_000, 100, async () => (fs.existsSync(hold) ? true : undefined));
          killDaemon(daemonOf(to));
        } finally {
          fs.rmSync(hold, { force: true });
          delete vars.LXD_PLACEMENT_CRASH_AT;
        }
        const msg = await up!;
        expect(firstError(msg)).toMatch(
          new RegExp(`Remote "${to.remote}" did not answer: the instance is at ${from.remote}:${from.project}/${st.name}, stopped; nothing was deleted, promoted or started`),
        );
        const src = (await findEverywhere((s) => s.config?.[MARKER_KEY] === st.id, [from.remote])).map(show);
        expect(src).toEqual([`${from.remote}:${from.project}/${st.name} Stopped [outgoing]`]);
        await sandboxUp();
        await restoreEstate();
        await st.stack!.up({ timeoutMs: 120_000 });
        await converged(st, to);
        st.at = to;
        record(kind.key, "X3 commit answer lost + target killed", `failed closed, source stopped and marked → converged at ${fmt(to)} (${secs(Date.now() - t0)} s)`);
      },
      CELL_MS,
    );
  });
}
