"""The narrow interface a feature reaches the running bot through.

A feature's start hooks receive a `Runtime`; handlers reach the same through their `Context`.
Nothing else of the bot is visible to a feature: it declares what it plugs in on its `Router`
and uses only what is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import i18n
from .dispatch import Dispatcher
from .locales import Locales
from .mattermost import MattermostAPI
from .metrics import Metrics
from .outbox import Outbox
from .signing import Signer
from .store import OutboxEntry, Store


class Runtime:
    """What features may use: the Mattermost API, the store, the outbox, signing, languages,
    metrics, background tasks and the bot's lifetime."""

    def __init__(self, *, api: MattermostAPI, store: Store, outbox: Outbox, signer: Signer,
                 locales: Locales, tasks: Dispatcher, stopping: asyncio.Event,
                 public_url: str, ephemeral_permission: bool, stream_enabled: bool,
                 help_text: Callable[[], str], apology: str = "",
                 metrics: Metrics | None = None,
                 leads: Callable[[], bool] = lambda: True) -> None:
        self.api = api
        #: The bot's Prometheus metrics: a feature counts what it does there.
        self.metrics = metrics if metrics is not None else Metrics()
        self.store = store
        self.outbox = outbox
        self.signer = signer
        #: Where Mattermost reaches the listener (known once the listener is up).
        self.public_url = public_url
        self.ephemeral_permission = ephemeral_permission
        #: False in webhook-only mode: no websocket, so no thread replies or DMs arrive.
        self.stream_enabled = stream_enabled
        #: When this run of the bot began (work queued before it is being resumed).
        self.started_at = time.time()
        self._locales = locales
        self._tasks = tasks
        self._stopping = stopping
        self._help_text = help_text
        self._apology = apology
        self._leads = leads

    # --- lifetime -------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def leads(self) -> bool:
        """Whether this replica leads those sharing the store (always, on an SQLite file):
        periodic looks at other systems (a tracker's tickets) are the leader's, and move with
        the leadership when a replica dies."""
        return self._leads()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the bot stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def spawn(self, coro: Awaitable[None], name: str = "background") -> Any:
        """Run work in the background; shutdown waits for it (then cancels it)."""
        return self._tasks.spawn(coro, name)

    # --- people ---------------------------------------------------------------------------------
    async def locale_of(self, user_id: str) -> str:
        """The language to write to this user in (their Mattermost locale when spoken)."""
        return await self._locales.locale_of(user_id)

    async def speak_to(self, user_id: str) -> None:
        """Answer in this user's language for the rest of the current task."""
        await self._locales.speak_to(user_id)

    def resumed(self, entry: OutboxEntry) -> bool:
        """Whether an outbox entry may have been carried out in part already (an earlier try,
        or a run that stopped): its executor looks before acting again."""
        return entry.attempts > 0 or entry.created_at < self.started_at

    def help_text(self) -> str:
        """What users can do, from every feature's declarations, in the language in force."""
        return self._help_text()

    def apology(self) -> str:
        """What a person is told when their request failed inside the bot."""
        return self._apology or i18n._(
            "Sorry, something went wrong while handling your message. It has been logged.")
