#!/usr/bin/env bash
# Splits a raincast binary into what is deployed and what is kept:
#   OUTDIR/raincast        stripped (no symbols, no debug info), with a
#                          .gnu_debuglink naming raincast.debug
#   OUTDIR/raincast.debug  the symbols and line tables (objcopy --only-keep-debug)
# Symbolise a crash backtrace with the debug file beside the binary, e.g.
#   gdb -batch -ex 'info line *0xADDR' -s raincast.debug raincast
#   addr2line -f -C -e raincast.debug 0xOFFSET
# Prints both sizes, or "unchanged" when OUTDIR already holds the split of
# this BINARY (so Ansible can report no change).
#
# Usage: scripts/split-debug.sh BINARY [OUTDIR]   (OUTDIR defaults to BINARY's folder/stripped)
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 BINARY [OUTDIR]" >&2
    exit 2
fi
binary=$1
outdir=${2:-$(dirname -- "$binary")/stripped}
[ -f "$binary" ] || { echo "$0: no binary at $binary" >&2; exit 1; }
mkdir -p -- "$outdir"
out=$outdir/raincast
debug=$outdir/raincast.debug
stamp=$outdir/.source-sha256
want=$(sha256sum -- "$binary" | cut -d ' ' -f 1)

if [ -f "$out" ] && [ -f "$debug" ] && [ "$(cat -- "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "unchanged: $out ($(stat -c %s -- "$out") bytes), $debug ($(stat -c %s -- "$debug") bytes)"
    exit 0
fi

tmp=$(mktemp -d "$outdir/.split.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
objcopy --only-keep-debug -- "$binary" "$tmp/raincast.debug"
# The debug link carries the debug file's CRC: objcopy computes it from the
# file it is given, so the link is added from inside the folder that holds it.
(
    cd -- "$tmp"
    objcopy --strip-all --add-gnu-debuglink=raincast.debug -- "$(realpath -- "$binary")" raincast
)
chmod 0755 "$tmp/raincast"
chmod 0644 "$tmp/raincast.debug"
mv -f -- "$tmp/raincast.debug" "$debug"
mv -f -- "$tmp/raincast" "$out"
printf '%s' "$want" >"$stamp"
echo "split: $out ($(stat -c %s -- "$out") bytes), $debug ($(stat -c %s -- "$debug") bytes)"
