# Sourced by the scripts in scripts/image: one private container store (vfs, no daemon) shared by buildah
# and podman, the base image names the Dockerfile defaults to, and one-line progress messages.
# SWITCHYARD_CTR_ROOT moves the store (default /tmp/switchyard-containers, kept across clones so the
# stand-in base images are made once per machine).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CTR_ROOT=${SWITCHYARD_CTR_ROOT:-/tmp/switchyard-containers}
mkdir -p "$CTR_ROOT"
if [ ! -f "$CTR_ROOT/storage.conf" ]; then
  printf '[storage]\ndriver = "vfs"\nrunroot = "%s/run"\ngraphroot = "%s/graph"\n' "$CTR_ROOT" "$CTR_ROOT" \
    >"$CTR_ROOT/storage.conf"
fi
if [ ! -f "$CTR_ROOT/containers.conf" ]; then
  # runc: Debian's crun fails on this machine's hybrid cgroups; events to a file: there is no journald.
  printf '[engine]\nruntime = "runc"\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n' \
    >"$CTR_ROOT/containers.conf"
fi
export CONTAINERS_STORAGE_CONF="$CTR_ROOT/storage.conf" CONTAINERS_CONF="$CTR_ROOT/containers.conf"

# The default of `ARG NAME=...` in the Dockerfile, so the stand-ins and the build agree on one name.
dockerfile_arg() { sed -n "s/^ARG $1=//p" "$ROOT/Dockerfile" | head -n1; }
RUNTIME_IMAGE=${RUNTIME_IMAGE:-$(dockerfile_arg RUNTIME_IMAGE)}
BUILDER_IMAGE=${BUILDER_IMAGE:-$(dockerfile_arg BUILDER_IMAGE)}
PYTHON_IMAGE=${PYTHON_IMAGE:-$(dockerfile_arg PYTHON_IMAGE)}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)
IMAGE=${IMAGE:-localhost/switchyard}

# docker.io/library/NAME for a short name, as `FROM NAME` resolves it.
qualify() {
  case "$1" in
    */*/*) echo "$1" ;;
    *.*/* | localhost/*) echo "$1" ;;
    */*) echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;;
  esac
}
say() { echo "image: $*"; }
