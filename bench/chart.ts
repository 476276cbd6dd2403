/**
 * The chart of `npm run bench`: downtime per strategy, grouped by container size, as an SVG
 * document written by hand (no dependency). It reads the figures named
 * `downtime.<strategy>.<size>` (observed from outside, in seconds); a strategy without any such
 * figure is left out, a missing or null value is a labelled gap.
 */

/** The part of a figure the chart needs: a Figure of report.ts and an element of `--json` both fit. */
export interface ChartFigure {
  name: string;
  value: number | null;
}

export interface Series {
  /** `downtime.<key>.<size>` is the figure of this series at that size. */
  key: string;
  label: string;
  color: string;
}

/** The strategies, in the order of their bars; the floors are measured by hand with `lxc`. */
export const DOWNTIME_SERIES: Series[] = [
  { key: "stop-move-start", label: "provider, stop-move-start", color: "#c0392b" },
  { key: "lxc-stop-move-start", label: "lxc stop + move + start", color: "#e67e22" },
  { key: "near-live", label: "provider, near-live", color: "#2471a3" },
  { key: "floor.refresh", label: "floor: stop + copy --refresh + start", color: "#27ae60" },
  { key: "floor.stop-start", label: "floor: stop + start, no move", color: "#7f8c8d" },
];

export interface ChartOptions {
  title?: string;
  /** A line under the title: when and what was measured. */
  subtitle?: string;
  /** Put in the document's <desc> (e.g. the command that produced the figures). */
  description?: string;
  series?: Series[];
}

const W = 760;
const H = 460;
const M = { left: 72, right: 24, top: 76, bottom: 120 };

export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

const esc = (re: string) => re.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Sizes in the order of the groups: `small` first, then by the number in the name (`400MB`). */
function sizeOrder(a: string, b: string): number {
  const n = (s: string) => (s === "small" ? -1 : Number.parseFloat(s) || Number.MAX_SAFE_INTEGER);
  return n(a) - n(b) || a.localeCompare(b);
}

/** A round axis maximum at or above `x`: 1, 2, 2.5 or 5 times a power of ten. */
export function niceMax(x: number): number {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x - 1e-12) return m * p;
  return 10 * p;
}

const num = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
/** Coordinates with at most one decimal, so the document is the same for the same figures. */
const c = (x: number) => String(Math.round(x * 10) / 10);

/** The chart as an SVG document (a string), from figures named `downtime.<strategy>.<size>`. */
export function downtimeChart(figures: ChartFigure[], opts: ChartOptions = {}): string {
  const seriesAll = opts.series ?? DOWNTIME_SERIES;
  const values = new Map<string, Map<string, number | null>>();
  const sizes = new Set<string>();
  for (const s of seriesAll) {
    const re = new RegExp(`^downtime\\.${esc(s.key)}\\.([^.]+)$`);
    for (const f of figures) {
      const m = re.exec(f.name);
      if (!m) continue;
      sizes.add(m[1]);
      if (!values.has(s.key)) values.set(s.key, new Map());
      values.get(s.key)!.set(m[1], typeof f.value === "number" && Number.isFinite(f.value) ? f.value : null);
    }
  }
  const series = seriesAll.filter((s) => values.has(s.key));
  const groups = [...sizes].sort(sizeOrder);
  const title = opts.title ?? "Downtime per strategy and container size";
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const x0 = M.left;
  const y0 = M.top + plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<title>${escapeXml(title)}</title>`);
  if (opts.description) out.push(`<desc>${escapeXml(opts.description)}</desc>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold">${escapeXml(title)}</text>`);
  if (opts.subtitle) out.push(`<text x="${W / 2}" y="46" text-anchor="middle" fill="#555555">${escapeXml(opts.subtitle)}</text>`);

  if (!series.length) {
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#555555">No downtime figures in this run (BENCH_ONLY without downtime).</text>`);
    out.push(`</svg>`);
    return out.join("\n") + "\n";
  }

  const max = niceMax(Math.max(0, ...[...values.values()].flatMap((m) => [...m.values()]).filter((v): v is number => v !== null)));
  const y = (v: number) => y0 - (v / max) * plotH;
  // Grid and y axis: five steps, labelled with as many decimals as the step needs.
  const step = max / 5;
  let decimals = 0;
  while (decimals < 6 && Math.abs(step * 10 ** decimals - Math.round(step * 10 ** decimals)) > 1e-6) decimals++;
  for (let i = 0; i <= 5; i++) {
    const v = step * i;
    out.push(`<line x1="${x0}" y1="${c(y(v))}" x2="${x0 + plotW}" y2="${c(y(v))}" stroke="${i ? "#e5e5e5" : "#333333"}"/>`);
    out.push(`<text class="tick" x="${x0 - 6}" y="${c(y(v) + 4)}" text-anchor="end">${v.toFixed(decimals)}</text>`);
  }
  out.push(`<line x1="${x0}" y1="${M.top}" x2="${x0}" y2="${y0}" stroke="#333333"/>`);
  out.push(`<text transform="translate(18 ${c(M.top + plotH / 2)}) rotate(-90)" text-anchor="middle">downtime, seconds (observed from outside)</text>`);

  // Bars, grouped by size.
  const groupW = plotW / groups.length;
  const barW = Math.min(64, (groupW * 0.8) / series.length);
  groups.forEach((g, gi) => {
    const left = x0 + gi * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, si) => {
      const v = values.get(s.key)?.get(g);
      const bx = left + si * barW;
      const cx = c(bx + barW / 2);
      if (v === undefined || v === null) {
        out.push(`<text x="${cx}" y="${c(y0 - 6)}" text-anchor="middle" fill="#555555">n/a</text>`);
        return;
      }
      const top = y(v);
      out.push(
        `<rect class="bar" data-series="${escapeXml(s.key)}" data-size="${escapeXml(g)}" x="${c(bx + 2)}" y="${c(top)}" width="${c(barW - 4)}" height="${c(y0 - top)}" fill="${s.color}"><title>${escapeXml(`${s.label}, ${g}: ${num(v)} s`)}</title></rect>`,
      );
      out.push(`<text class="value" x="${cx}" y="${c(top - 5)}" text-anchor="middle">${num(v)}</text>`);
    });
    out.push(`<text x="${c(x0 + gi * groupW + groupW / 2)}" y="${y0 + 20}" text-anchor="middle" font-weight="bold">${escapeXml(g)}</text>`);
  });
  out.push(`<text x="${c(x0 + plotW / 2)}" y="${y0 + 42}" text-anchor="middle">container size (small: the busybox image alone; NMB: plus a file of N MiB of random data)</text>`);

  // Legend: two columns under the axis label.
  series.forEach((s, i) => {
    const lx = x0 + (i % 2) * (plotW / 2);
    const ly = y0 + 62 + Math.floor(i / 2) * 18;
    out.push(`<rect class="swatch" x="${lx}" y="${ly - 10}" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 18}" y="${ly}">${escapeXml(s.label)}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
