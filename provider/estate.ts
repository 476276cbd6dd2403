/**
 * The estate: every remote the user's lxc config knows, one client each, and what each server
 * can do. Capabilities are cached briefly: one `pulumi preview` of many instances asks each
 * server once, not once per instance.
 */
import { ClientPool, type ClientOptions, type LxdClient } from "./lxd/client";
import { listInstances, type Instance } from "./lxd/instances";
import { loadRemotes, type RemoteSet, type StackRemotes } from "./lxd/remotes";
import { listClusterGroups, listMembers, listPools, listProfiles, listProjects } from "./lxd/resources";
import { supports } from "./features";
import type { Capabilities } from "./planner";

const CACHE_MS = 20_000;
/** How long a finished instance list may be reused by callers that do not ask for a fresh one. */
const LIST_CACHE_MS = 3_000;

interface ListFlight {
  /** When the request was sent. */
  at: number;
  value: Promise<Instance[]>;
  done: boolean;
  /** Failed, or forgotten: no caller takes it any more. */
  expired: boolean;
}
interface ListState {
  /** The latest list of the remote, in flight or finished. */
  current?: ListFlight;
  /** The list that starts when the current one ends, shared by the callers waiting for it. */
  next?: Promise<Instance[]>;
}

export class Estate {
  readonly remotes: RemoteSet;
  private pool: ClientPool;
  private caps = new Map<string, { at: number; value: Promise<Capabilities> }>();
  private profileCache = new Map<string, { at: number; value: Promise<string[]> }>();
  private lists = new Map<string, ListState>();

  /** `clients`: options of every client the estate opens (`onRequest`, a deadline). */
  constructor(env: NodeJS.ProcessEnv = process.env, stackRemotes: StackRemotes = {}, clients: ClientOptions = {}) {
    this.remotes = loadRemotes(env, stackRemotes);
    this.pool = new ClientPool((n) => this.remotes.get(n), clients);
  }

  client(remote: string, project?: string): LxdClient {
    const c = this.pool.get(remote);
    return project ? c.useProject(project) : c;
  }

  capabilities(remote: string, opts: { fresh?: boolean } = {}): Promise<Capabilities> {
    const hit = this.caps.get(remote);
    if (hit && !opts.fresh && Date.now() - hit.at < CACHE_MS) return hit.value;
    const value = this.loadCapabilities(remote);
    value.catch(() => this.caps.delete(remote));
    this.caps.set(remote, { at: Date.now(), value });
    return value;
  }

  private async loadCapabilities(remote: string): Promise<Capabilities> {
    const c = this.client(remote);
    const s = await c.server();
    if (s.auth && s.auth !== "trusted") await c.requireExtensions([], remote);
    const clustered = !!s.environment.server_clustered;
    const [projects, pools, members, groups] = await Promise.all([
      listProjects(c),
      listPools(c),
      clustered ? listMembers(c) : Promise.resolve([]),
      clustered && supports(s.api_extensions, "clusterGroups") ? listClusterGroups(c) : Promise.resolve([]),
    ]);
    return {
      remote,
      extensions: s.api_extensions,
      clustered,
      members: Object.fromEntries(members.map((m) => [m.server_name, m.status])),
      groups: Object.fromEntries(groups.map((g) => [g.name, g.members])),
      projects,
      pools,
    };
  }

  /**
   * All instances of a remote in every project: one request (P6 reads, O(remotes)). At most one
   * list per remote is in flight at a time, and callers share it:
   *
   * - A plain caller (refresh's read, member load) takes the list in flight, or one started less
   *   than LIST_CACHE_MS ago. It may predate the call: fine for reporting, and for read's settle,
   *   because the marks settle acts on change only through this provider's own create, update and
   *   delete, which the engine never runs beside a read of the same resource (and which re-list
   *   with `fresh`).
   * - A `fresh` caller (a safety decision: P5, the instance exists exactly once) gets a list that
   *   was sent after its call began, never an older one, so a move that has just finished is
   *   seen. If none is in flight it starts one; if one is, that list may predate the change the
   *   caller must see, so it waits for it to end and then shares the single list that starts
   *   next with every caller that queued meanwhile. A burst of fresh callers costs at most two
   *   lists per remote, one after the other.
   */
  instances(remote: string, opts: { fresh?: boolean } = {}): Promise<Instance[]> {
    let s = this.lists.get(remote);
    if (!s) this.lists.set(remote, (s = {}));
    const cur = s.current;
    if (cur && !opts.fresh && !cur.expired && (!cur.done || Date.now() - cur.at < LIST_CACHE_MS)) return cur.value;
    if (s.next) return s.next; // not sent yet: newer than this call
    if (cur && !cur.done) {
      const state = s;
      state.next ??= cur.value
        .then(
          () => undefined,
          () => undefined,
        )
        .then(() => {
          state.next = undefined;
          return this.startList(remote, state).value;
        });
      return state.next;
    }
    return this.startList(remote, s).value;
  }

  private startList(remote: string, s: ListState): ListFlight {
    const f: ListFlight = { at: Date.now(), value: listInstances(this.client(remote), { allProjects: true }), done: false, expired: false };
    f.value.then(
      () => (f.done = true),
      () => (f.done = f.expired = true),
    );
    s.current = f;
    return f;
  }

  /** The profiles of a project (what preview checks a move's profiles against), cached like capabilities. */
  profiles(remote: string, project: string): Promise<string[]> {
    const key = `${remote}\0${project}`;
    const hit = this.profileCache.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.value;
    const value = listProfiles(this.client(remote, project));
    value.catch(() => this.profileCache.delete(key));
    this.profileCache.set(key, { at: Date.now(), value });
    return value;
  }

  /** Instances per member, for choosing inside a cluster group. */
  async load(remote: string): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const i of await this.instances(remote)) out[i.location] = (out[i.location] ?? 0) + 1;
    return out;
  }

  forget(remote?: string): void {
    if (remote) {
      this.caps.delete(remote);
      for (const k of this.profileCache.keys()) if (k.startsWith(`${remote}\0`)) this.profileCache.delete(k);
      this.expireList(remote);
    } else {
      this.caps.clear();
      this.profileCache.clear();
      for (const r of this.lists.keys()) this.expireList(r);
    }
  }

  /** No caller takes this remote's current list any more; one still in flight keeps later lists queued behind it. */
  private expireList(remote: string): void {
    const cur = this.lists.get(remote)?.current;
    if (cur) cur.expired = true;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
