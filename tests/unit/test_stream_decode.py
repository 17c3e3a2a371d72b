"""Incremental decoding of compressed response streams: chunk boundaries anywhere, several
gzip members, zlib-wrapped and raw deflate, and the same bounds as a whole body."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext_proc.errors import BodyDecodeError
from ext_proc.stream_decode import StreamDecoder

TEXT = b"".join(b'data: {"delta": "word %d"}\n\n' % i for i in range(200))


def deflate_raw(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def decode(encoding: str, packed: bytes, step: int) -> bytes:
    decoder = StreamDecoder(encoding, max_bytes=16 << 20, max_ratio=100.0)
    chunks = [packed[i : i + step] for i in range(0, len(packed), step)] or [b""]
    return b"".join(decoder.feed(c, i == len(chunks) - 1) for i, c in enumerate(chunks))


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as RFC 9110 says
        ("deflate", deflate_raw),  # raw, as some servers send
    ],
)
@pytest.mark.parametrize("step", [1, 2, 7, 100, 1 << 20])
def test_any_chunking_decodes_to_the_stream(encoding: str, pack: object, step: int) -> None:
    assert callable(pack)
    assert decode(encoding, pack(TEXT), step) == TEXT


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_gzip_members_and_arbitrary_cuts(data: bytes, cuts: list[int]) -> None:
    # Two gzip members back to back (what a server that flushes members sends) decode whole.
    packed = gzip.compress(data) + gzip.compress(data[::-1])
    decoder = StreamDecoder("gzip", max_bytes=16 << 20, max_ratio=100.0)
    out, at = b"", 0
    for cut in cuts:
        out += decoder.feed(packed[at : at + cut], False)
        at += cut
    out += decoder.feed(packed[at:], True)
    assert out == data + data[::-1]


def test_members_in_one_chunk_share_the_bound_without_counting_twice() -> None:
    # Two 30,000-byte members in one chunk: 60,000 bytes out, within the 64 KiB floor.
    packed = gzip.compress(b"a" * 30000) * 2
    assert StreamDecoder("gzip", 16 << 20, 100.0).feed(packed, True) == b"a" * 60000


def test_padding_after_the_last_member_is_dropped() -> None:
    decoder = StreamDecoder("gzip", 16 << 20, 100.0)
    assert decoder.feed(gzip.compress(TEXT) + b"\0" * 100, False) == TEXT
    assert decoder.feed(b"more padding", True) == b""


def test_a_flood_of_empty_gzip_members_is_refused() -> None:
    with pytest.raises(BodyDecodeError, match="members"):
        StreamDecoder("gzip", 16 << 20, 100.0).feed(gzip.compress(b"") * 1000, False)


def test_corrupt_truncated_and_oversized_streams_raise() -> None:
    packed = gzip.compress(TEXT)
    with pytest.raises(BodyDecodeError, match="corrupt gzip"):
        StreamDecoder("gzip", 16 << 20, 100.0).feed(packed[:10] + b"\xff" * 40, True)
    with pytest.raises(BodyDecodeError, match="ends inside"):
        StreamDecoder("gzip", 16 << 20, 100.0).feed(packed[: len(packed) // 2], True)
    bomb = gzip.compress(b"\0" * (8 << 20))
    capped = StreamDecoder("gzip", max_bytes=1 << 20, max_ratio=1000.0)
    with pytest.raises(BodyDecodeError, match="exceeds"):
        capped.feed(bomb, True)
    with pytest.raises(BodyDecodeError, match="exceeds"):
        # Past 64 KiB, no more than max_ratio times what has arrived.
        StreamDecoder("gzip", max_bytes=16 << 20, max_ratio=10.0).feed(bomb, True)


def test_brotli_has_no_incremental_decoder() -> None:
    with pytest.raises(ValueError, match="br"):
        StreamDecoder("br", 16 << 20, 100.0)
