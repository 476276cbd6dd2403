# shellcheck shell=bash
# The lxd processes: finding, starting and killing daemons, and sweeping up after dead ones.
# Sourced by scripts/sandbox.sh; expects: SANDBOX, DAEMONS, ADDR, BRIDGE, READY_TIMEOUT; log, die.

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
      # The process may have ended since ss listed it (a daemon the tests just killed): then
      # there is nothing to evict, and reading its environment must not end the script.
      dir=$({ tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | sed -n 's/^LXD_DIR=//p') || continue
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
