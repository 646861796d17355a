#!/usr/bin/env bash
# Cached map tiles with wrk (docs/PERFORMANCE.md, "Map tiles"):
#
#   scripts/bench-tiles.sh path/to/release/raincast [SECONDS]
#
# Starts `raincast run --listen 127.0.0.1:0` on the two overlapping demo
# radars in a temporary folder, waits for a current nowcast, reads
# /public/weather-maps.json, renders one 256 px tile of the latest mosaic
# frame over both radars (zoom 7, Zürich), then runs wrk -t1 -c32 on that
# tile for SECONDS (default 20): every request after the first is served
# from the tile cache. Prints the load before and after; wrk's "Non-2xx"
# and "Socket errors" lines show errors. The server keeps ingesting and
# nowcasting both radars meanwhile, as `raincast run` does.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR/.. source=scripts/demo-server.sh
. "$root/scripts/demo-server.sh"
demo_bench_setup "$0" "$@"

echo "== load before: $(uptime)"
demo_server_start "$bin" "$work" warn
demo_server_wait_nowcast
path="$(curl -fsS "${DEMO_URL}public/weather-maps.json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["radar"]["past"][-1]["path"])')"
tile="${DEMO_URL%/}${path}/256/7/67/44/1/0_0.png"
echo "== tile: $tile"
curl -fsS -o "$work/tile.png" -w "first request: %{time_total}s, %{size_download} bytes\n" "$tile"
curl -fsS -o /dev/null -w "second request (cached): %{time_total}s\n" "$tile"
echo "== wrk -t1 -c32 -d${secs}s --latency (one core left to the server)"
wrk -t1 -c32 -d"${secs}s" --latency "$tile"
echo "== load after: $(uptime)"
