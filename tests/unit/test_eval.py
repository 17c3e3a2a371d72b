"""Fast tests of the detection evaluation harness (eval/): generators, validators, scorer."""

# Seeded random.Random generators make reproducible test data; none of it is cryptographic.
# ruff: noqa: S311

from __future__ import annotations

import base64
import gzip
import json
import random
import sys
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import corpus  # noqa: E402  (eval/ holds scripts, not a package)
import evasions  # noqa: E402
import httppath  # noqa: E402
import run  # noqa: E402
from corpus import Sample  # noqa: E402


@pytest.fixture(scope="module")
def plain() -> list[Sample]:
    return corpus.build_corpus(seed=3)


def test_corpus_is_deterministic_for_a_seed(plain: list[Sample]) -> None:
    again = corpus.build_corpus(seed=3)
    assert [s.record() for s in again] == [s.record() for s in plain]
    other = corpus.build_corpus(seed=4)
    assert [s.text for s in other] != [s.text for s in plain]
    assert [s.id for s in evasions.apply_all(plain, 3)] == [
        s.id for s in evasions.apply_all(again, 3)
    ]
    assert [s.text for s in evasions.apply_all(plain, 3)] == [
        s.text for s in evasions.apply_all(again, 3)
    ]


def test_corpus_shape(plain: list[Sample]) -> None:
    labels = {s.label for s in plain}
    assert labels == {"secret", "pii", "injection", "benign"}
    benign = [s for s in plain if s.label == "benign"]
    assert len(benign) >= corpus.BENIGN_MIN
    assert sum(s.hard_negative for s in benign) >= corpus.HARD_NEGATIVE_MIN
    assert not any(s.hard_negative for s in plain if s.label != "benign")
    assert len(corpus.secret_kinds()) >= 60
    assert len({s.id for s in plain}) == len(plain)
    for s in plain:
        assert corpus.PAYLOAD not in s.text
        if s.label != "benign":
            assert s.payload
            if not s.json:
                assert s.payload in s.text
        rec = s.record()
        assert set(rec) == {"id", "text", "label", "kind", "hard_negative"}
    langs = {s.kind.rsplit("-", 1)[1] for s in plain if s.label == "injection"}
    assert langs == {"en", "de", "fr", "es"}


def test_json_carriers_are_valid_json_and_hold_the_payload(plain: list[Sample]) -> None:
    carried = [s for s in plain if s.json]
    assert carried
    for s in carried:
        doc = json.loads(s.text)
        assert s.payload in doc["messages"][-1]["content"]


def test_card_numbers_pass_luhn() -> None:
    rng = random.Random(0)
    for brand in ("visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay"):
        for sep in ("", " ", "-"):
            number = corpus.card_number(rng, brand, sep)
            assert corpus.luhn_valid(number), (brand, number)
    assert corpus.luhn_valid("4111 1111 1111 1111")
    assert not corpus.luhn_valid("4111 1111 1111 1112")


def test_generated_pii_is_valid(plain: list[Sample]) -> None:
    pii = [s for s in plain if s.label == "pii"]
    kinds = {s.kind.split("-")[0] for s in pii}
    assert kinds == {"email", "card", "iban", "ssn", "phone"}
    for s in pii:
        if s.kind.startswith("card-"):
            assert corpus.luhn_valid(s.payload), s.payload
        elif s.kind.startswith("iban-"):
            assert corpus.iban_valid(s.payload), s.payload
            assert s.payload.replace(" ", "")[:2] == s.kind[-2:]
        elif s.kind == "ssn":
            assert corpus.ssn_valid(s.payload), s.payload
    invalid = [s for s in plain if s.kind.startswith("hn-pii-invalid-card")]
    assert invalid
    for s in invalid:
        digits = "".join(c for c in s.text if c.isdigit() or c == " ").split()
        assert not any(len(d) >= 13 and corpus.luhn_valid(d) for d in digits)


