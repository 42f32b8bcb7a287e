"""Logging set-up: text or JSON lines that name what they concern, with every secret masked.

Every line about a post or an alert names it: the code that starts work on one declares it with
`with logs.about(post=...)` (or `logs.set_subject(...)` at the top of a task of its own), and a
filter on the handler copies it onto each record. The subject lives in a context variable, so it
follows the work into the tasks it creates (asyncio copies the context at task creation); REST
calls (`plugin.mattermost`) run in the caller's task.

Text:  `2026-11-23 01:02:03,456 INFO switchboard.helpdesk [post=abc123] ticket #7 filed in glpi`
JSON:  `{"time": ..., "level": "INFO", "logger": ..., "post_id": "abc123", "message": ...}`
(`post_id` and `alert_key` appear only when set; a traceback goes in `error`).

Code never logs a secret on purpose; the mask is the second line of defence (an exception message
from a library, a URL someone pasted into a setting, an alert key chosen by a sender).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import IO

#: (post id, alert key) of the work under way; "" where there is none.
_subject: ContextVar[tuple[str, str]] = ContextVar("switchboard_log_subject", default=("", ""))


def _merge(post: str | None, alert: str | None) -> tuple[str, str]:
    """The current subject with the given parts replaced (None keeps a part, "" clears it)."""
    if post is None or alert is None:
        cur_post, cur_alert = _subject.get()
        return (cur_post if post is None else post, cur_alert if alert is None else alert)
    return (post, alert)


class About:
    """The context manager returned by `about`; restores the previous subject on exit."""

    __slots__ = ("_alert", "_post", "_token")

    def __init__(self, post: str | None, alert: str | None) -> None:
        self._post = post
        self._alert = alert
        self._token: Token[tuple[str, str]] | None = None

    def __enter__(self) -> None:
        self._token = _subject.set(_merge(self._post, self._alert))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._token is not None:
            _subject.reset(self._token)
            self._token = None


def about(post: str | None = None, alert: str | None = None) -> About:
    """Lines logged inside `with about(post=..., alert=...):` name that post and/or alert.

    A part left out (None) is kept from the enclosing subject, so an alert named inside the
    handling of a click on its post carries both; "" clears a part."""
    return About(post, alert)


def set_subject(post: str | None = None, alert: str | None = None) -> None:
    """Name the subject for the rest of the current task (each asyncio task has its own copy
    of the context, so this never leaks into the task that created it)."""
    _subject.set(_merge(post, alert))


def subject() -> tuple[str, str]:
    """The current (post id, alert key); "" for a part that is not set."""
    return _subject.get()


class SubjectFilter(logging.Filter):
    """Copies the current subject onto each record as `post_id` and `alert_key`.

    A value given explicitly (`extra={"post_id": ...}`) is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        post, alert = _subject.get()
        if not getattr(record, "post_id", ""):
            record.post_id = post
        if not getattr(record, "alert_key", ""):
            record.alert_key = alert
        return True


class RedactSecrets(logging.Filter):
    """Masks every configured secret in a record's message, traceback and subject."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            try:
                message = record.getMessage()
            except Exception:
                # A bad format string must not turn a log call into an error in the caller.
                message = f"{record.msg} (unformattable arguments)"
            record.msg = self._mask(message)
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self._mask(logging.Formatter().formatException(
                    record.exc_info))
                record.exc_info = None
            elif record.exc_text:
                record.exc_text = self._mask(record.exc_text)
            if record.stack_info:
                record.stack_info = self._mask(record.stack_info)
            for name in ("post_id", "alert_key"):
                value = getattr(record, name, "")
                if value and isinstance(value, str):
                    setattr(record, name, self._mask(value))
        return True


#: Control characters and everything some reader takes for a line break (tabs stay).
_BREAKS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
#: In a tag value, also what could end the tag or fake a field.
_TAG_UNSAFE = re.compile("[%\\]\\s\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return {"\n": "\\n", "\r": "\\r"}.get(c) or (
        f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")


def _one_line(text: str) -> str:
    """A message carrying outside text must not start what looks like a line of its own, nor
    carry terminal controls."""
    return _BREAKS.sub(_escape, text)


def _percent(m: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in m.group().encode())


def _tag_value(value: object) -> str:
    text = str(value or "")
    # The mask of a secret keeps its look; anything else that could end the tag, fake a field
    # or break the line is percent-escaped.
    return "[redacted]".join(_TAG_UNSAFE.sub(_percent, part)
                             for part in text.split("[redacted]"))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [post=… alert=…] message`; `time LEVEL logger: message` without a
    subject. The message stays on one line; a traceback follows on lines of its own."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Ids and keys can come from outside (a click names its post, a sender its alert key):
        # they must not close the tag or start a line of their own.
        post = _tag_value(getattr(record, "post_id", ""))
        alert = _tag_value(getattr(record, "alert_key", ""))
        if post and alert:
            tag = f" [post={post} alert={alert}]"
        elif post:
            tag = f" [post={post}]"
        elif alert:
            tag = f" [alert={alert}]"
        else:
            tag = ":"
        return (f"{record.asctime} {record.levelname} {record.name}{tag} "
                f"{_one_line(record.message)}")


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, post_id and alert_key (when set),
    message, and error (a traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname,
                 "logger": record.name}
        post = getattr(record, "post_id", "")
        if post:
            entry["post_id"] = str(post)
        alert = getattr(record, "alert_key", "")
        if alert:
            entry["alert_key"] = str(alert)
        entry["message"] = record.getMessage()
        if record.exc_text:
            entry["error"] = record.exc_text
        elif record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = (),
          stream: IO[str] | None = None) -> None:
    """Send every log line to `stream` (stderr) as text or JSON, naming its subject and
    masking `secrets`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    # The subject first, so that the mask covers it too.
    handler.addFilter(SubjectFilter())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries speak at WARNING and above only.
    for noisy in ("websockets", "aiohttp.access", "urllib3", "mattermostdriver", "httpx",
                  "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
