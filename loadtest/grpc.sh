#!/usr/bin/env bash
# gRPC throughput (issue 14): infer/s and p50/p99 latency of the shared harness's small MLP (mlp_small,
# 64->256->256->10, version 1, batch 1: the model and shape binary.sh uses) at concurrency 1 and 32, for
#   switchyard gRPC   Switchyard's KServe V2 gRPC front end (inference.GRPCInferenceService)
#   switchyard HTTP   the same server over V2 HTTP with binary tensors (as binary.sh)
#   triton gRPC       Triton's gRPC (tritonserver bundled by PyTriton, ../shared/bench/peers/pytriton_v2.py)
# one server at a time, each pinned to core 0, the client pinned to core 1 (as peers.sh, binary.sh and
# shadow.sh). Switchyard serves the model with dynamic batching and one ONNX Runtime thread (the overlay
# of overlay.sh); PyTriton keeps its dynamic batcher and gets one ORT thread too.
# Two clients measure every server, one after the other:
#   loadgen        switchyard-loadgen (crates/loadgen): a closed loop of C requests in flight on one
#                  thread, a few microseconds per request, so the server is what limits it; 2 s warm-up,
#                  LG_SECONDS measured; gRPC over ceil(C/4) connections, HTTP over C keep-alive connections
#   perf_analyzer  as the shared harness's compare.py: -b 1 --concurrency-range C, --measurement-interval
#                  2000 ms, --stability-percentage 100, --max-trials 6, --max-threads max(16, C),
#                  --warmup-request-count max(20, 4C), random inputs. It uses all of its core near 25,000
#                  requests/s, so past that it measures itself.
# Before it is measured, each server's gRPC answer for one seeded row is compared with onnxruntime's
# (tritonclient.grpc from the PyTriton venv).
# Prints a markdown table and the ratios the issue asks for, per client (goal: Switchyard gRPC >= 10x
# Triton gRPC at concurrency 32, and within 10 % of Switchyard HTTP). A benchmark, not a test: it exits 0
# either way.
#
# Raw client outputs and logs, server logs, results.csv and table.md go to target/loadtest/grpc/.
# Takes about 3-4 minutes on an idle machine (12 points, server starts), longer when it waits for a busy
# one (WAIT_QUIET); the first run installs the peers (../shared/bench/install_peers.sh, ~5 min). Does not
# build: it needs target/release/switchyard and target/release/switchyard-loadgen (make build) and copies
# the server first, so a rebuild during the run does not change what is measured.
# Usage: loadtest/grpc.sh
# Environment: CONCURRENCY="1 32" CLIENTS="loadgen perf_analyzer" LG_SECONDS=5 WINDOW_MS=2000 PORT=18460
#   (Switchyard HTTP PORT, gRPC PORT+1; Triton HTTP PORT+10, gRPC PORT+11, metrics PORT+12)
#   SERVERS="sy-grpc sy-http triton-grpc" (a subset runs only those) PA_EXTRA="..." (extra perf_analyzer
#   flags for every point, e.g. "-a" or "--streaming") WAIT_QUIET=30 (before each point, seconds to wait
#   at most for the machine to be idle; compare.py waits before each server, but this machine is shared
#   and other work comes and goes). OUT_DIR=target/loadtest/grpc (where the outputs and table go; this
#   script's files there are replaced).
# Everything listens on 127.0.0.1 only; every server it starts is stopped on exit (TERM, then KILL).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${SWITCHYARD_BENCH_HARNESS:-$ROOT/../shared/bench}"
export BENCH_TOOLS="${BENCH_TOOLS:-/tmp/peers}"
read -r -a CONCS <<<"${CONCURRENCY:-1 32}"
read -r -a SERVERS <<<"${SERVERS:-sy-grpc sy-http triton-grpc}"
read -r -a CLIENTS <<<"${CLIENTS:-loadgen perf_analyzer}"
LG_SECONDS="${LG_SECONDS:-5}"
read -r -a PA_EXTRA <<<"${PA_EXTRA:-}"
WINDOW_MS="${WINDOW_MS:-2000}"
PORT="${PORT:-18460}"
SY_HTTP=$PORT SY_GRPC=$((PORT + 1)) TR_HTTP=$((PORT + 10)) TR_GRPC=$((PORT + 11))
MODEL=mlp_small
OUT="${OUT_DIR:-$ROOT/target/loadtest/grpc}"
cd "$ROOT"
t_begin=$(date +%s)

