#!/usr/bin/env bash
# What experiments and drift cost on the serving path (issue 15): infer/s and p50/p99 of a rollout
# endpoint (mlp version 1 against 2, 50/50, sticky by x-user-id, HTTP binary tensors, batch 1) measured
# by switchyard-loadgen at concurrency C with a unique x-user-id per request, in five setups side by side:
#   rollout            the endpoint alone (the baseline)
#   + experiment       with an `experiment:`: every request is remembered by its key for its feedback
#   + experiment, file the same with --state-dir (the feedback store's file, written by its writer thread)
#   + drift            no experiment; both versions monitor drift (`drift:`, 16 input and 10 output columns)
#   + both             the experiment with its file, and drift
# The server is pinned to core 0 and the client to core 1 (as grpc.sh). Prints a markdown table with each
# setup's throughput as a ratio of the baseline. A benchmark, not a test: it exits 0 either way.
# Needs target/release/switchyard, target/release/switchyard-loadgen (make build) and the test models
# (target/test-models, made by make test). Takes about a minute.
# Usage: loadtest/experiment.sh      Environment: C=32 SECONDS_MEASURED=5 PORT=18480
# Listens on 127.0.0.1 only; every server it starts is stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
C="${C:-32}" SECS="${SECONDS_MEASURED:-5}" PORT="${PORT:-18480}"
for f in target/release/switchyard target/release/switchyard-loadgen target/test-models/mlp/2/model.onnx; do
  [ -e "$f" ] || { echo "$f is missing: make build, and make test once for the test models" >&2; exit 1; }
done
OUT="$ROOT/target/loadtest/experiment"
rm -rf "$OUT" && mkdir -p "$OUT"
cp target/release/switchyard "$OUT/switchyard"
for repo in plain drift; do
  mkdir -p "$OUT/$repo" && cp -r target/test-models/mlp "$OUT/$repo/mlp"
done
printf 'versions: all\ndrift: { features: 16 }\n' >"$OUT/drift/mlp/config.yaml"
rollout='rollouts:\n  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, weight: 50 }\n    assignment: { header: x-user-id }\n'
experiment='    experiment: { primary: conversion, on_kill: none }\n'
printf "$rollout" >"$OUT/rollout.yaml"
printf "$rollout$experiment" >"$OUT/experiment.yaml"
server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap stop EXIT

# run NAME REPO CONFIG [--state-dir]: one setup; appends "name throughput p50 p99" to results.
run() {
  local name="$1" repo="$2" config="$3" state=()
  [ "${4:-}" = state ] && state=(--state-dir "$OUT/state-$RANDOM")
  taskset -c 0 "$OUT/switchyard" serve --model-repository "$OUT/$repo" --config "$OUT/$config" "${state[@]}" \
    --host 127.0.0.1 --port "$PORT" --grpc-port off >"$OUT/$name.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.1; done
  taskset -c 1 target/release/switchyard-loadgen --url "http://127.0.0.1:$PORT" --model scorer \
    --input input:1,64 --concurrency "$C" --duration "$SECS" --key-header x-user-id >"$OUT/$name.json"
  stop
  python3 - "$name" "$OUT/$name.json" >>"$OUT/results.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print(f"{sys.argv[1]}\t{r['throughput']:.0f}\t{r['p50_us'] / 1000:.3f}\t{r['p99_us'] / 1000:.3f}\t{r['errors']}")
PY
}

run "rollout" plain rollout.yaml
run "+ experiment" plain experiment.yaml
run "+ experiment, file" plain experiment.yaml state
run "+ drift" drift rollout.yaml
run "+ both" drift experiment.yaml state
python3 - "$OUT/results.txt" "$C" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
base = float(rows[0][1])
print(f"| setup (c={sys.argv[2]}) | infer/s | p50 ms | p99 ms | errors | vs rollout |")
print("|---|---:|---:|---:|---:|---:|")
for name, t, p50, p99, errors in rows:
    print(f"| {name} | {float(t):,.0f} | {p50} | {p99} | {errors} | {float(t) / base:.2f} |")
PY
