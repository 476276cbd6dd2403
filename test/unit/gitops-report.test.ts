/**
 * The review comment and the drift report of scripts/gitops.sh (gitops/report.ts), from engine
 * events of the shape `pulumi preview --json` streams (PULUMI_ENABLE_STREAMING_JSON_PREVIEW=1).
 * test/e2e/gitops.test.ts runs the whole pipeline; this pins what a reviewer reads.
 */
import { comment, drift, readEvents } from "../../gitops/report";

const URN = (t: string, n: string) => `urn:pulumi:dev::gitops::${t}::${n}`;
const INST = "pulumi-nodejs:dynamic/lxd-placement:Instance";
const ev = (o: Record<string, unknown>) => JSON.stringify(o);
const pre = (op: string, name: string, inputs: Record<string, unknown> = { name }) => ev({ resourcePreEvent: { metadata: { op, urn: URN(INST, name), type: INST, new: { inputs } } } });
const diag = (message: string, severity = "info") => ev({ diagnosticEvent: { message: `${message}\n\n`, severity } });
const summary = (result: string) => ev({ summaryEvent: { result } });
const passed = (names: string[]) => ev({ policyAnalyzeStackSummaryEvent: { policyPackName: "lxd-placement", passed: names } });
const RULES = ["allowed-placements", "vm-live-prerequisites"];

describe("the review comment", () => {
  it("shows each move as a row (from, to, strategy, expected downtime, route), the other changes, and passed policies", () => {
    const r = readEvents([
      ev({ resourcePreEvent: { metadata: { op: "same", urn: URN("pulumi:pulumi:Stack", "gitops-dev"), type: "pulumi:pulumi:Stack" } } }),
      diag("lxd-placement: web-1: plan: move s1:default/web-1 pool=default -> s2:default/web-1; cross-server pull; strategy near-live: the container runs"),
      pre("update", "web-1"),
      diag("lxd-placement: web-2: plan: move cluster:default/web-2@m1 pool=default -> cluster:default/web-2@m2; server-side member; strategy cold: the container is stopped"),
      pre("update", "web-2"),
      pre("refresh", "web-1"),
      pre("refresh", "web-4"),
      pre("create", "web-3"),
      pre("update", "web-4"),
      passed(RULES),
      summary("succeeded"),
    ]);
    expect(comment(r, "Plan")).toBe(
      [
        "## Plan",
        "",
        "**2 moves**",
        "",
        "| instance | from | to | strategy | expected downtime | route |",
        "| --- | --- | --- | --- | --- | --- |",
        "| web-1 | s1:default/web-1 pool=default | s2:default/web-1 | near-live | final sync and restart (about a stop + start) | cross-server pull |",
        "| web-2 | cluster:default/web-2@m1 pool=default | cluster:default/web-2@m2 | cold | none (stopped, stays stopped) | server-side member |",
        "",
        "Other changes: create web-3; update web-4.",
        "",
        "**policies: passed** (lxd-placement: allowed-placements, vm-live-prerequisites)",
        "",
      ].join("\n"),
    );
  });

  it("a violation fails the policies, names the rule, its level, the resource and the sentence; the passed rules are listed apart", () => {
    const r = readEvents([
      pre("create", "other"),
      ev({
        policyEvent: {
          resourceUrn: URN(INST, "other"),
          message: 'Instances are only placed on the remotes ...\ninstance "other": remote "cluster" is not allowed in this stack (allowed: s1, s2)\n',
          policyName: "allowed-placements",
          policyPackName: "lxd-placement",
          enforcementLevel: "mandatory",
        },
      }),
      ev({ policyAnalyzeSummaryEvent: { policyPackName: "lxd-placement", passed: ["vm-live-prerequisites"], failed: ["allowed-placements"] } }),
      passed(["max-moves-per-update"]),
      diag("preview failed", "error"),
      summary("failed"),
    ]);
    const text = comment(r);
    expect(text).toContain("No instance moves.");
    expect(text).toContain("**policies: failed** (lxd-placement)");
    expect(text).toContain('- ❌ `allowed-placements` (mandatory) on other: instance "other": remote "cluster" is not allowed in this stack (allowed: s1, s2)');
    expect(text).toContain("- passed: vm-live-prerequisites, max-moves-per-update");
    expect(text).toContain("Preview result: failed.");
    expect(text).not.toContain("**errors**");
  });

  it("without a policy pack it says the policies did not run", () => {
    expect(comment(readEvents([summary("succeeded")]))).toContain("**policies: not run**");
  });
});

describe("the drift report", () => {
  it("names each instance that is not where Git declares it, and what the next apply does", () => {
    const r = readEvents([
      diag("lxd-placement: app: plan: move s1:default/app pool=default -> s2:default/app; cross-server pull; strategy near-live: the container runs"),
      pre("update", "app"),
      diag("lxd-placement: db: plan: settle what an interrupted move left (s2:default/db-lxdp-1)"),
      pre("update", "db"),
      pre("create", "gone"),
      summary("failed"),
    ]);
    expect(drift(r)).toEqual([
      "drift: app is at s1:default/app pool=default, Git declares s2:default/app (the next apply moves it back: near-live)",
      "drift: db has leftovers of an interrupted move (the next apply settles them)",
      "drift: gone would be created (it differs from Git)",
    ]);
    expect(drift(readEvents([pre("same", "app"), summary("succeeded")]))).toEqual([]);
  });
});
