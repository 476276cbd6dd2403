/**
 * Finding an instance wherever it really is (P6) and settling what an interrupted move left
 * behind (P5). Every instance the provider manages carries an ownership marker
 * (`user.lxd-placement.id`); during a move the copy carries `incoming` and the source
 * `outgoing`, so after any crash the next run can tell the authoritative copy from a partial one.
 */
import type { Estate } from "./estate";
import { INCOMING_KEY, MARKER_KEY } from "./inputs";
import type { LxdClient, Operation } from "./lxd/client";
import { PlacementError } from "./lxd/errors";
import { deleteInstance, getInstance, isRunning, patchInstance, rootPool, setState, startInstance, stopInstance, thawStuck, type Instance } from "./lxd/instances";
import type { Facts, Placement } from "./planner";

export const OUTGOING_KEY = "user.lxd-placement.outgoing";

export interface Found {
  remote: string;
  instance: Instance;
}

export function factsOf(f: Found): Facts {
  const i = f.instance;
  return {
    remote: f.remote,
    project: i.project,
    member: i.location && i.location !== "none" ? i.location : "",
    pool: rootPool(i) ?? "",
    name: i.name,
    type: i.type === "virtual-machine" ? "virtual-machine" : "container",
    running: isRunning(i),
    config: i.expanded_config,
    devices: i.expanded_devices,
  };
}

const owned = (i: Instance, id: string) => i.config[MARKER_KEY] === id;

/**
 * Every copy of the instance with this marker. Looks at the last known placement first (one
 * GET); only when the instance is not there, or a move left marks, does it list every remote.
 * Those lists are fresh (sent after this call began: see Estate.instances) unless `shared`,
 * which refresh's read asks for so that its concurrent lookups list each remote once.
 */
export async function findCopies(estate: Estate, id: string, hint?: Placement, opts: { everywhere?: boolean; shared?: boolean } = {}): Promise<Found[]> {
  // The implicit `local` is searched only when it has a socket (see loadRemotes), or when the
  // state says the instance is there: an unreachable daemon then fails the lookup, never "gone".
  const names = hint?.remote === "local" && !estate.remotes.names.includes("local") ? [...estate.remotes.names, "local"] : estate.remotes.names;
  if (hint && !opts.everywhere) {
    try {
      if (names.includes(hint.remote)) {
        const got = await getInstance(estate.client(hint.remote, hint.project), hint.name);
        if (got && owned(got.instance, id) && !got.instance.config[INCOMING_KEY] && !got.instance.config[OUTGOING_KEY]) {
          return [{ remote: hint.remote, instance: got.instance }];
        }
      }
    } catch (e) {
      if (!PlacementError.is(e)) throw e;
      // The hinted server is unreachable: fall through to a full search, which reports it.
    }
  }
  const out: Found[] = [];
  const errors: string[] = [];
  await Promise.all(
    names.map(async (r) => {
      try {
        for (const i of await estate.instances(r, { fresh: !opts.shared })) if (owned(i, id)) out.push({ remote: r, instance: i });
      } catch (e) {
        if (r === "local" && !(hint?.remote === "local")) return; // no local daemon: normal
        errors.push(`${r}: ${(e as Error).message}`);
      }
    }),
  );
  if (!out.length && errors.length) {
    throw new PlacementError(`cannot tell where instance ${id} is: some remotes did not answer (${errors.join("; ")})`, {}, "Run again when the servers are reachable; nothing was changed");
  }
  return out;
}

/** How long settle waits for a transfer an interrupted run left running on a partial copy. */
const LEFTOVER_TRANSFER_WAIT_MS = 120_000;

/**
 * Wait (bounded) until no LXD operation still works on instance `name` of the client's project.
 * A run killed mid-move leaves its transfer running inside LXD (pull and push are server to
 * server). Deleting the partial copy under it makes that transfer fail, and LXD's cleanup of the
 * failed transfer then removes the volume of the next copy of the same name while it is being
 * written (seen on 5.0.2: "Rsync receive failed ... No such file or directory").
 */
async function waitTransfersOn(c: LxdClient, name: string, where: string): Promise<void> {
  const project = c.project;
  const ours = (op: Operation) =>
    Object.values((op as { resources?: Record<string, string[] | null> }).resources ?? {})
      .flatMap((urls) => urls ?? [])
      .some((u) => {
        const [p, q] = u.split("?");
        return p === `/1.0/instances/${encodeURIComponent(name)}` && (new URLSearchParams(q ?? "").get("project") ?? "default") === project;
      });
  const ops = await c.get<{ running?: Operation[] | null }>("/operations", undefined, { query: { recursion: "1" }, noTarget: true });
  const deadline = Date.now() + LEFTOVER_TRANSFER_WAIT_MS;
  for (const op of (ops.running ?? []).filter(ours)) {
    try {
      await c.wait(op.id, Math.max(1_000, deadline - Date.now()));
    } catch (e) {
      if (PlacementError.is(e) && e.code === "LXDP_TIMEOUT") {
        throw new PlacementError(
          `a transfer left by an interrupted move is still writing the partial copy at ${where} (operation ${op.id})`,
          c.ctx({ instance: name, operation: op.id }),
          "Run again once it has ended; nothing was changed",
        );
      }
      // The operation failed or vanished: either way it has ended.
    }
  }
}

