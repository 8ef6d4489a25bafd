#!/usr/bin/env bash
# Installs cargo-fuzz under target/tools (idempotent) for scripts/fuzz.sh, and checks that the nightly
# toolchain libFuzzer's sanitizer builds need is there. Nothing outside target/tools is touched; no root.
# Prints what it did; exits non-zero with the reason when fuzzing cannot work on this machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/target/tools"
BIN="$TOOLS/bin/cargo-fuzz"

if ! command -v rustup >/dev/null 2>&1; then
  echo "install_cargo_fuzz: rustup is not on PATH; cargo fuzz needs rustup's nightly toolchain" >&2
  exit 1
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "install_cargo_fuzz: no nightly toolchain (cargo fuzz builds with -Zsanitizer);" \
    "install it with: rustup toolchain install nightly --profile minimal" >&2
  exit 1
fi

if [ -x "$BIN" ]; then
  echo "install_cargo_fuzz: cargo-fuzz already installed: $BIN ($("$BIN" --version 2>/dev/null || echo '?'))"
  exit 0
fi

echo "install_cargo_fuzz: installing cargo-fuzz into $TOOLS (one-off, a few minutes)"
if ! cargo install cargo-fuzz --locked --root "$TOOLS" --quiet; then
  echo "install_cargo_fuzz: 'cargo install cargo-fuzz' failed (is the crate registry reachable?)" >&2
  exit 1
fi
if [ ! -x "$BIN" ]; then
  echo "install_cargo_fuzz: cargo install finished but $BIN is missing" >&2
  exit 1
fi
echo "install_cargo_fuzz: installed $BIN ($("$BIN" --version))"
