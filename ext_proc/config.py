"""Godel's settings, declared once: name, default and a one-line doc per field.

One YAML file configures a process. Every field may also be set from the environment as
``GODEL_<SECTION>__<FIELD>`` (for example ``GODEL_SERVER__GRPC_ADDRESS``); environment values win
over the file. Only non-secret settings exist here: keys and passwords are never config values,
they are fetched by a key provider (see ``docs/security.md``).

:func:`load_config` validates everything at start and raises :class:`ConfigError` naming the key
and the reason, so a bad file never reaches the request path. ``docs/configuration.md`` is
generated from these models (``make docs``) and a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ext_proc.errors import ConfigError
from ext_proc.keys.refs import KEY_USES, RefError, check_use, is_ref, parse_ref
from ext_proc.keys.refs import SYNTAX as REF_SYNTAX

__all__ = [
    "Action",
    "AuditSettings",
    "AwsSettings",
    "DebtSettings",
    "EntropySettings",
    "IdentitySettings",
    "KeySettings",
    "LimiterSettings",
    "LoggingSettings",
    "NormalizeSettings",
    "PolicySettings",
    "RedisSettings",
    "ResponseSettings",
    "RouteRule",
    "ServerSettings",
    "Settings",
    "TierSelection",
    "TierSettings",
    "TrapSettings",
    "VaultSettings",
    "load_config",
    "settings_from_mapping",
]

ENV_PREFIX = "GODEL_"
MiB = 1024 * 1024


class Action(StrEnum):
    """What policy does with a finding of one category."""

    BLOCK = "block"
    REDACT = "redact"
    LOG = "log"
    ALLOW = "allow"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=False)


def _check_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected host:port, for example 127.0.0.1:50051")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number in 0..65535")
    return value


class ServerSettings(_Section):
    grpc_address: str = Field(
        "127.0.0.1:50051",
        description="host:port of the ext_proc gRPC server; the gRPC health service shares it.",
    )
    admin_address: str = Field(
        "127.0.0.1:9100",
        description="host:port of the admin HTTP server (/health, /ready, /metrics).",
    )
    max_body_bytes: int = Field(
        4 * MiB,
        ge=1024,
        le=64 * MiB,
        description="Largest request body Godel accepts; larger bodies get 413. Keep it equal to "
        "Envoy's request body buffer limit. The gRPC receive limit is set above it.",
    )
    drain_seconds: float = Field(
        20.0,
        ge=0,
        le=300,
        description="On SIGTERM, how long in-flight streams may finish before the process exits.",
    )
    shutdown_delay_seconds: float = Field(
        0.0,
        ge=0,
        le=60,
        description="On SIGTERM, how long to keep serving while /ready answers 503, so load "
        "balancers stop sending before the drain starts.",
    )

    inspect_address: str | None = Field(
        None,
        description="host:port of the HTTP inspect endpoint (POST /v1/inspect) that NGINX calls "
        "through njs; null (the default) leaves it off. Use a loopback address when NGINX runs "
        "on the same host or pod; bind wider only with keys.inspect_token set "
        "(docs/inspect-api.yaml).",
    )

    _v_grpc = field_validator("grpc_address", "admin_address")(_check_address)

    @field_validator("inspect_address")
    @classmethod
    def _v_inspect(cls, value: str | None) -> str | None:
        return None if value is None else _check_address(value)


class IdentitySettings(_Section):
    header: str = Field(
        "x-user-id",
        pattern=r"^[a-z0-9!#$%&'*+.^_`|~-]+$",
        description="Request header that names the caller (lowercase). Without it the caller is "
        "the client's source address.",
    )
    max_length: int = Field(
        256, ge=1, le=4096, description="Identity values longer than this are truncated."
    )


class EntropySettings(_Section):
    enabled: bool = Field(True, description="Run the entropy trap (high-entropy tokens).")
    min_length: int = Field(
        20, ge=8, le=1024, description="Shortest token the entropy trap considers."
    )
    hex_threshold: float = Field(
        3.6,
        gt=0,
        le=4,
        description="Ceiling (bits/char) for long hex tokens; shorter tokens use a "
        "length-aware threshold (docs/entropy-calibration.md).",
    )
    base64_threshold: float = Field(
        4.9,
        gt=0,
        le=6,
        description="Ceiling (bits/char) for long base64 tokens; shorter tokens use a "
        "length-aware threshold.",
    )
    alnum_threshold: float = Field(
        4.9,
        gt=0,
        le=5.96,
        description="Ceiling (bits/char) for long alphanumeric tokens; shorter tokens use a "
        "length-aware threshold.",
    )


class NormalizeSettings(_Section):
    enabled: bool = Field(
        True,
        description="Scan normalised views too: JSON string values, percent-decoded, Unicode "
        "canonical (NFKC, invisible characters removed, homoglyphs folded), leetspeak "
        "(injection rules only) and decoded base64/hex blobs. Spans map to the original bytes.",
    )
    max_depth: int = Field(2, ge=0, le=8, description="Nesting depth of base64/hex decoding.")
    max_decoded_bytes: int = Field(
        1 * MiB,
        ge=0,
        le=64 * MiB,
        description="Most decoded blob bytes per body; beyond it decoding stops and the "
        "finding normalize-limit-decoded_bytes (category limits) is reported.",
    )
    min_blob_len: int = Field(
        16, ge=8, le=4096, description="Shortest base64/hex run that is decoded."
    )
    min_text_blob_len: int = Field(
        12,
        ge=8,
        le=4096,
        description="Shortest base64 run that is decoded when it is canonical base64 of a short "
        "printable ASCII value (an SSN or phone number is 15 characters); runs shorter than "
        "min_blob_len must pass that stricter test. Values above min_blob_len have no effect.",
    )
    max_decompressed_bytes: int = Field(
        16 * MiB,
        ge=1024,
        le=256 * MiB,
        description="Largest decompressed size of a gzip/deflate/br request body; beyond it "
        "the request is blocked (rule undecodable-body) rather than passed unscanned.",
    )
    max_ratio: float = Field(
        100.0,
        gt=1,
        le=10_000,
        description="Largest decompression ratio accepted (a zip bomb exceeds it).",
    )


class TrapSettings(_Section):
    rule_packs: tuple[str, ...] = Field(
        ("builtin:secrets", "builtin:pii", "builtin:injection"),
        min_length=1,
        description="Rule packs to compile: 'builtin:<name>' for packs shipped with Godel, or a "
        "path to a YAML rule file.",
    )
    entropy: EntropySettings = Field(
        default_factory=EntropySettings, description="Entropy trap settings."
    )
    normalize: NormalizeSettings = Field(
        default_factory=NormalizeSettings, description="Normalisation against evasion."
    )
    max_findings: int = Field(
        2000,
        ge=10,
        le=1_000_000,
        description="Most findings one body may have; a body with more is blocked (rule "
        "too-many-findings) instead of being redacted finding by finding.",
    )
    simd: bool = Field(
        True,
        description="Find rule keywords with the AVX-512 VBMI filter when the CPU has it (else, "
        "or when false, with the scalar filters). Findings are the same either way; false is "
        "a switch for operators who suspect the SIMD path.",
    )
    tune_filter: bool = Field(
        True,
        description="Let the AVX-512 keyword filter learn from the first 3 MiB it scans and "
        "rebuild itself (every 256 KiB, on a background thread) so that the words the traffic "
        "repeats stop raising false alarms. Findings are the same either way. While it learns, "
        "it keeps the 8-byte pieces of scanned text where it raised a false alarm in memory "
        "(at most 512 KiB per trap; never logged; zeroed when dropped and after the last "
        "rebuild); false turns that off.",
    )


class RouteRule(_Section):
    name: str = Field(
        ..., pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$", description="Route name (logs, reloads)."
    )
    path_prefix: str = Field(
        "/", pattern=r"^/", description="Requests whose path starts with this prefix match."
    )
    header_name: str | None = Field(
        None,
        pattern=r"^[a-z0-9!#$%&'*+.^_`|~-]+$",
        description="If set, the request must also carry this header (lowercase name)...",
    )
    header_value: str | None = Field(
        None, description="...with exactly this value (any value when unset)."
    )
    actions: dict[str, Action] = Field(
        default_factory=dict,
        description="Per-category actions for this route, merged over policy.actions.",
    )
    shadow: bool | None = Field(
        None, description="Observe-only for this route (unset: the global policy.shadow)."
    )

    def matches(self, path: str, headers: Mapping[str, str]) -> bool:
        if not path.startswith(self.path_prefix):
            return False
        if self.header_name is None:
            return True
        value = headers.get(self.header_name)
        return value is not None and (self.header_value is None or value == self.header_value)


class PolicySettings(_Section):
    actions: dict[str, Action] = Field(
        default_factory=lambda: {
            "secret": Action.REDACT,
            "pii": Action.REDACT,
            "injection": Action.BLOCK,
            "entropy": Action.LOG,
            "limits": Action.LOG,
        },
        description="Action per finding category: block, redact, log or allow. The strongest "
        "action among a request's findings wins (block > redact > log > allow).",
    )
    default_action: Action = Field(
        Action.LOG, description="Action for a category not listed in 'actions'."
    )
    redaction: Literal["label", "mask", "hash"] = Field(
        "label",
        description="How redacted spans are replaced: 'label' writes [REDACTED:<rule-id>], "
        "'mask' asterisks of the same length, 'hash' [HASH:<rule-id>:<16 hex>], a keyed "
        "pseudonym (HMAC-SHA256) under keys.redaction.",
    )
    shadow: bool = Field(
        False,
        description="Observe-only: findings and the decision that would have been taken are "
        "logged and counted (godel_shadow_decisions_total), but every request passes unchanged.",
    )
    routes: tuple[RouteRule, ...] = Field(
        (),
        description="Per-route policies, first match wins (path prefix, optional header); "
        "requests matching none use the policy above. Fields: see policy.routes[] below.",
    )


class ResponseSettings(_Section):
    enabled: bool = Field(
        True,
        description="Scan response bodies: JSON buffered, text/event-stream streamed. Needs "
        "Envoy's response_header_mode SEND and allow_mode_override (see envoy/README.md).",
    )
    max_buffered_bytes: int = Field(
        4 * MiB,
        ge=1024,
        le=64 * MiB,
        description="Largest non-streamed response body to buffer and scan (as sent, before "
        "decoding); larger or unknown-length non-SSE responses are not scanned (see "
        "unscannable).",
    )
    sse_hold_chars: int = Field(
        4096,
        ge=16,
        le=65536,
        description="Most characters of a streamed response held back while they may still be "
        "part of a secret (an unfinished token, a spaced number, a private key block before its "
        "footer, a finding reaching into them); 4096 fits an RSA-4096 PEM key. "
        "A single token longer than this is released in part before it ends, so a secret longer "
        "than this can leak (counted in godel_sse_hold_overflows_total).",
    )
    strip_accept_encoding: bool = Field(
        True,
        description="Remove accept-encoding from requests so upstreams answer uncompressed "
        "and responses can be scanned (Envoy's decompressor before ext_proc hangs, envoy#21205). "
        "A response compressed anyway is decoded inside Godel within "
        "normalize.max_decompressed_bytes and max_ratio and scanned: a buffered one (gzip, "
        "deflate, br) is sent on as it came when clean and uncompressed when redacted; an SSE "
        "stream (gzip, deflate) is decoded chunk by chunk and sent on uncompressed, and cut "
        "short where it stops decoding. A br stream, another coding or a buffered body that "
        "does not decode is not scanned (see unscannable).",
    )
    unscannable: Literal["pass", "block"] = Field(
        "pass",
        description="What happens to a JSON, text or SSE response Godel cannot read: too large "
        "or of unknown length to buffer, in a content-encoding it does not decode (br for SSE), "
        "or a buffered body that does not decode. pass: it goes on unscanned (counted in "
        'godel_responses_total{mode="unscanned"} and logged); block: the client gets 502 '
        "instead. Other content types (images, archives) pass either way.",
    )


FailurePolicy = Literal["local", "open", "closed"]

_REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)


class RedisSettings(_Section):
    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in _REDIS_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(_REDIS_SCHEMES)}")
        netloc = rest.split("/", 1)[0]
        if "@" in netloc and ":" in netloc.rsplit("@", 1)[0]:
            raise ValueError(
                "the URL holds a password; give keys.redis_password a reference instead"
            )
        if scheme.endswith("+sentinel") and len(rest.split("/")) < 2:
            raise ValueError("a sentinel URL names the service: redis+sentinel://h1:26379/mymaster")
        return value

    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Where the limiter state lives: redis:// or rediss:// (TLS) for one "
        "server, unix:// for a socket, redis+sentinel://h1:26379,h2:26379/<service>[/db] for "
        "Sentinel, redis+cluster://h1:6379,h2:6379 for Cluster (rediss+... for TLS). No "
        "password in the URL.",
    )
    username: str | None = Field(None, description="ACL user name (Redis 6+), if any.")
    tls_ca_file: Path | None = Field(
        None, description="CA bundle that signs the Redis server certificate (rediss://)."
    )
    key_prefix: str = Field(
        "godel",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Prefix of every key Godel writes: <prefix>:{<caller>}:rate:<tier> and "
        "<prefix>:{<caller>}:debt; {<caller>} is a hash of the identity (a Cluster hash tag).",
    )
    timeout_ms: int = Field(
        50,
        ge=1,
        le=1000,
        description="Longest a request waits for Redis; then the failure policy answers.",
    )
    retry_interval_ms: int = Field(
        1000,
        ge=10,
        le=60_000,
        description="After a Redis failure, how long decisions go straight to the failure "
        "policy before Redis is tried again (recovery is automatic).",
    )
    max_connections: int = Field(
        32, ge=1, le=1024, description="Connection pool size (per process)."
    )
    batch_max: int = Field(
        128,
        ge=1,
        le=1024,
        description="Most decisions sent in one call. Decisions that arrive in the same event "
        "loop tick share a round trip; 1 disables batching.",
    )
    scripting: Literal["auto", "functions", "eval"] = Field(
        "auto",
        description="'functions' loads a Redis Function (Redis 7+, survives restarts and "
        "failover); 'eval' uses EVALSHA and reloads on NOSCRIPT; 'auto' tries functions first.",
    )


class TierSettings(_Section):
    rate_per_second: float | None = Field(
        None, gt=0, le=1e6, description="Tokens per second; unset: the default tier's."
    )
    capacity: float | None = Field(
        None, ge=1, le=1e9, description="Bucket size; unset: the default tier's."
    )
    debt_limit: float | None = Field(
        None, gt=0, le=1e9, description="Security debt limit; unset: the default tier's."
    )


class TierSelection(_Section):
    header: str | None = Field(
        None,
        pattern=r"^[a-z0-9!#$%&'*+.^_`|~-]+$",
        description="Request header whose value names the caller's tier, set by the upstream "
        "auth (Envoy must overwrite any copy a client sends).",
    )
    claim_header: str | None = Field(
        None,
        pattern=r"^[a-z0-9!#$%&'*+.^_`|~-]+$",
        description="Request header carrying the verified JWT payload as base64url JSON (Envoy "
        "jwt_authn forward_payload_header); the tier is read from 'claim'. Wins over 'header'.",
    )
    claim: str = Field(
        "tier",
        pattern=r"^[A-Za-z0-9_.:/-]{1,128}$",
        description="Claim in the claim_header payload that names the tier; dots walk nested "
        "objects (e.g. plan.tier).",
    )
    values: dict[str, str] = Field(
        default_factory=dict,
        description="Maps header or claim values to tier names (e.g. {gold: premium}); a value "
        "not listed is used as the tier name itself. Unknown tiers get the default tier.",
    )


class DebtSettings(_Section):
    enabled: bool = Field(
        True,
        description="Charge each finding's severity weight (critical 5, error 4, warning 3, "
        "notice 2) to the caller's security debt.",
    )
    half_life_seconds: float = Field(
        600.0, gt=0, le=30 * 86400, description="The debt halves every this many seconds."
    )
    cooldown_seconds: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="At or above the limit the caller is refused for at least this long (and "
        "until the debt has decayed below the limit).",
    )
    action: Literal["block", "throttle"] = Field(
        "block", description="Refuse an indebted caller with 403 (block) or 429 (throttle)."
    )
    cost_per_point: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="Extra tokens each request costs per point of the caller's debt (0: debt "
        "does not change the rate).",
    )
    max_points_per_request: float = Field(
        25.0,
        gt=0,
        le=1e6,
        description="Most debt one request can add, however many findings it has.",
    )
    on_error: FailurePolicy = Field(
        "local",
        description="When Redis fails: 'local' keeps debt in this process, 'open' ignores debt, "
        "'closed' refuses every request.",
    )


class LimiterSettings(_Section):
    @model_validator(mode="after")
    def _tier_names(self) -> LimiterSettings:
        for name in self.tiers:
            if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"tier name {name!r}: use 1-64 letters, digits, - or _")
        for value, tier in self.tier_from.values.items():
            if tier != "default" and tier not in self.tiers:
                raise ValueError(f"tier_from.values[{value!r}] names unknown tier {tier!r}")
        return self

    backend: Literal["local", "redis"] = Field(
        "local",
        description="'redis' is one global bucket and debt per caller shared by every Godel "
        "process; 'local' keeps them in this process (N replicas allow N times the rate).",
    )
    rate_per_second: float = Field(
        10.0,
        gt=0,
        le=1e6,
        description="Default tier: tokens added to each caller's bucket per second.",
    )
    capacity: float = Field(
        20.0,
        ge=1,
        le=1e9,
        description="Default tier: bucket size, the largest burst a caller may send.",
    )
    debt_limit: float = Field(
        20.0,
        gt=0,
        le=1e9,
        description="Default tier: security debt at which the caller is refused.",
    )
    tiers: dict[str, TierSettings] = Field(
        default_factory=dict,
        description="Named tiers, each with its own rate_per_second, capacity and debt_limit "
        "(see limiter.tiers.<name> below); callers in no tier get the default.",
    )
    tier_from: TierSelection = Field(
        default_factory=TierSelection, description="How a request names its tier."
    )
    on_error: FailurePolicy = Field(
        "local",
        description="When Redis fails: 'local' falls back to this process's bucket, 'open' "
        "allows, 'closed' answers 429. Every fallback decision is counted.",
    )
    headers: bool = Field(
        False,
        description="Add RateLimit and RateLimit-Policy (IETF draft) headers to allowed responses.",
    )
    max_identities: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="Most callers kept in memory by the local limiter and the fallback; the "
        "least recently seen are dropped first.",
    )
    debt: DebtSettings = Field(default_factory=DebtSettings, description="Security debt.")
    redis: RedisSettings = Field(default_factory=RedisSettings, description="Redis backend.")


_KEY_REF_HELP = (
    "a key reference (`file:/abs/path`, `vault-kv:<mount>/<path>#<field>`, `ssm:<name>`); "
    "unset: not configured"
)


def _check_key_ref(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not is_ref(value):
        raise ValueError(
            "not a key reference. Keys never go in the config file or the "
            "environment: store the key in Vault/OpenBao, AWS SSM or a mounted file and write "
            f"where it is, one of: {REF_SYNTAX} (docs/security.md)"
        )
    try:
        check_use(name, parse_ref(value))
    except RefError as exc:
        raise ValueError(str(exc)) from None
    return value


class VaultSettings(_Section):
    url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/@]+(/.*)?$",
        description="Vault or OpenBao address, e.g. https://vault.example:8200; needed by "
        "vault-kv: and vault-transit: keys. No credentials in the URL.",
    )
    namespace: str | None = Field(None, description="Vault Enterprise / OpenBao namespace.")
    ca_file: Path | None = Field(
        None, description="CA bundle that signs the Vault server certificate (default: system)."
    )
    auth: Literal["token", "approle", "kubernetes", "jwt"] = Field(
        "kubernetes",
        description="How Godel logs in: 'kubernetes' (service-account JWT checked by the "
        "cluster's TokenReview), 'jwt' (same JWT, JWT/OIDC auth method), 'approle', or "
        "'token' (a token file, e.g. a Vault Agent sink).",
    )
    auth_mount: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
        description="Mount path of the auth method (default: its name, e.g. kubernetes).",
    )
    role: str | None = Field(
        None, description="Vault role for 'kubernetes' and 'jwt' auth (required for those)."
    )
    jwt_file: Path = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        description="Service-account JWT for 'kubernetes' and 'jwt' auth (re-read at each login).",
    )
    token_file: Path | None = Field(
        None, description="File holding the Vault token for 'token' auth; re-read when it changes."
    )
    role_id_file: Path | None = Field(None, description="File holding the AppRole role_id.")
    secret_id_file: Path | None = Field(None, description="File holding the AppRole secret_id.")
    timeout_seconds: float = Field(5.0, gt=0, le=120, description="Timeout of each Vault request.")

    @model_validator(mode="after")
    def _auth_inputs(self) -> VaultSettings:
        if self.auth == "token" and self.token_file is None:
            raise ValueError("keys.vault.auth 'token' needs keys.vault.token_file")
        if self.auth == "approle" and (self.role_id_file is None or self.secret_id_file is None):
            raise ValueError(
                "keys.vault.auth 'approle' needs keys.vault.role_id_file and secret_id_file"
            )
        return self


class AwsSettings(_Section):
    region: str | None = Field(
        None,
        pattern=r"^[a-z0-9-]{1,32}$",
        description="AWS region of ssm: and kms: keys (default: boto3's, e.g. AWS_REGION).",
    )
    kms_endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s@]+$",
        description="KMS endpoint, e.g. a VPC interface endpoint (default: the public one).",
    )
    ssm_endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s@]+$",
        description="SSM endpoint, e.g. a VPC interface endpoint (default: the public one).",
    )
    timeout_seconds: float = Field(
        5.0, gt=0, le=120, description="Connect and read timeout of each AWS call."
    )


class KeySettings(_Section):
    redaction: str | None = Field(
        None, description=f"HMAC key of redaction: hash pseudonyms; {_KEY_REF_HELP}."
    )
    pseudonym: str | None = Field(
        None, description=f"HMAC key of analytic ids and Redis key names; {_KEY_REF_HELP}."
    )
    audit: str | None = Field(None, description=f"Key of reversible audit ids; {_KEY_REF_HELP}.")
    audit_kek: str | None = Field(
        None,
        description="Key-encryption key that wraps audit data keys: "
        "`vault-transit:<mount>/<key>`, `kms:<key id, ARN or alias/name>` or `file:/abs/path`; "
        "unset: not configured.",
    )
    audit_signing: str | None = Field(
        None, description=f"Ed25519 key that signs audit checkpoints; {_KEY_REF_HELP}."
    )
    redis_password: str | None = Field(
        None, description=f"Password of the Redis limiter backend; {_KEY_REF_HELP}."
    )
    inspect_token: str | None = Field(
        None,
        description="Bearer token the HTTP inspect endpoint requires (Authorization: Bearer "
        f"...); unset: the endpoint trusts its network; {_KEY_REF_HELP}.",
    )
    admin_token: str | None = Field(
        None,
        description="Bearer token that POST /reload must present (Authorization: Bearer ...); "
        f"unset: loopback callers only; {_KEY_REF_HELP}.",
    )
    refresh_seconds: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Fetch every key again this often (0: only at start, SIGHUP and POST "
        "/reload); a new version becomes current, the previous ones stay for decryption.",
    )
    keep_versions: int = Field(
        2, ge=1, le=16, description="Versions of each key held in memory (current + previous)."
    )
    vault: VaultSettings = Field(default_factory=VaultSettings, description="Vault / OpenBao.")
    aws: AwsSettings = Field(default_factory=AwsSettings, description="AWS KMS and SSM.")

    @field_validator(*KEY_USES, mode="before")
    @classmethod
    def _refs_only(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        return _check_key_ref(info.field_name, value)

    @model_validator(mode="after")
    def _providers_configured(self) -> KeySettings:
        for name in KEY_USES:
            value = getattr(self, name)
            if value is not None and value.startswith("vault-") and self.vault.url is None:
                raise ValueError(f"keys.{name} is a Vault reference but keys.vault.url is unset")
            if (
                value is not None
                and value.startswith("vault-")
                and self.vault.auth in ("kubernetes", "jwt")
                and not self.vault.role
            ):
                raise ValueError(f"keys.vault.auth '{self.vault.auth}' needs keys.vault.role")
        return self


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level. Bodies and matched values are never logged."
    )
    format: Literal["json", "text"] = Field("json", description="Log line format.")


class AuditSettings(_Section):
    @model_validator(mode="after")
    def _needs_sink_and_spill(self) -> AuditSettings:
        if self.enabled and not (self.stdout or self.directory is not None):
            raise ValueError("audit.enabled needs a sink: audit.stdout or audit.directory")
        if self.enabled and self.spill_path is None:
            raise ValueError("audit.enabled needs audit.spill_path")
        return self

    enabled: bool = Field(
        False,
        description="Write the encrypted, hash-chained audit log (docs/audit.md). Off by default: "
        "it needs the audit keys and a key wrapper from the key provider.",
    )
    include_allow: bool = Field(
        False,
        description="Record allowed requests too; block, redact, throttle and too_large are "
        "always recorded.",
    )
    stdout: bool = Field(False, description="Write audit lines to stdout (for ELK or Loki).")
    directory: Path | None = Field(
        None,
        description="Directory for audit files, one per segment: "
        "audit-<log id>-<first sequence number>.jsonl.",
    )
    fsync: bool = Field(True, description="fsync audit files after each batch of lines.")
    spill_path: Path | None = Field(
        None,
        description="Local file for lines a sink could not take (failure or full queue); "
        "replayed to the sink when it recovers. Best on another disk than audit.directory.",
    )
    checkpoint_path: Path | None = Field(
        None,
        description="Append-only file that also receives every signed checkpoint; keep it where "
        "the log's writer cannot rewrite it (a WORM bucket, a log shipper's own store).",
    )
    queue_size: int = Field(
        10_000,
        ge=16,
        le=1_000_000,
        description="Events waiting for the writer; beyond it events are sealed at once and "
        "appended to the spill file (nothing is dropped, the request never waits).",
    )
    checkpoint_records: int = Field(
        1000, ge=1, le=1_000_000, description="Sign a checkpoint after this many records..."
    )
    checkpoint_seconds: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="...or when a record has waited this long for one. One more at close.",
    )
    segment_records: int = Field(
        1_000_000,
        ge=1,
        le=2**24,
        description="Records per segment: then a new data key is used (wrapped once by the key "
        "provider) and a new file begins.",
    )
    segment_seconds: float = Field(
        3600.0, ge=1, le=7 * 86400, description="Longest life of a segment and its data key."
    )
    sink_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="A sink write slower than this counts as stalled; its lines go to the spill "
        "file until it recovers.",
    )
    sink_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed sink write before its lines are spilled."
    )
    retry_seconds: float = Field(
        0.2,
        gt=0,
        le=60,
        description="Wait before a retry (doubling per retry); a failed sink is retried after it.",
    )
    close_timeout_seconds: float = Field(
        10.0,
        ge=0,
        le=300,
        description="On shutdown, how long close() keeps retrying a failed sink; what remains "
        "stays in the spill file.",
    )


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings, description="Servers.")
    identity: IdentitySettings = Field(
        default_factory=IdentitySettings, description="Caller identity."
    )
    traps: TrapSettings = Field(default_factory=TrapSettings, description="Detectors.")
    policy: PolicySettings = Field(default_factory=PolicySettings, description="Policy.")
    responses: ResponseSettings = Field(
        default_factory=ResponseSettings, description="Response scanning."
    )
    limiter: LimiterSettings = Field(default_factory=LimiterSettings, description="Rate limit.")
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")
    keys: KeySettings = Field(default_factory=KeySettings, description="Key providers and keys.")
    audit: AuditSettings = Field(default_factory=AuditSettings, description="Audit log.")

    @model_validator(mode="after")
    def _features_have_their_keys(self) -> Settings:
        """A feature that needs a key names the key setting it is missing."""
        needs: list[tuple[bool, str, tuple[str, ...]]] = [
            (self.policy.redaction == "hash", "policy.redaction 'hash'", ("redaction",)),
            (
                self.audit.enabled,
                "audit.enabled",
                ("pseudonym", "audit", "audit_kek", "audit_signing"),
            ),
        ]
        for active, feature, names in needs:
            missing = [f"keys.{n}" for n in names if getattr(self.keys, n) is None]
            if active and missing:
                raise ValueError(f"{feature} needs {', '.join(missing)} (a key reference)")
        return self


def _format_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "<top level>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``GODEL_SECTION__FIELD=value`` variables into a nested mapping."""
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name}: conflicts with another override")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node[path[-1]] = value
    return out


