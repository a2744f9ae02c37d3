#!/usr/bin/env bash
# Browser test host for tests/e2e and tests/browser: Debian `chromium` (+ chromium-driver) and npm
# `playwright-core` pinned by tests/browser/package-lock.json (no browser download). Idempotent.
# Without root/apt a missing chromium is reported here, and the tiers that need it skip loudly
# (or fail, under CI / SLIDERSPACE_REQUIRE_HOSTS=1).
set -uo pipefail
cd "$(dirname "$0")/.."
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
log() { echo "[provision] $*"; }

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install $*"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; } \
      || log "WARNING: apt-get install $* failed"
  else
    log "WARNING: need $* but cannot apt-get (not root or no apt); the browser tiers will skip (fail in CI)"
  fi
}

[ -x "$CHROMIUM" ] || apt_install chromium chromium-driver
command -v npm >/dev/null || apt_install nodejs npm

if command -v npm >/dev/null; then
  stamp="tests/browser/node_modules/.provisioned"
  want="$(sha256sum tests/browser/package-lock.json | cut -c1-16)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "npm ci in tests/browser (playwright-core, no browser download)"
    if (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error); then
      echo "$want" > "$stamp"
    else
      log "WARNING: npm ci failed; the browser tiers will skip (fail in CI)"
    fi
  fi
fi
[ -x "$CHROMIUM" ] && log "browser ready: $("$CHROMIUM" --version 2>/dev/null | head -1)"
exit 0
