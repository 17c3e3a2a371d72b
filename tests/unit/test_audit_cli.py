"""`godel audit verify|decrypt|shred|public-key`, run as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ext_proc.audit import AuditLog, LocalSubjectKeyStore
from ext_proc.audit.format import seal_line
from ext_proc.metrics import Metrics
from tests.unit.audit_helpers import (
    USER,
    KeySet,
    event,
    log_files,
    make_keys,
    read_lines,
    reseal,
    settings,
    write_lines,
    write_log,
)


def godel(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ext_proc", "audit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def audit_log(tmp_path: Path) -> tuple[Path, KeySet]:
    """A closed log of 7 records in one file: line 1 key, 2-4 records, 5 checkpoint,
    6-8 records, 9 checkpoint, 10 record, 11 closing checkpoint."""
    ks = make_keys(tmp_path)
    write_log(tmp_path, ks, 7)
    (path,) = log_files(tmp_path)
    assert len(read_lines(path)) == 11
    return path, ks


def verify(path: Path, ks: KeySet, *extra: str | Path) -> subprocess.CompletedProcess[str]:
    return godel("verify", path, "--public-key", ks.public_file, *extra)


def test_verify_intact_log_exit_0(tmp_path: Path, audit_log: tuple[Path, KeySet]) -> None:
    path, ks = audit_log
    out = verify(path, ks, "--checkpoints", tmp_path / "store" / "checkpoints.jsonl")
    assert out.returncode == 0, out.stderr
    assert "7 records" in out.stdout
    assert "signatures verified" in out.stdout
    assert "3 matched in the store" in out.stdout


def test_verify_without_public_key_warns(audit_log: tuple[Path, KeySet]) -> None:
    path, _ = audit_log
    out = godel("verify", path)
    assert out.returncode == 0
    assert "signatures not checked" in out.stderr


def _flip(text: str, index: int) -> str:
    ch = text[index]
    return text[:index] + ("A" if ch != "A" else "B") + text[index + 1 :]


def _edit(field: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        out = list(lines)
        line = out[2]  # line 3: a record
        start = line.index(f'"{field}":') + len(field) + 4
        out[2] = _flip(line, start + 5)
        return out

    return edit


def _drop(lines: list[str]) -> list[str]:
    return lines[:2] + lines[3:]


def _swap(lines: list[str]) -> list[str]:
    return [*lines[:2], lines[3], lines[2], *lines[4:]]


def _insert_forged(lines: list[str]) -> list[str]:
    fake = json.loads(lines[2])
    fake["ct"] = fake["ct"][::-1]
    return [*lines[:2], json.dumps(fake), *lines[2:]]


def _truncate_records(lines: list[str]) -> list[str]:
    return lines[:7]


def _edit_signature(lines: list[str]) -> list[str]:
    doc = json.loads(lines[4])
    sig = doc["sig"]
    doc["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    out = list(lines)
    out[4] = json.dumps(doc)
    return reseal(out, 4)  # the attacker fixes the chain; only the signature betrays him


CASES: dict[str, tuple[Callable[[list[str]], list[str]], int, str]] = {
    "ciphertext byte": (_edit("ct"), 3, "line hash does not match"),
    "header byte (timestamp)": (_edit("ts"), 3, "line hash does not match"),
    "chain hash (prev)": (_edit("prev"), 3, "line hash does not match"),
    "line hash (h)": (_edit("h"), 3, "line hash"),
    "dropped record": (_drop, 3, "sequence number 3 where 2 was expected"),
    "swapped records": (_swap, 3, "sequence number 3 where 2 was expected"),
    "inserted forged record": (_insert_forged, 3, "line hash"),
    "truncated after records": (_truncate_records, 7, "closing checkpoint"),
    "checkpoint signature": (_edit_signature, 5, "signature does not verify"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_verify_names_the_first_bad_line(audit_log: tuple[Path, KeySet], case: str) -> None:
    path, ks = audit_log
    tamper, line, reason = CASES[case]
    write_lines(path, tamper(read_lines(path)))
    out = verify(path, ks)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "TAMPERED" in out.stderr
    assert f"{path}:{line} " in out.stderr, out.stderr
    assert reason in out.stderr


def test_verify_truncated_mid_line(audit_log: tuple[Path, KeySet]) -> None:
    path, ks = audit_log
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    out = verify(path, ks)
    assert out.returncode == 1
    assert f"{path}:11 " in out.stderr
    assert "truncated mid-line" in out.stderr


def test_verify_wrong_public_key(tmp_path: Path, audit_log: tuple[Path, KeySet]) -> None:
    path, _ = audit_log
    (tmp_path / "other").mkdir()
    other = make_keys(tmp_path / "other")
    out = godel("verify", path, "--public-key", other.public_file)
    assert out.returncode == 1
    assert f"{path}:5 " in out.stderr
    assert "names signing key" in out.stderr


def test_verify_store_detects_truncation_of_an_open_log(
    tmp_path: Path, audit_log: tuple[Path, KeySet]
) -> None:
    path, ks = audit_log
    write_lines(path, read_lines(path)[:5])
    store = tmp_path / "store" / "checkpoints.jsonl"
    assert verify(path, ks, "--allow-open").returncode == 0
    out = verify(path, ks, "--allow-open", "--checkpoints", store)
    assert out.returncode == 1
    assert "beyond the end of the log" in out.stderr


def test_verify_garbage_usage_errors(tmp_path: Path, audit_log: tuple[Path, KeySet]) -> None:
    path, _ = audit_log
    out = godel("verify", path, "--public-key", tmp_path / "missing.pub")
    assert out.returncode == 2
    assert "--public-key" in out.stderr


def _decrypt(path: Path, ks: KeySet, *who: str, store: Path | None = None) -> list[dict[str, str]]:
    extra = ["--subject-store", str(store)] if store else []
    out = godel(
        "decrypt",
        path,
        *who,
        "--kek-file",
        ks.kek_file,
        "--pseudonym-key-file",
        ks.pseudonym_file,
        "--subject-key-file",
        ks.subject_file,
        *extra,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_decrypt_one_subject(tmp_path: Path) -> None:
    ks = make_keys(tmp_path)
    write_log(tmp_path, ks, 6, users=(USER, "bob"))
    (path,) = log_files(tmp_path)
    mine = _decrypt(path, ks, "--subject", USER)
    assert [r["request_id"] for r in mine] == ["req-0", "req-2", "req-4"]
    assert {r["user_id"] for r in mine} == {USER}
    assert mine[0]["decision"] == "block"
    by_audit_id = _decrypt(path, ks, "--audit-id", mine[0]["audit_id"])
    assert [r["request_id"] for r in by_audit_id] == ["req-0", "req-2", "req-4"]
    assert _decrypt(path, ks, "--subject", "nobody") == []


def test_decrypt_refuses_a_tampered_log(audit_log: tuple[Path, KeySet]) -> None:
    path, ks = audit_log
    write_lines(path, _drop(read_lines(path)))
    out = godel(
        "decrypt",
        path,
        "--subject",
        USER,
        "--kek-file",
        ks.kek_file,
        "--pseudonym-key-file",
        ks.pseudonym_file,
        "--subject-key-file",
        ks.subject_file,
    )
    assert out.returncode == 1
    assert "TAMPERED" in out.stderr


def test_decrypt_with_the_wrong_kek_is_a_usage_error(audit_log: tuple[Path, KeySet]) -> None:
    path, ks = audit_log
    wrong = ks.dir / "wrong.key"
    wrong.write_text(os.urandom(32).hex())
    out = godel(
        "decrypt",
        path,
        "--subject",
        USER,
        "--kek-file",
        wrong,
        "--pseudonym-key-file",
        ks.pseudonym_file,
        "--subject-key-file",
        ks.subject_file,
    )
    assert out.returncode == 2
    assert "no key-encryption key" in out.stderr
    assert out.stdout == ""


def test_shred_then_decrypt_shows_no_user_id(tmp_path: Path) -> None:
    ks = make_keys(tmp_path)
    store_dir = tmp_path / "subjects"

    async def run() -> None:
        store = LocalSubjectKeyStore(store_dir, ks.keys.subject)
        log = AuditLog(settings(tmp_path), ks.keys, ks.wrapper, Metrics(), subject_store=store)
        await log.start()
        for i in range(4):
            log.record(event(i, user=USER if i % 2 == 0 else "bob"))
        await log.close()

    asyncio.run(run())
    (path,) = log_files(tmp_path)
    before = _decrypt(path, ks, "--subject", USER, store=store_dir)
    assert [r["user_id"] for r in before] == [USER, USER]
    keys = [
        "--pseudonym-key-file",
        str(ks.pseudonym_file),
        "--subject-key-file",
        str(ks.subject_file),
    ]
    out = godel("shred", "--subject", USER, "--subject-store", store_dir, *keys)
    assert out.returncode == 0, out.stderr
    after = _decrypt(path, ks, "--subject", USER, store=store_dir)
    assert [r["user_id"] for r in after] == [None, None]  # records stay, the link is gone
    bob = _decrypt(path, ks, "--subject", "bob", store=store_dir)
    assert [r["user_id"] for r in bob] == ["bob", "bob"]
    assert verify(path, ks).returncode == 0


def test_public_key_command_matches(tmp_path: Path) -> None:
    ks = make_keys(tmp_path)
    out = godel("public-key", "--signing-key-file", ks.signing_file)
    assert out.returncode == 0
    assert out.stdout.encode() == ks.public_file.read_bytes()


def test_forged_line_with_consistent_chain_is_caught_at_the_next(
    audit_log: tuple[Path, KeySet],
) -> None:
    path, ks = audit_log
    lines = read_lines(path)
    fake = json.loads(lines[2])
    fake.pop("h")
    fake["ct"] = fake["ct"][::-1]
    fake["prev"] = json.loads(lines[1])["h"]
    text, _ = seal_line(fake)
    write_lines(path, [*lines[:2], text, *lines[2:]])
    out = verify(path, ks)
    assert out.returncode == 1
    assert f"{path}:4 " in out.stderr
