"""Log lines: text and JSON formats, the subject (post id, alert key) each line concerns, how it
follows work into tasks, threads and outbox runs, and secrets masked everywhere."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin import logs
from plugin.mattermost import MattermostAPI
from plugin.outbox import Outbox, Retry, subject_of
from plugin.store import OutboxEntry, SQLiteStore

SECRET = "tok-SECRET-0123456789"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) "
                       r"(?P<logger>[\w.]+)(?P<tag>:| \[[^\]]*\]) (?P<message>.*)$")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`logs.setup` replaces the root handlers: put pytest's back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def capture(fmt: str, secrets: tuple[str, ...] = (SECRET,), level: str = "DEBUG"
            ) -> io.StringIO:
    out = io.StringIO()
    logs.setup(level, fmt, secrets, stream=out)
    return out


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(out)]


# --- text -----------------------------------------------------------------------------------------
def test_text_line_names_its_post() -> None:
    out = capture("text")
    log = logging.getLogger("switchboard.helpdesk")
    with logs.about(post="abc123"):
        log.info("ticket request queued for %s", "glpi")
    [line] = lines(out)
    m = TEXT_LINE.match(line)
    assert m, line
    assert m["level"] == "INFO" and m["logger"] == "switchboard.helpdesk"
    assert m["tag"] == " [post=abc123]"
    assert m["message"] == "ticket request queued for glpi"


def test_text_line_without_a_subject_and_with_both_parts() -> None:
    out = capture("text")
    log = logging.getLogger("switchboard")
    log.warning("plain")
    with logs.about(alert="generic:disk-db1"), logs.about(post="p1"):
        log.info("both")
    with logs.about(alert="zabbix:42"):
        log.info("alert only")
    plain, both, alert = (TEXT_LINE.match(x) for x in lines(out))
    assert plain and plain["tag"] == ":" and plain["message"] == "plain"
    assert both and both["tag"] == " [post=p1 alert=generic:disk-db1]"
    assert alert and alert["tag"] == " [alert=zabbix:42]"


def test_text_message_stays_on_one_line() -> None:
    out = capture("text")
    logging.getLogger("switchboard").info("title: %s", "disk full\n2026-01-01 INFO forged")
    [line] = lines(out)
    assert line.endswith("title: disk full\\n2026-01-01 INFO forged")


def test_a_subject_from_outside_cannot_forge_a_line_or_close_its_tag() -> None:
    out = capture("text")
    forged = "abc] 2026-01-01 ERROR x\n2026-01-01 00:00:00,000 ERROR switchboard [post=z"
    with logs.about(post=forged, alert="generic:a b]"):
        logging.getLogger("switchboard").info("hello")
    [line] = lines(out)
    m = TEXT_LINE.match(line)
    assert m and m["message"] == "hello", line
    assert m["tag"].count("]") == 1 and "\n" not in line


def test_controls_and_unicode_line_breaks_are_escaped() -> None:
    out = capture("text")
    with logs.about(post="p\tpost=forged%5D", alert="a\u2028b"):
        logging.getLogger("switchboard").info("x\x1b[31m red \u2028 y \x85 z")
    [line] = out.getvalue().splitlines()  # splitlines breaks at \u2028 and \x85 too
    m = TEXT_LINE.match(line)
    assert m, line
    assert m["tag"] == " [post=p%09post=forged%255D alert=a%E2%80%A8b]"
    assert "\x1b" not in line and m["message"] == "x\\x1b[31m red \\u2028 y \\x85 z"


# --- JSON -----------------------------------------------------------------------------------------
def test_json_fields_with_and_without_a_subject() -> None:
    out = capture("json")
    log = logging.getLogger("switchboard.outbox")
    log.info("no subject")
    with logs.about(post="p9", alert="alertmanager:fp1"):
        log.warning("with %d parts", 2)
    with logs.about(alert="generic:k"):
        log.info("alert only")
    first, second, third = records(out)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["logger"] == "switchboard.outbox" and first["level"] == "INFO"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", first["time"])
    assert second == {"time": second["time"], "level": "WARNING",
                      "logger": "switchboard.outbox", "post_id": "p9",
                      "alert_key": "alertmanager:fp1", "message": "with 2 parts"}
    assert "post_id" not in third and third["alert_key"] == "generic:k"


def test_json_error_holds_the_traceback_on_the_same_line() -> None:
    out = capture("json", secrets=())
    with logs.about(post="p2"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("switchboard").exception("handler failed")
    [entry] = records(out)
    assert entry["post_id"] == "p2" and entry["message"] == "handler failed"
    assert "RuntimeError: boom" in entry["error"] and "Traceback" in entry["error"]


def test_explicit_extra_wins_over_the_context() -> None:
    out = capture("json")
    with logs.about(post="context-post"):
        logging.getLogger("switchboard").info("x", extra={"post_id": "given"})
    assert records(out)[0]["post_id"] == "given"


# --- secrets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_masked_in_message_exception_and_subject(fmt: str) -> None:
    out = capture(fmt)
    log = logging.getLogger("switchboard.alerts")
    with logs.about(post=f"p-{SECRET}", alert=f"generic:{SECRET}"):
        log.info("token is %s", SECRET)
        try:
            raise ValueError(f"bad {SECRET}")
        except ValueError:
            log.exception("failed")
    log.info("extra", extra={"alert_key": f"k-{SECRET}"})
    text = out.getvalue()
    assert SECRET not in text
    assert "[redacted]" in text
    if fmt == "json":
        first, second, third = records(out)
        assert first["message"] == "token is [redacted]"
        assert first["post_id"] == "p-[redacted]"
        assert first["alert_key"] == "generic:[redacted]"
        assert "ValueError: bad [redacted]" in second["error"]
        assert third["alert_key"] == "k-[redacted]"
    else:
        assert "[post=p-[redacted] alert=generic:[redacted]] token is [redacted]" in text
        assert "ValueError: bad [redacted]" in text


def test_a_bad_format_string_does_not_raise_in_the_caller() -> None:
    out = capture("text")
    logging.getLogger("switchboard").info("%s and %s", "only one")
    assert "unformattable arguments" in out.getvalue()


# --- where the subject goes -----------------------------------------------------------------------
def test_about_nests_and_restores() -> None:
    assert logs.subject() == ("", "")
    with logs.about(post="p"):
        with logs.about(alert="a"):
            assert logs.subject() == ("p", "a")
            with logs.about(post=""):
                assert logs.subject() == ("", "a")
        assert logs.subject() == ("p", "")
    assert logs.subject() == ("", "")


async def test_tasks_inherit_and_keep_their_own_subject() -> None:
    out = capture("json")
    log = logging.getLogger("switchboard.dispatch")
    both_started = asyncio.Event()
    started: list[str] = []

    async def job(post: str) -> None:
        logs.set_subject(post=post)
        started.append(post)
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 5)  # interleave the two tasks
        log.info("job %s", post)

    async def spawner() -> None:
        child = asyncio.create_task(asyncio.sleep(0))
        await child
        log.info("spawned")

    await asyncio.gather(job("one"), job("two"))
    assert logs.subject() == ("", "")  # set_subject inside a task stays in that task
    with logs.about(post="parent"):
        await asyncio.create_task(spawner())
    got = {r["message"]: r.get("post_id") for r in records(out)}
    assert got == {"job one": "one", "job two": "two", "spawned": "parent"}


async def test_rest_calls_in_threads_carry_the_subject() -> None:
    out = capture("json")
    api = MattermostAPI("http://127.0.0.1:9", "token-not-used", connections=2)
    try:
        def in_thread(_: object) -> str:
            logging.getLogger("switchboard.mattermost").warning("retrying")
            return logs.subject()[0]

        with logs.about(post="threaded"):
            assert await api.call(in_thread) == "threaded"
        assert await api.call(in_thread) == ""
    finally:
        api.close()
    first, second = records(out)
    assert first["post_id"] == "threaded" and "post_id" not in second


def test_outbox_entries_name_their_post_or_alert() -> None:
    assert subject_of({"post_id": "p1", "root_id": "r"}) == ("p1", "")
    assert subject_of({"source": "generic", "key": "disk-db1", "op": "ack"}) == (
        "", "generic:disk-db1")
    assert subject_of({"alert_key": "zabbix:7", "source": "x", "key": "y"}) == ("", "zabbix:7")
    assert subject_of({"text": "nothing to name"}) == ("", "")


async def test_outbox_runs_log_under_their_entry(tmp_path: Path) -> None:
    out = capture("json")
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    log = logging.getLogger("switchboard.helpdesk")
    attempts: dict[str, int] = {}

    async def execute(entry: OutboxEntry) -> None:
        attempts[entry.key] = attempts.get(entry.key, 0) + 1
        log.info("working on %s", entry.key)
        if entry.key == "ticket:p1" and attempts[entry.key] == 1:
            raise Retry("tracker down")
        await store.outbox.update(entry.key, state="done")

    box = Outbox(store, retry_initial=0.05, retry_max=0.1)
    box.register("job", execute)
    await box.put("ticket:p1", "job", {"post_id": "p1"})
    await box.put("alert-render:generic:k1", "job", {"source": "generic", "key": "k1"})
    stop = asyncio.Event()
    worker = asyncio.create_task(box.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while await store.outbox.counts() != {"done": 2}:
            assert asyncio.get_running_loop().time() < deadline, "the entries never finished"
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 5)
        await store.close()
    about_p1 = [r for r in records(out) if "ticket:p1" in r["message"]]
    about_k1 = [r for r in records(out) if "generic:k1" in r["message"]]
    # The worker's own lines (the attempt, the retry) and the executor's, each run.
    assert len(about_p1) >= 4 and len(about_k1) >= 2
    assert any(r["level"] == "WARNING" for r in about_p1)
    assert all(r.get("post_id") == "p1" and "alert_key" not in r for r in about_p1)
    assert all(r.get("alert_key") == "generic:k1" and "post_id" not in r for r in about_k1)
