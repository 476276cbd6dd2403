# shellcheck shell=bash
# The host side: bridge, busybox image tarball, client certificate, certificate fingerprints.
# Sourced by scripts/sandbox.sh; expects: BRIDGE, IMAGES, CONF; log, die.

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