def test_iban_and_ssn_validators() -> None:
    assert corpus.iban_valid("DE89 3704 0044 0532 0130 00")  # the well-known documentation IBAN
    assert corpus.iban_valid("GB82WEST12345698765432")
    assert not corpus.iban_valid("DE89 3704 0044 0532 0130 01")
    rng = random.Random(1)
    for country in ("DE", "GB", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "PL"):
        assert corpus.iban_valid(corpus.iban(rng, country, grouped=True))
    assert corpus.ssn_valid("123-45-6789")
    for bad in ("000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"):
        assert not corpus.ssn_valid(bad)
    assert all(corpus.ssn_valid(corpus.ssn(rng)) for _ in range(200))


def test_evasions_keep_the_payload_recoverable(plain: list[Sample]) -> None:
    by_id = {s.id: s for s in plain}
    variants = evasions.apply_all(plain, 3)
    names = {s.evasion for s in variants}
    assert names == {e.name for e in evasions.EVASIONS}
    for v in variants:
        base = by_id[v.id.rsplit("~", 1)[0]]
        assert v.label == base.label
        assert v.kind == base.kind
        assert v.payload != base.payload
        if v.evasion == "base64":
            assert base64.b64decode(v.payload).decode() == base.payload
        elif v.evasion == "hex":
            assert bytes.fromhex(v.payload).decode() == base.payload
        elif v.evasion == "percent":
            assert urllib.parse.unquote(v.payload) == base.payload
        elif v.evasion == "json-unicode":
            assert json.loads(f'"{v.payload}"') == base.payload
            if base.json:
                assert base.payload in json.loads(v.text)["messages"][-1]["content"]
        elif v.evasion == "zero-width":
            stripped = v.payload
            for zw in evasions.ZERO_WIDTH:
                stripped = stripped.replace(zw, "")
            assert stripped == base.payload
        elif v.evasion == "leetspeak":
            assert v.label == "injection"
        elif v.evasion == "white-space":
            assert v.label == "injection"
            assert " ".join(v.payload.split()) == " ".join(base.payload.split())
            assert "  " in v.payload or any(c in v.payload for c in "\t\u00a0\u2003")
    assert all(v.label != "benign" for v in variants)


def test_scorer_on_a_hand_made_example() -> None:
    def s(i: str, label: str, hn: str = "") -> Sample:
        return Sample(
            i,
            label,
            "k",
            "text",
            "p" if label != "benign" else "",
            hard_negative=bool(hn),
            hard_negative_for=hn,
        )

    plain = [
        s("s1", "secret"),
        s("s2", "secret"),
        s("s3", "secret"),
        s("s4", "secret"),
        s("i1", "injection"),
        s("i2", "injection"),
        s("b1", "benign"),
        s("b2", "benign", hn="injection"),
        s("b3", "benign", hn="injection"),
        s("b4", "benign"),
    ]
    evaded = [
        corpus.with_payload(plain[0], "q", "base64"),
        corpus.with_payload(plain[1], "q", "base64"),
    ]
    R = run.Result
    results = {
        "s1": R(frozenset({"secret"}), False),
        "s2": R(frozenset({"secret"}), False),
        "s3": R(frozenset({"secret"}), False),
        "s4": R(frozenset(), True),  # only entropy: not a secret detection by default
        "i1": R(frozenset({"injection"}), False),
        "i2": R(frozenset({"pii"}), False),  # wrong category: a miss, and a pii false positive
        "b1": R(frozenset({"secret"}), True),  # a benign line flagged as secret
        "b2": R(frozenset({"injection"}), False),  # a hard negative flagged
        "b3": R(frozenset(), False),
        "b4": R(frozenset(), False),
        "s1~base64": R(frozenset({"secret"}), False),
        "s2~base64": R(frozenset(), False),
    }
    sc = run.score(plain, evaded, results)
    assert (sc.recall["secret"].hit, sc.recall["secret"].total) == (3, 4)
    assert (sc.precision["secret"].hit, sc.precision["secret"].total) == (3, 4)
    assert sc.benign_flagged["secret"].value == pytest.approx(0.25)
    assert sc.recall["injection"].value == pytest.approx(0.5)
    assert sc.precision["injection"].value == pytest.approx(0.5)  # i1 true, b2 false
    assert sc.hard_flagged["injection"].value == pytest.approx(0.5)
    assert sc.precision["pii"].value == pytest.approx(0.0)
    assert sc.recall["pii"].value is None
    assert sc.entropy_on_secrets.value == pytest.approx(0.25)
    assert sc.entropy_on_benign.value == pytest.approx(0.25)
    assert sc.evasion[("secret", "base64")].value == pytest.approx(0.5)
    assert sc.evasion_base[("secret", "base64")].value == pytest.approx(1.0)

    with_entropy = run.score(plain, evaded, results, entropy_counts=True)
    assert with_entropy.recall["secret"].value == pytest.approx(1.0)
    assert with_entropy.precision["secret"].value == pytest.approx(4 / 5)

    report = run.render(sc, plain, evaded, ["header"])
    assert "secret recall" in " ".join(report.failed)
    assert "| secret | 0.750 (3/4) | 0.750 (3/4) |" in report.text()


