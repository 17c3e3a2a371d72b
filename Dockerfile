# syntax=docker/dockerfile:1
# Godel Guardrail image: the ext_proc server with its Rust traps, non-root, read-only friendly.
#
#   docker build -t godel-guardrail:0.1.0 .
#   docker run --read-only -p 50051:50051 -p 9100:9100 godel-guardrail:0.1.0
#
# Stage 1 builds the wheel (maturin + the Rust toolchain) and installs it with its dependencies
# into a virtualenv; stage 2 is the same slim Python with only that virtualenv copied in: no
# compiler, no Rust, no pip cache. Both stages use one Python base so the venv's interpreter
# path and ABI match. Pin the bases by digest in your registry mirror for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUST_IMAGE=rust:1.86-slim-bookworm

FROM ${RUST_IMAGE} AS rust

FROM ${PYTHON_IMAGE} AS builder
# The Rust toolchain from the official image (no curl | sh), and a C linker for the cdylib.
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
# Build stage only: versions follow the base image's Debian release; nothing here ships.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# maturin is pinned here and in pyproject.toml's build-system range.
RUN python -m pip install "maturin==1.9.6"
COPY Cargo.toml Cargo.lock pyproject.toml README.md ./
COPY native_traps ./native_traps
COPY ext_proc ./ext_proc
RUN maturin build --release --locked --out /dist \
    && python -m venv /opt/godel \
    && /opt/godel/bin/pip install /dist/*.whl \
    && /opt/godel/bin/godel --version

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="Godel Guardrail" \
      org.opencontainers.image.description="Envoy ext_proc ingress guardrail" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric UID/GID (the chart's runAsUser) that owns nothing in the image.
RUN groupadd --system --gid 10001 godel \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin godel
COPY --from=builder /opt/godel /opt/godel
# Defaults for a container: listen on all interfaces, local limiter. Kubernetes and compose
# mount their own file over /etc/godel.
COPY deploy/docker/godel.yaml /etc/godel/godel.yaml
ENV PATH=/opt/godel/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 50051 9100
# Liveness of the admin server (server.admin_address must stay on port 9100 for this check).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/health', timeout=2)"]
# SIGTERM starts Godel's graceful drain (server.shutdown_delay_seconds, server.drain_seconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["godel"]
CMD ["serve", "--config", "/etc/godel/godel.yaml"]
