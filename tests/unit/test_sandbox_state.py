"""The sandbox's state starts empty with its simulated servers; nothing else is ever cleared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugin import cli, logs
from plugin.sandbox import run
from plugin.sandbox.run import SANDBOX_DB, SandboxBusy, fresh_state

ROOT = Path(__file__).resolve().parents[2]


def fill(folder: Path, names: list[str]) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(f"contents of {name}".encode())
    return {name: (folder / name).read_bytes() for name in names}


def test_only_the_sandboxs_own_state_is_cleared(tmp_path: Path) -> None:
    state = tmp_path / "state"
    others = fill(state, ["switchboard.db", "switchboard.db-wal", "sandbox.log", "notes.txt",
                          "sandbox.db.bak"])
    fill(state, [SANDBOX_DB, f"{SANDBOX_DB}-wal", f"{SANDBOX_DB}-shm", f"{SANDBOX_DB}-journal"])
    with fresh_state(state) as db:
        assert db == state / SANDBOX_DB
        assert not any(p.name.startswith(SANDBOX_DB + "-") or p.name == SANDBOX_DB
                       for p in state.iterdir())
    assert {name: (state / name).read_bytes() for name in others} == others


def test_the_state_folder_is_made_when_missing(tmp_path: Path) -> None:
    with fresh_state(tmp_path / "new" / "state") as db:
        assert db.parent.is_dir()
        assert not db.exists()


def test_a_second_sandbox_on_the_same_state_is_refused_and_clears_nothing(
        tmp_path: Path) -> None:
    with fresh_state(tmp_path) as db:
        db.write_text("the first sandbox's state")
        with pytest.raises(SandboxBusy, match="another sandbox is running"), \
                fresh_state(tmp_path):
            pass  # pragma: no cover
        assert db.read_text() == "the first sandbox's state"
    with fresh_state(tmp_path):  # free again once the first has finished
        assert not db.exists()


def test_a_run_against_a_real_mattermost_clears_nothing(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    kept = fill(state, ["switchboard.db", SANDBOX_DB, f"{SANDBOX_DB}-wal", "sandbox.log"])
    for key, value in {"MM_URL": "http://127.0.0.1:9", "MM_BOT_TOKEN": "bot-token",
                       "SWITCHBOARD_SECRET": "a-secret-of-enough-length",
                       "SWITCHBOARD_PUBLIC_URL": "http://127.0.0.1:8470",
                       "SWITCHBOARD_DB": str(state / "switchboard.db")}.items():
        monkeypatch.setenv(key, value)
    started: list[Any] = []

    def run_bot(bot: Any) -> int:
        started.append(bot)
        return 0

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sandbox was started")

    monkeypatch.setattr(run, "fresh_state", never)
    monkeypatch.setattr(run, "run_sandbox", never)
    monkeypatch.setattr(cli, "run_bot", run_bot)
    monkeypatch.setattr(logs, "setup", lambda *args, **kwargs: None)  # leave logging be
    assert cli.main(["run", "-c", str(ROOT / "plugin.yaml")]) == 0
    assert len(started) == 1
    assert {name: (state / name).read_bytes() for name in kept} == kept
