"""`switchboard run` with no Mattermost configured: the built-in sandbox.

Starts the Mattermost simulator on 127.0.0.1, the real bot against it, and a terminal chat in which
a person talks to the bot as `alice`. The bot's log goes to a file so the chat stays readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from pydantic import SecretStr

from .. import logs
from ..app import Bot, BotError
from ..config import Config, GLPISettings
from ..handlers import default_features
from ..trackers import build_trackers
from .console import Console
from .glpi import GLPISimulatorThread
from .mattermost import SimulatorThread

SANDBOX_BOT_TOKEN = "sandbox-bot-token"


def run_sandbox(config: Config, *, console: bool = True) -> int:
    from ..cli import sandbox_secret

    s = config.settings
    state_dir = Path(s.state.path).parent
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "sandbox.log"
    port = int(os.environ.get("SWITCHBOARD_SANDBOX_PORT", "0"))
    sim_thread = SimulatorThread(bot_token=SANDBOX_BOT_TOKEN, port=port)
    sim = sim_thread.start()
    glpi_thread: GLPISimulatorThread | None = None
    try:
        config, glpi_thread = _simulated_trackers(config)
        secret = s.security.secret.get_secret_value() or sandbox_secret(state_dir)
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
