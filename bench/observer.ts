/**
 * Watches instances from outside while something moves them: polls each (remote, name) for its
 * status and reports how long none of them was Running. This is downtime as a user of the
 * instance sees it, independent of what the mover reports about itself; it counts a Frozen
 * container as down (a frozen container runs no process and serves nothing).
 */
import type { Estate } from "../provider/estate";
import { getInstance } from "../provider/lxd/instances";

export interface Watched {
  remote: string;
  name: string;
}

export interface Seen {
  /** Seconds in which no watched instance was Running. */
  unavailableSeconds: number;
  /** Of those, seconds in which one was Frozen or Freezing. */
  frozenSeconds: number;
  /** Polls made, and the mean time between them (the resolution of the figures above). */
  polls: number;
  meanIntervalMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Observer {
  private samples: { t: number; status: string[] }[] = [];
  private stopping = false;
  private loop?: Promise<void>;

  constructor(
    private readonly estate: Estate,
    private readonly watched: Watched[],
    private readonly intervalMs = 200,
  ) {}

  start(): this {
    this.loop = this.run();
    return this;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const t0 = performance.now();
      const status = await Promise.all(
        this.watched.map(async (w) => {
          try {
            return (await getInstance(this.estate.client(w.remote).withTimeout(5_000), w.name))?.instance.status ?? "absent";
          } catch {
            return "unknown";
          }
        }),
      );
      const t1 = performance.now();
      // A poll's answer is as of the middle of its round trip.
      this.samples.push({ t: (t0 + t1) / 2, status });
      const rest = this.intervalMs - (t1 - t0);
      if (rest > 0) await sleep(rest);
    }
  }

  async stop(): Promise<Seen> {
    this.stopping = true;
    await this.loop;
    let down = 0;
    let frozen = 0;
    const isDown = (s: string[]) => !s.includes("Running");
    const isFrozen = (s: string[]) => isDown(s) && s.some((x) => x === "Frozen" || x === "Freezing");
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1];
      const b = this.samples[i];
      const dt = (b.t - a.t) / 1000;
      // Between two polls that disagree, the change happened somewhere in between: split evenly.
      down += (isDown(a.status) ? dt / 2 : 0) + (isDown(b.status) ? dt / 2 : 0);
      frozen += (isFrozen(a.status) ? dt / 2 : 0) + (isFrozen(b.status) ? dt / 2 : 0);
    }
    const n = this.samples.length;
    const span = n > 1 ? this.samples[n - 1].t - this.samples[0].t : 0;
    return { unavailableSeconds: down, frozenSeconds: frozen, polls: n, meanIntervalMs: n > 1 ? span / (n - 1) : 0 };
  }
}

/** Run `fn` while watching; a short tail after it catches a start that lands just after return. */
export async function watch<T>(estate: Estate, watched: Watched[], fn: () => Promise<T>, intervalMs = 200): Promise<{ result: T; seen: Seen }> {
  const o = new Observer(estate, watched, intervalMs).start();
  await sleep(intervalMs);
  let result: T;
  try {
    result = await fn();
    await sleep(intervalMs * 2);
  } catch (e) {
    await o.stop();
    throw e;
  }
  return { result, seen: await o.stop() };
}
