"""Which limiter tier a request belongs to, read from headers the upstream auth has set.

Two sources, per ``limiter.tier_from``: a plain header (``x-godel-tier: premium``) or a claim in
the verified JWT payload that Envoy's ``jwt_authn`` filter forwards as base64url JSON
(``forward_payload_header``). Either value can be mapped to a tier name through ``values``.
Nothing here trusts the client: Envoy must overwrite these headers (``jwt_authn`` does for its
payload header), otherwise any caller could name a richer tier. A malformed payload simply
means the default tier.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from ext_proc.config import TierSelection

__all__ = ["TierResolver"]

MAX_PAYLOAD_CHARS = 16_384


class TierResolver:
    def __init__(self, settings: TierSelection) -> None:
        self.header = settings.header
        self.claim_header = settings.claim_header
        self.claim_path = settings.claim.split(".")
        self.values = dict(settings.values)

    @property
    def enabled(self) -> bool:
        return bool(self.header or self.claim_header)

    def resolve(self, lookup: Callable[[str], str | None]) -> str | None:
        """The tier name for a request whose header values ``lookup(name)`` returns."""
        value: str | None = None
        if self.claim_header:
            value = self._claim(lookup(self.claim_header))
        if value is None and self.header:
            value = lookup(self.header)
        if not value:
            return None
        value = value.strip()
        return self.values.get(value, value)

    def resolve_headers(self, headers: Mapping[str, str]) -> str | None:
        return self.resolve(headers.get)

    def _claim(self, payload: str | None) -> str | None:
        if not payload or len(payload) > MAX_PAYLOAD_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(payload.strip() + "=" * (-len(payload.strip()) % 4))
            node: Any = json.loads(raw)
        except (binascii.Error, ValueError):
            return None
        for part in self.claim_path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if isinstance(node, str | int) and not isinstance(node, bool):
            return str(node)
        return None
