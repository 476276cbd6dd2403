/**
 * Placement policies, pure: (the instances of a group, the places they may go, which places are
 * draining, where each instance is now) → where each instance goes, and the moves that gets there,
 * ordered into batches that respect maxUnavailable and maxConcurrentMoves. No I/O: the
 * InstanceGroup component (sdk/group.ts) feeds it what it observed, prints the result as the
 * group's move plan at preview, and declares one Instance per entry, whose moves the planner and
 * executor carry out as for any Instance. test/unit/policy.test.ts proves the properties below.
 *
 * A "place" (candidate) is a cluster member, or a remote when a group spreads over servers.
 *
 * Algorithm: weighted rendezvous hashing (HRW) with bounded loads, made sticky.
 *
 *  - Every instance ranks every candidate by score(i, c) = -w_c / ln(h(i, c)), h a hash of the
 *    pair mapped into (0, 1): the "logarithmic method" of weighted rendezvous hashing. A
 *    candidate with twice the weight is first in twice as many rankings.
 *  - Why HRW: an instance's ranking of two candidates does not depend on any third one. So when a
 *    candidate is added, the only instances that want to move are those that now rank the new one
 *    first (about 1/(n+1) of them), and they all want to go to it; when one is removed or
 *    drained, only its instances move, each to its own next choice, so they scatter over the
 *    rest instead of piling onto a neighbour (as on a hash ring). It needs no ring, no virtual
 *    nodes, no table to store, handles weights exactly, and costs O(instances × candidates),
 *    which is nothing for groups of tens or hundreds.
 *  - Why bounded loads: with a handful of members and a dozen instances, plain hashing is lumpy
 *    (six instances on three members land 4/1/1 often enough). So each candidate gets a share
 *    q_c = T·w_c/W of the total instance weight T, an upper bound ceil(q_c·(1+ε)) and a lower
 *    bound floor(q_c·(1−ε)) (ε = `tolerance`, default 0: loads within one instance of the
 *    weighted share). An instance goes to the first candidate in its ranking that has room
 *    (consistent hashing with bounded loads, Mirrokni, Thorup and Zadimoghaddam 2018).
 *  - Why sticky: placing from scratch in a fixed order lets one change cascade (a new instance
 *    takes a slot, the instance that had it takes another's...). So instances stay where they are
 *    whenever that is allowed (not draining, pin and anti-affinity respected, within the upper
 *    bound); only the rest are placed by ranking; then candidates below their lower bound take
 *    the instances that rank them highest, preferring instances that move anyway. Adding an
 *    instance moves at most one other; adding a candidate moves about its share, all to it;
 *    draining moves only the drained candidate's instances; running the policy again on its own
 *    result moves nothing.
 *
 * Constraints: a pin (a member, a remote, or "@group" for any member of a cluster group) always
 * wins over spreading; anti-affinity (symmetric) is a hard constraint: if it cannot be met the
 * result carries an error instead of a silent violation; a draining candidate gets nothing, and a
 * pin to it is an error.
 */
export interface PolicyInstance {
  /** Key of the instance in the group. */
  name: string;
  /** Always place it here: a candidate, another member/remote, or "@group" (a cluster group). */
  pin?: string;
  /** How much of a candidate's share it uses (positive integer, default 1). */
  weight?: number;
  /** Instances it must never share a candidate with (symmetric: listing it on one side is enough). */
  antiAffinity?: string[];
}

export interface PolicyCandidate {
  /** A cluster member or a remote; "@group" stands for each member of that cluster group. */
  name: string;
  /** Relative share (default 1); 0 takes nothing but pins. */
  weight?: number;
}

export interface PolicyInput {
  instances: PolicyInstance[];
  candidates: PolicyCandidate[];
  /** Candidates that must end up with no instances. */
  draining?: string[];
  /** Where each instance is now (member or remote); absent = not created yet. */
  current?: Record<string, string | undefined>;
  /** Cluster groups → members, to expand "@group" candidates and pins. */
  groups?: Record<string, string[]>;
  /** ε of the bounded loads: 0 (default) keeps each load within one instance of its share. */
  tolerance?: number;
  /** At most this many instances of the group down at once (each move of a running instance is one). */
  maxUnavailable?: number;
  /** At most this many moves of the group at once. */
  maxConcurrentMoves?: number;
  /** At most this many moves of the group touching one server (member or remote) at once. */
  maxConcurrentMovesPerServer?: number;
  /** Which instances run now (a stopped one is no downtime); default: all running. */
  running?: Record<string, boolean>;
}

