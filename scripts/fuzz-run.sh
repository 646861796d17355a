#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while and prints how many inputs it ran.
#
#   scripts/fuzz-run.sh TARGET [SECONDS]      (default 60 s)
#
# TARGET is one of: decode_odim decode_bom decode_mch_gif decode_fmi_pgm
# decode_sparse. The corpus lives outside the repository, in
# $HOME/.cache/raincast/fuzz-corpus/TARGET; decoder corpora are seeded with
# the smallest real scan of their format from ../shared/data when that folder
# exists (the scans are never copied into the repository). Crashing inputs go
# to $HOME/.cache/raincast/fuzz-artifacts/TARGET/ and the script fails.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:?usage: scripts/fuzz-run.sh TARGET [SECONDS]}"
seconds="${2:-60}"

"$here/scripts/fuzz-build.sh" "$target"

export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/raincast/fuzz-target}"
sanitizer="${FUZZ_SANITIZER:-none}"
# Sanitizers need nightly-only rustc flags; RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them. A build without a sanitizer needs no such flag.
if [ "$sanitizer" != none ]; then export RUSTC_BOOTSTRAP=1; fi
cache="$HOME/.cache/raincast"
corpus="$cache/fuzz-corpus/$target"
artifacts="$cache/fuzz-artifacts/$target"
mkdir -p "$corpus" "$artifacts"

data="$here/../shared/data"
case "$target" in
    decode_odim) seed_dir="$data/odim/rmi" ;;
    decode_bom) seed_dir="$data/bom" ;;
    decode_mch_gif) seed_dir="$data/mch" ;;
    decode_fmi_pgm) seed_dir="$data/fmi" ;;
    *) seed_dir="" ;;
esac
if [ -n "$seed_dir" ] && [ -d "$seed_dir" ] && [ -z "$(ls -A "$corpus")" ]; then
    seed="$(find "$seed_dir" -type f -printf '%s %p\n' | sort -n | head -1 | cut -d' ' -f2-)"
    if [ -n "$seed" ]; then
        echo "fuzz-run: seeding $target with $seed"
        cp "$seed" "$corpus/seed-$(basename "$seed")"
    fi
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cd "$here/fuzz"
status=0
cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1 | tee "$log" | grep -E "^#[0-9]+ +(pulse|DONE)|ERROR|panicked|SUMMARY" || true
status=${PIPESTATUS[0]}
runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)"
echo "fuzz-run: $target: ${runs:-?} executions in ${seconds} s, exit status $status, corpus $(ls "$corpus" | wc -l) inputs"
exit "$status"
