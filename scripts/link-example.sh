#!/usr/bin/env bash
# Make an example program runnable from this checkout, without `npm install` in it:
#
#   scripts/link-example.sh examples/quickstart
#
# creates, in <dir>/node_modules:
#   lxd-placement   -> the repository root (the package: bin/sdk, bin/provider)
#   @pulumi/pulumi  -> the repository's node_modules/@pulumi/pulumi
# so the program and the provider it loads share one copy of @pulumi/pulumi. (`npm install`
# in the example would install a second copy next to the program, and resources registered
# through one copy are not seen by the other.) Nothing else is needed: TypeScript programs run
# through the ts-node that @pulumi/pulumi bundles, and `typescript` and `@types/*` resolve
# from the repository's node_modules.
#
# Idempotent: right links are kept, others replaced, a directory left by `npm install` is
# removed. The links are relative, so they survive moving the checkout.
# The package must be built (`npx tsc -p .`, or `npm run setup`) before the program runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

usage() { echo "usage: $0 <example-dir>" >&2; exit 2; }
[ $# -eq 1 ] || usage
[ -f "$1/Pulumi.yaml" ] || { echo "link-example: $1 is not a Pulumi project (no Pulumi.yaml)" >&2; exit 1; }
DIR="$(cd "$1" && pwd -P)"
PULUMI_SDK="$ROOT/node_modules/@pulumi/pulumi"
[ -f "$PULUMI_SDK/package.json" ] || { echo "link-example: $PULUMI_SDK is missing: run npm ci in $ROOT first" >&2; exit 1; }

# link <target> <link path>: make <link path> a symlink to <target>, whatever is there now.
link() {
  local target=$1 at=$2
  if [ -L "$at" ]; then
    [ "$(realpath -m "$at")" = "$target" ] && return 0
    rm -f "$at"
  elif [ -e "$at" ]; then
    rm -rf "$at"
  fi
  mkdir -p "$(dirname "$at")"
  ln -s "$(realpath -m --relative-to="$(dirname "$at")" "$target")" "$at"
}

link "$ROOT" "$DIR/node_modules/lxd-placement"
link "$PULUMI_SDK" "$DIR/node_modules/@pulumi/pulumi"
echo "link-example: $DIR/node_modules -> lxd-placement, @pulumi/pulumi of $ROOT" >&2
