#!/usr/bin/env bash
# Prints a protoc that can compile etcd-client's protos (its build script needs one): $PROTOC when set,
# else Debian's protoc when its well-known .proto files are installed (protobuf-compiler and
# libprotobuf-dev, which `make test` installs as root), else the protoc shipped inside the crates.io
# package protoc-bin-vendored (a dev-dependency of switchyard-fleet, so `cargo fetch` brings it offline
# from the registry mirror, root or not).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PROTOC:-}" ]; then echo "$PROTOC"; exit 0; fi
if command -v protoc >/dev/null 2>&1 && [ -f /usr/include/google/protobuf/descriptor.proto ]; then
  command -v protoc; exit 0
fi
case "$(uname -m)" in
  x86_64) arch=linux-x86_64 ;;
  aarch64) arch=linux-aarch_64 ;;
  *) arch="linux-$(uname -m)" ;;
esac
find_vendored() {
  # No match (a fresh cargo home) is not an error: the caller fetches and looks again.
  { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/protoc-bin-vendored-"$arch"-*/bin/protoc 2>/dev/null || true; } |
    sort | tail -n 1
}
found=$(find_vendored)
if [ -z "$found" ]; then
  cargo fetch -q >/dev/null 2>&1 || true
  found=$(find_vendored)
fi
if [ -z "$found" ]; then
  echo "no protoc: install protobuf-compiler and libprotobuf-dev, or set PROTOC" >&2
  exit 1
fi
echo "$found"
