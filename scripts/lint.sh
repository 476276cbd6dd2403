#!/usr/bin/env bash
# Static checks, no LXD and no root, in seconds: types (tests included), eslint, prettier's
# layout, shellcheck for the scripts. `npm run format` rewrites the layout prettier wants.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "lint: types"
npx tsc -p tsconfig.lint.json
echo "lint: eslint"
npx eslint --max-warnings 0 .
echo "lint: prettier"
npx prettier --check --log-level warn "**/*.{ts,js,mjs}"
echo "lint: shellcheck"
if ! command -v shellcheck >/dev/null; then
  echo "lint: shellcheck is missing: npm run setup installs it (Debian's package, as root)" >&2
  exit 1
fi
shellcheck scripts/*.sh scripts/sandbox/*.sh policy/run .ci/run
echo "lint: clean"