export interface PolicyMove {
  instance: string;
  from: string;
  /** A candidate, a pin, or "@group" when the cluster picks the member of the group. */
  to: string;
  /** 1-based wave: the moves of one batch may run together within every limit. */
  batch: number;
  why: string;
}

export interface PolicyResult {
  /** Instance → where it goes: a member/remote, or "@group". */
  assignment: Record<string, string>;
  /** Instance → the member/remote it will be on, where known (a "@group" target of a new instance is not). */
  placedOn: Record<string, string | undefined>;
  /** Instance weight per candidate after the moves. */
  load: Record<string, number>;
  /** Share and bounds per eligible candidate. */
  bounds: Record<string, { share: number; lower: number; upper: number }>;
  moves: PolicyMove[];
  /** Instances that do not exist yet, with where they will be created. */
  creates: { instance: string; to: string }[];
  batches: number;
  warnings: string[];
  /** Constraints that cannot be met: a caller must refuse the plan. */
  errors: string[];
}

/** 32-bit FNV-1a over UTF-16 code units from `seed`, then murmur3's finalizer for avalanche. */
function mix32(s: string, seed: number): number {
  let h = seed >>> 0;
  for (let k = 0; k < s.length; k++) h = Math.imul(h ^ s.charCodeAt(k), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * h(i, c) in (0, 1), 52 bits, stable across processes, machines and versions (placements must
 * not change when the program runs elsewhere). Two independently seeded 32-bit hashes: cheap
 * enough to rank hundreds of instances over tens of members in a millisecond.
 */
export function unitHash(instance: string, candidate: string): number {
  const s = `${instance}\u0000${candidate}`;
  const hi = mix32(s, 0x811c9dc5) >>> 12; // 20 bits
  const lo = mix32(s, 0x9e3779b9); // 32 bits
  return (hi * 2 ** 32 + lo + 0.5) / 2 ** 52;
}

/** Code-unit order: the same on every machine (localeCompare depends on the locale, and is slow). */
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Weighted rendezvous score: higher wins. */
export function hrwScore(instance: string, candidate: string, weight: number): number {
  if (weight <= 0) return 0;
  return -weight / Math.log(unitHash(instance, candidate));
}

/** Candidates in the instance's order of preference (highest score first). */
export function ranking(instance: string, candidates: PolicyCandidate[]): string[] {
  return candidates
    .map((c) => ({ name: c.name, s: hrwScore(instance, c.name, c.weight ?? 1) }))
    .sort((a, b) => b.s - a.s || cmp(a.name, b.name))
    .map((c) => c.name);
}

function expandCandidates(cands: PolicyCandidate[], groups: Record<string, string[]>, errors: string[]): PolicyCandidate[] {
  const out = new Map<string, PolicyCandidate>();
  for (const c of cands) {
    if (c.name.startsWith("@")) {
      const members = groups[c.name.slice(1)];
      if (!members) {
        errors.push(`candidate "${c.name}": no cluster group "${c.name.slice(1)}" (groups: ${Object.keys(groups).join(", ") || "none"})`);
        continue;
      }
      for (const m of members) if (!out.has(m)) out.set(m, { name: m, weight: c.weight });
    } else {
      out.set(c.name, c);
    }
  }
  return [...out.values()];
}

export function place(input: PolicyInput): PolicyResult {
  const errors: string[] = [];
  const warnings: string[] = [];
  const groups = input.groups ?? {};
  const eps = Math.max(0, input.tolerance ?? 0);
  const current = input.current ?? {};
  const draining = new Set(input.draining ?? []);
  for (const d of [...draining]) if (d.startsWith("@")) for (const m of groups[d.slice(1)] ?? []) draining.add(m);

  // Instances: unique names, integer weights, symmetric anti-affinity.
  const insts = [...input.instances].sort((a, b) => cmp(a.name, b.name));
  const byName = new Map(insts.map((i) => [i.name, i]));
  if (byName.size !== insts.length) errors.push("instance names in a group must be unique");
  const w = (i: string) => {
    const x = byName.get(i)?.weight ?? 1;
    return Number.isInteger(x) && x >= 1 ? x : 1;
  };
  for (const i of insts) {
    if (i.weight !== undefined && !(Number.isInteger(i.weight) && i.weight >= 1)) errors.push(`${i.name}: weight must be a positive integer (got ${i.weight})`);
  }
  const anti = new Map<string, Set<string>>(insts.map((i) => [i.name, new Set<string>()]));
  for (const i of insts) {
    for (const j of i.antiAffinity ?? []) {
      if (j === i.name) continue;
      if (!byName.has(j)) {
        warnings.push(`${i.name}: anti-affinity names "${j}", which is not in the group (ignored)`);
        continue;
      }
      anti.get(i.name)!.add(j);
      anti.get(j)!.add(i.name);
    }
  }

  const all = expandCandidates(input.candidates, groups, errors);
  const eligible = all.filter((c) => !draining.has(c.name) && (c.weight ?? 1) > 0);
  const cw = new Map(eligible.map((c) => [c.name, c.weight ?? 1]));
  if (!eligible.length) errors.push(`no candidate is left to place instances on (candidates: ${all.map((c) => c.name).join(", ") || "none"}; draining: ${[...draining].join(", ") || "none"})`);

  // Scores and rankings computed once: hashing dominates the cost.
  const scores = new Map<string, Map<string, number>>();
  const prefs = new Map<string, string[]>();
  const ranks = new Map<string, Map<string, number>>();
  for (const i of insts) {
    const sc = new Map(eligible.map((c) => [c.name, hrwScore(i.name, c.name, c.weight ?? 1)]));
    const pref = eligible.map((c) => c.name).sort((a, b) => sc.get(b)! - sc.get(a)! || cmp(a, b));
    scores.set(i.name, sc);
    prefs.set(i.name, pref);
    ranks.set(i.name, new Map(pref.map((c, k) => [c, k])));
  }
  const rank = (i: string, c: string) => ranks.get(i)!.get(c) ?? Infinity;
  const score = (i: string, c: string) => scores.get(i)!.get(c) ?? 0;

  /** assignment: the target; on: the member/remote it is counted on (for loads and anti-affinity). */
  const assignment = new Map<string, string>();
  const on = new Map<string, string | undefined>();
  const load = new Map<string, number>(eligible.map((c) => [c.name, 0]));
  const why = new Map<string, string>();
  const conflict = (i: string, c: string) => [...anti.get(i)!].some((j) => on.get(j) === c);
  const put = (i: string, target: string, member: string | undefined) => {
    assignment.set(i, target);
    on.set(i, member);
    if (member !== undefined && load.has(member)) load.set(member, load.get(member)! + w(i));
  };
  const unput = (i: string) => {
    const m = on.get(i);
    if (m !== undefined && load.has(m)) load.set(m, load.get(m)! - w(i));
    assignment.delete(i);
    on.delete(i);
  };

  // Shares and bounds over everything counted on eligible candidates (pins there included).
  const Wc = eligible.reduce((s, c) => s + (c.weight ?? 1), 0);
  const countedPin = (i: PolicyInstance) => {
    if (!i.pin) return true;
    if (i.pin.startsWith("@")) return (groups[i.pin.slice(1)] ?? []).some((m) => cw.has(m));
    return cw.has(i.pin);
  };
  const T = insts.filter(countedPin).reduce((s, i) => s + w(i.name), 0);
  const bounds: PolicyResult["bounds"] = {};
  for (const c of eligible) {
    const share = Wc > 0 ? (T * (c.weight ?? 1)) / Wc : 0;
    bounds[c.name] = { share, lower: Math.floor(share * (1 - eps) + 1e-9), upper: Math.max(1, Math.ceil(share * (1 + eps) - 1e-9)) };
  }
  const fits = (i: string, c: string) => load.get(c)! + w(i) <= bounds[c].upper;

  // Phase 1: pins.
  for (const i of insts) {
    if (!i.pin) continue;
    const p = i.pin;
    if (p.startsWith("@")) {
      const members = groups[p.slice(1)];
      if (!members) {
        errors.push(`${i.name}: pinned to cluster group "${p.slice(1)}", which does not exist (groups: ${Object.keys(groups).join(", ") || "none"})`);
        put(i.name, p, undefined);
        continue;
      }
      const usable = members.filter((m) => !draining.has(m));
      if (!usable.length) {
        errors.push(`${i.name}: pinned to cluster group "${p.slice(1)}", whose members (${members.join(", ")}) are all draining`);
        put(i.name, p, undefined);
        continue;
      }
      const cur = current[i.name];
      if (cur !== undefined && usable.includes(cur)) {
        put(i.name, members.some((m) => draining.has(m)) ? cur : p, cur);
      } else if (members.some((m) => draining.has(m)) || cur !== undefined) {
        // The cluster would pick any member of the group, draining ones included: choose here.
        const order = ranking(
          i.name,
          usable.map((m) => ({ name: m, weight: cw.get(m) ?? 1 })),
        );
        const pick = order.find((m) => !load.has(m) || fits(i.name, m)) ?? order[0];
        put(i.name, pick, pick);
        why.set(i.name, cur !== undefined && draining.has(cur) ? `drain ${cur} (pinned to ${p})` : `pinned to ${p}`);
      } else {
        put(i.name, p, undefined); // new: the cluster picks the least loaded member of the group
      }
      continue;
    }
    if (draining.has(p)) errors.push(`${i.name}: pinned to ${p}, which is draining: unpin it or stop draining ${p}`);
    put(i.name, p, p);
    if (current[i.name] !== undefined && current[i.name] !== p) why.set(i.name, `pinned to ${p}`);
  }

  const free = insts.filter((i) => !i.pin).map((i) => i.name);

  // Phase 2: stay where allowed. Under contention the instances that rank their place highest stay.
  const stayers = free
    .filter((i) => current[i] !== undefined && cw.has(current[i]!))
    .sort((a, b) => rank(a, current[a]!) - rank(b, current[b]!) || score(b, current[b]!) - score(a, current[a]!) || cmp(a, b));
  for (const i of stayers) {
    const c = current[i]!;
    if (conflict(i, c)) {
      why.set(i, `anti-affinity with ${[...anti.get(i)!].filter((j) => on.get(j) === c).join(", ")} on ${c}`);
    } else if (!fits(i, c)) {
      why.set(i, `${c} is over its share (${bounds[c].upper})`);
    } else {
      put(i, c, c);
    }
  }
  for (const i of free) {
    const c = current[i];
    if (c === undefined || assignment.has(i) || why.has(i)) continue;
    why.set(i, draining.has(c) ? `drain ${c}` : `${c} is not a candidate`);
  }

  // Phase 3: place the rest by ranking, most constrained first.
  const rest = free.filter((i) => !assignment.has(i)).sort((a, b) => anti.get(b)!.size - anti.get(a)!.size || cmp(a, b));
  for (const i of rest) {
    const pref = prefs.get(i)!;
    // Candidates below their lower bound first (a new or undrained one): the instances that must
    // move anyway fill them, instead of moving others there later.
    let c = pref.find((x) => load.get(x)! + w(i) <= bounds[x].lower && !conflict(i, x)) ?? pref.find((x) => fits(i, x) && !conflict(i, x));
    if (c === undefined) {
      const ok = pref.filter((x) => !conflict(i, x));
      const cur = current[i];
      // Nowhere within the bounds: stay if possible (so a rerun does not shuffle), else least loaded.
      c = cur !== undefined && ok.includes(cur) ? cur : [...ok].sort((x, y) => (load.get(x)! + w(i)) / cw.get(x)! - (load.get(y)! + w(i)) / cw.get(y)! || rank(i, x) - rank(i, y))[0];
      if (c !== undefined) warnings.push(`${i}: no candidate has room within its share; placed on ${c} above it`);
    }
    if (c === undefined) {
      if (pref.length) {
        errors.push(`${i}: anti-affinity with ${[...anti.get(i)!].join(", ")} cannot be met on ${pref.length} candidate(s) (${pref.join(", ")})`);
        c = pref[0];
      } else {
        continue;
      }
    }
    put(i, c, c);
  }

  // Phase 4: fill candidates below their lower bound with the instances that rank them highest,
  // preferring instances that move anyway (a free redirect) over ones that would stay.
  const stuck = new Set<string>();
  for (;;) {
    const needy = eligible
      .map((c) => c.name)
      .filter((c) => !stuck.has(c) && load.get(c)! < bounds[c].lower)
      .sort((a, b) => (load.get(a)! - bounds[a].lower) / cw.get(a)! - (load.get(b)! - bounds[b].lower) / cw.get(b)! || cmp(a, b))[0];
    if (needy === undefined) break;
    const donors = free
      .filter((i) => {
        const d = on.get(i);
        return d !== undefined && d !== needy && load.has(d) && load.get(d)! - w(i) >= bounds[d].lower && fits(i, needy) && !conflict(i, needy);
      })
      .sort((a, b) => {
        const ma = on.get(a) !== current[a] ? 0 : 1;
        const mb = on.get(b) !== current[b] ? 0 : 1;
        return ma - mb || rank(a, needy) - rank(b, needy) || score(b, needy) - score(a, needy) || cmp(a, b);
      });
    const i = donors[0];
    if (i === undefined) {
      stuck.add(needy);
      continue;
    }
    unput(i);
    put(i, needy, needy);
    if (current[i] !== undefined && current[i] !== needy && !why.has(i)) why.set(i, `spread: ${needy} is below its share (${bounds[needy].lower})`);
  }
  for (const c of stuck) warnings.push(`${c} stays below its share (${load.get(c)} < ${bounds[c].lower}): pins or anti-affinity leave nothing to move there`);

  // Moves, ordered: off draining places first, then the rest; then batches.
  const moves: PolicyMove[] = [];
  const creates: PolicyResult["creates"] = [];
  for (const i of insts) {
    const to = assignment.get(i.name);
    if (to === undefined) continue;
    const from = current[i.name];
    if (from === undefined) {
      creates.push({ instance: i.name, to });
      continue;
    }
    const same = to === from || (to.startsWith("@") && (groups[to.slice(1)] ?? []).includes(from));
    if (!same) moves.push({ instance: i.name, from, to, batch: 0, why: why.get(i.name) ?? "placement" });
  }
  moves.sort((a, b) => Number(draining.has(b.from)) - Number(draining.has(a.from)) || cmp(a.from, b.from) || cmp(a.instance, b.instance));
  const batches = batch(moves, input);

  const placedOn: Record<string, string | undefined> = {};
  for (const i of insts) placedOn[i.name] = on.get(i.name);
  return {
    assignment: Object.fromEntries(assignment),
    placedOn,
    load: Object.fromEntries(load),
    bounds,
    moves,
    creates,
    batches,
    warnings,
    errors,
  };
}

/**
 * First-fit batching in move order: a batch holds at most maxUnavailable moves of running
 * instances, at most maxConcurrentMoves moves, at most maxConcurrentMovesPerServer touching one
 * server. The provider enforces the same limits with real slots (provider/limiter.ts): the
 * batches are the schedule those slots allow, shown at preview.
 */
function batch(moves: PolicyMove[], input: PolicyInput): number {
  const lim = (v: number | undefined) => (v !== undefined && v > 0 ? Math.floor(v) : Infinity);
  const U = lim(input.maxUnavailable);
  const C = lim(input.maxConcurrentMoves);
  const P = lim(input.maxConcurrentMovesPerServer);
  const running = (i: string) => input.running?.[i] ?? true;
  const bs: { n: number; down: number; per: Map<string, number> }[] = [];
  for (const m of moves) {
    const servers = [...new Set([m.from, m.to])];
    let k = bs.findIndex((b) => b.n < C && (!running(m.instance) || b.down < U) && servers.every((s) => (b.per.get(s) ?? 0) < P));
    if (k < 0) {
      bs.push({ n: 0, down: 0, per: new Map() });
      k = bs.length - 1;
    }
    const b = bs[k];
    b.n++;
    if (running(m.instance)) b.down++;
    for (const s of servers) b.per.set(s, (b.per.get(s) ?? 0) + 1);
    m.batch = k + 1;
  }
  return bs.length;
}

/** The plan as text, for preview: one row per instance, moves first, batch by batch. */
export function formatPlan(r: PolicyResult, opts: { title?: string; current?: Record<string, string | undefined>; names?: Record<string, string> } = {}): string {
  const rows: string[][] = [["batch", "instance", "from", "to", "why"]];
  const nm = (i: string) => opts.names?.[i] ?? i;
  for (const m of [...r.moves].sort((a, b) => a.batch - b.batch)) rows.push([String(m.batch), nm(m.instance), m.from, m.to, m.why]);
  for (const c of r.creates) rows.push(["new", nm(c.instance), "-", c.to, "create"]);
  const moving = new Set([...r.moves.map((m) => m.instance), ...r.creates.map((c) => c.instance)]);
  for (const [i, to] of Object.entries(r.assignment)) if (!moving.has(i)) rows.push(["-", nm(i), opts.current?.[i] ?? to, to, "stays"]);
  const width = rows[0].map((_, k) => Math.max(...rows.map((row) => row[k].length)));
  const lines = rows.map((row) =>
    row
      .map((cell, k) => (k === row.length - 1 ? cell : cell.padEnd(width[k])))
      .join("  ")
      .trimEnd(),
  );
  const loads = Object.entries(r.load)
    .map(([c, n]) => `${c} ${n}/${r.bounds[c]?.upper ?? "-"}`)
    .join(", ");
  const head = `${opts.title ?? "placement plan"}: ${r.moves.length} move(s) in ${r.batches} batch(es), ${r.creates.length} new; load after (instances/upper bound): ${loads || "-"}`;
  const tail = [...r.warnings.map((x) => `warning: ${x}`), ...r.errors.map((x) => `error: ${x}`)];
  return [head, ...lines.map((l) => `  ${l}`), ...tail].join("\n");
}
