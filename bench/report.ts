/** Figures, medians and the printed table of `npm run bench`. */

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
  /** What the value is compared with, named (e.g. "lxc move --mode push"). */
  baselineName?: string;
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
  opts: { baselineName?: string; baseline?: number | null; target?: Target; samples?: number; note?: string } = {},
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
  return { name, unit, value, baselineName: opts.baselineName, baseline: opts.baseline, ratio, target, met, samples: opts.samples, note: opts.note };
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
