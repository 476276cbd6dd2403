/**
 * An in-memory world of LXD servers for the protocol model (test/unit/protocol-model.test.ts):
 * copies of one instance with their marks, power and data, and a MoveIo over them that injects
 * one fault where it is told (a crash before a request or at a step boundary, a lost response,
 * a transfer cut short, a server that stops answering). The provider's own executor and settle
 * run against it unchanged.
 *
 * Data is a version number: the copy that serves (runs, and is not a copy in flight) writes a new
 * version after every request; a copy is current when it holds the latest version and complete
 * when its transfer finished. The invariants of docs/protocol.md are checked at every request:
 *   I1 some copy is complete and current;
 *   I2 at most one copy serves (LXD's own live handover aside: see below);
 *   I3 a copy is started or promoted (its incoming mark cleared) only when complete and current;
 *   I2 also: nothing starts while a silent server holds a copy that could serve (committed, or
 *      marked complete);
 * and, by the test, I4 on the decisions (over every state seen, with any server silent) and I5
 * after the last run.
 */
import { LxdApiError, TimeoutError } from "../../provider/lxd/errors";
import type { MoveIo, ServerStep, TransferRequest } from "../../provider/io";
import { COMPLETE_KEY, INCOMING_KEY, LEASE_KEY, MARKER_KEY, MOVE_KEY, OUTGOING_KEY, parseLease, parseMove, placeKey, type Lease, type Place } from "../../provider/marks";
import type { Copy } from "../../provider/protocol";

export const REMOTES = ["s1", "s2", "c"];

export interface MCopy {
  place: Place;
  member: string;
  pool: string;
  status: "Running" | "Stopped" | "Frozen";
  config: Record<string, string>;
  /** Data version and whether the whole rootfs is there. */
  version: number;
  complete: boolean;
  etag: number;
  /** A live copy LXD started at the end of a live transfer. */
  liveCopy?: boolean;
}

export class World {
  copies = new Map<string, MCopy>();
  latest = 1;
  clock = 1_000_000;
  /** Runs whose process is alive (their leases hold). */
  alive = new Set<string>();
  /** How LXD leaves the source of a live transfer: stopped (CRIU) or resumed (newer VMs). */
  liveSource: "stopped" | "resumed" = "resumed";
  clone(): World {
    const w = new World();
    for (const [k, c] of this.copies) w.copies.set(k, { ...c, place: { ...c.place }, config: { ...c.config } });
    w.latest = this.latest;
    w.clock = this.clock;
    w.alive = new Set(this.alive);
    w.liveSource = this.liveSource;
    return w;
  }
  /** A canonical description of the state (move IDs and leases reduced to their role), for counting states. */
  key(): string {
    const ids = new Map<string, string>();
    const sym = (v: string) => {
      if (!ids.has(v)) ids.set(v, `m${ids.size}`);
      return ids.get(v)!;
    };
    return [...this.copies.values()]
      .sort((a, b) => placeKey(a.place).localeCompare(placeKey(b.place)))
      .map((c) => {
        const m = (k: string) => (c.config[k] ? sym(c.config[k]) : "-");
        const lease = parseLease(c.config[LEASE_KEY]);
        const l = !lease ? "-" : lease === "invalid" ? "?" : this.alive.has(lease.run) ? "L" : "l";
        return `${placeKey(c.place)}@${c.member}:${c.status[0]}:${c.complete ? "C" : "p"}${c.version === this.latest ? "+" : "-"}:i${m(INCOMING_KEY)}o${m(OUTGOING_KEY)}c${m(COMPLETE_KEY)}r${c.config[MOVE_KEY] ? "R" : "-"}${l}`;
      })
      .join(" ");
  }
}

/** Process death: every later request of the run fails at once and changes nothing. */
export class ModelCrash extends Error {
  constructor() {
    super("model: the provider process died");
  }
}

export interface Faults {
  /** Crash before mutating request #k of the run (0-based). */
  crashAtCall?: number;
  /** Crash at step boundary #k of the run (0-based, in the order reached). */
  crashAtBoundary?: number;
  /** Request #k's response is lost, after it took effect (applied) or before; with `thenSilent`, its server stops answering right after. */
  lostAtCall?: { k: number; applied: boolean; thenSilent?: boolean };
  /** Transfer request #k is cut short: a partial copy stays; its target may stay silent for the rest of the run. */
  cutTransfer?: { k: number; targetSilent: boolean };
  /** From mutating request #k on, this remote does not answer (its daemon frozen). */
  silentFrom?: { k: number; remote: string };
  /** These remotes do not answer during the whole run. */
  silent?: string[];
}

