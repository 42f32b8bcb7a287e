"""Decisions on Nagios 4 and Naemon alerts, carried back as external commands.

The core reads commands from its external command file, a FIFO (`command_file` in
`nagios.cfg`, `/var/lib/nagios4/rw/nagios.cmd` on Debian; `check_external_commands=1`). Each
command is one line, `[<epoch>] NAME;arg;arg;…`, acted on within a fraction of a second:

- Acknowledge: `ACKNOWLEDGE_SVC_PROBLEM;host;service;2;1;0;author;comment` (sticky, notifying
  the contacts, so the acknowledgement comes back as a notification; not persistent), or
  `ACKNOWLEDGE_HOST_PROBLEM;host;2;1;0;author;comment`;
- Unacknowledge: `REMOVE_SVC_ACKNOWLEDGEMENT;host;service` / `REMOVE_HOST_ACKNOWLEDGEMENT;host`;
- Silence: a fixed downtime from now, `SCHEDULE_SVC_DOWNTIME;host;service;start;end;1;0;
  duration;author;comment` / `SCHEDULE_HOST_DOWNTIME;…`; ended early with
  `DEL_DOWNTIME_BY_HOST_NAME;host;service;start` (the core names downtimes by number only in
  its status file, so the start time is the handle);
- Resolve: not offered (a problem is resolved by its check).

A `;` or a line break in a name, author or comment would end the argument or the command: they
are replaced. The write is one `write(2)` of less than the pipe's atomic size, non-blocking: a
core that is not running (no reader) is `SourceUnavailable` at once.
"""

from __future__ import annotations

import asyncio
import math
import os
import stat
import time

from .alerts import Alert, SourceError, SourceUnavailable

#: A command longer than this could be split by the pipe (PIPE_BUF on Linux).
MAX_COMMAND = 4096


def _arg(text: str, limit: int = 255) -> str:
    """An argument that cannot end itself or the command."""
    return " ".join(text.replace(";", ",").split())[:limit]


class NagiosCommandFile:
    """An `AlertSource` writing to a Nagios 4 or Naemon external command file."""

    can_acknowledge = True
    can_silence = True
    can_resolve = False

    def __init__(self, path: str, *, name: str = "nagios", sticky: bool = True,
                 notify: bool = True) -> None:
        self.name = name
        self.path = path
        #: The acknowledgement's flags: sticky (2) or not (0); notifying the contacts or not.
        self._flags = f"{2 if sticky else 0};{1 if notify else 0};0"

    async def aclose(self) -> None:
        return None

    # ------------------------------------------------------------------ the operator's probe

    async def check(self) -> list[tuple[str, str]]:
        """For `switchboard doctor`: the command file is a FIFO this process may write, with the
        core reading it."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            raise SourceError(f"the command file {self.path} cannot be found ({exc.strerror}) "
                              "— fix: set `command_file` to the core's `command_file`, with "
                              "`check_external_commands=1`") from None
        if not stat.S_ISFIFO(info.st_mode):
            raise SourceError(f"{self.path} is not a FIFO — fix: `command_file` must name the "
                              "core's external command file")
        if not os.access(self.path, os.W_OK):
            raise SourceError(f"this process may not write {self.path} — fix: run the bot in "
                              "the core's command group (e.g. `nagios`)")
        await self._write("")  # opens for writing: fails when no core reads it
        return [("ok", f"the core reads {self.path}")]

    # ------------------------------------------------------------------ writing

    async def _write(self, command: str) -> None:
        line = f"[{int(time.time())}] {command}\n".encode() if command else b""
        if len(line) > MAX_COMMAND:
            raise SourceError("the command is too long for the command file")

        def write() -> None:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                if line and os.write(fd, line) != len(line):
                    raise BlockingIOError("short write")
            finally:
                os.close(fd)

        try:
            await asyncio.to_thread(write)
        except FileNotFoundError:
            raise SourceUnavailable(f"the command file {self.path} is gone") from None
        except OSError as exc:  # ENXIO: no core reads it; EAGAIN: the pipe is full
            raise SourceUnavailable(f"the core does not read {self.path} ({exc.strerror or exc})"
                                    ) from None

    def _target(self, alert: Alert) -> tuple[str, str]:
        host = _arg(str(alert.ref.get("host") or alert.host))
        service = _arg(str(alert.ref.get("service") or alert.service)) \
            if alert.ref.get("type", "Service" if alert.service else "Host") == "Service" else ""
        if not host:
            raise SourceError("the alert names no host to act on")
        return host, service

    # ------------------------------------------------------------------ AlertSource

    async def acknowledge(self, alert: Alert, who: str, comment: str) -> str:
        host, service = self._target(alert)
        author = _arg(who or "switchboard")
        text = _arg(comment or f"Acknowledged by {who}", 1000)
        if service:
            await self._write(f"ACKNOWLEDGE_SVC_PROBLEM;{host};{service};{self._flags};"
                              f"{author};{text}")
        else:
            await self._write(f"ACKNOWLEDGE_HOST_PROBLEM;{host};{self._flags};{author};{text}")
        return ""

    async def unacknowledge(self, alert: Alert, handle: str, who: str) -> None:
        host, service = self._target(alert)
        if handle:
            await self.unsilence(alert, handle, who)
        if service:
            await self._write(f"REMOVE_SVC_ACKNOWLEDGEMENT;{host};{service}")
        else:
            await self._write(f"REMOVE_HOST_ACKNOWLEDGEMENT;{host}")

    async def silence(self, alert: Alert, seconds: float, who: str) -> str:
        """A fixed downtime from now for `seconds`; the handle is its start time."""
        if not math.isfinite(seconds) or seconds <= 0:
            raise SourceError("a silence must last a positive number of seconds")
        host, service = self._target(alert)
        start = int(time.time())
        end, duration = start + math.ceil(seconds), math.ceil(seconds)
        comment = _arg(f"Silenced by {who} from the chat", 1000)
        author = _arg(who or "switchboard")
        if service:
            await self._write(f"SCHEDULE_SVC_DOWNTIME;{host};{service};{start};{end};1;0;"
                              f"{duration};{author};{comment}")
        else:
            await self._write(f"SCHEDULE_HOST_DOWNTIME;{host};{start};{end};1;0;{duration};"
                              f"{author};{comment}")
        return str(start)

    async def unsilence(self, alert: Alert, handle: str, who: str) -> None:
        """Ends the downtime that began at `handle` (the core ignores one already gone)."""
        if not handle.isdigit():
            return
        host, service = self._target(alert)
        await self._write(f"DEL_DOWNTIME_BY_HOST_NAME;{host};{service};{handle}")

    async def resolve(self, alert: Alert, who: str) -> None:
        raise SourceError("a Nagios problem is resolved by its check, not from the chat")
