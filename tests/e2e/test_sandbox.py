"""`make run` with no Mattermost configured: the sandbox chat, driven as a person would."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .harness import ROOT, free_port

pytestmark = pytest.mark.e2e


#: A ticket's page in the sandbox's GLPI, as the terminal shows a link: its text, then its address.
GLPI_PAGE = r"\(http://[^\s()]+/front/ticket\.form\.php\?id="


def sandbox_env() -> dict[str, str]:
    """An environment with no Mattermost (nor tracker) configured, as on a first `make run`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MM_", "SWITCHBOARD_", "GLPI_", "REDMINE_", "HELPDESK_"))}
    return env | {"SWITCHBOARD_LISTEN": f"127.0.0.1:{free_port()}", "PYTHONIOENCODING": "utf-8",
                  "PYTHONPATH": str(ROOT)}


class Chat:
    def __init__(self, cwd: Path, config: Path = ROOT / "plugin.yaml") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plugin.cli", "run", "-c", str(config)],
            cwd=cwd, env=sandbox_env(), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8")
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

    def quit(self) -> None:
        self.type("/quit")
        assert self.proc.wait(20) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_the_sandbox_chat_answers_a_person(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    try:
        chat.expect("You are @alice in ~helpdesk.")
        chat.type("112 printer broken on floor 2")
        line = chat.expect("opened in GLPI: printer broken on floor 2")
        # Markdown and shortcodes as a terminal shows them (the output is not a terminal here).
        assert re.search(rf"@switchboard: 🎫 Ticket #1 {GLPI_PAGE}1\) opened in GLPI: printer "
                         r"broken on floor 2$", line), line
        chat.type("/r it is making noises too")
        chat.expect("(@switchboard reacted ✅)")
        # A bare number with no such button is a message: here, an incomplete `112`.
        chat.type("112")
        chat.expect("@switchboard: Describe the problem after `112`")
        # `/dm TEXT` sends TEXT to the bot in private, from where you are.
        chat.type("/dm help")
        chat.expect("[DM @switchboard (thread)] @switchboard (only you see this): Commands "
                    "(send them to me in a direct message):")
        chat.type("/dm")
        chat.expect("Now talking to @switchboard directly")
        chat.type("selftest")
        chat.expect("[1] Press me")
        chat.type("1")
        chat.expect("[DM @switchboard (thread)] @switchboard (only you see this): Clicks work.")
        chat.expect("Button check passed: @alice pressed it.")
        chat.type("1")  # the button is gone with the edit: now just a message
        chat.expect("@switchboard: I did not understand that.")
        chat.type("status 1")
        assert chat.expect("Status: New").startswith("    Status: New · Assigned to:")
        chat.quit()
        assert (tmp_path / "state" / "sandbox.log").exists()
    finally:
        chat.kill()


def test_an_expired_button_says_it_is_out_of_date(tmp_path: Path) -> None:
    shipped = (ROOT / "plugin.yaml").read_text()
    config = tmp_path / "plugin.yaml"
    config.write_text(shipped.replace("  security:\n", "  security:\n    action_ttl: 1\n", 1))
    assert config.read_text() != shipped
    chat = Chat(tmp_path, config)
    try:
        chat.expect("You are @alice in ~helpdesk.")
        chat.type("/dm selftest")
        chat.expect("[1] Press me")
        time.sleep(2.5)
        chat.type("1")
        line = chat.expect("(This button is out of date")
        assert "[1] Press me" in line and "Nothing was done." in line, line
        chat.quit()
        log = (tmp_path / "state" / "sandbox.log").read_text()
        assert "this button has expired" in log
    finally:
        chat.kill()


def test_each_run_starts_afresh_with_its_simulated_servers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # A real bot's state file in the same folder is none of the sandbox's business.
    (state / "switchboard.db").write_bytes(b"a real bot's state")
    first = Chat(tmp_path)
    try:
        first.expect("You are @alice in ~helpdesk.")
        first.type("112 first run's printer")
        line = first.expect("opened in GLPI: first run's printer")
        assert re.search(rf"Ticket #1 {GLPI_PAGE}1\) opened in GLPI: first run's printer$", line)
        first.type("112 first run's scanner")
        line = first.expect("opened in GLPI: first run's scanner")
        assert re.search(rf"Ticket #2 {GLPI_PAGE}2\) opened in GLPI: first run's scanner$", line)
        first.quit()
    finally:
        first.kill()
    log_before = (state / "sandbox.log").read_text()

    second = Chat(tmp_path)
    try:
        second.expect("You are @alice in ~helpdesk.")
        # One sandbox per state folder: a second one would clear the first one's state.
        third = subprocess.run(
            [sys.executable, "-m", "plugin.cli", "run", "-c", str(ROOT / "plugin.yaml")],
            cwd=tmp_path, env=sandbox_env(), input="", capture_output=True, text=True,
            timeout=60)
        assert third.returncode == 1, third
        assert "another sandbox is running" in third.stderr
        second.type("112 second run's printer")
        line = second.expect("opened in GLPI: second run's printer")
        assert re.search(rf"Ticket #1 {GLPI_PAGE}1\) opened in GLPI: second run's printer$", line)
        second.type("/dm my tickets")
        second.expect("Your open tickets (1):")
        line = second.expect(") second run's printer")
        assert re.search(rf"#1 {GLPI_PAGE}1\) second run's printer — ", line), line
        second.type("/dm status 2")
        second.expect("Ticket #2 was not found")
        second.quit()
    finally:
        second.kill()
    this_run = (state / "sandbox.log").read_text()[len(log_before):]
    assert "started as @switchboard" in this_run
    assert " WARNING " not in this_run and " ERROR " not in this_run, this_run
    assert (state / "switchboard.db").read_bytes() == b"a real bot's state"
