"""The simulated `/api/v4/websocket`: connections, the broadcast hub and the action router.

Broadcasting must stay cheap (benchmarks push thousands of events a second), so an event is
serialised once into a frame prefix that ends with `"seq":`; each connection only appends its own
sequence number and queues the text. One writer task per connection drains its queue in order, so
replies to client actions and events never overtake each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from .mm_model import JSON, VERSION, VERSION_ID, AppError, go_json


class WsBackend(Protocol):
    """What the websocket side needs from the rest of the server."""

    def user_for_token(self, token: str) -> str | None:
        """The user id a token belongs to."""

    def channel_member_ids(self, channel_id: str) -> Iterable[str]:
        """Who receives an event broadcast to a channel."""

    def on_connect(self, user_id: str) -> None:
        """A user's socket authenticated (may set them online)."""

    def on_disconnect(self, user_id: str) -> None:
        """A user's last socket closed."""

    def ws_user_typing(self, user_id: str, channel_id: str, parent_id: str) -> None:
        """The `user_typing` action; raises AppError when not allowed."""

    def ws_statuses(self, user_ids: list[str] | None) -> JSON:
        """`{user_id: status}` for the given users, or for everyone."""


class Connection:
    """One websocket: its sequence counter, its send queue and its writer task."""

    def __init__(self, hub: Hub, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
                 ) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.user_id: str | None = None
        self.seq = 0
        self.queue: deque[tuple[str, str | None]] = deque()
        self.wakeup = asyncio.Event()
        self.closed = False

    def send_event(self, prefix: str, marker: str | None) -> None:
        """Queue an event frame; it takes this connection's next sequence number."""
        text = prefix + str(self.seq) + "}"
        self.seq += 1
        self._push(text, marker)

    def send_reply(self, reply: JSON) -> None:
        """Queue a reply to a client action (replies carry `seq_reply` and use up no seq)."""
        self._push(go_json(reply), None)

    def _push(self, text: str, marker: str | None) -> None:
        if self.closed:
            return
        self.queue.append((text, marker))
        limit = self.hub.send_queue_limit
        if limit is not None and len(self.queue) > limit:
            # The real server drops a client that reads too slowly rather than buffer forever.
            self.abort()
            return
        self.wakeup.set()

    def abort(self) -> None:
        """Drop TCP without a close frame: the client sees 1006."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def close(self, code: int) -> None:
        """Close with a close frame."""
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close(code=code)

    async def run_writer(self) -> None:
        """Drain the queue onto the socket until the connection ends."""
        bot_id = self.hub.bot_id
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not self.closed:
                await self.wakeup.wait()
                self.wakeup.clear()
                while self.queue and not self.closed:
                    text, marker = self.queue.popleft()
                    await self.ws.send_str(text)
                    if marker is not None and self.user_id == bot_id:
                        self.hub.sent_at.setdefault(marker, time.monotonic())


class Hub:
    """Every authenticated connection, by user, and the event broadcast."""

    def __init__(self, backend: WsBackend, bot_id: str, send_queue_limit: int | None) -> None:
        self.backend = backend
        self.bot_id = bot_id
        self.send_queue_limit = send_queue_limit
        self.by_user: dict[str, list[Connection]] = {}
        self.connections: set[Connection] = set()
        self.deaf = False
        self.sent_at: dict[str, float] = {}

    def register(self, conn: Connection, user_id: str) -> None:
        """Authenticate a connection: hello (seq 0) first, then events."""
        conn.user_id = user_id
        first = user_id not in self.by_user
        self.by_user.setdefault(user_id, []).append(conn)
        data = {"connection_id": "", "server_version": VERSION_ID}
        conn.send_event(_prefix("hello", data, None, user_id, "", ""), None)
        if first:
            self.backend.on_connect(user_id)

    def unregister(self, conn: Connection) -> None:
        """Forget a connection that ended."""
        self.connections.discard(conn)
        uid = conn.user_id
        if uid is None:
            return
        conns = self.by_user.get(uid, [])
        if conn in conns:
            conns.remove(conn)
        if not conns:
            self.by_user.pop(uid, None)
            self.backend.on_disconnect(uid)

    def publish(self, event: str, data: JSON, *, user_id: str = "", channel_id: str = "",
                team_id: str = "", omit: str | None = None, marker: str | None = None) -> None:
        """Broadcast an event: to one user, or to a channel's members, or to everyone."""
        if self.deaf or not self.by_user:
            return
        if user_id:
            targets: Iterable[str] = (user_id,)
        elif channel_id:
            targets = self.backend.channel_member_ids(channel_id)
        else:
            targets = list(self.by_user)
        conns = [c for uid in targets if uid != omit for c in self.by_user.get(uid, ())]
        if not conns:
            return
        prefix = _prefix(event, data, {omit: True} if omit else None, user_id, channel_id, team_id)
        for conn in conns:
            conn.send_event(prefix, marker)

    def abort_all(self) -> None:
        """Drop every socket's TCP connection at once (no close frame)."""
        for conn in list(self.connections):
            conn.abort()

    async def close_all(self, code: int) -> None:
        """Close every socket with a close frame."""
        await asyncio.gather(*(c.close(code) for c in list(self.connections)))