[ -x target/release/switchyard ] || { echo "target/release/switchyard is missing: make build" >&2; exit 1; }
LG="$ROOT/target/release/switchyard-loadgen"
if [[ " ${CLIENTS[*]} " == *" loadgen "* ]] && [ ! -x "$LG" ]; then
  echo "$LG is missing: make build" >&2
  exit 1
fi

# --- tools: the peers' venvs (PyTriton, tritonclient) and perf_analyzer ---
if ! { [ -f "$BENCH_TOOLS/venv-base/.ok" ] && [ -f "$BENCH_TOOLS/venv-pytriton/.ok" ]; }; then
  echo "installing the peers under $BENCH_TOOLS ($BENCH/install_peers.sh, ~5 min)" >&2
  "$BENCH/install_peers.sh" >&2 || echo "install_peers.sh failed: Triton's rows will say why" >&2
fi
PA=""
for cand in "${BENCH_PERF_ANALYZER:-}" "$ROOT/target/tools/perf_analyzer/bin/perf_analyzer" "$BENCH_TOOLS/bin/perf_analyzer"; do
  [ -n "$cand" ] && [ -x "$cand" ] && "$cand" --version >/dev/null 2>&1 && { PA="$cand"; break; }
done
if [ -z "$PA" ]; then
  PA="$(scripts/install_perf_analyzer.sh)" || { echo "perf_analyzer could not be installed (see above)" >&2; exit 1; }
fi
PYT="$BENCH_TOOLS/venv-pytriton/bin/python"

# --- the model: the harness's mlp_small (made if missing), in a repository both servers read ---
MODELS="$BENCH_TOOLS/models"
if [ ! -f "$MODELS/$MODEL/1/model.onnx" ]; then
  PY="$BENCH_TOOLS/venv-base/bin/python"
  [ -x "$PY" ] || PY="$ROOT/.venv/bin/python"   # onnx + numpy are all make_models.py needs
  "$PY" "$BENCH/make_models.py" "$MODELS" >/dev/null
fi
rm -rf "$OUT/repo" "$OUT/tmp"
rm -f "$OUT"/*.csv "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.log "$OUT/table.md"
mkdir -p "$OUT/repo/$MODEL/1" "$OUT/tmp"
ln -s "$MODELS/$MODEL/1/model.onnx" "$OUT/repo/$MODEL/1/model.onnx"
# Switchyard's overlay settings (overlay.sh); PyTriton ignores this file.
printf 'max_batch_size: 64\nintra_op_threads: 1\ndynamic_batching: {}\n' >"$OUT/repo/$MODEL/config.yaml"

BIN="/tmp/switchyard-grpc-bench.$$"
cp target/release/switchyard "$BIN"

# --- servers: each in its own process group (pgid == pid), so stopping it reaches its children ---
server="" pa_pid=""
stop_server() {
  [ -n "$server" ] || return 0
  kill -TERM -- "-$server" 2>/dev/null || true
  for _ in $(seq 50); do   # up to 10 s, then KILL what is left of the group
    kill -0 -- "-$server" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL -- "-$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}
cleanup() {
  [ -n "$pa_pid" ] && kill "$pa_pid" 2>/dev/null || true
  stop_server
  rm -f "$BIN"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_server() { # $1: name, $2: HTTP port (ready probe), $3: gRPC port, $4...: command
  local name=$1 http=$2 grpc=$3 p
  shift 3
  for p in "$http" "$grpc" $((http + 2)); do
    port_open "$p" && { echo "port $p on 127.0.0.1 is busy" >&2; return 1; }
  done
  echo "$*" >"$OUT/server-$name.log"
  TMPDIR="$OUT/tmp" BENCH_ORT_THREADS=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 \
    setsid taskset -c 0 "$@" >>"$OUT/server-$name.log" 2>&1 &
  server=$!
  for _ in $(seq 900); do   # up to 3 min (PyTriton unpacks and starts tritonserver)
    curl -fs "127.0.0.1:$http/v2/models/$MODEL/ready" >/dev/null && port_open "$grpc" && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.2
  done
  echo "$name did not become ready; the end of its log ($OUT/server-$name.log):" >&2
  tail -15 "$OUT/server-$name.log" >&2
  stop_server
  return 1
}

# One seeded row through tritonclient.grpc, compared with onnxruntime; prints "ok" or what differs.
check_grpc() { # $1: gRPC port
  [ -x "$PYT" ] || { echo "not checked (no $PYT)"; return; }
  "$PYT" - "$1" "$MODELS/$MODEL/1/model.onnx" "$MODEL" <<'PY' 2>&1 | tail -1 || true
import sys
import numpy as np
import onnxruntime as ort
import tritonclient.grpc as g
port, path, model = sys.argv[1:4]
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
i, o = sess.get_inputs()[0], sess.get_outputs()[0]
x = np.random.default_rng(1234).standard_normal((1, i.shape[1])).astype(np.float32)
c = g.InferenceServerClient(f"127.0.0.1:{port}")
t = g.InferInput(i.name, list(x.shape), "FP32")
t.set_data_from_numpy(x)
y = c.infer(model, [t], outputs=[g.InferRequestedOutput(o.name)], client_timeout=10).as_numpy(o.name)
ref = sess.run(None, {i.name: x})[0]
ok = y is not None and y.shape == ref.shape and np.allclose(y, ref, rtol=1e-4, atol=1e-4)
print("ok" if ok else f"output mismatch: shape {None if y is None else y.shape}, expected {ref.shape}")
PY
}

core_busy() { awk -v c="cpu$1" '$1 == c {print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }   # jiffies, core $1
group_cpu() { # jiffies used by the live processes of the server's group (utime + stime, all threads)
  [ -n "$server" ] || { echo 0; return; }
  awk -v pg="$server" '{ sub(/.*\) /, ""); if ($3 == pg) sum += $12 + $13 } END { print sum + 0 }' \
    /proc/[0-9]*/stat 2>/dev/null || true
}

