#!/usr/bin/env bash
# Soak test of `raincast run` on the demo (issue 11): the release binary runs
# the whole service (demo radar, ingest, nowcast, notifier, HTTP API) for
# MINUTES minutes while wrk hammers /v1/forecast and a slow loop fetches the
# animation GIF. Every minute it records the process's RSS and peak RSS
# (VmRSS, VmHWM), wrk's p50/p99 latency, requests and errors, and the
# animation's status and time. Prints a Markdown table for docs/PERFORMANCE.md.
#
#   scripts/soak.sh [MINUTES]          (default 30)
#
# Environment: CARGO_TARGET_DIR (default $HOME/.cache/raincast/target),
# SOAK_CONNECTIONS (default 16), SOAK_THREADS (default 2). Needs wrk and curl
# (Debian packages). Not part of CI.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
minutes="${1:-30}"
conns="${SOAK_CONNECTIONS:-16}"
threads="${SOAK_THREADS:-2}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/raincast/target}"
command -v wrk >/dev/null || { echo "soak: wrk not found (apt-get install wrk)" >&2; exit 1; }

(cd "$here" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p raincast)
bin="$target/release/raincast"

work="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log="$work/raincast.log"
(cd "$work" && exec "$bin" run --listen "127.0.0.1:$port") >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; kill "${anim_pid:-0}" 2>/dev/null || true; }
trap cleanup EXIT
base="http://127.0.0.1:$port"
echo "soak: raincast run (pid $pid) in $work on $base; waiting for the first nowcast" >&2
for _ in $(seq 1 600); do
    if curl -fsS "$base/v1/forecast?lat=47.37&lon=8.54" -o /dev/null 2>/dev/null; then break; fi
    sleep 1
done
curl -fsS "$base/v1/forecast?lat=47.37&lon=8.54" -o /dev/null

# The slow loop: one animation every 10 s; status and seconds per request.
anim="$work/animation.tsv"
(
    while true; do
        curl -s -o /dev/null -w '%{http_code}\t%{time_total}\n' "$base/v1/radars/demo/animation.gif" >>"$anim" || echo "000	0" >>"$anim"
        sleep 10
    done
) &
anim_pid=$!

rss() { awk -v k="$1" '$1 == k":" { print int($2 / 1024) }' "/proc/$pid/status"; }
echo "| minute | RSS MB | peak RSS MB | requests | p50 ms | p99 ms | non-2xx + socket errors | animations (ok/all) | animation max s |"
echo "|---|---|---|---|---|---|---|---|---|"
for m in $(seq 1 "$minutes"); do
    out="$(wrk -t"$threads" -c"$conns" -d60s --latency "$base/v1/forecast?lat=47.37&lon=8.54" 2>&1)"
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    non2xx=$(awk '/Non-2xx/ { print $5 }' <<<"$out")
    sock=$(awk -F'[ ,]+' '/Socket errors/ { print $4 + $6 + $8 + $10 }' <<<"$out")
    errors=$(( ${non2xx:-0} + ${sock:-0} ))
    to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.2f", v / 1000; else if (v ~ /ms$/) printf "%.2f", v + 0; else if (v ~ /s$/) printf "%.0f", v * 1000; else print v }'; }
    a_all=$(wc -l <"$anim" 2>/dev/null || echo 0)
    a_ok=$(awk '$1 == 200' "$anim" 2>/dev/null | wc -l)
    a_max=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { printf "%.2f", m }' "$anim" 2>/dev/null)
    : >"$anim"
    echo "| $m | $(rss VmRSS) | $(rss VmHWM) | $reqs | $(to_ms "$p50") | $(to_ms "$p99") | $errors | $a_ok/$a_all | $a_max |"
    kill -0 "$pid" || { echo "soak: raincast exited; log in $log" >&2; exit 1; }
done
echo "soak: log in $log" >&2
