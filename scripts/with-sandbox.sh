#!/usr/bin/env bash
# Run CMD against the LXD sandbox and always take the sandbox down afterwards,
# also when CMD fails or the run is interrupted. Exits with CMD's status.
#
#   scripts/with-sandbox.sh npx jest --selectProjects e2e
set -uo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 CMD [ARG...]" >&2
  exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/env.sh
. "$HERE/env.sh"

cleanup() {
  bash "$HERE/sandbox.sh" down || echo "with-sandbox: sandbox.sh down failed" >&2
}
trap cleanup EXIT
# Turn signals into a normal exit so the EXIT trap runs.
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$HERE/sandbox.sh" up || exit 1
"$@"
