"""A GLPI legacy REST API (`apirest.php`) simulator on 127.0.0.1, for the tests and the sandbox.

No GLPI can be installed on these machines, so this server speaks the documented legacy API with
GLPI 10's behaviour, over real sockets:

* `initSession` with `Authorization: user_token <token>` or HTTP Basic, `killSession`, the
  `Session-Token` header on every other call; an `App-Token` when the API client has one; the API
  client's IP filter (`ip_allowed`);
* errors as a JSON array `[CODE, message]`, with GLPI's texts (and its "view documentation"
  suffix where GLPI adds it);
* solutions (`ITILSolution`): adding one solves the ticket, and it waits for the requester's
  approval (GLPI's `autoclose_delay` other than 0; with 0 it is accepted and the ticket closed at
  once); the requester accepts with a follow-up carrying `add_close` (the ticket is closed) or
  refuses with one carrying `add_reopen` and a reason (the ticket goes back to assigned, or new
  when nobody is assigned);
* items: `Ticket`, `ITILFollowup`, `ITILSolution`, `Document` (multipart upload with
  `uploadManifest`), `Document_Item`, `Ticket_User`, `User`, `UserEmail`, `Entity`,
  `RequestType`, `ITILCategory`; get one, get all (`searchText`, `range`), sub items, add,
  update (`Ticket`);
* `search/Ticket` and `search/User` with `criteria`, `forcedisplay`, `sort`, `order`, `range`,
  and `listSearchOptions/<itemtype>`;
* text inputs are stored as GLPI 10 stores them (`&`, `<`, `>` as `&#38;`, `&#60;`, `&#62;`) and
  answered that way unless the request sends `X-GLPI-Sanitized-Content: false`;
* the web UI's ticket page, `/front/ticket.form.php?id=N` (the link a bot gives for a ticket): an
  HTML page, served as the API is (the same latency and the same limit on requests at once), as
  a real GLPI's PHP renders it for anyone who fetches the link, a link preview included.

The seeded world: the API user `helpdesk` (whose user token is the constructor's `user_token`),
the administrator `glpi` (password `glpi`), the technician `tech`, and `alice`, `bob`, `carol`,
each with the email `<login>@sandbox.local`; request sources 1-6 as GLPI ships them plus 7 `Chat`;
the root entity 0 and three categories.

Tests act as GLPI's technicians through the Python API (`assign`, `add_followup`, `solve`,
`set_ticket_status`, ...) and make the server misbehave with the fault switches (`set_down`,
`fail_next`, `slow_create_after_commit`, `expire_sessions`, `ip_allowed`, `latency_s`,
`max_concurrency`).

Run it alone with `python -m plugin.sandbox.glpi --port 8066`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import html
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiohttp import web

from .glpi_data import (
    ASSIGNED,
    REQUESTER,
    SOLUTION_ACCEPTED,
    SOLUTION_REFUSED,
    SOLUTION_WAITING,
    STATUS_LABELS,
    _as_list,
    _like,
    _php_params,
    _text_of_html,
    _to_int,
    sanitize,
    unsanitize,
)
from .glpi_search import Search
from .loop_thread import LoopThread

__all__ = ["STATUS_LABELS", "GLPIRequest", "GLPISimulator", "GLPISimulatorThread"]

JSON = Any

_ITEMTYPES = ("Ticket", "ITILFollowup", "ITILSolution", "Document", "Document_Item",
              "Ticket_User", "User", "UserEmail", "Entity", "RequestType", "ITILCategory")
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_NO_PERMISSION = "You don't have permission to perform this action."


class GLPIRequest(NamedTuple):
    """One request as the simulator saw it."""

    method: str
    path: str
    status: int
    time: float
    user: str | None  # the session's login, when the request had a valid session
    query: str = ""
    body: Any = None  # the decoded JSON body, or the upload manifest of a multipart request


@dataclass
class _FailRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    count: int
    body: Any


@dataclass
class _Session:
    user_id: int
    last_used: float


class _Answer(Exception):
    """Raised by handlers to answer at once (errors, mostly)."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class GLPISimulator(Search):
    """The simulated GLPI. Create, `await start()`, use `api_url`, `await stop()`.

    `user_token` belongs to the seeded API user `helpdesk`; `app_token` (empty: none) is the API
    client's token, required on every call when set. `session_lifetime_s` ends sessions idle for
    longer (None: never; `expire_sessions()` ends them all at once). `clock` gives the dates GLPI
    stores (UTC by default).
    """

    def __init__(self, *, user_token: str = "sandbox-glpi-user-token", app_token: str = "",
                 host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0,
                 max_concurrency: int | None = None, session_lifetime_s: float | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self.api_url = ""
        self.user_token = user_token
        self.app_token = app_token
        #: Whether the API client's IP range admits the caller (False: `ERROR_NOT_ALLOWED_IP`).
        self.ip_allowed = True
        #: Seconds added before every answer.
        self.latency_s = latency_s
        self.session_lifetime_s = session_lifetime_s
        self.clock = clock
        #: Every request, in arrival order of its answer.
        self.request_log: list[GLPIRequest] = []
        #: Successful `initSession` calls.
        self.login_count = 0
        #: The most requests handled at once (waiting for `max_concurrency` excluded).
        self.peak_in_flight = 0
        #: Seconds a create delayed by `slow_create_after_commit` waits before answering.
        self.slow_create_delay_s = 30.0
        self._max_concurrency = max_concurrency
        self._gate: asyncio.Semaphore | None = (
            asyncio.Semaphore(max_concurrency) if max_concurrency else None)
        self._in_flight = 0
        self._store: dict[str, dict[int, dict[str, Any]]] = {t: {} for t in _ITEMTYPES}
        self._next_id: dict[str, int] = {t: 1 for t in _ITEMTYPES}
        self._files: dict[int, bytes] = {}
        self._tokens: dict[str, int] = {}
        self._passwords: dict[str, str] = {}
        self._sessions: dict[str, _Session] = {}
        self._rules: list[_FailRule] = []
        self._down: str | None = None
        self._slow_creates = 0
        #: The entity's `autoclose_delay`: days before a solved ticket closes by itself; -10
        #: (GLPI's "never") or any other than 0 makes a solution wait for approval.
        self.autoclose_delay = -10
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._seed()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on `host:port` (port 0 picks a free one) and set `url` and `api_url`."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/apirest.php", self._entry)
        app.router.add_route("*", "/apirest.php/{tail:.*}", self._entry)
        app.router.add_get("/front/ticket.form.php", self._entry)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._stopping = asyncio.Event()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner, self._site = runner, site
        self.port = int(runner.addresses[0][1])
        self.url = f"http://{self.host}:{self.port}"
        self.api_url = f"{self.url}/apirest.php"

    async def stop(self) -> None:
        """Stop listening and end every connection (delayed answers are released first)."""
        self._stopping.set()
        if self._runner is None:
            return
        await self._runner.cleanup()
        self._runner = None
        self._site = None

    # -- settings -----------------------------------------------------------------------------

    @property
    def max_concurrency(self) -> int | None:
        """Requests handled at once; later ones wait for a free slot (None: no limit)."""
        return self._max_concurrency

    @max_concurrency.setter
    def max_concurrency(self, value: int | None) -> None:
        self._max_concurrency = value
        self._gate = asyncio.Semaphore(value) if value else None

    @property
    def active_sessions(self) -> int:
        """Sessions not yet killed or expired."""
        return len(self._sessions)

    # -- the world ----------------------------------------------------------------------------

    def _seed(self) -> None:
        now = self._now()
        self._store["Entity"][0] = {"id": 0, "name": "Root entity", "entities_id": -1,
                                    "completename": "Root entity", "comment": "", "level": 1,
                                    "date_mod": now, "date_creation": now}
        for rid, name in enumerate(("Helpdesk", "E-Mail", "Phone", "Direct", "Written", "Other",
                                    "Chat"), start=1):
            self._add("RequestType", {"name": name, "is_helpdesk_default": int(rid == 1),
                                      "is_followup_default": int(rid == 1),
                                      "is_active": 1, "is_ticketheader": 1,
                                      "is_itilfollowup": 1, "comment": "",
                                      "date_mod": now, "date_creation": now})
        for name in ("Access", "Hardware", "Software"):
            self._add("ITILCategory", {"name": name, "completename": name, "entities_id": 0,
                                       "is_recursive": 1, "itilcategories_id": 0, "level": 1,
                                       "comment": "", "is_helpdeskvisible": 1,
                                       "is_incident": 1, "is_request": 1,
                                       "date_mod": now, "date_creation": now})
        self._next_id["User"] = 2
        self.add_user("glpi", password="glpi", realname="Administrator")
        self.add_user("helpdesk", user_token=self.user_token, firstname="Chat",
                      realname="Helpdesk")
        self.add_user("tech", email="tech@sandbox.local", firstname="Tom", realname="Tech",
                      technician=True)
        for login in ("alice", "bob", "carol"):
            self.add_user(login, email=f"{login}@sandbox.local", firstname=login.title(),
                          realname="Sandbox")

    def add_entity(self, name: str, parent: int = 0) -> int:
        """Create a sub-entity (of the root one by default); returns its id."""
        now = self._now()
        above = self._store["Entity"][parent]
        return self._add("Entity", {"name": name, "entities_id": parent,
                                    "completename": f"{above['completename']} > {name}",
                                    "comment": "", "level": int(above["level"]) + 1,
                                    "date_mod": now, "date_creation": now})

    def add_user(self, login: str, *, email: str = "", firstname: str = "", realname: str = "",
                 password: str | None = None, user_token: str | None = None,
                 technician: bool = False) -> int:
        """Create a GLPI user; returns its id."""
        now = self._now()
        uid = self._add("User", {
            "name": login, "phone": "", "phone2": "", "mobile": "", "realname": realname,
            "firstname": firstname, "locations_id": 0, "language": None, "use_mode": 0,
            "list_limit": None, "is_active": 1, "comment": "", "auths_id": 0, "authtype": 1,
            "last_login": None, "date_mod": now, "date_sync": None, "is_deleted": 0,
            "profiles_id": 6 if technician else 1, "entities_id": 0, "usertitles_id": 0,
            "usercategories_id": 0, "csv_delimiter": None, "is_deleted_ldap": 0,
            "begin_date": None, "end_date": None, "groups_id": 0, "users_id_supervisor": 0,
            "timezone": None, "date_creation": now})
        if email:
            self._add("UserEmail", {"users_id": uid, "is_default": 1, "is_dynamic": 0,
                                    "email": email})
        if password is not None:
            self._passwords[login] = password
        if user_token is not None:
            self._tokens[user_token] = uid
        return uid

    def user_id(self, login: str) -> int:
        """The id of a user, by login."""
        for user in self._store["User"].values():
            if user["name"] == login:
                return int(user["id"])
        raise KeyError(login)

    def set_ticket_status(self, ticket_id: int, status: int) -> None:
        """Change a ticket's status (1 new .. 6 closed) as a technician would."""
        if status not in STATUS_LABELS:
            raise ValueError(f"GLPI has no ticket status {status}")
        ticket = self._ticket(ticket_id)
        now = self._now()
        ticket["status"] = status
        ticket["date_mod"] = now
        ticket["solvedate"] = now if status in (5, 6) else None
        ticket["closedate"] = now if status == 6 else None

    def assign(self, ticket_id: int, login: str = "tech") -> None:
        """Assign a technician; a new ticket becomes "Processing (assigned)", as in GLPI."""
        ticket = self._ticket(ticket_id)
        self._link_user(ticket_id, self.user_id(login), ASSIGNED)
        if ticket["status"] == 1:
            ticket["status"] = 2
        ticket["date_mod"] = self._now()

    def solve(self, ticket_id: int, text: str, *, author: str = "tech") -> int:
        """A technician's solution, as the solution form adds it (a paragraph of HTML)."""
        body = "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in text.split("\n"))
        return self._add_solution(ticket_id, {"content": sanitize(body)}, self.user_id(author))

    def solutions(self, ticket_id: int) -> list[dict[str, Any]]:
        return [s for s in self._store["ITILSolution"].values()
                if s["itemtype"] == "Ticket" and s["items_id"] == ticket_id]

    def add_followup(self, ticket_id: int, text: str, *, author: str = "tech",
                     private: bool = False) -> int:
        """A technician's follow-up, stored as GLPI's editor sends it (a paragraph of HTML)."""
        ticket = self._ticket(ticket_id)
        body = "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in text.split("\n"))
        now = self._now()
        fid = self._add("ITILFollowup", {
            "itemtype": "Ticket", "items_id": ticket_id, "date": now,
            "users_id": self.user_id(author), "users_id_editor": 0,
            "content": sanitize(body), "is_private": int(private), "requesttypes_id": 1,
            "date_mod": now, "date_creation": now, "timeline_position": 1,
            "sourceitems_id": 0, "sourceof_items_id": 0})
        ticket["date_mod"] = now
        return fid

    # -- what is stored -----------------------------------------------------------------------

    def tickets(self) -> list[dict[str, Any]]:
        """Every ticket, as stored (text fields HTML-encoded as GLPI 10 stores them)."""
        return [dict(t) for t in self._store["Ticket"].values()]

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        """One stored ticket (KeyError when absent)."""
        return dict(self._store["Ticket"][ticket_id])

    def followups(self, ticket_id: int) -> list[dict[str, Any]]:
        """A ticket's follow-ups, public and private, oldest first."""
        return [dict(f) for f in self._store["ITILFollowup"].values()
                if f["itemtype"] == "Ticket" and f["items_id"] == ticket_id]

    def ticket_users(self, ticket_id: int) -> list[dict[str, Any]]:
        """A ticket's actors (`type` 1 requester, 2 assigned, 3 observer)."""
        return [dict(link) for link in self._store["Ticket_User"].values()
                if link["tickets_id"] == ticket_id]

    def documents(self, ticket_id: int) -> list[dict[str, Any]]:
        """The documents linked to a ticket."""
        ids = [link["documents_id"] for link in self._store["Document_Item"].values()
               if link["itemtype"] == "Ticket" and link["items_id"] == ticket_id]
        return [dict(self._store["Document"][d]) for d in ids]

    def document_data(self, document_id: int) -> bytes:
        """The uploaded bytes of a document."""
        return self._files[document_id]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll `predicate` until it holds; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.01)

    # -- faults -------------------------------------------------------------------------------

    def expire_sessions(self) -> None:
        """End every session, as PHP's session lifetime does: their next call gets 401
        `ERROR_SESSION_TOKEN_INVALID`."""
        self._sessions.clear()

    async def set_down(self, down: bool = True, *, refuse: bool = True) -> None:
        """Take GLPI down until called with `down=False`.

        `refuse=True`: stop listening and close every connection (clients see connection
        refused); `refuse=False`: keep listening and answer every request with 503, as a web
        server in front of a stopped PHP does.
        """
        if not down:
            if self._down == "refuse" and self._runner is not None:
                site = web.TCPSite(self._runner, self.host, self.port)
                await site.start()
                self._site = site
            self._down = None
            return
        if refuse and self._down != "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None
            server = self._runner.server if self._runner is not None else None
            for handler in list(server.connections if server is not None else []):
                handler.force_close()
            # Let the closed transports finish closing before the caller goes on.
            for _ in range(3):
                await asyncio.sleep(0)
        self._down = "refuse" if refuse else "503"

    def fail_next(self, method: str, path_regex: str, status: int, count: int = 1, *,
                  body: Any = None) -> None:
        """The next `count` requests whose method (or `*`) and path (searched with the regex,
        e.g. `r"/Ticket$"`) match get `status` with `body` (by default GLPI's answer for that
        status: `ERROR_SQL` for 500, a plain page for 502-504, `["ERROR", ...]` otherwise)."""
        self._rules.append(_FailRule(method.upper(), re.compile(path_regex), status, count, body))

    def slow_create_after_commit(self, count: int = 1, delay_s: float | None = None) -> None:
        """The next `count` ticket creations are stored at once but answered only after
        `delay_s` (default `slow_create_delay_s`): a client that timed out must look for the
        ticket before creating it again."""
        self._slow_creates += count
        if delay_s is not None:
            self.slow_create_delay_s = delay_s

    # -- plumbing -----------------------------------------------------------------------------

    def _now(self) -> str:
        return self.clock().astimezone(UTC).strftime(_DATE_FORMAT)

    def _add(self, itemtype: str, fields: dict[str, Any]) -> int:
        new_id = self._next_id[itemtype]
        self._next_id[itemtype] = new_id + 1
        self._store[itemtype][new_id] = {"id": new_id, **fields}
        return new_id

    def _ticket(self, ticket_id: int) -> dict[str, Any]:
        try:
            return self._store["Ticket"][ticket_id]
        except KeyError:
            raise KeyError(f"no ticket {ticket_id}") from None

    def _login_of(self, user_id: int) -> str:
        user = self._store["User"].get(user_id)
        return str(user["name"]) if user else ""

    def _name_of(self, itemtype: str, item_id: int) -> Any:
        item = self._store[itemtype].get(item_id)
        if item is None:
            return None
        return item.get("completename", item.get("name"))

    def _link_user(self, ticket_id: int, user_id: int, kind: int) -> None:
        for link in self._store["Ticket_User"].values():
            if (link["tickets_id"], link["users_id"], link["type"]) == (ticket_id, user_id, kind):
                return
        self._add("Ticket_User", {"tickets_id": ticket_id, "users_id": user_id, "type": kind,
                                  "use_notification": 1, "alternative_email": ""})

    def _error(self, status: int, code: str, message: str, doc: bool = False) -> _Answer:
        if doc:
            message += f"; view documentation in your browser at {self.api_url}/#{code}"
        return _Answer(status, [code, message])

    def _injected(self, method: str, path: str) -> _FailRule | None:
        for rule in self._rules:
            if rule.method in ("*", method) and rule.pattern.search(path):
                rule.count -= 1
                if rule.count <= 0:
                    self._rules.remove(rule)
                return rule
        return None

    def _fault_answer(self, rule: _FailRule) -> web.Response:
        if rule.body is not None:
            if isinstance(rule.body, str | bytes):
                return web.Response(status=rule.status, body=rule.body)
            return web.json_response(rule.body, status=rule.status)
        if rule.status == 500:
            return web.json_response(["ERROR_SQL", "Unexpected SQL Error : injected failure"],
                                     status=500)
        if rule.status in (502, 503, 504):
            return web.Response(status=rule.status, text=f"<h1>{rule.status}</h1>",
                                content_type="text/html")
        return web.json_response(["ERROR", "injected failure"], status=rule.status)

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        context: dict[str, Any] = {}
        response: web.StreamResponse
        if self._down is not None:
            if self._down == "refuse" and request.transport is not None:
                request.transport.abort()
            response = web.Response(status=503, text="<h1>Service Unavailable</h1>",
                                    content_type="text/html")
        else:
            gate = self._gate
            async with gate if gate is not None else contextlib.nullcontext():
                self._in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
                try:
                    if self.latency_s > 0:
                        await asyncio.sleep(self.latency_s)
                    rule = self._injected(request.method, request.path)
                    if rule is not None:
                        response = self._fault_answer(rule)
                    elif request.path == "/front/ticket.form.php":
                        response = self._ticket_page(request)
                    else:
                        response = await self._answer(request, context)
                finally:
                    self._in_flight -= 1
        self.request_log.append(GLPIRequest(request.method, request.path, response.status,
                                            started, context.get("user"),
                                            request.query_string, context.get("body")))
        return response

    def _ticket_page(self, request: web.Request) -> web.Response:
        """The web UI's page of a ticket (404 for an unknown id)."""
        ticket = self._store["Ticket"].get(_to_int(request.query.get("id"), 0) or 0)
        if ticket is None:
            return web.Response(status=404, text="<html><head><title>GLPI</title></head><body>"
                                "Item not found</body></html>", content_type="text/html")
        title = f"Ticket - {ticket['id']} - {unsanitize(ticket['name'])} - GLPI"
        return web.Response(text=f"<html><head><title>{html.escape(title)}</title></head>"
                                 f"<body></body></html>", content_type="text/html")

    async def _answer(self, request: web.Request, context: dict[str, Any]) -> web.Response:
        raw_out = request.headers.get("X-GLPI-Sanitized-Content", "true").lower() in (
            "false", "0", "no", "off")
        try:
            status, body, headers = await self._route(request, context)
        except _Answer as answer:
            status, body, headers = answer.status, answer.body, answer.headers
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, headers=headers)
        if raw_out:
            body = unsanitize(body)
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return web.Response(status=status, text=text, headers=headers,
                            content_type="application/json", charset="utf-8")

    # -- routing ------------------------------------------------------------------------------

    async def _route(self, request: web.Request, context: dict[str, Any],
                     ) -> tuple[int, Any, dict[str, str]]:
        parts = [p for p in request.match_info.get("tail", "").split("/") if p]
        if not parts:
            return 200, ["GLPI REST API", "see apirest.md"], {}
        if not self.ip_allowed:
            raise self._error(400, "ERROR_NOT_ALLOWED_IP",
                              "There isn't an active API client matching your IP address in the "
                              f"configuration ({request.remote})")
        params = _php_params(request.query.items())
        body = await self._body(request, parts, params)
        context["body"] = body
        self._check_app_token(request, params)
        head = parts[0]
        if head == "initSession":
            return 200, self._init_session(request, params), {}
        user_id = self._check_session(request, params)
        context["user"] = self._login_of(user_id)
        if head == "killSession":
            token = request.headers.get("Session-Token") or str(params.get("session_token", ""))
            self._sessions.pop(token, None)
            return 200, True, {}
        if head == "getFullSession":
            return 200, {"session": {"glpiID": user_id, "glpiname": self._login_of(user_id),
                                     "glpiactive_entity": 0}}, {}
        if head == "listSearchOptions" and len(parts) == 2:
            return 200, self._list_search_options(parts[1]), {}
        if head == "search" and len(parts) == 2:
            return self._search(parts[1], params)
        if head not in self._store or (head in ("Entity",) and request.method != "GET"):
            raise self._error(400, "ERROR_ITEMTYPE_NOT_FOUND_NOR_COMMONDBTM",
                              "resource not found or not an instance of CommonDBTM", doc=True)
        item_id = _to_int(parts[1]) if len(parts) > 1 else None
        if len(parts) > 1 and item_id is None:
            raise self._error(400, "ERROR_ITEM_NOT_FOUND", "Item not found")
        if request.method == "GET":
            if item_id is None:
                return self._get_items(head, params)
            if len(parts) == 3:
                return self._get_sub_items(head, item_id, parts[2], params)
            return self._get_item(request, head, item_id, params)
        if request.method == "POST" and item_id is None:
            return await self._create(request, head, body, user_id)
        if request.method == "PUT":
            return self._update(head, item_id, body, user_id)
        raise self._error(400, "ERROR_METHOD_NOT_ALLOWED", "Method Not Allowed", doc=True)

    async def _body(self, request: web.Request, parts: list[str],
                    params: dict[str, Any]) -> Any:
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            return None  # read by the upload itself
        raw = await request.read()
        if request.method == "GET":
            if raw.strip():
                raise self._error(400, "ERROR_JSON_PAYLOAD_FORBIDDEN",
                                  "GET Request should not have json payload (http body)")
            return None
        if not raw.strip() or "json" not in ctype:
            return None
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict) or not decoded:
            raise self._error(400, "ERROR_JSON_PAYLOAD_INVALID", "JSON payload seems not valid")
        return decoded

    def _check_app_token(self, request: web.Request, params: dict[str, Any]) -> None:
        given = request.headers.get("App-Token") or str(params.get("app_token", "") or "")
        if given == self.app_token:
            return
        if given:
            raise self._error(400, "ERROR_WRONG_APP_TOKEN_PARAMETER",
                              "parameter app_token seems wrong", doc=True)
        raise self._error(400, "ERROR_APP_TOKEN_PARAMETERS_MISSING",
                          "missing parameter app_token", doc=True)

    def _init_session(self, request: web.Request, params: dict[str, Any]) -> JSON:
        auth = request.headers.get("Authorization", "").strip()
        user_id: int | None
        if auth.lower().startswith("user_token ") or (not auth and params.get("user_token")):
            token = auth[len("user_token "):].strip() if auth else str(params["user_token"])
            user_id = self._tokens.get(token)
            if user_id is None:
                raise self._error(401, "ERROR_GLPI_LOGIN_USER_TOKEN",
                                  "parameter user_token seems invalid")
        elif auth.lower().startswith("basic ") or (not auth and params.get("login")):
            if auth:
                try:
                    decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    decoded = ""
                login, _, password = decoded.partition(":")
            else:
                login, password = str(params["login"]), str(params.get("password", ""))
            if not login or self._passwords.get(login) != password:
                raise self._error(401, "ERROR_GLPI_LOGIN", "Incorrect username or password")
            user_id = self.user_id(login)
        else:
            raise self._error(400, "ERROR_LOGIN_PARAMETERS_MISSING",
                              "parameter(s) login, password or user_token are missing", doc=True)
        token = secrets.token_hex(13)
        self._sessions[token] = _Session(user_id, time.monotonic())
        self.login_count += 1
        return {"session_token": token}

    def _check_session(self, request: web.Request, params: dict[str, Any]) -> int:
        token = request.headers.get("Session-Token") or str(params.get("session_token", "") or "")
        if not token:
            raise self._error(400, "ERROR_SESSION_TOKEN_MISSING",
                              "parameter session_token is missing or empty", doc=True)
        session = self._sessions.get(token)
        now = time.monotonic()
        if session is not None and self.session_lifetime_s is not None and (
                now - session.last_used > self.session_lifetime_s):
            del self._sessions[token]
            session = None
        if session is None:
            raise self._error(401, "ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid",
                              doc=True)
        session.last_used = now
        return session.user_id

    # -- reading ------------------------------------------------------------------------------

    def _range(self, params: dict[str, Any], default_limit: int) -> tuple[int, int]:
        value = params.get("range")
        if value is None:
            return 0, default_limit - 1
        match = re.fullmatch(r"(\d+)-(\d+)", str(value))
        if match is None:
            raise self._error(400, "ERROR", "range must be in format : [start-end] with integers",
                              doc=True)
        return int(match.group(1)), int(match.group(2))

    def _page(self, itemtype: str, rows: list[Any], params: dict[str, Any], default_limit: int,
              ) -> tuple[int, list[Any], dict[str, str], str]:
        start, end = self._range(params, default_limit)
        total = len(rows)
        if start > total:
            raise self._error(400, "ERROR_RANGE_EXCEED_TOTAL",
                              f"Provided range exceed total count of data: {total}", doc=True)
        end = min(end, total - 1)
        page = rows[start:end + 1]
        content_range = f"{start}-{end}/{total}"
        headers = {"Accept-Range": f"{itemtype} 1000"}
        if total > 0:
            headers["Content-Range"] = content_range
        status = 200 if len(page) >= total else 206
        return status, page, headers, content_range

    def _view(self, itemtype: str, item: dict[str, Any], params: dict[str, Any]) -> JSON:
        view = dict(item)
        if str(params.get("expand_dropdowns", "false")).lower() in ("true", "1"):
            for key, value in item.items():
                if key.startswith("users_id") and isinstance(value, int):
                    view[key] = self._login_of(value) if value else ""
                elif key == "entities_id" and isinstance(value, int) and value >= 0:
                    view[key] = self._name_of("Entity", value)
                elif key == "requesttypes_id" and isinstance(value, int):
                    view[key] = self._name_of("RequestType", value) or ""
                elif key == "itilcategories_id" and isinstance(value, int):
                    view[key] = self._name_of("ITILCategory", value) or ""
        if str(params.get("get_hateoas", "true")).lower() not in ("false", "0"):
            links = []
            for key, rel in (("entities_id", "Entity"), ("users_id_recipient", "User"),
                             ("users_id", "User"), ("users_id_lastupdater", "User"),
                             ("requesttypes_id", "RequestType"),
                             ("itilcategories_id", "ITILCategory"), ("tickets_id", "Ticket"),
                             ("documents_id", "Document")):
                value = item.get(key)
                if isinstance(value, int) and (value > 0 or (key == "entities_id" and value == 0)):
                    links.append({"rel": rel, "href": f"{self.api_url}/{rel}/{value}"})
            if itemtype == "Ticket":
                for sub in ("ITILFollowup", "ITILSolution", "Ticket_User", "Document_Item"):
                    links.append({"rel": sub,
                                  "href": f"{self.api_url}/Ticket/{item['id']}/{sub}/"})
            view["links"] = links
        return view

    def _get_item(self, request: web.Request, itemtype: str, item_id: int,
                  params: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        item = self._store[itemtype].get(item_id)
        if item is None:
            raise self._error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
        if itemtype == "Document" and "application/octet-stream" in request.headers.get(
                "Accept", ""):
            return 200, self._files.get(item_id, b""), {
                "Content-Type": str(item["mime"]),
                "Content-Disposition": f'attachment; filename="{item["filename"]}"'}
        headers = {}
        if item.get("date_mod"):
            stamp = datetime.strptime(str(item["date_mod"]), _DATE_FORMAT)
            headers["Last-Modified"] = stamp.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return 200, self._view(itemtype, item, params), headers

    def _get_items(self, itemtype: str, params: dict[str, Any],
                   ) -> tuple[int, Any, dict[str, str]]:
        rows = list(self._store[itemtype].values())
        filters = params.get("searchText")
        if isinstance(filters, dict):
            for key, value in filters.items():
                if value in ("", None):
                    continue
                test = _like(str(sanitize(str(value))))
                rows = [r for r in rows if key in r and test(str(r[key] or ""))]
        if "is_deleted" in (rows[0] if rows else {}):
            rows = [r for r in rows if not r.get("is_deleted")]
        status, page, headers, _ = self._page(itemtype, rows, params, 50)
        return status, [self._view(itemtype, r, params) for r in page], headers

    def _get_sub_items(self, itemtype: str, item_id: int, sub: str, params: dict[str, Any],
                       ) -> tuple[int, Any, dict[str, str]]:
        if item_id not in self._store[itemtype]:
            raise self._error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
        if sub not in self._store:
            raise self._error(400, "ERROR_ITEMTYPE_NOT_FOUND_NOR_COMMONDBTM",
                              "resource not found or not an instance of CommonDBTM", doc=True)
        rows: list[dict[str, Any]]
        if sub in ("ITILFollowup", "ITILSolution", "Document_Item"):
            rows = [r for r in self._store[sub].values()
                    if r["itemtype"] == itemtype and r["items_id"] == item_id]
        elif sub == "Ticket_User" and itemtype == "Ticket":
            rows = [r for r in self._store[sub].values() if r["tickets_id"] == item_id]
        elif sub == "UserEmail" and itemtype == "User":
            rows = [r for r in self._store[sub].values() if r["users_id"] == item_id]
        else:
            rows = []
        status, page, headers, _ = self._page(sub, rows, params, 50)
        return status, [self._view(sub, r, params) for r in page], headers

    # -- writing ------------------------------------------------------------------------------

    def _input(self, body: Any) -> dict[str, Any]:
        data = body.get("input") if isinstance(body, dict) else None
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
            data = data[0]
        if not isinstance(data, dict):
            raise self._error(400, "ERROR_BAD_ARRAY",
                              "input parameter must be an array of objects", doc=True)
        return data

    async def _create(self, request: web.Request, itemtype: str, body: Any, user_id: int,
                      ) -> tuple[int, Any, dict[str, str]]:
        if itemtype == "Document":
            return await self._upload(request, body, user_id)
        data = sanitize(self._input(body))
        if itemtype == "Ticket":
            new_id = self._create_ticket(data, user_id)
        elif itemtype == "ITILFollowup":
            new_id = self._create_followup(data, user_id)
        elif itemtype == "ITILSolution":
            ticket_id = _to_int(data.get("items_id"))
            if data.get("itemtype") != "Ticket" or ticket_id not in self._store["Ticket"]:
                raise self._error(400, "ERROR_GLPI_ADD", "")
            assert ticket_id is not None
            new_id = self._add_solution(ticket_id, data, user_id)
        elif itemtype == "Ticket_User":
            ticket_id = _to_int(data.get("tickets_id"))
            uid = _to_int(data.get("users_id"))
            kind = _to_int(data.get("type"), REQUESTER)
            if (ticket_id not in self._store["Ticket"] or uid not in self._store["User"]
                    or kind not in (1, 2, 3)):
                raise self._error(400, "ERROR_GLPI_ADD", "")
            assert ticket_id is not None and uid is not None and kind is not None
            self._link_user(ticket_id, uid, kind)
            ticket = self._store["Ticket"][ticket_id]
            if kind == ASSIGNED and ticket["status"] == 1:
                ticket["status"] = 2  # a new ticket with a technician is being processed
            ticket["date_mod"] = self._now()
            new_id = max(self._store["Ticket_User"])
        else:
            raise self._error(400, "ERROR_GLPI_ADD", _NO_PERMISSION)
        headers = {"Location": f"{self.api_url}/{itemtype}/{new_id}"}
        if itemtype == "Ticket" and self._slow_creates > 0:
            self._slow_creates -= 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.slow_create_delay_s)
        return 201, {"id": new_id, "message": ""}, headers

    def _create_ticket(self, data: dict[str, Any], user_id: int) -> int:
        content = str(data.get("content") or "")
        name = str(data.get("name") or "")
        if not content.strip():
            raise self._error(400, "ERROR_GLPI_ADD",
                              "Mandatory fields are not filled. Please correct: Description")
        if not name.strip():
            name = str(sanitize(_text_of_html(content)[:70]))
        if len(name) > 255:
            raise self._error(400, "ERROR_GLPI_ADD", "Data too long for column 'name'")
        entity = _to_int(data.get("entities_id"), 0)
        if entity not in self._store["Entity"]:
            raise self._error(400, "ERROR_GLPI_ADD", _NO_PERMISSION)
        kind = _to_int(data.get("type"), 1)
        if kind not in (1, 2):
            raise self._error(400, "ERROR_GLPI_ADD", "Invalid ticket type")
        urgency = _to_int(data.get("urgency"), 3) or 3
        impact = _to_int(data.get("impact"), 3) or 3
        now = self._now()
        assignees = [u for u in (_to_int(v) for v in _as_list(data.get("_users_id_assign", [])))
                     if u in self._store["User"]]
        ticket_id = self._add("Ticket", {
            "entities_id": entity, "name": name, "date": now, "closedate": None,
            "solvedate": None, "takeintoaccountdate": None, "date_mod": now,
            "users_id_lastupdater": user_id, "status": 2 if assignees else 1,
            "users_id_recipient": user_id,
            "requesttypes_id": _to_int(data.get("requesttypes_id"), 1),
            "content": content, "urgency": urgency, "impact": impact,
            "priority": max(1, min(5, round((urgency + impact) / 2))),
            "itilcategories_id": _to_int(data.get("itilcategories_id"), 0), "type": kind,
            "global_validation": 1, "slas_id_ttr": 0, "slas_id_tto": 0, "slalevels_id_ttr": 0,
            "time_to_resolve": None, "time_to_own": None, "begin_waiting_date": None,
            "sla_waiting_duration": 0, "ola_waiting_duration": 0, "olas_id_tto": 0,
            "olas_id_ttr": 0, "olalevels_id_ttr": 0, "ola_ttr_begin_date": None,
            "internal_time_to_resolve": None, "internal_time_to_own": None,
            "waiting_duration": 0, "close_delay_stat": 0, "solve_delay_stat": 0,
            "takeintoaccount_delay_stat": 0, "actiontime": 0, "is_deleted": 0,
            "locations_id": _to_int(data.get("locations_id"), 0), "validation_percent": 0,
            "date_creation": now})
        requesters = [u for u in (_to_int(v) for v in _as_list(
            data.get("_users_id_requester", user_id))) if u in self._store["User"]]
        for uid in requesters:
            assert uid is not None
            self._link_user(ticket_id, uid, REQUESTER)
        for uid in assignees:
            assert uid is not None
            self._link_user(ticket_id, uid, ASSIGNED)
        return ticket_id

    def _create_followup(self, data: dict[str, Any], user_id: int) -> int:
        ticket_id = _to_int(data.get("items_id"))
        ticket = self._store["Ticket"].get(ticket_id) if ticket_id is not None else None
        if data.get("itemtype") != "Ticket" or ticket is None or ticket_id is None:
            raise self._error(400, "ERROR_GLPI_ADD", "")
        if ticket["status"] == 6:
            raise self._error(400, "ERROR_GLPI_ADD", _NO_PERMISSION)
        content = str(data.get("content") or "")
        close, reopen = "add_close" in data, "add_reopen" in data
        if reopen and not content.strip():
            raise self._error(400, "ERROR_GLPI_ADD",
                              "If you reject the solution, you must specify a reason")
        if close and not content.strip():
            content = "Solution approved"
        if not content.strip():
            raise self._error(400, "ERROR_GLPI_ADD",
                              "You can't add a followup without description")
        now = self._now()
        fid = self._add("ITILFollowup", {
            "itemtype": "Ticket", "items_id": ticket_id, "date": now, "users_id": user_id,
            "users_id_editor": 0, "content": content,
            "is_private": _to_int(data.get("is_private"), 0),
            "requesttypes_id": _to_int(data.get("requesttypes_id"), 1), "date_mod": now,
            "date_creation": now, "timeline_position": 1, "sourceitems_id": 0,
            "sourceof_items_id": 0})
        ticket["date_mod"] = now
        ticket["users_id_lastupdater"] = user_id
        waiting = [s for s in self.solutions(ticket_id) if s["status"] == SOLUTION_WAITING]
        if close and ticket["status"] == 5:
            # The requester approves the solution: the ticket is closed.
            self.set_ticket_status(ticket_id, 6)
            for solution in waiting:
                solution.update(status=SOLUTION_ACCEPTED, users_id_approval=user_id,
                                date_approval=now)
        elif reopen and ticket["status"] == 5:
            # Refused: back to the technicians (assigned when someone is, else new).
            assigned = any(link["tickets_id"] == ticket_id and link["type"] == ASSIGNED
                           for link in self._store["Ticket_User"].values())
            self.set_ticket_status(ticket_id, 2 if assigned else 1)
            for solution in waiting:
                solution.update(status=SOLUTION_REFUSED, users_id_approval=user_id,
                                date_approval=now)
        return fid

    def _add_solution(self, ticket_id: int, data: dict[str, Any], user_id: int) -> int:
        ticket = self._ticket(ticket_id)
        if ticket["status"] in (5, 6):
            raise self._error(400, "ERROR_GLPI_ADD", _NO_PERMISSION)
        now = self._now()
        accepted = self.autoclose_delay == 0
        solution_id = self._add("ITILSolution", {
            "itemtype": "Ticket", "items_id": ticket_id,
            "solutiontypes_id": _to_int(data.get("solutiontypes_id"), 0),
            "content": str(data.get("content") or ""), "date_creation": now, "date_mod": now,
            "users_id": user_id, "users_id_editor": 0,
            "users_id_approval": user_id if accepted else 0,
            "date_approval": now if accepted else None,
            "status": SOLUTION_ACCEPTED if accepted else SOLUTION_WAITING})
        self.set_ticket_status(ticket_id, 6 if accepted else 5)
        ticket["users_id_lastupdater"] = user_id
        return solution_id

    async def _upload(self, request: web.Request, body: Any, user_id: int,
                      ) -> tuple[int, Any, dict[str, str]]:
        if not request.content_type.startswith("multipart/"):
            raise self._error(400, "ERROR_GLPI_ADD", "")
        form = await request.post()
        files = [(key, value) for key, value in form.items() if isinstance(value, web.FileField)]
        if not files:
            raise self._error(400, "ERROR_UPLOAD_FILE_TOO_BIG_POST_MAX_SIZE",
                              "The file seems too big")
        manifest_raw = form.get("uploadManifest")
        if isinstance(manifest_raw, bytes | bytearray):
            manifest_raw = bytes(manifest_raw).decode("utf-8", "replace")
        try:
            manifest = json.loads(manifest_raw) if isinstance(manifest_raw, str) else None
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict):
            raise self._error(400, "ERROR_JSON_PAYLOAD_INVALID", "JSON payload seems not valid")
        data = sanitize(self._input(manifest))
        key, upload = files[0]
        content = upload.file.read()
        filename = upload.filename or "file"
        itemtype = data.get("itemtype")
        items_id = _to_int(data.get("items_id"))
        if itemtype is not None and (itemtype != "Ticket"
                                     or items_id not in self._store["Ticket"]):
            raise self._error(400, "ERROR_GLPI_ADD", "")
        now = self._now()
        sha1 = hashlib.sha1(content).hexdigest()
        ext = filename.rsplit(".", 1)[-1].upper() if "." in filename else "BIN"
        doc_id = self._add("Document", {
            "entities_id": _to_int(data.get("entities_id"), 0), "is_recursive": 0,
            "name": str(data.get("name") or sanitize(filename)),
            "filename": str(sanitize(filename)),
            "filepath": f"{ext}/{sha1[:2]}/{sha1[2:]}.{ext.lower()}",
            "documentcategories_id": 0, "mime": upload.content_type, "date_mod": now,
            "comment": "", "is_deleted": 0, "link": "", "users_id": user_id,
            "tickets_id": items_id if itemtype == "Ticket" else 0, "sha1sum": sha1,
            "is_blacklisted": 0, "tag": secrets.token_hex(4), "date_creation": now})
        self._files[doc_id] = content
        if itemtype == "Ticket" and items_id is not None:
            self._add("Document_Item", {"documents_id": doc_id, "items_id": items_id,
                                        "itemtype": "Ticket", "entities_id": 0,
                                        "is_recursive": 0, "date_mod": now, "users_id": user_id,
                                        "timeline_position": 1, "date_creation": now})
            self._store["Ticket"][items_id]["date_mod"] = now
        param = key.split("[", 1)[0]
        result = {param: [{"name": filename, "size": len(content), "type": upload.content_type,
                           "url": f"{self.url}/files/_tmp/{filename}",
                           "deleteUrl": f"{self.url}/ajax/fileupload.php?_method=DELETE",
                           "deleteType": "DELETE", "prefix": secrets.token_hex(6)}]}
        return 201, {"id": doc_id, "message": "Document move succeeded.",
                     "upload_result": result}, {"Location": f"{self.api_url}/Document/{doc_id}"}

    def _update(self, itemtype: str, item_id: int | None, body: Any, user_id: int,
                ) -> tuple[int, Any, dict[str, str]]:
        data = sanitize(self._input(body))
        target = item_id if item_id is not None else _to_int(data.get("id"))
        if itemtype != "Ticket":
            raise self._error(400, "ERROR_GLPI_UPDATE", _NO_PERMISSION)
        ticket = self._store["Ticket"].get(target) if target is not None else None
        if ticket is None or target is None:
            raise self._error(400, "ERROR_GLPI_UPDATE", "Item not found")
        status = _to_int(data.get("status"))
        if "status" in data and status not in STATUS_LABELS:
            raise self._error(400, "ERROR_GLPI_UPDATE", "Invalid status")
        for key in ("name", "content", "urgency", "itilcategories_id", "requesttypes_id",
                    "type"):
            if key in data:
                ticket[key] = data[key]
        if "urgency" in data:
            urgency = _to_int(data["urgency"], 3) or 3
            ticket["urgency"] = urgency
            ticket["priority"] = max(1, min(5, round((urgency + ticket["impact"]) / 2)))
        if status is not None:
            self.set_ticket_status(target, status)
        ticket["date_mod"] = self._now()
        ticket["users_id_lastupdater"] = user_id
        return 200, [{str(target): True, "message": ""}], {}


