"""Answers read whole, without httpx's response machinery.

`PlainResponse` is what `bridge.transport.send_plain` returns for the requests it sends itself:
the status, the headers as received, the body already decoded, and what the bridges read of an
`httpx.Response` (`headers`, `content`, `text`, `json()`, `reason_phrase`, `request.method`,
`request.url`), each with httpx's meaning. Code that takes either kind of answer is typed with
`ResponseLike`, which both satisfy.
"""

from __future__ import annotations

import codecs
import email.message
import json
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx

from .http1_wire import ResponseTooLarge

__all__ = ["DECODED", "PlainRequest", "PlainResponse", "RequestLike", "ResponseLike",
           "URLLike", "decode_body"]


class URLLike(Protocol):
    @property
    def path(self) -> str: ...


class RequestLike(Protocol):
    @property
    def method(self) -> str: ...

    @property
    def url(self) -> URLLike: ...


class ResponseLike(Protocol):
    """What the bridges read of an answer: `httpx.Response` and `PlainResponse` alike."""

    @property
    def status_code(self) -> int: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...

    @property
    def request(self) -> RequestLike: ...

    def json(self, **kwargs: Any) -> Any: ...


class PlainRequest:
    """The request an answer is for: its method and URL (with the query)."""

    __slots__ = ("method", "url")

    def __init__(self, method: str, url: httpx.URL) -> None:
        self.method = method
        self.url = url

    def __repr__(self) -> str:
        return f"<Request({self.method!r}, {str(self.url)!r})>"


#: Content-Encoding values (lower case, stripped) whose bodies `decode_body` decodes; b"" stands
#: for no Content-Encoding at all.
DECODED = frozenset({b"", b"identity", b"gzip", b"deflate"})


def decode_body(body: bytes, coding: bytes, limit: int | None = None) -> bytes:
    """`body` as sent with Content-Encoding `coding` (one of `DECODED`, or `x-gzip`), decoded as
    httpx decodes it: gzip with its header, deflate as a zlib stream or else raw. A body that is
    not what its coding says is a `zlib.error`; one that decodes to more than `limit` bytes is
    `ResponseTooLarge`."""
    if coding in (b"gzip", b"x-gzip"):
        return _inflate(body, zlib.MAX_WBITS | 16, limit)
    if coding == b"deflate":
        try:
            return _inflate(body, zlib.MAX_WBITS, limit)
        except zlib.error:
            # Servers also send raw deflate data, without the zlib wrapper.
            return _inflate(body, -zlib.MAX_WBITS, limit)
    return body


def _inflate(body: bytes, wbits: int, limit: int | None) -> bytes:
    unzip = zlib.decompressobj(wbits)
    data = unzip.decompress(body, 0 if limit is None else limit + 1)
    if limit is not None and (len(data) > limit or unzip.unconsumed_tail):
        raise ResponseTooLarge(f"the answer's decoded body is larger than {limit} bytes")
    return data + unzip.flush()


def _charset(content_type: str) -> str | None:
    """The charset a Content-Type value names (lower case), parsed as e-mail headers are."""
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_charset(failobj=None)


def _known(encoding: str) -> bool:
    try:
        codecs.lookup(encoding)
    except LookupError:
        return False
    return True


class PlainResponse:
    """A whole answer: `status_code`, `headers` (case-insensitive, repeated ones joined by
    commas), `content` (decoded per Content-Encoding), `text` (in the charset the Content-Type
    names, else `default_encoding`: a name, or a function of the content returning one),
    `json()` (a `ValueError` for a body that is not JSON), `reason_phrase`, `http_version` and
    `request`."""

    __slots__ = ("_encoding", "_headers", "_reason", "_text", "content", "default_encoding",
                 "http_version", "raw_headers", "request", "status_code")

    def __init__(self, status_code: int, reason: str, http_version: str,
                 raw_headers: list[tuple[bytes, bytes]], content: bytes, request: PlainRequest,
                 default_encoding: str | Callable[[bytes], str | None] = "utf-8") -> None:
        self.status_code = status_code
        self.http_version = http_version
        self.raw_headers = raw_headers
        self.content = content
        self.request = request
        self.default_encoding = default_encoding
        self._reason = reason
        self._headers: httpx.Headers | None = None
        self._encoding: str | None = None
        self._text: str | None = None

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}]>"

    @property
    def reason_phrase(self) -> str:
        # As httpx shows the reason: its ASCII characters.
        return self._reason.encode("latin-1", "replace").decode("ascii", "ignore")

    @property
    def headers(self) -> httpx.Headers:
        if self._headers is None:
            self._headers = httpx.Headers(self.raw_headers)
        return self._headers

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def encoding(self) -> str:
        """The text's encoding: the Content-Type's charset when Python knows it, else the
        default."""
        if self._encoding is None:
            content_type = self.headers.get("content-type")
            encoding = _charset(content_type) if content_type is not None else None
            if encoding is None or not _known(encoding):
                default = self.default_encoding
                encoding = default if isinstance(default, str) else default(self.content)
            self._encoding = encoding or "utf-8"
        return self._encoding

    @property
    def text(self) -> str:
        if self._text is None:
            content = self.content
            self._text = content.decode(self.encoding, "replace") if content else ""
        return self._text

    def json(self, **kwargs: Any) -> Any:
        return json.loads(self.content, **kwargs)
