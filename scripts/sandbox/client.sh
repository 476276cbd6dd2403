# shellcheck shell=bash
# The client side: the lxc config in $CONF, its pinned certificates, and checks of both.
# Sourced by scripts/sandbox.sh; expects: SANDBOX, CONF, REMOTES, REMOTE_DAEMON, ROLE, ADDR; lxc_user, die, cert_fp and presented_fp (host.sh).

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
