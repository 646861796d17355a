# Sourced by the benchmark scripts: starts moto_server (S3, SQS, and
# DynamoDB unless $ddb is "dynalite") and, with ddb=dynalite, dynalite on free
# loopback ports, waits until they answer, and stops them (and removes
# $work) on exit. Sets: work (a temporary folder), moto_port, ddb_url.
# shellcheck shell=bash

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
moto_port="$(free_port)"
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 & pids+=($!)
ddb_url="http://127.0.0.1:$moto_port"
if [ "${ddb:-moto}" = dynalite ]; then
    d_port="$(free_port)"
    dynalite --host 127.0.0.1 --port "$d_port" >"$work/dynalite.log" 2>&1 & pids+=($!)
    ddb_url="http://127.0.0.1:$d_port"
fi
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && curl -s -o /dev/null "$ddb_url/" && break
    sleep 0.2
done
export work moto_port ddb_url
