#!/usr/bin/env bash
# Local LXD estate for the e2e and fault tests, kept in .sandbox/ of the checkout.
#
#   scripts/sandbox.sh up       start (or repair) everything; a no-op when all runs
#   scripts/sandbox.sh down     stop everything, leave no daemon, mount or bridge behind
#   scripts/sandbox.sh status   list the daemons; exit 0 only if all run
#   scripts/sandbox.sh daemons  print the daemon list (name role address remote), read only
#
# What `up` gives (LXD 5.0.2 from Debian, started by hand: there is no systemd here),
# the daemons listed in scripts/sandbox/daemons.tsv, which the tests read too:
#   s1       standalone daemon, https://127.0.0.1:8443
#   s2       standalone daemon, https://127.0.0.1:8444
#   cluster  members m1 m2 m3 on https://127.0.0.{3,4,5}:8443, group fast-group = m2 m3
#            (the first member bootstraps the cluster; fast-group is the others)
# On each: dir pools `default` and `fast`, project `staging` (shares default's images
# and profiles), image alias `busybox` (built locally: no image server is reachable),
# and a default profile whose eth0 is bridged to the unmanaged host bridge sbx0.
# Managed LXD networks are avoided on purpose: daemons on one host share the network
# namespace, so a managed bridge on one daemon blocks the same name on another and an
# instance on it could never move between them.
#
# The client side is an lxc config directory, .sandbox/lxc (use it with
# LXD_CONF=.sandbox/lxc or `. scripts/env.sh`), with remotes s1, s2 and cluster, a
# client certificate trusted on every server and the servers' certificates pinned.
#
# This file holds the settings, the daemon list and the dispatch; the functions live
# in scripts/sandbox/, one file per concern: processes.sh (lxd processes and what
# dead ones leave), host.sh (bridge, image, certificates), servers.sh (each server's
# configuration, the cluster), client.sh (the lxc config) and commands.sh (up, down,
# status, daemons).
set -Eeuo pipefail
# set -e alone exits without a word; say where. (Only where -e is on: command
# substitutions run without it, and a failure there is handled by the caller.)
trap '[[ $- != *e* ]] || echo "sandbox: error: ${BASH_SOURCE[0]##*/} line $LINENO: \"$BASH_COMMAND\" failed ($?)" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SANDBOX="$ROOT/.sandbox"
CONF="$SANDBOX/lxc"                # client config handed to users
ADMIN_CONF="$SANDBOX/.admin-lxc"   # empty lxc config: admin calls go over each unix socket
IMAGES="$SANDBOX/images"           # busybox image cache, survives `down`
BRIDGE=sbx0
STAMP="$SANDBOX/.configured"

# Bounds, in seconds. Nothing waits without one.
LXC_TIMEOUT=60        # one lxc admin call
READY_TIMEOUT=30      # lxd waitready
ONLINE_TIMEOUT=60     # a restarted member shows ONLINE in `lxc cluster list`
SHUTDOWN_TIMEOUT=20   # lxd shutdown, before SIGKILL
LOCK_TIMEOUT=300      # another up/down holding .sandbox/.lock

log() { echo "sandbox: $*" >&2; }
die() { log "error: $*"; exit 1; }
# SANDBOX_DEBUG=1 shows each step with its time.
debug() { [[ -z ${SANDBOX_DEBUG:-} ]] || log "$(date +%T.%N | cut -c1-12) $*"; }
now() { echo "${EPOCHREALTIME/,/.}"; }

# lxc against one daemon's unix socket, never through the user's remotes.
lx() {
  local d=$1; shift
  LXD_DIR="$SANDBOX/$d" LXD_CONF="$ADMIN_CONF" timeout "$LXC_TIMEOUT" lxc "$@" </dev/null
}
# The same, for the few calls that read stdin (profile edit).
lx_stdin() {
  local d=$1; shift
  LXD_DIR="$SANDBOX/$d" LXD_CONF="$ADMIN_CONF" timeout "$LXC_TIMEOUT" lxc "$@"
}

# A config.yml of its own keeps lxc from printing its first-run banner.
ensure_admin_conf() {
  [[ -s $ADMIN_CONF/config.yml ]] && return 0
  mkdir -p "$ADMIN_CONF"
  printf 'default-remote: local\nremotes:\n  local:\n    addr: unix://\n    public: false\naliases: {}\n' \
    >"$ADMIN_CONF/config.yml"
}