declare -A R   # R[key,conc,field]; keys sy-grpc, sy-http, tr-grpc
declare -A NAME=([sy-grpc]="switchyard|gRPC" [sy-http]="switchyard|HTTP binary" [tr-grpc]="triton (PyTriton)|gRPC")
KEYS=()
measure() { # $1: key, $2: port, $3: grpc|http, $4...: perf_analyzer's protocol flags
  local label=$1 port=$2 proto=$3 cl c t0 b0 k0 s0 ticks rc csv log key
  shift 3
  for cl in "${CLIENTS[@]}"; do
    key="$label/$cl"
    KEYS+=("$key")
    for c in "${CONCS[@]}"; do
      csv="$OUT/$label-$cl-c$c.csv" log="$OUT/$label-$cl-c$c.txt"
      [ "$cl" = loadgen ] && csv="$OUT/$label-$cl-c$c.json"
      wait_quiet
      t0=$(date +%s%N) b0=$(core_busy 0) k0=$(core_busy 1) s0=$(group_cpu)
      if [ "$cl" = loadgen ]; then
        taskset -c 1 timeout $((LG_SECONDS + 60)) "$LG" --url "$proto://127.0.0.1:$port" --model "$MODEL" \
          --input input:1,64 --concurrency "$c" --warmup 2 --duration "$LG_SECONDS" >"$csv" 2>"$log" &
      else
        taskset -c 1 timeout $((WINDOW_MS * 6 / 1000 + 60)) "$PA" -m "$MODEL" -u "127.0.0.1:$port" "$@" -b 1 \
          --concurrency-range "$c" --max-threads $((c > 16 ? c : 16)) --measurement-interval "$WINDOW_MS" \
          --stability-percentage 100 --max-trials 6 --warmup-request-count $((4 * c > 20 ? 4 * c : 20)) \
          ${PA_EXTRA[@]+"${PA_EXTRA[@]}"} -f "$csv" >"$log" 2>&1 &
      fi
      pa_pid=$!
      rc=0
      wait "$pa_pid" || rc=$?
      pa_pid=""
      ticks=$(( ($(date +%s%N) - t0) * $(getconf CLK_TCK) / 1000000000 ))
      ticks=$((ticks > 0 ? ticks : 1))
      R[$key,$c,srv]=$(( ($(group_cpu) - s0) * 100 / ticks ))
      R[$key,$c,oth]=$(( ($(core_busy 0) - b0) * 100 / ticks - ${R[$key,$c,srv]} ))
      R[$key,$c,cli]=$(( ($(core_busy 1) - k0) * 100 / ticks ))
      [ "${R[$key,$c,oth]}" -ge 0 ] || R[$key,$c,oth]=0
      if [ "$rc" -ne 0 ] || [ ! -s "$csv" ]; then
        R[$key,$c,err]="$cl rc=$rc: $(grep -iE 'error|fail|unstable' "$log" | tail -1 || tail -1 "$log")"
        echo "  $key c=$c: ${R[$key,$c,err]}" >&2
        continue
      fi
      if [ "$cl" = loadgen ]; then
        # One JSON line: throughput, p50_us, p99_us (answers that failed are counted in errors: none expected).
        read -r "R[$key,$c,ips]" "R[$key,$c,p50]" "R[$key,$c,p99]" "R[$key,$c,fail]" < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["throughput"], r["p50_us"], r["p99_us"], r["errors"])' "$csv")
        [ "${R[$key,$c,fail]}" = 0 ] || echo "  $key c=$c: ${R[$key,$c,fail]} failed answers ($csv)" >&2
      else
        # CSV columns: Concurrency, Inferences/Second, ..., p50 latency, ..., p99 latency (microseconds)
        read -r "R[$key,$c,ips]" "R[$key,$c,p50]" "R[$key,$c,p99]" < <(awk -F, '
          NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
          NR == 2 { print $col["Inferences/Second"], $col["p50 latency"], $col["p99 latency"]; exit }' "$csv")
      fi
      printf '  %-22s c=%-3s %8.0f infer/s  p50 %6.2f ms  p99 %6.2f ms\n' "$key" "$c" "${R[$key,$c,ips]}" \
        "$(ms "${R[$key,$c,p50]}")" "$(ms "${R[$key,$c,p99]}")" >&2
    done
  done
}
ms() { awk -v us="$1" 'BEGIN{printf "%.2f", us / 1000}'; }
all_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }   # jiffies, every core
wait_quiet() { # before each point: up to WAIT_QUIET s for the machine (the idle server included) to be < 10 % busy
  local t b0 pct
  for ((t = 0; t < ${WAIT_QUIET:-30}; t++)); do
    b0=$(all_busy)
    sleep 1
    pct=$(( ($(all_busy) - b0) * 100 / $(getconf CLK_TCK) / $(nproc) ))
    [ "$pct" -lt 10 ] && return 0
  done
  echo "  the machine stayed busy (${pct:-?} % of all cores) for ${WAIT_QUIET:-30} s; measuring anyway" >&2
  BUSY_NOTE="the machine was still busy after ${WAIT_QUIET:-30} s of waiting before at least one point"
}
BUSY_NOTE=""
want() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }
declare -A CHECK NOTE

