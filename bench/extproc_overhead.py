"""What Godel adds to a request: Envoy with and without the ext_proc filter, in one run.

The upstream is a second Envoy answering 200 from a `direct_response` route, so the upstream
costs next to nothing and the only difference between the configurations is Godel, in its
default two-message mode and in the one-message mode of ADR 0002. Load comes from `hey`
(HTTP/1.1, keep-alive) with 4 KiB JSON chat bodies. Godel's CPU per request is its user+system
time over the run (from /proc) divided by the requests served. Prints a table and writes
bench/results/extproc_overhead.json.

    .venv/bin/python bench/extproc_overhead.py [--seconds 8] [--concurrency 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ext_proc.devstack import Proc, render_envoy_config, start_envoy, start_godel

ROOT = Path(__file__).resolve().parent.parent
# (name, ext_proc server: None | "godel" | "null", one-message mode)
CONFIGS = (
    ("envoy-only", None, False),
    ("null-2msg", "null", False),
    ("godel-2msg", "godel", False),
    ("null-1msg", "null", True),
    ("godel-1msg", "godel", True),
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def chat_body(size: int = 4096) -> bytes:
    sentence = "Please summarise the quarterly risk report for the credit committee. "
    text = sentence * (size // len(sentence) + 1)
    doc: dict[str, Any] = {
        "model": "godel-echo-1",
        "messages": [
            {"role": "system", "content": "You are a careful assistant for a bank."},
            {"role": "user", "content": ""},
        ],
    }
    base = len(json.dumps(doc).encode())
    doc["messages"][1]["content"] = text[: size - base]
    out = json.dumps(doc).encode()
    assert len(out) == size, len(out)
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def upstream_config(workdir: Path) -> Path:
    """A second Envoy that answers 200 to everything: an upstream that costs next to nothing.

    Its buffer filter reads the whole request body before the direct response. Without it the
    upstream answers as soon as the headers arrive, and in one-message mode Envoy then cancels
    the body's trip to the ext_proc server: the request would never be scanned and the bench
    would flatter that mode.
    """
    cfg = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    cfg["admin"]["address"]["socket_address"]["port_value"] = 0
    cfg["static_resources"]["clusters"] = []
    listener = cfg["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = 0
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm.pop("access_log", None)
    buffer = {
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 8 * 1024 * 1024,
        },
    }
    hcm["http_filters"] = [buffer] + [
        f for f in hcm["http_filters"] if f["name"].endswith("router")
    ]
    for vh in hcm["route_config"]["virtual_hosts"]:
        vh["routes"] = [
            {
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
            }
        ]
    path = workdir / "upstream.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def envoy_config(
    workdir: Path,
    name: str,
    godel_port: int,
    upstream_port: int,
    with_ext_proc: bool,
    one_message: bool,
) -> Path:
    path = render_envoy_config(
        ROOT / "envoy" / "envoy.yaml",
        workdir / f"{name}.yaml",
        godel_port=godel_port,
        upstream_port=upstream_port,
        one_message=one_message,
    )
    cfg: dict[str, Any] = yaml.safe_load(path.read_text())
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm.pop("access_log", None)
    if not with_ext_proc:
        hcm["http_filters"] = [
            f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.ext_proc"
        ]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def hey(port: int, body_file: Path, seconds: int, concurrency: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(concurrency),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-H",
            "x-user-id: bench",
            "-D",
            str(body_file),
            f"http://127.0.0.1:{port}/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {
        int(m.group(1)): float(m.group(2)) for m in re.finditer(r"(\d+)%+ in ([\d.]+) secs", out)
    }
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    total = sum(int(v) for v in codes.values())
    return {
        "rps": rps,
        "p50_ms": pct[50] * 1000,
        "p99_ms": pct[99] * 1000,
        "requests": total,
        "non_200": total - int(codes.get("200", 0)),
    }


def start_null(workdir: Path) -> tuple[Proc, int]:
    port_file = workdir / "null-port.json"
    proc = Proc(
        "null-extproc",
        [sys.executable, str(ROOT / "bench" / "null_extproc.py"), str(port_file)],
        workdir / "null.log",
    ).start()
    deadline = time.monotonic() + 20
    while not port_file.exists():
        proc.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError("null ext_proc server did not start")
        time.sleep(0.05)
    return proc, int(json.loads(port_file.read_text())["grpc"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--only",
        nargs="+",
        choices=[c[0] for c in CONFIGS],
        help="run only these configurations (envoy-only always runs as the anchor)",
    )
    args = ap.parse_args()
    wanted = {"envoy-only", *(args.only or (c[0] for c in CONFIGS))}
    if not shutil.which("hey"):
        raise SystemExit("bench: `hey` not found (make install)")
    work = Path(tempfile.mkdtemp(prefix="godel-bench-"))
    body = work / "body.json"
    body.write_bytes(chat_body())
    godel, godel_port, _ = start_godel(
        work,
        {"limiter": {"rate_per_second": 1e6, "capacity": 1e9}, "logging": {"level": "warning"}},
    )
    null, null_port = start_null(work)
    upstream, up_port, _ = start_envoy(work, upstream_config(work))
    servers = {"godel": (godel, godel_port), "null": (null, null_port)}
    rows: list[dict[str, Any]] = []
    try:
        for rnd in range(1, args.rounds + 1):
            for name, server, one in (c for c in CONFIGS if c[0] in wanted):
                proc, port_ = servers[server] if server else (None, 1)
                cfg = envoy_config(work, name, port_, up_port, server is not None, one)
                envoy, port, _ = start_envoy(work, cfg)
                try:
                    hey(port, body, 1, args.concurrency)  # warm-up
                    cpu0 = cpu_seconds(proc.pid) if proc else 0.0
                    res = hey(port, body, args.seconds, args.concurrency)
                    cpu = cpu_seconds(proc.pid) - cpu0 if proc else 0.0
                finally:
                    envoy.stop()
                res["server_cpu_us_per_req"] = cpu / res["requests"] * 1e6
                rows.append({"round": rnd, "config": name, **res})
    finally:
        for proc in (godel, null, upstream):
            proc.stop()
    report(rows, args)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "extproc_overhead.json").write_text(json.dumps(rows, indent=2))


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n4 KiB JSON bodies, hey -c {args.concurrency} -z {args.seconds}s, "
        f"Envoy --concurrency 1, {os.cpu_count()} cores"
    )
    print("server CPU/req = the ext_proc server's user+system CPU time / requests served\n")
    print(
        f"{'round':>5} {'config':<12} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'server CPU/req':>15} {'non-200':>7}"
    )
    for r in rows:
        cpu = f"{r['server_cpu_us_per_req']:.0f} us" if r["config"] != "envoy-only" else "-"
        print(
            f"{r['round']:>5} {r['config']:<12} {r['rps']:>8.0f} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {cpu:>15} {r['non_200']:>7}"
        )
    print()
    for rnd in sorted({r["round"] for r in rows}):
        by_name = {r["config"]: r for r in rows if r["round"] == rnd}
        base = by_name["envoy-only"]
        for name, row in by_name.items():
            if name == "envoy-only":
                continue
            line = (
                f"round {rnd} {name}: throughput ratio vs envoy-only "
                f"{row['rps'] / base['rps']:.2f}, added p50 {row['p50_ms'] - base['p50_ms']:.2f} "
                f"ms, added p99 {row['p99_ms'] - base['p99_ms']:.2f} ms"
            )
            null = by_name.get(name.replace("godel", "null"))
            if name.startswith("godel") and null:
                line += (
                    f", CPU vs do-nothing server "
                    f"{row['server_cpu_us_per_req'] / null['server_cpu_us_per_req']:.2f}x"
                )
            print(line)


if __name__ == "__main__":
    main()
