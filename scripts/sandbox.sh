#!/usr/bin/env bash
# Local LXD estate for the e2e and fault tests, kept in .sandbox/ of the checkout.
#
#   scripts/sandbox.sh up       start (or repair) everything; a no-op when all runs
#   scripts/sandbox.sh down     stop everything, leave no daemon, mount or bridge behind
#   scripts/sandbox.sh status   list the daemons; exit 0 only if all run
#   scripts/sandbox.sh daemons  print the daemon list (name role address remote), read only
#
# What `up` gives (LXD 5.0.2 from Debian, started by hand: there is no systemd here):
#   s1       standalone daemon, https://127.0.0.1:8443
#   s2       standalone daemon, https://127.0.0.1:8444
#   cluster  members m1 m2 m3 on https://127.0.0.{3,4,5}:8443, group fast-group = m2 m3
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
set -Eeuo pipefail
# set -e alone exits without a word; say where. (Only where -e is on: command
# substitutions run without it, and a failure there is handled by the caller.)
trap '[[ $- != *e* ]] || echo "sandbox: error: line $LINENO: \"$BASH_COMMAND\" failed ($?)" >&2' ERR

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

# ---------------------------------------------------------------- processes

daemon_pid() { cat "$SANDBOX/$1/lxd.pid" 2>/dev/null || true; }

# True if $1 is a live (not zombie) lxd process serving LXD_DIR=$2.
is_our_lxd() {
  local pid=$1 dir=$2 state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]] || return 1
  grep -qzxF "LXD_DIR=$dir" "/proc/$pid/environ" 2>/dev/null
}

daemon_alive() { is_our_lxd "$(daemon_pid "$1")" "$SANDBOX/$1"; }

