#!/usr/bin/env bash
# Ingest throughput and stored size against local S3/DynamoDB-compatible servers.
#
#   scripts/bench-ingest.sh DATASET [moto|dynalite]
#
# DATASET is a folder below ../shared/data (bom/02, odim/opera/20180824, ...).
# Starts moto_server (S3, and DynamoDB unless "dynalite") and dynalite on free
# loopback ports, uploads the files under {radar}/{yyyy}/{mm}/{dd}/{file},
# times one `raincast ingest --once` over all of them (release build; set
# RAINCAST_BIN to use another binary), prints scans/s and the stored bytes per
# scan, and stops the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset="${1:?usage: scripts/bench-ingest.sh DATASET [moto|dynalite]}"
ddb="${2:-moto}"
data="../shared/data/$dataset"
[ -d "$data" ] || { echo "no such folder: $data" >&2; exit 1; }
. .ci/services.sh >/dev/null
bin="${RAINCAST_BIN:-${CARGO_TARGET_DIR:-target}/release/raincast}"
[ -x "$bin" ] || { echo "build it first: cargo build --release -p raincast" >&2; exit 1; }

# shellcheck source=scripts/bench-servers.sh disable=SC1091
. scripts/bench-servers.sh

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$moto_port" AWS_ENDPOINT_URL_DYNAMODB="$ddb_url"
radar="bench"
"$RAINCAST_SERVERS_DIR/moto-venv/bin/python" - "$data" "$radar" "$moto_port" <<'PY'
import os, re, sys, boto3
data, radar, port = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
s3.create_bucket(Bucket="bench")
for name in sorted(os.listdir(data)):
    m = re.search(r"(\d{4})(\d{2})(\d{2})", name)
    key = f"{radar}/{m.group(1)}/{m.group(2)}/{m.group(3)}/{name}"
    s3.upload_file(os.path.join(data, name), "bench", key)
PY
files="$(find "$data" -mindepth 1 -maxdepth 1 | wc -l)"
start=$(date +%s.%N)
RAINCAST_LOG=warn "$bin" ingest --once --source s3://bench --store dynamodb://bench- --create-tables \
    --radar "$radar" --since 1990-01-01T00:00:00Z --batch-size 100000 > "$work/summary.json"
end=$(date +%s.%N)
RAINCAST_LOG=warn "$bin" scans list --radar "$radar" --store dynamodb://bench- > "$work/scans.jsonl"
python3 - "$work/summary.json" "$work/scans.jsonl" "$start" "$end" "$files" "$dataset" "$ddb" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
scans = [json.loads(l) for l in open(sys.argv[2])]
secs = float(sys.argv[4]) - float(sys.argv[3])
n = summary["ingested"]
b = [s["bytes"] for s in scans]
t = [s["tiles"] for s in scans]
print(f"{sys.argv[6]} ({sys.argv[5]} files) into {sys.argv[7]} DynamoDB: ingested {n} in {secs:.2f} s "
      f"= {n / secs:.1f} scans/s; stored bytes per scan mean {sum(b) / len(b):,.0f} "
      f"(min {min(b):,}, max {max(b):,}); tiles per scan mean {sum(t) / len(t):.1f}")
PY
