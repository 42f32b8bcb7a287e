"""Redmine as a ticket tracker, over its REST API (JSON, `X-Redmine-API-Key`).

Tickets are issues of one project. The description ends with two lines this module writes and
reads back:

    Requester: Alice Liddell (@alice, alice@example.org)
    Chat ref: <ref>

The ref line lets `find_by_ref` find an issue whose creation timed out after Redmine made it; the
requester line lets `open_tickets` find a person's issues when they were filed by the bot's own
account. With `switch_user`, the key must be an administrator's: issues and notes are then
authored (`X-Redmine-Switch-User`) by the Redmine user whose login is the chat username or whose
email is the chat email, and by the key's own account when there is no such user or when that
user may not work in the project.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from bridge.limiter import Limiter
from bridge.redmine_text import (
    CLOSED_NAMES,
    description_for,
    has_ref,
    map_status,
    named_requester,
    same_text,
    search_token,
    subject_for,
)
from bridge.tickets import (
    Attachment,
    Comment,
    NewTicket,
    Person,
    Solution,
    Status,
    Ticket,
    TicketNotFound,
    TLSOptions,
    TrackerRejected,
    TrackerUnavailable,
    clean_text,
    parse_time,
    short_error,
    signed,
)

#: `fields` keys passed on to Redmine's issue as they are; any other key is ignored.
ISSUE_FIELDS = frozenset({
    "project_id", "tracker_id", "priority_id", "custom_fields", "category_id",
    "assigned_to_id", "fixed_version_id", "is_private", "parent_issue_id", "watcher_user_ids",
    "start_date", "due_date", "estimated_hours",
})
_DEFAULT_TLS = TLSOptions()
#: Answers to a request made as another user that say this user may not make it.
_SWITCH_REFUSALS = frozenset({403, 404, 412, 422})
#: How long "no such Redmine user" or "this user may not act here" is trusted (seconds).
NEGATIVE_USER_TTL = 300.0
#: Pages of 100 issues read at most by one search.
MAX_PAGES = 20
#: `find_by_ref` looks this much before `since`, for clocks that disagree.
CLOCK_SLACK = timedelta(minutes=5)


class _Forbidden(TrackerRejected):
    """403: the key's account may not do this."""


@dataclass(frozen=True)
class _User:
    id: int
    login: str


