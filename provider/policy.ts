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

/**
 * What place() works from: the input checked and expanded, shares and bounds, and each
 * instance's ranking of the eligible candidates, computed once (hashing dominates the cost).
 */
class Problem {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];
  readonly groups: Record<string, string[]>;
  readonly current: Record<string, string | undefined>;
  /** Draining candidates, "@group" expanded to its members. */
  readonly draining: Set<string>;
  /** Instances by name (code-unit order). */
  readonly insts: PolicyInstance[];
  /** Anti-affinity, made symmetric. */
  readonly anti = new Map<string, Set<string>>();
  /** Candidates that may take instances (not draining, weight > 0), and their weights. */
  readonly eligible: PolicyCandidate[];
  readonly cw: Map<string, number>;
  readonly bounds: PolicyResult["bounds"] = {};
  private readonly byName: Map<string, PolicyInstance>;
  private readonly scores = new Map<string, Map<string, number>>();
  private readonly prefs = new Map<string, string[]>();
  private readonly ranks = new Map<string, Map<string, number>>();

  constructor(input: PolicyInput) {
    this.groups = input.groups ?? {};
    this.current = input.current ?? {};
    this.draining = new Set(input.draining ?? []);
    for (const d of [...this.draining]) if (d.startsWith("@")) for (const m of this.groups[d.slice(1)] ?? []) this.draining.add(m);

    this.insts = [...input.instances].sort((a, b) => cmp(a.name, b.name));
    this.byName = new Map(this.insts.map((i) => [i.name, i]));
    this.checkInstances();

    const all = expandCandidates(input.candidates, this.groups, this.errors);
    this.eligible = all.filter((c) => !this.draining.has(c.name) && (c.weight ?? 1) > 0);
    this.cw = new Map(this.eligible.map((c) => [c.name, c.weight ?? 1]));
    if (!this.eligible.length) {
      this.errors.push(`no candidate is left to place instances on (candidates: ${all.map((c) => c.name).join(", ") || "none"}; draining: ${[...this.draining].join(", ") || "none"})`);
    }
    this.rankAll();
    this.setBounds(Math.max(0, input.tolerance ?? 0));
  }

  /** Unique names, integer weights, symmetric anti-affinity. */
  private checkInstances(): void {
    if (this.byName.size !== this.insts.length) this.errors.push("instance names in a group must be unique");
    for (const i of this.insts) {
      if (i.weight !== undefined && !(Number.isInteger(i.weight) && i.weight >= 1)) this.errors.push(`${i.name}: weight must be a positive integer (got ${i.weight})`);
    }
    for (const i of this.insts) this.anti.set(i.name, new Set());
    for (const i of this.insts) {
      for (const j of i.antiAffinity ?? []) {
        if (j === i.name) continue;
        if (!this.byName.has(j)) {
          this.warnings.push(`${i.name}: anti-affinity names "${j}", which is not in the group (ignored)`);
          continue;
        }
        this.anti.get(i.name)!.add(j);
        this.anti.get(j)!.add(i.name);
      }
    }
  }

  private rankAll(): void {
    for (const i of this.insts) {
      const sc = new Map(this.eligible.map((c) => [c.name, hrwScore(i.name, c.name, c.weight ?? 1)]));
      const pref = this.eligible.map((c) => c.name).sort((a, b) => sc.get(b)! - sc.get(a)! || cmp(a, b));
      this.scores.set(i.name, sc);
      this.prefs.set(i.name, pref);
      this.ranks.set(i.name, new Map(pref.map((c, k) => [c, k])));
    }
  }

  /** Shares and bounds over everything counted on eligible candidates (pins there included). */
  private setBounds(eps: number): void {
    const Wc = this.eligible.reduce((s, c) => s + (c.weight ?? 1), 0);
    const counted = (i: PolicyInstance) => {
      if (!i.pin) return true;
      if (i.pin.startsWith("@")) return (this.groups[i.pin.slice(1)] ?? []).some((m) => this.cw.has(m));
      return this.cw.has(i.pin);
    };
    const T = this.insts.filter(counted).reduce((s, i) => s + this.weight(i.name), 0);
    for (const c of this.eligible) {
      const share = Wc > 0 ? (T * (c.weight ?? 1)) / Wc : 0;
      this.bounds[c.name] = { share, lower: Math.floor(share * (1 - eps) + 1e-9), upper: Math.max(1, Math.ceil(share * (1 + eps) - 1e-9)) };
    }
  }

  weight(i: string): number {
    const x = this.byName.get(i)?.weight ?? 1;
    return Number.isInteger(x) && x >= 1 ? x : 1;
  }
  /** The eligible candidates in the instance's order of preference. */
  preference(i: string): string[] {
    return this.prefs.get(i)!;
  }
  rank(i: string, c: string): number {
    return this.ranks.get(i)!.get(c) ?? Infinity;
  }
  score(i: string, c: string): number {
    return this.scores.get(i)!.get(c) ?? 0;
  }
}

