"""The HTTP side of the Mattermost REST client: the driver's endpoints on the event loop.

mattermostdriver's endpoint objects (`posts.create_post(...)`, ... see `mm_catalog`) build each
call's method, path and body, and hand it to their client. `AsyncClient` is that client, made
async: its `make_request`, `get`, `post`, `put` and `delete` take what the driver's blocking
`Client` takes, and are coroutines, so every endpoint method returns one, awaited on the caller's
event loop. No thread and no `requests` session is involved (nor imported).

What the client keeps from the blocking one it replaces: at most `limit` connections at once
(more calls wait for a free one), a connect and a read timeout on every call, retries with
backoff on 5xx and on failures to connect or to get an answer, 429 honoured through `Retry-After`
(up to `max_retry_after`), errors as `MattermostError` with Mattermost's error id, TLS verified
against the certifi bundle or the given CA bundle, and the proxy the environment names for the
server (read once, as `bridge.transport.EnvProxies` reads it; `~/.netrc` is not read).
`POST /posts` is never retried here: its caller looks for the post before posting again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import ssl
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

from bridge.headers import Headers
from bridge.http1 import HTTPClient, HTTPError, default_tls
from bridge.http1_wire import MAX_BODY, Answer
from bridge.responses import decode_body
from bridge.transport import EnvProxies

log = logging.getLogger("switchboard.mattermost")

#: Characters left as they are in a request path (the rest is percent-encoded).
_PATH_SAFE = "/%:@!$&'()*+,;=~"


class MattermostError(Exception):
    """A failed REST call: HTTP status, Mattermost's error id and message (never a token)."""

    def __init__(self, status: int, error_id: str, message: str, path: str = "") -> None:
        self.status = status
        self.error_id = error_id
        self.path = path
        super().__init__(f"Mattermost answered {status} {error_id or ''} on {path}: {message}"
                         if status else f"Mattermost unreachable on {path}: {message}")

    @property
    def retryable(self) -> bool:
        """Unreachable, rate limited or a server error: the same call may work later."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class MattermostAuthError(MattermostError):
    """401: the bot's token is wrong, expired or revoked."""


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` header's wait in seconds, in either form HTTP allows (seconds, or a date);
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class RetryPolicy:
    """How often a call is tried again, and the longest wait between two tries."""

    def __init__(self, retries: int, max_retry_after: float) -> None:
        self.retries = retries
        self.max_retry_after = max_retry_after


class Response:
    """A whole answer, read before the connection went back to the pool."""

    __slots__ = ("content", "headers", "reason", "status_code")

    def __init__(self, status_code: int, reason: str, headers: Headers, content: bytes) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)

    @property
    def is_json(self) -> bool:
        kind: str = self.headers.get("Content-Type", "")
        return kind.partition(";")[0].strip().lower() == "application/json"


def _error(response: Response, path: str) -> MattermostError:
    error_id, message = "", response.reason or "error"
    try:
        body = response.json()
        if isinstance(body, dict):
            error_id = str(body.get("id", ""))
            message = str(body.get("message", message))
    except ValueError:
        text = response.text.strip()
        if text:
            message = text[:200]
    cls = MattermostAuthError if response.status_code == 401 else MattermostError
    return cls(response.status_code, error_id, message, path)


def _query(params: Mapping[str, Any] | None) -> str:
    """Query parameters as `requests` encodes them: None dropped, a list repeated, the rest
    as text; "" for none."""
    if not params:
        return ""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(name, v if isinstance(v, str) else str(v)) for v in values if v is not None]
    return urlencode(pairs)


def _quoted(text: str) -> str:
    """A form field's name or file name inside a quoted string (as browsers write them)."""
    return text.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def _multipart(data: Any, files: Mapping[str, Any]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type, from `requests`-style `data` and
    `files` (`{field: file}` or `{field: (name, file[, content type])}`; a file is bytes, text
    or something with `read()`)."""
    boundary = secrets.token_hex(16)
    parts: list[bytes] = []
    fields: Iterable[tuple[str, Any]] = data.items() if isinstance(data, Mapping) else data or ()
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"'
                     f"\r\n\r\n{value}\r\n".encode())
    for name, spec in files.items():
        if isinstance(spec, tuple):
            filename, content = spec[0], spec[1]
            content_type = spec[2] if len(spec) > 2 and spec[2] else None
        else:
            filename, content, content_type = getattr(spec, "name", name), spec, None
        if hasattr(content, "read"):
            content = content.read()
        if isinstance(content, str):
            content = content.encode()
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"; '
                f'filename="{_quoted(str(filename).replace(chr(92), "/").rpartition("/")[2])}"'
                f"\r\nContent-Type: {content_type or 'application/octet-stream'}\r\n\r\n")
        parts += (head.encode(), bytes(content), b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _decoded(answer: Answer, limit: int) -> bytes:
    """The body without its gzip or deflate coding (not asked for, but a server may send it
    anyway); other codings are left as they are."""
    coding = (answer.header("Content-Encoding") or "").strip().lower()
    try:
        return decode_body(answer.body, coding.encode("latin-1"), limit)
    except zlib.error as exc:
        raise HTTPError(f"the answer's {coding} body cannot be decoded: {exc}") from None


#: What `AsyncClient` takes, with the defaults mattermostdriver's `Driver` gives them.
CLIENT_OPTIONS: dict[str, Any] = {"url": None, "scheme": "https", "port": 8065,
                                  "basepath": "/api/v4", "token": "", "verify": True,
                                  "request_timeout": None}


class AsyncClient:
    """The endpoints' client on `bridge.http1`: the endpoint methods return coroutines.

    `options` are named as mattermostdriver's `Driver` names them: `url` (the server's host name,
    required), `scheme` (http or https), `port`, `basepath` (with `/api/v4`), `token`, `verify`
    (True, False or a CA bundle's path) and `request_timeout` (seconds for connecting, and again
    for an answer; None for no limit)."""

    policy = RetryPolicy(4, 30.0)
    #: Connections (and so calls in flight) at most.
    limit = 8
    #: The largest answer body read (file downloads included).
    max_body = MAX_BODY

    def __init__(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(CLIENT_OPTIONS))
        if unknown:
            raise ValueError(f"unknown Mattermost client options: {', '.join(unknown)} "
                             f"(known: {', '.join(CLIENT_OPTIONS)})")
        given = {**CLIENT_OPTIONS, **options}
        host, scheme, port = given["url"], given["scheme"], given["port"]
        if not isinstance(host, str) or not host:
            raise ValueError("the Mattermost client needs the server's host name as `url`")
        if scheme not in ("http", "https"):
            raise ValueError(f"a Mattermost server is reached over http or https, not {scheme!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"{port!r} is not a TCP port")
        if not isinstance(given["verify"], bool | str):
            raise ValueError(f"verify must be True, False or a CA bundle's path, "
                             f"not {given['verify']!r}")
        timeout = given["request_timeout"]
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise ValueError(f"request_timeout must be a positive number of seconds or None, "
                             f"not {timeout!r}")
        self._scheme: str = scheme
        self._host: str = host
        self._port: int = port
        self._basepath: str = str(given["basepath"])
        self._verify: bool | str = given["verify"]
        self._seconds: float | None = timeout
        #: The bearer token sent with every call ("" for none).
        self.token: str = str(given["token"] or "")
        #: Who the token belongs to, as the driver's client kept it (the emoji endpoints read it).
        self.userid = ""
        self.username = ""
        self._fixed = [(b"User-Agent", b"Switchboard"), (b"X-Requested-With", b"XMLHttpRequest")]
        self._proxies = EnvProxies()
        self._proxy, _ = self._proxies.proxy_for(self._scheme, self._host)
        self._http: HTTPClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Future[None]] = set()
        self._running: set[asyncio.Future[Response]] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    @property
    def url(self) -> str:
        """The API's base URL (`scheme://host:port/basepath`)."""
        return f"{self._scheme}://{self._host}:{self._port}{self._basepath}"

    @property
    def request_timeout(self) -> float | None:
        return self._seconds

    def auth_header(self) -> dict[str, str]:
        """The Authorization header for the token (none without one)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _ssl(self) -> ssl.SSLContext | None:
        if self._scheme != "https":
            return None
        # A CA bundle file, or the certifi bundle as `requests` took it; either is read here,
        # so a missing file fails the first call with an OSError naming it.
        return default_tls(self._verify)

    def _client(self) -> HTTPClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            if self._http is not None:
                self.close()
            tls = self._ssl()
            self._http = HTTPClient(limit=self.limit, verify=tls or True,
                                    proxies=self._proxies, max_body=self.max_body)
            self._loop = loop
        return self._http

    async def make_request(self, method: str, endpoint: str, options: Any = None,
                           params: Any = None, data: Any = None, files: Any = None,
                           basepath: str | None = None) -> Response:
        """One call, tried again as the policy says. It runs to its end in a task of its own:
        a caller that stops waiting (a timeout, a cancelled handler) does not cut a request,
        or its retries, half-way; `close` ends what is still running."""
        task = asyncio.ensure_future(self._request(method, endpoint, options, params, data,
                                                   files, basepath))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    def _body(self, method: str, options: Any, data: Any, files: Any
              ) -> tuple[bytes, bytes | None]:
        """The request body and its content type."""
        # The driver passes `{}` as a JSON body even on GET; send a body only when there is one.
        if files:
            body, kind = _multipart(data, files)
            return body, kind.encode()
        if options is not None and (options != {} or method in ("POST", "PUT")):
            return json.dumps(options).encode(), b"application/json"
        if isinstance(data, Mapping):
            return urlencode(list(data.items())).encode(), b"application/x-www-form-urlencoded"
        if isinstance(data, str):
            return data.encode(), None
        return bytes(data or b""), None

    async def _request(self, method: str, endpoint: str, options: Any, params: Any, data: Any,
                       files: Any, basepath: str | None) -> Response:
        method = method.upper()
        path = quote((self._basepath if basepath is None else basepath) + endpoint, _PATH_SAFE)
        query = _query(params)
        target = (f"{path}?{query}" if query else path).encode()
        body, kind = self._body(method, options, data, files)
        headers = list(self._fixed)
        for name, value in self.auth_header().items():
            headers.append((name.encode(), value.encode()))
        if kind is not None:
            headers.append((b"Content-Type", kind))
        # Creating a post is retried by the caller, which first checks it did not land.
        safe_to_retry = not (method == "POST" and endpoint == "/posts")
        http = self._client()
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await http.request(method, self._scheme, self._host, self._port,
                                            target, headers, body, connect=self._seconds,
                                            read=self._seconds)
                response = Response(answer.status, answer.reason, Headers(answer.headers),
                                    _decoded(answer, self.max_body))
            except HTTPError as exc:
                if not safe_to_retry or attempt > self.policy.retries:
                    # The cause stays in the exception's context (the doctor reads why).
                    raise MattermostError(0, "", type(exc).__name__, endpoint) from None
                await self._sleep(attempt, None)
                continue
            status = response.status_code
            if status < 400:
                return response
            retryable = status == 429 or (status >= 500 and safe_to_retry)
            if retryable and attempt <= self.policy.retries:
                log.warning("Mattermost answered %s on %s %s; retrying (attempt %d)",
                            status, method, endpoint, attempt)
                await self._sleep(attempt, response.headers.get("Retry-After")
                                  if status == 429 else None)
                continue
            raise _error(response, endpoint)

    async def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = retry_after_seconds(retry_after)
        if delay is None:
            delay = 0.25 * (2 ** (attempt - 1)) * (0.5 + random.random())
        await asyncio.sleep(min(delay, self.policy.max_retry_after))

    async def get(self, endpoint: str, options: Any = None, params: Any = None) -> Any:
        """The answer as JSON, or the `Response` itself when it is not JSON."""
        response = await self.make_request("get", endpoint, options=options, params=params)
        if not response.is_json:
            return response
        try:
            return response.json()
        except ValueError:
            return response

    async def post(self, endpoint: str, options: Any = None, params: Any = None,
                   data: Any = None, files: Any = None) -> Any:
        return (await self.make_request("post", endpoint, options=options, params=params,
                                        data=data, files=files)).json()

    async def put(self, endpoint: str, options: Any = None, params: Any = None,
                  data: Any = None) -> Any:
        return (await self.make_request("put", endpoint, options=options, params=params,
                                        data=data)).json()

    async def delete(self, endpoint: str, options: Any = None, params: Any = None,
                     data: Any = None) -> Any:
        return (await self.make_request("delete", endpoint, options=options, params=params,
                                        data=data)).json()

    async def aclose(self) -> None:
        """Close the pooled connections and wait until they are."""
        detached = self._detach()
        if detached is None:
            return
        http, loop = detached
        if loop is asyncio.get_running_loop():
            await http.aclose()
        else:
            self._close_on(http, loop)

    def close(self) -> None:
        """Close the pooled connections: in a task on their loop when it runs (the loop must
        go on long enough to run it; `aclose` waits for it), or at once when it does not."""
        detached = self._detach()
        if detached is not None:
            self._close_on(*detached)

    def _detach(self) -> tuple[HTTPClient, asyncio.AbstractEventLoop] | None:
        """The open pools and their loop, forgotten here (the next call opens others); the
        calls still running on them are cancelled."""
        for task in list(self._running):
            home = task.get_loop()
            if home.is_running() and not _runs(home):
                home.call_soon_threadsafe(task.cancel)
            elif not home.is_closed():
                task.cancel()
        http, loop = self._http, self._loop
        self._http = self._loop = None
        if http is None or loop is None or loop.is_closed():
            return None
        return http, loop

    def _close_on(self, http: HTTPClient, loop: asyncio.AbstractEventLoop) -> None:
        if not loop.is_running():
            loop.run_until_complete(http.aclose())
        elif _runs(loop):
            task = loop.create_task(http.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            asyncio.run_coroutine_threadsafe(http.aclose(), loop)


def _runs(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` is the one running in this thread."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
