#!/usr/bin/env bash
# Builds localhost/switchyard:latest and :<version> with buildah (no daemon, chroot isolation, never
# pulling: the bases come from the store, see bases.sh).
#   scripts/image/build.sh prebuilt   the `prebuilt` target: target/release/switchyard and the venv's
#                                     onnxruntime wheel, staged into target/image/; no network (unshare -n)
#   scripts/image/build.sh full       the default target: compiles in the builder stage (crates.io) and
#                                     downloads the onnxruntime wheel (PyPI); extra `buildah build`
#                                     arguments may follow, e.g. --build-arg CUDA=1
source "$(dirname "$0")/common.sh"
cd "$ROOT"
mode=${1:?usage: build.sh prebuilt|full [buildah build args...]}; shift
log=target/image-build-$mode.log
mkdir -p target
args=(--isolation chroot --pull=never --format docker --build-arg "VERSION=$VERSION"
  --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" -t "$IMAGE:latest" -t "$IMAGE:$VERSION")
[ -d models/mlp ] || { echo "image: no demo repository in ./models: run \`make models\` first" >&2; exit 1; }
# The image these tags name now: removed once the new one replaces it, so rebuilds do not pile up in the
# vfs store (each image there is a full copy). Kept when anything else still uses it.
previous=$(podman image inspect -f '{{.Id}}' "$IMAGE:$VERSION" 2>/dev/null || true)

case "$mode" in
prebuilt)
  bin=${SWITCHYARD_BIN:-target/release/switchyard}
  [ -x "$bin" ] || { echo "image: $bin is missing: run \`make build\` first" >&2; exit 1; }
  ort=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
  [ -n "$ort" ] || { echo "image: no onnxruntime wheel in .venv: run \`make setup\` first" >&2; exit 1; }
  rm -rf target/image && mkdir -p target/image/onnxruntime
  cp -a "$(dirname "$ort")"/libonnxruntime*.so* target/image/onnxruntime/
  objcopy --strip-debug "$bin" target/image/switchyard
  say "building $IMAGE:$VERSION from $bin (target prebuilt, offline)"
  start=$(date +%s)
  if ! unshare -n buildah build "${args[@]}" --target prebuilt "$@" . >"$log" 2>&1; then
    tail -n 30 "$log" >&2; echo "image: build failed, full log in $log" >&2; exit 1
  fi
  ;;
full)
  say "building $IMAGE:$VERSION with the full multi-stage path (compiles Rust: about 5 minutes on 2 cores)"
  start=$(date +%s)
  if ! buildah build "${args[@]}" --build-arg "BUILDER_IMAGE=$BUILDER_IMAGE" \
    --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" "$@" . >"$log" 2>&1; then
    tail -n 30 "$log" >&2; echo "image: build failed, full log in $log" >&2; exit 1
  fi
  ;;
*) echo "usage: build.sh prebuilt|full" >&2; exit 2 ;;
esac
id=$(podman image inspect -f '{{.Id}}' "$IMAGE:$VERSION")
[ -z "$previous" ] || [ "$previous" = "$id" ] || podman rmi "$previous" >/dev/null 2>&1 || true
size=$(podman image inspect -f '{{.Size}}' "$IMAGE:$VERSION")
say "built $IMAGE:latest and $IMAGE:$VERSION in $(($(date +%s) - start)) s, $((size / 1000000)) MB"
