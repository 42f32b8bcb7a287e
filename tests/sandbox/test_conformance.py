"""Replays the traffic recorded on a real Mattermost 5.36.1 against the simulator, shape by shape.

Each fixture file in `tests/fixtures/mattermost/` (its README.md describes the format) is one
test. Its steps are replayed in order against a fresh simulator: REST calls as the recorded
actor, websocket frames on sockets opened as the recorded observer, and a local HTTP listener
standing in for the integration the recording used (it answers with the recorded replies).
Every answer is compared with the recorded one:

* status codes, the recorded response headers (present; some values equal), error ids and texts;
* JSON bodies and websocket frames: the same keys in the same order, recursively, with the same JSON
  types; strings that hold JSON (`data.post`, `data.mentions`, ...) are decoded and compared too;
* ids and timestamps may differ, but consistently: the first time a recorded id meets a simulator id
  they are paired, and every later appearance must agree (so a post's `user_id` really is alice's);
* a few values that mean something (`event`, `status`, error ids, post types, messages) must match.

The bot's socket is compared strictly: a frame it gets that the recording does not show fails the
test (that is how "the bot receives nothing" is checked). Other observers are partial in the
recordings, so their extra frames are skipped.

Nothing is skipped silently: a file is either replayed or listed in EXCLUDED_FILES, a step is either
replayed or listed in EXCLUDED_STEPS, each with its reason, and an unknown file fails the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from plugin.sandbox.mattermost import MattermostSimulator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mattermost"
#: The parameter that stands for the whole corpus when it is missing (so that a missing corpus
#: fails loudly instead of collapsing into an empty, skipped parametrization).
NO_CORPUS = "corpus-missing"

# -- what is not replayed, and why --------------------------------------------------------------

EXCLUDED_FILES: dict[str, str] = {
    "ws_05_reconnect_reliable_websockets.json":
        "Recorded with ServiceSettings.EnableReliableWebSockets=true (off by default, and it "
        "crashed 5.36.1 when switched at runtime). The simulator models the default config, "
        "where ?connection_id=&sequence_number= is ignored: ws_04 checks that.",
}

EXCLUDED_STEPS: dict[tuple[str, int], str] = {
    ("hook_01_outgoing_webhook.json", 6):
        "'ticket 6182 created' was posted by another client of the shared server answering '112'; "
        "none of the recorded requests caused it.",
    ("hook_01_outgoing_webhook.json", 12):
        "'ticket 6183 created' was posted by another client of the shared server (as step 6).",
}

# -- how the recorded world maps onto the sandbox -----------------------------------------------

SHARED = {"bot": "zxm8ahdigj86ffzfn1qm8p8koa", "alice": "1armgaum87gf5ny1cbz74f5xdc",
          "admin": "cbzgbb6ic7n49nmjtg8aj6pp6e", "team": "6hot3sh8f3g88ytx57rmpys87o",
          "channel": "bbnxqo4zujduf8khnj7rdjd13c", "public_no_bot": "nfmgt8i6dtrcbrrm7dorttwmqa",
          "private_no_bot": "bbps434o37ndmnpux3p6hyxawc", "dm_alice": "3axxowoibtd1uj8hobndwnupgy",
          "newuser": "5qzqigo5rjbtumhcm3esuh4duy"}
PRIVATE = {"bot": "ar3c5y8sktfbdcfggmuck4917o", "alice": "j6c1mg4bj3b68pjs7rs4x3p1hh",
           "admin": "antsn1tkdj8xfcpz8f4kwywetr", "team": "5eoq7z5bn7y8fx5egwuhoyodwy",
           "channel": "hrhsctoin3d37xged7nkuax3hy"}
#: Files recorded on the private instance (rate limiting on, other ids).
PRIVATE_FILES = {"ev_12_ephemeral_post.json", "rl_01_rate_limit.json"}
#: Names that differ between the recording and the sandbox, in texts and paths.
RENAMES = {"testbot": "switchboard", "dmprobe1795388313": "bob", "bot-test": "helpdesk"}
#: Lists whose content depends on the rest of the world (other channels of the shared server):
#: every element must have the shape of some recorded element, but lengths and order may differ.
LOOSE_LISTS = {("rest_01_users_teams_channels.json", 5), ("rest_01_users_teams_channels.json", 7)}

RECORDED_LISTENER = "http://127.0.0.1:46637"
RECORDED_INTEGRATION_TIMEOUT_S = 30.0
ID_TOKEN = re.compile(r"(?<![A-Za-z0-9])[a-z0-9]{26}(?![A-Za-z0-9])")
ID_RE = re.compile(r"^[a-z0-9]{26}$")
#: Keys whose string values must be equal (after RENAMES), not only of the same type.
VALUE_KEYS = {"event", "status", "channel_type", "type", "emoji_name", "response_type", "message",
              "sender_name", "trigger_word", "content_type", "method", "text", "user_name"}
FRAME_TIMEOUT_S = 5.0


def fixture_files() -> list[str]:
    """Every fixture file (a missing corpus is an error, not a skip)."""
    return sorted(p.name for p in FIXTURES.glob("*.json"))


def missing_corpus() -> str:
    return (f"no Mattermost conformance corpus in {FIXTURES}: the recorded *.json files and "
            f"their README.md belong in tests/fixtures/mattermost/ of this repository")


def test_corpus_is_present_and_fully_accounted_for() -> None:
    names = fixture_files()
    assert names, missing_corpus()
    assert (FIXTURES / "README.md").is_file(), f"{FIXTURES / 'README.md'} is missing"
    stale = set(EXCLUDED_FILES) - set(names)
    assert not stale, f"exclusions for files that do not exist: {stale}"
    for (name, index), reason in EXCLUDED_STEPS.items():
        steps = json.loads((FIXTURES / name).read_text())["steps"]
        assert 0 <= index < len(steps) and reason


# -- comparison ---------------------------------------------------------------------------------


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def rename(text: str) -> str:
    """A recorded text as it reads in the sandbox world."""
    for old, new in RENAMES.items():
        text = text.replace(old, new)
    return text


@dataclass
class Mapper:
    """Pairs recorded ids/timestamps with the simulator's, and translates requests."""

    ids: dict[str, str] = field(default_factory=dict)
    timestamps: dict[int, int] = field(default_factory=dict)
    delta: int | None = None

    def learn(self, recorded: str, actual: str, where: str, errors: list[str]) -> None:
        known = self.ids.get(recorded)
        if known is None:
            self.ids[recorded] = actual
        elif known != actual:
            errors.append(f"{where}: recorded id {recorded} was paired with {known}, "
                          f"now {actual}")

    def learn_time(self, recorded: int, actual: int) -> None:
        self.timestamps.setdefault(recorded, actual)
        if self.delta is None:
            self.delta = actual - recorded

    def text(self, value: str) -> str:
        """Translate ids, listener URLs and names inside a recorded string."""
        if value in self.ids:
            return self.ids[value]
        value = ID_TOKEN.sub(lambda m: self.ids.get(m.group(0), m.group(0)), value)
        return rename(value)

    def body(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.body(v) for v in value]
        if isinstance(value, dict):
            return {k: self.body(v) for k, v in value.items()}
        return value


