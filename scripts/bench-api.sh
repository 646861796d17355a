#!/usr/bin/env bash
# HTTP API benchmark on the synthetic demo radar (docs/PERFORMANCE.md, "HTTP API"):
#
#   scripts/bench-api.sh path/to/release/raincast [SECONDS]
#
# Starts `raincast run --listen 127.0.0.1:0` (demo radar, embedded default) in
# a temporary folder, waits for a nowcast and for the two-hour backfill to be
# ingested, then
#   1. GET /v1/forecast?lat&lon (answered from the nowcast in memory) with
#      wrk on loopback: -t2 -c32 and -t1 -c32 (one core left to the server),
#      SECONDS each (default 20), with the latency distribution;
#   2. GET /v1/radars/demo/animation.gif?past=25&future=60 (18 frames: 6
#      observed at 5-minute spacing and 12 forecast), first request (built)
#      and second (from the cache) timed by curl, with the render time the
#      server reports in /metrics and the GIF's size and frame count;
#   3. stops it and repeats 1. against `raincast api` over the store it
#      wrote (no ingest and no nowcast job competing for the two cores), then
#      the same for the Dark Sky compatible endpoint /forecast/KEY/LAT,LON
#      with the demo's API key;
#   4. when ../shared/data/bom/02 exists, ingests its 61 real 512x512 scans
#      into a new store and times an 18-frame animation of them as in 2.
# Prints the machine load (uptime) before and after. Needs wrk and curl
# (apt-get install wrk curl). During 1. and 2. the server keeps ingesting and
# nowcasting the demo radar (a scan every 10 s), as `raincast run` does; the
# number of nowcasts built during each wrk run is printed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR/.. source=scripts/demo-server.sh
. "$root/scripts/demo-server.sh"
demo_bench_setup "$0" "$@"

echo "== load before: $(uptime)"
demo_server_start "$bin" "$work" info
demo_server_wait_nowcast
# Caught up: the two-hour backfill ingested and the nowcast made from the
# newest scan, both less than a minute and a half old.
until python3 - "${DEMO_URL}v1/radars" <<'EOF'
import json, sys, urllib.request, datetime as dt
r = json.load(urllib.request.urlopen(sys.argv[1]))["radars"][0]
now = dt.datetime.now(dt.timezone.utc)
age = lambda k: (now - dt.datetime.fromisoformat(r[k].replace("Z", "+00:00"))).total_seconds() if r[k] else 1e9
sys.exit(0 if max(age("latest_scan_time"), age("latest_nowcast_time")) < 90 else 1)
EOF
do
    demo_server_alive "backfill not ingested" || exit 1
    sleep 2
done
demo_say "caught up with the demo radar (backfill ingested, nowcast current)"

# Nowcasts the server built since line $1 of its log: count, mean and max ms.
nowcasts_since() {
    tail -n +"$(($1 + 1))" "$DEMO_LOG" | sed 's/\x1b\[[0-9;]*m//g' | grep 'nowcast built' \
        | sed -n 's/.* ms=\([0-9.]*\).*/\1/p' \
        | awk '{n++; s+=$1; if ($1>m) m=$1} END {printf "%d nowcasts built meanwhile (mean %.0f ms, max %.0f ms)\n", n, n ? s/n : 0, m}'
}

point="${DEMO_URL}v1/forecast?lat=47.3&lon=8.2"
curl -fsS "$point" -o "$work/forecast.json"
echo "== forecast response: $(stat -c %s "$work/forecast.json") bytes: $(head -c 160 "$work/forecast.json")…"
bench_forecast() {
    local t lines
    for t in 2 1; do
        echo "== wrk -t$t -c32 -d${secs}s --latency '${label:-$point}'"
        lines=$(wc -l <"$DEMO_LOG")
        wrk -t"$t" -c32 -d"${secs}s" --latency "$point"
        echo "   server: $(nowcasts_since "$lines")"
    done
}
bench_forecast

