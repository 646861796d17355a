#!/usr/bin/env bash
# Browser test of the map page (issue 5):
#
#   tests/browser/run.sh path/to/raincast [SCREENSHOT.png]
#
# 1. installs Debian's chromium when it is missing (apt-get, as root or with sudo);
# 2. installs the pinned npm dependencies (package-lock.json) into
#    $RAINCAST_BROWSER_DEPS (default $HOME/.cache/raincast/browser), outside
#    the clone, and reuses them while the lock file is unchanged;
# 3. starts `raincast run --listen 127.0.0.1:0` (the synthetic demo radar,
#    no configuration) in a temporary folder and reads the URL it prints;
# 4. waits until /readyz answers 200 and the demo radar has a nowcast;
# 5. runs map.test.js (headless Chromium: overlay, slider, click, forecast),
#    which saves a screenshot (default: a temporary file, printed);
# 6. always stops the server and removes the temporary folder.
#
# Every wait polls a condition with a generous limit (RAINCAST_BROWSER_TIMEOUT
# seconds, default 900) so a slow 2-core CI machine passes too.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 RAINCAST_BINARY [SCREENSHOT.png]" >&2
    exit 2
fi
bin="$(realpath "$1")"
[ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }
timeout_s="${RAINCAST_BROWSER_TIMEOUT:-900}"
deps="${RAINCAST_BROWSER_DEPS:-$HOME/.cache/raincast/browser}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

say() { echo "== browser: $*"; }

# 1. Chromium from Debian.
if [ ! -x "$CHROMIUM" ]; then
    say "installing chromium (apt-get)"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium
fi
say "$("$CHROMIUM" --version 2>/dev/null | tail -n 1)"

# 2. npm dependencies, pinned by the lock file, outside the clone.
mkdir -p "$deps"
if ! cmp -s "$here/package-lock.json" "$deps/package-lock.json" \
    || [ ! -f "$deps/node_modules/playwright-core/package.json" ] \
    || [ ! -f "$deps/node_modules/leaflet/dist/leaflet.js" ]; then
    say "installing npm dependencies into $deps"
    cp "$here/package.json" "$here/package-lock.json" "$deps/"
    (cd "$deps" && npm ci --no-audit --no-fund --loglevel=error)
fi

# 3.-4. The server, on a free port, in a temporary folder (./var is created
# there), until /readyz answers and the demo radar has a nowcast.
# shellcheck source-path=SCRIPTDIR/../.. source=scripts/demo-server.sh
. "$here/../../scripts/demo-server.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/raincast-browser.XXXXXX")"
cleanup() {
    local rc=$?
    demo_server_stop
    if [ "$rc" -ne 0 ] && [ -f "$DEMO_LOG" ]; then
        say "server log (last 40 lines):"
        tail -n 40 "$DEMO_LOG" || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
DEMO_TIMEOUT="$timeout_s"
demo_server_start "$bin" "$work"
demo_server_wait_nowcast
url="$DEMO_URL"

# 5. The browser test.
shot="${2:-$work/map.png}"
mkdir -p "$(dirname "$shot")"
NODE_PATH="$deps/node_modules" node "$here/map.test.js" "$url" "$shot"
if [ -z "${2:-}" ]; then
    say "screenshot was $shot ($(stat -c %s "$shot") bytes; pass a second argument to keep it)"
fi
say "passed"
