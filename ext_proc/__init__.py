"""Godel Guardrail: a transparent ingress guardrail for LLM and HTTP APIs.

Envoy hands each request to Godel over the ext_proc gRPC API; Godel scans the body with native
Rust traps, applies policy and rate limits, and answers allow, redact, block or throttle.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ext_proc.errors import ConfigError, GodelError, LimiterError, RulePackError

try:
    __version__ = version("godel-guardrail")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["ConfigError", "GodelError", "LimiterError", "RulePackError", "__version__"]
