# Godel Guardrail: one vocabulary for people and CI. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: ## install system packages, the venv, Python deps, Envoy, and build the Rust crate
	./scripts/bootstrap.sh

.PHONY: demo
demo: install ## README command 1: Envoy on 127.0.0.1:10000 -> Godel -> demo LLM, a guided tour, then serve
	$(BIN)/godel demo --envoy-config envoy/envoy.yaml

.PHONY: test
test: install lint typecheck test-rust test-py eval ## README command 2: install, then every check and test, and the detection targets

.PHONY: lint
lint: ## ruff, rustfmt, clippy -D warnings
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --all-targets --features python -- -D warnings

.PHONY: format
format: ## apply ruff and rustfmt formatting
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	cargo fmt --all

.PHONY: typecheck
typecheck: ## mypy --strict and stubtest for the native module's .pyi
	$(BIN)/mypy
	$(PY) -m mypy.stubtest ext_proc._native_traps --allowlist native_traps/stubtest-allowlist.txt

.PHONY: test-rust
test-rust: ## cargo test (pure Rust detector logic)
	cargo test --locked

.PHONY: test-py
test-py: ## pytest: unit, CLI and end-to-end tests against real Envoy
	$(BIN)/pytest

.PHONY: test-e2e
test-e2e: ## only the end-to-end tests
	$(BIN)/pytest -m e2e

.PHONY: build
build: ## rebuild the native module in place after Rust changes
	$(BIN)/maturin develop --release

.PHONY: envoy-validate
envoy-validate: ## validate every Envoy config with the pinned Envoy
	for f in envoy/*.yaml; do $(BIN)/envoy --mode validate -c $$f --log-level warn || exit 1; done

.PHONY: nginx-validate
nginx-validate: ## nginx -t on nginx/nginx.conf rendered with test ports (needs nginx + njs)
	$(PY) -m pytest -q tests/e2e/test_nginx.py -k nginx_t

.PHONY: docs
docs: ## regenerate docs/configuration.md from the settings models
	$(PY) scripts/gen_config_docs.py > docs/configuration.md

.PHONY: deploy-files
deploy-files: ## regenerate the chart's config schema and the compose Envoy config from their sources
	$(PY) scripts/gen_chart_schema.py
	$(PY) scripts/gen_compose_envoy.py

.PHONY: test-deploy
test-deploy: ## only the chart, image and compose tests (Helm SDK, hadolint, envoy --mode validate)
	$(BIN)/pytest tests/deploy

.PHONY: eval
eval: install ## detection quality: precision, recall, evasions on generated corpora (docs/detection.md)
	$(PY) eval/run.py --check

.PHONY: bench
bench: install ## benchmarks: Envoy with and without Godel, the Redis limiter, detection throughput vs Hyperscan and detect-secrets, cargo bench
	$(PY) bench/extproc_overhead.py
	$(PY) bench/ratelimit_throughput.py
	$(PY) bench/detection_throughput.py --packs builtin:secrets builtin:pii builtin:injection
	cargo bench --locked --bench traps -- --quick
	cargo bench --locked --bench normalize -- --quick

.PHONY: clean
clean: ## remove build outputs (keeps the venv)
	rm -rf target dist .pytest_cache .mypy_cache .ruff_cache
