# shellcheck shell=bash
# The server side: pools, profile, project, image and trust on each server; the cluster.
# Sourced by scripts/sandbox.sh; expects: SANDBOX, ADDR, MEMBERS, BOOTSTRAP, BRIDGE, CONF, LXC_TIMEOUT, ONLINE_TIMEOUT; lx, lx_stdin, log; IMAGE_TARBALL and cert_fp (host.sh).

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
