"""An openITCOCKPIT 4 simulator: the external-command endpoint the bot acts through.

openITCOCKPIT cannot be installed here; this follows its public API (see
`bridge/openitcockpit.py`): `GET|POST /nagios_module/cmd/submit.json` with `Authorization:
X-OITC-API <api key>` queues one external command for the core and answers `{"message":
"Command added successfully to queue"}`. Like the real one it knows its hosts and services by
UUID, refuses an unknown or missing API key (403), a command it does not know or one missing its
fields (400), an unknown object (404), and answers 405 to other methods. An API key given in the
query string (`?apikey=`, an old form that leaks into logs) is refused too. What it queued is in
`commands`; `fail_next(status)` makes the next call fail.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .loop_thread import LoopThread

SUBMIT = "/nagios_module/cmd/submit.json"
#: The commands this simulator takes, and the fields each needs besides `command`.
COMMANDS: dict[str, tuple[str, ...]] = {
    "ACKNOWLEDGE_SVC_PROBLEM": ("hostUuid", "serviceUuid", "author", "comment"),
    "ACKNOWLEDGE_HOST_PROBLEM": ("hostUuid", "author", "comment"),
    "REMOVE_SVC_ACKNOWLEDGEMENT": ("hostUuid", "serviceUuid"),
    "REMOVE_HOST_ACKNOWLEDGEMENT": ("hostUuid",),
    "SCHEDULE_SVC_DOWNTIME": ("hostUuid", "serviceUuid", "start_time", "end_time", "author",
                              "comment"),
    "SCHEDULE_HOST_DOWNTIME": ("hostUuid", "start_time", "end_time", "author", "comment"),
    "DEL_SVC_DOWNTIME": ("downtime_id",),
}


class OpenITCockpitSimulator:
    """Create, `await start()`, use `url`, `await stop()`."""

    def __init__(self, *, api_key: str, hosts: dict[str, list[str]] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        #: host UUID → its service UUIDs.
        self.hosts = hosts if hosts is not None else {}
        self.host, self.port = host, port
        self.url = ""
        self.commands: list[dict[str, Any]] = []
        self.requests = 0
        self._fail: list[int] = []
        self._runner: web.AppRunner | None = None

    def fail_next(self, status: int, times: int = 1) -> None:
        self._fail += [status] * times

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", SUBMIT, self._submit)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"message": message, "url": SUBMIT, "code": status},
                                 status=status)

    async def _submit(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.method not in ("GET", "POST"):
            return self._error(405, "Method Not Allowed")
        if "apikey" in request.query:
            return self._error(403, "API keys are not taken in the URL")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("X-OITC-API ") or auth[11:].strip() != self.api_key:
            return self._error(403, "You are not logged in")
        if self._fail:
            return self._error(self._fail.pop(0), "Internal Server Error")
        if request.method == "POST":
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self._error(400, "The request body is not JSON")
        else:
            body = dict(request.query)
        if not isinstance(body, dict):
            return self._error(400, "The request body must be an object")
        command = body.get("command")
        if command not in COMMANDS:
            return self._error(400, f"Unknown command {str(command)[:40]}")
        missing = [f for f in COMMANDS[command] if body.get(f) in (None, "")]
        if missing:
            return self._error(400, f"Missing fields: {', '.join(missing)}")
        host = body.get("hostUuid")
        if host is not None and host not in self.hosts:
            return self._error(404, "Host not found")
        service = body.get("serviceUuid")
        if service is not None and service not in self.hosts.get(str(host), []):
            return self._error(404, "Service not found")
        self.commands.append(body)
        return web.json_response({"message": "Command added successfully to queue"})


class OpenITCockpitSimulatorThread(LoopThread[OpenITCockpitSimulator]):
    """Runs an OpenITCockpitSimulator on its own event loop in a daemon thread."""

    name = "openitcockpit-simulator"

    def __init__(self, **simulator_kwargs: Any) -> None:
        super().__init__(lambda: OpenITCockpitSimulator(**simulator_kwargs))