def test_write_doc_replaces_only_the_marked_section(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text(f"intro\n{run.START}\nold\n{run.END}\noutro\n")
    run.write_doc("new table\n", doc)
    assert doc.read_text() == f"intro\n{run.START}\nnew table\n{run.END}\noutro\n"


def test_scan_survives_a_crashing_godel(tmp_path: Path) -> None:
    """godel scan answers line by line; if it dies, the harness records the line and resumes."""
    fake = tmp_path / "godel"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "for line in open(sys.argv[-1]):\n"
        "    item = json.loads(line)\n"
        "    if 'BOOM' in item['text']:\n"
        "        raise RuntimeError('boom')\n"
        "    cats = [{'category': 'secret'}] if 'KEY' in item['text'] else []\n"
        "    print(json.dumps({'id': item['id'], 'findings': cats}), flush=True)\n"
        "sys.exit(1)\n"
    )
    fake.chmod(0o755)
    samples = [
        Sample("a", "secret", "k", "KEY one", "KEY"),
        Sample("b", "benign", "k", "BOOM"),
        Sample("c", "secret", "k", "KEY two", "KEY"),
        Sample("d", "benign", "k", "fine"),
    ]
    results, crashes = run.scan(samples, tmp_path / "unused.yaml", str(fake))
    assert [c.sample_id for c in crashes] == ["b"]
    assert "RuntimeError: boom" in crashes[0].error
    assert results["a"].categories == {"secret"}
    assert results["c"].categories == {"secret"}
    assert results["d"].categories == frozenset()


def _tiny(plain: list[Sample]) -> list[Sample]:
    """A few short positives of each category (plain and JSON carriers), and two benign lines."""
    out: list[Sample] = []
    for label in ("secret", "pii", "injection"):
        for is_json in (False, True):
            short = [s for s in plain if s.label == label and s.json == is_json]
            out += sorted(short, key=lambda s: len(s.payload))[:2]
    return out + [s for s in plain if s.label == "benign"][:2]