# GIF timings: the first request (built), then two from the cache, with the
# render time the server reports and the GIF's size and frame count.
bench_gif() {
    local url="$1" fmt='%{http_code} %{time_total}s %{size_download} bytes\n' i
    echo "== GET $url: first request (built), then two from the cache"
    for i in 1 2 3; do
        printf 'request %s: ' "$i"
        curl -fsS -D "$work/h$i" -o "$work/a$i.gif" -w "$fmt" "$url"
        grep -i '^etag' "$work/h$i" | tr -d '\r'
    done
    curl -fsS "${DEMO_URL}metrics" | grep '^raincast_api_render_seconds_\(sum\|count\){kind="gif"}' || true
    python3 - "$work/a1.gif" <<'EOF'
# Frame count and size of a GIF: walk its blocks.
import sys
b = open(sys.argv[1], "rb").read()
w, h, flags = int.from_bytes(b[6:8], "little"), int.from_bytes(b[8:10], "little"), b[10]
i = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
frames = 0
def skip_sub(i):
    while b[i]:
        i += b[i] + 1
    return i + 1
while i < len(b) and b[i] != 0x3B:
    if b[i] == 0x21:
        i = skip_sub(i + 2)
    elif b[i] == 0x2C:
        frames += 1
        f = b[i + 9]
        i += 10 + (3 * 2 ** ((f & 7) + 1) if f & 0x80 else 0)
        i = skip_sub(i + 1)
    else:
        sys.exit("bad GIF block at %d" % i)
print("== GIF: %d x %d px, %d frames, %d bytes" % (w, h, frames, len(b)))
EOF
}
bench_gif "${DEMO_URL}v1/radars/demo/animation.gif?past=25&future=60"

# The same point over the store just written, served by `raincast api` (no
# ingest, no nowcast job: the nowcast is built on the first request and then
# answered from memory). The demo's 5-minute lead step keeps the response the same.
echo "== raincast api over the same store (jobs stopped)"
demo_server_stop
# A rate limit far above what wrk can send, for the compatible endpoint's key.
printf '[nowcast]\nlead_step_min = 5\n[api]\nrate_limit_per_minute = 1000000\n' >"$work/api.toml"
demo_server_start "$bin" "$work" info api --config "$work/api.toml"
point="${DEMO_URL}v1/forecast?lat=47.3&lon=8.2"
until curl -fsS --max-time 60 "$point" -o "$work/forecast-api.json" 2>/dev/null; do
    demo_server_alive "no forecast from raincast api" || exit 1
    sleep 2
done
echo "== forecast response: $(stat -c %s "$work/forecast-api.json") bytes"
bench_forecast
# The Dark Sky compatible endpoint at the same point, with the demo's API key
# (key check from the cache, time zone, 61 interpolated minutes).
point="${DEMO_URL}forecast/$(cat "$work/var/demo-api-key")/47.3,8.2?units=si"
label="${DEMO_URL}forecast/KEY/47.3,8.2?units=si"
curl -fsS "$point" -o "$work/darksky.json"
echo "== compatible response: $(stat -c %s "$work/darksky.json") bytes, $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["minutely"]["data"]), "minutely points")' "$work/darksky.json")"
bench_forecast
unset label
demo_server_stop

# 4. An 18-frame 512x512 animation of real scans: the 61 BOM Melbourne scans
#    of ../shared/data/bom/02 (512x512, 6 min) ingested into a new store,
#    served by `raincast api`: 6 observed frames (30 min) and 12 leads (72 min).
bom="$root/../shared/data/bom/02"
if [ -d "$bom" ]; then
    echo "== BOM Melbourne (512x512): ingest the 61 scans, then raincast api"
    mkdir -p "$work/bom/bucket/bom02/2018/06/16"
    # -p keeps the files' old times: a folder modified just now would be
    # left to settle (deferred) by the ingest.
    cp -p "$bom"/*.nc "$work/bom/bucket/bom02/2018/06/16/"
    cat >"$work/bom/raincast.toml" <<'EOF'
source = "bucket"
store = "store"

[[radars]]
id = "bom02"
name = "Melbourne"
location = { lat = -37.855, lon = 144.755 }
EOF
    (cd "$work/bom" && RAINCAST_LOG=warn "$bin" ingest --once --config raincast.toml \
        --since 2018-06-16T00:00:00Z --batch-size 100)
    echo
    demo_server_start "$bin" "$work/bom" info api --config raincast.toml
    # The nowcast first, so that the GIF's first request times the GIF alone.
    curl -fsS -o /dev/null "${DEMO_URL}v1/radars/bom02/nowcast"
    bench_gif "${DEMO_URL}v1/radars/bom02/animation.gif?past=30&future=72"
    sed 's/\x1b\[[0-9;]*m//g' "$DEMO_LOG" | grep -o 'nowcast built.*' || true
else
    echo "== skipped the BOM animation: $bom not found"
fi
echo "== load after: $(uptime)"
