/**
 * Figures, medians, the printed table and the `--json` file of `npm run bench`, and its
 * command-line options.
 */
import { parseArgs } from "node:util";
import type { DrainFigure } from "./drain";

export interface Target {
  /** "<=" : value/ratio must not exceed `limit`; ">=" : must reach it. */
  op: "<=" | ">=";
  limit: number;
  /** What the target is checked against: the ratio (default) or the value itself. */
  on?: "ratio" | "value";
}

export interface Figure {
  name: string;
  unit: string;
  value: number | null;
  /**
   * What the value is compared with: a stable identifier, either another figure's name
   * (`downtime.stop-move-start.400MB`) or a tool (`lxc-move`, `lxc-cluster-evacuate`).
   */
  baselineName?: string;
  /** The baseline in words, when the identifier does not say it all (e.g. "lxc move --mode push"). */
  baselineDetail?: string;
  baseline?: number | null;
  ratio?: number | null;
  target?: string;
  met: "yes" | "no" | "n/a";
  samples?: number;
  note?: string;
}

export function median(xs: number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function figure(
  name: string,
  unit: string,
  value: number | null,
  opts: { baselineName?: string; baselineDetail?: string; baseline?: number | null; target?: Target; samples?: number; note?: string } = {},
): Figure {
  const ratio = value !== null && opts.baseline ? value / opts.baseline : opts.baseline === undefined ? undefined : null;
  let met: Figure["met"] = "n/a";
  let target: string | undefined;
  if (opts.target) {
    const t = opts.target;
    const on = t.on ?? "ratio";
    const x = on === "ratio" ? ratio : value;
    target = `${on} ${t.op} ${t.limit}`;
    met = x === null || x === undefined ? "no" : (t.op === "<=" ? x <= t.limit : x >= t.limit) ? "yes" : "no";
  }
  return { name, unit, value, baselineName: opts.baselineName, baselineDetail: opts.baselineDetail, baseline: opts.baseline, ratio, target, met, samples: opts.samples, note: opts.note };
}

/** One element of the array that `--json FILE` writes. */
export interface FigureJson {
  name: string;
  value: number | null;
  unit: string;
  /** The baseline's identifier (a figure name or a tool), null when there is none. */
  baseline: string | null;
  baselineValue: number | null;
  /** value / baselineValue; null when either is missing or the baseline is 0. */
  ratio: number | null;
  baselineDetail?: string;
  target: string | null;
  met: Figure["met"];
  samples: number | null;
  note?: string;
}

const finite = (x: number | null | undefined): number | null => (typeof x === "number" && Number.isFinite(x) ? x : null);

/** The figures as `--json FILE` writes them (also the `figures` of results.json). */
export function toJson(figures: Figure[]): FigureJson[] {
  return figures.map((f) => {
    const value = finite(f.value);
    const baselineValue = f.baselineName === undefined ? null : finite(f.baseline);
    const out: FigureJson = {
      name: f.name,
      value,
      unit: f.unit,
      baseline: f.baselineName ?? null,
      baselineValue,
      ratio: value !== null && baselineValue ? value / baselineValue : null,
      target: f.target ?? null,
      met: f.met,
      samples: f.samples ?? null,
    };
    if (f.baselineDetail) out.baselineDetail = f.baselineDetail;
    if (f.note) out.note = f.note;
    return out;
  });
}

/**
 * A figure of bench/drain.ts as a figure of this table. Its value and baseline are rounded
 * seconds, NaN when not measured (the evacuation is skipped when someone else's instance runs on
 * the member); the ratio is recomputed from them so that it is value / baseline as shown.
 */
export function fromDrain(d: DrainFigure): Figure {
  const value = finite(d.value);
  const baseline = finite(d.baseline);
  return {
    name: d.name,
    unit: "s",
    value,
    baselineName: "lxc-cluster-evacuate",
    baselineDetail: "lxc cluster evacuate, then lxc cluster restore (not timed), of the same member and instances in the same run",
    baseline,
    ratio: value !== null && baseline ? value / baseline : null,
    target: d.target,
    met: value === null ? "no" : d.met ? "yes" : "no",
    samples: 1,
    note: d.note,
  };
}

export interface BenchArgs {
  /** Also write the figures, as toJson() gives them, to this file. */
  json?: string;
  /** Also write the downtime chart (SVG) to this file. */
  chart?: string;
  help: boolean;
}

export const USAGE = `usage: npm run bench -- [--json FILE] [--chart FILE]
  --json FILE    write the figures to FILE as a JSON array: name, value, unit, baseline,
                 baselineValue, ratio (value / baselineValue), and target, met, samples, note
  --chart FILE   write the chart of downtime per strategy and size (SVG) to FILE as well as to
                 .sandbox/bench/downtime.svg
Parts and sizes are chosen with environment variables (BENCH_ONLY=move,downtime,relay,read,drain; see docs/benchmarks.md).`;

/** `npm run bench -- ARGS`: throws on an unknown option or a missing file name. */
export function benchArgs(argv: string[]): BenchArgs {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: "string" }, chart: { type: "string" }, help: { type: "boolean", short: "h" } },
    strict: true,
    allowPositionals: false,
  });
  for (const k of ["json", "chart"] as const) if (values[k] !== undefined && (values[k] === "" || values[k]!.startsWith("-"))) throw new Error(`--${k} needs a file name`);
  return { json: values.json, chart: values.chart, help: values.help ?? false };
}

const fmt = (x: number | null | undefined, unit = "") => {
  if (x === null || x === undefined) return "-";
  const a = Math.abs(x);
  const s = a === 0 ? "0" : a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 0.1 ? x.toFixed(2) : a >= 0.001 ? x.toFixed(4) : x.toExponential(2);
  return unit ? `${s} ${unit}` : s;
};

export function table(figures: Figure[]): string {
  const rows = [["figure", "value", "baseline", "ratio", "target", "met", "n"]];
  for (const f of figures) {
    rows.push([
      f.name,
      fmt(f.value, f.unit),
      f.baseline === undefined ? "-" : `${fmt(f.baseline, f.unit)} (${f.baselineName})`,
      fmt(f.ratio),
      f.target ?? "-",
      f.met,
      f.samples === undefined ? "-" : String(f.samples),
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(rows[0]), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.slice(1).map(line)].join("\n");
}
