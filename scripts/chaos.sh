#!/usr/bin/env bash
# Crash test of `raincast run` on the demo: the release binary is killed with
# SIGKILL at random moments (8 to 47 s after each start, ROUNDS times) and
# restarted in the same folder, then runs FINAL seconds more and stops with
# Ctrl-C. Then it checks, from the service's own JSON log and its store:
#
# * no panic and no ERROR line (WARN lines are listed, not failed);
# * every raw scan key ingested at most once over all runs, every stored scan
#   time once, nothing quarantined, and every file in the demo bucket stored
#   except at most the newest one per radar (written after the last pass);
# * every notifier event posted at most once (a post found already made by an
#   earlier, killed attempt is logged as such and is not a second post);
# * every scan scored for live skill at most once;
# * the hostile files it drops into the demo bucket a few seconds into each
#   round (an empty file, random bytes, the first half of a real scan, and a
#   real scan copied under another name, whose scan is then already stored)
#   are each quarantined with the expected reason code, and the rest goes on.
#
#   scripts/chaos.sh                        # 10 rounds, 90 s final run
#   ROUNDS=30 FINAL=120 scripts/chaos.sh
#   scripts/chaos.sh --check DIR            # only the checks, on DIR of an earlier run
#
# Environment: CARGO_TARGET_DIR (default $HOME/.cache/raincast/target), ROUNDS,
# FINAL, KEEP (a folder to run in instead of a temporary one). Needs python3.
# Not part of CI (about 7 minutes); the same guarantees have their own tests
# (docs/ARCHITECTURE.md); this is the view from outside, on the whole process.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$HOME/.cache/raincast/target}"
bin="$target/release/raincast"

check() { # folder of a run (holds run.log and var/)
    local dir=$1
    local lists
    lists="$(mktemp -d)"
    for r in demo demo2; do
        (cd "$dir" && "$bin" scans list --radar "$r") >"$lists/$r.stored" 2>/dev/null
        (cd "$dir" && "$bin" scans quarantined --radar "$r") >"$lists/$r.quarantined" 2>/dev/null
    done
    local rc=0
    python3 - "$dir" "$lists" <<'PY' || rc=$?
import collections, glob, json, os, sys

run, lists = sys.argv[1], sys.argv[2]
problems, warns = [], collections.Counter()
posted, ingested, scored = collections.Counter(), collections.Counter(), collections.Counter()
known_prints = ("Demo API key:", "Raincast map:")
with open(os.path.join(run, "run.log"), errors="replace") as fh:
    for line in fh:
        if not line.startswith("{"):
            if line.strip() and not line.startswith(known_prints):
                problems.append(f"not a log line (a panic?): {line.strip()[:200]}")
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            # The last line of a killed run may be cut off.
            continue
        f, level = rec.get("fields", {}), rec.get("level")
        msg = f.get("message", "")
        if level == "ERROR":
            problems.append(f"ERROR: {msg} {f}")
        elif level == "WARN":
            warns[msg] += 1
        if msg == "posted" and not f.get("already"):
            posted[f.get("key")] += 1
        elif msg.startswith("ingested scan"):
            ingested[f.get("key")] += 1
        elif msg == "live skill scored":
            scored[(f.get("radar"), f.get("scan_time"))] += 1
hostile = {}
hostile_list = os.path.join(run, "hostile.txt")
if os.path.exists(hostile_list):
    for line in open(hostile_list):
        key, code = line.split()
        hostile[key] = code
for what, counter in (("posted", posted), ("ingested", ingested), ("scored for skill", scored)):
    twice = [k for k, n in counter.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} {what} more than once, e.g. {twice[:3]}")
for radar in ("demo", "demo2"):
    files = sorted(p for p in glob.glob(os.path.join(run, "var", "bucket", radar, "**", "*"),
                                        recursive=True) if os.path.isfile(p))
    bucket = os.path.join(run, "var", "bucket")
    files = [os.path.relpath(p, bucket) for p in files]
    bad = {k: c for k, c in hostile.items() if k.startswith(f"{radar}/")}
    files = [k for k in files if k not in bad]
    stored = [json.loads(l) for l in open(os.path.join(lists, f"{radar}.stored")) if l.strip()]
    quarantined = {q["key"]: q for q in map(json.loads, open(os.path.join(lists, f"{radar}.quarantined")))}
    keys = {k for k in ingested if k and k.startswith(f"{radar}/")}
    times = [s["time"] for s in stored]
    if len(set(times)) != len(times):
        problems.append(f"{radar}: a scan time stored twice")
    for key, code in bad.items():
        got = quarantined.get(key, {}).get("reason_code")
        if got != code:
            problems.append(f"{radar}: hostile file {key} ({code}): quarantined as {got}")
    others = [k for k in quarantined if k not in bad]
    if others:
        problems.append(f"{radar}: {len(others)} good files quarantined, e.g. {quarantined[others[0]]}")
    newest = max((s["source_key"] for s in stored), default="")
    missing = [k for k in files if k <= newest and k not in {s["source_key"] for s in stored}]
    if missing or len(files) - len(stored) > 1:
        problems.append(f"{radar}: {len(files)} files in the bucket, {len(stored)} scans stored, "
                        f"not stored: {missing[:3]}")
    print(f"{radar}: {len(files)} files, {len(stored)} stored, {len(keys)} keys ingested "
          f"(over all runs), {len(bad)} hostile files, {len(quarantined)} quarantined")
print(f"posts: {len(posted)} events, each once: {all(n == 1 for n in posted.values())}; "
      f"live skill: {len(scored)} scans scored")
for msg, n in warns.most_common():
    print(f"WARN x{n}: {msg}")
for p in problems:
    print(f"PROBLEM: {p}")
print("chaos check: " + ("FAILED" if problems else "passed"))
sys.exit(1 if problems else 0)
PY
    rm -rf "$lists"
    return $rc
}

