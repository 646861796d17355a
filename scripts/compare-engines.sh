#!/usr/bin/env bash
# Issue 16's side-by-side table on every day in ../shared/data, in one run:
# the OpenCV DIS recipe, Raincast (default and plain), pysteps LK + semi-
# Lagrangian, pysteps S-PROG and persistence, single thread, through
# scripts/compare_pysteps.py (see its docstring for the methods and the
# timing rules). Then the OPERA composite, timing and peak memory only.
#
#   scripts/compare-engines.sh                 # 24 start times per day
#   MAX_CASES=6 scripts/compare-engines.sh     # quicker, fewer cases
#   scripts/compare-engines.sh DIR...          # your own days instead (one radar
#                                              # per folder; leads to 60 min, or
#                                              # LEAD=30 for short days)
#
# Needs a release build (`cargo build --release -p raincast`) and a Python
# with pysteps and opencv-python-headless:
#   python3 -m venv /tmp/pysteps-venv
#   /tmp/pysteps-venv/bin/pip install pysteps opencv-python-headless h5py netCDF4 pillow
# Environment: PY (that Python), RAINCAST (the binary), DATA (the shared
# data folder), MAX_CASES, OUT (a folder for the JSON of each day), WARM
# (default 0; N: Raincast's default run also builds its nowcast N more
# times in its process and reports the last as "warm", see PERFORMANCE.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
DATA=${DATA:-$here/../../shared/data}
PY=${PY:-/tmp/pysteps-venv/bin/python}
RAINCAST=${RAINCAST:-${CARGO_TARGET_DIR:-$here/../target}/release/raincast}
MAX_CASES=${MAX_CASES:-24}
WARM=${WARM:-0}
OUT=${OUT:-$(mktemp -d /tmp/compare-engines.XXXXXX)}

[ -x "$RAINCAST" ] || { echo "no release binary at $RAINCAST (cargo build --release -p raincast)" >&2; exit 2; }
[ -x "$PY" ] || { echo "no Python at $PY (see the header of $0)" >&2; exit 2; }
[ -d "$DATA" ] || { echo "no shared data at $DATA" >&2; exit 2; }
mkdir -p "$OUT"

compare() { # folder (absolute, or below DATA) name [extra args]
    local folder=$1 name=$2
    shift 2
    case $folder in /*) ;; *) folder=$DATA/$folder ;; esac
    if [ ! -d "$folder" ]; then
        echo "skipped: $folder not found" >&2
        return
    fi
    echo "== $folder ($(date -u +%H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$PY" "$here/compare_pysteps.py" "$folder" --raincast "$RAINCAST" \
        --max-cases "$MAX_CASES" --warm "$WARM" --json-out "$OUT/$name.json" "$@"
    echo
}

if [ $# -gt 0 ]; then
    # Your own days: each folder with the same methods and rules. A day
    # too short for 60 min of leads says how long a lead fits; LEAD=N sets it.
    for dir in "$@"; do
        name=$(basename "$dir")
        if [ -n "${LEAD:-}" ]; then
            compare "$(cd "$dir" && pwd)" "$name" --max-lead "$LEAD" \
                --report-leads "$((LEAD / 2)),$LEAD" || true
        else
            compare "$(cd "$dir" && pwd)" "$name" || true
        fi
    done
    echo "JSON per day in $OUT"
    exit 0
fi

compare bom/02 bom
compare mch/20160711 mch
compare odim/rmi/20210704 rmi
# One hour of scans: leads to 30 min.
compare fmi/20160928 fmi --max-lead 30 --report-leads 15,30
if [ -d "$DATA/odim/opera/20180824" ]; then
    echo "== odim/opera/20180824 ($(date -u +%H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$PY" "$here/compare_pysteps.py" "$DATA/odim/opera/20180824" --raincast "$RAINCAST" \
        --timing-only --no-pysteps --repeats 3 --json-out "$OUT/opera.json"
fi
echo "JSON per day in $OUT"
