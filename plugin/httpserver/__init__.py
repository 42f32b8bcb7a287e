"""A small HTTP/1.1 server for asyncio: the bot's listener and the doctor's health check.

`HTTPServer` runs an app (an async callable from `Request` to `Response`, usually a `Router`)
on host:port, within `Limits`; see `server` for what the limits do.
"""

from bridge.headers import Headers

from .request import (
    HTTPError,
    Request,
    Response,
    error_response,
    json_response,
    parse_content_type,
)
from .routing import Handler, Router
from .server import App, HTTPServer, Limits

__all__ = ["App", "HTTPError", "HTTPServer", "Handler", "Headers", "Limits", "Request",
           "Response", "Router", "error_response", "json_response", "parse_content_type"]
