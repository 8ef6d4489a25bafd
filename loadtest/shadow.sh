#!/usr/bin/env bash
# What a shadow costs control, side by side in one run. A rollout endpoint `scorer` whose control is the
# shared harness's mlp_small (version 1; version 2, the same file, is a fixed weight-0 canary, since a
# rollout needs one) is served twice from the same repository, the server pinned to core 0 and wrk to
# core 1: (a) without a shadow, (b) with a 100 % shadow, an MLP 64->2048->2048->10 (about 50x control's
# arithmetic; loadtest/make_shadow_model.py). At each concurrency (1 and 32, batch 1, JSON) wrk warms up,
# then measures control's req/s, p50 and p99; the shadow's counters (admin API: compared, shed, errors)
# are read before, right after, and again after a few idle seconds, so the table shows how many shadow
# copies completed during the load and after it. The target (issue): with the shadow, control keeps
# >= 90 % of its throughput and its p99 within +10 %. A benchmark, not a test: it exits 0 either way.
#
# Takes about 2 minutes with the defaults (per server: ~3 s start, then per concurrency WARMUP 3 s +
# 1 s settle + DURATION 15 s + IDLE 5 s), plus ~10 s for perf_analyzer if the harness installed it.
# Usage: loadtest/shadow.sh    Environment: DURATION=15 WARMUP=3 IDLE=5 CONCURRENCY="1 32" PORT=18451
# Writes the table to loadtest/results/<UTC date>-shadow.md too. Numbers from this 2-core machine are
# noisy: compare the two columns of one run (the table notes what else used core 0 meanwhile).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${SWITCHYARD_BENCH_HARNESS:-$ROOT/../shared/bench}"
export BENCH_TOOLS="${BENCH_TOOLS:-/tmp/peers}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
IDLE="${IDLE:-5}"
read -r -a CONCS <<<"${CONCURRENCY:-1 32}"
PORT="${PORT:-18451}"
ENDPOINT=scorer
export SWITCHYARD_ADMIN_TOKEN="shadow-bench-$$"
cd "$ROOT"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[ -x target/release/switchyard ] || { echo "target/release/switchyard is missing: make build" >&2; exit 1; }
PY="$BENCH_TOOLS/venv-base/bin/python"
[ -x "$PY" ] || PY="$ROOT/.venv/bin/python"   # onnx + numpy are all make_models.py needs

# --- the repository: control = mlp_small (versions 1 and 2, the same file), shadow = the big MLP ---
MODELS="$BENCH_TOOLS/models"
[ -f "$MODELS/mlp_small/1/model.onnx" ] || "$PY" "$BENCH/make_models.py" "$MODELS" >/dev/null
WORK="$ROOT/target/shadow-bench"
REPO="$ROOT/target/shadow-bench-repo"
rm -rf "$REPO" "$WORK"
mkdir -p "$WORK" "$REPO/scorer_control/1" "$REPO/scorer_control/2" "$REPO/scorer_shadow/1"
ln -s "$MODELS/mlp_small/1/model.onnx" "$REPO/scorer_control/1/model.onnx"
ln -s "$MODELS/mlp_small/1/model.onnx" "$REPO/scorer_control/2/model.onnx"
"$PY" "$ROOT/loadtest/make_shadow_model.py" "$REPO/scorer_shadow/1/model.onnx" 64,2048,2048,10 >/dev/null
for m in scorer_control scorer_shadow; do
  printf 'versions: all\nmax_batch_size: 64\nintra_op_threads: 1\ndynamic_batching: {}\n' >"$REPO/$m/config.yaml"
done
rollout='rollouts:
  - endpoint: scorer
    control: { model: scorer_control, version: 1 }
    canary: { model: scorer_control, version: 2, weight: 0 }'
printf '%s\n' "$rollout" >"$WORK/without.yaml"
printf '%s\n    shadows:\n      - { model: scorer_shadow, version: 1, sample: %s%% }\n' "$rollout" "${SAMPLE:-100}" >"$WORK/with.yaml"
"$PY" - "$WORK/body.json" <<'PY'
import json, sys
import numpy as np
row = np.random.default_rng(7).standard_normal(64).astype(np.float32)
body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [round(float(x), 6) for x in row]}]}
open(sys.argv[1], "w").write(json.dumps(body))
PY

# --- server and load helpers ---
BIN="/tmp/switchyard-shadow-bench.$$"   # a copy: a rebuild during the run must not change the binary
cp target/release/switchyard "$BIN"
server=""
wrk_pid=""
cleanup() {
  [ -n "$wrk_pid" ] && kill "$wrk_pid" 2>/dev/null || true
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -f "$BIN"
}
trap cleanup EXIT