class RedmineTracker:
    """The `Tracker` protocol on Redmine's REST API."""

    title_limit = 255

    def __init__(self, *, url: str, api_key: str, project: str, tracker_id: int | None = None,
                 priority_ids: dict[int, int] | None = None, switch_user: bool = False,
                 web_url: str = "", tls: TLSOptions = _DEFAULT_TLS, timeout: float = 15.0,
                 max_in_flight: int = 32, transport: httpx.AsyncBaseTransport | None = None,
                 name: str = "redmine") -> None:
        self.name = name
        self.project = project
        self.tracker_id = tracker_id
        self.priority_ids = dict(priority_ids or {})
        self.switch_user = switch_user
        self.web_url = (web_url or url).rstrip("/")
        #: Redmine's issue statuses (read once: `_solving_status`, `_closing_status`).
        self._status_list: list[dict[str, Any]] | None = None
        #: Bounds the requests on the wire at once: as many as Redmine serves without making
        #: them wait, never more than `max_in_flight` (`bridge.limiter`).
        self.limiter = Limiter(max_in_flight)
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers={"X-Redmine-API-Key": api_key, "Accept": "application/json",
                     "User-Agent": "switchboard"},
            timeout=httpx.Timeout(timeout),
            limits=self.limiter.pool_limits(),
            verify=tls.httpx_verify(), transport=transport, follow_redirects=False)
        self._users: dict[str, tuple[_User | None, float]] = {}
        self._logins: dict[int, str] = {}
        self._can_list_users = True
        self._cannot_act: dict[str, float] = {}

    async def __aenter__(self) -> RedmineTracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ HTTP

    async def _send(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                    json: Any = None, content: bytes | None = None,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            return await self.limiter.call(self._client.request, method, path, params=params,
                                           json=json, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise TrackerUnavailable(f"Redmine timed out on {method} {path}") from exc
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise TrackerUnavailable(f"Redmine unreachable on {method} {path}: {reason}") from exc

    @staticmethod
    def _check(response: httpx.Response, *, ticket: bool = False) -> None:
        code = response.status_code
        if code < 300:
            return
        if code == 401:
            raise TrackerRejected("Redmine rejected the API key")
        if code == 403:
            raise _Forbidden(short_error(response, "the Redmine account may not do this"))
        if code == 404:
            if ticket:
                raise TicketNotFound(short_error(response, "no such issue"))
            raise TrackerRejected(short_error(response, "not found: check the URL and project"))
        if code == 412:
            raise TrackerRejected(short_error(response, "no such Redmine user to act as"))
        if code == 422:
            raise TrackerRejected(short_error(response, _errors(response) or "invalid"))
        if code >= 500 or code in (408, 429):
            raise TrackerUnavailable(short_error(response))
        raise TrackerRejected(short_error(response))

    async def _call(self, method: str, path: str, *, ticket: bool = False,
                    switch: str | None = None, headers: dict[str, str] | None = None,
                    **kwargs: Any) -> httpx.Response:
        """One request, acting as the user `switch` when given. When that user may not do it
        (unknown or locked: 412; not a member of the project: 403, 404 or 422), the request is
        made again as the key's own account, and the user is not switched to for a while."""
        if switch:
            response = await self._send(
                method, path, headers={**(headers or {}), "X-Redmine-Switch-User": switch},
                **kwargs)
            if response.status_code not in _SWITCH_REFUSALS:
                self._check(response, ticket=ticket)
                return response
            fallback = await self._send(method, path, headers=headers, **kwargs)
            self._check(fallback, ticket=ticket)
            # Only now is it clear the refusal was about the user, not the request.
            if response.status_code == 412:
                self._forget_login(switch)
            else:
                self._cannot_act[switch] = time.monotonic() + NEGATIVE_USER_TTL
            return fallback
        response = await self._send(method, path, headers=headers, **kwargs)
        self._check(response, ticket=ticket)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._call(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise TrackerUnavailable(short_error(response, "the answer is not a JSON object"))
        return data

    async def _issues(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """All issues matching `params`, newest first, read page by page."""
        found: list[dict[str, Any]] = []
        offset = 0
        for _ in range(MAX_PAGES):
            page = await self._json("GET", "/issues.json", params={
                "project_id": self.project, "sort": "id:desc", "limit": 100, "offset": offset,
                **params})
            issues = [i for i in page.get("issues") or [] if isinstance(i, dict)]
            found.extend(issues)
            offset += len(issues)
            total = page.get("total_count")
            if not issues or not isinstance(total, int) or offset >= total:
                break
        return found

    # ------------------------------------------------------------------ the operator's probe

    async def check(self) -> list[tuple[str, str]]:
        """For `switchboard doctor`: the REST API answers, the key is valid
        (`/users/current.json`), and the project exists and its user may see it.

        Returns `(level, text)` pairs, level "ok" or "warn". Raises `TrackerError` when the
        tracker cannot be used; its message says what is wrong and, after " — fix: ", what to
        do, naming this tracker's settings in backquotes (`api_key`, `url`, `project`, ...).
        Connection failures are raised as they are."""
        response = await self._send("GET", "/users/current.json")
        code = response.status_code
        if code == 401:
            raise TrackerRejected(
                f"Redmine rejected the API key ({short_error(response)}) — fix: set `api_key` "
                "to the key shown under My account > API access key of the Redmine user the "
                "bot files tickets as")
        if code == 403:
            raise TrackerRejected(
                f"Redmine's REST API is off ({short_error(response)}) — fix: in Redmine, "
                "Administration > Settings > API, tick \"Enable REST web service\"")
        user = _object(response, "user") if code == 200 else None
        if user is None:
            if 300 <= code < 400:
                raise TrackerRejected(
                    f"Redmine redirects the API ({short_error(response)} to "
                    f"{response.headers.get('Location', '?')}) — fix: set `url` to the address "
                    "it redirects to")
            if code >= 500:
                raise TrackerUnavailable(f"Redmine failed ({short_error(response)}) — fix: "
                                         "Redmine's log (log/production.log) says why")
            raise TrackerRejected(f"no Redmine API answers at `url` ({short_error(response)}) "
                                  "— fix: `url` is Redmine's home page address")
        login = str(user.get("login") or user.get("firstname") or "?")
        found = [("ok", f"API key of {login} accepted")]
        if self.switch_user and not user.get("admin"):
            found.append(("warn", f"`switch_user` is on, but {login} is not an administrator: "
                                  f"tickets are filed as {login}, not as the person asking "
                                  "— fix: use an administrator's key, or turn `switch_user` off"))
        found.append(("ok", await self._probe_project(login)))
        return found

    async def _probe_project(self, login: str) -> str:
        path = f"/projects/{quote(self.project, safe='')}.json"
        response = await self._send("GET", path, params={"include": "trackers"})
        if response.status_code in (403, 404):
            raise TrackerRejected(
                f"{login} sees no project {self.project!r} ({short_error(response)}) — fix: "
                "set `project` to the project's identifier "
                "(the name in its address, /projects/<identifier>), and make "
                f"{login} a member of it with a role that may add issues")
        self._check(response)
        project = _object(response, "project")
        if project is None:
            raise TrackerUnavailable(short_error(response, "the answer is not a project"))
        trackers = {t.get("id"): t.get("name") for t in project.get("trackers") or []
                    if isinstance(t, dict)}
        if self.tracker_id is not None and trackers and self.tracker_id not in trackers:
            known = ", ".join(f"{i} ({n})" for i, n in trackers.items())
            raise TrackerRejected(
                f"tracker {self.tracker_id} is not used in project {self.project!r} — fix: set "
                f"`tracker_id` to one of {known}, or enable it in the project's settings")
        return f"project {self.project!r} ({project.get('name', '?')}) is visible to {login}"

    # ------------------------------------------------------------------ people

    def _forget_login(self, login: str) -> None:
        for key, (user, _) in list(self._users.items()):
            if user is not None and user.login == login:
                del self._users[key]

    async def _find_user(self, person: Person) -> _User | None:
        """The active Redmine user whose login is the chat username or whose email is the chat
        email (needs an administrator's key; cached)."""
        if not self._can_list_users:
            return None
        key = f"{person.username.lower()}\n{person.email.lower()}"
        cached = self._users.get(key)
        if cached is not None and (cached[0] is not None or cached[1] > time.monotonic()):
            return cached[0]
        user: _User | None = None
        try:
            for query, field_name in ((person.username, "login"), (person.email, "mail")):
                if not query:
                    continue
                data = await self._json("GET", "/users.json",
                                        params={"name": query, "status": 1, "limit": 100})
                for entry in data.get("users") or []:
                    value = entry.get(field_name) if isinstance(entry, dict) else None
                    if isinstance(value, str) and value.lower() == query.lower():
                        user = _User(int(entry["id"]), str(entry["login"]))
                        break
                if user is not None:
                    break
        except _Forbidden:
            # Not an administrator's key: no one can be looked up, so no one is switched to.
            self._can_list_users = False
            return None
        self._users[key] = (user, time.monotonic() + NEGATIVE_USER_TTL)
        if user is not None:
            self._logins[user.id] = user.login
        return user

    async def _login_of(self, user_id: int) -> str:
        if user_id not in self._logins:
            try:
                data = await self._json("GET", f"/users/{user_id}.json")
            except TrackerRejected:  # forbidden, or a user since deleted
                data = {}
            login = (data.get("user") or {}).get("login")
            # Redmine shows a login only to administrators and to its own user.
            self._logins[user_id] = login if isinstance(login, str) else ""
        return self._logins[user_id]

    async def _acting_login(self, person: Person | None) -> str | None:
        if not self.switch_user or person is None:
            return None
        user = await self._find_user(person)
        if user is None or self._cannot_act.get(user.login, 0.0) > time.monotonic():
            return None
        return user.login

    # ------------------------------------------------------------------ mapping

    async def _ticket(self, issue: dict[str, Any]) -> Ticket:
        try:
            issue_id = int(issue["id"])
        except (KeyError, TypeError, ValueError):
            raise TrackerUnavailable("Redmine answered an issue without an id") from None
        status = issue.get("status") or {}
        label = str(status.get("name") or "")
        closed = status.get("is_closed")
        author = issue.get("author") or {}
        requester = ""
        if isinstance(author.get("id"), int):
            requester = await self._login_of(author["id"])
        return Ticket(
            id=str(issue_id), title=str(issue.get("subject") or ""),
            status=map_status(label, closed if isinstance(closed, bool) else None),
            url=f"{self.web_url}/issues/{issue_id}", status_label=label,
            assignee=str((issue.get("assigned_to") or {}).get("name") or ""),
            requester=requester, updated_at=parse_time(issue.get("updated_on")))

    @staticmethod
    def _issue_id(ticket_id: str) -> int:
        text = str(ticket_id).strip().lstrip("#")
        if not text.isdigit() or not text.isascii():
            raise TicketNotFound(f"not a Redmine issue number: {str(ticket_id)[:40]!r}")
        return int(text)

    # ------------------------------------------------------------------ the protocol

    async def create(self, ticket: NewTicket) -> Ticket:
        issue: dict[str, Any] = {
            "project_id": self.project,
            "subject": subject_for(ticket.title, self.title_limit),
            "description": description_for(ticket),
        }
        if self.tracker_id is not None:
            issue["tracker_id"] = self.tracker_id
        priority = self.priority_ids.get(ticket.urgency)
        if priority is not None:
            issue["priority_id"] = priority
        issue.update({k: v for k, v in ticket.fields.items() if k in ISSUE_FIELDS})
        login = await self._acting_login(ticket.requester)
        data = await self._json("POST", "/issues.json", json={"issue": issue}, switch=login)
        made = data.get("issue")
        if not isinstance(made, dict):
            raise TrackerUnavailable("Redmine answered the creation without the issue")
        return await self._ticket(made)

    async def find_by_ref(self, ref: str, since: datetime) -> Ticket | None:
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)
        moment = (moment - CLOCK_SLACK).astimezone(UTC)
        params: dict[str, Any] = {"status_id": "*",
                                  "created_on": ">=" + moment.strftime("%Y-%m-%dT%H:%M:%SZ")}
        token = search_token(ref)
        if len(token) > 1:
            params["description"] = "~" + token
        for issue in await self._issues(params):
            if has_ref(issue.get("description"), ref):
                return await self._ticket(issue)
        return None

    async def get(self, ticket_id: str) -> Ticket:
        issue_id = self._issue_id(ticket_id)
        data = await self._json("GET", f"/issues/{issue_id}.json", ticket=True)
        issue = data.get("issue")
        if not isinstance(issue, dict):
            raise TrackerUnavailable(f"Redmine answered issue {issue_id} without the issue")
        return await self._ticket(issue)

    async def _journals(self, issue_id: int) -> list[dict[str, Any]]:
        data = await self._json("GET", f"/issues/{issue_id}.json",
                                params={"include": "journals"}, ticket=True)
        issue = data.get("issue") or {}
        return [j for j in issue.get("journals") or [] if isinstance(j, dict)]

    async def comment(self, ticket_id: str, text: str, author: Person | None = None, *,
                      private: bool = False) -> str:
        issue_id = self._issue_id(ticket_id)
        notes = clean_text(text)
        if not notes.strip():
            raise TrackerRejected("an empty comment is not sent to Redmine")
        login = await self._acting_login(author)
        change: dict[str, Any] = {"notes": notes}
        if private:
            change["private_notes"] = True
        await self._call("PUT", f"/issues/{issue_id}.json", json={"issue": change},
                         ticket=True, switch=login)
        # Redmine answers 204 without the journal: read it back to learn its id.
        mine = [j for j in await self._journals(issue_id) if same_text(j.get("notes"), notes)]
        if not mine:
            raise TrackerUnavailable(f"the note on issue {issue_id} was not found after saving")
        user = await self._find_user(author) if login and author else None
        by_author = [j for j in mine if user and (j.get("user") or {}).get("id") == user.id]
        newest = max(by_author or mine, key=lambda j: int(j.get("id") or 0))
        return str(newest["id"])

    async def comments(self, ticket_id: str) -> list[Comment]:
        issue_id = self._issue_id(ticket_id)
        out = []
        for journal in await self._journals(issue_id):
            notes = journal.get("notes")
            if not isinstance(notes, str) or not notes.strip() or journal.get("private_notes"):
                continue
            out.append(Comment(id=str(journal.get("id")),
                               author=str((journal.get("user") or {}).get("name") or ""),
                               text=notes, created_at=parse_time(journal.get("created_on"))))
        return out

    async def solution(self, ticket_id: str) -> Solution | None:
        """Redmine has no solutions of its own: the public note written with the latest
        change of status is the solution."""
        issue_id = self._issue_id(ticket_id)
        for journal in reversed(await self._journals(issue_id)):
            details = journal.get("details") or []
            if not any(isinstance(d, dict) and d.get("name") == "status_id" for d in details):
                continue
            notes = journal.get("notes")
            if not isinstance(notes, str) or not notes.strip() or journal.get("private_notes"):
                return None
            return Solution(id=str(journal.get("id")),
                            author=str((journal.get("user") or {}).get("name") or ""),
                            text=notes, created_at=parse_time(journal.get("created_on")))
        return None

    async def answer_solution(self, ticket_id: str, accepted: bool, text: str,
                              author: Person | None = None) -> None:
        raise TrackerRejected("Redmine has no approval of solutions")

    async def assign(self, ticket_id: str, technician: Person) -> str:
        issue_id = self._issue_id(ticket_id)
        user = await self._find_user(technician)
        if user is None:
            raise TrackerRejected(f"Redmine has no user for @{technician.username}")
        await self._call("PUT", f"/issues/{issue_id}.json",
                         json={"issue": {"assigned_to_id": user.id}}, ticket=True)
        return user.login

    async def solve(self, ticket_id: str, text: str, author: Person | None = None) -> None:
        issue_id = self._issue_id(ticket_id)
        status = await self._solving_status()
        notes = clean_text(text)
        login = await self._acting_login(author)
        await self._call("PUT", f"/issues/{issue_id}.json",
                         json={"issue": {"status_id": status, "notes": notes}}, ticket=True,
                         switch=login)

    async def _statuses(self) -> list[dict[str, Any]]:
        """Redmine's issue statuses, read once."""
        if self._status_list is None:
            data = await self._json("GET", "/issue_statuses.json")
            self._status_list = [s for s in data.get("issue_statuses") or []
                                 if isinstance(s, dict)]
        return self._status_list

    async def _solving_status(self) -> int:
        """The first status named like "Resolved", else the first closed one."""
        statuses = await self._statuses()
        solved = [s for s in statuses
                  if map_status(str(s.get("name") or ""), None) is Status.SOLVED]
        closed = [s for s in statuses if s.get("is_closed")]
        if not (solved or closed):
            raise TrackerRejected("Redmine has no status that solves an issue")
        return int((solved or closed)[0]["id"])

    async def close(self, ticket_id: str, text: str, author: Person | None = None) -> None:
        """Closed with the key's own account (a requester's role may not close issues, and
        Redmine would drop the change without a word), the note naming the requester."""
        issue_id = self._issue_id(ticket_id)
        current = await self.get(str(issue_id))
        if current.status is Status.CLOSED:
            raise TrackerRejected(f"Redmine: issue {issue_id} is already closed")
        status = await self._closing_status()
        notes = signed(clean_text(text), author)
        await self._call("PUT", f"/issues/{issue_id}.json",
                         json={"issue": {"status_id": status, "notes": notes}}, ticket=True)

    async def _closing_status(self) -> int:
        """The first closed status named like "Closed", else the first closed one."""
        closed = [s for s in await self._statuses() if s.get("is_closed")]
        named = [s for s in closed if str(s.get("name") or "").strip().lower() in CLOSED_NAMES]
        if not (named or closed):
            raise TrackerRejected("Redmine has no closed status")
        return int((named or closed)[0]["id"])

    async def set_urgency(self, ticket_id: str, urgency: int) -> None:
        issue_id = self._issue_id(ticket_id)
        priority = self.priority_ids.get(int(urgency))
        if priority is None:
            raise TrackerRejected(f"no Redmine priority is configured for urgency {urgency}")
        await self._call("PUT", f"/issues/{issue_id}.json",
                         json={"issue": {"priority_id": priority}}, ticket=True)

    async def attach(self, ticket_id: str, attachment: Attachment) -> None:
        issue_id = self._issue_id(ticket_id)
        filename = " ".join(clean_text(attachment.filename).split()) or "attachment"
        data = await self._json("POST", "/uploads.json", params={"filename": filename},
                                content=attachment.content,
                                headers={"Content-Type": "application/octet-stream"})
        token = (data.get("upload") or {}).get("token")
        if not isinstance(token, str) or not token:
            raise TrackerUnavailable("Redmine answered the upload without a token")
        upload = {"token": token, "filename": filename,
                  "content_type": attachment.content_type or "application/octet-stream"}
        await self._call("PUT", f"/issues/{issue_id}.json",
                         json={"issue": {"uploads": [upload]}}, ticket=True)

    async def open_tickets(self, requester: Person) -> list[Ticket]:
        """Open issues of the project authored by the requester's Redmine user, and those the
        bot filed naming the requester in the description; newest first."""
        issues: dict[int, dict[str, Any]] = {}
        user = await self._find_user(requester)
        if user is not None:
            for issue in await self._issues({"status_id": "open", "author_id": user.id}):
                issues[int(issue["id"])] = issue
        token = search_token(f"(@{requester.username}")
        if len(token) > 2:
            for issue in await self._issues({"status_id": "open", "description": "~" + token}):
                if named_requester(issue.get("description")) == requester.username:
                    issues[int(issue["id"])] = issue
        return [await self._ticket(issues[i]) for i in sorted(issues, reverse=True)]


def _object(response: httpx.Response, key: str) -> dict[str, Any] | None:
    """`body[key]` when the answer is a JSON object holding an object there."""
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else None


def _errors(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        return "; ".join(str(e) for e in errors if e)
    return str(errors or "")


__all__ = ["RedmineTracker", "description_for", "has_ref", "map_status", "named_requester"]
