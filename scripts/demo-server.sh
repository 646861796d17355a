# shellcheck shell=bash
# Starts and stops `raincast run` on the synthetic demo radar for scripts that
# need a live server (tests/browser/run.sh, scripts/bench-api.sh). Source it:
#
#   . scripts/demo-server.sh
#   demo_server_start BINARY DIR [LOG_LEVEL [COMMAND ARGS...]]
#                       # COMMAND defaults to `run`; sets DEMO_PID, DEMO_LOG, DEMO_URL
#   demo_server_wait_nowcast                   # /readyz 200 and a current nowcast (on the newest scan)
#   demo_server_stop                           # SIGTERM, then SIGKILL after 30 s
#
# The server runs with the embedded default (no RAINCAST_* variable from the
# caller) in DIR, where it creates ./var, on a free loopback port; the URL is
# read from the line it prints. Waits poll a condition until DEMO_TIMEOUT
# seconds (default 900) have passed since demo_server_start.

DEMO_PID=""
DEMO_LOG=""
DEMO_URL=""

demo_say() { echo "== demo server: $*"; }

# Fails (returns 1) when the server has exited or the deadline has passed.
demo_server_alive() {
    if ! kill -0 "$DEMO_PID" 2>/dev/null; then
        demo_say "the server exited early (log: $DEMO_LOG)"
        return 1
    fi
    if [ "$SECONDS" -ge "$DEMO_DEADLINE" ]; then
        demo_say "timed out after ${DEMO_TIMEOUT:-900}s: $1"
        return 1
    fi
}

demo_server_start() {
    local bin="$1" dir="$2" level="${3:-info}"
    local cmd=(run)
    [ $# -le 3 ] || cmd=("${@:4}")
    DEMO_LOG="$dir/server-${cmd[0]}.log"
    DEMO_DEADLINE=$((SECONDS + ${DEMO_TIMEOUT:-900}))
    demo_say "starting $bin ${cmd[*]} --listen 127.0.0.1:0 in $dir"
    # Created here, not only by the background job's redirection: the loop
    # below may read it before that job has run (sed then fails on a missing
    # file, and under `set -e` the caller stops).
    : >"$DEMO_LOG"
    (
        cd "$dir" || exit 1
        while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^RAINCAST_' || true)
        export RAINCAST_LOG="$level"
        exec "$bin" "${cmd[@]}" --listen 127.0.0.1:0
    ) >"$DEMO_LOG" 2>&1 </dev/null &
    DEMO_PID=$!
    DEMO_URL=""
    while [ -z "$DEMO_URL" ]; do
        demo_server_alive "no URL printed" || return 1
        DEMO_URL="$(sed -n 's|.*Raincast map: \(http://[^ ]*/\).*|\1|p' "$DEMO_LOG" | head -n 1)"
        [ -n "$DEMO_URL" ] || sleep 1
    done
    demo_say "at $DEMO_URL"
}

# A nowcast is current when it is based on the newest scan: its time equals
# the radar's latest_scan_time in /v1/radars (the backfill is over and the
# nowcast caught up), so a test does not start on one about to be replaced.
demo_nowcast_current() {
    curl -fsS --max-time 10 "${DEMO_URL}v1/radars" 2>/dev/null | python3 -c '
import json, sys
radars = json.load(sys.stdin)["radars"]
ok = any(r.get("latest_nowcast_time") and r.get("latest_nowcast_time") == r.get("latest_scan_time") for r in radars)
sys.exit(0 if ok else 1)'
}

demo_server_wait_nowcast() {
    local t0=$SECONDS
    until curl -fsS -o /dev/null --max-time 10 "${DEMO_URL}readyz" 2>/dev/null && demo_nowcast_current; do
        demo_server_alive "no current nowcast (see ${DEMO_URL}readyz and ${DEMO_URL}v1/radars)" || return 1
        sleep 2
    done
    demo_say "ready with a current nowcast after $((SECONDS - t0))s"
}

demo_server_stop() {
    [ -n "$DEMO_PID" ] || return 0
    if kill -0 "$DEMO_PID" 2>/dev/null; then
        kill -TERM "$DEMO_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$DEMO_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$DEMO_PID" 2>/dev/null; then
            demo_say "did not stop on SIGTERM; killing it"
            kill -KILL "$DEMO_PID" 2>/dev/null || true
        fi
    fi
    wait "$DEMO_PID" 2>/dev/null || true
    DEMO_PID=""
}

# For the wrk benchmark scripts: checks their `RAINCAST_BINARY [SECONDS]`
# arguments, sets `bin`, `secs` (default 20) and `work` (a temporary
# folder), and on exit stops the server, shows its log's tail on failure
# and removes `work`.
demo_bench_setup() {
    local script="$1"
    shift
    if [ $# -lt 1 ] || [ $# -gt 2 ]; then
        echo "usage: $script RAINCAST_BINARY [SECONDS]" >&2
        exit 2
    fi
    bin="$(realpath "$1")"
    # shellcheck disable=SC2034 # read by the scripts that source this file
    secs="${2:-20}"
    command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 2; }
    work="$(mktemp -d "${TMPDIR:-/tmp}/raincast-bench.XXXXXX")"
    trap demo_bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

demo_bench_cleanup() {
    local rc=$?
    demo_server_stop
    [ "$rc" -eq 0 ] || tail -n 40 "$DEMO_LOG" 2>/dev/null || true
    rm -rf "$work"
    exit "$rc"
}