export interface Violation {
  invariant: string;
  detail: string;
}

export class ModelIo implements MoveIo {
  calls = 0;
  transfers = 0;
  boundaries: string[] = [];
  crashed = false;
  private silentNow = new Set<string>();
  private last?: string;
  private silentAfter?: string;
  /** Every state seen (World.key) and every transition between two of them. */
  states = new Map<string, World>();
  transitions = new Set<string>();
  constructor(
    readonly world: World,
    readonly run: string,
    readonly faults: Faults = {},
    readonly violations: Violation[] = [],
    readonly id = "0f5c2a8e-aaaa-4bbb-8ccc-ddddeeeeffff",
  ) {
    world.alive.add(run);
    for (const r of faults.silent ?? []) this.silentNow.add(r);
    this.last = world.key();
    this.states.set(this.last, world.clone());
  }

  /** The run ended (normally or not): its process is gone, its lease with it. */
  end(): void {
    this.world.alive.delete(this.run);
  }

  private violate(invariant: string, detail: string): void {
    this.violations.push({ invariant, detail: `${detail} [state: ${this.world.key()}]` });
  }

  private crash(): never {
    this.crashed = true;
    this.end();
    throw new ModelCrash();
  }

  private isSilent(remote: string): boolean {
    const f = this.faults.silentFrom;
    return this.silentNow.has(remote) || (!!f && f.remote === remote && this.calls > f.k);
  }

  private noAnswer(remote: string): never {
    throw new TimeoutError(`model: ${remote} does not answer`, { remote });
  }

  /** Enter a request: returns whether its response is to be lost after it takes effect. */
  private enter(remote: string, mutating: boolean): { lostAfter: boolean } {
    if (this.crashed) throw new ModelCrash();
    if (!mutating) {
      if (this.isSilent(remote)) this.noAnswer(remote);
      return { lostAfter: false };
    }
    const k = this.calls++;
    if (this.faults.crashAtCall === k) this.crash();
    if (this.isSilent(remote)) this.noAnswer(remote);
    const lost = this.faults.lostAtCall;
    if (lost && lost.k === k) {
      if (lost.thenSilent) this.silentAfter = remote;
      if (!lost.applied) this.noAnswer(remote);
      return { lostAfter: true };
    }
    return { lostAfter: false };
  }

  /** After a mutation took effect: the serving copy writes, invariants are checked, the state recorded. */
  private after(remote: string, lostAfter: boolean): void {
    this.write();
    this.checkState();
    const now = this.world.key();
    if (this.last !== undefined) this.transitions.add(`${this.last} => ${now}`);
    this.last = now;
    if (!this.states.has(now)) this.states.set(now, this.world.clone());
    if (lostAfter) {
      if (this.silentAfter) this.silentNow.add(this.silentAfter);
      this.noAnswer(remote);
    }
  }

  private serving(): MCopy[] {
    const all = [...this.world.copies.values()];
    return all.filter((c) => {
      // A copy in flight does not serve, except the live copy LXD started: it serves at once.
      if (c.status !== "Running" || (c.config[INCOMING_KEY] && !c.liveCopy)) return false;
      // LXD's live handover: the source it resumed is a copy to LXD while the live copy runs.
      const m = c.config[OUTGOING_KEY];
      return !(m && !c.config[INCOMING_KEY] && all.some((x) => x.config[INCOMING_KEY] === m && x.status === "Running"));
    });
  }

  private write(): void {
    const s = this.serving();
    if (s.length === 1) s[0].version = ++this.world.latest;
  }

  private checkState(): void {
    const all = [...this.world.copies.values()];
    if (!all.some((c) => c.complete && c.version === this.world.latest)) this.violate("I1", "no complete, current copy exists");
    const s = this.serving();
    if (s.length > 1) this.violate("I2", `two copies serve: ${s.map((c) => placeKey(c.place)).join(", ")}`);
    for (const c of all) if (c.status === "Running" && c.config[INCOMING_KEY] && !c.liveCopy) this.violate("I2", `copy in flight ${placeKey(c.place)} runs`);
  }

