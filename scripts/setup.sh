#!/usr/bin/env bash
# Make this checkout ready to run: Debian packages for LXD, the Pulumi engine, the dynamic
# provider launcher, and the compiled TypeScript. Run by `npm run setup` and by the test and
# demo scripts; cheap and quiet when everything is already there.
#
# The Pulumi engine is not shipped by any package registry this project can reach, so unless a
# `pulumi` and a `pulumi-language-nodejs` are already installed (on PATH outside .tools/), it
# is built from source with Go, from the pinned wrapper modules in tools/, into .tools/bin/:
#   .tools/bin/pulumi                           the CLI (tools/pulumi)
#   .tools/bin/pulumi-language-nodejs           the Node.js language host (tools/pulumi-language-nodejs)
#   .tools/bin/pulumi-resource-pulumi-nodejs    launcher of @pulumi/pulumi's dynamic provider host
# A stamp (hash of the wrapper modules' go.mod/go.sum and the Go version) skips the build when
# nothing changed. Use the results with `. scripts/env.sh` (puts .tools/bin on PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

PULUMI_VERSION="v3.274.1"          # keep in step with tools/pulumi/go.mod
LANGUAGE_HOST_VERSION="v3.68.0"    # keep in step with tools/pulumi-language-nodejs/go.mod
TOOLS="$ROOT/.tools"
TOOLS_BIN="$TOOLS/bin"

# (a) System packages (LXD and its helpers), when the script for them exists.
if [ -f "$ROOT/scripts/install-packages.sh" ]; then
  bash "$ROOT/scripts/install-packages.sh"
fi

mkdir -p "$TOOLS_BIN"
# One setup at a time (test scripts may start it concurrently): the second waits, then finds
# everything up to date.
exec 9>"$TOOLS/setup.lock"
flock 9

# (a2) A supported Node.js LTS in .tools (first on PATH after `. scripts/env.sh`).
bash "$ROOT/scripts/install-node.sh"

# Prints the path of command $1 found on PATH, leaving out .tools/bin; fails if there is none.
external_command() {
  local dir out="" IFS=:
  for dir in $PATH; do
    [ -n "$dir" ] || continue
    [ "$(cd "$dir" 2>/dev/null && pwd -P)" = "$TOOLS_BIN" ] && continue
    if [ -x "$dir/$1" ] && [ ! -d "$dir/$1" ]; then
      out="$dir/$1"
      break
    fi
  done
  [ -n "$out" ] && printf '%s\n' "$out"
}

# (b) The engine.
if external_command pulumi >/dev/null && external_command pulumi-language-nodejs >/dev/null; then
  : # A normal installation of Pulumi: use it, build nothing.
else
  GO="$(command -v go || true)"
  if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
  if [ -z "$GO" ]; then
    echo "setup: Pulumi is not installed and Go (needed to build it) was not found;" >&2
    echo "setup: install Go >= 1.26 (or Pulumi ${PULUMI_VERSION}) and run npm run setup again" >&2
    exit 1
  fi
  # Never let Go download a toolchain; build exactly what go.mod/go.sum pin.
  export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"
  stamp_file="$TOOLS/engine.stamp"
  stamp="$( {
    echo "$PULUMI_VERSION $LANGUAGE_HOST_VERSION"
    cat tools/pulumi/go.mod tools/pulumi/go.sum \
        tools/pulumi-language-nodejs/go.mod tools/pulumi-language-nodejs/go.sum
    "$GO" version
  } | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$TOOLS_BIN/pulumi" ] || [ ! -x "$TOOLS_BIN/pulumi-language-nodejs" ] \
     || [ "$(cat "$stamp_file" 2>/dev/null || true)" != "$stamp" ]; then
    echo "setup: building the Pulumi engine into .tools/bin (first time only; several minutes)" >&2
    start=$SECONDS
    rm -f "$stamp_file"
    # The version both binaries print (`pulumi version`) is set by the linker.
    version_var="github.com/pulumi/pulumi/sdk/v3/go/common/version.Version"
    (cd tools/pulumi && "$GO" build -trimpath -ldflags "-s -w -X ${version_var}=${PULUMI_VERSION}" \
      -o "$TOOLS_BIN/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    (cd tools/pulumi-language-nodejs && "$GO" build -trimpath \
      -ldflags "-s -w -X ${version_var}=${LANGUAGE_HOST_VERSION}" \
      -o "$TOOLS_BIN/pulumi-language-nodejs.tmp" \
      github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs)
    mv -f "$TOOLS_BIN/pulumi.tmp" "$TOOLS_BIN/pulumi"
    mv -f "$TOOLS_BIN/pulumi-language-nodejs.tmp" "$TOOLS_BIN/pulumi-language-nodejs"
    echo "$stamp" >"$stamp_file"
    echo "setup: engine built in $((SECONDS - start))s: $("$TOOLS_BIN/pulumi" version)" >&2
  fi
fi

# (c) The launcher the engine runs for dynamic providers (plugin "pulumi-nodejs"). It runs the
# repo's own copy of @pulumi/pulumi, whatever the working directory, so that there is one copy.
if [ ! -f "$ROOT/node_modules/@pulumi/pulumi/package.json" ]; then
  echo "setup: node_modules/@pulumi/pulumi is missing: run npm ci (or npm install) first" >&2
  exit 1
fi
dynamic_provider="$(cd "$ROOT" && node -e \
  'console.log(require.resolve("@pulumi/pulumi/cmd/dynamic-provider", { paths: [process.cwd()] }))')"
launcher="$TOOLS_BIN/pulumi-resource-pulumi-nodejs"
launcher_text="#!/bin/sh
# Written by scripts/setup.sh: the Pulumi engine runs this for dynamic providers.
exec node \"$dynamic_provider\" \"\$@\""
if [ ! -x "$launcher" ] || [ "$(cat "$launcher")" != "$launcher_text" ]; then
  printf '%s\n' "$launcher_text" >"$launcher.tmp"
  chmod +x "$launcher.tmp"
  mv -f "$launcher.tmp" "$launcher"
fi

# (d) The compiled TypeScript (bin/), when it is missing or older than a source file.
sources="$(find provider sdk bench policy gitops -name '*.ts' -type f 2>/dev/null | head -n 1 || true)"
if [ -n "$sources" ]; then
  tsc_stamp="$ROOT/bin/.tsc-stamp"
  if [ ! -f "$tsc_stamp" ] \
     || [ -n "$(find provider sdk bench policy gitops tsconfig.json package-lock.json -newer "$tsc_stamp" \
                 \( -name '*.ts' -o -name '*.json' \) -type f 2>/dev/null | head -n 1 || true)" ]; then
    npx --no-install tsc -p tsconfig.json
    mkdir -p "$ROOT/bin"
    touch "$tsc_stamp"
  fi
fi
