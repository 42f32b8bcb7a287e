"""The HTTP side of the Mattermost REST client: the driver's endpoints on aiohttp's event loop.

mattermostdriver's endpoint objects (`driver.posts.create_post(...)`, ...) build each call's
method, path and body, and hand it to their client. `AsyncClient` is that client, made async: its
`make_request`, `get`, `post`, `put` and `delete` are coroutines, so every endpoint method returns
one, awaited on the caller's event loop. No thread and no `requests` session is involved.

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
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import certifi
from mattermostdriver.client import Client
from multidict import CIMultiDictProxy
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry
from yarl import URL

from bridge.transport import EnvProxies

log = logging.getLogger("switchboard.mattermost")


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
    try:
        return float(Retry().parse_retry_after(value))
    except InvalidHeader:
        return None


class RetryPolicy:
    """How often a call is tried again, and the longest wait between two tries."""

    def __init__(self, retries: int, max_retry_after: float) -> None:
        self.retries = retries
        self.max_retry_after = max_retry_after


class Response:
    """A whole answer, read before the connection went back to the pool."""

    __slots__ = ("content", "headers", "reason", "status_code")

    def __init__(self, status_code: int, reason: str, headers: CIMultiDictProxy[str],
                 content: bytes) -> None:
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
        kind = self.headers.get("Content-Type", "")
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


def _query(params: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    """Query parameters as `requests` encodes them: None dropped, a list repeated, the rest
    as text."""
    if not params:
        return None
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(name, v if isinstance(v, str) else str(v)) for v in values if v is not None]
    return pairs


def _form(data: Any, files: Mapping[str, Any]) -> aiohttp.FormData:
    """A multipart body from `requests`-style `data` and `files` (`{field: file}` or
    `{field: (name, file[, content type])}`)."""
    form = aiohttp.FormData()
    fields: Iterable[tuple[str, Any]] = data.items() if isinstance(data, Mapping) else data or ()
    for name, value in fields:
        form.add_field(name, str(value))
    for name, spec in files.items():
        if isinstance(spec, tuple):
            filename, content = spec[0], spec[1]
            content_type = spec[2] if len(spec) > 2 else None
        else:
            filename, content, content_type = getattr(spec, "name", name), spec, None
        form.add_field(name, content, filename=str(filename), content_type=content_type)
    return form


class AsyncClient(Client):  # type: ignore[misc]
    """The driver's client on aiohttp: the endpoint methods return coroutines."""

    policy = RetryPolicy(4, 30.0)
    #: Connections (and so calls in flight) at most.
    limit = 8

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        seconds = self.request_timeout
        self._timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=seconds,
                                              sock_read=seconds)
        url = URL(self.url)
        self._headers = {"User-Agent": "Switchboard", "X-Requested-With": "XMLHttpRequest"}
        self._proxy, self._proxy_headers = EnvProxies().proxy_for(url.scheme, url.host or "")
        if self._proxy_headers and url.scheme == "http":
            # A plain request to a proxy carries the proxy's credentials itself; aiohttp sends
            # `proxy_headers` only on a CONNECT.
            self._headers.update(self._proxy_headers)
            self._proxy_headers = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Future[None]] = set()
        self._running: set[asyncio.Future[Response]] = set()

    def _ssl(self) -> ssl.SSLContext | bool:
        if self._scheme != "https":
            return True
        if not self._verify:
            return False
        # A CA bundle file, or the certifi bundle as `requests` took it; either is read here,
        # so a missing file fails the first call with an OSError naming it.
        cafile = self._verify if isinstance(self._verify, str) else certifi.where()
        return ssl.create_default_context(cafile=cafile)

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            if self._session is not None:
                self.close()
            connector = aiohttp.TCPConnector(limit=self.limit, limit_per_host=0,
                                             ssl=self._ssl())
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
            self._loop = loop
        return self._session

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

    async def _request(self, method: str, endpoint: str, options: Any, params: Any, data: Any,
                       files: Any, basepath: str | None) -> Response:
        method = method.upper()
        base = self.url
        if basepath:
            base = f"{self._scheme}://{self._options['url']}:{self._port}{basepath}"
        kwargs: dict[str, Any] = {"params": _query(params), "proxy": self._proxy,
                                  "proxy_headers": self._proxy_headers}
        headers = self.auth_header() or {}
        # The driver passes `{}` as a JSON body even on GET; send a body only when there is one.
        if files:
            kwargs["data"] = _form(data, files)
        elif options is not None and (options != {} or method in ("POST", "PUT")):
            kwargs["data"] = json.dumps(options).encode()
            headers = {**headers, "Content-Type": "application/json"}
        elif data:
            kwargs["data"] = data
        kwargs["headers"] = headers
        # Creating a post is retried by the caller, which first checks it did not land.
        safe_to_retry = not (method == "POST" and endpoint == "/posts")
        session = self._client()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with session.request(method, base + endpoint, **kwargs) as answer:
                    content = await answer.read()
                    response = Response(answer.status, answer.reason or "", answer.headers,
                                        content)
            except (aiohttp.ClientError, TimeoutError) as exc:
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
        session, loop = detached
        if loop is asyncio.get_running_loop():
            await session.close()
        else:
            self._close_on(session, loop)

    def close(self) -> None:
        """Close the pooled connections: in a task on their loop when it runs (the loop must
        go on long enough to run it; `aclose` waits for it), or at once when it does not."""
        detached = self._detach()
        if detached is not None:
            self._close_on(*detached)

    def _detach(self) -> tuple[aiohttp.ClientSession, asyncio.AbstractEventLoop] | None:
        """The open session and its loop, forgotten here (the next call opens another); the
        calls still running on it are cancelled."""
        for task in list(self._running):
            home = task.get_loop()
            if home.is_running() and not _runs(home):
                home.call_soon_threadsafe(task.cancel)
            elif not home.is_closed():
                task.cancel()
        session, loop = self._session, self._loop
        self._session = self._loop = None
        if session is None or loop is None or session.closed or loop.is_closed():
            return None
        return session, loop

    def _close_on(self, session: aiohttp.ClientSession,
                  loop: asyncio.AbstractEventLoop) -> None:
        if not loop.is_running():
            loop.run_until_complete(session.close())
        elif _runs(loop):
            task = loop.create_task(session.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            asyncio.run_coroutine_threadsafe(session.close(), loop)


def _runs(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` is the one running in this thread."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
