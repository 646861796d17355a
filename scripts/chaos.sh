#!/usr/bin/env bash
# Crash test of `raincast run` on the demo: the release binary is killed with
# SIGKILL at random moments (8 to 47 s after each start, ROUNDS times) and
# restarted in the same folder, then runs FINAL seconds more and stops with
# Ctrl-C. Then it checks, from the service's own JSON log and its store:
#
# * no panic and no ERROR line (WARN lines are listed, not failed);
# * every raw scan key ingested at most once over all runs, every stored scan
#   time once, nothing but the hostile files below quarantined, and every
#   file in the demo bucket stored except at most the newest one per radar
#   (written after the last pass);
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
#   scripts/chaos.sh --check DIR            # only the checks, on DIR of an earlier demo run
#   scripts/chaos.sh --fleet [SCANS_DIR]    # the fleet: see below
#
# --fleet: two instances of `raincast run` share one S3 bucket and one
# DynamoDB store on a local moto_server (from PATH or .ci/services.sh's
# venv, whose boto3 uploads), while the scans of SCANS_DIR (default
# ../shared/data/bom/02, any one radar's folder) arrive one every UPLOAD_S
# (3) seconds as radar `chaos`; one instance or the other is killed with
# SIGKILL and restarted ROUNDS times. The same checks then run over both
# instances' logs and the shared store: every uploaded scan stored once,
# ingested once by one instance or the other, scored for skill at most once.
# With QUEUE=1 the instances ingest from an SQS queue that the bucket
# notifies of each new object (event-driven ingest, with its reconciler).
#
# Environment: CARGO_TARGET_DIR (default $HOME/.cache/raincast/target), ROUNDS,
# FINAL, KEEP (a folder to run in instead of a temporary one). Needs python3.
# Not part of CI (about 7 minutes); the same guarantees have their own tests
# (docs/ARCHITECTURE.md); this is the view from outside, on the whole process.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$HOME/.cache/raincast/target}"
bin="$target/release/raincast"

check() { # folder of a run: run*.log files, expected/RADAR.keys, and the
    # store the scans/quarantine lists come from (RAINCAST_* / the config)
    local dir=$1
    shift
    local lists r
    lists="$(mktemp -d)"
    for r in $(cd "$dir/expected" && ls); do
        r="${r%.keys}"
        (cd "$dir" && "$bin" scans list --radar "$r" "$@") >"$lists/$r.stored"
        (cd "$dir" && "$bin" scans quarantined --radar "$r" "$@") >"$lists/$r.quarantined"
    done
    local rc=0
    python3 - "$dir" "$lists" <<'PY' || rc=$?
import collections, glob, json, os, sys

run, lists = sys.argv[1], sys.argv[2]
problems, warns = [], collections.Counter()
posted, ingested, scored = collections.Counter(), collections.Counter(), collections.Counter()
known_prints = ("Demo API key:", "Raincast map:")
lines = []
for log in sorted(glob.glob(os.path.join(run, "**", "run*.log"), recursive=True)):
    with open(log, errors="replace") as fh:
        lines.extend(fh)
for line in lines:
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
for radar in sorted(f[:-len(".keys")] for f in os.listdir(os.path.join(run, "expected"))):
    files = sorted(l.strip() for l in open(os.path.join(run, "expected", f"{radar}.keys")) if l.strip())
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

demo_expected() { # the demo bucket's files, as keys, per radar
    local dir=$1 radar
    mkdir -p "$dir/expected"
    for radar in demo demo2; do
        (cd "$dir/var/bucket" && find "$radar" -type f -name '*.h5' | sort) >"$dir/expected/$radar.keys"
    done
}

scan_time() { # a scan's own time, from `raincast prep`
    "$bin" prep "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["time"])'
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

rounds="${ROUNDS:-10}"
final="${FINAL:-90}"
case "${1:-}" in
--check)
    dir="${2:?usage: scripts/chaos.sh --check DIR}"
    demo_expected "$dir"
    check "$dir"
    exit
    ;;
--fleet)
    scans="${2:-$here/../shared/data/bom/02}"
    [ -d "$scans" ] || { echo "chaos: no folder of scans at $scans" >&2; exit 2; }
    moto_bin="$(command -v moto_server || echo "$HOME/.cache/raincast/servers/moto-venv/bin/moto_server")"
    py="$(dirname "$moto_bin")/python"
    if ! [ -x "$moto_bin" ] || ! "$py" -c 'import boto3' 2>/dev/null; then
        echo "chaos: needs moto_server and boto3 in its venv (. .ci/services.sh)" >&2
        exit 2
    fi
    (cd "$here" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p raincast)
    work="${KEEP:-$(mktemp -d /tmp/raincast-chaos-fleet.XXXXXX)}"
    mkdir -p "$work/a" "$work/b" "$work/expected"
    s3port=$(free_port)
    "$moto_bin" -p "$s3port" >"$work/moto.log" 2>&1 &
    moto=$!
    trap 'kill "$moto" "${pa:-0}" "${pb:-0}" "${up:-0}" 2>/dev/null || true' EXIT
    export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$s3port" AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$s3port" \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
    # One key per scan, dated by the scan's own time (`raincast prep`).
    for f in $(find "$scans" -maxdepth 1 -type f | sort); do
        t="$(scan_time "$f")" || continue
        printf '%s chaos/%s/%s\n' "$f" "$(date -u -d "$t" +%Y/%m/%d)" "$(basename "$f")"
    done >"$work/uploads.txt"
    [ -s "$work/uploads.txt" ] || { echo "chaos: no readable scans in $scans" >&2; exit 2; }
    cut -d' ' -f2 "$work/uploads.txt" >"$work/expected/chaos.keys"
    first="$(head -n 1 "$work/uploads.txt" | cut -d' ' -f1)"
    since="$(scan_time "$first")"
    cat >"$work/raincast.toml" <<TOML
