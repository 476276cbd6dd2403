# shellcheck shell=bash
# The commands: cmd_up, cmd_down, cmd_status, cmd_daemons.
# Sourced by scripts/sandbox.sh; expects: every setting and daemon variable of sandbox.sh, and the functions of the other files.

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
        # shellcheck disable=SC2034 # read by lx, in sandbox.sh
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