/** Where each instance goes so far, the candidate it counts on, the load that makes, and why it moves. */
class Assignment {
  /** The target: a member/remote, or "@group". */
  readonly target = new Map<string, string>();
  /** The member/remote it is counted on (for loads and anti-affinity); undefined for a "@group" the cluster picks in. */
  readonly on = new Map<string, string | undefined>();
  readonly load: Map<string, number>;
  readonly why = new Map<string, string>();

  constructor(private readonly p: Problem) {
    this.load = new Map(p.eligible.map((c) => [c.name, 0]));
  }

  put(i: string, target: string, member: string | undefined): void {
    this.target.set(i, target);
    this.on.set(i, member);
    if (member !== undefined && this.load.has(member)) this.load.set(member, this.load.get(member)! + this.p.weight(i));
  }
  unput(i: string): void {
    const m = this.on.get(i);
    if (m !== undefined && this.load.has(m)) this.load.set(m, this.load.get(m)! - this.p.weight(i));
    this.target.delete(i);
    this.on.delete(i);
  }
  /** The instances it must not share c with that are on c. */
  rivalsOn(i: string, c: string): string[] {
    return [...this.p.anti.get(i)!].filter((j) => this.on.get(j) === c);
  }
  conflict(i: string, c: string): boolean {
    return this.rivalsOn(i, c).length > 0;
  }
  /** Within c's upper bound with i added. */
  fits(i: string, c: string): boolean {
    return this.load.get(c)! + this.p.weight(i) <= this.p.bounds[c].upper;
  }
  /** c's load per unit of its weight with i added (for "least loaded"). */
  relativeLoad(i: string, c: string): number {
    return (this.load.get(c)! + this.p.weight(i)) / this.p.cw.get(c)!;
  }
}

/** Phase 1: pins always win over spreading; a pin to a draining place is an error. */
function placePins(p: Problem, a: Assignment): void {
  for (const i of p.insts) {
    if (!i.pin) continue;
    if (i.pin.startsWith("@")) placeGroupPin(p, a, i.name, i.pin);
    else {
      const pin = i.pin;
      if (p.draining.has(pin)) p.errors.push(`${i.name}: pinned to ${pin}, which is draining: unpin it or stop draining ${pin}`);
      a.put(i.name, pin, pin);
      if (p.current[i.name] !== undefined && p.current[i.name] !== pin) a.why.set(i.name, `pinned to ${pin}`);
    }
  }
}

