"""Message filters: plain callables taking a `Message` and returning False (no match), True, or a
dict of captured values that become handler arguments.

A regex's named groups arrive under their names; `Keyword` captures the rest of the text as `text`.
A filter that captures values names them in a `captures` attribute: a handler may ask only for
names some filter of its route declares (see `plugin.arguments`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .events import Message

FilterResult = bool | dict[str, Any]
Filter = Callable[[Message], FilterResult]


class Keyword:
    """The message starts with one of the words, followed by a space or the end.

    Captures `keyword` (the word as configured) and `text` (the rest, stripped).
    """

    def __init__(self, *words: str, case_sensitive: bool = False) -> None:
        if not words:
            raise ValueError("Keyword needs at least one word")
        self.words = words
        flags = 0 if case_sensitive else re.IGNORECASE
        # Longest first, so that "112!" wins over "112".
        alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        self._re = re.compile(rf"\s*({alternatives})(?:\s+|$)", flags)
        self._lookup = {w if case_sensitive else w.lower(): w for w in words}
        self._case = case_sensitive
        self.captures = frozenset({"keyword", "text"})

    def __call__(self, msg: Message) -> FilterResult:
        m = self._re.match(msg.post.message)
        if m is None:
            return False
        found = m.group(1) if self._case else m.group(1).lower()
        return {"keyword": self._lookup[found], "text": msg.post.message[m.end():].strip()}

    def __repr__(self) -> str:
        return f"Keyword{self.words!r}"


class Regex:
    """The pattern matches (search, or fullmatch with `full=True`); named groups are captured."""

    def __init__(self, pattern: str | re.Pattern[str], *, full: bool = False) -> None:
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self._match = self.pattern.fullmatch if full else self.pattern.search
        self.captures = frozenset(self.pattern.groupindex) | {"match"}

    def __call__(self, msg: Message) -> FilterResult:
        m = self._match(msg.post.message)
        if m is None:
            return False
        return {k: v for k, v in m.groupdict().items()} | {"match": m}


def DirectOnly(msg: Message) -> FilterResult:
    """Only direct messages to the bot."""
    return msg.channel_type == "D"


def ChannelsOnly(msg: Message) -> FilterResult:
    """Only public and private channels (not DMs or group messages)."""
    return msg.channel_type in ("O", "P")


class InChannels:
    """Only in the named channels (by name or id)."""

    def __init__(self, channels: Iterable[str]) -> None:
        self.channels = frozenset(channels)

    def __call__(self, msg: Message) -> FilterResult:
        return msg.post.channel_id in self.channels or msg.channel_name in self.channels


class FromUsers:
    """Only from the named users (by username, with or without `@`, or by id)."""

    def __init__(self, users: Iterable[str]) -> None:
        self.users = frozenset(u.lstrip("@") for u in users)

    def __call__(self, msg: Message) -> FilterResult:
        return msg.post.user_id in self.users or msg.sender_name.lstrip("@") in self.users


def captures_of(filters: Iterable[Filter]) -> frozenset[str]:
    """Every name the filters declare they may capture."""
    names: set[str] = set()
    for f in filters:
        names.update(getattr(f, "captures", ()))
    return frozenset(names)


def apply(filters: Iterable[Filter], msg: Message) -> dict[str, Any] | None:
    """Run filters in order; None when one refuses, else the merged captures."""
    captured: dict[str, Any] = {}
    for f in filters:
        result = f(msg)
        if result is False:
            return None
        if isinstance(result, dict):
            captured.update(result)
    return captured