# lxc as a user of the sandbox sees it.
lxc_user() { LXD_CONF="$CONF" timeout "$LXC_TIMEOUT" lxc "$@" </dev/null; }

take_lock() {
  mkdir -p "$SANDBOX"
  exec 9>"$SANDBOX/.lock"
  if ! flock -n 9; then
    log "waiting for another sandbox.sh holding $SANDBOX/.lock"
    flock -w "$LOCK_TIMEOUT" 9 || die "still locked after ${LOCK_TIMEOUT}s"
  fi
}

# ---------------------------------------------------------------- daemons

# The daemons, from daemons.tsv (one row each: name role address remote), the list
# the tests read too. Derived, in the file's order:
#   DAEMONS, STANDALONE, MEMBERS   names (all, role standalone, role member)
#   ADDR[d] ROLE[d] REMOTE_OF[d]   each daemon's address, role and remote
#   REMOTES, REMOTE_DAEMON[r]      the remotes, and each remote's first daemon
#   BOOTSTRAP                      the first member: it bootstraps the cluster, the
#                                  other members join it and form fast-group
DAEMONS_TSV="$ROOT/scripts/sandbox/daemons.tsv"
DAEMONS=() STANDALONE=() MEMBERS=() REMOTES=()
declare -A ADDR=() ROLE=() REMOTE_OF=() REMOTE_DAEMON=()
load_daemons() {
  local name role addr remote extra n=0 at
  [[ -r $DAEMONS_TSV ]] || die "$DAEMONS_TSV is missing"
  while read -r name role addr remote extra || [[ -n $name ]]; do
    n=$((n + 1)) at="$DAEMONS_TSV line $n"
    [[ -z $name || $name == '#'* ]] && continue
    [[ -n $remote && -z $extra ]] || die "$at: want 4 columns: name role address remote"
    [[ $name =~ ^[a-z][a-z0-9-]*$ && $remote =~ ^[a-z][a-z0-9-]*$ ]] ||
      die "$at: names and remotes are lowercase letters, digits and '-'"
    [[ -z ${ROLE[$name]:-} ]] || die "$at: $name is listed twice"
    [[ $addr =~ ^[0-9.]+:[0-9]+$ ]] || die "$at: address $addr is not host:port"
    case $role in
      standalone) STANDALONE+=("$name") ;;
      member) MEMBERS+=("$name") ;;
      *) die "$at: role $role is neither standalone nor member" ;;
    esac
    if [[ -n ${REMOTE_DAEMON[$remote]:-} ]]; then
      # Only the cluster's members share a remote.
      [[ $role == member && ${ROLE[${REMOTE_DAEMON[$remote]}]} == member ]] ||
        die "$at: remote $remote already reaches ${REMOTE_DAEMON[$remote]}"
    else
      [[ $role == standalone || ${#MEMBERS[@]} == 1 ]] ||
        die "$at: the members are one cluster, with one remote"
      REMOTES+=("$remote")
      REMOTE_DAEMON[$remote]=$name
    fi
    DAEMONS+=("$name")
    ADDR[$name]=$addr ROLE[$name]=$role REMOTE_OF[$name]=$remote
  done <"$DAEMONS_TSV"
  ((${#MEMBERS[@]})) || die "$DAEMONS_TSV: no cluster member"
  BOOTSTRAP=${MEMBERS[0]}
}
load_daemons

# ---------------------------------------------------------------- functions

# By concern, in scripts/sandbox/ (each file says what it holds).
# shellcheck source=sandbox/processes.sh
source "$ROOT/scripts/sandbox/processes.sh"
# shellcheck source=sandbox/host.sh
source "$ROOT/scripts/sandbox/host.sh"
# shellcheck source=sandbox/servers.sh
source "$ROOT/scripts/sandbox/servers.sh"
# shellcheck source=sandbox/client.sh
source "$ROOT/scripts/sandbox/client.sh"
# shellcheck source=sandbox/commands.sh
source "$ROOT/scripts/sandbox/commands.sh"

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) rc=0; cmd_status || rc=$?; exit "$rc" ;;
  daemons) cmd_daemons ;;
  *) echo "usage: $0 up|down|status|daemons" >&2; exit 2 ;;
esac
