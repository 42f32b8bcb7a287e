"""Calls the simulated server makes to integrations, and what it does with their answers.

Button clicks, dialog submissions, slash commands and outgoing webhooks all POST to a URL given by
the integration and interpret the reply exactly as 5.36 does: only HTTP 200 with a decodable body
counts, everything else (an empty body, a 500, text, a refused connection, a blocked address, no
answer within the 30 s hard-coded timeout) becomes the same error for the user who acted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from .mm_core import RETAINED_PROPS, SandboxCore
from .mm_model import (
    JSON,
    AppError,
    Channel,
    Post,
    User,
    body_param_error,
    find_action,
    go_json,
    integration_error,
    new_id,
    normalise_attachments,
    normalise_dialog,
    param_error,
    permission_error,
    post_not_found,
    slack_links_to_markdown,
    sorted_deep,
)

#: The server's own integration HTTP client: connect timeout (the total one is configurable).
CONNECT_TIMEOUT_S = 3.0
_HEADERS = {"User-Agent": "Mattermost-Bot/1.1", "Accept": "application/json",
            "Accept-Encoding": "gzip"}


class IntegrationFailed(Exception):
    """The integration could not be reached or did not answer in time."""


@dataclass(slots=True)
class Command:
    """A custom slash command."""

    id: str
    token: str
    create_at: int
    creator_id: str
    team_id: str
    trigger: str
    method: str
    url: str
    username: str = ""
    icon_url: str = ""
    auto_complete: bool = False
    auto_complete_desc: str = ""
    auto_complete_hint: str = ""
    display_name: str = ""
    description: str = ""
    update_at: int = 0

    def json(self) -> JSON:
        """Wire form (includes the verification token, as the creation response and the
        custom-command list do)."""
        return {"id": self.id, "token": self.token, "create_at": self.create_at,
                "update_at": self.update_at or self.create_at, "delete_at": 0,
                "creator_id": self.creator_id,
                "team_id": self.team_id, "trigger": self.trigger, "method": self.method,
                "username": self.username, "icon_url": self.icon_url,
                "auto_complete": self.auto_complete, "auto_complete_desc": self.auto_complete_desc,
                "auto_complete_hint": self.auto_complete_hint, "display_name": self.display_name,
                "description": self.description, "url": self.url, "plugin_id": ""}


@dataclass(slots=True)
class CommandRun:
    """One execution of a command; its id makes the `response_url`."""

    id: str
    command: Command
    user_id: str
    channel_id: str
    root_id: str


@dataclass(slots=True)
class OutgoingHook:
    """An outgoing webhook: fires on trigger words at the start of a message."""

    id: str
    token: str
    create_at: int
    creator_id: str
    channel_id: str
    team_id: str
    trigger_words: list[str]
    trigger_when: int
    callback_urls: list[str]
    display_name: str
    description: str
    content_type: str
    username: str = ""
    icon_url: str = ""

    def json(self) -> JSON:
        """Wire form."""
        return {"id": self.id, "token": self.token, "create_at": self.create_at,
                "update_at": self.create_at, "delete_at": 0, "creator_id": self.creator_id,
                "channel_id": self.channel_id, "team_id": self.team_id,
                "trigger_words": self.trigger_words, "trigger_when": self.trigger_when,
                "callback_urls": self.callback_urls, "display_name": self.display_name,
                "description": self.description, "content_type": self.content_type,
                "username": self.username, "icon_url": self.icon_url}


@dataclass(slots=True)
class IncomingHook:
    """An incoming webhook: anyone holding its URL can post into its channel."""

    id: str
    create_at: int
    user_id: str
    channel_id: str
    team_id: str
    display_name: str
    description: str
    username: str = ""
    icon_url: str = ""
    channel_locked: bool = False

    def json(self) -> JSON:
        """Wire form."""
        return {"id": self.id, "create_at": self.create_at, "update_at": self.create_at,
                "delete_at": 0, "user_id": self.user_id, "channel_id": self.channel_id,
                "team_id": self.team_id, "display_name": self.display_name,
                "description": self.description, "username": self.username,
                "icon_url": self.icon_url, "channel_locked": self.channel_locked}


def _str(body: JSON, key: str) -> str:
    value = body.get(key)
    return value if isinstance(value, str) else ""


@dataclass
class Integrations:
    """Outbound calls and their effects; owns the HTTP client the server uses for them."""

    core: SandboxCore
    site_url: str = ""
    integration_timeout_s: float = 30.0
    trigger_lifetime_s: float = 3.0
    http: aiohttp.ClientSession | None = None
    commands: dict[str, Command] = field(default_factory=dict)
    command_runs: dict[str, CommandRun] = field(default_factory=dict)
    outgoing: dict[str, OutgoingHook] = field(default_factory=dict)
    incoming: dict[str, IncomingHook] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    #: Dialogs opened so far: (user id, what the user's client received).
    opened_dialogs: list[tuple[str, JSON]] = field(default_factory=list)
    #: Only system admins may manage slash commands (a permission scheme that takes
    #: `manage_slash_commands` from team members; the recorded server grants it to everyone).
    only_admin_commands: bool = False
    _key: bytes = field(default_factory=lambda: os.urandom(32))

    def __post_init__(self) -> None:
        self.core.after_post = self._after_post

    async def open(self) -> None:
        """Create the HTTP client (inside the running loop)."""
        self.http = aiohttp.ClientSession(auto_decompress=True)

    async def close(self) -> None:
        """Cancel pending webhook deliveries and close the client."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.close()

    # -- HTTP ------------------------------------------------------------------------------------

    async def call(self, url: str, *, json_body: Any = None, form: list[tuple[str, str]] | None
                   = None, token: str = "", method: str = "POST") -> tuple[int, bytes, str]:
        """POST (or GET) to an integration; returns status, raw body and content type."""
        if self.http is None:
            raise IntegrationFailed("server not started")
        _check_url(url)
        headers = dict(_HEADERS)
        data: bytes | None = None
        if token:
            headers["Authorization"] = f"Token {token}"
        if form is not None:
            if method == "GET":
                url = url + ("&" if "?" in url else "?") + urlencode(form)
            else:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                data = urlencode(form).encode()
        else:
            headers["Content-Type"] = "application/json"
            data = go_json(json_body).encode()
        timeout = aiohttp.ClientTimeout(total=self.integration_timeout_s,
                                        connect=CONNECT_TIMEOUT_S)
        try:
            async with self.http.request(method, url, data=data, headers=headers,
                                         timeout=timeout, allow_redirects=False) as resp:
                body = await resp.read()
                return resp.status, body, resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise IntegrationFailed(str(exc)) from exc

    # -- trigger ids -----------------------------------------------------------------------------

    def new_trigger(self, user_id: str) -> tuple[str, str]:
        """A short client trigger id and the long signed form integrations receive."""
        client_id = new_id()
        payload = f"{client_id}:{user_id}:{self.core.clock.now_ms()}"
        sig = base64.b64encode(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        signed = base64.b64encode(payload.encode() + b":" + sig).decode()
        return client_id, signed

    def decode_trigger(self, trigger: str) -> tuple[str, str]:
        """Check a signed trigger id: `(client_id, user_id)` or the server's 400s."""
        try:
            raw = base64.b64decode(trigger.encode(), validate=True).decode()
        except ValueError:
            raise AppError(400, "interactive_message.decode_trigger_id.base64_decode_failed",
                           "Failed to decode base64 for trigger ID for interactive dialog.",
                           ) from None
        parts = raw.split(":")
        if len(parts) != 4 or not parts[2].isdigit():
            raise AppError(400, "interactive_message.decode_trigger_id.missing_data",
                           "Trigger ID missing required data for interactive dialog.")
        client_id, user_id, ms, sig = parts
        lifetime_ms = int(self.trigger_lifetime_s * 1000)
        if self.core.clock.now_ms() - int(ms) > lifetime_ms:
            # The text names 5.36's fixed lifetime even when a test shortens it.
            raise AppError(400, "interactive_message.decode_trigger_id.expired",
                           "Trigger ID for interactive dialog is expired. Trigger IDs live for a "
                           "maximum of 3 seconds.")
        try:
            given = base64.b64decode(sig.encode(), validate=True)
        except ValueError:
            raise AppError(400, "interactive_message.decode_trigger_id.signature_decode_failed",
                           "Failed to decode base64 signature of trigger ID for interactive "
                           "dialog.") from None
        want = hmac.new(self._key, f"{client_id}:{user_id}:{ms}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(given, want):
            raise AppError(400, "interactive_message.decode_trigger_id.verify_signature_failed",
                           "Signature verification failed of trigger ID for interactive dialog.")
        return client_id, user_id

    # -- button clicks ---------------------------------------------------------------------------

    async def click(self, user: User, post_id: str, action_id: str,
                    selected_option: str | None) -> JSON:
        """`POST /posts/{id}/actions/{action}`: `{status, trigger_id}`, or raises AppError."""
        post = self.core.posts.get(post_id)
        if post is None or not post.live:
            raise permission_error()
        ch = self.core.channels[post.channel_id]
        if not self.core.can_read(user, ch):
            raise permission_error()
        action = find_action(post.props, action_id)
        if action is None:
            raise AppError(404, "api.post.do_action.action_id.app_error", "Invalid action id.")
        integration = action.get("integration") or {}
        url = integration.get("url", "")
        context = integration.get("context")
        client_id, signed = self.new_trigger(user.id)
        data_source = ""
        context = dict(context) if isinstance(context, dict) else {}
        if action.get("type") == "select":
            data_source = action.get("data_source", "")
            context["selected_option"] = selected_option or ""
        team = self.core.team if ch.team_id else None
        request = {"user_id": user.id, "user_name": user.username, "channel_id": ch.id,
                   "channel_name": ch.name, "team_id": ch.team_id,
                   "team_domain": team.name if team else "", "post_id": post.id,
                   "trigger_id": signed, "type": action.get("type", ""),
                   "data_source": data_source,
                   "context": sorted_deep(context)}
        try:
            status, raw, _ = await self.call(url, json_body=request)
        except IntegrationFailed:
            raise integration_error() from None
        if status != 200:
            raise integration_error()
        try:
            reply = json.loads(raw)
        except ValueError:
            raise integration_error() from None  # an empty body fails to decode too
        if reply is None:
            reply = {}
        if not isinstance(reply, dict):
            raise integration_error()
        self._apply_click_reply(user, post, reply)
        return {"status": "OK", "trigger_id": client_id}

    def _apply_click_reply(self, user: User, post: Post, reply: JSON) -> None:
        skip = bool(reply.get("skip_slack_parsing"))
        retained = {k: post.props[k] for k in RETAINED_PROPS if k in post.props}
        update = reply.get("update")
        text = reply.get("ephemeral_text")
        if isinstance(text, str) and text:
            eph = Post(id=new_id(), create_at=self.core.clock.now_ms(), user_id=user.id,
                       channel_id=post.channel_id,
                       message=text if skip else slack_links_to_markdown(text),
                       props=dict(retained), root_id=post.root_id or post.id)
            self.core.send_ephemeral(user.id, eph)
        if isinstance(update, dict):
            message = update.get("message")
            message = message if isinstance(message, str) else ""
            if not skip:
                message = slack_links_to_markdown(message)
            props_in = update.get("props")
            if props_in is None:
                props = dict(post.props)  # no `props` key: the old props (and buttons) stay
            else:
                props = dict(props_in) if isinstance(props_in, dict) else {}
                if "attachments" in props:
                    props["attachments"] = normalise_attachments(props["attachments"])
                for key in RETAINED_PROPS:
                    props.pop(key, None)
                props.update(retained)
            self.core.edit_post(post, message, props)

    # -- dialogs ---------------------------------------------------------------------------------

    def open_dialog(self, body: Any) -> JSON:
        """`POST /actions/dialogs/open`: needs a fresh signed trigger id, not a session."""
        if not isinstance(body, dict):
            raise body_param_error("dialog")
        url = body.get("url")
        if not isinstance(url, str) or not url:
            raise body_param_error("url")
        trigger = body.get("trigger_id")
        client_id, user_id = self.decode_trigger(trigger if isinstance(trigger, str) else "")
        dialog = body.get("dialog")
        payload = {"trigger_id": client_id, "url": url,
                   "dialog": normalise_dialog(dialog if isinstance(dialog, dict) else {})}
        self.core.hub.publish("open_dialog", {"dialog": go_json(payload)}, user_id=user_id)
        self.opened_dialogs.append((user_id, payload))
        return {"status": "OK"}

    async def submit_dialog(self, user: User, body: Any) -> JSON:
        """`POST /actions/dialogs/submit`: forwards to the dialog's url; errors come back as is."""
        if not isinstance(body, dict):
            raise body_param_error("dialog")
        url = body.get("url")
        if not isinstance(url, str) or not url:
            raise body_param_error("url")
        channel_id = _str(body, "channel_id")
        ch = self.core.channels.get(channel_id)
        if ch is None or not self.core.can_read(user, ch):
            raise permission_error()
        submission = body.get("submission")
        request = {"type": "dialog_submission", "callback_id": _str(body, "callback_id"),
                   "state": _str(body, "state"), "user_id": user.id, "channel_id": channel_id,
                   "team_id": _str(body, "team_id"),
                   "submission": sorted_deep(submission) if isinstance(submission, dict) else {},
                   "cancelled": bool(body.get("cancelled"))}
        try:
            status, raw, _ = await self.call(url, json_body=request)
        except IntegrationFailed:
            raise integration_error() from None
        if status != 200:
            raise integration_error()
        out: JSON = {}
        try:
            reply = json.loads(raw) if raw.strip() else {}
        except ValueError:
            reply = {}
        if isinstance(reply, dict):
            if isinstance(reply.get("error"), str) and reply["error"]:
                out["error"] = reply["error"]
            if isinstance(reply.get("errors"), dict) and reply["errors"]:
                out["errors"] = sorted_deep(reply["errors"])
        return out

    # -- slash commands --------------------------------------------------------------------------

    def may_manage_commands(self, user: User, team_id: Any) -> bool:
        """`manage_slash_commands` in a team: its members (admins anywhere), unless the
        permission is kept for admins."""
        if user.is_admin:
            return True
        return team_id == self.core.team.id and not self.only_admin_commands

    @staticmethod
    def _valid_command(body: JSON) -> tuple[str, str, str]:
        """Trigger, url and method of a command body, or the server's 400s."""
        trigger = _str(body, "trigger").strip().lstrip("/").lower()
        if not trigger or " " in trigger:
            raise AppError(400, "model.command.is_valid.trigger.app_error", "Invalid trigger.")
        if not _str(body, "url").startswith(("http://", "https://")):
            raise AppError(400, "model.command.is_valid.url.app_error", "Invalid URL.")
        method = _str(body, "method") or "P"
        if method not in ("P", "G"):
            raise AppError(400, "model.command.is_valid.method.app_error", "Invalid Method.")
        return trigger, _str(body, "url"), method

    def create_command(self, user: User, body: Any) -> Command:
        """`POST /api/v4/commands`."""
        if not isinstance(body, dict):
            raise body_param_error("command")
        if body.get("team_id") != self.core.team.id or not self.may_manage_commands(
                user, body.get("team_id")):
            raise permission_error()
        trigger, _, method = self._valid_command(body)
        if any(c.trigger == trigger for c in self.commands.values()):
            raise AppError(400, "api.command.duplicate_trigger.app_error",
                           "This trigger word is already in use. Please choose another word.")
        cmd = Command(id=new_id(), token=new_id(), create_at=self.core.clock.now_ms(),
                      creator_id=user.id, team_id=self.core.team.id, trigger=trigger,
                      method=method, url=_str(body, "url"), username=_str(body, "username"),
                      icon_url=_str(body, "icon_url"),
                      auto_complete=bool(body.get("auto_complete")),
                      auto_complete_desc=_str(body, "auto_complete_desc"),
                      auto_complete_hint=_str(body, "auto_complete_hint"),
                      display_name=_str(body, "display_name"),
                      description=_str(body, "description"))
        self.commands[cmd.id] = cmd
        return cmd

    def list_commands(self, user: User, team_id: str, custom_only: bool) -> list[JSON]:
        """`GET /api/v4/commands?team_id=&custom_only=`: the team's custom commands, tokens
        included, for those who may manage them; others see the autocompleting ones only
        (the server's built-in commands are not simulated)."""
        if not team_id:
            raise param_error("team_id")
        if team_id != self.core.team.id and not user.is_admin:
            raise permission_error()
        manager = self.may_manage_commands(user, team_id)
        if custom_only and not manager:
            raise permission_error()
        found = [c for c in self.commands.values() if c.team_id == team_id]
        if not manager:
            found = [c for c in found if c.auto_complete]
        return [c.json() for c in found]

    def update_command(self, user: User, command_id: str, body: Any) -> Command:
        """`PUT /api/v4/commands/{id}`: the whole command is sent; its id, token, creator and
        team stay."""
        if not isinstance(body, dict) or body.get("id") != command_id:
            raise param_error("command")
        cmd = self.commands.get(command_id)
        if cmd is None:
            raise AppError(404, "store.sql_command.save.get.app_error",
                           "Unable to get the command.")
        if body.get("team_id") != cmd.team_id:
            raise AppError(400, "api.command.team_mismatch.app_error",
                           "Unable to update commands across teams.")
        if not self.may_manage_commands(user, cmd.team_id):
            # The server hides the command from those who may not manage it.
            raise AppError(404, "store.sql_command.save.get.app_error",
                           "Unable to get the command.")
        if user.id != cmd.creator_id and not user.is_admin:
            raise permission_error()  # manage_others_slash_commands: admins only by default
        trigger, url, method = self._valid_command(body)
        if any(c.trigger == trigger and c.id != cmd.id for c in self.commands.values()):
            raise AppError(400, "api.command.duplicate_trigger.app_error",
                           "This trigger word is already in use. Please choose another word.")
        cmd.trigger, cmd.url, cmd.method = trigger, url, method
        cmd.username, cmd.icon_url = _str(body, "username"), _str(body, "icon_url")
        cmd.auto_complete = bool(body.get("auto_complete"))
        cmd.auto_complete_desc = _str(body, "auto_complete_desc")
        cmd.auto_complete_hint = _str(body, "auto_complete_hint")
        cmd.display_name = _str(body, "display_name")
        cmd.description = _str(body, "description")
        cmd.update_at = self.core.clock.now_ms()
        return cmd

    async def execute_command(self, user: User, body: Any) -> JSON:
        """`POST /api/v4/commands/execute`: call the command, then post its answer."""
        if not isinstance(body, dict):
            raise body_param_error("command_args")
        text = body.get("command")
        if not isinstance(text, str) or not text.startswith("/"):
            raise AppError(400, "api.command.execute_command.start.app_error",
                           "No command trigger found.")
        ch = self.core.channels.get(_str(body, "channel_id"))
        if ch is None or not self.core.can_read(user, ch):
            raise permission_error()
        head, _, rest = text.partition(" ")
        trigger = head[1:].lower()
        cmd = next((c for c in self.commands.values() if c.trigger == trigger), None)
        if cmd is None:
            raise AppError(404, "api.command.execute_command.not_found.app_error",
                           f"Command with a trigger of '{trigger}' not found. To send a message "
                           'beginning with "/", try adding an empty space at the beginning of '
                           "the message.")
        run = CommandRun(id=new_id(), command=cmd, user_id=user.id, channel_id=ch.id,
                         root_id=_str(body, "root_id"))
        self.command_runs[run.id] = run
        client_id, signed = self.new_trigger(user.id)
        form = [("channel_id", ch.id), ("channel_name", ch.name), ("command", "/" + trigger),
                ("response_url", f"{self.site_url}/hooks/commands/{run.id}"),
                ("team_domain", self.core.team.name), ("team_id", self.core.team.id),
                ("text", rest), ("token", cmd.token), ("trigger_id", signed),
                ("user_id", user.id), ("user_name", user.username)]
        failed = AppError(500, "api.command.execute_command.failed.app_error",
                          f"Command with a trigger of '{trigger}' failed.")
        try:
            status, raw, ctype = await self.call(cmd.url, form=form, token=cmd.token,
                                                 method="GET" if cmd.method == "G" else "POST")
        except IntegrationFailed:
            raise failed from None
        if status != 200:
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            raise AppError(500, "api.command.execute_command.failed_resp.app_error",
                           f"Command with a trigger of '{trigger}' returned response "
                           f"{status} {phrase}.")
        if ctype.split(";")[0].strip() == "application/json":
            try:
                reply = json.loads(raw)
            except ValueError:
                raise failed from None
            if not isinstance(reply, dict):
                raise failed
        else:
            reply = {"text": raw.decode("utf-8", "replace")}
        self.handle_command_response(run, reply)
        return {"response_type": _str(reply, "response_type"), "text": _str(reply, "text"),
                "username": _str(reply, "username"), "channel_id": _str(reply, "channel_id"),
                "icon_url": _str(reply, "icon_url"), "type": _str(reply, "type"),
                "props": reply.get("props"), "goto_location": _str(reply, "goto_location"),
                "trigger_id": client_id, "skip_slack_parsing": bool(reply.get(
                    "skip_slack_parsing")), "attachments": reply.get("attachments"),
                "extra_responses": reply.get("extra_responses")}

    def handle_command_response(self, run: CommandRun, reply: JSON) -> None:
        """Post a command's answer in the channel (`in_channel`) or to its user only."""
        cmd = run.command
        ch = self.core.channels.get(run.channel_id)
        if ch is None:
            return
        props = dict(reply["props"]) if isinstance(reply.get("props"), dict) else {}
        username = cmd.username or _str(reply, "username")
        if username:
            props["override_username"] = username
        props["override_icon_url"] = cmd.icon_url or _str(reply, "icon_url")
        props["from_webhook"] = "true"
        text = _str(reply, "text")
        if not reply.get("skip_slack_parsing"):
            text = slack_links_to_markdown(text)
        attachments = reply.get("attachments")
        post_type = _str(reply, "type")
        if isinstance(attachments, list):
            props["attachments"] = normalise_attachments(attachments)
            post_type = "slack_attachment"
        post = Post(id=new_id(), create_at=0, user_id=run.user_id, channel_id=ch.id,
                    message=text, props=props, root_id=run.root_id, parent_id=run.root_id,
                    type=post_type)
        if reply.get("response_type") == "in_channel":
            self.core.insert_post(post, ch)
        elif text or attachments is not None:
            post.create_at = self.core.clock.now_ms()
            post.parent_id = ""
            self.core.send_ephemeral(run.user_id, post)

    def command_webhook(self, run_id: str, raw: bytes) -> None:
        """`POST /hooks/commands/{id}`: a delayed answer through the `response_url`."""
        run = self.command_runs.get(run_id)
        if run is None:
            raise AppError(400, "web.command_webhook.invalid.app_error", "Invalid webhook.")
        try:
            reply = json.loads(raw)
        except ValueError:
            raise AppError(400, "web.command_webhook.parse.app_error",
                           "Unable to parse incoming data.") from None
        if not isinstance(reply, dict):
            raise AppError(400, "web.command_webhook.parse.app_error",
                           "Unable to parse incoming data.")
        self.handle_command_response(run, reply)

    # -- webhooks --------------------------------------------------------------------------------

    def create_outgoing(self, user: User, body: Any) -> OutgoingHook:
        """`POST /api/v4/hooks/outgoing`."""
        if not isinstance(body, dict):
            raise body_param_error("outgoing_webhook")
        channel_id = _str(body, "channel_id")
        words = [w for w in body.get("trigger_words") or [] if isinstance(w, str) and w]
        urls = [u for u in body.get("callback_urls") or [] if isinstance(u, str) and u]
        if not urls:
            raise AppError(400, "model.outgoing_hook.is_valid.callback.app_error",
                           "Invalid callback urls.")
        if not channel_id and not words:
            raise AppError(400, "api.webhook.create_outgoing.triggers.app_error",
                           "Either trigger_words or channel_id must be set")
        if channel_id:
            ch = self.core.channels.get(channel_id)
            if ch is None or not self.core.can_read(user, ch):
                raise permission_error()
        when = body.get("trigger_when", 0)
        hook = OutgoingHook(id=new_id(), token=new_id(), create_at=self.core.clock.now_ms(),
                            creator_id=user.id, channel_id=channel_id, team_id=self.core.team.id,
                            trigger_words=words, trigger_when=when if when in (0, 1) else 0,
                            callback_urls=urls, display_name=_str(body, "display_name"),
                            description=_str(body, "description"),
                            content_type=_str(body, "content_type") or "application/json",
                            username=_str(body, "username"), icon_url=_str(body, "icon_url"))
        self.outgoing[hook.id] = hook
        return hook

    def _after_post(self, post: Post, ch: Channel) -> None:
        if not self.outgoing or ch.type != "O" or post.type.startswith("system_") \
                or post.props.get("from_webhook") == "true":
            return
        words = post.message.split()
        first = words[0] if words else ""
        for hook in self.outgoing.values():
            if hook.channel_id and hook.channel_id != ch.id:
                continue
            trigger = ""
            if hook.trigger_words:
                match = [w for w in hook.trigger_words
                         if (first == w if hook.trigger_when == 0 else first.startswith(w))]
                if not match:
                    continue
                trigger = match[0]
            task = asyncio.get_running_loop().create_task(
                self._fire_outgoing(hook, post, ch, trigger))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _fire_outgoing(self, hook: OutgoingHook, post: Post, ch: Channel,
                             trigger: str) -> None:
        user = self.core.users[post.user_id]
        fields: list[tuple[str, Any]] = [
            ("token", hook.token), ("team_id", ch.team_id), ("team_domain", self.core.team.name),
            ("channel_id", ch.id), ("channel_name", ch.name), ("timestamp", post.create_at),
            ("user_id", user.id), ("user_name", user.username), ("post_id", post.id),
            ("text", post.message), ("trigger_word", trigger),
            ("file_ids", ",".join(post.file_ids))]
        for url in hook.callback_urls:
            try:
                if hook.content_type == "application/json":
                    status, raw, _ = await self.call(url, json_body=dict(fields))
                else:
                    # The form variant sorts its fields and sends the time in seconds.
                    form = sorted((k, str(v // 1000 if k == "timestamp" else v))
                                  for k, v in fields)
                    status, raw, _ = await self.call(url, form=form)
            except IntegrationFailed:
                continue
            if status != 200:
                continue
            try:
                reply = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(reply, dict):
                continue
            text = _str(reply, "text")
            attachments = reply.get("attachments")
            if not text and not isinstance(attachments, list):
                continue
            root = post.root_id or post.id if reply.get("response_type") == "comment" else ""
            props = dict(reply["props"]) if isinstance(reply.get("props"), dict) else {}
            props["webhook_display_name"] = hook.display_name
            self.webhook_post(hook.creator_id, ch, text, props,
                              username=_str(reply, "username") or hook.username,
                              icon_url=_str(reply, "icon_url") or hook.icon_url,
                              attachments=attachments, post_type=_str(reply, "type"),
                              root_id=root)

    def webhook_post(self, user_id: str, ch: Channel, text: str, props: JSON, *, username: str,
                     icon_url: str, attachments: Any, post_type: str, root_id: str = "") -> Post:
        """A post made by a webhook: authored by the hook's creator, marked `from_webhook`."""
        props["from_webhook"] = "true"
        props["override_username"] = username or "webhook"
        if icon_url:
            props["override_icon_url"] = icon_url
        if isinstance(attachments, list):
            props["attachments"] = normalise_attachments(attachments)
            post_type = "slack_attachment"
        post = Post(id=new_id(), create_at=0, user_id=user_id, channel_id=ch.id,
                    message=slack_links_to_markdown(text), props=props, root_id=root_id,
                    parent_id=root_id, type=post_type)
        self.core.insert_post(post, ch)
        return post

    def create_incoming(self, user: User, body: Any) -> IncomingHook:
        """`POST /api/v4/hooks/incoming`."""
        if not isinstance(body, dict):
            raise body_param_error("incoming_webhook")
        ch = self.core.channels.get(_str(body, "channel_id"))
        if ch is None or not self.core.can_read(user, ch):
            raise permission_error()
        hook = IncomingHook(id=new_id(), create_at=self.core.clock.now_ms(), user_id=user.id,
                            channel_id=ch.id, team_id=ch.team_id,
                            display_name=_str(body, "display_name"),
                            description=_str(body, "description"),
                            username=_str(body, "username"), icon_url=_str(body, "icon_url"),
                            channel_locked=bool(body.get("channel_locked")))
        self.incoming[hook.id] = hook
        return hook

    def incoming_post(self, hook_id: str, payload: Any) -> None:
        """`POST /hooks/{id}` after the body was parsed."""
        hook = self.incoming.get(hook_id)
        if hook is None:
            raise AppError(400, "web.incoming_webhook.invalid.app_error", "Invalid webhook.")
        if not isinstance(payload, dict):
            payload = {}
        text = _str(payload, "text")
        attachments = payload.get("attachments")
        if not text and attachments is None:
            raise AppError(400, "web.incoming_webhook.text.app_error", "No text specified.")
        ch = self.core.channels[hook.channel_id]
        name = _str(payload, "channel").lstrip("#")
        if name and not hook.channel_locked:
            found = [c for c in self.core.channels.values() if c.name == name]
            if not found:
                raise post_not_found()
            ch = found[0]
        props = dict(payload["props"]) if isinstance(payload.get("props"), dict) else {}
        props["webhook_display_name"] = hook.display_name
        self.webhook_post(hook.user_id, ch, text, props,
                          username=_str(payload, "username") or hook.username,
                          icon_url=_str(payload, "icon_url") or hook.icon_url,
                          attachments=attachments, post_type=_str(payload, "type"))


def _check_url(url: str) -> None:
    """Refuse addresses outside the allowed untrusted connections (loopback only here)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IntegrationFailed(f"bad integration url {url!r}")
    host = parts.hostname
    if host == "localhost":
        return
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: the real server checks the address it resolves to at dial time
    if ip.is_loopback:
        return
    if ip.is_private or ip.is_reserved or ip.is_link_local or ip.is_multicast \
            or ip.is_unspecified:
        raise IntegrationFailed(f"address {host} is not allowed")
