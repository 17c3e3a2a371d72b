"""The ``godel`` command line. The only place that configures logging.

Exit status: 0 success (``scan``: nothing found; ``audit verify``: intact), 1 ``scan`` found
something, ``keys check`` found a key that does not load or ``audit verify`` found tampering,
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ext_proc import __version__
from ext_proc.config import Settings, load_config
from ext_proc.errors import ConfigError, GodelError

__all__ = ["main"]

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.logging.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.logging.level.upper())


def _version_text() -> str:
    from ext_proc import _native_traps

    return f"godel {__version__} (native_traps {_native_traps.__version__})"


# -- serve / check-config ---------------------------------------------------------------------
def _cmd_serve(args: argparse.Namespace) -> int:
    from ext_proc.server import serve

    settings = load_config(args.config)
    _configure_logging(settings)
    asyncio.run(
        serve(
            settings,
            Path(args.port_file) if args.port_file else None,
            Path(args.config) if args.config else None,
        )
    )
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace) -> int:
    from ext_proc.traps import TrapSet

    settings = load_config(args.config)
    traps = TrapSet.from_settings(settings.traps)
    print(
        f"ok: {args.config}: {len(traps)} rules from {len(traps.packs)} pack(s), "
        f"keyword prefilter {traps.prefilter}"
    )
    return EXIT_OK


# -- keys -------------------------------------------------------------------------------------
async def _keys_check(settings: Settings, out: IO[str]) -> int:
    from ext_proc.keys import build_keyring

    keyring = build_keyring(settings.keys)
    try:
        if not keyring.names:
            out.write("no keys configured (keys.* are all unset)\n")
            return EXIT_OK
        failed = False
        for provider, description, error in await keyring.check_providers():
            failed = failed or error is not None
            out.write(f"provider {provider}: {description or 'FAILED: ' + str(error)}\n")
        for status in await keyring.refresh():
            failed = failed or not status.ok
            result = "OK" if status.ok else f"FAILED: {status.error}"
            out.write(f"{status.name}\t{status.ref}\t{status.key_id or '-'}\t{result}\n")
        return EXIT_FOUND if failed else EXIT_OK
    finally:
        await keyring.close()


def _cmd_keys_check(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    _configure_logging(settings)
    logging.getLogger("ext_proc.keys").setLevel(logging.ERROR)  # failures are in the table
    return asyncio.run(_keys_check(settings, sys.stdout))


# -- scan -------------------------------------------------------------------------------------
def _scan_object(pipeline: Any, data: bytes) -> dict[str, Any]:
    inspection = pipeline.inspect(data)
    return {
        "decision": inspection.decision,
        "findings": [
            {
                "trap": j.finding.trap,
                "rule": j.finding.rule,
                "category": j.finding.category,
                "start": j.finding.start,
                "end": j.finding.end,
                "severity": j.finding.severity,
                "action": j.action.value,
            }
            for j in inspection.verdict.judged
        ],
    }


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _print_human(result: dict[str, Any], out: IO[str]) -> None:
    out.write(f"decision: {result['decision']}\n")
    for f in result["findings"]:
        out.write(
            f"  {f['start']}-{f['end']}  {f['rule']} ({f['category']}, {f['severity']}) "
            f"-> {f['action']}\n"
        )


def _cmd_scan(args: argparse.Namespace) -> int:
    from ext_proc.metrics import Metrics
    from ext_proc.server import build_pipeline

    settings = load_config(args.policy)
    pipeline = build_pipeline(settings, Metrics())
    try:
        data = _read_input(args.path)
    except OSError as exc:
        print(f"godel scan: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    out = sys.stdout
    if not args.jsonl:
        result = _scan_object(pipeline, data)
        if args.json:
            out.write(json.dumps(result) + "\n")
        else:
            _print_human(result, out)
        return EXIT_FOUND if result["findings"] else EXIT_OK

    found = bad = False
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError("expected an object with a string 'text'")
        except ValueError as exc:
            print(f"godel scan: line {number}: {exc}", file=sys.stderr)
            bad = True
            continue
        result = _scan_object(pipeline, item["text"].encode("utf-8", "surrogatepass"))
        found = found or bool(result["findings"])
        out.write(json.dumps({"id": item.get("id"), **result}) + "\n")
    if bad:
        return EXIT_USAGE
    return EXIT_FOUND if found else EXIT_OK


# -- demo -------------------------------------------------------------------------------------
def _cmd_demo_upstream(args: argparse.Namespace) -> int:
    from ext_proc.demo_upstream import run

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    run(args.address)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ext_proc.devstack import run_demo

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run_demo(Path(args.envoy_config), keep_serving=not args.tour_only)


# -- audit ------------------------------------------------------------------------------------
def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from ext_proc.audit import load_public_key, verify_log

    key = load_public_key(Path(args.public_key)) if args.public_key else None
    report = verify_log(
        [Path(f) for f in args.files],
        public_key=key,
        checkpoints=Path(args.checkpoints) if args.checkpoints else None,
        allow_open=args.allow_open,
        partial=args.partial,
    )
    for note in report.notes:
        print(f"godel audit verify: note: {note}", file=sys.stderr)
    if key is None:
        print(
            "godel audit verify: warning: no --public-key, checkpoint signatures not checked "
            "(an attacker who rewrites the whole log is not detected)",
            file=sys.stderr,
        )
    if report.problem is not None:
        print(f"godel audit verify: TAMPERED: {report.problem}", file=sys.stderr)
        return EXIT_FOUND
    print(
        f"ok: log {report.log_id}: {report.lines} lines, {report.records} records, "
        f"{report.segments} segment(s), {report.checkpoints} checkpoints"
        f"{' (signatures verified)' if key is not None else ''}, last signed seq "
        f"{report.last_signed_seq}"
        + (f", {report.store_checkpoints} matched in the store" if args.checkpoints else "")
    )
    return EXIT_OK


def _audit_wrapper(args: argparse.Namespace) -> Any:
    from ext_proc.audit import LocalKeyWrapper, load_audit_key_file

    keks = [load_audit_key_file(Path(f), "--kek-file") for f in args.kek_file]
    return LocalKeyWrapper(*keks)


def _audit_keys(args: argparse.Namespace, *, wrapper: bool) -> tuple[Any, Any, Any]:
    """(pseudonym key, subject key, KEK wrapper or None) from --config or the key-file options.
    Raises ConfigError naming what is missing."""
    from ext_proc.audit import KeyringKeyWrapper, load_audit_key_file, parse_audit_key
    from ext_proc.keys import load_keys

    if args.config:
        settings = load_config(args.config)
        keyring = asyncio.run(load_keys(settings))
        for name in ("pseudonym", "audit") + (("audit_kek",) if wrapper else ()):
            if name not in keyring:
                raise ConfigError(f"{args.config}: keys.{name} is not configured")
        return (
            parse_audit_key(keyring.material("pseudonym").reveal(), "keys.pseudonym"),
            parse_audit_key(keyring.material("audit").reveal(), "keys.audit"),
            KeyringKeyWrapper(keyring) if wrapper else None,
        )
    missing = [
        opt
        for opt, val in (
            ("--pseudonym-key-file", args.pseudonym_key_file),
            ("--subject-key-file", args.subject_key_file),
            *((("--kek-file", getattr(args, "kek_file", None)),) if wrapper else ()),
        )
        if not val
    ]
    if missing:
        raise ConfigError(f"give --config or {', '.join(missing)}")
    pseudonym = load_audit_key_file(Path(args.pseudonym_key_file), "--pseudonym-key-file")
    subject_key = load_audit_key_file(Path(args.subject_key_file), "--subject-key-file")
    return pseudonym, subject_key, _audit_wrapper(args) if wrapper else None


def _cmd_audit_decrypt(args: argparse.Namespace) -> int:
    from ext_proc.audit import AuditKeyError, LocalSubjectKeyStore, read_records, verify_log
    from ext_proc.audit.format import Pseudonyms

    files = [Path(f) for f in args.files]
    if not args.no_verify:
        report = verify_log(files, allow_open=True, partial=True)
        if report.problem is not None:
            print(f"godel audit decrypt: TAMPERED: {report.problem}", file=sys.stderr)
            return EXIT_FOUND
    pseudonym, subject_key, wrapper = _audit_keys(args, wrapper=True)
    ids = Pseudonyms(pseudonym, subject_key)
    store = (
        LocalSubjectKeyStore(Path(args.subject_store), subject_key) if args.subject_store else None
    )
    want_analytic = ids.analytic_id(args.subject) if args.subject is not None else None

    async def run() -> int:
        found = 0
        async for rec in read_records(files, wrapper):
            body = rec.body
            if want_analytic is not None and body.get("analytic_id") != want_analytic:
                continue
            if args.audit_id is not None and body.get("audit_id") != args.audit_id:
                continue
            user: str | None = None
            try:
                own = None
                if body.get("audit_key") == "subject":
                    own = store.key_for(body["analytic_id"], create=False) if store else None
                    if own is None:
                        raise AuditKeyError("subject key shredded or store not given")
                user = ids.reveal_audit_id(body["audit_id"], own)
            except AuditKeyError:
                user = None
            out = {"file": str(rec.file), "line": rec.line, "seq": rec.seq, "ts": rec.ts}
            out.update(body)
            out["user_id"] = user
            sys.stdout.write(json.dumps(out) + "\n")
            found += 1
        print(f"godel audit decrypt: {found} record(s) of the subject", file=sys.stderr)
        return EXIT_OK

    return asyncio.run(run())


def _cmd_audit_shred(args: argparse.Namespace) -> int:
    from ext_proc.audit import LocalSubjectKeyStore
    from ext_proc.audit.format import Pseudonyms

    if not args.subject_store:
        print("godel audit shred: --subject-store is required", file=sys.stderr)
        return EXIT_USAGE
    pseudonym, subject_key, _ = _audit_keys(args, wrapper=False)
    analytic = Pseudonyms(pseudonym, subject_key).analytic_id(args.subject)
    store = LocalSubjectKeyStore(Path(args.subject_store), subject_key)
    if not store.shred(analytic):
        print(f"godel audit shred: no key for subject {analytic}", file=sys.stderr)
        return EXIT_FOUND
    print(f"shredded: subject key of {analytic}")
    return EXIT_OK


def _cmd_audit_public_key(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ext_proc.audit import load_audit_key_file

    seed = load_audit_key_file(Path(args.signing_key_file), "--signing-key-file")
    public = Ed25519PrivateKey.from_private_bytes(seed.reveal()).public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sys.stdout.write(pem.decode("ascii"))
    return EXIT_OK


def _audit_parser(sub: Any) -> None:
    a = sub.add_parser("audit", help="verify or decrypt the audit log (docs/audit.md)")
    asub = a.add_subparsers(dest="audit_command", required=True, metavar="AUDIT_COMMAND")

    v = asub.add_parser(
        "verify", help="check the hash chain and signed checkpoints; exit 1 on tampering"
    )
    v.add_argument("files", nargs="+", metavar="FILE", help="log files in order, or a directory")
    v.add_argument("--checkpoints", help="checkpoint store kept apart (audit.checkpoint_path)")
    v.add_argument("--public-key", help="Ed25519 public key (PEM, or 32 bytes raw/hex/base64)")
    v.add_argument(
        "--allow-open", action="store_true", help="the last file may lack its closing checkpoint"
    )
    v.add_argument(
        "--partial", action="store_true", help="later segments may follow the files given"
    )
    v.set_defaults(func=_cmd_audit_verify)

    keys = argparse.ArgumentParser(add_help=False)
    keys.add_argument(
        "--config",
        help="Godel config whose key provider supplies keys.pseudonym, keys.audit and "
        "keys.audit_kek (instead of the key-file options)",
    )
    keys.add_argument("--pseudonym-key-file", help="analytic-id (HMAC) key, 32 bytes")
    keys.add_argument("--subject-key-file", help="audit-id key, 32 bytes")
    keys.add_argument("--subject-store", help="directory of per-subject keys (crypto-shredding)")

    d = asub.add_parser(
        "decrypt", parents=[keys], help="print one subject's records (warrant workflow)"
    )
    d.add_argument("files", nargs="+", metavar="FILE", help="log files in order, or a directory")
    who = d.add_mutually_exclusive_group(required=True)
    who.add_argument("--subject", help="the user id (matched through its analytic id)")
    who.add_argument("--audit-id", help="an audit id (s1:...) as found in a record")
    d.add_argument(
        "--kek-file",
        action="append",
        help="key-encryption key file (32 bytes) of a local KEK; repeat for keys rotated out "
        "(without --config)",
    )
    d.add_argument("--no-verify", action="store_true", help="skip the chain check first")
    d.set_defaults(func=_cmd_audit_decrypt)

    sh = asub.add_parser("shred", parents=[keys], help="delete one subject's key (erasure request)")
    sh.add_argument("--subject", required=True, help="the user id to erase")
    sh.set_defaults(func=_cmd_audit_shred)

    pk = asub.add_parser("public-key", help="print the checkpoint verification key (PEM)")
    pk.add_argument("--signing-key-file", required=True, help="Ed25519 seed, 32 bytes")
    pk.set_defaults(func=_cmd_audit_public_key)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="godel", description="Godel Guardrail ingress filter.")
    p.add_argument("--version", action="version", version=_version_text())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the ext_proc gRPC server and the admin HTTP server")
    s.add_argument("--config", help="YAML config file (default: built-in defaults)")
    s.add_argument("--port-file", help=argparse.SUPPRESS)  # tests: learn ephemeral ports
    s.set_defaults(func=_cmd_serve)

    c = sub.add_parser("check-config", help="validate a config file and compile its rule packs")
    c.add_argument("config", help="YAML config file")
    c.set_defaults(func=_cmd_check_config)

    k = sub.add_parser("keys", help="key providers: check that every configured key loads")
    ksub = k.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    kc = ksub.add_parser(
        "check",
        help="reach the providers and load every configured key; print name, reference, key "
        "id and OK or the error (never key material); exit 1 if any fails",
    )
    kc.add_argument("--config", help="YAML config file (default: built-in defaults)")
    kc.set_defaults(func=_cmd_keys_check)

    sc = sub.add_parser("scan", help="scan text offline with the server's traps and policy")
    sc.add_argument("--policy", help="config file whose traps and policy to use")
    fmt = sc.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON object")
    fmt.add_argument(
        "--jsonl",
        action="store_true",
        help='read JSON lines {"id", "text"}; write one result per line with the id',
    )
    sc.add_argument("path", nargs="?", default="-", help="file to scan, or - for stdin")
    sc.set_defaults(func=_cmd_scan)

    u = sub.add_parser("demo-upstream", help="run the fake OpenAI-compatible echo upstream")
    u.add_argument("--address", default="127.0.0.1:8000", help="host:port to listen on")
    u.set_defaults(func=_cmd_demo_upstream)

    d = sub.add_parser("demo", help="run Envoy + Godel + demo upstream and a scripted tour")
    d.add_argument("--envoy-config", default="envoy/envoy.yaml", help="Envoy config to run")
    d.add_argument("--tour-only", action="store_true", help="exit after the tour")
    d.set_defaults(func=_cmd_demo)

    _audit_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except GodelError as exc:
        print(f"godel: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
