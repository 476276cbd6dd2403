#!/usr/bin/env bash
# `npm run bench`: build, make sure the sandbox runs, run the benchmark against it, leave it up.
# Holds the sandbox lock shared for the whole run (a destructive fault suite takes it
# exclusively), so the estate cannot be torn down under a measurement. Results are printed and
# written to .sandbox/bench/results.json, the downtime chart to .sandbox/bench/downtime.svg; the
# provider's own log goes to .sandbox/bench/provider.log. FILEs are relative to the checkout.
#
#   BENCH_ONLY=move,downtime,relay,read,drain   parts to run (default: all)
#   BENCH_BIG_MB=400                            size of the data file in the "big" instances
#   npm run bench -- --json FILE --chart FILE   also write the figures (JSON) and the downtime chart (SVG)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
cd "$ROOT"
npx tsc -p .
# Options are checked before the sandbox is started: a typo should not cost a sandbox start.
node -e '
const { benchArgs, USAGE } = require("./bin/bench/report");
let a;
try { a = benchArgs(process.argv.slice(1)); } catch (e) { console.error(`bench: ${e.message}\n${USAGE}`); process.exit(2); }
if (a.help) { console.log(USAGE); process.exit(3); }
' -- "$@" || { rc=$?; [ "$rc" = 3 ] && exit 0; exit "$rc"; }
exec 9>"$ROOT/.sandbox-lock"
if ! flock -s -n 9; then
  echo "bench: waiting for the sandbox lock ($ROOT/.sandbox-lock)" >&2
  flock -s -w 3600 9 || { echo "bench: sandbox still locked after 1h" >&2; exit 1; }
fi
# The lock stays with this shell: children get fd 9 closed, so nothing they start (a daemon
# restarted by `up`) can keep holding it after the benchmark ends.
bash scripts/sandbox.sh up 9>&-
node bin/bench/run.js "$@" 9>&-
