#!/usr/bin/env bash
# The container image as a user gets it (part of `make test`, through `make test-image`):
#   - hadolint finds nothing in the Dockerfile;
#   - the image builds with buildah (chroot isolation, never pulling, offline) on the stand-in bases;
#   - its config: non-root user, STOPSIGNAL, EXPOSE, HEALTHCHECK;
#   - podman (runc, host network, 127.0.0.1, a free port) runs it: /ready turns 200, the demo request
#     to /v2/models/mlp/infer gets the same numbers as ONNX Runtime in Python, the server process runs
#     as uid 10001, the HEALTHCHECK passes, and SIGTERM (`podman stop`) stops it with exit code 0;
#   - mounts over /models and /etc/switchyard/switchyard.yaml replace the baked-in repository and config.
# Usage: tests/image/test_image.sh                 build the `prebuilt` target, then check it
#        tests/image/test_image.sh --no-build IMG  check an image already built (make image-full)
# Prints `image: N passed, N failed[, N skipped]` last; without root, buildah or podman it says why it
# skipped and exits 0. Everything it starts stops by itself: the container is removed on exit and podman
# kills it after 300 s in any case.
source "$(dirname "$0")/../../scripts/image/common.sh"
cd "$ROOT"
PY=${PY:-.venv/bin/python}
HADOLINT=${HADOLINT:-.venv/bin/hadolint}
build=1
if [ "${1:-}" = --no-build ]; then build=0; IMAGE_REF=${2:?--no-build needs an image}; else IMAGE_REF=$IMAGE:$VERSION; fi

passed=0 failed=0 skipped=0
ok() { passed=$((passed + 1)); echo "image: ok   $*"; }
bad() { failed=$((failed + 1)); echo "image: FAIL $*"; }
summary() {
  if [ "$skipped" -gt 0 ]; then echo "image: $passed passed, $failed failed, $skipped skipped"
  else echo "image: $passed passed, $failed failed"; fi
}
skip_all() {
  echo "image: skipped: $*"
  skipped=$((skipped + 1)); summary; exit 0
}

# 1. hadolint: needs nothing but the venv.
if [ -x "$HADOLINT" ]; then
  if out=$("$HADOLINT" --no-color Dockerfile 2>&1); then ok "hadolint Dockerfile is clean"
  else bad "hadolint Dockerfile:"; echo "$out" >&2; fi
else
  skipped=$((skipped + 1)); echo "image: skipped hadolint: $HADOLINT missing (make setup)"
fi

[ "$(id -u)" = 0 ] || skip_all "not root: buildah (chroot isolation) and podman (runc) need root here"
for tool in buildah podman runc unshare curl; do
  command -v "$tool" >/dev/null || skip_all "$tool is not installed (scripts/install_system_packages.sh installs it)"
done
[ -x "$PY" ] || skip_all "$PY missing (make setup)"

# 2. Build.
if [ "$build" = 1 ]; then
  if ! podman image exists "$(qualify "$RUNTIME_IMAGE")"; then
    command -v mmdebstrap >/dev/null || skip_all "mmdebstrap is not installed and there is no stand-in $RUNTIME_IMAGE"
  fi
  if scripts/image/bases.sh runtime && scripts/image/build.sh prebuilt; then ok "the image builds (buildah, chroot, --pull=never, no network)"
  else bad "the image does not build"; summary; exit 1; fi
fi

# 3. The image's config.
cfg=$(podman image inspect -f '{{.User}}|{{.Config.StopSignal}}|{{range $p, $_ := .Config.ExposedPorts}}{{$p}}{{end}}|{{.HealthCheck.Test}}' "$IMAGE_REF" 2>&1) || true
case "$cfg" in
  "10001:10001|SIGTERM|8000/tcp8001/tcp|[CMD /bin/bash -c "*/health*) ok "config: user 10001, STOPSIGNAL SIGTERM, EXPOSE 8000 8001, HEALTHCHECK on /health" ;;
  *) bad "config is '$cfg'" ;;
esac

