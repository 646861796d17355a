#!/usr/bin/env bash
# Runs raincast-algorithms' unit tests (release profile) on an emulated
# x86-64 CPU without AVX (`qemu-x86_64 -cpu Nehalem`), so that every
# function with runtime-dispatched AVX2 clones (docs/ARCHITECTURE.md
# "Runtime CPU dispatch") runs its baseline clone, and must give what the
# tests expect, bit for bit where they say so. Run natively, the same tests
# take the AVX2 clones. A binary that required AVX2 would stop here with
# SIGILL ("uncaught target signal 4").
#
# Needs qemu-user (Debian's package; installed with apt-get when missing).
# Takes one to two minutes on the 2-core machine. Extra arguments go to the
# test binary (a filter, --nocapture, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v qemu-x86_64 >/dev/null; then
    echo "== installing qemu-user"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null
fi
exe=$(cargo test --release -p raincast-algorithms --lib --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "raincast_algorithms":
        print(m["executable"])')
[ -n "$exe" ] || { echo "no test binary built" >&2; exit 1; }
cd algorithms
CI="${CI:-true}" qemu-x86_64 -cpu Nehalem "$exe" "$@"
