#!/usr/bin/env bash
# Stand-in base images for building without an image registry: Debian bookworm from Debian's packages
# (mmdebstrap), imported under the exact names the Dockerfile's FROM lines default to, so the Dockerfile
# builds unchanged. Skips an image that is already in the store. Needs root, mmdebstrap and podman.
#   scripts/image/bases.sh runtime            debian:bookworm-slim stand-in (make image, make test)
#   scripts/image/bases.sh runtime full       also rust:1.95-bookworm and python:3.11-slim-bookworm (make image-full)
# The rust stand-in is Debian's gcc, libc6-dev, pkg-config and CA certificates plus this machine's Rust
# toolchain (`rustc --print sysroot`, without its docs) laid out as the official image lays it out
# (/usr/local/rustup/toolchains, /usr/local/cargo/bin on PATH); it must be the version the tag names.
source "$(dirname "$0")/common.sh"

# Like debian:bookworm-slim: minbase, merged /usr without the usrmerge package (and the perl it pulls
# in), no manuals, docs or translations.
SLIM=(--variant=minbase --mode=root --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*')
PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

present() { podman image exists "$1"; }

# The stand-ins that download (pip, cargo) trust what this machine trusts: its local CAs
# (/usr/local/share/ca-certificates, e.g. a TLS-inspecting egress proxy's), as an organisation's mirrored
# base images would. Nothing is added where there are none; the public images need none.
# shellcheck disable=SC2016 # $1 is the hook's argument (the new root), expanded by mmdebstrap's shell
LOCAL_CAS=(--customize-hook='if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" &&
  chroot "$1" update-ca-certificates >/dev/null; fi')

# make_base NAME [mmdebstrap options...] [-- podman import --change options...]; PATH defaults to
# Debian's unless the changes set it.
make_base() {
  local name=$1 tar; shift
  local opts=() changes=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ $# -gt 0 ] && shift && changes=("$@")
  tar=$(mktemp -d "$CTR_ROOT/base.XXXXXX")
  say "making stand-in base $name from Debian packages (mmdebstrap, about a minute)"
  if ! mmdebstrap -q "${SLIM[@]}" "${opts[@]}" bookworm "$tar/rootfs.tar" >"$tar/log" 2>&1; then
    tail -n 20 "$tar/log" >&2; rm -rf "$tar"; return 1
  fi
  case " ${changes[*]} " in *"ENV PATH="*) ;; *) changes+=(--change "ENV PATH=$PATH_ENV") ;; esac
  podman import -q "${changes[@]}" --change 'CMD ["bash"]' \
    "$tar/rootfs.tar" "$name" >/dev/null
  rm -rf "$tar"
}

runtime=$(qualify "$RUNTIME_IMAGE")
if present "$runtime"; then say "stand-in base $runtime present"; else make_base "$runtime"; fi

if [ "${1:-}" = full ] || [ "${2:-}" = full ]; then
  python=$(qualify "$PYTHON_IMAGE")
  if present "$python"; then say "stand-in base $python present"; else
    make_base "$python" --include=python3,python3-pip,ca-certificates "${LOCAL_CAS[@]}"
  fi

  builder=$(qualify "$BUILDER_IMAGE")
  if present "$builder"; then say "stand-in base $builder present"; else
    sysroot=$(rustc --print sysroot)
    want=$(echo "$BUILDER_IMAGE" | sed -n 's/^.*rust:\([0-9][0-9.]*\).*$/\1/p')
    have=$(rustc --version | awk '{print $2}')
    case "$have" in "$want" | "$want".*) ;; *)
      echo "image: this machine's rustc is $have but $BUILDER_IMAGE wants $want: cannot make its stand-in" >&2
      exit 1 ;;
    esac
    tc=/usr/local/rustup/toolchains/$have-x86_64-unknown-linux-gnu
    make_base "$builder" --include=gcc,libc6-dev,pkg-config,make,ca-certificates "${LOCAL_CAS[@]}" \
      --customize-hook="mkdir -p \"\$1$tc\" \"\$1/usr/local/cargo/bin\" && cp -a $sysroot/bin $sysroot/lib $sysroot/libexec $sysroot/etc \"\$1$tc/\" && for f in \"\$1$tc\"/bin/*; do ln -s $tc/bin/\$(basename \"\$f\") \"\$1/usr/local/cargo/bin/\"; done" \
      -- --change "ENV PATH=/usr/local/cargo/bin:$PATH_ENV" --change "ENV RUSTUP_HOME=/usr/local/rustup" \
      --change "ENV CARGO_HOME=/usr/local/cargo" --change "ENV RUST_VERSION=$have"
  fi
fi
