/** overhead.lxc-query: what the CLI pays per invocation (process start, config, TLS, one GET). */
import { Estate } from "../provider/estate";
import { emptyResult, type PartResult } from "./context";
import { figure, median } from "./report";
import { lxc } from "./shell";

export async function overheadPart(): Promise<PartResult> {
  const out = emptyResult();
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) xs.push((await lxc(["query", "s1:/1.0"], 30_000)).seconds);
  const e = new Estate();
  const ys: number[] = [];
  try {
    for (let i = 0; i < 5; i++) {
      const s = performance.now();
      await e.client("s1").call("GET", "");
      ys.push((performance.now() - s) / 1000);
    }
  } finally {
    await e.close();
  }
  out.figures.push(
    figure("overhead.lxc-query", "s", median(xs), {
      baselineName: "in-process-get",
      baselineDetail: "GET /1.0 by the provider's client, in-process",
      baseline: median(ys),
      samples: 5,
      note: "CLI start-up is inside every lxc figure; engine start-up is not inside the provider's",
    }),
  );
  return out;
}
