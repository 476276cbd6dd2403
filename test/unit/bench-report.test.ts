/**
 * What `npm run bench` writes, from a fixed list of figures and without the sandbox: the
 * `--json FILE` array (its keys, ratio = value / baselineValue, null without a baseline), the
 * drain figures as the table takes them, the command-line options, and the downtime chart (a
 * well-formed SVG document with one bar per strategy and size, labelled).
 */
import { benchArgs, figure, fromDrain, toJson, type Figure } from "../../bench/report";
import { downtimeChart, escapeXml, niceMax } from "../../bench/chart";
import { kindOf, RequestTally, settingsFrom } from "../../bench/context";

const FIGURES: Figure[] = [
  figure("move.relay.cross-remote.small", "s", 0.5, { baselineName: "lxc-move", baselineDetail: "lxc move --mode relay", baseline: 0.625, target: { op: "<=", limit: 1.05 }, samples: 4 }),
  figure("downtime.stop-move-start.small", "s", 2, { samples: 2 }),
  figure("downtime.near-live.small", "s", 0.5, { baselineName: "downtime.stop-move-start.small", baseline: 2, target: { op: "<=", limit: 0.15 }, samples: 2 }),
  figure("downtime.floor.refresh.small", "s", 0.8, { baselineName: "downtime.floor.stop-start.small", baseline: 0.4, samples: 2 }),
  figure("downtime.floor.stop-start.small", "s", 0.4, { samples: 3 }),
  figure("downtime.stop-move-start.400MB", "s", 13.7, { samples: 2 }),
  figure("downtime.near-live.400MB", "s", 1.3, { baselineName: "downtime.stop-move-start.400MB", baseline: 13.7, target: { op: "<=", limit: 0.15 }, samples: 2 }),
  figure("downtime.near-live.reported.400MB", "s", 1.08, { baselineName: "downtime.stop-move-start.reported.400MB", baseline: 13.9, samples: 2 }),
  figure("downtime.near-live.frozen.400MB", "s", 0, { samples: 2 }),
  figure("downtime.floor.refresh.400MB", "s", 2.16, { baselineName: "downtime.floor.stop-start.400MB", baseline: 1.09, samples: 2 }),
  figure("downtime.floor.stop-start.400MB", "s", 1.09, { samples: 3 }),
  figure("read.hinted.c10.list-calls", "calls", 0, { target: { op: "<=", limit: 4, on: "value" }, samples: 3 }),
  figure("read.stale.c10.time", "ms/resource", 3202, { baselineName: "list-per-remote", baseline: 0, samples: 1 }),
];

describe("--json: one object per figure", () => {
  const out = toJson(FIGURES);
  const byName = Object.fromEntries(out.map((f) => [f.name, f]));

  it("has one element per figure, in order, with the spec's keys", () => {
    expect(out.map((f) => f.name)).toEqual(FIGURES.map((f) => f.name));
    for (const f of out) {
      for (const k of ["name", "value", "unit", "baseline", "baselineValue", "ratio"]) expect(f).toHaveProperty(k);
      expect(typeof f.name).toBe("string");
      expect(typeof f.unit).toBe("string");
    }
    // JSON and back: nothing is lost (no undefined, NaN or Infinity that JSON would change).
    expect(JSON.parse(JSON.stringify(out))).toEqual(out);
  });

  it("names the baseline and gives its value; ratio is value / baselineValue", () => {
    expect(byName["move.relay.cross-remote.small"]).toMatchObject({
      value: 0.5,
      unit: "s",
      baseline: "lxc-move",
      baselineValue: 0.625,
      ratio: 0.8,
      baselineDetail: "lxc move --mode relay",
      met: "yes",
      samples: 4,
    });
    expect(byName["downtime.near-live.400MB"].baseline).toBe("downtime.stop-move-start.400MB");
    expect(byName["downtime.near-live.400MB"].ratio).toBeCloseTo(1.3 / 13.7, 12);
    for (const f of out) if (f.ratio !== null) expect(f.ratio).toBeCloseTo(f.value! / f.baselineValue!, 12);
  });

  it("has null baseline, baselineValue and ratio without a baseline, and a null ratio for a zero baseline", () => {
    expect(byName["downtime.stop-move-start.400MB"]).toMatchObject({ baseline: null, baselineValue: null, ratio: null, target: null, met: "n/a" });
    expect(byName["read.hinted.c10.list-calls"]).toMatchObject({ value: 0, baseline: null, ratio: null, target: "value <= 4", met: "yes" });
    expect(byName["read.stale.c10.time"]).toMatchObject({ baseline: "list-per-remote", baselineValue: 0, ratio: null });
  });

  it("turns a missing or non-finite value into null", () => {
    const [f] = toJson([{ ...figure("x", "s", null, { baselineName: "lxc-move", baseline: Number.NaN }) }]);
    expect(f).toMatchObject({ value: null, baseline: "lxc-move", baselineValue: null, ratio: null });
  });
});

