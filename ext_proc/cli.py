"""The ``godel`` command line. The only place that configures logging.

Exit status: 0 success (``scan``: nothing found), 1 ``scan`` found something or ``keys check``
found a key that does not load, 2 usage or configuration error.
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
from ext_proc.errors import GodelError

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
    print(f"ok: {args.config}: {len(traps)} rules from {len(traps.packs)} pack(s)")
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
