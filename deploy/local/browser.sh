#!/usr/bin/env bash
# deploy/local/browser.sh - make sure a headless Chromium and its chromedriver are
# installed (Debian's `chromium` and `chromium-driver`, via apt-get as root or with
# passwordless sudo, the way stack.sh installs PostgreSQL), then print their paths:
#
#   CHROMIUM=/usr/bin/chromium
#   CHROMEDRIVER=/usr/bin/chromedriver
#
# The browser tests (tests/browser) use these system binaries; nothing is downloaded
# by Selenium. TT_CHROMIUM and TT_CHROMEDRIVER override the paths.
set -euo pipefail

CHROMIUM="${TT_CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${TT_CHROMEDRIVER:-/usr/bin/chromedriver}"

log() { printf '[browser] %s\n' "$*" >&2; }
die() {
  printf '[browser] ERROR: %s\n' "$*" >&2
  exit 1
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 ||
    die "need to install: $* - but apt-get is not available; install it by hand"
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "need to install: $* - run as root (or with passwordless sudo), or install it by hand"
    fi
  fi
  log "installing with apt-get: $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
    die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
    die "apt-get install $* failed"
}

if [[ ! -x "$CHROMIUM" || ! -x "$CHROMEDRIVER" ]]; then
  apt_install chromium chromium-driver
fi
[[ -x "$CHROMIUM" ]] || die "no Chromium at $CHROMIUM after installing chromium"
[[ -x "$CHROMEDRIVER" ]] || die "no chromedriver at $CHROMEDRIVER after installing chromium-driver"
echo "CHROMIUM=$CHROMIUM"
echo "CHROMEDRIVER=$CHROMEDRIVER"