describe("drain figures", () => {
  it("take baseline lxc-cluster-evacuate and a ratio recomputed from the rounded values", () => {
    const f = fromDrain({ name: "drain.wall", value: 40.5, baseline: 81, ratio: 0.5, target: "ratio <= 0.6", met: true, note: "n" });
    expect(toJson([f])[0]).toMatchObject({ name: "drain.wall", value: 40.5, unit: "s", baseline: "lxc-cluster-evacuate", baselineValue: 81, ratio: 0.5, met: "yes", note: "n" });
  });

  it("have a null baseline value and ratio when the evacuation was skipped (NaN)", () => {
    const f = fromDrain({ name: "drain.downtime.max", value: 3.2, baseline: Number.NaN, ratio: Number.NaN, target: "value <= 2 x floor", met: false });
    expect(toJson([f])[0]).toMatchObject({ baseline: "lxc-cluster-evacuate", baselineValue: null, ratio: null, met: "no" });
  });
});

describe("command-line options", () => {
  it("reads --json and --chart, with a space or =", () => {
    expect(benchArgs([])).toEqual({ json: undefined, chart: undefined, help: false });
    expect(benchArgs(["--json", "docs/r.json", "--chart=docs/c.svg"])).toEqual({ json: "docs/r.json", chart: "docs/c.svg", help: false });
  });

  it("refuses an unknown option, a positional argument and a missing file name", () => {
    expect(() => benchArgs(["--jsn", "x"])).toThrow();
    expect(() => benchArgs(["results.json"])).toThrow();
    expect(() => benchArgs(["--json"])).toThrow();
    expect(() => benchArgs(["--json", "--chart", "x.svg"])).toThrow();
  });
});

/**
 * A small XML well-formedness check (there is no XML parser among the dependencies): one root,
 * every tag closed in order, attributes quoted and unique, no bare `<` or `&` in text or values.
 * Returns the elements met, as [name, attributes, text directly inside].
 */
function parseXml(doc: string): { name: string; attrs: Record<string, string>; text: string }[] {
  const elements: { name: string; attrs: Record<string, string>; text: string }[] = [];
  const stack: { name: string; attrs: Record<string, string>; text: string }[] = [];
  const entity = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g;
  const checkText = (t: string) => {
    if (/[<>]/.test(t.replace(/&[^;]*;/g, "")) || /&/.test(t.replace(entity, ""))) throw new Error(`bad character data: ${JSON.stringify(t.slice(0, 60))}`);
  };
  const unescape = (t: string) =>
    t
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      .replace(/&amp;/g, "&");
  let roots = 0;
  let i = 0;
  const body = doc.replace(/^<\?xml[^>]*\?>\s*/, "");
  while (i < body.length) {
    const lt = body.indexOf("<", i);
    const text = body.slice(i, lt < 0 ? body.length : lt);
    if (text.trim()) {
      if (!stack.length) throw new Error(`text outside the root: ${JSON.stringify(text.slice(0, 60))}`);
      checkText(text);
      stack[stack.length - 1].text += unescape(text);
    }
    if (lt < 0) break;
    const gt = body.indexOf(">", lt);
    if (gt < 0) throw new Error("unterminated tag");
    const tag = body.slice(lt + 1, gt);
    i = gt + 1;
    if (tag.startsWith("!--")) {
      if (!tag.endsWith("--")) throw new Error("bad comment");
      continue;
    }
    if (tag.startsWith("/")) {
      const open = stack.pop();
      if (!open || open.name !== tag.slice(1).trim()) throw new Error(`</${tag.slice(1)}> closes <${open?.name}>`);
      continue;
    }
    const selfClosing = tag.endsWith("/");
    const m = /^([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*"[^"<]*")*)\s*\/?$/.exec(tag);
    if (!m) throw new Error(`bad tag <${tag}>`);
    const attrs: Record<string, string> = {};
    for (const a of m[2].matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*"([^"]*)"/g)) {
      if (a[1] in attrs) throw new Error(`attribute ${a[1]} twice in <${m[1]}>`);
      checkText(a[2]);
      attrs[a[1]] = unescape(a[2]);
    }
    if (!stack.length && roots++) throw new Error("more than one root element");
    const el = { name: m[1], attrs, text: "" };
    elements.push(el);
    if (!selfClosing) stack.push(el);
  }
  if (stack.length) throw new Error(`<${stack[stack.length - 1].name}> is not closed`);
  if (roots !== 1) throw new Error("no root element");
  return elements;
}

