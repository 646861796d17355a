#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ (or the ones named as arguments) on
# the stable toolchain. CI calls it to check that the targets still build.
#
# Only the stable toolchain is installed. Without a sanitizer (the default)
# cargo-fuzz uses stable rustc flags only (SanitizerCoverage passes and
# `--cfg fuzzing`); FUZZ_SANITIZER=address builds with AddressSanitizer, whose
# nightly-only flag the stable compiler accepts under RUSTC_BOOTSTRAP=1. The
# project forbids unsafe code, and sanitizer-free builds run several times
# faster, hence the default.
#
# Environment: FUZZ_TARGET_DIR (default $HOME/.cache/raincast/fuzz-target),
# FUZZ_SANITIZER (default none). cargo-fuzz is installed into ~/.cargo/bin on
# first use and reused afterwards.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/raincast/fuzz-target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
sanitizer="${FUZZ_SANITIZER:-none}"
if [ "$sanitizer" != none ]; then export RUSTC_BOOTSTRAP=1; fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-build: installing cargo-fuzz"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
for t in "${targets[@]}"; do
    echo "fuzz-build: $t (sanitizer: $sanitizer)"
    cargo fuzz build --sanitizer "$sanitizer" "$t"
done
echo "fuzz-build: built ${#targets[@]} targets in $CARGO_TARGET_DIR"