def test_http_cases_carry_the_line_and_split_inside_the_payload(plain: list[Sample]) -> None:
    cases = httppath.build_cases(plain, 3)
    again = httppath.build_cases(corpus.build_corpus(seed=3), 3)
    assert [c.chunks for c in cases] == [c.chunks for c in again]
    names = {c.sample.evasion for c in cases}
    assert names == {name for name, _ in httppath.HTTP_EVASIONS}
    positives = [s for s in plain if s.label != "benign"]
    assert sum(c.sample.evasion == httppath.GZIP for c in cases) == len(positives)
    by_id = {s.id: s for s in plain}
    for c in cases:
        base = by_id[c.sample.id.rsplit("~", 1)[0]]
        assert c.sample.label == base.label != "benign"
        if c.sample.evasion == httppath.GZIP:
            assert c.chunks == (gzip.compress(base.text.encode("utf-8", "surrogatepass"), mtime=0),)
            assert gzip.decompress(c.chunks[0]).decode("utf-8", "surrogatepass") == base.text
            continue
        text, start, end = httppath.stream_text(base)
        assert text[start:end] == base.payload
        stream = b"".join(c.chunks)
        assert len(c.chunks) >= 3  # at least two events for the payload, and a [DONE]
        assert httppath.client_text(stream) == text
        # The payload never sits whole in one event: it is cut inside.
        for event in stream.split(b"\n\n"):
            assert base.payload not in httppath.client_text(event + b"\n\n")


def test_http_columns_are_measured_through_the_servicer(plain: list[Sample]) -> None:
    """A tiny corpus through the whole harness: gzip and the SSE columns hold numbers, not n/a."""
    tiny = _tiny(plain)
    cases = httppath.build_cases(tiny, 3)
    results, crashes = run.scan(tiny, run.DEFAULT_POLICY, run.godel_binary())
    assert not crashes
    http = httppath.run_cases(cases, run.DEFAULT_POLICY)
    assert set(http) == {c.sample.id for c in cases}
    for sid, r in http.items():
        results[sid] = run.Result(r.categories, r.entropy)
    evaded = [c.sample for c in cases]
    sc = run.score(tiny, evaded, results)
    for label in ("secret", "pii", "injection"):
        assert sc.recall[label].value == pytest.approx(1.0)
        # Short payloads: the compressed body and the chat stream lose nothing.
        for name in (httppath.GZIP, httppath.SSE_CHAT):
            ratio = sc.evasion[(label, name)]
            assert ratio.total == 4
            assert ratio.value == pytest.approx(1.0), (label, name)
        assert sc.evasion[(label, httppath.SSE_PLAIN)].total == 4
    # A redacted stream: the client read the text with the payload replaced.
    chat = [c for c in cases if c.sample.evasion == httppath.SSE_CHAT]
    for c in chat:
        if c.sample.label != "injection":
            assert c.sample.payload not in http[c.sample.id].text
            assert "[REDACTED:" in http[c.sample.id].text
    text = run.render(sc, tiny, evaded, ["header"]).text()
    assert "n/a (needs" not in text
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| category | plain |"))
    cols = [c.strip() for c in lines[at].strip("|").split("|")]
    for label, row in zip(("secret", "pii", "injection"), lines[at + 2 : at + 5], strict=True):
        assert row.startswith(f"| {label} | ")
        cells = dict(zip(cols, (c.strip() for c in row.strip("|").split("|")), strict=True))
        assert cells["gzip"] == "1.000 (+0.0)"
        assert cells["sse-split"] == "1.000 (+0.0)"
        assert cells["sse-split-plain"] != "n/a"


def test_benign_documents_can_be_limited_to_chat_prose() -> None:
    """The throughput bench's second corpus: prose lines only, about 4 KiB each, far fewer
    digits than the mixed corpus (code, hashes, JSON numbers)."""
    mixed = b"\n".join(corpus.benign_documents(5, 64 * 1024))
    prose_docs = list(corpus.benign_documents(5, 64 * 1024, kinds={"prose", "prose-json"}))
    prose = b"\n".join(prose_docs)
    assert len(prose) >= 64 * 1024
    assert all(3 * 1024 < len(d) < 6 * 1024 for d in prose_docs[:-1])
    assert b"def " not in prose
    assert b"def " in mixed

    def digit_share(b: bytes) -> float:
        return sum(c in b"0123456789" for c in b) / len(b)

    assert digit_share(prose) < digit_share(mixed) / 5
