/**
 * The estate: every remote the user's lxc config knows, one client each, and what each server
 * can do. Capabilities are cached briefly: one `pulumi preview` of many instances asks each
 * server once, not once per instance.
 */
import { ClientPool, type LxdClient } from "./lxd/client";
import { listInstances, type Instance } from "./lxd/instances";
import { loadRemotes, type RemoteSet, type StackRemotes } from "./lxd/remotes";
import { listClusterGroups, listMembers, listPools, listProjects } from "./lxd/resources";
import type { Capabilities } from "./planner";

const CACHE_MS = 20_000;

export class Estate {
  readonly remotes: RemoteSet;
  private pool: ClientPool;
  private caps = new Map<string, { at: number; value: Promise<Capabilities> }>();
  private lists = new Map<string, { at: number; value: Promise<Instance[]> }>();

  constructor(env: NodeJS.ProcessEnv = process.env, stackRemotes: StackRemotes = {}) {
    this.remotes = loadRemotes(env, stackRemotes);
    this.pool = new ClientPool((n) => this.remotes.get(n));
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
      clustered && s.api_extensions.includes("clustering_groups") ? listClusterGroups(c) : Promise.resolve([]),
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

  /** All instances of a remote in every project: one request, cached briefly (P6 reads, O(remotes)). */
  instances(remote: string, opts: { fresh?: boolean } = {}): Promise<Instance[]> {
    const hit = this.lists.get(remote);
    if (hit && !opts.fresh && Date.now() - hit.at < 3_000) return hit.value;
    const value = listInstances(this.client(remote), { allProjects: true });
    value.catch(() => this.lists.delete(remote));
    this.lists.set(remote, { at: Date.now(), value });
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
      this.lists.delete(remote);
    } else {
      this.caps.clear();
      this.lists.clear();
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
