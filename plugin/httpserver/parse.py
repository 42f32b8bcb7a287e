"""Reading HTTP/1.1 requests off the wire (RFC 9112), strictly: whatever is ambiguous is
refused rather than guessed at, so that no proxy in front can read a request differently.

Refused (`BadRequest`): a request line or header line that is not in the RFC's grammar (CRLF
line ends, no whitespace before a colon, no folded lines, no control characters), a missing Host
on HTTP/1.1, a Content-Length that is not digits or disagrees with another, Content-Length and
Transfer-Encoding together, a transfer coding other than `chunked` (501), a malformed chunk.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

_TOKEN = r"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([^\x00-\x20\x7f]+) HTTP/1\.([01])".encode())
_HEADER = re.compile(rf"({_TOKEN}):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*".encode())
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")


class BadRequest(Exception):
    """A request that cannot be read; answered with `status`, then the connection closes."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Head:
    """A request's line and headers, and what they say about its body and connection."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    content_length: int | None  #: None with a chunked body
    chunked: bool
    keep_alive: bool
    expect_continue: bool


def parse_head(raw: bytes) -> Head:
    """A request head: its bytes up to and including the blank line. BadRequest when it is
    malformed."""
    lines = raw[:-4].split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        raise BadRequest("the request line is not `METHOD target HTTP/1.x`")
    method, target, minor = line.groups()
    headers: list[tuple[str, str]] = []
    lengths: set[bytes] = set()
    codings: list[bytes] = []
    connection: list[bytes] = []
    host = expect_continue = False
    for header in lines[1:]:
        field = _HEADER.fullmatch(header)
        if field is None:
            raise BadRequest("a header line is malformed")
        name, value = field.groups()
        lower = name.lower()
        if lower == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif lower == b"transfer-encoding":
            codings += [v.strip().lower() for v in value.split(b",")]
        elif lower == b"connection":
            connection += [v.strip().lower() for v in value.split(b",")]
        elif lower == b"host":
            if host:
                raise BadRequest("more than one Host header")
            host = True
        elif lower == b"expect":
            expect_continue = value.lower() == b"100-continue"
        headers.append((name.decode("ascii"), value.decode("latin-1")))
    if minor == b"1" and not host:
        raise BadRequest("the Host header is missing")
    content_length: int | None = 0
    chunked = False
    if codings:
        if lengths:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if codings != [b"chunked"]:
            raise BadRequest("only the chunked transfer coding is supported", 501)
        content_length, chunked = None, True
    elif lengths:
        if len(lengths) > 1 or not all(v.isdigit() and len(v) <= 18 for v in lengths):
            raise BadRequest("Content-Length is not one number")
        content_length = int(lengths.pop())
    keep_alive = (b"close" not in connection if minor == b"1"
                  else b"keep-alive" in connection)
    return Head(method.decode("ascii"), target.decode("latin-1"), headers, content_length,
                chunked, keep_alive, expect_continue and minor == b"1")


async def read_chunked(reader: asyncio.StreamReader, max_body: int, max_line: int) -> bytes:
    """A chunked body, its trailers skipped. BadRequest when it is malformed; `TooLarge` past
    `max_body` bytes, before reading the chunk that would pass it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        line = await _line(reader, max_line)
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise BadRequest("a chunk size is malformed")
        length = int(match.group(1), 16)
        if length == 0:
            break
        size += length
        if size > max_body:
            raise TooLarge
        chunk = await reader.readexactly(length + 2)
        if not chunk.endswith(b"\r\n"):
            raise BadRequest("a chunk does not end with CRLF")
        chunks.append(chunk[:-2])
    trailers = 0
    while line := await _line(reader, max_line):  # trailers, up to the blank line
        trailers += len(line)
        if trailers > max_line:
            raise BadRequest("the trailers are too long")
    return b"".join(chunks)


class TooLarge(Exception):
    """A body over the limit."""


async def _line(reader: asyncio.StreamReader, max_line: int) -> bytes:
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise BadRequest("a chunk line is too long") from None
    if len(line) > max_line:
        raise BadRequest("a chunk line is too long")
    return line[:-2]
