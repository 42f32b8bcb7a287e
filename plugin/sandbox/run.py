"""`switchboard run` with no Mattermost configured: the built-in sandbox.

Starts the Mattermost simulator on 127.0.0.1, the real bot against it, and a terminal chat in which
a person talks to the bot as `alice`. The bot's log goes to a file so the chat stays readable.

The simulators keep everything in memory, so each run starts with empty servers; the bot's state
starts empty with them (its own file, `sandbox.db` beside the configured state file, cleared at
start), or it would remember tickets and posts the servers no longer have. Nothing else in the
state folder is touched, and a run against a real Mattermost never comes here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

from pydantic import SecretStr

from .. import logs
from ..app import Bot, BotError
from ..config import Config, GLPISettings
from ..handlers import default_features
from ..store import is_database_url
from ..trackers import build_trackers
from .console import Console
from .glpi import GLPISimulatorThread
from .mattermost import SimulatorThread

SANDBOX_BOT_TOKEN = "sandbox-bot-token"
#: The sandbox's state file, beside the configured one; it lives as long as one run.
SANDBOX_DB = "sandbox.db"


class SandboxBusy(Exception):
    """Another sandbox runs from the same state folder."""


@contextlib.contextmanager
def fresh_state(state_dir: Path) -> Iterator[Path]:
    """The sandbox's own state file, emptied, held for the run; yields its path.

    Only the sandbox's files are removed (`sandbox.db` and SQLite's companions of it). A lock
    file keeps a second sandbox started from the same folder from emptying the state of the
    first: it raises SandboxBusy instead."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "sandbox.lock", "w", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SandboxBusy(f"another sandbox is running from {state_dir}") from None
        db = state_dir / SANDBOX_DB
        for suffix in ("", "-wal", "-shm", "-journal"):
            db.with_name(db.name + suffix).unlink(missing_ok=True)
        yield db


def run_sandbox(config: Config, *, console: bool = True) -> int:
    s = config.settings
    # The sandbox keeps a fresh file of its own, whatever store is named (a database URL too).
    state_dir = Path("./state") if is_database_url(s.state.path) else Path(s.state.path).parent
    try:
        with fresh_state(state_dir) as db:
            if s.state.path != ":memory:":
                state = s.state.model_copy(update={"path": str(db)})
                config = config.model_copy(update={"settings": s.model_copy(
                    update={"state": state})})
            return _run(config, state_dir, console)
    except SandboxBusy as exc:
        print(f"switchboard: {exc}; leave it (/quit) before starting another.",
              file=sys.stderr)
        return 1


def _run(config: Config, state_dir: Path, console: bool) -> int:
    s = config.settings
    log_path = state_dir / "sandbox.log"
    port = int(os.environ.get("SWITCHBOARD_SANDBOX_PORT", "0"))
    sim_thread = SimulatorThread(bot_token=SANDBOX_BOT_TOKEN, port=port)
    sim = sim_thread.start()
    glpi_thread: GLPISimulatorThread | None = None
    try:
        config, glpi_thread = _simulated_trackers(config)
        # Buttons live no longer than the simulated server that shows them: one run.
        secret = s.security.secret.get_secret_value() or secrets.token_urlsafe(32)
        with open(log_path, "a", encoding="utf-8") as log_file:
            logs.setup(s.logging.level, s.logging.format, [secret], stream=log_file)
            print(f"Switchboard sandbox: a simulated Mattermost at {sim.url}; "
                  f"the bot's log is in {log_path}.", flush=True)
            if glpi_thread is not None and glpi_thread.simulator is not None:
                print(f"A simulated GLPI answers at {glpi_thread.simulator.url}; "
                      "try `112 printer broken` in ~helpdesk.", flush=True)
            bot = Bot(config, default_features(config, build_trackers(config.settings)),
                      url=sim.url, token=SANDBOX_BOT_TOKEN, secret=secret)
            return asyncio.run(_main(bot, sim.url, console))
    finally:
        if glpi_thread is not None:
            glpi_thread.stop()
        sim_thread.stop()


def _simulated_trackers(config: Config) -> tuple[Config, GLPISimulatorThread | None]:
    """Point an unconfigured GLPI tracker at a simulated GLPI, so `112 ...` works at once."""
    s = config.settings
    glpi = s.trackers.get("glpi")
    if not isinstance(glpi, GLPISettings) or glpi.configured:
        return config, None
    thread = GLPISimulatorThread()
    sim = thread.start()
    simulated = glpi.model_copy(update={"url": sim.api_url,
                                        "user_token": SecretStr(sim.user_token)})
    trackers = dict(s.trackers) | {"glpi": simulated}
    settings = s.model_copy(update={"trackers": trackers})
    return config.model_copy(update={"settings": settings}), thread


async def _main(bot: Bot, url: str, console: bool) -> int:
    runner = asyncio.create_task(bot.run(), name="bot")
    chat: asyncio.Task[int] | None = None
    if console:
        chat = asyncio.create_task(Console(url, "alice-token").run(), name="console")
    waiting: set[asyncio.Task[None] | asyncio.Task[int]] = {runner}
    if chat is not None:
        waiting.add(chat)
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        if chat is not None:
            chat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chat
        try:
            runner.result()
        except BotError as exc:
            print(f"switchboard: {exc}", file=sys.stderr)
            return exc.exit_code
        return 0
    # The person left the chat: stop the bot cleanly.
    bot.stop()
    try:
        await runner
    except BotError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