describe("the XML check itself", () => {
  it("rejects what is not well-formed", () => {
    expect(() => parseXml("<svg><rect></svg>")).toThrow();
    expect(() => parseXml("<svg><text>a < b</text></svg>")).toThrow();
    expect(() => parseXml("<svg><text>a & b</text></svg>")).toThrow();
    expect(() => parseXml("<svg><rect x=1/></svg>")).toThrow();
    expect(() => parseXml("<svg/><svg/>")).toThrow();
    expect(parseXml('<svg a="1"><text>a &amp; b</text></svg>').map((e) => e.name)).toEqual(["svg", "text"]);
  });
});

describe("downtime chart", () => {
  const svg = downtimeChart(FIGURES, { subtitle: "run of <today> & HEAD abc", description: "npm run bench -- --json x" });
  let els: ReturnType<typeof parseXml> = [];
  let texts: string[] = [];
  let bars: typeof els = [];
  beforeAll(() => {
    try {
      els = parseXml(svg);
    } catch {
      return; // the first test says why
    }
    texts = els.filter((e) => e.name === "text").map((e) => e.text);
    bars = els.filter((e) => e.name === "rect" && e.attrs.class === "bar");
  });

  it("is a well-formed SVG document", () => {
    expect(() => parseXml(svg)).not.toThrow();
    expect(els[0].name).toBe("svg");
    expect(els[0].attrs.xmlns).toBe("http://www.w3.org/2000/svg");
    expect(Number(els[0].attrs.width)).toBeGreaterThan(0);
  });

  it("has one bar per strategy and size that has a figure, and only those", () => {
    const got = bars.map((b) => `${b.attrs["data-series"]}@${b.attrs["data-size"]}`).sort();
    expect(got).toEqual(["stop-move-start", "near-live", "floor.refresh", "floor.stop-start"].flatMap((s) => [`${s}@small`, `${s}@400MB`]).sort());
    // near-live.reported, near-live.frozen and others are not bars of their own.
    expect(bars.some((b) => /reported|frozen/.test(b.attrs["data-series"]))).toBe(false);
  });

  it("draws the bars to scale from one baseline, small before 400MB", () => {
    const h = (s: string, size: string) => Number(bars.find((b) => b.attrs["data-series"] === s && b.attrs["data-size"] === size)!.attrs.height);
    const x = (s: string, size: string) => Number(bars.find((b) => b.attrs["data-series"] === s && b.attrs["data-size"] === size)!.attrs.x);
    expect(h("stop-move-start", "400MB") / h("near-live", "400MB")).toBeCloseTo(13.7 / 1.3, 1);
    expect(h("stop-move-start", "small") / h("floor.stop-start", "small")).toBeCloseTo(2 / 0.4, 1);
    const bottoms = new Set(bars.map((b) => Math.round((Number(b.attrs.y) + Number(b.attrs.height)) * 10)));
    expect(bottoms.size).toBe(1);
    expect(x("floor.stop-start", "small")).toBeLessThan(x("stop-move-start", "400MB"));
    for (const b of bars) expect(Number(b.attrs.height)).toBeGreaterThan(0);
  });

  it("labels every bar with its value, and has a title, axis labels, group labels and a legend", () => {
    for (const v of ["2.00", "0.50", "0.80", "0.40", "13.7", "1.30", "2.16", "1.09"]) expect(texts).toContain(v);
    expect(texts).toContain("Downtime per strategy and container size");
    expect(texts.some((t) => /^downtime, seconds/.test(t))).toBe(true);
    expect(texts.some((t) => /^container size/.test(t))).toBe(true);
    expect(texts).toContain("small");
    expect(texts).toContain("400MB");
    expect(texts).toContain("run of <today> & HEAD abc");
    for (const l of ["provider, stop-move-start", "provider, near-live", "floor: stop + copy --refresh + start", "floor: stop + start, no move"]) expect(texts).toContain(l);
    expect(els.filter((e) => e.name === "rect" && e.attrs.class === "swatch")).toHaveLength(4);
    expect(els.find((e) => e.name === "desc")?.text).toBe("npm run bench -- --json x");
  });

  it("is the same document for the same figures", () => {
    expect(downtimeChart(FIGURES, { subtitle: "run of <today> & HEAD abc", description: "npm run bench -- --json x" })).toBe(svg);
  });

  it("shows a missing value as n/a, not as a bar", () => {
    const figs = FIGURES.map((f) => (f.name === "downtime.near-live.small" ? { ...f, value: null } : f));
    const e = parseXml(downtimeChart(figs));
    expect(e.filter((x) => x.name === "rect" && x.attrs.class === "bar")).toHaveLength(7);
    expect(e.filter((x) => x.name === "text").map((x) => x.text)).toContain("n/a");
  });

  it("says so when there is no downtime figure", () => {
    const e = parseXml(downtimeChart(FIGURES.filter((f) => !f.name.startsWith("downtime."))));
    expect(e.filter((x) => x.name === "rect" && x.attrs.class === "bar")).toHaveLength(0);
    expect(e.some((x) => x.name === "text" && /No downtime figures/.test(x.text))).toBe(true);
  });

  it("escapes and rounds", () => {
    expect(escapeXml(`a<b>&"c'`)).toBe("a&lt;b&gt;&amp;&quot;c&apos;");
    expect([0.3, 1, 1.2, 13.7, 22, 101].map(niceMax)).toEqual([0.5, 1, 2, 20, 25, 200]);
  });
});

