#!/usr/bin/env bash
# Runs the cargo-fuzz targets of every crate that has them (crates/*/fuzz/), each for a fixed time, and
# prints one summary line per target. Usage: scripts/fuzz.sh SECONDS [TARGET...]
#
# Each target fuzzes a working corpus under target/fuzz/corpus/<target>/, seeded by copying the
# committed seeds (crates/<crate>/fuzz/seeds/<target>/), so the committed corpus never changes; crash
# inputs go to target/fuzz/artifacts/<target>/ and the full libFuzzer output to
# target/fuzz/logs/<target>.log. Builds use the nightly toolchain (`cargo +nightly fuzz build`: release,
# debug assertions, AddressSanitizer) into target/fuzz/build. Exits non-zero if any target crashed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() {
  echo "usage: scripts/fuzz.sh SECONDS [TARGET...]  (runs each target, or only those named, for SECONDS)" >&2
  exit 2
}
[ $# -ge 1 ] || usage
SECS="$1"
shift
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || usage
WANTED=("$@")

scripts/install_cargo_fuzz.sh >&2
export PATH="$ROOT/target/tools/bin:$PATH"
OUT="$ROOT/target/fuzz"
BUILD="$OUT/build"
TRIPLE="$(rustc +nightly -vV | sed -n 's/^host: //p')"
mkdir -p "$OUT/corpus" "$OUT/artifacts" "$OUT/logs"

# Every fuzz project and its targets, as "project-dir target" lines.
plan=()
for dir in crates/*/fuzz; do
  [ -f "$dir/Cargo.toml" ] || continue
  for t in $(cargo +nightly fuzz list --fuzz-dir "$dir"); do
    if [ ${#WANTED[@]} -eq 0 ] || printf '%s\n' "${WANTED[@]}" | grep -qx "$t"; then
      plan+=("$dir $t")
    fi
  done
done
for w in "${WANTED[@]}"; do
  printf '%s\n' "${plan[@]}" | grep -q " $w\$" || { echo "fuzz.sh: no fuzz target named '$w'" >&2; exit 2; }
done
[ ${#plan[@]} -gt 0 ] || { echo "fuzz.sh: no fuzz targets found under crates/*/fuzz" >&2; exit 2; }

# Build each project that has a target to run, all its targets at once.
built=""
for entry in "${plan[@]}"; do
  dir="${entry% *}"
  case " $built " in *" $dir "*) continue ;; esac
  echo "fuzz.sh: building $dir" >&2
  start=$(date +%s)
  cargo +nightly fuzz build --fuzz-dir "$dir" --target-dir "$BUILD" >&2
  echo "fuzz.sh: built $dir in $(($(date +%s) - start))s" >&2
  built="$built $dir"
done

failed=0
summary=()
for entry in "${plan[@]}"; do
  dir="${entry% *}"
  t="${entry#* }"
  corpus="$OUT/corpus/$t"
  artifacts="$OUT/artifacts/$t"
  log="$OUT/logs/$t.log"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "$dir/seeds/$t" ]; then
    cp -n "$dir/seeds/$t"/* "$corpus"/ 2>/dev/null || true
  fi
  dict=()
  [ -f "$dir/dicts/$t.dict" ] && dict=("-dict=$dir/dicts/$t.dict")
  before="$(ls -A "$artifacts")"
  echo "fuzz.sh: running $t for ${SECS}s (log: ${log#"$ROOT"/})" >&2
  rc=0
  # libFuzzer stops itself at -max_total_time; `timeout` only guards against a hang outside an input.
  timeout --kill-after=30 $((SECS + 120)) "$BUILD/$TRIPLE/release/$t" \
    -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${dict[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  execs="${execs:-0}"
  new="$(comm -13 <(printf '%s\n' "$before" | sort) <(ls -A "$artifacts" | sort) | sed "s|^|${artifacts#"$ROOT"/}/|")"
  size="$(find "$corpus" -maxdepth 1 -type f | wc -l)"
  crashes=0
  if [ -n "$new" ]; then
    crashes="$(echo "$new" | tr '\n' ' ')"
    failed=1
  elif [ "$rc" -ne 0 ]; then
    crashes="libFuzzer exited $rc without an artifact: see ${log#"$ROOT"/}"
    failed=1
  fi
  line="$(printf 'fuzz: %-16s %6ss %12s execs %8s/s  corpus %6s  crashes %s' \
    "$t" "$SECS" "$execs" "$((execs / SECS))" "$size" "$crashes")"
  echo "$line"
  summary+=("$line")
done

if [ ${#summary[@]} -gt 1 ]; then
  echo "fuzz.sh: summary" >&2
  printf '%s\n' "${summary[@]}" >&2
fi
exit "$failed"
