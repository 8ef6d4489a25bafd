#!/usr/bin/env bash
# Side-by-side benchmark against Triton (PyTriton), MLServer, KServe, FastAPI, a null nginx server and the
# in-process ONNX Runtime floor, using the shared harness in ../shared/bench (servers on core 0, client on
# core 1; read its README). Usage:
#   loadtest/peers.sh                     # the issue's points (~8 min); the first run installs the peers (~5 min)
#   loadtest/peers.sh --matrix standard   # any compare.py flag passes through
# Switchyard serves the same model files with dynamic batching on (see overlay.sh); nothing else differs.
set -euo pipefail
source "$(dirname "$0")/overlay.sh"
args=("$@")
# The issue's targets: small MLP at batch 1, concurrency 1 and 32; the compute-bound MLP at concurrency 32
# against the floor's best batch (the floor runs every batch size named here; 64 is the models' maximum).
[ ${#args[@]} -eq 0 ] && args=(--client both --points \
  mlp_small:1:1,mlp_small:1:32,mlp_large:1:32,mlp_large:8:32,mlp_large:64:1)
exec "$BENCH/run_peers.sh" \
  --target switchyard="$ROOT/target/release/switchyard serve --model-repository $OVERLAY --port {port} --log warn" \
  "${args[@]}"