# Every descendant of the given pids, deepest last.
descendants() {
  local -a queue=("$@") out=()
  local p c
  while ((${#queue[@]})); do
    p=${queue[0]}; queue=("${queue[@]:1}")
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do out+=("$c"); queue+=("$c"); done
  done
  echo "${out[@]:-}"
}

# A process in a frozen cgroup (a paused instance: `lxc pause`) takes no signal,
# not even SIGKILL, until thawed; it would hold its netns and veth forever.
thaw_pids() {
  local p cg ctrl path f
  for p in "$@"; do
    cg=$(cat "/proc/$p/cgroup" 2>/dev/null) || continue
    while IFS=: read -r _ ctrl path; do
      [[ $path == / ]] && continue
      if [[ $ctrl == *freezer* ]]; then
        f=/sys/fs/cgroup/freezer$path/freezer.state
        [[ -w $f && $(cat "$f" 2>/dev/null) != THAWED ]] && { echo THAWED >"$f"; } 2>/dev/null || true
      elif [[ -z $ctrl ]]; then
        for f in "/sys/fs/cgroup/unified$path/cgroup.freeze" "/sys/fs/cgroup$path/cgroup.freeze"; do
          [[ -w $f && $(cat "$f" 2>/dev/null) == 1 ]] && { echo 0 >"$f"; } 2>/dev/null || true
        done
      fi
    done <<<"$cg"
  done
}

# SIGTERM, wait up to $1 s, then SIGKILL the rest.
kill_wait() {
  local bound=$1; shift
  local -a pids=() left
  local p i
  for p in "$@"; do [[ $p =~ ^[0-9]+$ ]] && pids+=("$p"); done
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  thaw_pids "${pids[@]}"
  for ((i = 0; i < bound * 10; i++)); do
    left=()
    for p in "${pids[@]}"; do alive_pid "$p" && left+=("$p"); done
    ((${#left[@]})) || return 0
    sleep 0.1
  done
  kill -KILL "${left[@]}" 2>/dev/null || true
}

alive_pid() {
  local s
  s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $s && $s != Z && $s != X ]]
}

# Processes that belong to an LXD_DIR: the daemon(s), container monitors
# ("[lxc monitor] DIR/containers NAME") and everything below them (the containers),
# and helpers started with that LXD_DIR (forkproxy, forkfile, ...).
procs_of_dir() {
  local dir=$1
  local -a found=()
  # shellcheck disable=SC2207
  found=($( {
    grep -lzF "$dir/" /proc/[0-9]*/cmdline 2>/dev/null
    grep -lzxF "LXD_DIR=$dir" /proc/[0-9]*/environ 2>/dev/null
  } | cut -d/ -f3 | sort -un | grep -vx "$$" || true))
  ((${#found[@]})) || return 0
  # shellcheck disable=SC2046 # a list of pids: splitting is wanted
  echo "${found[@]}" $(descendants "${found[@]}")
}

umount_under() {
  local dir=$1 m
  # Deepest first; lazy so a busy mount cannot block us.
  findmnt -rn -o TARGET 2>/dev/null | awk -v d="$dir/" 'index($0, d) == 1' | sort -r |
    while read -r m; do
      umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
}

# Kill whatever lxd (and its containers) listens on our addresses but is not ours:
# CI clones run where a killed session's daemons, from another path, may linger.
# They are of no use to anyone once we take their ports, so no graceful shutdown.
evict_foreign() {
  local line laddr port host pid dir d hit comm ports
  local -a kill_pids=() dirs=()
  # Our ports, once each, as an alternation: 8443|8444.
  ports=$(for d in "${DAEMONS[@]}"; do echo "${ADDR[$d]##*:}"; done | awk '!seen[$0]++' | paste -sd'|')
  while read -r line; do
    laddr=$(awk '{print $4}' <<<"$line")
    port=${laddr##*:} host=${laddr%:*}
    host=${host#[}; host=${host%]}
    hit=""
    for d in "${DAEMONS[@]}"; do
      # Wildcard listeners on our ports make our bind fail too.
      if [[ ${ADDR[$d]} == "$host:$port" ]] ||
        [[ ${ADDR[$d]##*:} == "$port" && ( $host == 0.0.0.0 || $host == '*' || $host == :: ) ]]; then
        hit=$d; break
      fi
    done
    [[ -n $hit ]] || continue
    for pid in $(grep -o 'pid=[0-9]*' <<<"$line" | cut -d= -f2 | sort -u); do
      [[ $(daemon_pid "$hit") == "$pid" ]] && daemon_alive "$hit" && continue
      comm=$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')
      if [[ $comm != lxd ]]; then
        die "$laddr (needed by $hit) is held by pid $pid ($comm), not an lxd: not killing it"
      fi
      dir=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | sed -n 's/^LXD_DIR=//p')
      dir=${dir:-/var/lib/lxd}
      log "evicting foreign lxd pid $pid (LXD_DIR=$dir) listening on $laddr"
      kill_pids+=("$pid")
      # shellcheck disable=SC2207
      kill_pids+=($(procs_of_dir "$dir"))
      dirs+=("$dir")
    done
  done < <(ss -Hltnp 2>/dev/null | grep -E ":($ports) " || true)
  ((${#kill_pids[@]})) || return 0
  kill -KILL "${kill_pids[@]}" 2>/dev/null || true
  kill_wait 2 "${kill_pids[@]}"
  for dir in "${dirs[@]}"; do umount_under "$dir"; done
}

# A sandbox of another checkout (a CI clone, an older session) whose daemons were
# killed leaves mounts (shmounts, devlxd) and maybe container monitors behind.
# Clean those up when no lxd serves that directory any more.
sweep_stale() {
  local d pid live names
  local -a dirs=()
  names=$(IFS='|'; echo "${DAEMONS[*]}")
  # shellcheck disable=SC2207
  dirs=($( {
    findmnt -rn -o TARGET 2>/dev/null
    ps -eo args= | sed -n 's/^\[lxc monitor\] \(.*\)\/containers .*/\1/p'
  } | grep -oE '^/.*/\.sandbox/('"$names"')(/|$)' | sed 's#/$##' | sort -u || true))
  for d in "${dirs[@]}"; do
    [[ $d == "$SANDBOX"/* ]] && continue
    live=no
    for pid in $(grep -lzxF "LXD_DIR=$d" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
      [[ $(cat "/proc/$pid/comm" 2>/dev/null) == lxd ]] && alive_pid "$pid" && live=yes
    done
    [[ $live == yes ]] && continue
    log "cleaning up after a dead sandbox daemon of another checkout: $d"
    # shellcheck disable=SC2046
    kill_wait 3 $(procs_of_dir "$d")
    umount_under "$d"
  done
}

# Leftovers of instances whose daemon was killed before it could clean up: veth
# pairs with both ends back in the host namespace (LXD names them veth + 8 hex
# digits; the container end has LXD's 00:16:3e MAC) and empty lxc cgroups.
# A veth whose peer is in another namespace belongs to a live container: kept.
sweep_instance_leftovers() {
  local line name peer c
  while read -r line; do
    name=$(awk -F': ' '{print $2}' <<<"$line")
    peer=${name#*@}; name=${name%@*}
    [[ $name =~ ^veth[0-9a-f]{8}$ && $peer =~ ^veth[0-9a-f]{8}$ ]] || continue
    [[ -e /sys/class/net/$name ]] || continue   # deleted with its peer just now
    if [[ $line == *" master $BRIDGE "* || $line == *"link/ether 00:16:3e:"* ]] ||
      [[ $(ip -o link show "$peer" 2>/dev/null) =~ " master $BRIDGE "|"link/ether 00:16:3e:" ]]; then
      log "deleting leftover veth pair $name/$peer"
      ip link del "$name" 2>/dev/null || true
    fi
  done < <(ip -o link show type veth 2>/dev/null || true)
  # rmdir only removes a cgroup with no process and no child: safe to try.
  for c in /sys/fs/cgroup/*/lxc.payload.* /sys/fs/cgroup/*/lxc.monitor.* \
    /sys/fs/cgroup/lxc.payload.* /sys/fs/cgroup/lxc.monitor.*; do
    [[ -d $c ]] && rmdir "$c" 2>/dev/null || true
  done
}

start_daemon() {
  local d=$1 dir=$SANDBOX/$1 old
  mkdir -p "$dir"
  old=$(daemon_pid "$d")
  if [[ -n $old ]] && grep -qzxF "LXD_DIR=$dir" "/proc/$old/environ" 2>/dev/null; then
    # Hung or zombie: make sure it is really gone before starting another.
    kill -KILL "$old" 2>/dev/null || true
  fi
  # A daemon killed together with its containers leaves its mounts: drop them.
  # (Not when its containers survived it: they still use devlxd and shmounts.)
  if [[ -z $(procs_of_dir "$dir") ]]; then
    umount_under "$dir"
  fi
  # setsid + closed fds: the daemon must outlive this script and must not hold
  # the caller's pipes or our lock.
  # cd /: the daemon must not keep the caller's directory busy.
  (cd / && LXD_DIR=$dir exec setsid lxd --group root --debug --logfile "$dir/lxd.log" \
    </dev/null >>"$dir/lxd.out" 2>&1 9>&-) &
  echo $! >"$dir/lxd.pid"
}

wait_ready() {
  local d=$1
  if ! LXD_DIR="$SANDBOX/$d" timeout $((READY_TIMEOUT + 5)) lxd waitready --timeout "$READY_TIMEOUT" </dev/null 2>/dev/null; then
    log "$d not ready after ${READY_TIMEOUT}s; last log lines:"
    tail -n 15 "$SANDBOX/$d/lxd.log" >&2 || true
    return 1
  fi
}

# ---------------------------------------------------------------- host side

ensure_bridge() {
  if [[ -e /sys/class/net/$BRIDGE ]]; then
    [[ -d /sys/class/net/$BRIDGE/bridge ]] || die "$BRIDGE exists and is not a bridge"
  else
    ip link add "$BRIDGE" type bridge
    log "created host bridge $BRIDGE"
  fi
  ip link set "$BRIDGE" up
}

# A container image from busybox-static, built once: no image server is reachable.
IMAGE_TARBALL="$IMAGES/busybox.tar.gz"
ensure_image_tarball() {
  [[ -s $IMAGE_TARBALL ]] && return 0
  local bb=/bin/busybox tmp a
  [[ -x $bb ]] || die "$bb missing: run scripts/install-packages.sh"
  mkdir -p "$IMAGES"
  tmp=$(mktemp -d "$IMAGES/build.XXXXXX")
  mkdir -p "$tmp"/rootfs/{bin,sbin,etc,dev,proc,sys,tmp,root,run,var/log,usr/bin,usr/sbin}
  chmod 1777 "$tmp/rootfs/tmp"; chmod 700 "$tmp/rootfs/root"
  cp "$bb" "$tmp/rootfs/bin/busybox"
  for a in $("$bb" --list); do
    # `busybox --list` names busybox itself: linking it over the binary loops.
    [[ $a == busybox || $a == init ]] && continue
    ln -s busybox "$tmp/rootfs/bin/$a"
  done
  cat >"$tmp/rootfs/sbin/init" <<'INIT'
#!/bin/sh
# Sandbox init: keep the container alive and exit at once when LXD stops it
# (SIGPWR from `lxc stop`, SIGTERM otherwise), so stops take no timeout.
[ -e /proc/self/stat ] || mount -t proc proc /proc
[ -e /sys/kernel ] || mount -t sysfs sysfs /sys
trap 'exit 0' PWR TERM INT
# sleep in the background + wait: a trap runs as soon as the signal arrives.
while :; do sleep 1 & wait $!; done
INIT
  chmod 755 "$tmp/rootfs/sbin/init"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tmp/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/rootfs/etc/group"
  echo busybox >"$tmp/rootfs/etc/hostname"
  local arch version
  arch=$(uname -m)
  # awk reads to the end: `head` would close the pipe early, and busybox killed by
  # SIGPIPE fails the whole pipeline under pipefail (seen, about 1 run in 5).
  version=$("$bb" 2>&1 | awk 'NR == 1 { print $2 }')
  cat >"$tmp/metadata.yaml" <<META
architecture: $arch
creation_date: $(date +%s)
properties:
  description: busybox $version (lxd-placement sandbox)
  os: busybox
  release: "$version"
  architecture: $arch
templates: {}
META
  tar --numeric-owner --owner=0 --group=0 -C "$tmp" -czf "$tmp/image.tar.gz" metadata.yaml rootfs
  mv "$tmp/image.tar.gz" "$IMAGE_TARBALL"
  rm -rf "$tmp"
  log "built image $IMAGE_TARBALL"
}

ensure_client_cert() {
  mkdir -p "$CONF"
  [[ -s $CONF/client.crt && -s $CONF/client.key ]] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes \
    -keyout "$CONF/client.key" -out "$CONF/client.crt" -days 3650 \
    -subj /CN=lxd-placement-sandbox -addext extendedKeyUsage=clientAuth 2>/dev/null
  chmod 600 "$CONF/client.key"
  log "generated client certificate $CONF/client.crt"
}

cert_fp() { openssl x509 -noout -fingerprint -sha256 -in "$1" | cut -d= -f2 | tr -d : | tr A-F a-f; }

# Fingerprint of the certificate a server presents at host:port.
presented_fp() {
  local pem
  pem=$(timeout 10 openssl s_client -connect "$1" </dev/null 2>/dev/null || true)
  openssl x509 -noout -fingerprint -sha256 2>/dev/null <<<"$pem" | cut -d= -f2 | tr -d : | tr A-F a-f || true
}

# ---------------------------------------------------------------- server side

# Everything every server (standalone or cluster, via daemon $1) gets, idempotently.
# $2: "cluster" for the cluster (pools need per-member creation first).
configure_server() {
  local d=$1 kind=${2:-}
  local p m fp pools aliases

  pools=$(lx "$d" storage list -f csv)
  for p in default fast; do
    if ! grep -q "^$p," <<<"$pools"; then
      if [[ $kind == cluster ]]; then
        for m in "${MEMBERS[@]}"; do
          lx "$d" storage create "$p" dir --target "$m" >/dev/null 2>&1 || true
        done
      fi
      lx "$d" storage create "$p" dir >/dev/null
    elif [[ $kind == cluster ]] && grep -q "^$p,.*PENDING" <<<"$pools"; then
      # An interrupted earlier `up`: finish the pool.
      for m in "${MEMBERS[@]}"; do
        lx "$d" storage create "$p" dir --target "$m" >/dev/null 2>&1 || true
      done
      lx "$d" storage create "$p" dir >/dev/null
    fi
  done

  # The default profile's devices, as `lxc profile show` prints them. Edit only
  # when they differ: an edit is pushed to every instance using the profile and
  # fails if one of them is broken (say, left half-moved by a killed test).
  local devices
  devices="devices:
  eth0:
    nictype: bridged
    parent: $BRIDGE
    type: nic
  root:
    path: /
    pool: default
    type: disk"
  if [[ $(lx "$d" profile show default) != *"$devices"* ]]; then
    lx_stdin "$d" profile edit default >/dev/null <<PROFILE
description: lxd-placement sandbox default profile
config: {}
$devices
PROFILE
  fi

  if ! lx "$d" project show staging >/dev/null 2>&1; then
    lx "$d" project create staging -c features.images=false -c features.profiles=false >/dev/null
  fi

  aliases=$(lx "$d" image alias list -f csv)
  if ! grep -q '^busybox,' <<<"$aliases"; then
    lx "$d" image import "$IMAGE_TARBALL" --alias busybox >/dev/null
  fi

  fp=$(cert_fp "$CONF/client.crt")
  if ! lx "$d" config trust show "$fp" >/dev/null 2>&1; then
    lx "$d" config trust add "$CONF/client.crt" --name lxd-placement-sandbox >/dev/null
  fi
}

setup_standalone() {
  local d=$1
  if [[ -z $(lx "$d" config get core.https_address) ]]; then
    lx "$d" config set core.https_address "${ADDR[$d]}"
  fi
  configure_server "$d"
}

is_clustered() { [[ $(lx "$1" query /1.0/cluster 2>/dev/null) == *'"enabled": true'* ]]; }

cluster_members() { lx "$BOOTSTRAP" cluster list -f csv 2>/dev/null | cut -d, -f1; }

bootstrap_cluster() {
  is_clustered "$BOOTSTRAP" && return 0
  log "bootstrapping cluster on $BOOTSTRAP (${ADDR[$BOOTSTRAP]})"
  LXD_DIR="$SANDBOX/$BOOTSTRAP" timeout "$LXC_TIMEOUT" lxd init --preseed >/dev/null <<PRESEED
config:
  core.https_address: ${ADDR[$BOOTSTRAP]}
  cluster.https_address: ${ADDR[$BOOTSTRAP]}
cluster:
  server_name: $BOOTSTRAP
  enabled: true
PRESEED
}

join_member() {
  local m=$1 token pools p
  is_clustered "$m" && return 0
  if grep -qx "$m" <<<"$(cluster_members)"; then
    # Known to the cluster but its own dir is not clustered: a half-done earlier join.
    log "removing stale cluster entry for $m"
    lx "$BOOTSTRAP" cluster remove "$m" --force --yes >/dev/null
  fi
  lx "$BOOTSTRAP" cluster revoke-token "$m" >/dev/null 2>&1 || true
  token=$(lx "$BOOTSTRAP" cluster add "$m" --quiet)
  # Pools the cluster has already need this member's `source` (empty: LXD's default).
  pools=""
  for p in $(lx "$BOOTSTRAP" storage list -f csv 2>/dev/null | cut -d, -f1); do
    pools+=$'\n'"  - {entity: storage-pool, name: $p, key: source, value: \"\"}"
  done
  log "joining $m (${ADDR[$m]})"
  LXD_DIR="$SANDBOX/$m" timeout "$LXC_TIMEOUT" lxd init --preseed >/dev/null <<PRESEED
cluster:
  enabled: true
  server_name: $m
  server_address: ${ADDR[$m]}
  cluster_address: ${ADDR[$BOOTSTRAP]}
  cluster_token: $token
  member_config:${pools:- []}
PRESEED
}

setup_cluster() {
  bootstrap_cluster
  local m
  for m in "${MEMBERS[@]:1}"; do join_member "$m"; done
  configure_server "$BOOTSTRAP" cluster
  if ! lx "$BOOTSTRAP" cluster group show fast-group >/dev/null 2>&1; then
    lx "$BOOTSTRAP" cluster group create fast-group >/dev/null
  fi
  # fast-group: the members that joined. `assign` replaces a member's groups: keep default.
  for m in "${MEMBERS[@]:1}"; do lx "$BOOTSTRAP" cluster group assign "$m" default,fast-group >/dev/null; done
}

# Members whose daemon was restarted must be seen ONLINE by the cluster again.
wait_online() {
  local deadline=$((SECONDS + ONLINE_TIMEOUT)) out bad
  while :; do
    out=$(lx "$BOOTSTRAP" cluster list -f csv 2>/dev/null || true)
    bad=""
    for m in "${MEMBERS[@]}"; do
      grep -q "^$m,.*,ONLINE," <<<"$out" || bad+=" $m"
    done
    [[ -z $bad ]] && return 0
    if ((SECONDS >= deadline)); then
      log "cluster members not ONLINE after ${ONLINE_TIMEOUT}s:$bad"
      echo "$out" >&2
      return 1
    fi
    sleep 1
  done
}

# ---------------------------------------------------------------- client side

write_client_config() {
  local r d tmp
  mkdir -p "$CONF"
  tmp=$(mktemp -d "$CONF/.servercerts.XXXXXX")
  for r in "${REMOTES[@]}"; do
    d=${REMOTE_DAEMON[$r]}
    if [[ ${ROLE[$d]} == member ]]; then
      cp "$SANDBOX/$d/cluster.crt" "$tmp/$r.crt"
    else
      cp "$SANDBOX/$d/server.crt" "$tmp/$r.crt"
    fi
  done
  rm -rf "$CONF/servercerts"
  mv "$tmp" "$CONF/servercerts"
  {
    cat <<YAML
# Written by scripts/sandbox.sh up; rewritten on every up.
default-remote: ${REMOTES[0]}
remotes:
YAML
    for r in "${REMOTES[@]}"; do
      cat <<YAML
  $r:
    addr: https://${ADDR[${REMOTE_DAEMON[$r]}]}
    auth_type: tls
    project: default
    protocol: lxd
    public: false
YAML
    done
    echo "aliases: {}"
  } >"$CONF/config.yml.tmp"
  mv "$CONF/config.yml.tmp" "$CONF/config.yml"
}

# The pinned certificates must be exactly what the servers present.
verify_pins() {
  local r d want got
  for r in "${REMOTES[@]}"; do
    d=${REMOTE_DAEMON[$r]}
    want=$(cert_fp "$CONF/servercerts/$r.crt")
    got=$(presented_fp "${ADDR[$d]}")
    [[ $want == "$got" ]] || die "remote $r: ${ADDR[$d]} presents ${got:-nothing}, pinned $want"
  done
}

verify_client() {
  local r
  for r in "${REMOTES[@]}"; do
    if [[ ${ROLE[${REMOTE_DAEMON[$r]}]} == member ]]; then
      lxc_user cluster list "$r:" -f csv >/dev/null || die "lxc cluster list $r: failed"
    else
      lxc_user list "$r:" -f csv >/dev/null || die "lxc list $r: failed"
    fi
  done
}

# ---------------------------------------------------------------- commands

summary() {
  local t0=$1
  awk -v t0="$t0" -v t1="$(now)" -v r="${REMOTES[*]}" -v c="$CONF" \
    'BEGIN { printf "sandbox: up in %.1fs: remotes %s (LXD_CONF=%s)\n", t1 - t0, r, c }'
}

all_alive() {
  local d
  for d in "${DAEMONS[@]}"; do daemon_alive "$d" || return 1; done
}

cmd_up() {
  local t0 d
  t0=$(now)
  if ! command -v lxd >/dev/null || ! command -v lxc >/dev/null; then
    die "lxd/lxc missing: run scripts/install-packages.sh"
  fi
  # LXD's sockets ($LXD_DIR/unix.socket, devlxd/sock) must fit in sun_path (107 bytes).
  ((${#SANDBOX} + 15 <= 107)) || die "checkout path too long for LXD's unix sockets: $SANDBOX"
  take_lock
  ensure_admin_conf

  # Fast path: everything was set up by this checkout and still runs.
  if [[ -f $STAMP ]] && all_alive && [[ -d /sys/class/net/$BRIDGE ]]; then
    local ok=yes p
    local -a probes=()
    for d in "${DAEMONS[@]}"; do
      LXD_DIR="$SANDBOX/$d" timeout 5 lxd waitready --timeout 3 </dev/null 2>/dev/null 9>&- &
      probes+=($!)
    done
    for p in "${probes[@]}"; do wait "$p" || ok=no; done
    if [[ $ok == yes ]] && wait_online; then
      ip link set "$BRIDGE" up
      write_client_config
      summary "$t0"
      return 0
    fi
  fi

  debug "slow path"
  evict_foreign
  sweep_stale
  # Only with no daemon of ours alive: a live one may be starting an instance,
  # whose fresh veth pair is in the host namespace for a moment.
  local alive_any=no
  for d in "${DAEMONS[@]}"; do daemon_alive "$d" && alive_any=yes; done
  [[ $alive_any == yes ]] || sweep_instance_leftovers
  ensure_bridge
  ensure_image_tarball
  ensure_client_cert
  debug "host side ready"

  # A daemon that runs but does not answer (hung, stopped) is restarted too.
  declare -A probe=()
  for d in "${DAEMONS[@]}"; do
    if daemon_alive "$d"; then
      LXD_DIR="$SANDBOX/$d" timeout 7 lxd waitready --timeout 5 </dev/null >/dev/null 2>&1 9>&- &
      probe[$d]=$!
    fi
  done
  for d in "${!probe[@]}"; do
    if ! wait "${probe[$d]}"; then
      log "$d (pid $(daemon_pid "$d")) does not answer; killing it"
      kill -KILL "$(daemon_pid "$d")" 2>/dev/null || true
      sleep 0.2
    fi
  done

  # Start what is not running, all at once; then wait for all.
  local -a started=()
  for d in "${DAEMONS[@]}"; do
    if ! daemon_alive "$d"; then
      [[ -e $SANDBOX/$d/lxd.pid ]] && log "$d is not running (pid $(daemon_pid "$d")); restarting"
      start_daemon "$d"
      started+=("$d")
    fi
  done
  local -a waits=()
  for d in "${DAEMONS[@]}"; do wait_ready "$d" & waits+=($!); done
  local w fail=0
  for w in "${waits[@]}"; do wait "$w" || fail=1; done
  ((fail == 0)) || die "daemons did not become ready (logs in $SANDBOX/*/lxd.log)"
  debug "daemons ready"

  rm -f "$STAMP"   # until everything below has succeeded again
  # Configure the three servers side by side: each step is a round-trip and the
  # cluster's are slow (every write goes through raft).
  local -a jobs=()
  for d in "${STANDALONE[@]}"; do setup_standalone "$d" & jobs+=($!); done
  setup_cluster & jobs+=($!)
  for w in "${jobs[@]}"; do wait "$w" || fail=1; done
  ((fail == 0)) || die "configuring the servers failed"
  debug "servers configured"
  wait_online
  debug "cluster online"

  write_client_config
  verify_pins
  verify_client
  echo "$ROOT" >"$STAMP"
  ((${#started[@]})) && log "started: ${started[*]}"
  summary "$t0"
}

cmd_down() {
  take_lock
  ensure_admin_conf
  local d any=no
  for d in "${DAEMONS[@]}"; do daemon_alive "$d" && any=yes; done

  if [[ $any == yes ]]; then
    # Stop instances first, forcefully and in parallel: on 5.0.2 a cluster member
    # left without quorum stalls in shutdown while it has instances.
    local -a jobs=()
    local r
    for r in "${REMOTES[@]}"; do
      d=${REMOTE_DAEMON[$r]}
      daemon_alive "$d" || continue
      (
        LXC_TIMEOUT=30
        for p in $(lx "$d" query /1.0/projects 2>/dev/null | sed -n 's#.*"/1.0/projects/\([^"]*\)".*#\1#p'); do
          lx "$d" stop --all --force --project "$p" >/dev/null 2>&1 || true
        done
      ) & jobs+=($!)
    done
    wait "${jobs[@]}" 2>/dev/null || true
    debug "instances stopped"

    # Shut every daemon down at once; members need each other for quorum.
    jobs=()
    for d in "${DAEMONS[@]}"; do
      daemon_alive "$d" || continue
      LXD_DIR="$SANDBOX/$d" timeout $((SHUTDOWN_TIMEOUT + 2)) lxd shutdown --timeout "$SHUTDOWN_TIMEOUT" \
        </dev/null >/dev/null 2>&1 & jobs+=($!)
    done
    # Then bound the wait: whatever still runs is killed. A member left alone
    # has no quorum and on 5.0.2 never finishes its shutdown: give it a moment
    # (its instances are already stopped), not the full bound.
    local deadline=$((SECONDS + SHUTDOWN_TIMEOUT + 2)) left members_left lone_since=""
    while :; do
      left="" members_left=0
      for d in "${DAEMONS[@]}"; do
        daemon_alive "$d" || continue
        left+=" $d"
        [[ ${ROLE[$d]} == member ]] && members_left=$((members_left + 1))
      done
      [[ -z $left ]] && break
      if ((members_left == 1)); then
        lone_since=${lone_since:-$SECONDS}
        if ((SECONDS - lone_since >= 2)); then
          for d in "${MEMBERS[@]}"; do
            if daemon_alive "$d"; then
              debug "$d is the last cluster member (no quorum): killing it"
              kill -KILL "$(daemon_pid "$d")" 2>/dev/null || true
            fi
          done
          continue
        fi
      fi
      if ((SECONDS >= deadline)); then
        log "killing daemons that did not shut down within ${SHUTDOWN_TIMEOUT}s:$left"
        for d in $left; do kill -KILL "$(daemon_pid "$d")" 2>/dev/null || true; done
        break
      fi
      sleep 0.2
    done
    for w in "${jobs[@]}"; do kill "$w" 2>/dev/null || true; done
    wait 2>/dev/null || true
    debug "daemons gone"
  fi

  # Leftovers: container monitors and containers of a killed daemon, helpers.
  local -a rest=()
  for d in "${DAEMONS[@]}"; do
    # shellcheck disable=SC2207
    rest+=($(procs_of_dir "$SANDBOX/$d"))
  done
  if ((${#rest[@]})); then
    log "killing leftover processes: ${rest[*]}"
    kill_wait 3 "${rest[@]}"
  fi
  umount_under "$SANDBOX"
  sweep_instance_leftovers
  if [[ -e /sys/class/net/$BRIDGE ]]; then
    local ports
    ports=$(find "/sys/class/net/$BRIDGE/brif" -mindepth 1 -printf '%f ' 2>/dev/null || true)
    if [[ -n $ports ]]; then
      # Not ours (ours are all stopped): another checkout's live instances.
      log "keeping bridge $BRIDGE: still in use by $ports"
    else
      ip link del "$BRIDGE" 2>/dev/null || log "could not delete bridge $BRIDGE"
    fi
  fi
  for d in "${DAEMONS[@]}"; do
    rm -rf --one-file-system "${SANDBOX:?}/$d"
  done
  rm -rf "$CONF/config.yml" "$CONF/servercerts" "$ADMIN_CONF" "$STAMP"
  [[ $any == yes ]] && log "down"
  return 0
}

# The daemon list as this script derived it, one line each: name role address remote.
cmd_daemons() {
  local d
  for d in "${DAEMONS[@]}"; do
    echo "$d ${ROLE[$d]} ${ADDR[$d]} ${REMOTE_OF[$d]}"
  done
}

cmd_status() {
  local d pid all=0 state
  for d in "${DAEMONS[@]}"; do
    pid=$(daemon_pid "$d")
    if daemon_alive "$d"; then state=running; else state=stopped; all=1; fi
    printf '%-3s %-16s %-8s %s\n' "$d" "${ADDR[$d]}" "$state" "${pid:--}"
  done
  if [[ -d /sys/class/net/$BRIDGE ]]; then
    echo "bridge $BRIDGE present"
  else
    echo "bridge $BRIDGE absent"; all=1
  fi
  return "$all"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) rc=0; cmd_status || rc=$?; exit "$rc" ;;
  daemons) cmd_daemons ;;
  *) echo "usage: $0 up|down|status|daemons" >&2; exit 2 ;;
esac