class Comparator:
    """Recursive shape comparison that also learns the id pairing."""

    def __init__(self, mapper: Mapper, errors: list[str], loose: bool = False) -> None:
        self.mapper = mapper
        self.errors = errors
        self.loose = loose

    def fail(self, where: str, what: str) -> None:
        self.errors.append(f"{where}: {what}")

    def compare(self, rec: Any, act: Any, where: str, key: str = "") -> None:
        if json_type(rec) != json_type(act):
            self.fail(where, f"type {json_type(act)} ({act!r:.80}), recorded {json_type(rec)}")
            return
        if isinstance(rec, dict):
            self._dict(rec, act, where)
        elif isinstance(rec, list):
            self._list(rec, act, where)
        elif isinstance(rec, str):
            self._string(rec, act, where, key)
        elif isinstance(rec, bool):
            if rec != act:
                self.fail(where, f"{act} != recorded {rec}")
        elif isinstance(rec, int) and key.endswith("_at") and rec > 10**12 and act > 10**12:
            self.mapper.learn_time(rec, act)
        elif key == "status_code" and rec != act:
            self.fail(where, f"{act} != recorded {rec}")

    def _dict(self, rec: dict[str, Any], act: dict[str, Any], where: str) -> None:
        if rec and all(ID_RE.match(k) for k in rec):
            self._id_map(rec, act, where)
            return
        if list(rec) != list(act):
            self.fail(where, f"keys {list(act)} != recorded {list(rec)}")
        for k, v in rec.items():
            if k in act:
                self.compare(v, act[k], f"{where}.{k}", k)
        if {"id", "message", "detailed_error", "status_code"} <= rec.keys():
            for k in ("id", "message", "status_code"):
                if rec[k] != act.get(k):
                    self.fail(f"{where}.{k}", f"{act.get(k)!r} != recorded {rec[k]!r}")
            if rec["detailed_error"] == "" and act.get("detailed_error") != "":
                self.fail(f"{where}.detailed_error", "should be empty")

    def _id_map(self, rec: dict[str, Any], act: dict[str, Any], where: str) -> None:
        # A Go map keyed by ids: keys are written sorted; values compared pairwise.
        if list(act) != sorted(act):
            self.fail(where, "map keys not sorted")
        if len(rec) != len(act):
            self.fail(where, f"{len(act)} entries, recorded {len(rec)}")
        used = {self.mapper.ids[k] for k in rec if k in self.mapper.ids}
        spare = [k for k in act if k not in used]
        for k, v in rec.items():
            target = self.mapper.ids.get(k)
            if target is None and spare:
                target = spare.pop(0)
                self.mapper.ids[k] = target
            if target not in act:
                self.fail(where, f"no entry for recorded key {k}")
                continue
            self.compare(v, act[target], f"{where}[{k}]")

    def _list(self, rec: list[Any], act: list[Any], where: str) -> None:
        if self.loose:
            if bool(rec) != bool(act):
                self.fail(where, f"{len(act)} elements, recorded {len(rec)}")
            for i, a in enumerate(act):
                if not any(self._fits(r, a) for r in rec):
                    self.fail(f"{where}[{i}]", "matches no recorded element's shape")
            return
        if len(rec) != len(act):
            self.fail(where, f"{len(act)} elements, recorded {len(rec)}")
        for i, (r, a) in enumerate(zip(rec, act, strict=False)):
            self.compare(r, a, f"{where}[{i}]")

    def _fits(self, rec: Any, act: Any) -> bool:
        probe = Comparator(Mapper(), [], loose=True)
        probe.compare(rec, act, "")
        return not probe.errors

    def _string(self, rec: str, act: str, where: str, key: str) -> None:
        if rec[:1] in ("{", "[") and act[:1] in ("{", "["):
            try:
                rec_doc, act_doc = json.loads(rec), json.loads(act)
            except ValueError:
                pass
            else:
                self.compare(rec_doc, act_doc, where + "<json>")
                return
        if key in VALUE_KEYS and rename(rec) != act and not self.loose:
            self.fail(where, f"{act!r:.120} != recorded {rec!r:.120}")
        if self.loose:
            return
        if key == "trigger_id" or ID_RE.match(rec):
            if ID_RE.match(rec) and not ID_RE.match(act):
                self.fail(where, f"{act!r} is not an id (recorded {rec})")
                return
            self.mapper.learn(rec, act, where, self.errors)
            return
        rec_ids, act_ids = ID_TOKEN.findall(rec), ID_TOKEN.findall(act)
        if not rec_ids:
            return
        if len(rec_ids) != len(act_ids):
            self.fail(where, f"{act!r:.120} holds {len(act_ids)} ids, recorded {len(rec_ids)}")
            return
        known = {self.mapper.ids[r] for r in rec_ids if r in self.mapper.ids}
        if not known <= set(act_ids):
            self.fail(where, f"{act!r:.120} lacks the ids paired with {rec!r:.120}")
        spare = [a for a in act_ids if a not in known]
        for r in rec_ids:
            if r not in self.mapper.ids and spare:
                self.mapper.ids[r] = spare.pop(0)


