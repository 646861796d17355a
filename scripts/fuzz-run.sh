#!/usr/bin/env bash
# Runs one cargo-fuzz target and prints how many inputs it ran, with
# libFuzzer's coverage figures.
#
#   scripts/fuzz-run.sh TARGET [SECONDS] [-runs=N]
#
# SECONDS (default 60) bounds the time, -runs=N the number of executions;
# with -runs alone the run has no time bound. Examples:
#   scripts/fuzz-run.sh decode_odim 60
#   nice -n 19 scripts/fuzz-run.sh decode_odim -runs=1000000
#
# TARGET is one of `cargo fuzz list` (in fuzz/): decode_odim decode_bom
# decode_mch_gif decode_fmi_pgm decode_nexrad decode_sparse key_template
# ingest_config. The corpus lives outside the repository, in
# $HOME/.cache/raincast/fuzz-corpus/TARGET, and is seeded (added to, never
# overwritten) on every run:
# * decoders: tiny synthetic scans (16 x 16 cells) that the project's own
#   writers produce (algorithms/examples/fuzz_seeds.rs); NEXRAD: the first
#   messages of the real sample volumes in ../shared/data/nexrad when that
#   folder exists, cropped at run time (the scans are never copied into the
#   repository);
# * key_template, ingest_config: the templates and configurations below and
#   examples/*.toml; fuzz/dicts/TARGET.dict, when present, is passed as a
#   dictionary.
# Crashing inputs (panics, aborts, timeouts of 20 s, allocations above
# 2 GB) go to $HOME/.cache/raincast/fuzz-artifacts/TARGET/ and the script
# fails.
#
# FUZZ_OVERFLOW_CHECKS=off builds the target as `cargo build --release` does
# (`cargo fuzz run -O`: no overflow checks, no debug assertions). cargo-fuzz's
# default keeps both on, and there decode_odim and decode_bom stop within
# minutes at a known overflow inside `hdf5-reader`: it panics only where
# overflow checks are on (a release build wraps, then refuses the file), and
# the decoders turn a panic into an error for the file anyway
# (docs/PERFORMANCE.md, "Fuzzing"). With the switch they fuzz past it.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
usage="usage: scripts/fuzz-run.sh TARGET [SECONDS] [-runs=N]"
target="${1:?$usage}"
shift
seconds=""
runs_arg=""
for arg in "$@"; do
    case "$arg" in
        -runs=*) runs_arg="$arg" ;;
        *[!0-9]* | "") echo "$usage" >&2; exit 2 ;;
        *) seconds="$arg" ;;
    esac
done
if [ -z "$runs_arg" ] && [ -z "$seconds" ]; then seconds=60; fi

cache="$HOME/.cache/raincast"
corpus="$cache/fuzz-corpus/$target"
artifacts="$cache/fuzz-artifacts/$target"
mkdir -p "$corpus" "$artifacts"