def _prefix(event: str, data: JSON, omit: dict[str, bool] | None, user_id: str, channel_id: str,
            team_id: str) -> str:
    broadcast = {"omit_users": omit, "user_id": user_id, "channel_id": channel_id,
                 "team_id": team_id}
    # `data` is a Go map on the server, hence sorted keys; `broadcast` is a struct.
    return ('{"event":' + go_json(event) + ',"data":' + go_json({k: data[k] for k in sorted(data)})
            + ',"broadcast":' + go_json(broadcast) + ',"seq":')


def _ws_error(seq: int, error_id: str, message: str, status: int) -> JSON:
    reply: JSON = {"status": "FAIL"}
    if seq > 0:
        reply["seq_reply"] = seq
    reply["error"] = {"id": error_id, "message": message, "detailed_error": "",
                      "status_code": status}
    return reply


def bearer_token(request: web.Request) -> str:
    """The token of a request: `Authorization: Bearer|Token x`, or `?access_token=`."""
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return request.query.get("access_token", "")


async def websocket_endpoint(request: web.Request, hub: Hub, auth_deadline_s: float,
                             ) -> web.WebSocketResponse:
    """Serve one websocket. A bad or missing token still upgrades (101), as on the real server."""
    ws = web.WebSocketResponse(compress=False, autoping=True, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    conn = Connection(hub, ws, request.transport)
    hub.connections.add(conn)
    backend = hub.backend
    loop = asyncio.get_running_loop()
    deadline: asyncio.TimerHandle | None = None
    token = bearer_token(request)
    user_id = backend.user_for_token(token) if token else None
    if user_id is not None:
        hub.register(conn, user_id)
    else:
        # Unauthenticated sockets get no hello and are dropped without a close frame.
        deadline = loop.call_later(auth_deadline_s, conn.abort)
    writer = asyncio.create_task(conn.run_writer(), name="sandbox-ws-writer")
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                if conn.user_id is None:
                    if _challenge(conn, hub, msg.data) and deadline is not None:
                        deadline.cancel()
                else:
                    _serve_action(conn, backend, msg.data)
            elif msg.type is WSMsgType.ERROR:
                break
    finally:
        if deadline is not None:
            deadline.cancel()
        conn.closed = True
        hub.unregister(conn)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return ws


def _parse(text: str) -> dict[str, Any] | None:
    try:
        req = json.loads(text)
    except ValueError:
        return None
    return req if isinstance(req, dict) else None


def _challenge(conn: Connection, hub: Hub, text: str) -> bool:
    """Handle a frame on a socket that has not authenticated yet; True once it has."""
    req = _parse(text)
    if req is None or req.get("action") != "authentication_challenge":
        return False  # the server answers nothing before authentication
    data = req.get("data")
    token = data.get("token") if isinstance(data, dict) else None
    user_id = hub.backend.user_for_token(token) if isinstance(token, str) and token else None
    if user_id is None:
        conn.abort()
        return False
    seq = req.get("seq")
    hub.register(conn, user_id)
    conn.send_reply({"status": "OK", "seq_reply": seq if isinstance(seq, int) else 0})
    return True


def _serve_action(conn: Connection, backend: WsBackend, text: str) -> None:
    req = _parse(text)
    if req is None:
        return
    raw_seq = req.get("seq")
    seq = raw_seq if isinstance(raw_seq, int) and not isinstance(raw_seq, bool) else 0
    action = req.get("action")
    data = req.get("data") if isinstance(req.get("data"), dict) else {}
    assert isinstance(data, dict)
    if not isinstance(action, str) or not action:
        conn.send_reply(_ws_error(seq, "api.web_socket_router.no_action.app_error",
                                  "No websocket action.", 400))
        return
    if seq <= 0:
        conn.send_reply(_ws_error(0, "api.web_socket_router.bad_seq.app_error",
                                  "Invalid sequence for WebSocket message.", 400))
        return
    if action == "authentication_challenge":
        return  # a second challenge on an authenticated socket is ignored silently
    if action == "ping":
        conn.send_reply({"status": "OK", "seq_reply": seq,
                         "data": {"node_id": "", "server_time": int(time.time() * 1000),
                                  "text": "pong", "version": VERSION}})
        return
    assert conn.user_id is not None
    if action == "user_typing":
        channel_id = data.get("channel_id")
        if not isinstance(channel_id, str) or not channel_id:
            conn.send_reply(_ws_error(seq, "api.websocket_handler.invalid_param.app_error",
                                      "Invalid channel_id parameter.", 400))
            return
        parent = data.get("parent_id")
        try:
            backend.ws_user_typing(conn.user_id, channel_id, parent if isinstance(parent, str)
                                   else "")
        except AppError as err:
            conn.send_reply(_ws_error(seq, err.error_id, err.message, err.status))
            return
        conn.send_reply({"status": "OK", "seq_reply": seq})
        return
    if action in ("get_statuses", "get_statuses_by_ids"):
        ids = data.get("user_ids") if action == "get_statuses_by_ids" else None
        wanted = [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else None
        conn.send_reply({"status": "OK", "seq_reply": seq, "data": backend.ws_statuses(wanted)})
        return
    conn.send_reply(_ws_error(seq, "api.web_socket_router.bad_action.app_error",
                              "Unknown WebSocket action.", 500))
