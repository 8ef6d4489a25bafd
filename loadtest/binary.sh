#!/usr/bin/env bash
# perf_analyzer with binary tensors (the shared harness drives JSON only), against Switchyard with dynamic
# batching, then the in-process ONNX Runtime floor (the harness's session settings, one thread) at every
# batch size named; server and floor on core 0, client on core 1, as in peers.sh. Prints a markdown table.
# Usage: loadtest/binary.sh [model:batch:concurrency ...]
set -euo pipefail
source "$(dirname "$0")/overlay.sh"
points=("$@")
[ ${#points[@]} -eq 0 ] && points=(mlp_small:1:1 mlp_small:1:32 mlp_large:1:32 mlp_large:8:32 mlp_large:64:1)
port=18431
taskset -c 0 "$ROOT/target/release/switchyard" serve --model-repository "$OVERLAY" --port $port --log error &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs "127.0.0.1:$port/v2/models/mlp_large/ready" >/dev/null && break
  sleep 0.2
done
echo "| server | model | batch | conc | infer/s | p50 ms | p99 ms |"
echo "|---|---|---:|---:|---:|---:|---:|"
for p in "${points[@]}"; do
  IFS=: read -r model batch conc <<<"$p"
  out="$(taskset -c 1 timeout 120 "$BENCH_TOOLS/bin/perf_analyzer" -m "$model" -i http -u "127.0.0.1:$port" \
    -b "$batch" --concurrency-range "$conc" --measurement-interval 2000 --stability-percentage 100 --max-trials 6 \
    --input-tensor-format binary --output-tensor-format binary 2>&1)" || true
  tput="$(grep -oP 'Throughput: \K[0-9.]+' <<<"$out" | tail -1)" || true
  if [ -z "$tput" ]; then
    printf '| switchyard (binary) | %s | %s | %s | failed: %s | | |\n' "$model" "$batch" "$conc" "$(tail -1 <<<"$out")"
    continue
  fi
  p50="$(grep -oP 'p50 latency: \K[0-9]+' <<<"$out" | tail -1)"
  p99="$(grep -oP 'p99 latency: \K[0-9]+' <<<"$out" | tail -1)"
  printf '| switchyard (binary) | %s | %s | %s | %.0f | %.2f | %.2f |\n' "$model" "$batch" "$conc" "$tput" "$((p50))e-3" "$((p99))e-3"
done
kill $server
wait $server 2>/dev/null || true
BENCH_ORT_THREADS=1 taskset -c 0 "$BENCH_TOOLS/venv-base/bin/python" - "$BENCH/peers" "$MODELS" "${points[@]}" <<'PY'
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from ort_common import discover_models, make_session
models = discover_models(sys.argv[2])
for case in sorted({tuple(p.split(":")[:2]) for p in sys.argv[3:]}, key=lambda c: (c[0], int(c[1]))):
    name, b = case[0], int(case[1])
    sess = make_session(models[name])
    i = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal((b, i.shape[1])).astype(np.float32)
    for _ in range(20):
        sess.run(None, {i.name: x})
    lat, end = [], time.perf_counter() + 3
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        sess.run(None, {i.name: x})
        lat.append(time.perf_counter() - t0)
    lat = np.array(lat) * 1e3
    print(f"| onnxruntime in-process | {name} | {b} | 1 | {len(lat) * b / (lat.sum() / 1e3):.0f} | "
          f"{np.percentile(lat, 50):.2f} | {np.percentile(lat, 99):.2f} |")
PY