/** A pin to "@group": any member of the cluster group; chosen here when the cluster might choose a draining one. */
function placeGroupPin(p: Problem, a: Assignment, i: string, pin: string): void {
  const members = p.groups[pin.slice(1)];
  if (!members) {
    p.errors.push(`${i}: pinned to cluster group "${pin.slice(1)}", which does not exist (groups: ${Object.keys(p.groups).join(", ") || "none"})`);
    return a.put(i, pin, undefined);
  }
  const usable = members.filter((m) => !p.draining.has(m));
  if (!usable.length) {
    p.errors.push(`${i}: pinned to cluster group "${pin.slice(1)}", whose members (${members.join(", ")}) are all draining`);
    return a.put(i, pin, undefined);
  }
  const cur = p.current[i];
  const someDraining = members.some((m) => p.draining.has(m));
  if (cur !== undefined && usable.includes(cur)) return a.put(i, someDraining ? cur : pin, cur);
  if (!someDraining && cur === undefined) return a.put(i, pin, undefined); // new: the cluster picks the least loaded member of the group
  // The cluster would pick any member of the group, draining ones included: choose here.
  const order = ranking(
    i,
    usable.map((m) => ({ name: m, weight: p.cw.get(m) ?? 1 })),
  );
  const pick = order.find((m) => !a.load.has(m) || a.fits(i, m)) ?? order[0];
  a.put(i, pick, pick);
  a.why.set(i, cur !== undefined && p.draining.has(cur) ? `drain ${cur} (pinned to ${pin})` : `pinned to ${pin}`);
}

/** Phase 2: stay where allowed. Under contention the instances that rank their place highest stay. */
function stayWhereAllowed(p: Problem, a: Assignment, free: string[]): void {
  const cur = (i: string) => p.current[i]!;
  const stayers = free.filter((i) => p.current[i] !== undefined && p.cw.has(cur(i))).sort((x, y) => p.rank(x, cur(x)) - p.rank(y, cur(y)) || p.score(y, cur(y)) - p.score(x, cur(x)) || cmp(x, y));
  for (const i of stayers) {
    const c = cur(i);
    if (a.conflict(i, c)) a.why.set(i, `anti-affinity with ${a.rivalsOn(i, c).join(", ")} on ${c}`);
    else if (!a.fits(i, c)) a.why.set(i, `${c} is over its share (${p.bounds[c].upper})`);
    else a.put(i, c, c);
  }
  for (const i of free) {
    const c = p.current[i];
    if (c === undefined || a.target.has(i) || a.why.has(i)) continue;
    a.why.set(i, p.draining.has(c) ? `drain ${c}` : `${c} is not a candidate`);
  }
}

/** Phase 3: place the rest by ranking, most constrained first. */
function placeRest(p: Problem, a: Assignment, free: string[]): void {
  const rest = free.filter((i) => !a.target.has(i)).sort((x, y) => p.anti.get(y)!.size - p.anti.get(x)!.size || cmp(x, y));
  for (const i of rest) {
    const c = firstChoice(p, a, i);
    if (c !== undefined) a.put(i, c, c);
  }
}

/** Where a free instance goes: a candidate below its lower bound, else one with room, else the least bad. */
function firstChoice(p: Problem, a: Assignment, i: string): string | undefined {
  const pref = p.preference(i);
  const allowed = (x: string) => !a.conflict(i, x);
  // Candidates below their lower bound first (a new or undrained one): the instances that must
  // move anyway fill them, instead of moving others there later.
  const c = pref.find((x) => a.load.get(x)! + p.weight(i) <= p.bounds[x].lower && allowed(x)) ?? pref.find((x) => a.fits(i, x) && allowed(x));
  if (c !== undefined) return c;
  const ok = pref.filter(allowed);
  const cur = p.current[i];
  // Nowhere within the bounds: stay if possible (so a rerun does not shuffle), else least loaded.
  const over = cur !== undefined && ok.includes(cur) ? cur : [...ok].sort((x, y) => a.relativeLoad(i, x) - a.relativeLoad(i, y) || p.rank(i, x) - p.rank(i, y))[0];
  if (over !== undefined) {
    p.warnings.push(`${i}: no candidate has room within its share; placed on ${over} above it`);
    return over;
  }
  if (!pref.length) return undefined;
  p.errors.push(`${i}: anti-affinity with ${[...p.anti.get(i)!].join(", ")} cannot be met on ${pref.length} candidate(s) (${pref.join(", ")})`);
  return pref[0];
}