class GLPISimulatorThread(LoopThread[GLPISimulator]):
    """Runs a GLPISimulator on its own event loop in a daemon thread (for sync code)."""

    name = "glpi-simulator"

    def __init__(self, **simulator_kwargs: Any) -> None:
        super().__init__(lambda: GLPISimulator(**simulator_kwargs))


def main(argv: list[str] | None = None) -> int:
    """`python -m plugin.sandbox.glpi`: run the simulator until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m plugin.sandbox.glpi",
                                     description="A GLPI legacy REST API simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8066)
    parser.add_argument("--user-token", default="sandbox-glpi-user-token")
    parser.add_argument("--app-token", default="")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds added before every answer")
    parser.add_argument("--max-concurrency", type=int, default=None,
                        help="requests served at once; the others wait")
    args = parser.parse_args(argv)

    async def serve() -> None:
        sim = GLPISimulator(user_token=args.user_token, app_token=args.app_token,
                            host=args.host, port=args.port, latency_s=args.latency,
                            max_concurrency=args.max_concurrency)
        await sim.start()
        print(f"GLPI simulator listening on {sim.api_url}", flush=True)
        print(f"  API user: helpdesk, user token {args.user_token}")
        print(f"  app token: {args.app_token or '(none)'}")
        for login in ("tech", "alice", "bob", "carol"):
            print(f"  user: {login} ({sim.user_id(login)}) {login}@sandbox.local")
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
