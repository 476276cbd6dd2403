/**
 * What scripts/gitops.sh writes from a preview's engine events (`pulumi preview --json` with
 * PULUMI_ENABLE_STREAMING_JSON_PREVIEW=1: one JSON event per line): the review comment of a pull
 * request (the move plan as a table, the other changes, the policy results), and the drift
 * report (each instance the refreshed state shows elsewhere than Git declares).
 *
 *   node bin/gitops/report.js comment EVENTS [--title TEXT]   Markdown on stdout
 *   node bin/gitops/report.js drift EVENTS                    one line per drifted instance
 *
 * The moves come from the provider's own plan lines (`lxd-placement: NAME: plan: move FROM -> TO;
 * ROUTE; strategy S: WHY`), which it logs at preview for every placement change.
 */
import * as fs from "node:fs";

export interface Move {
  instance: string;
  from: string;
  to: string;
  route: string;
  strategy: string;
  why: string;
}

export interface PolicyResult {
  pack: string;
  passed: string[];
  violations: { policy: string; level: string; resource: string; message: string }[];
}

export interface PreviewReport {
  moves: Move[];
  /** Instances whose plan is to settle what an interrupted move left. */
  settles: string[];
  /** Other steps by operation (create, update, delete, replace), with the resource names. */
  others: Record<string, string[]>;
  policies: PolicyResult[];
  errors: string[];
  result?: string;
}

type Event = Record<string, Record<string, unknown>>;

const PLAN = /^lxd-placement: ([^:]+): plan: move (\S+(?: pool=\S+)?) -> (\S+(?: pool=\S+)?); ([^;]+); strategy ([\w-]+): (.*)$/;
const SETTLE = /^lxd-placement: ([^:]+): plan: settle /;

/** What the engine's events say about a preview. */
export function readEvents(lines: string[]): PreviewReport {
  const r: PreviewReport = { moves: [], settles: [], others: {}, policies: [], errors: [] };
  const packs = new Map<string, PolicyResult>();
  const pack = (name: string) => packs.get(name) ?? packs.set(name, { pack: name, passed: [], violations: [] }).get(name)!;
  const moved = new Set<string>();
  for (const line of lines) {
    if (!line.trim()) continue;
    const e = JSON.parse(line) as Event;
    if (e.diagnosticEvent) {
      const d = e.diagnosticEvent as { message: string; severity: string };
      for (const m of d.message.split("\n")) {
        const p = PLAN.exec(m.trim());
        if (p) {
          r.moves.push({ instance: p[1], from: p[2], to: p[3], route: p[4], strategy: p[5], why: p[6] });
          moved.add(p[1]);
        }
        const s = SETTLE.exec(m.trim());
        if (s) r.settles.push(s[1]);
      }
      if (d.severity === "error") r.errors.push(d.message.trim());
    } else if (e.resourcePreEvent) {
      const m = e.resourcePreEvent.metadata as { op: string; urn: string; type: string; new?: { inputs?: Record<string, unknown> }; old?: { inputs?: Record<string, unknown> } };
      // A refresh step reads; what it finds shows in the steps after it.
      if (m.op === "same" || m.op === "refresh" || m.op === "read" || m.type === "pulumi:pulumi:Stack" || m.type.startsWith("pulumi:providers:")) continue;
      const name = String((m.new?.inputs ?? m.old?.inputs)?.name ?? m.urn.split("::").pop());
      (r.others[m.op] ??= []).push(name);
    } else if (e.policyEvent) {
      const p = e.policyEvent as { policyName: string; policyPackName: string; enforcementLevel: string; resourceUrn?: string; message: string };
      pack(p.policyPackName).violations.push({ policy: p.policyName, level: p.enforcementLevel, resource: p.resourceUrn?.split("::").pop() ?? "(stack)", message: p.message });
    } else if (e.policyAnalyzeSummaryEvent || e.policyAnalyzeStackSummaryEvent) {
      const s = (e.policyAnalyzeSummaryEvent ?? e.policyAnalyzeStackSummaryEvent) as { policyPackName: string; passed?: string[] };
      const p = pack(s.policyPackName);
      for (const n of s.passed ?? []) if (!p.passed.includes(n)) p.passed.push(n);
    } else if (e.summaryEvent) {
      r.result = String(e.summaryEvent.result ?? "");
    }
  }
  // An update of an instance that moves is in the table; only the rest are "other changes".
  if (r.others.update) r.others.update = r.others.update.filter((n) => !moved.has(n) && !r.settles.includes(n));
  for (const [op, names] of Object.entries(r.others)) if (!names.length) delete r.others[op];
  for (const p of packs.values()) p.passed = p.passed.filter((n) => !p.violations.some((v) => v.policy === n));
  r.policies = [...packs.values()];
  return r;
}

