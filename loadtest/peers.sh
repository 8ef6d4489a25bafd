#!/usr/bin/env bash
# Side-by-side benchmark against Triton (PyTriton), MLServer, KServe, FastAPI, a null nginx server and the
# in-process ONNX Runtime floor, using the shared harness in ../shared/bench (servers on core 0, client on
# core 1; read its README). Usage:
#   loadtest/peers.sh                     # quick matrix (~4 min); the first run installs the peers (~5 min)
#   loadtest/peers.sh --matrix standard   # any compare.py flag passes through
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${SWITCHYARD_BENCH_HARNESS:-$ROOT/../shared/bench}"
export BENCH_TOOLS="${BENCH_TOOLS:-/tmp/peers}"
[ -x "$BENCH_TOOLS/venv-base/bin/python" ] || "$BENCH/install_peers.sh"
make -C "$ROOT" setup build >/dev/null
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--matrix quick)
exec "$BENCH/run_peers.sh" \
  --target switchyard="$ROOT/target/release/switchyard serve --model-repository {repo} --port {port} --log warn" \
  "${args[@]}"
