"""`make run` with no Mattermost configured: the sandbox chat, driven as a person would."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .harness import ROOT, free_port

pytestmark = pytest.mark.e2e


class Chat:
    def __init__(self, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MM_", "SWITCHBOARD_", "GLPI_", "REDMINE_", "HELPDESK_"))}
        env["SWITCHBOARD_LISTEN"] = f"127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plugin.cli", "run", "-c", str(ROOT / "plugin.yaml")],
            cwd=cwd, env=env | {"PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def expect(self, fragment: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no {fragment!r} on the screen; it shows:\n" + "\n".join(self.seen))


def test_the_sandbox_chat_answers_a_person(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    try:
        chat.expect("You are @alice in ~helpdesk.")
        chat.type("112 printer broken on floor 2")
        chat.expect("opened in GLPI: printer broken on floor 2")
        chat.type("/r it is making noises too")
        chat.expect("reacted :white_check_mark:")
        chat.type("/dm")
        chat.type("selftest")
        chat.expect("[1] Press me")
        chat.type("1")
        chat.expect("Button check passed: @alice pressed it.")
        chat.type("status 1")
        chat.expect("Status: **New**")
        chat.type("/quit")
        assert chat.proc.wait(20) == 0
        assert (tmp_path / "state" / "sandbox.log").exists()
    finally:
        if chat.proc.poll() is None:
            chat.proc.kill()
            chat.proc.wait()
