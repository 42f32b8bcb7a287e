"""The routing table: exact paths, and patterns whose `{name}` segments each match one
non-empty path segment. A path served under other methods is answered 405 with `Allow`; GET
routes answer HEAD too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .request import HTTPError, Request, Response

Handler = Callable[[Request], Awaitable[Response]]


class _Pattern:
    __slots__ = ("handlers", "parts", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.parts = pattern.split("/")
        self.handlers: dict[str, Handler] = {}

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.parts):
            return None
        params: dict[str, str] = {}
        for part, segment in zip(self.parts, segments, strict=True):
            if part.startswith("{") and part.endswith("}"):
                if not segment:
                    return None
                params[part[1:-1]] = segment
            elif part != segment:
                return None
        return params


class Router:
    """Finds a request's handler. Unknown paths go to `not_found` (by default a 404)."""

    def __init__(self, not_found: Handler | None = None) -> None:
        self._exact: dict[str, _Pattern] = {}
        self._patterns: list[_Pattern] = []
        self.not_found = not_found or _not_found

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"a route's path starts with '/': {pattern!r}")
        dynamic = "{" in pattern
        table = self._patterns if dynamic else list(self._exact.values())
        route = next((r for r in table if r.pattern == pattern), None)
        if route is None:
            route = _Pattern(pattern)
            if dynamic:
                self._patterns.append(route)
            else:
                self._exact[pattern] = route
        if method.upper() in route.handlers:
            raise ValueError(f"{method.upper()} {pattern} has a handler already")
        route.handlers[method.upper()] = handler

    def get(self, pattern: str, handler: Handler) -> None:
        self.add("GET", pattern, handler)

    def post(self, pattern: str, handler: Handler) -> None:
        self.add("POST", pattern, handler)

    def resolve(self, request: Request) -> Handler:
        """The handler for `request`; sets its `route` and `params`. HTTPError 405 when the
        path is served under other methods only."""
        route = self._exact.get(request.path)
        params: dict[str, str] | None = {}
        if route is None:
            segments = request.path.split("/")
            for candidate in self._patterns:
                params = candidate.match(segments)
                if params is not None:
                    route = candidate
                    break
        if route is None or params is None:
            return self.not_found
        request.route = route.pattern
        request.params = params
        method = "GET" if request.method == "HEAD" else request.method
        handler = route.handlers.get(method)
        if handler is None:
            allowed = sorted(set(route.handlers) | ({"HEAD"} if "GET" in route.handlers
                                                     else set()))
            raise HTTPError(405, f"{request.method} is not allowed on {request.path}; "
                                 f"use {' or '.join(allowed)}",
                            (("Allow", ", ".join(allowed)),))
        return handler

    async def __call__(self, request: Request) -> Response:
        return await self.resolve(request)(request)


async def _not_found(request: Request) -> Response:
    raise HTTPError(404, f"no such endpoint: {request.method} {request.path}")