/**
 * LXD freezes a running container while it makes a consistent copy of it, and a daemon that dies
 * mid-copy leaves it Frozen, or stuck Freezing, when it comes back (seen on 5.0.2). The source's
 * outgoing mark says that copy was ours: give the container back the running state it had. LXD
 * unfreezes only a Frozen container, so a Freezing one is first frozen all the way.
 */
async function thawLeftFrozen(c: LxdClient, f: Found, log: (s: string) => void): Promise<void> {
  const s = f.instance.status;
  if (s !== "Frozen" && s !== "Freezing") return;
  log(`${f.remote}:${f.instance.project}/${f.instance.name} was left ${s.toLowerCase()} by the interrupted move's copy: thawing it (P5)`);
  if (!(await thawStuck(c, f.instance.name, s))) await setState(c, f.instance.name, "unfreeze");
  f.instance.status = "Running";
}

/**
 * Settle leftovers of an interrupted move (P5) and return the one authoritative copy, or
 * undefined when none exists. Rules: a copy marked `incoming` beside an unmarked-or-outgoing one
 * is partial (delete it); an `outgoing` source beside a committed copy is finished (delete it);
 * a lone copy loses its marks.
 */
export async function settle(estate: Estate, copies: Found[], log: (s: string) => void = () => undefined): Promise<Found | undefined> {
  if (copies.length === 0) return undefined;
  const client = (f: Found) => estate.client(f.remote, f.instance.project).withTimeout(30_000);
  const clear = async (f: Found, key: string) => {
    await patchInstance(client(f), f.instance.name, { config: { [key]: "" } });
    delete f.instance.config[key];
  };
  const where = (f: Found) => `${f.remote}:${f.instance.project}/${f.instance.name}`;
  const incoming = copies.filter((c) => c.instance.config[INCOMING_KEY]);
  const settled = copies.filter((c) => !c.instance.config[INCOMING_KEY]);
  if (settled.length >= 1) {
    for (const c of incoming) {
      log(`removing the partial copy at ${where(c)} left by an interrupted move (P5)`);
      await waitTransfersOn(client(c), c.instance.name, where(c));
      await deleteInstance(client(c), c.instance.name);
    }
    if (settled.length === 1) {
      const only = settled[0];
      if (only.instance.config[OUTGOING_KEY]) {
        await thawLeftFrozen(client(only), only, log);
        await clear(only, OUTGOING_KEY);
        // An interrupted near-live cutover may have stopped the source: the caller converges power state.
      } else if (only.instance.status === "Freezing") {
        // Stuck (a run that cleared the mark saw it before the daemon reported it): never a
        // state anyone keeps, and one that blocks start and stop.
        await thawLeftFrozen(client(only), only, log);
      }
      return only;
    }
    const sources = settled.filter((c) => c.instance.config[OUTGOING_KEY]);
    const committed = settled.filter((c) => !c.instance.config[OUTGOING_KEY]);
    if (committed.length === 1 && sources.length === settled.length - 1) {
      for (const s of sources) {
        log(`finishing an interrupted move: deleting the old copy at ${where(s)} (P5)`);
        // After a live move LXD resumes the source (for it, that side was a copy): stop it first.
        if (isRunning(s.instance)) await stopInstance(client(s), s.instance.name, 0);
        await deleteInstance(client(s), s.instance.name);
      }
      return committed[0];
    }
    throw new PlacementError(
      `instance ${copies[0].instance.config[MARKER_KEY]} exists in several places (${settled.map(where).join(", ")})`,
      { instance: copies[0].instance.name },
      "Delete the copies that are not wanted (lxc delete), then run again",
    );
  }
  // Only incoming copies: the source is gone, so the copy was committed by deleting it.
  const [first, ...rest] = incoming;
  for (const r of rest) await deleteInstance(client(r), r.instance.name);
  log(`finishing an interrupted move: ${where(first)} is the instance now (P5)`);
  await clear(first, INCOMING_KEY);
  return first;
}

/** Locate and settle: the one place the instance is, or undefined if it is gone everywhere. */
export async function locate(estate: Estate, id: string, hint?: Placement, log?: (s: string) => void, opts: { shared?: boolean } = {}): Promise<Found | undefined> {
  return settle(estate, await findCopies(estate, id, hint, opts), log);
}

export async function ensurePower(estate: Estate, f: Found, running: boolean): Promise<void> {
  const c = estate.client(f.remote, f.instance.project);
  if (running && !isRunning(f.instance)) await startInstance(c, f.instance.name);
  if (!running && isRunning(f.instance)) {
    await stopInstance(c, f.instance.name);
  }
}