def _refuse_env_keys(env: Mapping[str, str]) -> None:
    """Keys never come from the environment: a ``GODEL_KEYS__<name>`` variable must hold a
    reference. The message names the variable, never its value."""
    prefix = ENV_PREFIX + "KEYS__"
    for name, raw in env.items():
        if not name.startswith(prefix):
            continue
        key = name[len(prefix) :].lower()
        if key in KEY_USES and not is_ref(raw.strip()):
            raise ConfigError(
                f"environment variable {name}: not a key reference. Keys are never set in the "
                "environment (it is readable in /proc, crash dumps and pod specs): store the "
                f"key in Vault/OpenBao, AWS SSM or a mounted file and give a reference, one of: "
                f"{REF_SYNTAX}"
            )


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def settings_from_mapping(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None, source: str = "config"
) -> Settings:
    """Validate a mapping (plus ``GODEL_*`` overrides from ``env``) into :class:`Settings`."""
    _refuse_env_keys(env or {})
    merged = _merge(dict(data), _env_overrides(env if env is not None else {}))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_error(exc)}") from None


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate a config file. ``None`` means built-in defaults.

    Environment overrides come from ``os.environ`` unless ``env`` is given.
    """
    env = os.environ if env is None else env
    if path is None:
        return settings_from_mapping({}, env, source="defaults")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{p}: invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: <top level>: expected a mapping of sections")
    return settings_from_mapping(data, env, source=str(p))
