"""Which language to answer each person in: their Mattermost locale, cached for a while.

A person is answered in their locale when the catalogs speak it, otherwise in the configured
default. Looked-up locales are remembered for `language.locale_cache_seconds` and forgotten when
Mattermost says the user changed (`user_updated`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from . import i18n
from .mattermost import MattermostAPI, MattermostError

log = logging.getLogger("switchboard")


class Locales:
    #: Seconds a reply waits for its reader's locale before speaking the default language.
    WAIT = 2.0

    def __init__(self, api: MattermostAPI, cache_seconds: float) -> None:
        self.api = api
        self.cache_seconds = cache_seconds
        #: user id → (language, when looked up).
        self._known: dict[str, tuple[str, float]] = {}

    def user_changed(self, data: Any) -> None:
        """A `user_updated` event's data: that user's locale is read again next time."""
        user = data.get("user") if isinstance(data, dict) else None
        if isinstance(user, dict) and isinstance(user.get("id"), str):
            self._known.pop(user["id"], None)
            self.api.forget_user(user["id"])

    def _fresh(self, user_id: str) -> str | None:
        known = self._known.get(user_id)
        if known is not None and time.monotonic() - known[1] < self.cache_seconds:
            return known[0]
        return None

    async def locale_of(self, user_id: str) -> str:
        """The language to answer this user in."""
        if not user_id:
            return i18n.default()
        fresh = self._fresh(user_id)
        if fresh is not None:
            return fresh
        now = time.monotonic()
        known = self._known.get(user_id)
        if known is not None:
            self.api.forget_user(user_id)
        try:
            user = await self.api.user(user_id)
            lang = i18n.choose(str(user.get("locale") or ""))
        except MattermostError as exc:
            log.info("cannot read the locale of user %s: %s", user_id, exc)
            lang = known[0] if known is not None else i18n.default()
        self._known[user_id] = (lang, now)
        return lang

    async def speak_to(self, user_id: str) -> None:
        """Answer in this user's language for the rest of the current task (the default
        language when their locale cannot be read quickly: answers have deadlines)."""
        fresh = self._fresh(user_id)
        if fresh is not None:
            i18n.activate(fresh)  # the usual case: no task for a deadline
            return
        try:
            lang = await asyncio.wait_for(self.locale_of(user_id), self.WAIT)
        except TimeoutError:
            log.info("the locale of user %s took too long to read", user_id)
            lang = i18n.default()
        i18n.activate(lang)
