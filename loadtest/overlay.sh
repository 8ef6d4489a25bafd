# Sourced by the benchmark scripts: the shared harness's models (made if missing) and an overlay repository
# for Switchyard (target/bench-repo) with the same model.onnx files plus a config.yaml that turns dynamic
# batching on with no queue delay (an instance takes whatever is queued when it frees up).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