source = "s3://chaos-raw"
store = "dynamodb"
create_tables = true
key_template = "{radar}/{yyyy}/{mm}/{dd}/{file}"

[ingest]
schedule = "*/5 * * * * *"

[aws]
default_region = "us-east-1"

[[radars]]
id = "chaos"
TOML
    # The bucket first (moto needs a moment to listen), then the uploads.
    for _ in $(seq 1 50); do
        "$py" -c 'import os, boto3; boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"]).create_bucket(Bucket="chaos-raw")' \
            2>/dev/null && break
        sleep 0.2
    done
    if [ -n "${QUEUE:-}" ]; then
        # Event-driven ingest: the bucket notifies an SQS queue (with a
        # dead-letter queue after 5 receipts) of every new object.
        export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$s3port"
        queue_url="$("$py" - <<'PY'
import json, os
import boto3
sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"],
                   region_name=os.environ["AWS_REGION"])
dlq = sqs.create_queue(QueueName="chaos-raw-dlq")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
url = sqs.create_queue(QueueName="chaos-raw", Attributes={"RedrivePolicy": json.dumps(
    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})})["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"],
             region_name=os.environ["AWS_REGION"]).put_bucket_notification_configuration(
    Bucket="chaos-raw", NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
print(url)
PY
)"
        [ -n "$queue_url" ] || { echo "chaos: creating the queue failed" >&2; exit 1; }
        printf '\n[queue]\nurl = "%s"\n' "$queue_url" >>"$work/raincast.toml"
    fi
    "$py" - "$work/uploads.txt" "${UPLOAD_S:-3}" >"$work/upload.log" 2>&1 <<'PY' &
import os, sys, time
import boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
for line in open(sys.argv[1]):
    path, key = line.split()
    s3.upload_file(path, "chaos-raw", key)
    print(key, flush=True)
    time.sleep(float(sys.argv[2]))
PY
    up=$!
    start() { # instance folder; its pid is then in $!
        (cd "$work/$1" && exec "$bin" run --config ../raincast.toml --since "$since" \
            --listen "127.0.0.1:0" --log-json) >>"$work/$1/run.log" 2>&1 &
    }
    echo "chaos (fleet): two instances, $rounds kills while $(wc -l <"$work/uploads.txt") scans arrive, then $final s; in $work" >&2
    start a
    pa=$!
    start b
    pb=$!
    for i in $(seq 1 "$rounds"); do
        sleep $(( RANDOM % 20 + 5 ))
        if (( RANDOM % 2 )); then
            kill -9 "$pa"; wait "$pa" 2>/dev/null || true; start a; pa=$!; who=a
        else
            kill -9 "$pb"; wait "$pb" 2>/dev/null || true; start b; pb=$!; who=b
        fi
        echo "round $i/$rounds: killed instance $who" >&2
    done
    wait "$up" || { echo "chaos: the upload failed ($work/upload.log)" >&2; exit 1; }
    sleep "$final"
    kill -INT "$pa" "$pb"
    wait "$pa" || { echo "chaos: instance a did not stop cleanly" >&2; exit 1; }
    wait "$pb" || { echo "chaos: instance b did not stop cleanly" >&2; exit 1; }
    check "$work" --config "$work/raincast.toml"
    exit
    ;;
esac

(cd "$here" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p raincast)
work="${KEEP:-$(mktemp -d /tmp/raincast-chaos.XXXXXX)}"
mkdir -p "$work"
port=$(free_port)
echo "chaos: $rounds kills, then $final s; in $work" >&2
hostile() { # drops four bad files into each demo radar's folder of today
    local now stamp day radar dir src k
    # One instant for the day folder and the names (no midnight in between).
    now="$(date -u +%s)"
    stamp="$(date -u -d "@$now" +%Y%m%dT%H%M)"
    day="$(date -u -d "@$now" +%Y/%m/%d)"
    for radar in demo demo2; do
        dir="$work/var/bucket/$radar/$day"
        # A real scan (on whole 10 s, so not one of these files) of an
        # earlier minute: its key sorts before its copy's, so ingest, in key
        # order, stores it first and the copy is the duplicate (a scan of
        # this minute, not yet ingested, could lose to its own copy).
        src="$(find "$dir" -name "${radar}_*0Z.h5" 2>/dev/null | sort |
            awk -v lim="$dir/${radar}_${stamp}" '$0 < lim' | tail -n 1)"
        [ -n "$src" ] || continue
        # Demo scans are on whole 10 s; these names are not, so never clash.
        : >"$dir/${radar}_${stamp}05Z.h5"
        head -c 50000 /dev/urandom >"$dir/${radar}_${stamp}06Z.h5"
        head -c $(( $(stat -c %s "$src") / 2 )) "$src" >"$dir/${radar}_${stamp}07Z.h5"
        cp "$src" "$dir/${radar}_${stamp}08Z.h5"
        k="$radar/$day/${radar}_${stamp}"
        printf '%s truncated\n%s bad_magic\n%s truncated\n%s duplicate\n' \
            "${k}05Z.h5" "${k}06Z.h5" "${k}07Z.h5" "${k}08Z.h5" >>"$work/hostile.txt"
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
demo_expected "$work"
check "$work"
