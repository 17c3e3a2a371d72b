"""Who is calling and on which route: a :class:`RequestContext` from request headers.

Shared by the ext_proc servicer (Envoy's headers and request attributes) and the HTTP inspect
endpoint (headers NGINX sets on its subrequest), so identity, tier and route are resolved the
same way whichever proxy is in front.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from ext_proc.config import IdentitySettings
from ext_proc.pipeline import Pipeline, RequestContext
from ext_proc.tiers import TierResolver

__all__ = ["ContextBuilder", "source_host"]


def source_host(address: str) -> str:
    """``source.address`` carries the port ('10.0.0.1:5050', '[::1]:5050'); keep the host."""
    if address.startswith("["):
        return address[1 : address.find("]")] if "]" in address else address
    host, sep, _ = address.rpartition(":")
    return host if sep and host.count(":") == 0 else address


class ContextBuilder:
    def __init__(self, pipeline: Pipeline, identity: IdentitySettings) -> None:
        self.pipeline = pipeline  # not its policy: a reload swaps the policy
        self.identity_header = identity.header
        self.identity_max = identity.max_length
        self.tiers = TierResolver(pipeline.settings.limiter.tier_from)

    def build(self, headers: Mapping[str, str] | None, attrs: Mapping[str, Any]) -> RequestContext:
        """``headers`` use lowercase names and Envoy's pseudo-headers (``:path``, ``:method``);
        ``attrs`` are Envoy request attributes (``source.address``, ``request.id``, ...)."""
        headers = headers or {}
        ident_attr = f"request.headers['{self.identity_header}']"
        identity = headers.get(self.identity_header) or attrs.get(ident_attr) or ""
        if not identity:
            source = attrs.get("source.address", "")
            identity = f"ip:{source_host(source)}" if source else "anonymous"
        request_id = headers.get("x-request-id") or attrs.get("request.id") or uuid.uuid4().hex
        length = headers.get("content-length")
        path = headers.get(":path") or str(attrs.get("request.path", ""))
        tier = None
        if self.tiers.enabled:
            tier = self.tiers.resolve(
                lambda name: headers.get(name) or attrs.get(f"request.headers['{name}']")
            )
        return RequestContext(
            request_id=str(request_id),
            identity=str(identity)[: self.identity_max],
            method=headers.get(":method") or str(attrs.get("request.method", "")),
            path=path,
            content_length=int(length) if length and length.isdigit() else None,
            route=self.pipeline.policy.route_for(path, headers),
            content_encoding=headers.get("content-encoding", "").strip().lower(),
            tier=tier,
        )