# ---- seeds ---------------------------------------------------------------
# Text seeds: one file each; \n in the text makes a line break.
seed_text() {
    printf '%b' "$2" >"$corpus/seed-$1"
}
case "$target" in
    decode_odim | decode_bom | decode_mch_gif | decode_fmi_pgm | decode_nexrad)
        seeds="$(mktemp -d)"
        nexrad_samples=()
        for f in "$here/../shared/data/nexrad/"*; do
            [ -f "$f" ] && nexrad_samples+=("$f")
        done
        echo "fuzz-run: writing synthetic seeds (cargo run --example fuzz_seeds)"
        (cd "$here" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}" \
            cargo run --quiet -p raincast-algorithms --example fuzz_seeds -- \
            "$seeds" "${nexrad_samples[@]}") | sed 's/^/fuzz-run:   /'
        if [ -d "$seeds/$target" ]; then cp "$seeds/$target/"* "$corpus/"; fi
        rm -rf "$seeds"
        ;;
    key_template)
        # template \n radar \n keys...
        seed_text default '{radar}/{yyyy}/{mm}/{dd}/{file}\nbom02\nbom02/2018/06/16/2_20180616_100000.prcp-cscn.nc\nbom02/2018/06/16/README\nbom03/2018/06/16/x.nc'
        seed_text nexrad '{yyyy}/{mm}/{dd}/{RADAR}/{RADAR}{yyyy}{mm}{dd}_{HH}{MM}{SS}{*}\nkatx\n2013/07/17/KATX/KATX20130717_195021_V06\n2013/07/17/KATX/KATX20130718_000000_V06_MDM'
        seed_text any '{radar}/{yyyy}{mm}{dd}/{*}_{HH}{MM}.h5\nbejab\nbejab/20210704/T_PAAH21_1550.h5\nbejab/20210704/x_2561.h5'
        seed_text file 'data/{RADAR}-{yyyy}/{mm}/{file}\nfmi\ndata/FMI-2016/09/201609281600_fmi.pgm.gz\ndata/FMI-2016/09/AQC161932100V_00005.801.gif\ndata/FMI-2016/10/201609281600_fmi.pgm.gz'
        ;;
    ingest_config)
        # TOML, then \n%%\n and environment / flag lines (see the target).
        for f in "$here"/examples/*.toml; do
            cp "$f" "$corpus/seed-$(basename "$f")"
        done
        seed_text minimal 'source = "s3://radar-raw/au"\nstore = "dynamodb://raincast-"\nretention_days = 7\n'
        seed_text radars '[ingest]\nschedule = "*/5 * * * *"\nlookback_minutes = 30\ntile_size = 64\n\n[[radars]]\nid = "bom02"\nformat = "bom"\nzr = { a = 200.0, b = 1.6 }\nlocation = { lat = -37.855, lon = 144.755 }\nkey_template = "{radar}/{yyyy}/{mm}/{dd}/{file}"\n'
        seed_text env 'key_template = "{radar}/{file}"\n%%\nSOURCE=/tmp/bucket\nRAINCAST_STORE=var/store\nRETENTION_DAYS=1.5\nSCHEDULE=0 * * * *\nBATCH_SIZE=10\nLOG_JSON=yes\nFAILPOINT=pause_after_put:3\n--radar=bom02\n--listen=127.0.0.1:9000\n--create-tables=true'
        ;;
esac

# ---- run -----------------------------------------------------------------
"$here/scripts/fuzz-build.sh" "$target"

export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$cache/fuzz-target}"
sanitizer="${FUZZ_SANITIZER:-none}"
# Sanitizers need nightly-only rustc flags; RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them. A build without a sanitizer needs no such flag.
if [ "$sanitizer" != none ]; then export RUSTC_BOOTSTRAP=1; fi
build_flags=()
case "${FUZZ_OVERFLOW_CHECKS:-on}" in
    on) ;;
    off) build_flags=(-O) ;;
    *) echo "FUZZ_OVERFLOW_CHECKS must be on or off" >&2; exit 2 ;;
esac

limits=(-timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=2048)
[ -n "$seconds" ] && limits+=("-max_total_time=$seconds")
[ -n "$runs_arg" ] && limits+=("$runs_arg")
dict="$here/fuzz/dicts/$target.dict"
[ -f "$dict" ] && limits+=("-dict=$dict")

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cd "$here/fuzz"
echo "fuzz-run: $target: ${build_flags[*]:+${build_flags[*]} }${limits[*]}"
start=$(date +%s)
set +e
cargo fuzz run "${build_flags[@]}" --sanitizer "$sanitizer" "$target" "$corpus" -- \
    "${limits[@]}" -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1 |
    tee "$log" | grep -E "^#[0-9]+[[:space:]]+(INITED|pulse|DONE)|ERROR|panicked|SUMMARY|^Test unit written"
status=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))
final_stat() { grep -oE "stat::$1: *[0-9]+" "$log" | grep -oE '[0-9]+$' | tail -1; }
last() { grep -oE "$1: *[0-9]+" "$log" | grep -oE '[0-9]+$' | tail -1; }
echo "fuzz-run: $target: $(final_stat number_of_executed_units || echo '?') executions in ${elapsed} s" \
    "($(final_stat average_exec_per_sec || echo '?')/s), cov: $(last cov || echo '?')," \
    "ft: $(last ft || echo '?'), peak RSS $(final_stat peak_rss_mb || echo '?') MB," \
    "exit status $status, corpus $(find "$corpus" -mindepth 1 -maxdepth 1 | wc -l) inputs," \
    "artifacts $(find "$artifacts" -mindepth 1 -maxdepth 1 | wc -l)"
exit "$status"