# -- sockets and the integration listener -------------------------------------------------------


class Socket:
    """A websocket opened as one observer, collecting every frame it receives."""

    def __init__(self, name: str, strict: bool) -> None:
        self.name = name
        self.strict = strict
        self.ws: ClientConnection | None = None
        self.frames: deque[dict[str, Any]] = deque()
        self.arrived = asyncio.Event()
        self.ended = asyncio.Event()
        self.opened_at = 0.0
        self.ended_at = 0.0
        self.reader: asyncio.Task[None] | None = None
        self.challenge_token = ""
        self.last_seq = -1
        self.seq_errors: list[str] = []

    async def open(self, url: str, headers: dict[str, str]) -> ClientConnection:
        self.opened_at = time.monotonic()
        self.ws = await connect(url, additional_headers=headers, proxy=None, compression=None,
                                ping_interval=None, open_timeout=5)
        self.reader = asyncio.create_task(self._read())
        return self.ws

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for message in self.ws:
                frame = json.loads(message)
                if "event" in frame:
                    # Within one connection every event takes the next sequence number.
                    if frame.get("seq") != self.last_seq + 1:
                        self.seq_errors.append(f"{self.name}: seq {frame.get('seq')} after "
                                               f"{self.last_seq}")
                    self.last_seq = frame.get("seq", self.last_seq)
                elif "seq" in frame:
                    self.seq_errors.append(f"{self.name}: a reply carries seq: {frame}")
                self.frames.append(frame)
                self.arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.ended_at = time.monotonic()
            self.ended.set()
            self.arrived.set()

    async def next_frame(self, matches: Callable[[dict[str, Any]], bool],
                         skip: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + FRAME_TIMEOUT_S
        while True:
            while self.frames:
                frame = self.frames.popleft()
                if matches(frame):
                    return frame
                if not skip(frame):
                    raise AssertionError(f"{self.name} got an unexpected frame: {frame}")
            if self.ended.is_set():
                raise AssertionError(f"{self.name}'s socket ended while waiting")
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no expected frame within {FRAME_TIMEOUT_S} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    async def flush(self, user_id: str) -> list[dict[str, Any]]:
        """Round-trip a ping, then return what arrived before its reply (events are in order)."""
        assert self.ws is not None
        await self.ws.send(json.dumps({"action": "ping", "seq": 999999}))
        left: list[dict[str, Any]] = []

        def keep(f: dict[str, Any]) -> bool:
            left.append(f)
            return True

        frame = await self.next_frame(lambda f: f.get("seq_reply") == 999999, keep)
        assert frame["status"] == "OK"
        return [f for f in left if not incidental(f, user_id)]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader


def incidental(frame: dict[str, Any], user_id: str) -> bool:
    """Frames a recording may lack: the observer's own presence changes."""
    return frame.get("event") == "status_change" and frame["data"].get("user_id") == user_id


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Listener:
    """Stands in for the recorded integration: answers each path with its recorded replies."""

    def __init__(self, replies: dict[str, deque[dict[str, Any]]], delay_scale: float) -> None:
        self.replies = replies
        self.delay_scale = delay_scale
        self.received: dict[str, deque[Received]] = {}
        self.arrived = asyncio.Event()
        self.url = ""
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.setdefault(request.path, deque()).append(
            Received(request.method, request.path_qs, dict(request.headers), body))
        self.arrived.set()
        queue = self.replies.get(request.path)
        if not queue:
            return web.Response(status=599, text="no recorded reply left")
        reply = queue.popleft()
        await asyncio.sleep(float(reply.get("delay_s", 0)) * self.delay_scale)
        raw = reply["body"]
        data = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
        ctype = reply.get("headers", {}).get("Content-Type", "application/json")
        return web.Response(status=reply["status"], body=data, headers={"Content-Type": ctype})

    async def take(self, path: str) -> Received:
        deadline = time.monotonic() + FRAME_TIMEOUT_S
        while not self.received.get(path):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the integration was never called on {path}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return self.received[path].popleft()


# -- the replay ---------------------------------------------------------------------------------


@dataclass
class Replay:
    """State of one fixture file's replay."""

    name: str
    steps: list[dict[str, Any]]
    sim: MattermostSimulator
    http: aiohttp.ClientSession
    listener: Listener
    errors: list[str] = field(default_factory=list)
    mapper: Mapper = field(default_factory=Mapper)
    sockets: dict[str, Socket] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)
    connect_auth: dict[str, str] = field(default_factory=dict)
    clock: list[float] = field(default_factory=lambda: [0.0])

    def check(self, where: str, rec: Any, act: Any, *, loose: bool = False) -> None:
        Comparator(self.mapper, self.errors, loose).compare(rec, act, where)

    # REST ------------------------------------------------------------------------------------

    def request_body(self, index: int, body: Any) -> Any:
        if isinstance(body, dict) and body.get("dialog") == \
                "<same dialog object as in the first dialogs/open call above>":
            first = next(s for s in self.steps if s.get("kind") == "rest"
                         and s["request"]["path"].endswith("/dialogs/open"))
            body = {**body, "dialog": first["request"]["body"]["dialog"]}
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            m = re.fullmatch(r"<'(.)' repeated (\d+) times>", body["message"])
            if m:
                body = {**body, "message": m.group(1) * int(m.group(2))}
        body = self.mapper.body(body)
        return json.loads(json.dumps(body).replace(RECORDED_LISTENER, self.listener.url))

    def path(self, recorded: str) -> str:
        path = self.mapper.text(recorded)

        def since(m: re.Match[str]) -> str:
            value = int(m.group(1))
            return "since=" + str(self.resolve_time(value))
        return re.sub(r"since=(\d+)", since, path)

    def resolve_time(self, recorded: int) -> int:
        if recorded in self.mapper.timestamps:
            return self.mapper.timestamps[recorded]
        # A post's create_at named by a note: find that post in the recording, then ours.
        for step in self.steps:
            for post in iter_posts(step):
                if post.get("create_at") == recorded and post.get("id") in self.mapper.ids:
                    ours = self.mapper.ids[post["id"]]
                    for p in self.sim.posts():
                        if p["id"] == ours:
                            return int(p["create_at"])
        assert self.mapper.delta is not None, f"cannot translate timestamp {recorded}"
        return recorded + self.mapper.delta

    async def rest(self, index: int, step: dict[str, Any]) -> int:
        where = f"step {index} ({step.get('label') or step['request']['path']})"
        req, want = step["request"], step["response"]
        headers = {"X-Requested-With": "XMLHttpRequest"}
        actor = step["actor"]
        if actor == "invalid":
            headers["Authorization"] = "Bearer bogus-token-for-tests"
        elif actor != "anonymous":
            headers["Authorization"] = f"Bearer {self.tokens[actor]}"
        data: Any = None
        body = req.get("body")
        recorded_type = (req.get("headers") or {}).get("Content-Type", "")
        if recorded_type.startswith("multipart/form-data"):
            form = aiohttp.FormData()
            form.add_field("channel_id", self.mapper.ids[SHARED["channel"]])
            form.add_field("files", b"printer log line 1\n", filename="printer.txt",
                           content_type="text/plain")
            data = form
        elif isinstance(body, str):
            data = body.encode()
            headers["Content-Type"] = recorded_type or "application/json"
        elif body is not None:
            data = json.dumps(self.request_body(index, body)).encode()
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        async with self.http.request(req["method"], self.sim.url + self.path(req["path"]),
                                     data=data, headers=headers) as resp:
            raw = await resp.read()
            got_headers = resp.headers
            status = resp.status
        took = time.monotonic() - started
        if status != want["status"]:
            self.errors.append(f"{where}: status {status}, recorded {want['status']}: "
                               f"{raw[:300]!r}")
            return status
        if step.get("duration_ms", 0) >= RECORDED_INTEGRATION_TIMEOUT_S * 1000 - 1000:
            limit = self.sim.integration_timeout_s
            if not limit * 0.9 <= took <= limit * 2 + 1:
                self.errors.append(f"{where}: took {took:.2f} s, expected about {limit} s")
        self.check_headers(where, want.get("headers") or {}, got_headers, raw)
        rec_body = want.get("body")
        if isinstance(rec_body, dict) and "_identical_to_response_body_of_step" in rec_body:
            rec_body = self.steps[rec_body["_identical_to_response_body_of_step"]]["response"][
                "body"]
        if isinstance(rec_body, str):
            if raw.decode() != rec_body:
                self.errors.append(f"{where}: body {raw[:100]!r} != recorded {rec_body!r}")
            return status
        try:
            got = json.loads(raw)
        except ValueError:
            self.errors.append(f"{where}: body is not JSON: {raw[:200]!r}")
            return status
        if isinstance(rec_body, dict) and "_abbreviated" in rec_body:
            for key, value in rec_body.items():
                if key == "_abbreviated":
                    continue
                if key not in got:
                    self.errors.append(f"{where}: missing key {key}")
                else:
                    self.check(f"{where}.{key}", {key: value}, {key: got[key]})
            return status
        self.check(where, rec_body, got, loose=(self.name, index) in LOOSE_LISTS)
        if isinstance(got, dict) and "request_id" in got \
                and got["request_id"] != got_headers.get("X-Request-Id"):
            self.errors.append(f"{where}: request_id differs from X-Request-Id")
        return status

    def check_headers(self, where: str, want: dict[str, str], got: Any, raw: bytes) -> None:
        for name, value in want.items():
            if name not in got:
                self.errors.append(f"{where}: header {name} missing")
                continue
            exact = name in ("Content-Type", "Retry-After") or (
                name.startswith("X-Ratelimit") and self.name == "rl_01_rate_limit.json")
            if exact and got[name] != value:
                self.errors.append(f"{where}: {name} {got[name]!r} != recorded {value!r}")
            if name == "Set-Cookie" and got[name] != value.replace("REDACTED", ""):
                self.errors.append(f"{where}: Set-Cookie {got[name]!r}")
        # rest_* and rl_* keep every header: then the ids must be absent where they were.
        if want and self.name.startswith(("rest_", "rl_")):
            for name in ("X-Request-Id", "X-Version-Id"):
                if name not in want and name in got:
                    self.errors.append(f"{where}: {name} must be absent on this answer")

    # websocket --------------------------------------------------------------------------------

    async def ws_connect(self, index: int, step: dict[str, Any]) -> None:
        name = step["observer"]
        label = step.get("label", "")
        first = next(s for s in self.steps if s.get("kind") == "ws_connect")
        recorded_headers = step.get("request_headers") or first.get("request_headers") or {}
        auth = self.connect_auth.get(label, "header" if "Authorization" in recorded_headers
                                     else "none")
        headers: dict[str, str] = {}
        if auth == "header":
            headers["Authorization"] = f"Bearer {self.tokens[name]}"
        elif auth == "bogus":
            headers["Authorization"] = "Bearer bogus-token-for-tests"
        url = self.sim.url.replace("http://", "ws://") + self.mapper.text(step["url"])
        want = step["response"]["status"]
        if want != 101:
            await self.refused_upgrade(index, step, headers)
            return
        sock = Socket(name, strict=name == "bot")
        sock.challenge_token = "bogus-token-for-tests" if "invalid" in label else self.tokens[name]
        try:
            ws = await sock.open(url, headers)
        except InvalidStatus as exc:
            self.errors.append(f"step {index}: upgrade answered {exc.response.status_code}")
            return
        if ws.response is None or ws.response.status_code != 101:
            self.errors.append(f"step {index}: no 101")
        for header in step["response"].get("headers", {}):
            if ws.response is not None and header not in ws.response.headers:
                self.errors.append(f"step {index}: upgrade header {header} missing")
        self.sockets[name] = sock

    async def refused_upgrade(self, index: int, step: dict[str, Any],
                              headers: dict[str, str]) -> None:
        headers = {**headers, "Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
        async with self.http.get(self.sim.url + step["url"], headers=headers) as resp:
            raw = await resp.read()
            if resp.status != step["response"]["status"]:
                self.errors.append(f"step {index}: upgrade answered {resp.status}")
            self.check_headers(f"step {index}", {k: v for k, v in
                                                 step["response"]["headers"].items()
                                                 if k not in ("Date", "Content-Length")},
                               resp.headers, raw)
            if raw.decode() != step["response"]["body"]:
                self.errors.append(f"step {index}: body {raw!r}")

    async def ws_send(self, index: int, step: dict[str, Any]) -> None:
        sock = self.sockets[step["observer"]]
        frame = self.mapper.body(step["frame"])
        data = frame.get("data")
        if frame.get("action") == "authentication_challenge" and isinstance(data, dict) \
                and "token" in data:
            data["token"] = sock.challenge_token
        assert sock.ws is not None
        await sock.ws.send(json.dumps(frame))

    async def ws_recv(self, index: int, step: dict[str, Any]) -> None:
        sock = self.sockets[step["observer"]]
        where = f"step {index} ({step['observer']} frame)"
        uid = self.user_ids[step["observer"]]
        if "frame_omitted" in step:
            summary = step["frame_omitted"]
            rec_frame: dict[str, Any] = {"event": summary["event"]}
        else:
            rec_frame = step["frame"]

        def matches(frame: dict[str, Any]) -> bool:
            if "event" in rec_frame:
                return bool(frame.get("event") == rec_frame["event"])
            if "seq_reply" in rec_frame:
                return bool(frame.get("seq_reply") == rec_frame["seq_reply"])
            return "event" not in frame and "seq_reply" not in frame

        def skip(frame: dict[str, Any]) -> bool:
            return not sock.strict or incidental(frame, uid)

        try:
            frame = await sock.next_frame(matches, skip)
        except AssertionError as exc:
            self.errors.append(f"{where}: {exc}")
            return
        if "frame_omitted" in step:
            post = json.loads(frame["data"]["post"])
            self.mapper.learn(step["frame_omitted"]["post_id"], post["id"], where, self.errors)
            return
        self.check(where, rec_frame, frame)

    async def ws_client_close(self, index: int, step: dict[str, Any]) -> None:
        sock = self.sockets[step["observer"]]
        assert sock.ws is not None
        await sock.ws.close(code=step["code"])

    async def ws_closed(self, index: int, step: dict[str, Any]) -> None:
        sock = self.sockets[step["observer"]]
        where = f"step {index} (socket end)"
        try:
            await asyncio.wait_for(sock.ended.wait(), self.sim.auth_deadline_s + 5)
        except TimeoutError:
            self.errors.append(f"{where}: the socket did not end")
            return
        assert sock.ws is not None
        code = sock.ws.close_code
        server_frame = sock.ws.protocol.close_rcvd is not None
        if code != step["close_code_seen_by_client"]:
            self.errors.append(f"{where}: close code {code}")
        if server_frame != step["server_sent_close_frame"]:
            self.errors.append(f"{where}: server close frame {server_frame}")
        leftovers = [f for f in sock.frames if not incidental(f, self.user_ids[sock.name])]
        if sock.strict and leftovers:
            self.errors.append(f"{where}: unexpected frames {leftovers}")
        # How long the server kept an unauthenticated socket (5 s recorded; scaled here).
        opened = next(s["t_ms"] for s in reversed(self.steps[:index])
                      if s.get("kind") == "ws_connect")
        recorded_s = (step["t_ms"] - opened) / 1000
        lived = sock.ended_at - sock.opened_at
        deadline = self.sim.auth_deadline_s
        if "client_sent_close_frame" in step and not step["client_sent_close_frame"]:
            if recorded_s >= 4.5 and not deadline * 0.8 <= lived <= deadline + 0.5:
                self.errors.append(f"{where}: lived {lived:.2f} s, deadline {deadline} s")
            if recorded_s < 0.5 and lived >= deadline * 0.8:
                self.errors.append(f"{where}: lived {lived:.2f} s, should end at once")

    # listener ---------------------------------------------------------------------------------

    async def listener_request(self, index: int, step: dict[str, Any]) -> None:
        where = f"step {index} (integration request {step['path']})"
        try:
            got = await self.listener.take(step["path"])
        except AssertionError as exc:
            self.errors.append(f"{where}: {exc}")
            return
        if got.method != step["method"]:
            self.errors.append(f"{where}: method {got.method}")
        for name, value in step["headers"].items():
            if name not in got.headers:
                self.errors.append(f"{where}: header {name} missing")
            elif name in ("User-Agent", "Accept", "Content-Type", "Accept-Encoding") \
                    and got.headers[name] != value:
                self.errors.append(f"{where}: {name} {got.headers[name]!r} != {value!r}")
            elif name == "Authorization" and not got.headers[name].startswith("Token "):
                self.errors.append(f"{where}: Authorization {got.headers[name]!r}")
        if "Authorization" not in step["headers"] and "Authorization" in got.headers:
            self.errors.append(f"{where}: unexpected Authorization header")
        if "body_json" in step:
            self.check(where, step["body_json"], json.loads(got.body))
        if "body_form" in step:
            self.check(where, step["body_form"], dict(parse_qsl(got.body.decode(),
                                                                keep_blank_values=True)))


def iter_posts(value: Any) -> Any:
    """Every recorded post object inside a step (bodies and frames, JSON strings included)."""
    if isinstance(value, str) and value.startswith("{\"id\""):
        with contextlib.suppress(ValueError):
            yield from iter_posts(json.loads(value))
    elif isinstance(value, dict):
        if "create_at" in value and "message" in value and "id" in value:
            yield value
        for v in value.values():
            yield from iter_posts(v)
    elif isinstance(value, list):
        for v in value:
            yield from iter_posts(v)


# -- per-file settings ----------------------------------------------------------------------------

SIM_OPTIONS: dict[str, dict[str, Any]] = {
    # A slow integration is given up on after 30 s on the real server; 1 s here.
    "int_04_button_slow_reply_timeout.json": {"integration_timeout_s": 1.0},
    # Trigger ids live 3 s on the real server; 1 s here, so the expiry step waits less.
    "dlg_01_open_and_submit.json": {"trigger_lifetime_s": 1.0},
}
#: ws_connect labels whose credentials are not what the recorded headers suggest.
CONNECT_AUTH = {"a_invalid_header": "bogus", "b_challenge_invalid": "none", "c_no_auth": "none",
                "d_challenge_without_token": "none"}


async def wait_trigger_expiry(replay: Replay) -> None:
    """dlg_01 waited more than 3 s before reusing the trigger id."""
    await asyncio.sleep(replay.sim.trigger_lifetime_s + 0.2)


async def earlier_history(replay: Replay) -> None:
    """rest_03's channel had older posts, which `prev_post_id` points at."""
    await replay.sim.post_as("admin", "helpdesk", "an older post")


BEFORE_STEP: dict[tuple[str, int], Callable[[Replay], Awaitable[None]]] = {
    ("dlg_01_open_and_submit.json", 22): wait_trigger_expiry,
    ("rest_03_posts_backfill_since_after.json", 0): earlier_history,
}
#: Files recorded while the bot's socket was connected. Its socket is opened for them even when
#: the recording shows no frame for it, because "the bot received nothing" is the finding.
BOT_OBSERVED = ("ev_", "int_", "dlg_", "cmd_", "hook_", "rest_02")


def replayable() -> list[str]:
    """The files to replay; NO_CORPUS alone when there are none, so that test_fixture fails."""
    return [n for n in fixture_files() if n not in EXCLUDED_FILES] or [NO_CORPUS]


@pytest.mark.parametrize("name", replayable())
async def test_fixture(name: str) -> None:
    if name == NO_CORPUS:
        pytest.fail(missing_corpus())
    data = json.loads((FIXTURES / name).read_text())
    steps: list[dict[str, Any]] = data["steps"]
    kinds = {s["kind"] for s in steps}
    assert kinds <= {"rest", "ws_connect", "ws_send", "ws_recv", "ws_client_close", "ws_closed",
                     "listener_request", "listener_reply", "note"}, f"unknown step kinds {kinds}"
    if name == "rl_01_rate_limit.json":
        await replay_rate_limit(steps)
        return
    private = name in PRIVATE_FILES
    options: dict[str, Any] = {"auth_deadline_s": 0.5, **SIM_OPTIONS.get(name, {})}
    if private:
        options.update(rate_limit_per_sec=10, rate_limit_burst=100)
    sim = MattermostSimulator(**options)
    await sim.start()
    replies: dict[str, deque[dict[str, Any]]] = {}
    for step in steps:
        if step["kind"] == "listener_reply":
            replies.setdefault(step["path"], deque()).append(step)
    listener = Listener(replies, sim.integration_timeout_s / RECORDED_INTEGRATION_TIMEOUT_S)
    await listener.start()
    async with aiohttp.ClientSession() as http:
        replay = Replay(name, steps, sim, http, listener, connect_auth=CONNECT_AUTH)
        try:
            await prepare_world(replay, private)
            await run_steps(replay)
            await final_checks(replay)
        finally:
            for sock in replay.sockets.values():
                with contextlib.suppress(Exception):
                    await sock.close()
            await listener.stop()
            await sim.stop()
    assert not replay.errors, f"{name}:\n  " + "\n  ".join(replay.errors)


async def prepare_world(replay: Replay, private: bool) -> None:
    """Pair the recorded world's ids with the sandbox's and open the observers' sockets."""
    sim, mapper = replay.sim, replay.mapper
    replay.tokens = {"bot": sim.bot_token, "alice": "alice-token", "admin": "admin-token",
                     "newuser": "bob-token"}
    replay.user_ids = {"bot": sim.bot_id, "alice": sim.user_id("alice")}
    world = PRIVATE if private else SHARED
    mapper.ids.update({world["bot"]: sim.bot_id, world["alice"]: sim.user_id("alice"),
                       world["admin"]: sim.user_id("admin"), world["team"]: sim.team_id,
                       world["channel"]: sim.channel_id("helpdesk")})
    if not private:
        mapper.ids[SHARED["public_no_bot"]] = sim.channel_id("off-topic")
        mapper.ids[SHARED["private_no_bot"]] = sim.create_channel(
            "private-no-bot", private=True, members=["alice", "admin"])
        mapper.ids[SHARED["newuser"]] = sim.user_id("bob")
        # alice's DM with the bot already existed on the recorded server.
        async with replay.http.post(sim.url + "/api/v4/channels/direct",
                                    json=[sim.bot_id, sim.user_id("alice")],
                                    headers={"Authorization": f"Bearer {sim.bot_token}"}) as r:
            assert r.status == 201
            mapper.ids[SHARED["dm_alice"]] = (await r.json())["id"]
    # Observers whose frames appear before any connection of their own are connected first.
    observers = ["bot"] if replay.name.startswith(BOT_OBSERVED) else []
    for step in replay.steps:
        if step["kind"] == "ws_connect":
            break
        if step["kind"] in ("ws_recv", "ws_send") and step["observer"] not in observers:
            observers.append(step["observer"])
    for name in observers:
        sock = Socket(name, strict=name == "bot")
        await sock.open(sim.url.replace("http://", "ws://") + "/api/v4/websocket",
                        {"Authorization": f"Bearer {replay.tokens[name]}"})
        hello = await sock.next_frame(lambda f: f.get("event") == "hello", lambda f: False)
        assert hello["seq"] == 0
        await sock.flush(replay.user_ids[name])
        replay.sockets[name] = sock


async def run_steps(replay: Replay) -> None:
    handlers: dict[str, Callable[[int, dict[str, Any]], Awaitable[object]]] = {
        "rest": replay.rest, "ws_connect": replay.ws_connect, "ws_send": replay.ws_send,
        "ws_recv": replay.ws_recv, "ws_client_close": replay.ws_client_close,
        "ws_closed": replay.ws_closed, "listener_request": replay.listener_request}
    previous_t = 0
    for index, step in enumerate(replay.steps):
        if (replay.name, index) in EXCLUDED_STEPS:
            continue
        hook = BEFORE_STEP.get((replay.name, index))
        if hook is not None:
            await hook(replay)
        handler = handlers.get(step["kind"])
        if handler is None:
            continue  # notes, and listener replies (served by the listener)
        if step["kind"] == "ws_connect":
            old = replay.sockets.get(step["observer"])
            if old is not None:
                replay.errors.extend(old.seq_errors)
        if step["kind"] == "rest" and step["t_ms"] > previous_t:
            # Distinct recorded instants stay distinct milliseconds (backfill relies on it).
            await asyncio.sleep(0.003)
        previous_t = step["t_ms"]
        await handler(index, step)


async def final_checks(replay: Replay) -> None:
    """Sequence numbers held, and the bot's socket got nothing the recording does not show."""
    for observer in replay.sockets.values():
        replay.errors.extend(observer.seq_errors)
    sock = replay.sockets.get("bot")
    if sock is None or sock.ended.is_set():
        return
    extra = await sock.flush(replay.sim.bot_id)
    if extra:
        replay.errors.append(f"the bot got frames the recording does not show: {extra}")


async def replay_rate_limit(steps: list[dict[str, Any]]) -> None:
    """rl_01: a 130-request burst, with the limiter's clock set to the recorded instants."""
    now = [0.0]
    sim = MattermostSimulator(rate_limit_per_sec=10, rate_limit_burst=100, clock=lambda: now[0])
    await sim.start()
    errors: list[str] = []
    samples = {int(m.group(1)): (i, s) for i, s in enumerate(steps)
               if (m := re.search(r"request #(\d+)", s.get("label", "")))}
    known: list[tuple[int, int]] = sorted((n, s["t_ms"]) for n, (_, s) in samples.items())

    def instant(n: int) -> float:
        # Unsampled requests of the burst are spread evenly between the sampled ones.
        for (n1, t1), (n2, t2) in itertools.pairwise(known):
            if n1 <= n <= n2:
                return (t1 + (t2 - t1) * (n - n1) / (n2 - n1)) / 1000
        return known[-1][1] / 1000

    statuses: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            replay = Replay("rl_01_rate_limit.json", steps, sim, http, Listener({}, 0.0),
                            errors=errors)
            replay.tokens = {"bot": sim.bot_token}
            replay.mapper.ids[PRIVATE["bot"]] = sim.bot_id
            for n in range(1, max(samples) + 1):
                now[0] = instant(n)
                if n in samples:
                    index, step = samples[n]
                    statuses.append(await replay.rest(index, step))
                else:
                    async with http.get(sim.url + "/api/v4/users/me",
                                        headers={"Authorization": f"Bearer {sim.bot_token}"}) as r:
                        statuses.append(r.status)
            for index, step in enumerate(steps):
                if step["kind"] == "ws_connect":
                    now[0] = step["t_ms"] / 1000
                    await replay.refused_upgrade(index, step, {
                        "Authorization": f"Bearer {sim.bot_token}"})
                elif step["kind"] == "rest" and "request #" not in step.get("label", ""):
                    now[0] = step["t_ms"] / 1000
                    await replay.rest(index, step)
    finally:
        await sim.stop()
    findings = json.loads((FIXTURES / "rl_01_rate_limit.json").read_text())["findings"]
    assert statuses.count(200) == findings["statuses_in_burst"]["200"]
    assert statuses.count(429) == findings["statuses_in_burst"]["429"]
    assert not errors, "rl_01:\n  " + "\n  ".join(errors)
