"""GLPI as a ticket tracker, through GLPI's legacy REST API (`<glpi>/apirest.php`, 9.5 and 10).

One API session is opened on first use and shared by every call (a lock makes concurrent callers
wait for a single `initSession`); when GLPI says the session expired, the tracker logs in again and
repeats the request once. `aclose()` ends the session with `killSession`.

Text: GLPI stores ticket and follow-up content as HTML, with `&`, `<` and `>` encoded once more
(`&#60;p&#62;` in GLPI 10, `&lt;p&gt;` in 9.5), and answers it that way. Chat text is sent as
HTML paragraphs with every special character escaped, so markdown, `<tags>` and `&` arrive as the
literal text the user typed; reading reverses both steps.

Each ticket carries its chat reference as the last line of its description
(`Chat reference: <ref>`), which `find_by_ref` searches for (search option 21, the description)
and then checks exactly.

Dates: GLPI answers dates in its server's time zone without saying which; they are read as UTC.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from .glpi_text import (
    DATE_FORMAT,
    criteria,
    first_of,
    fit_title,
    html_to_text,
    parse_date,
    plain,
    text_to_html,
    ticket_number,
)
from .limiter import Limiter
from .responses import ResponseLike
from .tickets import (
    Attachment,
    Comment,
    NewTicket,
    Person,
    Solution,
    Status,
    Ticket,
    TicketNotFound,
    TLSOptions,
    TrackerError,
    TrackerRejected,
    TrackerUnavailable,
    clean_text,
    short_error,
    signed,
)
from .transport import send_plain

__all__ = ["REF_LABEL", "STATUS_MAP", "GLPITracker"]

log = logging.getLogger(__name__)

#: GLPI's ticket statuses: the common status and GLPI's English label.
STATUS_MAP: dict[int, tuple[Status, str]] = {
    1: (Status.NEW, "New"),
    2: (Status.IN_PROGRESS, "Processing (assigned)"),
    3: (Status.IN_PROGRESS, "Processing (planned)"),
    4: (Status.PENDING, "Pending"),
    5: (Status.SOLVED, "Solved"),
    6: (Status.CLOSED, "Closed"),
}

#: The last line of every description this tracker writes, before the chat reference.
REF_LABEL = "Chat reference:"

# Search options of the Ticket itemtype (stable across GLPI 9.x and 10).
_OPT_NAME, _OPT_ID, _OPT_REQUESTER, _OPT_TECHNICIAN = 1, 2, 4, 5
_OPT_STATUS, _OPT_DATE, _OPT_DATE_MOD, _OPT_CONTENT = 12, 15, 19, 21
#: A solved ticket's status, and a solution waiting for the requester's approval.
_SOLVED, _SOLUTION_WAITING = 5, 2
_CLOSED = 6
#: `Ticket_User.type` of an assigned technician.
_ASSIGNED = 2
# ... and of the User itemtype.
_OPT_USER_LOGIN, _OPT_USER_EMAIL = 1, 5

_DEFAULT_TLS = TLSOptions()
_DOC_SUFFIX = re.compile(r";\s*view documentation in your browser at .*$", re.S)
_SAFE_REF = re.compile(r"[A-Za-z0-9_.:/-]+")


class GLPITracker:
    """The `Tracker` for GLPI. Create once, share, and `await aclose()` at shutdown.

    `url` is the API base (`https://glpi.example.org/apirest.php`); `web_url` (default: `url`
    without `/apirest.php`) is where people open tickets. `ticket_type` is 1 (incident) or 2
    (request); `requesttypes_id`, `itilcategories_id` and `entities_id` go on every ticket unless
    a ticket's `fields` say otherwise. The requests on the wire at once are bounded by
    `limiter`: as many as GLPI serves without making them wait, never more than `max_in_flight`
    (`bridge.limiter`).
    """

    title_limit = 255

    def __init__(self, *, url: str, user_token: str, app_token: str = "", web_url: str = "",
                 ticket_type: int = 1, requesttypes_id: int | None = None,
                 itilcategories_id: int | None = None, entities_id: int | None = None,
                 tls: TLSOptions = _DEFAULT_TLS, timeout: float = 15.0, max_in_flight: int = 32,
                 transport: httpx.AsyncBaseTransport | None = None, name: str = "glpi") -> None:
        self.name = name
        self._api = url.rstrip("/")
        base = self._api[:-len("/apirest.php")] if self._api.endswith("/apirest.php") else self._api
        self._web = (web_url or base).rstrip("/")
        self._api_path = urlsplit(self._api).path
        self._user_token = user_token
        self._app_token = app_token
        self._ticket_type = ticket_type
        self._defaults: dict[str, Any] = {
            key: value for key, value in (("requesttypes_id", requesttypes_id),
                                          ("itilcategories_id", itilcategories_id),
                                          ("entities_id", entities_id)) if value is not None}
        self._timeout = timeout
        self.limiter = Limiter(max_in_flight)
        self._client = httpx.AsyncClient(
            base_url=self._api + "/", timeout=timeout, verify=tls.httpx_verify(),
            transport=transport, follow_redirects=False,
            limits=self.limiter.pool_limits())
        self._login_lock = asyncio.Lock()
        self._session: str | None = None
        self._closed = False
        self._people: dict[tuple[str, str], tuple[int, str]] = {}
        self._lookups: dict[tuple[str, str], asyncio.Future[tuple[int, str] | None]] = {}
        self._logins: dict[int, str] = {}

    # -- the Tracker protocol -------------------------------------------------------------------

    async def create(self, ticket: NewTicket) -> Ticket:
        title = re.sub(r"\s+", " ", clean_text(ticket.title)).strip()
        if not title:
            first = next((line.strip() for line in clean_text(ticket.content).splitlines()
                          if line.strip()), "")
            title = re.sub(r"\s+", " ", first) or "(no title)"
        title = fit_title(title, self.title_limit)
        content = text_to_html(ticket.content) + text_to_html(f"{REF_LABEL} {ticket.ref}")
        data: dict[str, Any] = {"name": title, "content": content,
                                "urgency": min(5, max(1, int(ticket.urgency))),
                                "type": self._ticket_type, **self._defaults, **ticket.fields}
        requester = await self._requester(ticket.requester)
        if requester is not None and "_users_id_requester" not in data:
            data["_users_id_requester"] = requester[0]
        response = await self._call("POST", "/Ticket", json_body={"input": data})
        new_id = self._new_id(response)
        if new_id is None:
            raise TrackerRejected(f"GLPI: ticket not created ({short_error(response)})")
        log.info("GLPI ticket %s created", new_id)
        return Ticket(id=str(new_id), title=title, status=Status.NEW, url=self._url(new_id),
                      status_label=STATUS_MAP[1][1],
                      requester=requester[1] if requester else "")

    async def find_by_ref(self, ref: str, since: datetime) -> Ticket | None:
        marker = f"{REF_LABEL} {clean_text(ref).strip()}"
        pieces = _SAFE_REF.findall(ref)
        if not pieces:
            return None
        needle = max(pieces, key=len)
        moment = since if since.tzinfo is None else since.astimezone(UTC).replace(tzinfo=None)
        floor = (moment - timedelta(days=1)).strftime(DATE_FORMAT)
        params = criteria((_OPT_CONTENT, "contains", needle), (_OPT_DATE, "morethan", floor),
                           forcedisplay=(_OPT_ID,), sort=_OPT_ID, order="ASC", range="0-49")
        rows = await self._search("Ticket", params)
        for row in rows:
            number = int(row.get(str(_OPT_ID), 0) or 0)
            if number <= 0:
                continue
            try:
                item = await self._item(number)
            except TicketNotFound:
                continue
            lines = [line.strip() for line in html_to_text(str(item.get("content") or ""))
                     .splitlines()]
            if marker in lines:
                return await self._ticket(number, item)
        return None

    async def get(self, ticket_id: str) -> Ticket:
        number = ticket_number(ticket_id)
        return await self._ticket(number, await self._item(number))

    async def comment(self, ticket_id: str, text: str, author: Person | None = None, *,
                      private: bool = False) -> str:
        number = ticket_number(ticket_id)
        body = signed(clean_text(text), author)
        data: dict[str, Any] = {"itemtype": "Ticket", "items_id": number,
                                "content": text_to_html(body), "is_private": int(private)}
        if "requesttypes_id" in self._defaults:
            data["requesttypes_id"] = self._defaults["requesttypes_id"]
        try:
            response = await self._call("POST", "/ITILFollowup", json_body={"input": data})
        except TrackerRejected:
            await self._item(number)  # TicketNotFound when that is the reason
            raise
        new_id = self._new_id(response)
        if new_id is None:
            raise TrackerRejected(f"GLPI: follow-up not added ({short_error(response)})")
        return str(new_id)

    async def attach(self, ticket_id: str, attachment: Attachment) -> None:
        number = ticket_number(ticket_id)
        await self._item(number)  # GLPI would store an unlinked document for a missing ticket
        filename = re.sub(r"[\\/]+", "_", clean_text(attachment.filename)).strip() or "attachment"
        manifest = {"input": {"name": filename, "_filename": [filename],
                              "itemtype": "Ticket", "items_id": number}}
        response = await self._call(
            "POST", "/Document", data={"uploadManifest": json.dumps(manifest)},
            files={"filename[0]": (filename, attachment.content, attachment.content_type)})
        if self._new_id(response) is None:
            raise TrackerRejected(f"GLPI: document not stored ({short_error(response)})")

    async def comments(self, ticket_id: str) -> list[Comment]:
        number = ticket_number(ticket_id)
        response = await self._call("GET", f"/Ticket/{number}/ITILFollowup",
                                    params=[("range", "0-999")])
        rows = self._json(response)
        if not isinstance(rows, list):
            return []
        public = [r for r in rows if isinstance(r, dict) and str(r.get("is_private", 0)) == "0"]
        public.sort(key=lambda r: (str(r.get("date") or ""), int(r.get("id") or 0)))
        out = []
        for row in public:
            author = await self._login(int(row.get("users_id") or 0))
            out.append(Comment(id=str(row.get("id")), author=author,
                               text=html_to_text(str(row.get("content") or "")),
                               created_at=parse_date(row.get("date"))))
        return out

    async def solution(self, ticket_id: str) -> Solution | None:
        number = ticket_number(ticket_id)
        response = await self._call("GET", f"/Ticket/{number}/ITILSolution",
                                    params=[("range", "0-99")])
        rows = [r for r in self._json(response) or [] if isinstance(r, dict)]
        if not rows:
            return None
        row = max(rows, key=lambda r: int(r.get("id") or 0))
        return Solution(id=str(row.get("id")), author=await self._login(
                            int(row.get("users_id") or 0)),
                        text=html_to_text(str(row.get("content") or "")),
                        awaiting_approval=str(row.get("status")) == str(_SOLUTION_WAITING),
                        created_at=parse_date(row.get("date_creation")))

    async def answer_solution(self, ticket_id: str, accepted: bool, text: str,
                              author: Person | None = None) -> None:
        number = ticket_number(ticket_id)
        item = await self._item(number)
        if int(item.get("status") or 0) != _SOLVED:
            # GLPI would add a plain follow-up to a ticket no longer solved.
            raise TrackerRejected(f"GLPI: ticket {number} no longer waits for its solution to "
                                  "be approved")
        body = signed(clean_text(text), author)
        if not accepted and not body.strip():
            raise TrackerRejected("GLPI: a refused solution needs a reason")
        data: dict[str, Any] = {"itemtype": "Ticket", "items_id": number,
                                "content": text_to_html(body),
                                "add_close" if accepted else "add_reopen": 1}
        response = await self._call("POST", "/ITILFollowup", json_body={"input": data})
        if self._new_id(response) is None:
            raise TrackerRejected(f"GLPI: answer not recorded ({short_error(response)})")

    async def assign(self, ticket_id: str, technician: Person) -> str:
        number = ticket_number(ticket_id)
        user = await self._find_user(technician)
        if user is None:
            raise TrackerRejected(f"GLPI has no user for @{technician.username}")
        await self._item(number)  # TicketNotFound when that is the trouble
        response = await self._call("POST", "/Ticket_User", json_body={"input": {
            "tickets_id": number, "users_id": user[0], "type": _ASSIGNED}})
        if self._new_id(response) is None:
            raise TrackerRejected(f"GLPI: not assigned ({short_error(response)})")
        return user[1]

    async def solve(self, ticket_id: str, text: str, author: Person | None = None) -> None:
        number = ticket_number(ticket_id)
        item = await self._item(number)
        if int(item.get("status") or 0) in (_SOLVED, _CLOSED):
            raise TrackerRejected(f"GLPI: ticket {number} is already solved")
        response = await self._call("POST", "/ITILSolution", json_body={"input": {
            "itemtype": "Ticket", "items_id": number,
            "content": text_to_html(signed(clean_text(text), author))}})
        if self._new_id(response) is None:
            raise TrackerRejected(f"GLPI: solution not added ({short_error(response)})")

    async def close(self, ticket_id: str, text: str, author: Person | None = None) -> None:
        number = ticket_number(ticket_id)
        item = await self._item(number)
        if int(item.get("status") or 0) == _CLOSED:
            raise TrackerRejected(f"GLPI: ticket {number} is already closed")
        # The follow-up first: GLPI takes none on a closed ticket.
        await self.comment(str(number), text, author)
        await self._call("PUT", f"/Ticket/{number}", json_body={"input": {
            "id": number, "status": _CLOSED}})

    async def set_urgency(self, ticket_id: str, urgency: int) -> None:
        number = ticket_number(ticket_id)
        await self._item(number)
        await self._call("PUT", f"/Ticket/{number}", json_body={"input": {
            "id": number, "urgency": min(5, max(1, int(urgency)))}})

    async def open_tickets(self, requester: Person) -> list[Ticket]:
        user = await self._find_user(requester)
        if user is None:
            return []
        params = criteria(
            (_OPT_REQUESTER, "equals", user[0]), (_OPT_STATUS, "equals", "notold"),
            forcedisplay=(_OPT_ID, _OPT_NAME, _OPT_STATUS, _OPT_DATE_MOD, _OPT_TECHNICIAN),
            sort=_OPT_DATE_MOD, order="DESC", range="0-99")
        tickets = []
        for row in await self._search("Ticket", params):
            number = int(row.get(str(_OPT_ID), 0) or 0)
            code = int(row.get(str(_OPT_STATUS), 0) or 0)
            status, label = STATUS_MAP.get(code, (Status.IN_PROGRESS, f"status {code}"))
            if number <= 0 or not status.is_open:
                continue
            tickets.append(Ticket(id=str(number), title=plain(row.get(str(_OPT_NAME))),
                                  status=status, url=self._url(number), status_label=label,
                                  assignee=first_of(row.get(str(_OPT_TECHNICIAN))),
                                  requester=user[1],
                                  updated_at=parse_date(row.get(str(_OPT_DATE_MOD)))))
        return tickets

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        token, self._session = self._session, None
        try:
            if token is not None:
                await self._send("GET", "/killSession", headers=self._headers(token))
        except TrackerError as exc:
            log.info("GLPI session not closed: %s", exc)
        finally:
            await self._client.aclose()

    # -- the operator's probe ---------------------------------------------------------------

    async def check(self) -> list[tuple[str, str]]:
        """For `switchboard doctor`: open an API session, read who it is, look up the configured
        request source, category and entity, and close the session.

        Returns `(level, text)` pairs, level "ok" or "warn". Raises `TrackerError` when the
        tracker cannot be used; its message says what is wrong and, after " — fix: ", what to
        do, naming this tracker's settings in backquotes (`user_token`, `app_token`, `url`,
        `requesttypes_id`, ...). Connection failures are raised as they are."""
        headers = {**self._headers(), "Authorization": f"user_token {self._user_token}",
                   "Content-Type": "application/json"}
        response = await self._send("GET", "/initSession", headers=headers)
        body = self._json(response)
        token = body.get("session_token") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            raise self._session_refused(response)
        try:
            found = [("ok", await self._session_user(token))]
            for key, itemtype, what in (("requesttypes_id", "RequestType", "request source"),
                                        ("itilcategories_id", "ITILCategory", "category"),
                                        ("entities_id", "Entity", "entity")):
                if key in self._defaults:
                    found.append(("ok", await self._probe_item(token, key, itemtype, what)))
            return found
        finally:
            try:
                await self._send("GET", "/killSession", headers=self._headers(token))
            except TrackerError as exc:
                log.info("GLPI probe session not closed: %s", exc)

    def _session_refused(self, response: ResponseLike) -> TrackerError:
        """Why `initSession` gave no session, with the fix in GLPI's own menu names."""
        code = self._error_code(response)
        body = self._json(response)
        detail = body[1] if isinstance(body, list) and len(body) > 1 else ""
        where = short_error(response)
        api = "Setup > General > API"
        fixes = {
            "ERROR_GLPI_LOGIN_USER_TOKEN": (
                "GLPI refused the user token",
                "set `user_token` to the API token of the GLPI user that files tickets (that "
                "user's Preferences > Remote access keys > API token), and turn on \"Enable "
                f"login with external token\" in {api}"),
            "ERROR_LOGIN_PARAMETERS_MISSING": (
                "GLPI got no user token", "set `user_token`"),
            "ERROR_WRONG_APP_TOKEN_PARAMETER": (
                "GLPI refused the app token",
                f"set `app_token` to the App-Token of the API client ({api} > the client), or "
                "leave it empty when the client has none"),
            "ERROR_APP_TOKEN_PARAMETERS_MISSING": (
                "GLPI wants an app token",
                f"set `app_token` to the App-Token of the API client ({api} > the client)"),
            "ERROR_NOT_ALLOWED_IP": (
                "no active GLPI API client admits this host's address",
                f"in {api}, add an API client (or widen one's IPv4 range) for this host"),
        }
        if code in fixes:
            problem, fix = fixes[code]
            return TrackerRejected(f"{problem} ({code}, {where}) — fix: {fix}")
        if code == "ERROR" and isinstance(detail, str) and "disabled" in detail.lower():
            return TrackerRejected(f"GLPI's REST API is disabled ({where}) — fix: turn on "
                                   f"\"Enable Rest API\" in {api}")
        if response.status_code >= 500 or response.status_code in (408, 429):
            return TrackerUnavailable(f"GLPI failed to open a session ({where}) — fix: GLPI's "
                                      "own logs (files/_log/php-errors.log) say why")
        if code:
            text = _DOC_SUFFIX.sub("", detail).strip() if isinstance(detail, str) else ""
            return TrackerRejected(self._redact(
                f"GLPI refused the session: {code}" + (f" — {text}" if text else "")
                + f" ({where}) — fix: check `user_token` and `app_token`"))
        return TrackerRejected(f"no GLPI API answers at `url` ({where}) — fix: `url` is the "
                               "legacy API's address, ending in /apirest.php")

    async def _session_user(self, token: str) -> str:
        response = self._check(await self._send("GET", "/getFullSession",
                                                headers=self._headers(token)))
        body = self._json(response)
        session = body.get("session") if isinstance(body, dict) else None
        login = plain(session.get("glpiname")) if isinstance(session, dict) else ""
        return f"API session opened as {login or 'an unnamed user'}, and closed"

    async def _probe_item(self, token: str, key: str, itemtype: str, what: str) -> str:
        number = self._defaults[key]
        try:
            response = self._check(await self._send("GET", f"/{itemtype}/{number}",
                                                    headers=self._headers(token)))
        except TicketNotFound:
            raise TrackerRejected(
                f"GLPI has no {what} {number} that this user may see — fix: set `{key}` to "
                f"the id GLPI shows for the {what} (Setup > Dropdowns), or leave it empty"
            ) from None
        item = self._json(response)
        name = plain(item.get("completename") or item.get("name")) \
            if isinstance(item, dict) else ""
        return f"{what} {number}" + (f" ({name})" if name else "") + " exists"

    # -- tickets ------------------------------------------------------------------------------

    def _url(self, number: int) -> str:
        return f"{self._web}/front/ticket.form.php?id={number}"

    async def _item(self, number: int) -> dict[str, Any]:
        response = await self._call("GET", f"/Ticket/{number}")
        item = self._json(response)
        if not isinstance(item, dict):
            raise TrackerUnavailable(f"GLPI: unexpected answer ({short_error(response)})")
        return item

    async def _ticket(self, number: int, item: dict[str, Any]) -> Ticket:
        response = await self._call("GET", f"/Ticket/{number}/Ticket_User",
                                    params=[("range", "0-199")])
        links = self._json(response)
        links = links if isinstance(links, list) else []
        requester = assignee = ""
        for kind in (1, 2):
            uid = next((int(link.get("users_id") or 0) for link in links
                        if isinstance(link, dict) and str(link.get("type")) == str(kind)), 0)
            if uid:
                login = await self._login(uid)
                if kind == 1:
                    requester = login
                else:
                    assignee = login
        code = int(item.get("status") or 0)
        status, label = STATUS_MAP.get(code, (Status.IN_PROGRESS, f"status {code}"))
        return Ticket(id=str(number), title=plain(item.get("name")), status=status,
                      url=self._url(number), status_label=label, assignee=assignee,
                      requester=requester, updated_at=parse_date(item.get("date_mod")))

    async def _search(self, itemtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        response = await self._call("GET", f"/search/{itemtype}", params=params)
        body = self._json(response)
        rows = body.get("data") if isinstance(body, dict) else None
        if isinstance(rows, dict):  # `withindexes` shape
            rows = list(rows.values())
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    # -- people -------------------------------------------------------------------------------

    async def _requester(self, person: Person) -> tuple[int, str] | None:
        try:
            return await self._find_user(person)
        except TrackerRejected as exc:  # e.g. the API user may not read users
            log.warning("GLPI requester lookup refused, ticket made without one: %s", exc)
            return None

    async def _find_user(self, person: Person) -> tuple[int, str] | None:
        """The GLPI user (id, login) for a chat person: by email first, then by login.

        Found users are remembered; concurrent lookups of one person share one search."""
        key = (person.email.strip().lower(), person.username.strip().lower())
        if key in self._people:
            return self._people[key]
        pending = self._lookups.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._look_up(person, key))
            self._lookups[key] = pending

            def settled(task: asyncio.Future[tuple[int, str] | None]) -> None:
                self._lookups.pop(key, None)
                if not task.cancelled():
                    task.exception()  # retrieved here too, in case every waiter went away

            pending.add_done_callback(settled)
        return await asyncio.shield(pending)

    async def _look_up(self, person: Person, key: tuple[str, str]) -> tuple[int, str] | None:
        found: tuple[int, str] | None = None
        if key[0]:
            params = criteria((_OPT_USER_EMAIL, "contains", f"^{key[0]}$"),
                               forcedisplay=(_OPT_ID, _OPT_USER_LOGIN, _OPT_USER_EMAIL),
                               range="0-19")
            for row in await self._search("User", params):
                emails = row.get(str(_OPT_USER_EMAIL))
                emails = emails if isinstance(emails, list) else [emails]
                if any(plain(e).strip().lower() == key[0] for e in emails if e):
                    found = (int(row.get(str(_OPT_ID)) or 0), plain(row.get(str(_OPT_USER_LOGIN))))
                    break
        if found is None and key[1]:
            response = await self._call("GET", "/User", params=[
                ("searchText[name]", f"^{person.username.strip()}$"), ("range", "0-19"),
                ("get_hateoas", "false")])
            users = self._json(response)
            for user in users if isinstance(users, list) else []:
                if isinstance(user, dict) and plain(user.get("name")).lower() == key[1]:
                    found = (int(user.get("id") or 0), plain(user.get("name")))
                    break
        if found is not None and found[0] > 0:
            self._people[key] = found
            self._logins[found[0]] = found[1]
            return found
        return None

    async def _login(self, user_id: int) -> str:
        if user_id <= 0:
            return ""
        if user_id not in self._logins:
            try:
                response = await self._call("GET", f"/User/{user_id}",
                                            params=[("get_hateoas", "false")])
            except TicketNotFound:
                return f"user {user_id}"
            user = self._json(response)
            self._logins[user_id] = plain(user.get("name")) if isinstance(user, dict) else ""
        return self._logins[user_id]

    # -- the session and the wire ---------------------------------------------------------------

    def _headers(self, session: str | None = None) -> dict[str, str]:
        headers = {"App-Token": self._app_token} if self._app_token else {}
        if session is not None:
            headers["Session-Token"] = session
        return headers

    async def _token(self) -> str:
        token = self._session
        if token is not None:
            return token
        async with self._login_lock:
            if self._session is None:
                self._session = await self._open_session()
            return self._session

    async def _open_session(self) -> str:
        headers = {**self._headers(), "Authorization": f"user_token {self._user_token}",
                   "Content-Type": "application/json"}
        response = self._check(await self._send("GET", "/initSession", headers=headers))
        body = self._json(response)
        token = body.get("session_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TrackerUnavailable(f"GLPI: no session token in the answer "
                                     f"({short_error(response)})")
        log.debug("GLPI session opened")
        return token

    async def _forget_session(self, stale: str) -> None:
        async with self._login_lock:
            if self._session == stale:
                self._session = None

    async def _call(self, method: str, path: str, *, params: list[tuple[str, str]] | None = None,
                    json_body: Any = None, data: dict[str, str] | None = None,
                    files: dict[str, tuple[str, bytes, str]] | None = None) -> ResponseLike:
        """One API request with the session; on an expired session, log in again and retry."""
        for attempt in (1, 2):
            token = await self._token()
            headers = self._headers(token)
            if files is None and json_body is None:
                headers["Content-Type"] = "application/json"
            response = await self._send(method, path, headers=headers, params=params,
                                        json_body=json_body, data=data, files=files)
            if (response.status_code == 401 and attempt == 1
                    and self._error_code(response) == "ERROR_SESSION_TOKEN_INVALID"):
                log.info("GLPI session expired; logging in again")
                await self._forget_session(token)
                continue
            return self._check(response)
        raise AssertionError("unreachable")

    async def _send(self, method: str, path: str, *, headers: dict[str, str],
                    params: list[tuple[str, str]] | None = None, json_body: Any = None,
                    data: dict[str, str] | None = None,
                    files: dict[str, tuple[str, bytes, str]] | None = None) -> ResponseLike:
        where = f"{method} {self._api_path}{path}"
        if self._closed and path != "/killSession":
            raise TrackerUnavailable(f"GLPI: the tracker is closed ({where})")
        try:
            query = httpx.QueryParams(tuple(params)) if params else None
            if data is None and files is None:
                return await self.limiter.call(send_plain, self._client, method, self._api + path,
                                               headers=headers, params=query, json=json_body)
            return await self.limiter.call(self._client.request, method, path.lstrip("/"),
                                           params=query, json=json_body, data=data,
                                           files=files, headers=headers)
        except httpx.TimeoutException as exc:
            raise TrackerUnavailable(
                f"GLPI did not answer within {self._timeout:g} s ({where})") from exc
        except httpx.HTTPError as exc:
            raise TrackerUnavailable(
                f"GLPI unreachable ({type(exc).__name__}) on {where}") from exc

    @staticmethod
    def _json(response: ResponseLike) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def _new_id(self, response: ResponseLike) -> int | None:
        """The id in an add answer (`{"id": N, "message": ...}`), when there is a real one."""
        body = self._json(response)
        new_id = body.get("id") if isinstance(body, dict) else None
        if isinstance(new_id, bool) or not isinstance(new_id, int) or new_id <= 0:
            return None
        return new_id

    def _error_code(self, response: ResponseLike) -> str:
        body = self._json(response)
        if isinstance(body, list) and body and isinstance(body[0], str):
            return body[0]
        return ""

    def _redact(self, text: str) -> str:
        for secret in (self._user_token, self._app_token, self._session):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _check(self, response: ResponseLike) -> ResponseLike:
        """Return a successful answer; raise the matching TrackerError for any other."""
        status = response.status_code
        if 200 <= status < 300 and status != 207:
            return response
        body = self._json(response)
        where = short_error(response)
        if isinstance(body, list) and body and isinstance(body[0], str) and \
                body[0].startswith("ERROR"):
            code = body[0]
            detail = body[1] if len(body) > 1 else ""
            detail = _DOC_SUFFIX.sub("", detail).strip() if isinstance(detail, str) else ""
            message = f"GLPI: {code}" + (f" — {detail}" if detail else "") + f" ({where})"
        else:
            code = ""
            message = f"GLPI: {where}"
        message = self._redact(message)
        if status >= 500 or status in (408, 429) or code == "ERROR_SESSION_TOKEN_INVALID":
            raise TrackerUnavailable(message)
        if status == 404:
            raise TicketNotFound(message)
        raise TrackerRejected(message)
