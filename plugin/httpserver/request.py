"""Requests and responses of the HTTP server: headers looked up in any case, the query string,
and the body read on demand (capped) and decoded as JSON or as a form.

A form is `application/x-www-form-urlencoded` (what Mattermost sends for slash commands and
outgoing webhooks) or `multipart/form-data`; its fields are text, the last of a repeated name
wins. Any other content type reads as an empty form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from bridge.headers import Headers

#: Fields a form may hold; more is refused as unreadable.
MAX_FORM_FIELDS = 1000

_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_TEXT_ENCODINGS = ("7bit", "8bit", "binary", "")


class HTTPError(Exception):
    """An error answered to the caller as JSON with this status."""

    def __init__(self, status: int, message: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """A Content-Type's media type (lower case) and its parameters (names in lower case)."""
    media, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(";" + rest):
        raw = raw.strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(name.lower(), raw)
    return media.strip().lower(), params


class Request:
    """One request: its head at once, its body when `read` (or `json`, `form`) asks for it."""

    __slots__ = ("_body", "_content_type", "_query", "_read_body", "headers", "method",
                 "params", "path", "query_string", "remote", "route", "target")

    def __init__(self, method: str, target: str, path: str, query_string: str,
                 headers: Headers, remote: str | None,
                 read_body: Callable[[Request], Awaitable[bytes]] | None = None) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.remote = remote
        #: What the route's `{name}` segments matched; the route's pattern ("" when none).
        self.params: dict[str, str] = {}
        self.route = ""
        self._read_body = read_body
        self._body: bytes | None = None
        self._query: dict[str, str] | None = None
        self._content_type: tuple[str, dict[str, str]] | None = None

    @property
    def query(self) -> dict[str, str]:
        """The query string's fields (the first of a repeated name)."""
        if self._query is None:
            query: dict[str, str] = {}
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                query.setdefault(name, value)
            self._query = query
        return self._query

    @property
    def content_type(self) -> str:
        """The body's media type, in lower case ("application/octet-stream" when unsaid)."""
        return self._parsed_content_type()[0]

    @property
    def charset(self) -> str | None:
        return self._parsed_content_type()[1].get("charset")

    def _parsed_content_type(self) -> tuple[str, dict[str, str]]:
        if self._content_type is None:
            raw = self.headers.get("Content-Type")
            self._content_type = (parse_content_type(raw) if raw
                                  else ("application/octet-stream", {}))
        return self._content_type

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        # The server has checked it is one number (perhaps repeated: "5, 5").
        return None if raw is None else int(raw.split(",")[0])

    async def read(self) -> bytes:
        """The whole body. HTTPError 413 when it is larger than the server allows (known from
        Content-Length before any of it is read), 400 when it arrives malformed, 408 when it
        arrives too slowly."""
        if self._body is None:
            self._body = await self._read_body(self) if self._read_body is not None else b""
        return self._body

    async def json(self) -> Any:
        """The body decoded as JSON; HTTPError 400 when it is empty or not JSON."""
        raw = await self.read()
        if not raw:
            raise HTTPError(400, "empty body; a JSON object was expected")
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            raise HTTPError(400, "body is not valid JSON") from None

    async def form(self) -> dict[str, str]:
        """The body's form fields; {} when the body is not a form. HTTPError 400 when it cannot
        be decoded (a bad encoding, broken multipart framing, too many fields)."""
        media, params = self._parsed_content_type()
        if media not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return {}
        raw = await self.read()
        try:
            if media == "multipart/form-data":
                return parse_multipart(raw, params.get("boundary", ""))
            return parse_urlencoded(raw, params.get("charset") or "utf-8")
        except (ValueError, LookupError):  # LookupError: an unknown charset
            raise HTTPError(400, "the form body cannot be read") from None


def parse_urlencoded(raw: bytes, charset: str = "utf-8") -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body's fields. ValueError when it is not text in
    `charset` or has more than MAX_FORM_FIELDS fields."""
    text = raw.rstrip().decode(charset)
    if text.count("&") >= MAX_FORM_FIELDS:
        raise ValueError("too many fields")
    return dict(parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict"))


def parse_multipart(raw: bytes, boundary: str) -> dict[str, str]:
    """A `multipart/form-data` body's fields (RFC 7578), each part's content decoded as text in
    its charset (UTF-8 when unsaid). ValueError when the framing is broken, a part has no name
    or is not text, or there are more than MAX_FORM_FIELDS parts."""
    if not 0 < len(boundary) <= 70:
        raise ValueError("no usable boundary")
    dash = b"--" + boundary.encode("latin-1")
    if raw.startswith(dash):
        pos = len(dash)
    else:  # a preamble comes first
        found = raw.find(b"\r\n" + dash)
        if found < 0:
            raise ValueError("no first boundary")
        pos = found + 2 + len(dash)
    fields: dict[str, str] = {}
    count = 0
    while not raw.startswith(b"--", pos):  # "--" after a boundary closes the body
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0 or raw[pos:line_end].strip(b" \t"):
            raise ValueError("broken boundary line")
        end = raw.find(b"\r\n" + dash, line_end + 2)
        if end < 0:
            raise ValueError("unterminated part")
        count += 1
        if count > MAX_FORM_FIELDS:
            raise ValueError("too many fields")
        name, value = _part(raw[line_end + 2:end])
        fields[name] = value
        pos = end + 2 + len(dash)
    return fields


def _part(part: bytes) -> tuple[str, str]:
    """A multipart part's field name and its text."""
    if part.startswith(b"\r\n"):
        head, content = b"", part[2:]
    else:
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part without a blank line after its headers")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError("a malformed part header")
        headers.setdefault(name.strip().lower(), value.strip())
    disposition, params = parse_content_type(headers.get("content-disposition", ""))
    if disposition != "form-data" or not params.get("name"):
        raise ValueError("a part without a field name")
    if headers.get("content-transfer-encoding", "").lower() not in _TEXT_ENCODINGS:
        raise ValueError("an encoded part")
    media, type_params = parse_content_type(headers.get("content-type", "text/plain"))
    if not (media.startswith("text/") or "filename" in params):
        raise ValueError("a part that is not text")
    name = params["name"].encode("latin-1").decode("utf-8")
    return name, content.decode(type_params.get("charset") or "utf-8")


class Response:
    """A complete answer: status, body and headers (Content-Length and Date are added)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes = b"", status: int = 200,
                 content_type: str = "application/json",
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.status = status
        self.body = body
        self.headers = (("Content-Type", content_type), *headers)


def json_response(body: Any, status: int = 200,
                  headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(json.dumps(body).encode(), status, "application/json", headers)


def error_response(status: int, message: str,
                   headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """Every error is answered alike: `{"error": "..."}`."""
    return json_response({"error": message}, status, headers)
