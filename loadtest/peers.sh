#!/usr/bin/env bash
# Side-by-side benchmark against Triton (PyTriton), MLServer, KServe, FastAPI, a null nginx server and the
# in-process ONNX Runtime floor, using the shared harness in ../shared/bench (servers on core 0, client on
# core 1; read its README). Usage:
#   loadtest/peers.sh                     # the issue's matrix (~6 min); the first run installs the peers (~5 min)
#   loadtest/peers.sh --matrix standard   # any compare.py flag passes through
#
# Switchyard serves the harness's models through an overlay repository (target/bench-repo): the same
# model.onnx files, plus a config.yaml that turns dynamic batching on with no queue delay (an instance takes
# whatever is queued when it frees up). Nothing else differs from what the peers get.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${SWITCHYARD_BENCH_HARNESS:-$ROOT/../shared/bench}"
export BENCH_TOOLS="${BENCH_TOOLS:-/tmp/peers}"
[ -x "$BENCH_TOOLS/venv-base/bin/python" ] || "$BENCH/install_peers.sh"
make -C "$ROOT" setup build >/dev/null
MODELS="$BENCH_TOOLS/models"
[ -f "$MODELS/mlp_small/1/model.onnx" ] && [ -f "$MODELS/mlp_large/1/model.onnx" ] \
  || "$BENCH_TOOLS/venv-base/bin/python" "$BENCH/make_models.py" "$MODELS"
OVERLAY="$ROOT/target/bench-repo"
rm -rf "$OVERLAY"
for dir in "$MODELS"/*/; do
  name="$(basename "$dir")"
  mkdir -p "$OVERLAY/$name/1"
  ln -s "$dir/1/model.onnx" "$OVERLAY/$name/1/model.onnx"
  printf 'max_batch_size: 64\nintra_op_threads: 1\ndynamic_batching: {}\n' >"$OVERLAY/$name/config.yaml"
done
args=("$@")
# The issue's targets: small MLP at batch 1, concurrency 1 and 32; the compute-bound MLP at concurrency 32
# against the floor's best batch (the floor runs every batch size named here).
[ ${#args[@]} -eq 0 ] && args=(--client both --points \
  mlp_small:1:1,mlp_small:1:32,mlp_large:1:32,mlp_large:8:32,mlp_large:32:1,mlp_large:64:1)
exec "$BENCH/run_peers.sh" \
  --target switchyard="$ROOT/target/release/switchyard serve --model-repository $OVERLAY --port {port} --log warn" \
  "${args[@]}"
