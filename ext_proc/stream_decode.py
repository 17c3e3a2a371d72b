"""Incremental decoding of a compressed response stream (gzip or deflate, with the standard
library's zlib), so an SSE stream that an upstream compresses anyway can still be scanned.

The servicer strips ``accept-encoding`` from requests, so upstreams should answer uncompressed.
One that compresses anyway gets its event stream decoded chunk by chunk here, within the same
bounds as a request body: at most ``max_bytes`` in all, and past 64 KiB no more than
``max_ratio`` times what has arrived so far. The redacted stream goes on uncompressed.
Brotli has no incremental decoder among the dependencies: a ``br`` stream is not scanned (see
``responses.unscannable``).
"""

from __future__ import annotations

import zlib

from ext_proc.errors import BodyDecodeError

__all__ = ["STREAM_DECODABLE", "StreamDecoder"]

# Content-codings decoded incrementally.
STREAM_DECODABLE = frozenset({"gzip", "x-gzip", "deflate"})
# The ratio bound applies past this much output (as for whole bodies, RATIO_FLOOR in Rust).
RATIO_FLOOR = 64 * 1024
# Most gzip members that may end in one chunk (servers that flush a member per event send one
# or a few per chunk).
MAX_MEMBERS_PER_CHUNK = 256
GZIP_MAGIC = b"\x1f\x8b"


def _zlib_wrapped(head: bytes) -> bool:
    """Whether a deflate stream starts with a zlib header (RFC 9110 deflate) rather than raw
    deflate, which some servers send: CM 8 and a header checksum divisible by 31."""
    return len(head) >= 2 and head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0


class StreamDecoder:
    """Decode one response stream, chunk by chunk. Raises :class:`BodyDecodeError` on corrupt
    data, a bound passed, or a stream that ends inside a compressed member."""

    def __init__(self, encoding: str, max_bytes: int, max_ratio: float) -> None:
        if encoding not in STREAM_DECODABLE:
            raise ValueError(f"no incremental decoder for content-encoding {encoding!r}")
        self.encoding = encoding
        self._max_bytes = max_bytes
        self._max_ratio = max_ratio
        self._member: zlib._Decompress | None = None  # the gzip member or deflate stream
        self._head = b""  # a deflate stream's first byte, until its second arrives
        self._done = False  # a deflate stream has ended (gzip may hold several members)
        self.bytes_in = 0
        self.bytes_out = 0

    def _cap(self) -> int:
        ratio_cap = max(int(self._max_ratio * self.bytes_in), RATIO_FLOOR)
        return min(self._max_bytes, ratio_cap)

    def _start(self, head: bytes) -> zlib._Decompress:
        if self.encoding == "deflate":
            wbits = zlib.MAX_WBITS if _zlib_wrapped(head) else -zlib.MAX_WBITS
            return zlib.decompressobj(wbits)
        return zlib.decompressobj(zlib.MAX_WBITS | 16)  # a gzip member

    def feed(self, data: bytes, end: bool) -> bytes:
        """The decoded bytes of the next chunk ``data``; ``end`` marks the stream's last one."""
        self.bytes_in += len(data)
        pending, self._head = self._head + data, b""
        out = bytearray()
        members = 0
        while pending and not self._done:
            if self._member is None:
                if self.encoding == "deflate" and len(pending) < 2 and not end:
                    self._head = pending  # the header check needs two bytes
                    break
                self._member = self._start(pending)
            room = self._cap() - self.bytes_out - len(out)
            try:
                new = self._member.decompress(pending, room + 1)
            except zlib.error as exc:
                raise BodyDecodeError(f"corrupt {self.encoding} stream: {exc}") from None
            if len(new) > room:
                raise BodyDecodeError(
                    f"decompressed {self.encoding} stream exceeds {self._cap()} bytes"
                )
            out += new
            if not self._member.eof:
                pending = self._member.unconsumed_tail
                continue
            # gzip: a next member may start in what is left; deflate: done. Bytes after the
            # last member (padding) are dropped: only decoded bytes go on to the client.
            pending, self._member = self._member.unused_data, None
            members += 1
            if self.encoding == "deflate" or not GZIP_MAGIC.startswith(pending[:2]):
                self._done = True
            elif members > MAX_MEMBERS_PER_CHUNK:
                # Each member costs a copy of the rest of the chunk: a flood of empty ones
                # would take time quadratic in the chunk.
                raise BodyDecodeError(f"more than {MAX_MEMBERS_PER_CHUNK} gzip members in a chunk")
            elif len(pending) < 2 and not end:
                self._head, pending = pending, b""  # the magic check needs two bytes
        if end and (self._member is not None or self._head):
            raise BodyDecodeError(f"{self.encoding} stream ends inside compressed data")
        self.bytes_out += len(out)
        return bytes(out)
