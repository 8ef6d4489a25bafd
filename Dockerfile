# Switchyard's container image (README, "Container image").
#
#   docker build -t switchyard .                       full multi-stage build: compiles the release binary
#   docker build --target prebuilt -t switchyard .     reuses target/image/ (staged by `make image`)
#   docker build --build-arg CUDA=1 --build-arg RUNTIME_IMAGE=<a CUDA 13 + cuDNN 9 runtime image> ...
#
# The base images are build arguments, so a registry-less machine can build against stand-ins made
# under the same names (`make image-bases`, scripts/image/bases.sh).

# Compiles the server (official Rust image: rustc, cargo, gcc, binutils).
ARG BUILDER_IMAGE=rust:1.95-bookworm
# Only fetches the ONNX Runtime wheel from PyPI with pip.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# What the image runs on: glibc >= 2.36 (bookworm) and libstdc++ for ONNX Runtime.
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------------
# runtime-base: everything but the binary and ONNX Runtime, shared by the two ways of building.
FROM ${RUNTIME_IMAGE} AS runtime-base
ARG VERSION=0.1.0
ARG ORT_VERSION=1.31.1
LABEL org.opencontainers.image.title="switchyard" \
      org.opencontainers.image.description="Model inference server speaking KServe V2, with rollouts built in" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged uid/gid: volumes can be chowned to 10001 ahead of time. The state directory is
# the only place the server writes.
RUN groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/switchyard --no-create-home \
        --shell /usr/sbin/nologin switchyard \
    && mkdir -p /var/lib/switchyard /etc/switchyard /opt/onnxruntime/lib \
    && chown 10001:10001 /var/lib/switchyard
# The default model repository (`make models`: the demo repository) and config. Both are read-only
# defaults: mount a repository over /models and a config over /etc/switchyard/switchyard.yaml.
COPY models/ /models/
COPY config/switchyard.yaml /etc/switchyard/switchyard.yaml
ENV SWITCHYARD_HOST=0.0.0.0 \
    SWITCHYARD_PORT=8000 \
    SWITCHYARD_GRPC_PORT=8001 \
    SWITCHYARD_MODEL_REPOSITORY=/models \
    SWITCHYARD_CONFIG=/etc/switchyard/switchyard.yaml \
    SWITCHYARD_STATE_DIR=/var/lib/switchyard \
    ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION}
WORKDIR /var/lib/switchyard
USER 10001:10001
EXPOSE 8000 8001
# The server drains on SIGTERM (/ready turns 503, in-flight requests finish) and exits 0.
STOPSIGNAL SIGTERM
# No curl in the base: bash's /dev/tcp speaks HTTP/1.0 to /health and checks the status code, with
# builtins only. It follows SWITCHYARD_PORT; a server bound to one address other than 0.0.0.0 or
# 127.0.0.1 needs its own probe (Kubernetes uses its own httpGet probes anyway).
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SWITCHYARD_PORT:-8000} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"$code\" = 200 ]"]
# Exec form: the server is PID 1 and gets SIGTERM itself; it spawns no children, so no init is needed.
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------------------
# prebuilt: the image from a binary built outside (`make image`, and `make test`, which has just built
# it with `cargo test --release`). Needs target/image/switchyard and target/image/onnxruntime/ (the
# libonnxruntime*.so* of the PyPI wheel), which `make image` stages from target/release/switchyard
# (debug info stripped) and the project venv's onnxruntime==1.31.1.
FROM runtime-base AS prebuilt
COPY target/image/onnxruntime/ /opt/onnxruntime/lib/
COPY target/image/switchyard /usr/local/bin/switchyard

# ---------------------------------------------------------------------------------------------------
# onnxruntime: the shared library from the PyPI wheel (CPU `onnxruntime`, or `onnxruntime-gpu` with
# CUDA=1, built for CUDA 13 and cuDNN 9), as `make setup` gets it for a checkout.
FROM ${PYTHON_IMAGE} AS onnxruntime
ARG ORT_VERSION=1.31.1
ARG CUDA=0
WORKDIR /wheel
RUN if [ "$CUDA" = 1 ]; then pkg=onnxruntime-gpu; else pkg=onnxruntime; fi \
    && pip download --quiet --disable-pip-version-check --no-cache-dir --no-deps --only-binary=:all: \
        "$pkg==${ORT_VERSION}" \
    && python3 -m zipfile -e ./*.whl unpacked \
    && mkdir /ort && cp -a unpacked/onnxruntime/capi/libonnxruntime*.so* /ort/ \
    && test -f "/ort/libonnxruntime.so.${ORT_VERSION}"

# ---------------------------------------------------------------------------------------------------
# builder: the release binary. CUDA=1 adds ONNX Runtime's CUDA execution provider (`--features cuda`;
# loaded at run time, so no CUDA toolkit is needed here).
FROM ${BUILDER_IMAGE} AS builder
ARG CUDA=0
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo/config.toml .cargo/
COPY crates/ crates/
COPY proto/ proto/
COPY scripts/protoc.sh scripts/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    if [ "$CUDA" = 1 ]; then features=cuda; else features=; fi \
    && PROTOC=$(scripts/protoc.sh) && export PROTOC \
    && cargo build --release --locked -p switchyard-server --bin switchyard --features "$features" \
    && mkdir /out && objcopy --strip-debug target/release/switchyard /out/switchyard

# ---------------------------------------------------------------------------------------------------
# runtime (the default target): the full multi-stage build.
FROM runtime-base AS runtime
COPY --from=onnxruntime /ort/ /opt/onnxruntime/lib/
COPY --from=builder /out/switchyard /usr/local/bin/switchyard