start_server() { # $1: config file, $2: log file
  taskset -c 0 "$BIN" serve --model-repository "$REPO" --port "$PORT" --config "$1" --log warn >"$2" 2>&1 &
  server=$!
  for _ in $(seq 300); do
    curl -fs "127.0.0.1:$PORT/v2/models/$ENDPOINT/ready" >/dev/null && curl -fs "127.0.0.1:$PORT/v2/health/ready" >/dev/null \
      && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.2
  done
  echo "the server did not become ready; its log ($2):" >&2
  tail -20 "$2" >&2
  exit 1
}
stop_server() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}
shadow_counts() { # "compared shed errors" of the endpoint's first shadow (0 0 0 without one)
  curl -fs -H "Authorization: Bearer $SWITCHYARD_ADMIN_TOKEN" "127.0.0.1:$PORT/admin/rollouts/$ENDPOINT" \
    | jq -r '(.shadows[0].agreement // {compared: 0, shed: 0, errors: 0}) | "\(.compared) \(.shed) \(.errors)"'
}
core0_busy() { awk '/^cpu0 /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }   # jiffies, all of core 0
server_cpu() { sed 's/.*) //' "/proc/$server/stat" | awk '{print $12+$13}'; } # jiffies, the server (core 0)
run_wrk() { # $1: connections, $2: seconds; prints post.lua's BENCHJSON summary
  taskset -c 1 wrk -t1 -c"$1" -d"$2s" --latency -s "$BENCH/post.lua" \
    "http://127.0.0.1:$PORT/v2/models/$ENDPOINT/infer" -- "$WORK/body.json" >"$WORK/wrk.out" 2>&1 &
  wrk_pid=$!
  wait "$wrk_pid"
  wrk_pid=""
  grep -oP '^BENCHJSON \K.*' "$WORK/wrk.out" || { echo "wrk failed:" >&2; tail -5 "$WORK/wrk.out" >&2; return 1; }
}

declare -A R   # R[run,conc,field]
measure() { # $1: run name (without | with)
  local run=$1 c j t0 b0 s0 ticks
  start_server "$WORK/$run.yaml" "$WORK/server-$run.log"
  for c in "${CONCS[@]}"; do
    run_wrk "$c" "$WARMUP" >/dev/null
    sleep 1
    read -r R[$run,$c,c0] R[$run,$c,s0] R[$run,$c,e0] < <(shadow_counts)
    t0=$(date +%s%N) b0=$(core0_busy) s0=$(server_cpu)
    j="$(run_wrk "$c" "$DURATION")"
    ticks=$(( ($(date +%s%N) - t0) * $(getconf CLK_TCK) / 1000000000 ))
    R[$run,$c,srv]=$(( ($(server_cpu) - s0) * 100 / ticks ))
    R[$run,$c,oth]=$(( ($(core0_busy) - b0 - ($(server_cpu) - s0)) * 100 / ticks ))
    read -r R[$run,$c,c1] R[$run,$c,s1] R[$run,$c,e1] < <(shadow_counts)
    sleep "$IDLE"
    read -r R[$run,$c,c2] R[$run,$c,s2] R[$run,$c,e2] < <(shadow_counts)
    R[$run,$c,rps]=$(jq -r '.requests / .duration_us * 1e6' <<<"$j")
    R[$run,$c,p50]=$(jq -r '.p50_us' <<<"$j")
    R[$run,$c,p99]=$(jq -r '.p99_us' <<<"$j")
    R[$run,$c,req]=$(jq -r '.requests' <<<"$j")
    R[$run,$c,err]=$(jq -r '.err_connect + .err_read + .err_write + .err_status + .err_timeout' <<<"$j")
    printf '  %-7s c=%-3s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  shadow completed %s (+%s after), shed %s\n' \
      "$run" "$c" "${R[$run,$c,rps]}" "$(ms "${R[$run,$c,p50]}")" "$(ms "${R[$run,$c,p99]}")" \
      $(( R[$run,$c,c1] - R[$run,$c,c0] )) $(( R[$run,$c,c2] - R[$run,$c,c1] )) $(( R[$run,$c,s2] - R[$run,$c,s0] )) >&2
  done
}
ms() { awk -v us="$1" 'BEGIN{printf "%.2f", us / 1000}'; }

echo "shadow.sh: ${DURATION}s per point after ${WARMUP}s warm-up; server on core 0, wrk on core 1" >&2
# ORDER="with without" runs the shadow first, to check the order does not decide the result.
read -r -a RUNS <<<"${ORDER:-without with}"
measure "${RUNS[0]}"
stop_server
measure "${RUNS[1]}"   # left running for the optional perf_analyzer step

# --- the table ---
{
  echo "\`loadtest/shadow.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc)-core machine: endpoint \`$ENDPOINT\`, control"
  echo "mlp_small (64->256->256->10), without and with a 100 % shadow 64->2048->2048->10; server on core 0, wrk"
  echo "(JSON, batch 1) on core 1, ${DURATION} s per point after a ${WARMUP} s warm-up; shadow counters read right after the"
  echo "load and again after ${IDLE} s idle."
  echo
  echo "| conc | without req/s | p50 ms | p99 ms | with shadow req/s | p50 ms | p99 ms | throughput ratio | p99 change | shadow copies completed during load / after / shed / errors |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for c in "${CONCS[@]}"; do
    ratio=$(awk -v a="${R[with,$c,rps]}" -v b="${R[without,$c,rps]}" 'BEGIN{printf "%.2f", a / b}')
    dp99=$(awk -v a="${R[with,$c,p99]}" -v b="${R[without,$c,p99]}" 'BEGIN{printf "%+.0f %%", (a / b - 1) * 100}')
    printf '| %s | %.0f | %s | %s | %.0f | %s | %s | %s | %s | %d / %d / %d / %d of %d requests |\n' "$c" \
      "${R[without,$c,rps]}" "$(ms "${R[without,$c,p50]}")" "$(ms "${R[without,$c,p99]}")" \
      "${R[with,$c,rps]}" "$(ms "${R[with,$c,p50]}")" "$(ms "${R[with,$c,p99]}")" "$ratio" "$dp99" \
      $(( R[with,$c,c1] - R[with,$c,c0] )) $(( R[with,$c,c2] - R[with,$c,c1] )) \
      $(( R[with,$c,s2] - R[with,$c,s0] )) $(( R[with,$c,e2] - R[with,$c,e0] )) "${R[with,$c,req]}"
  done
  echo
  verdicts=()
  for c in "${CONCS[@]}"; do
    ok=$(awk -v a="${R[with,$c,rps]}" -v b="${R[without,$c,rps]}" -v p="${R[with,$c,p99]}" -v q="${R[without,$c,p99]}" \
      'BEGIN{print (a >= 0.9 * b && p <= 1.1 * q) ? "met" : "missed"}')
    verdicts+=("concurrency $c: $ok")
  done
  echo "Target (>= 90 % of throughput, p99 within +10 %): $(IFS=';'; echo "${verdicts[*]}" | sed 's/;/; /g')."
  printf 'Core 0 during each window (%% of the core): '
  for c in "${CONCS[@]}"; do
    printf 'c=%s server %s / %s, other processes %s / %s (without / with); ' "$c" \
      "${R[without,$c,srv]}" "${R[with,$c,srv]}" "${R[without,$c,oth]}" "${R[with,$c,oth]}"
  done
  echo "any \"other\" above a few % means a busy machine and noisy figures."
  errs=0
  for c in "${CONCS[@]}"; do errs=$(( errs + R[without,$c,err] + R[with,$c,err] )); done
  [ "$errs" -eq 0 ] || echo "wrk counted $errs failed requests (non-2xx, timeouts, socket errors): see the raw output."
} >"$WORK/table.md"
mkdir -p "$ROOT/loadtest/results"
out="$ROOT/loadtest/results/$(date -u +%F)-shadow.md"
cp "$WORK/table.md" "$out"
echo
cat "$WORK/table.md"
echo
echo "written to ${out#"$ROOT/"}"

# --- optional: perf_analyzer against the endpoint (with the shadow), as a V2 model ---
PA="$BENCH_TOOLS/bin/perf_analyzer"
if [ -x "$PA" ]; then
  out="$(taskset -c 1 timeout 120 "$PA" -m "$ENDPOINT" -i http -u "127.0.0.1:$PORT" --concurrency-range 1 \
    --measurement-interval 2000 2>&1)" || true
  line="$(grep -m1 -E 'Concurrency: 1, throughput' <<<"$out" || grep -E 'Throughput' <<<"$out" | tail -1 || true)"
  echo "perf_analyzer (endpoint $ENDPOINT with its shadow, concurrency 1): ${line:-failed: $(tail -1 <<<"$out")}"
else
  echo "perf_analyzer: skipped ($PA not installed; loadtest/overlay.sh or ../shared/bench/install_peers.sh installs it)"
fi
exit 0
