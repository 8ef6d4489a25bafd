#!/usr/bin/env bash
# Installs the Debian packages the tests need beyond the toolchain (idempotent): buildah, podman, runc and
# mmdebstrap for the container image tests, prometheus (with promtool) for the alerting-rule and scrape
# tests, etcd-server for the fleet tests (a 3-member cluster on loopback), and protobuf-compiler with
# libprotobuf-dev for etcd-client's build script (scripts/protoc.sh falls back to a vendored protoc), and
# chromium for the console's browser test (driven by the playwright wheel from requirements.txt).
# Needs root (CI is root); without it, names what is missing and exits 0, and the tests that need a
# missing tool report themselves as skipped with the reason.
set -euo pipefail
PACKAGES=(buildah podman runc mmdebstrap prometheus uidmap etcd-server protobuf-compiler libprotobuf-dev chromium)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "not root: cannot install ${missing[*]}; the tests that need them will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "could not install ${missing[*]}; the tests that need them will be skipped" >&2
fi
exit 0
