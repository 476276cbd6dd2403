/** Deleting what a benchmark run created, wherever it ended up, and only that. */
import { REMOTES, type Bench } from "./context";
import { drainCleanup, type DrainState } from "./drain";
import { listEverywhere } from "./managed";
import { lxc, pool } from "./shell";

/** `lxc delete --force` of `remote:name` refs, ten per call, four calls at a time. */
export async function deleteNames(refs: string[]): Promise<void> {
  const chunks: string[][] = [];
  for (let i = 0; i < refs.length; i += 10) chunks.push(refs.slice(i, i + 10));
  await pool(chunks, 4, async (c) => {
    await lxc(["delete", "--force", ...c], 180_000).catch(async () => {
      // One missing name fails the whole call: retry one by one.
      for (const r of c) await lxc(["delete", "--force", r], 60_000).catch(() => undefined);
    });
  });
}

/** Delete every instance of this run, wherever it is (the tag is in every name), and the drain part's. */
export async function cleanup(b: Bench, drain: DrainState): Promise<void> {
  const refs: string[] = [];
  for (const r of REMOTES) {
    try {
      for (const i of await listEverywhere([r])) if (i.name.startsWith("bench-") && i.name.includes(b.tag)) refs.push(`${r}:${i.name}`);
    } catch (e) {
      b.progress(`cleanup: cannot list ${r}: ${(e as Error).message}`);
    }
  }
  if (refs.length) {
    b.progress(`cleanup: deleting ${refs.length} leftover instance(s)`);
    await deleteNames(refs);
  }
  await drainCleanup(b, drain);
}
