"""Decisions on openITCOCKPIT alerts, carried back through its HTTP API.

openITCOCKPIT 4 queues external commands for its core with `POST
/nagios_module/cmd/submit.json` (`Authorization: X-OITC-API <api key>`; the key never goes in a
URL). Its objects are named by UUID, which its notifications carry (`host_uuid`, `service_uuid`
through `contrib/nagios/switchboard-notify --source openitcockpit`):

- Acknowledge: `ACKNOWLEDGE_SVC_PROBLEM` / `ACKNOWLEDGE_HOST_PROBLEM` with `hostUuid`,
  `serviceUuid`, `sticky` (2 or 0), `notify` (1 or 0), `persistent`, `author`, `comment`;
- Unacknowledge: `REMOVE_SVC_ACKNOWLEDGEMENT` / `REMOVE_HOST_ACKNOWLEDGEMENT`;
- Silence: `SCHEDULE_SVC_DOWNTIME` / `SCHEDULE_HOST_DOWNTIME` (`start_time`, `end_time`, `fixed`
  1, `trigger_id` 0, `duration`); the API answers before the core has the downtime and does not
  name it, so a silence is ended in openITCOCKPIT itself;
- Resolve: not offered (a problem is resolved by its check).

The answer only says the command was queued ("Command added successfully to queue").
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

from .alerts import Alert, SourceError, SourceUnavailable
from .limiter import Limiter
from .responses import ResponseLike
from .transport import send_plain

SOURCE = "openitcockpit"
SUBMIT = "/nagios_module/cmd/submit.json"


class OpenITCockpitClient:
    """An `AlertSource` for openITCOCKPIT 4."""

    can_acknowledge = True
    can_silence = True
    can_resolve = False

    def __init__(self, *, url: str, api_key: str, sticky: bool = True, notify: bool = True,
                 timeout: float = 10.0, verify: Any = True,
                 transport: httpx.AsyncBaseTransport | None = None, name: str = SOURCE,
                 max_in_flight: int = 32) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.sticky, self.notify = sticky, notify
        self._key = api_key
        self.limiter = Limiter(max_in_flight)
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"X-OITC-API {api_key}", "Accept": "application/json",
                     "User-Agent": "switchboard"},
            timeout=httpx.Timeout(timeout), verify=verify, transport=transport,
            follow_redirects=False, limits=self.limiter.pool_limits())

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ the wire

    async def _submit(self, command: dict[str, Any], what: str) -> None:
        try:
            response: ResponseLike = await self.limiter.call(
                send_plain, self._client, "POST", self.url + SUBMIT, headers={}, json=command)
        except httpx.TimeoutException as exc:
            raise SourceUnavailable(f"openITCOCKPIT timed out on {what}") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(
                f"openITCOCKPIT unreachable on {what}: {type(exc).__name__}") from exc
        code = response.status_code
        if code >= 500 or code == 429:
            raise SourceUnavailable(f"openITCOCKPIT answered HTTP {code} on {what}")
        reason = self._reason(response)
        if code in (401, 403):
            raise SourceError(f"openITCOCKPIT refused the API key on {what} (HTTP {code})"
                              f"{f': {reason}' if reason else ''}")
        if code >= 300:
            raise SourceError(f"openITCOCKPIT refused {what} (HTTP {code})"
                              f"{f': {reason}' if reason else ''}")

    def _reason(self, response: ResponseLike) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        message = body.get("message") if isinstance(body, dict) else None
        if isinstance(message, dict):
            message = "; ".join(f"{k}: {v}" for k, v in message.items())
        text = str(message or "")[:200]
        return text.replace(self._key, "***") if self._key else text

    def _target(self, alert: Alert) -> dict[str, str]:
        host = str(alert.ref.get("host_uuid") or "")
        if not host:
            raise SourceError("the notification carried no host UUID (give switchboard-notify "
                              "--host-uuid \"$HOSTNAME$\")")
        if alert.ref.get("type") == "Service":
            service = str(alert.ref.get("service_uuid") or "")
            if not service:
                raise SourceError("the notification carried no service UUID (give "
                                  "switchboard-notify --service-uuid \"$SERVICEDESC$\")")
            return {"hostUuid": host, "serviceUuid": service}
        return {"hostUuid": host}

    @staticmethod
    def _kind(target: dict[str, str]) -> str:
        return "SVC" if "serviceUuid" in target else "HOST"

    # ------------------------------------------------------------------ AlertSource

    async def acknowledge(self, alert: Alert, who: str, comment: str) -> str:
        target = self._target(alert)
        await self._submit({
            "command": f"ACKNOWLEDGE_{self._kind(target)}_PROBLEM", **target,
            "sticky": 2 if self.sticky else 0, "notify": 1 if self.notify else 0,
            "persistent": 1, "author": who or "switchboard",
            "comment": comment or f"Acknowledged by {who}"}, "acknowledge")
        return ""

    async def unacknowledge(self, alert: Alert, handle: str, who: str) -> None:
        target = self._target(alert)
        await self._submit({"command": f"REMOVE_{self._kind(target)}_ACKNOWLEDGEMENT",
                            **target}, "unacknowledge")

    async def silence(self, alert: Alert, seconds: float, who: str) -> str:
        if not math.isfinite(seconds) or seconds <= 0:
            raise SourceError("a silence must last a positive number of seconds")
        target = self._target(alert)
        start = int(time.time())
        await self._submit({
            "command": f"SCHEDULE_{self._kind(target)}_DOWNTIME", **target,
            "start_time": start, "end_time": start + math.ceil(seconds), "fixed": 1,
            "trigger_id": 0, "duration": math.ceil(seconds), "author": who or "switchboard",
            "comment": f"Silenced by {who} from the chat"}, "silence")
        return ""

    async def unsilence(self, alert: Alert, handle: str, who: str) -> None:
        raise SourceError("openITCOCKPIT does not name the downtime it queued: end it in "
                          "openITCOCKPIT")

    async def resolve(self, alert: Alert, who: str) -> None:
        raise SourceError("an openITCOCKPIT problem is resolved by its check, not from the chat")