if [ "${1:-}" = "--check" ]; then
    check "${2:?usage: scripts/chaos.sh --check DIR}"
    exit
fi

rounds="${ROUNDS:-10}"
final="${FINAL:-90}"
(cd "$here" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p raincast)
work="${KEEP:-$(mktemp -d /tmp/raincast-chaos.XXXXXX)}"
mkdir -p "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "chaos: $rounds kills, then $final s; in $work" >&2
hostile() { # drops four bad files into each demo radar's folder of today
    local stamp radar dir src
    stamp="$(date -u +%Y%m%dT%H%M)"
    for radar in demo demo2; do
        dir="$work/var/bucket/$radar/$(date -u +%Y/%m/%d)"
        # A real scan (on whole 10 s, so not one of these files).
        src="$(find "$dir" -name "${radar}_*0Z.h5" 2>/dev/null | sort | tail -n 3 | head -n 1)"
        [ -n "$src" ] || continue
        # Demo scans are on whole 10 s; these names are not, so never clash.
        : >"$dir/${radar}_${stamp}05Z.h5"
        head -c 50000 /dev/urandom >"$dir/${radar}_${stamp}06Z.h5"
        head -c $(( $(stat -c %s "$src") / 2 )) "$src" >"$dir/${radar}_${stamp}07Z.h5"
        cp "$src" "$dir/${radar}_${stamp}08Z.h5"
        printf '%s truncated\n%s bad_magic\n%s truncated\n%s duplicate\n' \
            "$radar/$(date -u +%Y/%m/%d)/${radar}_${stamp}05Z.h5" \
            "$radar/$(date -u +%Y/%m/%d)/${radar}_${stamp}06Z.h5" \
            "$radar/$(date -u +%Y/%m/%d)/${radar}_${stamp}07Z.h5" \
            "$radar/$(date -u +%Y/%m/%d)/${radar}_${stamp}08Z.h5" >>"$work/hostile.txt"
    done
}
for i in $(seq 1 "$rounds"); do
    (cd "$work" && exec "$bin" run --listen "127.0.0.1:$port" --log-json) >>"$work/run.log" 2>&1 &
    pid=$!
    t=$(( RANDOM % 40 + 8 ))
    sleep 4
    # One set per minute at most (the names carry the minute).
    if ! grep -qF "$(date -u +%Y%m%dT%H%M)05Z" "$work/hostile.txt" 2>/dev/null; then
        hostile
    fi
    sleep $(( t - 4 ))
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    echo "round $i/$rounds: killed after $t s" >&2
done
(cd "$work" && exec "$bin" run --listen "127.0.0.1:$port" --log-json) >>"$work/run.log" 2>&1 &
pid=$!
sleep "$final"
kill -INT "$pid"
wait "$pid" || { echo "chaos: the final run did not stop cleanly" >&2; exit 1; }
check "$work"