echo "grpc.sh: $MODEL batch 1, concurrency ${CONCS[*]}; servers on core 0, clients (${CLIENTS[*]}) on core 1" >&2
if want sy-grpc || want sy-http; then
  if start_server switchyard "$SY_HTTP" "$SY_GRPC" "$BIN" serve --model-repository "$OUT/repo" --host 127.0.0.1 \
      --port "$SY_HTTP" --grpc-port "$SY_GRPC" --log warn --shutdown-timeout 5; then
    CHECK[switchyard]="$(check_grpc "$SY_GRPC")"
    echo "switchyard: gRPC answer check: ${CHECK[switchyard]}" >&2
    if want sy-grpc; then measure sy-grpc "$SY_GRPC" grpc -i grpc; fi
    if want sy-http; then
      measure sy-http "$SY_HTTP" http -i http --input-tensor-format binary --output-tensor-format binary
    fi
    stop_server
  else
    NOTE[switchyard]="Switchyard did not start (see $OUT/server-switchyard.log)"
  fi
fi
if want triton-grpc; then
  if [ ! -x "$PYT" ]; then
    NOTE[triton]="Triton not measured: $PYT is missing (../shared/bench/install_peers.sh failed; see above)"
  else
    # PyTriton's Python-backend stub links libpython3.11.so.1.0 by soname, so it can load the system's
    # (Debian's 3.11.2) beside the venv interpreter's standard library (pyenv's 3.11.7 here) and fail in
    # multiprocessing ("'_thread.RLock' object has no attribute '_recursion_count'"): point the loader
    # at the library of the interpreter the venv was made from.
    libdir="$("$PYT" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")' 2>/dev/null || true)"
    ldpath=()
    [ -n "$libdir" ] && ldpath=("LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
    if start_server triton "$TR_HTTP" "$TR_GRPC" env ${ldpath[@]+"${ldpath[@]}"} \
        "$PYT" "$BENCH/peers/pytriton_v2.py" "$OUT/repo" "$TR_HTTP"; then
      CHECK[triton]="$(check_grpc "$TR_GRPC")"
      echo "triton: gRPC answer check: ${CHECK[triton]}" >&2
      measure tr-grpc "$TR_GRPC" grpc -i grpc
      stop_server
    else
      NOTE[triton]="Triton (PyTriton) did not start: $(grep -E 'Error|Exception' "$OUT/server-triton.log" | tail -1 | cut -c1-300)"
    fi
  fi
fi

# --- results ---
ratio() { # $1/$2 labels, $3 conc
  local a="${R[$1,$3,ips]:-}" b="${R[$2,$3,ips]:-}"
  if [ -n "$a" ] && [ -n "$b" ]; then awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", a / b}'; else echo "n/a"; fi
}
echo "server,protocol,client,concurrency,infer_per_s,p50_us,p99_us,server_cpu_pct,other_core0_pct,core1_pct,error" >"$OUT/results.csv"
{
  echo "\`loadtest/grpc.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc)-core machine: $MODEL (64->256->256->10) batch 1,"
  echo "each server alone on core 0 with one ONNX Runtime thread and dynamic batching, the client on core 1:"
  echo "switchyard-loadgen (closed loop, ${LG_SECONDS} s measured after 2 s) and perf_analyzer (random inputs;"
  echo "${WINDOW_MS} ms windows, stability 100 %, up to 6 trials).${PA_EXTRA[*]:+ Extra perf_analyzer flags: ${PA_EXTRA[*]}.}"
  echo
  echo "| server | protocol | client | conc | infer/s | p50 ms | p99 ms | server CPU % | other on core 0 % | core 1 (client) % |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
  for l in ${KEYS[@]+"${KEYS[@]}"}; do
    IFS='|' read -r srv proto <<<"${NAME[${l%/*}]}"
    cl="${l#*/}"
    for c in "${CONCS[@]}"; do
      if [ -n "${R[$l,$c,ips]:-}" ]; then
        printf '| %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$srv" "$proto" "$cl" "$c" "${R[$l,$c,ips]}" \
          "$(ms "${R[$l,$c,p50]}")" "$(ms "${R[$l,$c,p99]}")" "${R[$l,$c,srv]}" "${R[$l,$c,oth]}" "${R[$l,$c,cli]}"
        echo "$srv,$proto,$cl,$c,${R[$l,$c,ips]},${R[$l,$c,p50]},${R[$l,$c,p99]},${R[$l,$c,srv]},${R[$l,$c,oth]},${R[$l,$c,cli]}," \
          >>"$OUT/results.csv"
      else
        err="${R[$l,$c,err]:-not measured}"
        printf '| %s | %s | %s | %s | %s | | | | | |\n' "$srv" "$proto" "$cl" "$c" "$err"
        echo "$srv,$proto,$cl,$c,,,,,,,\"${err//\"/\'}\"" >>"$OUT/results.csv"
      fi
    done
  done
  echo
  for cl in "${CLIENTS[@]}"; do
    for c in "${CONCS[@]}"; do
      echo "- $cl, concurrency $c: Switchyard gRPC / Triton gRPC = $(ratio "sy-grpc/$cl" "tr-grpc/$cl" "$c");" \
        "Switchyard gRPC / Switchyard HTTP (binary) = $(ratio "sy-grpc/$cl" "sy-http/$cl" "$c")"
    done
    g32="$(ratio "sy-grpc/$cl" "tr-grpc/$cl" 32)" h32="$(ratio "sy-grpc/$cl" "sy-http/$cl" 32)"
    if [ "$g32" != n/a ] || [ "$h32" != n/a ]; then
      v1="$(awk -v r="$g32" 'BEGIN{print (r == "n/a") ? "not measured" : (r >= 10 ? "met" : "missed")}')"
      v2="$(awk -v r="$h32" 'BEGIN{print (r == "n/a") ? "not measured" : (r >= 0.9 ? "met" : "missed")}')"
      echo "- $cl, goal at concurrency 32: >= 10x Triton gRPC: $v1; within 10 % of Switchyard HTTP (ratio >= 0.90): $v2"
    fi
  done
  for k in switchyard triton; do
    [ -n "${CHECK[$k]:-}" ] && echo "- $k: gRPC answer for a seeded row vs onnxruntime: ${CHECK[$k]}"
    [ -n "${NOTE[$k]:-}" ] && echo "- ${NOTE[$k]}"
  done
  [ -n "$BUSY_NOTE" ] && echo "- $BUSY_NOTE"
  echo "- \"other on core 0\" is CPU used there by processes other than the server during the window: more than a"
  echo "  few % means a busy machine and noisy figures. \"core 1\" is all CPU used on the client's core (the client"
  echo "  and anything else there): near 100 % means the client, not the server, may be what limits the point"
  echo "  (perf_analyzer reaches it near 25,000 requests/s; switchyard-loadgen costs a fraction of that per request)."
  echo "  Run time: $(( $(date +%s) - t_begin )) s."
} >"$OUT/table.md"
echo
cat "$OUT/table.md"
echo
echo "raw CSVs, logs and table.md in ${OUT#"$ROOT/"}/"
exit 0
