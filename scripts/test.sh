#!/usr/bin/env bash
# Run jest tiers against a fresh sandbox and the real engine: sets up what is missing, starts the
# sandbox, runs the tests serially (the e2e and fault tiers share one LXD estate), stops the sandbox.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
cd "$ROOT"
bash scripts/setup.sh
result=$(mktemp)
status=0
bash scripts/with-sandbox.sh npx jest --runInBand --forceExit --json --outputFile="$result" "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`);
' "$result" 2>/dev/null || echo "tests: no result file (jest did not finish)"
rm -f "$result"
exit $status
