/** Projects, storage pools, images and cluster members: what placement validates against. */
import { z } from "zod";
import type { LxdClient } from "./client";
import { isNotFound } from "./errors";

const names = (urls: string[]) => urls.map((u) => decodeURIComponent(u.split("/").pop()!.split("?")[0]));

export async function listProjects(c: LxdClient): Promise<string[]> {
  return names(await c.useProject(undefined).get("/projects", z.array(z.string())));
}

/** The profiles of the client's project. */
export async function listProfiles(c: LxdClient): Promise<string[]> {
  return names(await c.get("/profiles", z.array(z.string())));
}

export async function listPools(c: LxdClient): Promise<string[]> {
  return names(await c.useProject(undefined).get("/storage-pools", z.array(z.string())));
}

export const MemberSchema = z
  .object({
    server_name: z.string(),
    url: z.string().optional(),
    status: z.string(),
    roles: z.array(z.string()).nullable().optional(),
    groups: z.array(z.string()).nullable().optional(),
    failure_domain: z.string().optional(),
  })
  .passthrough();
export type Member = z.infer<typeof MemberSchema>;

export async function listMembers(c: LxdClient): Promise<Member[]> {
  return c.useProject(undefined).get("/cluster/members", z.array(MemberSchema), { query: { recursion: "1" } });
}

export async function listClusterGroups(c: LxdClient): Promise<{ name: string; members: string[] }[]> {
  const gs = await c
    .useProject(undefined)
    .get("/cluster/groups", z.array(z.object({ name: z.string(), members: z.array(z.string()).nullable().optional() }).passthrough()), { query: { recursion: "1" } });
  return gs.map((g) => ({ name: g.name, members: g.members ?? [] }));
}

/** Resolve an image alias or fingerprint (prefix) on a server, in the scope's project. */
export async function resolveImage(c: LxdClient, ref: string): Promise<string | undefined> {
  try {
    const a = await c.get(`/images/aliases/${encodeURIComponent(ref)}`, z.object({ target: z.string() }).passthrough());
    return a.target;
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  if (/^[0-9a-f]{6,64}$/.test(ref)) {
    try {
      const img = await c.get(`/images/${ref}`, z.object({ fingerprint: z.string() }).passthrough());
      return img.fingerprint;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
  return undefined;
}