/** What the strategy costs the instance, in words (docs/strategies of the README). */
export function expectedDowntime(strategy: string): string {
  switch (strategy) {
    case "cold":
      return "none (stopped, stays stopped)";
    case "live":
      return "none (moved live)";
    case "near-live":
      return "final sync and restart (about a stop + start)";
    case "stop-move-start":
      return "whole transfer (stopped, moved, started)";
    default:
      return "unknown";
  }
}

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

/** The review comment: the plan table, the other changes, the policies. */
export function comment(r: PreviewReport, title = "lxd-placement plan"): string {
  const out: string[] = [`## ${title}`, ""];
  if (r.moves.length) {
    out.push(`**${r.moves.length} ${r.moves.length === 1 ? "move" : "moves"}**`, "");
    out.push("| instance | from | to | strategy | expected downtime | route |", "| --- | --- | --- | --- | --- | --- |");
    for (const m of r.moves) out.push(`| ${cell(m.instance)} | ${cell(m.from)} | ${cell(m.to)} | ${m.strategy} | ${expectedDowntime(m.strategy)} | ${cell(m.route)} |`);
    out.push("");
  } else out.push("No instance moves.", "");
  if (r.settles.length) out.push(`Settles what an interrupted move left: ${r.settles.join(", ")}.`, "");
  const order = ["create", "update", "replace", "create-replacement", "delete-replaced", "delete"];
  const others = Object.entries(r.others).sort(([a], [b]) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
  if (others.length) out.push(`Other changes: ${others.map(([op, ns]) => `${op} ${ns.join(", ")}`).join("; ")}.`, "");
  if (!r.policies.length) out.push("**policies: not run**", "");
  for (const p of r.policies) {
    if (!p.violations.length) {
      out.push(`**policies: passed** (${p.pack}: ${p.passed.join(", ")})`, "");
      continue;
    }
    const mandatory = p.violations.some((v) => v.level === "mandatory");
    out.push(`**policies: ${mandatory ? "failed" : "passed with advisories"}** (${p.pack})`, "");
    for (const v of p.violations)
      out.push(`- ${v.level === "mandatory" ? "❌" : "⚠️"} \`${v.policy}\` (${v.level}) on ${cell(v.resource)}: ${cell(v.message.trim().split("\n").slice(1).join(" ").trim() || v.message.trim())}`);
    if (p.passed.length) out.push(`- passed: ${p.passed.join(", ")}`);
    out.push("");
  }
  const errors = r.errors.filter((e) => !/^preview failed$/.test(e));
  if (errors.length) out.push("**errors**", "", ...errors.map((e) => `- ${cell(e)}`), "");
  if (r.result && r.result !== "succeeded") out.push(`Preview result: ${r.result}.`, "");
  return `${out.join("\n").trimEnd()}\n`;
}

/** One line per instance the refreshed state shows elsewhere than Git declares. */
export function drift(r: PreviewReport): string[] {
  return [
    ...r.moves.map((m) => `drift: ${m.instance} is at ${m.from}, Git declares ${m.to} (the next apply moves it back: ${m.strategy})`),
    ...r.settles.map((n) => `drift: ${n} has leftovers of an interrupted move (the next apply settles them)`),
    ...Object.entries(r.others).flatMap(([op, ns]) => ns.map((n) => `drift: ${n} would be ${op === "create" ? "created" : op === "delete" ? "deleted" : `${op}d`} (it differs from Git)`)),
  ];
}

function main(argv: string[]): number {
  const [what, file, ...rest] = argv;
  if (!file || (what !== "comment" && what !== "drift")) {
    process.stderr.write("usage: report.js comment|drift EVENTS [--title TEXT]\n");
    return 2;
  }
  const r = readEvents(fs.readFileSync(file, "utf8").split("\n"));
  if (what === "comment") {
    const t = rest.indexOf("--title");
    process.stdout.write(comment(r, t >= 0 ? rest[t + 1] : undefined));
    return 0;
  }
  for (const l of drift(r)) process.stdout.write(`${l}\n`);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
