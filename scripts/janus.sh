#!/usr/bin/env bash
# Janus beside Tongxin: the same load on both servers, one report (Debian 12, root).
#
#   scripts/janus.sh install             # Debian's janus package, if missing (never started as a service)
#   scripts/janus.sh config DIR ADDR     # our config files in DIR: API and media on ADDR, VideoRoom
#                                        # rooms 1000-1019 with H.264 forced and no bitrate cap
#   scripts/janus.sh compare [FLAGS…]    # build, then `tongxin-load compare` (servers on core 0, the
#                                        # generator on core 1); FLAGS go to it, e.g. --out DIR
#
# `compare` runs each server alone in a fresh network namespace (veth pair, 10.199.x.y); the tool
# removes them when it ends, and this script once more if it was killed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
templates="$root/loadtests/janus"

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

install() {
  if dpkg-query -W -f='${Status}' janus 2>/dev/null | grep -q "install ok installed"; then
    return 0
  fi
  echo "janus.sh: installing Debian's janus"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # policy-rc.d in containers keeps the service from starting; elsewhere stop it: we run our own.
  $sudo apt-get install -y -qq --no-install-recommends janus
  $sudo systemctl disable --now janus >/dev/null 2>&1 || true
}

# Where Debian put the plugins and transports (/usr/lib/<triplet>/janus).
libdir() {
  local d
  for d in /usr/lib/*/janus /usr/lib/janus; do
    if [ -e "$d/plugins/libjanus_videoroom.so" ] && [ -e "$d/transports/libjanus_http.so" ]; then
      echo "$d"
      return 0
    fi
  done
  echo "janus.sh: Janus's plugins not found; run $0 install" >&2
  return 1
}

# Fills the templates (the same ones tongxin-load writes from; keep the placeholders in step).
config() {
  local dir="$1" addr="$2" lib rooms="" r
  lib="$(libdir)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  for r in $(seq 1000 1019); do
    rooms+="$(sed "s/@ROOM@/$r/g" "$templates/videoroom-room.jcfg")"$'\n'
  done
  fill() { sed -e "s|@DIR@|$dir|g" -e "s|@ADDR@|$addr|g" -e "s|@PORT@|8088|g" -e "s|@LIBDIR@|$lib|g"; }
  fill <"$templates/janus.jcfg" >"$dir/janus.jcfg"
  fill <"$templates/janus.transport.http.jcfg" >"$dir/janus.transport.http.jcfg"
  awk -v rooms="$rooms" '{ if ($0 == "@ROOMS@") printf "%s", rooms; else print }' \
    "$templates/janus.plugin.videoroom.jcfg" >"$dir/janus.plugin.videoroom.jcfg"
  echo "janus.sh: config in $dir; run: janus --configs-folder=$dir --config=$dir/janus.jcfg (in the namespace holding $addr)"
}

compare() {
  install
  [ "$(id -u)" -eq 0 ] || { echo "janus.sh: compare creates network namespaces: run it as root" >&2; exit 1; }
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
  (cd "$root" && cargo build --release --locked -p tongxin-web -p tongxin-loadtests)
  local bin="$CARGO_TARGET_DIR/release"
  pid=""
  cleanup() {
    # The tool removes its namespaces itself (also on SIGINT/SIGTERM); this catches one that
    # was killed outright.
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^tongxin-${pid:-none}-" || true); do
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
    done
  }
  trap cleanup EXIT INT TERM
  taskset -c 1 "$bin/tongxin-load" compare --tongxin-bin "$bin/tongxin" --server-core 0 "$@" &
  pid=$!
  local rc=0
  wait "$pid" || rc=$?
  exit "$rc"
}

case "${1:-}" in
  install) install ;;
  config) [ $# -eq 3 ] || { echo "usage: $0 config DIR ADDR" >&2; exit 2; }; config "$2" "$3" ;;
  compare) shift; compare "$@" ;;
  *) echo "usage: $0 install | config DIR ADDR | compare [tongxin-load compare flags]" >&2; exit 2 ;;
esac
