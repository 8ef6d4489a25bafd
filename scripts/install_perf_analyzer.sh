#!/usr/bin/env bash
# Installs Triton's perf_analyzer under target/tools (idempotent), for the tests that drive the server
# with it. PyPI's `perf-analyzer` 2.x ships only a manylinux_2_38 wheel (glibc 2.38); on Debian 12
# (glibc 2.36) it runs under Debian 13's glibc and libstdc++, extracted (not installed) from trixie's
# packages with a private apt list. Nothing outside target/tools is touched; no root needed.
# Prints the path of the wrapper on success; exits non-zero (and says why) otherwise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
T="$ROOT/target/tools/perf_analyzer"
WRAPPER="$T/bin/perf_analyzer"
PY="${PY:-$ROOT/.venv/bin/python}"
if [ -x "$WRAPPER" ] && "$WRAPPER" --version >/dev/null 2>&1; then
  echo "$WRAPPER"
  exit 0
fi
mkdir -p "$T/bin" "$T/dl"
if [ ! -x "$T/whl/perf_analyzer/bin/perf_analyzer" ]; then
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_38_x86_64 --python-version 3.11 -d "$T/dl" "perf-analyzer==2.60.0"
  rm -rf "$T/whl" && mkdir -p "$T/whl"
  (cd "$T/whl" && "$PY" -m zipfile -e "$T"/dl/perf_analyzer-2.60.0-*.whl .)
  chmod +x "$T/whl/perf_analyzer/bin/perf_analyzer"
fi
if [ ! -e "$T/glibc/usr/lib64/ld-linux-x86-64.so.2" ]; then
  A="$T/apt"
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$T/debs"
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
  echo "deb $MIRROR trixie main" >"$A/sources.list"
  APTO=(-o "Dir::Etc::sourcelist=$A/sources.list" -o Dir::Etc::sourceparts=/dev/null
        -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache" -o Debug::NoLocking=1)
  apt-get "${APTO[@]}" update -qq
  (cd "$T/debs" && apt-get "${APTO[@]}" download libc6 libstdc++6 libgcc-s1 >/dev/null 2>&1)
  mkdir -p "$T/glibc"
  for d in "$T"/debs/*.deb; do dpkg-deb -x "$d" "$T/glibc"; done
fi
cat >"$WRAPPER" <<WRAP
#!/bin/sh
G="$T/glibc"
exec "\$G/usr/lib64/ld-linux-x86-64.so.2" --library-path "\$G/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" "$T/whl/perf_analyzer/bin/perf_analyzer" "\$@"
WRAP
chmod +x "$WRAPPER"
"$WRAPPER" --version >/dev/null 2>&1
echo "$WRAPPER"
