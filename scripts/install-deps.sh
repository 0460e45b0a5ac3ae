#!/usr/bin/env bash
# Installs what Tongxin needs on Debian 12, and only what is missing. Idempotent.
#
#   scripts/install-deps.sh build   # what building and running the server needs
#   scripts/install-deps.sh test    # also what the tests need (Chromium, fonts, npm packages)
set -euo pipefail

what="${1:-build}"
case "$what" in build|test) ;; *) echo "usage: $0 [build|test]" >&2; exit 2 ;; esac

root="$(cd "$(dirname "$0")/.." && pwd)"

build_pkgs=(
  pkg-config libssl-dev cmake nasm make gcc g++
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice
  poppler-utils tzdata
)
test_pkgs=(
  chromium chromium-driver fonts-liberation fonts-noto-cjk fonts-noto-core coturn
  janus   # the comparison's other SFU (loadtests serial::janus, scripts/janus.sh)
)

pkgs=("${build_pkgs[@]}")
if [ "$what" = test ]; then
  pkgs+=("${test_pkgs[@]}")
  # Node.js may come from Debian or from NodeSource (whose nodejs conflicts with Debian's npm):
  # only ask for Debian's when there is no npm at all.
  command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The tests start their own Janus in a namespace; the package's service must not hold its ports.
  if [[ " ${missing[*]} " == *" janus "* ]]; then
    $sudo systemctl disable --now janus >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install Rust (1.94 or newer) with rustup first" >&2
  exit 1
fi

if [ "$what" = test ]; then
  # Browser tests drive Debian's /usr/bin/chromium with playwright-core; nothing downloads a browser.
  lock="$root/tests/browser/package-lock.json"
  stamp="$root/tests/browser/node_modules/.installed-lock"
  if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
    echo "install-deps: npm ci in tests/browser"
    (cd "$root/tests/browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    cp "$lock" "$stamp"
  fi
fi
