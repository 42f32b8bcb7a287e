"""An httpx transport on aiohttp's connection pool.

The bridges speak httpx; this backend carries their requests. httpcore's pool re-checks every
pooled connection (several system calls each) whenever a request starts or ends, which made the
pool cost more CPU than everything else the helpdesk does per ticket. aiohttp's pool does not.
The bridges are unchanged: the transport is injected (`transport=`), as in their tests.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import httpx

#: Headers aiohttp computes itself from the URL and the body.
_COMPUTED = {"host", "content-length", "transfer-encoding"}


class AiohttpTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=AiohttpTransport(...))`: at most `limit` connections.

    `server_name`, when given, is the name the server's certificate must carry and the name
    sent in SNI, while the connection still goes to the URL's host: for a server reached by
    an address (or an alias) its certificate does not name."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True, limit: int = 8,
                 server_name: str = "") -> None:
        self._verify = verify
        self._limit = limit
        self._server_name = server_name or None
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_option: bool | ssl.SSLContext = (
                self._verify if isinstance(self._verify, ssl.SSLContext) else bool(self._verify))
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=ssl_option)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",))
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.get("pool"), sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"))
        headers = [(k, v) for k, v in request.headers.multi_items()
                   if k.lower() not in _COMPUTED]
        body = await request.aread()
        try:
            async with self._client().request(
                    request.method, str(request.url), headers=headers, data=body or None,
                    timeout=timeout, allow_redirects=False,
                    server_hostname=self._server_name) as response:
                content = await response.read()
                raw_headers = [(k.decode("latin-1"), v.decode("latin-1"))
                               for k, v in response.raw_headers]
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(f"no answer in time: {exc}", request=request) from None
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(f"cannot connect: {exc.os_error}", request=request) from None
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from None
        # The body is handed over as received: httpx decodes it per Content-Encoding.
        return httpx.Response(response.status, headers=raw_headers,
                              stream=httpx.ByteStream(content), request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