  private find(p: Place): MCopy | undefined {
    return this.world.copies.get(placeKey(p));
  }
  private must(p: Place): MCopy {
    const c = this.find(p);
    if (!c) throw new LxdApiError(`model: ${placeKey(p)}: Instance not found`, { remote: p.remote, status: 404 });
    return c;
  }

  view(c: MCopy): Copy {
    const lease = parseLease(c.config[LEASE_KEY]);
    return {
      place: { ...c.place },
      member: c.member,
      status: c.status,
      pool: c.pool,
      incoming: c.config[INCOMING_KEY] || undefined,
      outgoing: c.config[OUTGOING_KEY] || undefined,
      complete: c.config[COMPLETE_KEY] || undefined,
      move: parseMove(c.config[MOVE_KEY]),
      lease,
      leaseHolds: lease && lease !== "invalid" ? this.leaseHolds(lease) : false,
      etag: String(c.etag),
      raw: { pool: c.pool, member: c.member },
    };
  }

  now(): number {
    return ++this.world.clock;
  }
  async sleep(ms: number): Promise<void> {
    if (this.crashed) throw new ModelCrash();
    this.world.clock += ms;
  }
  every(): () => Promise<void> {
    return async () => undefined;
  }
  remotes(): string[] {
    return REMOTES;
  }
  knows(remote: string): boolean {
    return REMOTES.includes(remote);
  }
  holder(): { host?: string } {
    return { host: "model" };
  }
  leaseHolds(l: Lease): boolean {
    return this.world.alive.has(l.run) && l.until > this.world.clock;
  }

  async get(p: Place, id: string): Promise<Copy | undefined> {
    this.enter(p.remote, false);
    const c = this.find(p);
    return c && c.config[MARKER_KEY] === id ? this.view(c) : undefined;
  }
  async list(remote: string, id: string): Promise<Copy[]> {
    this.enter(remote, false);
    return [...this.world.copies.values()].filter((c) => c.place.remote === remote && c.config[MARKER_KEY] === id).map((c) => this.view(c));
  }
  async settleTransfers(p: Place): Promise<void> {
    this.enter(p.remote, false);
  }

  async patch(p: Place, set: Record<string, string>, etag?: string): Promise<void> {
    const { lostAfter } = this.enter(p.remote, true);
    const c = this.must(p);
    if (etag !== undefined && etag !== String(c.etag)) throw new LxdApiError(`model: ETag doesn't match`, { remote: p.remote, status: 412 });
    if (c.config[INCOMING_KEY] && set[INCOMING_KEY] === "") {
      if (!(c.complete && c.version === this.world.latest)) this.violate("I3", `promoted ${placeKey(p)}, which is not complete and current`);
    }
    for (const [k, v] of Object.entries(set)) {
      if (v === "") delete c.config[k];
      else c.config[k] = v;
    }
    if (!c.config[INCOMING_KEY]) c.liveCopy = undefined;
    c.etag++;
    this.after(p.remote, lostAfter);
  }

  async stop(p: Place): Promise<void> {
    const { lostAfter } = this.enter(p.remote, true);
    const c = this.find(p);
    if (c) c.status = "Stopped";
    this.after(p.remote, lostAfter);
  }

  async start(p: Place): Promise<void> {
    const { lostAfter } = this.enter(p.remote, true);
    const c = this.must(p);
    if (c.status !== "Running") {
      if (!c.complete) throw new LxdApiError(`model: ${placeKey(p)}: Unable to resolve container rootfs`, { remote: p.remote, status: 500 });
      if (c.version !== this.world.latest) this.violate("I3", `started ${placeKey(p)}, which is not current`);
      // Whatever a silent server holds must not be able to serve beside it: committed, or marked complete (promotable).
      const others = [...this.world.copies.values()].filter((x) => x !== c && this.isSilent(x.place.remote) && (!x.config[INCOMING_KEY] ? !x.config[OUTGOING_KEY] : !!x.config[COMPLETE_KEY]));
      if (others.length) this.violate("I2", `started ${placeKey(p)} while ${others.map((x) => placeKey(x.place)).join(", ")}, which could serve, did not answer`);
      c.status = "Running";
    }
    this.after(p.remote, lostAfter);
  }

