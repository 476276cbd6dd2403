#!/usr/bin/env bash
# Install the Debian packages the LXD sandbox and the lint need, and only those missing.
# Quiet (no output, no apt-get update) when everything is already present, so
# it is cheap to call at the start of every CI run.
set -euo pipefail

PACKAGES=(lxd lxd-client criu busybox-static iptables iproute2 openssl shellcheck)

missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg -s also succeeds for removed-but-not-purged packages: check the status line.
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-packages: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi

echo "install-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install-packages: done" >&2
