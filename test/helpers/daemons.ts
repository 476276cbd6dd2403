/**
 * The sandbox's daemons, read from scripts/sandbox/daemons.tsv: the same list scripts/sandbox.sh
 * starts (test/unit/daemons.test.ts checks both read it alike).
 */
import * as fs from "node:fs";
import * as path from "node:path";

export const DAEMONS_TSV = path.resolve(__dirname, "../../scripts/sandbox/daemons.tsv");

export type Daemon = string;
export type Role = "standalone" | "member";
export interface DaemonRow {
  name: Daemon;
  role: Role;
  address: string;
  remote: string;
}

/** daemons.tsv's rows, in order: blank-separated `name role address remote`; `#` starts a comment line. */
export function parseDaemons(text: string): DaemonRow[] {
  const rows: DaemonRow[] = [];
  text.split("\n").forEach((line, i) => {
    const cols = line.trim().split(/\s+/);
    if (cols[0] === "" || cols[0].startsWith("#")) return;
    const [name, role, address, remote] = cols;
    if (cols.length !== 4) throw new Error(`daemons.tsv line ${i + 1}: want 4 columns (name role address remote), got ${cols.length}`);
    if (role !== "standalone" && role !== "member") throw new Error(`daemons.tsv line ${i + 1}: role ${role} is neither standalone nor member`);
    rows.push({ name, role, address, remote });
  });
  return rows;
}

export const ROWS: readonly DaemonRow[] = parseDaemons(fs.readFileSync(DAEMONS_TSV, "utf8"));
/** Every daemon's name, in the file's order. */
export const DAEMONS: readonly Daemon[] = ROWS.map((r) => r.name);
/** The cluster's members, in the file's order. */
export const MEMBERS: readonly Daemon[] = ROWS.filter((r) => r.role === "member").map((r) => r.name);
/** The lxc remotes, once each, in the file's order. */
export const REMOTES: readonly string[] = [...new Set(ROWS.map((r) => r.remote))];