describe("bench settings and request kinds", () => {
  it("reads BENCH_* with their defaults, and refuses an unknown part, case or size by name", () => {
    const d = settingsFrom({});
    expect([...d.parts]).toEqual(["move", "downtime", "relay", "read", "drain"]);
    expect({ bigMb: d.bigMb, readN: d.readN, cases: d.cases, sizes: d.sizes, moveTimeoutMs: d.moveTimeoutMs }).toEqual({
      bigMb: 400,
      readN: 200,
      cases: ["pull", "push", "relay", "member"],
      sizes: ["small", "big"],
      moveTimeoutMs: 700_000,
    });
    const s = settingsFrom({ BENCH_ONLY: "read, move", BENCH_BIG_MB: "50", BENCH_READ_N: "-3" });
    expect([...s.parts]).toEqual(["read", "move"]);
    expect(s.bigMb).toBe(50);
    expect(s.readN).toBe(200);
    expect(() => settingsFrom({ BENCH_ONLY: "move,rleay" })).toThrow('BENCH_ONLY: unknown value "rleay"');
    expect(() => settingsFrom({ BENCH_SIZES: "huge" })).toThrow('BENCH_SIZES: unknown value "huge"');
  });

  it("tells list calls apart and folds names and operation ids, per remote", () => {
    const t = new RequestTally();
    t.onRequest({ remote: "s1", method: "GET", path: "/instances", query: { recursion: "1" } });
    t.onRequest({ remote: "s1", method: "GET", path: "/instances", query: {} });
    t.onRequest({ remote: "s2", method: "GET", path: "/instances/web", query: { project: "staging" } });
    t.onRequest({ remote: "s2", method: "GET", path: "/operations/abc/wait", query: { timeout: "5" } });
    t.onRequest({ remote: "s2", method: "DELETE", path: "/operations/abc", query: {} });
    t.onRequest({ remote: "s2", method: "GET", path: "", query: {} });
    expect(t.snapshot()).toEqual({
      total: 6,
      byMethod: { GET: 5, DELETE: 1 },
      byKind: {
        "list GET /instances?recursion": 1,
        "GET /instances": 1,
        "GET /instances/{name}": 1,
        "GET /operations/{id}/wait": 1,
        "DELETE /operations/{id}": 1,
        "GET /1.0": 1,
      },
      listByRemote: { s1: 1 },
    });
    t.reset();
    expect(t.snapshot().total).toBe(0);
    expect(kindOf({ method: "POST", path: "/instances/web", query: { target: "m2" } })).toBe("POST /instances/{name}");
  });
});