# 4. Run it. (First remove what an interrupted run may have left: podman's --timeout stopped it.)
podman ps -a -q --filter name=switchyard-test- --filter status=exited | xargs -r podman rm >/dev/null 2>&1 || true
name=switchyard-test-$$
cleanup() { podman rm -f -t 0 "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
if ! podman --runtime runc run -d --name "$name" --pull=never --network host --timeout 300 \
  --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 -e SWITCHYARD_PORT="$port" -e SWITCHYARD_LOG_FORMAT=json \
  "$IMAGE_REF" >/dev/null 2>"target/image-run.err"; then
  bad "podman run failed: $(tail -n 3 target/image-run.err)"; summary; exit 1
fi

code=000 deadline=$((SECONDS + 90))
while [ $SECONDS -lt $deadline ]; do
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$base/ready" || true)
  [ "$code" = 200 ] && break
  [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] || break
  sleep 0.2
done
if [ "$code" = 200 ]; then ok "/ready answers 200 on 127.0.0.1:$port"
else bad "/ready answered $code"; podman logs "$name" 2>&1 | tail -n 20 >&2; summary; exit 1; fi

reply=$(curl -s -m 10 "$base/v2/models/mlp/infer" -H 'Content-Type: application/json' -d @config/mlp-request.json)
if err=$("$PY" - "$reply" <<'PYEOF' 2>&1
import json, sys
import numpy as np, onnxruntime as ort
r = json.loads(sys.argv[1])
req = json.load(open("config/mlp-request.json"))
out = r["outputs"]
assert isinstance(out, list) and len(out) == 1, r
o = out[0]
assert o["datatype"] == "FP32" and o["shape"] == [2, 10] and len(o["data"]) == 20, o
x = np.array(req["inputs"][0]["data"], np.float32).reshape(2, 64)
sess = ort.InferenceSession(f"models/mlp/{r['model_version']}/model.onnx", providers=["CPUExecutionProvider"])
want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
got = np.array(o["data"], np.float32).reshape(2, 10)
assert np.allclose(got, want, rtol=1e-5, atol=1e-6), (got, want)
PYEOF
); then ok "POST /v2/models/mlp/infer: outputs [2, 10] FP32, equal to ONNX Runtime in Python"
else bad "inference: $err"; fi

pid=$(podman inspect -f '{{.State.Pid}}' "$name" 2>/dev/null || echo 0)
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status" 2>/dev/null || echo "?")
comm=$(cat "/proc/$pid/comm" 2>/dev/null || echo "?")
if [ "$uids" = "10001 10001 10001 10001" ] && [ "$comm" = switchyard ]; then ok "the server (PID 1 in the container) runs as uid 10001, not root"
else bad "the container's PID 1 is '$comm' with uids '$uids'"; fi

if podman healthcheck run "$name" >/dev/null 2>&1; then ok "HEALTHCHECK passes"
else bad "HEALTHCHECK fails: $(podman healthcheck run "$name" 2>&1 | tail -n 2)"; fi

start=$SECONDS
podman stop -t 20 "$name" >/dev/null 2>&1 || true
took=$((SECONDS - start))
exit_code=$(podman inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null || echo "?")
if [ "$exit_code" = 0 ] && [ $took -lt 15 ]; then ok "SIGTERM (podman stop): drained and exited 0 in ${took} s"
else bad "after podman stop: exit code $exit_code after ${took} s"; podman logs "$name" 2>&1 | tail -n 5 >&2; fi
podman logs "$name" 2>&1 | grep -q '"stopped"' || bad "the server's log has no 'stopped' line"
cleanup

# 5. The baked-in repository and config give way to mounts: a repository with one model under another
#    name, and a config whose 500-byte request limit the demo request (918 bytes) exceeds.
name=switchyard-test-mounts-$$
mounts=$(mktemp -d /tmp/switchyard-image-test.XXXXXX)
trap 'cleanup; rm -rf "$mounts"' EXIT
mkdir -p "$mounts/repo" && cp -r models/multi_io "$mounts/repo/mounted" && chmod -R a+rX "$mounts"
printf 'server:\n  max_request_bytes: 500\n' >"$mounts/config.yaml"
podman --runtime runc run -d --name "$name" --pull=never --network host --timeout 300 \
  --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 -e SWITCHYARD_PORT="$port" -e SWITCHYARD_DRAIN_DELAY_SECS=0 \
  -v "$mounts/repo:/models:ro" -v "$mounts/config.yaml:/etc/switchyard/switchyard.yaml:ro" \
  "$IMAGE_REF" >/dev/null 2>"target/image-run.err" || true
code=000 deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$base/ready" || true)
  [ "$code" = 200 ] && break
  [ "$(podman inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = true ] || break
  sleep 0.2
done
got="$code $(curl -s -o /dev/null -m 5 -w '%{http_code}' "$base/v2/models/mounted") \
$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$base/v2/models/mlp") \
$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$base/v2/models/mounted/infer" -H 'Content-Type: application/json' -d @config/mlp-request.json)"
if [ "$got" = "200 200 404 413" ]; then ok "mounts over /models and /etc/switchyard/switchyard.yaml replace the baked-in ones"
else bad "with mounts: ready, mounted, mlp, oversized request answered '$got' (want '200 200 404 413')"
  podman logs "$name" 2>&1 | tail -n 5 >&2; fi
cleanup
summary
[ "$failed" = 0 ]
