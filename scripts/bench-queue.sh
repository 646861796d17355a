#!/usr/bin/env bash
# Event-driven ingest at scale, against moto's S3 and SQS and a DynamoDB
# emulator (dynalite by default, or moto's), all on loopback.
#
#   scripts/bench-queue.sh [RADARS] [SCANS] [PROCESSES...] [-- moto]
#   scripts/bench-queue.sh 160 12 1 2 4
#
# For each number of consumer processes: fresh bucket, queue (with a
# dead-letter queue) and tables; that many consumer processes
# (`raincast ingest --queue URL`, as under `raincast run`; release build,
# RAINCAST_BIN to use another) are started, then RADARS synthetic radars x
# SCANS small ODIM_H5 volumes (the demo radar's generator, 64 x 64 cells) are
# uploaded at once, 16 in parallel, and S3 notifies the queue of each (the
# burst). One radar is configured, the others come in through `all_radars`.
# Prints scans per second (objects / time from the first upload to the last
# scan stored), the ingest lag from object creation (the notification's
# event time) to scan stored (p50, p99 and max over every object, from the
# consumers' debug log), CPU per scan (user + system of the consumer
# processes), and checks that every object was stored and both queues are
# empty.
set -euo pipefail
cd "$(dirname "$0")/.."
radars="${1:-160}"
scans="${2:-12}"
shift $(( $# >= 2 ? 2 : $# ))
procs=()
ddb=dynalite
while [ $# -gt 0 ]; do
    case $1 in
        --) shift; ddb="${1:-dynalite}"; break ;;
        *) procs+=("$1") ;;
    esac
    shift
done
[ "${#procs[@]}" -gt 0 ] || procs=(1 2 4)
# shellcheck source=.ci/services.sh disable=SC1091
. .ci/services.sh >/dev/null
target="${CARGO_TARGET_DIR:-target}"
bin="${RAINCAST_BIN:-$target/release/raincast}"
gen="$target/release/examples/demo_files"
[ -x "$bin" ] || { echo "build it first: cargo build --release -p raincast" >&2; exit 1; }
[ -x "$gen" ] || { echo "build it first: cargo build --release -p raincast-ingest --example demo_files" >&2; exit 1; }

# shellcheck source=scripts/bench-servers.sh disable=SC1091
. scripts/bench-servers.sh
"$gen" "$work/files" "$scans" 64 >/dev/null

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$moto_port" AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$moto_port"
export AWS_ENDPOINT_URL_DYNAMODB="$ddb_url"
echo "== $radars radars x $scans scans, consumers: ${procs[*]}, DynamoDB: $ddb, $(nproc) cores"
"$RAINCAST_SERVERS_DIR/moto-venv/bin/python" - "$bin" "$work" "$radars" "$moto_port" "$ddb" "${procs[@]}" <<'PY'
import concurrent.futures, json, math, os, resource, subprocess, sys, time
import boto3

bin_, work, radars, port, ddb = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
procs = [int(p) for p in sys.argv[6:]]
endpoint = f"http://127.0.0.1:{port}"
s3 = boto3.client("s3", endpoint_url=endpoint)
sqs = boto3.client("sqs", endpoint_url=endpoint)
files = []
for root, _, names in os.walk(os.path.join(work, "files", "demo")):
    for n in names:
        rel = os.path.relpath(os.path.join(root, n), os.path.join(work, "files", "demo"))
        files.append((rel, open(os.path.join(root, n), "rb").read()))
files.sort()

def lags_in(path):
    """The lag of every object stored, from a consumer's JSON log."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            if "notified object stored" not in line:
                continue
            try:
                out.append(float(json.loads(line)["fields"]["lag_s"]))
            except (ValueError, KeyError):
                pass
    return out

for p in procs:
    run = f"b{p}"
    bucket, queue = f"bench-{run}", f"bench-{run}"
    s3.create_bucket(Bucket=bucket)
    dlq_url = sqs.create_queue(QueueName=f"{queue}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=queue, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    keys = [f"r{r:03d}/{rel}" for r in range(radars) for rel, _ in files]
    body = {rel: data for rel, data in files}
    base = ["--radar", "r000", "--source", f"s3://{bucket}", "--store", f"dynamodb://{run}-"]
    env = dict(os.environ, RAINCAST_QUEUE__ALL_RADARS="true", RAINCAST_LOG_JSON="true",
               RAINCAST_LOG="raincast_ingest::queue=debug,warn")
    # The tables first, so that the consumers do not race to create them.
    subprocess.run([bin_, "ingest", "--once", "--create-tables"] + base, env=dict(env, RAINCAST_LOG="warn"),
                   check=True, capture_output=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    logs = [os.path.join(work, f"{run}-{i}.log") for i in range(p)]
    children = [subprocess.Popen([bin_, "ingest", "--queue", url] + base, env=env,
                                 stdout=subprocess.DEVNULL, stderr=open(log, "w")) for log in logs]
    time.sleep(2)  # started and polling
    # The burst: every object at once, 16 uploads in parallel.
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=body[k.split("/", 1)[1]]), keys))
    upload_s = time.time() - t0
    deadline = time.time() + 3600
    while sum(len(lags_in(l)) for l in logs) < len(keys):
        assert time.time() < deadline, "not all stored within an hour"
        assert all(c.poll() is None for c in children), "a consumer exited"
        time.sleep(0.2)
    wall = time.time() - t0
    # Every scan is stored; the last messages may still be between their
    # store and their DeleteMessage. Let the consumers finish those (or,
    # after a visibility timeout, take them again) before stopping them.
    def in_queue(u):
        a = sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessages",
                                     "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])
    settle_until = time.time() + 180
    while in_queue(url) > 0 and time.time() < settle_until:
        time.sleep(0.5)
    for c in children:
        c.terminate()
    for c in children:
        c.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lags = sorted(l for log in logs for l in lags_in(log))
    time.sleep(1)
    left = sum(int(sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessages",
               "ApproximateNumberOfMessagesNotVisible"])["Attributes"][a])
               for u in (url, dlq_url) for a in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"))
    assert len(lags) == len(keys), f"{len(lags)} stored for {len(keys)} objects"
    assert left <= 1, f"{left} messages left in the queues"  # at most the test event in flight
    q = lambda f: lags[min(len(lags), max(1, math.ceil(f * len(lags)))) - 1]
    print(f"{p} consumer process(es): {len(keys)} objects uploaded in {upload_s:.1f} s, all stored "
          f"{wall:.1f} s after the first upload = {len(keys) / wall:.1f} scans/s; lag p50 {q(0.5):.1f} s, "
          f"p99 {q(0.99):.1f} s, max {lags[-1]:.1f} s; CPU {cpu / len(keys) * 1000:.1f} ms per scan "
          f"(consumers, user + system)", flush=True)
PY
