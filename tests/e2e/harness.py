"""Runs the real `switchboard run` process against the Mattermost simulator over real sockets."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread
from tests.servers.common import free_low_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "plugin.yaml"
BOT_TOKEN = "e2e-bot-token-0123456789"
SECRET = "e2e-signing-secret-0123456789"

#: Short supervision intervals so that failure detection happens within a test's patience.
FAST: dict[str, Any] = {
    "stream": {"ping_interval": 1, "pong_timeout": 2, "transport_ping_interval": 1,
               "hello_timeout": 3, "idle_probe_after": 1.5, "probe_timeout": 1,
               "backoff_initial": 0.1, "backoff_max": 0.5, "stable_after": 5},
    "dispatch": {"shutdown_grace": 5},
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def free_port() -> int:
    """The bot's port: below the range of ports the system gives out for outgoing connections,
    so none of those takes it between this choice and the bot's start (which may be seconds
    away, when a server that needs the bot's URL starts first)."""
    return free_low_port()


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition",
               interval: float = 0.02) -> Any:
    """Poll until the predicate is truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def write_config(tmp: Path, settings: dict[str, Any] | None = None) -> Path:
    """The shipped plugin.yaml with test settings merged into `settings`."""
    data = yaml.safe_load(SHIPPED.read_text())
    data["settings"] = merge(data["settings"], merge(FAST, settings or {}))
    path = tmp / f"plugin-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class BotProcess:
    """One `switchboard run` subprocess; its stderr goes to a file the test can read."""

    def __init__(self, sim: MattermostSimulator, tmp: Path, *, token: str = BOT_TOKEN,
                 config: Path | None = None, env: dict[str, str] | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        self.sim = sim
        self.tmp = tmp
        self.port = free_port()
        self.config = config or write_config(tmp, settings)
        self.log_path = tmp / f"bot-{time.monotonic_ns()}.log"
        self.env = dict(os.environ)
        for var in list(self.env):
            if var.startswith(("MM_", "SWITCHBOARD_")):
                del self.env[var]
        self.env.update({
            "MM_URL": sim.url, "MM_BOT_TOKEN": token, "SWITCHBOARD_SECRET": SECRET,
            "SWITCHBOARD_LISTEN": f"127.0.0.1:{self.port}",
            "SWITCHBOARD_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "SWITCHBOARD_DB": str(tmp / "state.db"), "SWITCHBOARD_LOG_LEVEL": "DEBUG",
        })
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, cpus: set[int] | None = None) -> BotProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop/kill/wait_exit
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plugin.cli", "run", "-c", str(self.config)],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until /healthz says the stream is up."""
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the bot exited ({self.proc.returncode}):\n{self.log()}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, timeout, "the bot to become healthy")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            raise AssertionError(f"the bot did not stop on SIGTERM:\n{self.log()}") from None
        finally:
            self._log.close()
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()


def replies_to(sim: MattermostSimulator, root_id: str) -> list[dict[str, Any]]:
    """The bot's posts in the thread of `root_id`."""
    return [p for p in sim.posts()
            if p.get("root_id") == root_id and p.get("user_id") == sim.bot_id]


#: What may carry an address without Mattermost fetching it for a preview: a markdown link (not
#: an image) and code.
_LINKED = re.compile(r"(?<!!)\[(?:\\.|[^\\\[\]])*\]\((?:\\.|[^\\()\s])*\)"
                     r"|(`+)(?:(?!\n[ \t]*\n).)+?\1", re.DOTALL)
_BARE_URL = re.compile(r"(?:https?://|www\.)[^\s<>]*", re.IGNORECASE)


def bare_urls(message: str) -> list[str]:
    """The addresses in a message outside markdown links and code: what Mattermost would fetch
    for a link preview."""
    return _BARE_URL.findall(_LINKED.sub(" ", message))


def posts_with_bare_urls(sim: MattermostSimulator, users: tuple[str, ...] = ()) -> list[str]:
    """The bot's messages that carry a bare address: its posts in every channel, threads and
    direct messages included, and the ephemeral posts these users got."""
    messages = [p["message"] for p in sim.posts() if p.get("user_id") == sim.bot_id]
    messages += [p["message"] for user in users for p in sim.ephemerals(user)]
    return [m for m in messages if bare_urls(m)]


#: How long no further reply may come once every message has its one: longer than the bot's
#: first retry backoff, so a reply posted twice shows up within it.
QUIET_S = 1.5


def one_reply_each(sim: MattermostSimulator, posts: list[dict[str, Any]],
                   timeout: float = 20.0, quiet: float = QUIET_S) -> None:
    """Every post gets exactly one reply from the bot, in its thread: once each has a reply, the
    counts are watched for `quiet` seconds more, so a late second reply fails too."""
    def counts() -> dict[str, int]:
        return {p["id"]: len(replies_to(sim, p["id"])) for p in posts}

    def doubled(now: dict[str, int]) -> str:
        extra = {pid: n for pid, n in now.items() if n > 1}
        return f"more than one reply to {extra} (all counts: {now})"

    def all_answered() -> bool:
        now = counts()
        assert all(n <= 1 for n in now.values()), doubled(now)
        return all(now.values())

    wait_until(all_answered, timeout, f"a reply to each of {len(posts)} messages")
    settled = time.monotonic() + quiet
    while True:
        now = counts()
        assert all(n == 1 for n in now.values()), doubled(now)
        if time.monotonic() >= settled:
            return
        time.sleep(0.05)


__all__ = ["BOT_TOKEN", "QUIET_S", "SECRET", "BotProcess", "SimulatorThread", "bare_urls",
           "free_port", "one_reply_each", "posts_with_bare_urls", "replies_to", "wait_until",
           "write_config"]
