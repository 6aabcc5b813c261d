"""Content-Encoding for OTLP/HTTP bodies: gzip and deflate, streamed, with a cap after decompression."""

from __future__ import annotations

import zlib

from otel_lightning.exceptions import DecodeError, PayloadTooLargeError, UnsupportedMediaError

_CHUNK = 4 << 20
"""Most bytes inflated per step (a 512-span request of LLM spans is ~1.7 MiB)."""
_GZIP_MAGIC = b"\x1f\x8b"


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo a ``Content-Encoding`` (identity, gzip, x-gzip, deflate), refusing results over ``max_bytes``.

    Decompression is streamed and stops one byte past the cap, so a gzip bomb fails fast in bounded memory.
    ``deflate`` accepts zlib-wrapped streams (RFC 9110) and raw deflate, which some clients send.

    Raises:
        PayloadTooLargeError: the (decompressed) body is longer than ``max_bytes``.
        UnsupportedMediaError: an encoding other than the above.
        DecodeError: the compressed data is corrupt or truncated.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    for coding in reversed(codings):  # the header lists codings in the order they were applied
        if coding in ("", "identity"):
            continue
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, 16 + zlib.MAX_WBITS, max_bytes)
        elif coding == "deflate":
            body = _inflate_deflate(body, max_bytes)
        else:
            raise UnsupportedMediaError(f"unsupported content encoding {coding!r}: use gzip or deflate")
    if len(body) > max_bytes:
        raise PayloadTooLargeError(f"body is over the {max_bytes}-byte limit")
    return body


def _inflate_deflate(body: bytes, max_bytes: int) -> bytes:
    # A zlib header is two bytes with compression method 8 whose big-endian value is a multiple of 31.
    wrapped = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
    if wrapped:
        try:
            return _inflate(body, zlib.MAX_WBITS, max_bytes)
        except DecodeError:
            pass  # raw deflate data that happens to start like a zlib header
    return _inflate(body, -zlib.MAX_WBITS, max_bytes)


def _inflate(data: bytes, wbits: int, max_bytes: int) -> bytes:
    # At most _CHUNK bytes per step and never past max_bytes + 1 in all: a bomb is refused after inflating
    # one byte more than the cap, holding about the cap plus a chunk. Most bodies fit one chunk: no copy.
    parts: list[bytes] = []
    size = 0
    inflater = zlib.decompressobj(wbits)
    try:
        while True:
            limit = min(max_bytes + 1 - size, _CHUNK)
            part = inflater.decompress(data, limit)
            size += len(part)
            if size > max_bytes:
                raise PayloadTooLargeError(f"decompressed body is over the {max_bytes}-byte limit")
            parts.append(part)
            if inflater.eof:
                data = inflater.unused_data
                if not data:
                    return parts[0] if len(parts) == 1 else b"".join(parts)
                if wbits <= zlib.MAX_WBITS or data[:2] != _GZIP_MAGIC:  # gzip members may be concatenated
                    raise DecodeError("trailing bytes after the compressed body")
                inflater = zlib.decompressobj(wbits)
            elif len(part) < limit:  # room was left, so all input was read: the stream ends early
                raise DecodeError("compressed body is truncated")
            else:
                data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise DecodeError(f"corrupt compressed body: {exc}") from None