/**
 * Phase 4: fill candidates below their lower bound with the instances that rank them highest,
 * preferring instances that move anyway (a free redirect) over ones that would stay.
 */
function fillBelowShare(p: Problem, a: Assignment, free: string[]): void {
  const stuck = new Set<string>();
  const deficit = (c: string) => (a.load.get(c)! - p.bounds[c].lower) / p.cw.get(c)!;
  for (;;) {
    const needy = p.eligible
      .map((c) => c.name)
      .filter((c) => !stuck.has(c) && a.load.get(c)! < p.bounds[c].lower)
      .sort((x, y) => deficit(x) - deficit(y) || cmp(x, y))[0];
    if (needy === undefined) break;
    const i = donorFor(p, a, free, needy);
    if (i === undefined) {
      stuck.add(needy);
      continue;
    }
    a.unput(i);
    a.put(i, needy, needy);
    if (p.current[i] !== undefined && p.current[i] !== needy && !a.why.has(i)) a.why.set(i, `spread: ${needy} is below its share (${p.bounds[needy].lower})`);
  }
  for (const c of stuck) p.warnings.push(`${c} stays below its share (${a.load.get(c)} < ${p.bounds[c].lower}): pins or anti-affinity leave nothing to move there`);
}

/** The instance to move to a candidate below its share: one whose place stays within its own bounds. */
function donorFor(p: Problem, a: Assignment, free: string[], needy: string): string | undefined {
  const movesAnyway = (i: string) => (a.on.get(i) !== p.current[i] ? 0 : 1);
  return free
    .filter((i) => {
      const d = a.on.get(i);
      return d !== undefined && d !== needy && a.load.has(d) && a.load.get(d)! - p.weight(i) >= p.bounds[d].lower && a.fits(i, needy) && !a.conflict(i, needy);
    })
    .sort((x, y) => movesAnyway(x) - movesAnyway(y) || p.rank(x, needy) - p.rank(y, needy) || p.score(y, needy) - p.score(x, needy) || cmp(x, y))[0];
}

/** The moves and creates that get from where the instances are to the assignment, batched. */
function outcome(p: Problem, a: Assignment, input: PolicyInput): PolicyResult {
  const moves: PolicyMove[] = [];
  const creates: PolicyResult["creates"] = [];
  for (const i of p.insts) {
    const to = a.target.get(i.name);
    if (to === undefined) continue;
    const from = p.current[i.name];
    if (from === undefined) {
      creates.push({ instance: i.name, to });
      continue;
    }
    const same = to === from || (to.startsWith("@") && (p.groups[to.slice(1)] ?? []).includes(from));
    if (!same) moves.push({ instance: i.name, from, to, batch: 0, why: a.why.get(i.name) ?? "placement" });
  }
  // Off draining places first, then the rest.
  moves.sort((x, y) => Number(p.draining.has(y.from)) - Number(p.draining.has(x.from)) || cmp(x.from, y.from) || cmp(x.instance, y.instance));
  const batches = batch(moves, input);
  return {
    assignment: Object.fromEntries(a.target),
    placedOn: Object.fromEntries(p.insts.map((i) => [i.name, a.on.get(i.name)])),
    load: Object.fromEntries(a.load),
    bounds: p.bounds,
    moves,
    creates,
    batches,
    warnings: p.warnings,
    errors: p.errors,
  };
}

export function place(input: PolicyInput): PolicyResult {
  const p = new Problem(input);
  const a = new Assignment(p);
  placePins(p, a);
  const free = p.insts.filter((i) => !i.pin).map((i) => i.name);
  stayWhereAllowed(p, a, free);
  placeRest(p, a, free);
  fillBelowShare(p, a, free);
  return outcome(p, a, input);
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