  async thaw(p: Place): Promise<void> {
    const { lostAfter } = this.enter(p.remote, true);
    const c = this.find(p);
    if (c && c.status === "Frozen") c.status = "Running";
    this.after(p.remote, lostAfter);
  }

  async delete(p: Place): Promise<void> {
    const { lostAfter } = this.enter(p.remote, true);
    const c = this.find(p);
    if (c) {
      if (c.status === "Running") throw new LxdApiError(`model: ${placeKey(p)}: Instance is running`, { remote: p.remote, status: 400 });
      this.world.copies.delete(placeKey(p));
    }
    this.after(p.remote, lostAfter);
  }

  async rename(p: Place, to: string): Promise<void> {
    const { lostAfter } = this.enter(p.remote, true);
    const c = this.must(p);
    if (c.status === "Running") throw new LxdApiError("model: Renaming of running container not allowed", { remote: p.remote, status: 400 });
    const np = { ...p, name: to };
    if (this.find(np)) throw new LxdApiError(`model: ${placeKey(np)}: already exists`, { remote: p.remote, status: 409 });
    this.world.copies.delete(placeKey(p));
    c.place = np;
    this.world.copies.set(placeKey(np), c);
    this.after(p.remote, lostAfter);
  }

  async transfer(req: TransferRequest): Promise<void> {
    const k = this.transfers++;
    const { lostAfter } = this.enter(req.to.remote, true);
    if (this.isSilent(req.from.remote)) this.noAnswer(req.from.remote);
    const src = this.must(req.from);
    const existing = this.find(req.to);
    if (req.refresh ? !existing : existing) throw new LxdApiError(`model: ${placeKey(req.to)}: ${req.refresh ? "Instance not found" : "already exists"}`, { remote: req.to.remote, status: 409 });
    const cut = this.faults.cutTransfer?.k === k ? this.faults.cutTransfer : undefined;
    const c: MCopy = existing ?? {
      place: { ...req.to },
      member: req.member ?? (req.to.remote === "c" ? "m1" : ""),
      pool: src.pool,
      status: "Stopped",
      // A copy inside one server gets the source's config merged in (LXD's local copy), marks and all.
      config: { ...(req.mode === "local" ? src.config : {}), [MARKER_KEY]: req.id, ...req.marks },
      version: 0,
      complete: false,
      etag: 1,
    };
    if (!existing) this.world.copies.set(placeKey(req.to), c);
    c.version = src.version;
    c.complete = !cut;
    if (req.live && !cut) {
      c.status = "Running";
      c.liveCopy = true;
      if (this.world.liveSource === "stopped") src.status = "Stopped";
    }
    c.etag++;
    if (cut) {
      if (cut.targetSilent) this.silentNow.add(req.to.remote);
      this.after(req.to.remote, false);
      this.noAnswer(req.to.remote);
    }
    this.after(req.to.remote, lostAfter);
  }

  async serverStep(p: Place, step: ServerStep, live: boolean): Promise<void> {
    const { lostAfter } = this.enter(p.remote, true);
    const c = this.must(p);
    if (c.status === "Running" && !live) throw new LxdApiError("model: Instance must be stopped to move statelessly", { remote: p.remote, status: 400 });
    if (step.kind === "pool") c.pool = step.pool;
    if (step.kind === "member") c.member = step.member;
    if (step.kind === "project" || step.kind === "rename") {
      const np = step.kind === "project" ? { ...p, project: step.project } : { ...p, name: step.name };
      if (this.find(np)) throw new LxdApiError(`model: ${placeKey(np)}: already exists`, { remote: p.remote, status: 409 });
      this.world.copies.delete(placeKey(p));
      c.place = np;
      this.world.copies.set(placeKey(np), c);
    }
    this.after(p.remote, lostAfter);
  }

  async applyDeclared(p: Place): Promise<boolean> {
    this.enter(p.remote, false);
    return false;
  }

  async boundary(step: string): Promise<void> {
    if (this.crashed) throw new ModelCrash();
    const k = this.boundaries.length;
    this.boundaries.push(step);
    if (this.faults.crashAtBoundary === k) this.crash();
  }
}
