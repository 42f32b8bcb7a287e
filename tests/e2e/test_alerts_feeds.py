"""Alert feeds that reach the bot through `switchboard sendevt`: SNMP traps from a real
snmptrapd (Debian's), handed to `sendevt --format snmptrap` as its `traphandle`, sent with the
real `snmptrap`."""

from __future__ import annotations

import base64
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers.postfix_fixture import PostfixFactory
from tests.servers.snmptrapd_fixture import SnmptrapdFactory

from .harness import ROOT, wait_until
from .test_alerts import ALERTS_TOKEN, Env, field

pytestmark = pytest.mark.e2e

LINK_DOWN, LINK_UP = ".1.3.6.1.6.3.1.1.5.3", ".1.3.6.1.6.3.1.1.5.4"
IF_INDEX, IF_DESCR = ".1.3.6.1.2.1.2.2.1.1", ".1.3.6.1.2.1.2.2.1.2"


def trap_handler(tmp_path: Path, bot_url: str) -> Path:
    """The command snmptrapd runs per trap: `switchboard sendevt --format snmptrap`."""
    handler = tmp_path / "trap-handler"
    command = shlex.join([sys.executable, "-m", "plugin.cli", "sendevt", "--format", "snmptrap",
                          "--server", bot_url, "--max-retry", "3", "--retry-interval", "0.2"])
    handler.write_text(f"#!/bin/sh\ncd {shlex.quote(str(ROOT))} || exit 1\n"
                       f"exec {command} >> {shlex.quote(str(tmp_path / 'handler.log'))} 2>&1\n")
    handler.chmod(0o755)
    return handler


def test_snmp_traps_become_named_alerts_and_link_up_resolves_link_down(
        tmp_path: Path, snmptrapd_factory: SnmptrapdFactory) -> None:
    e = Env(tmp_path)
    try:
        trapd = snmptrapd_factory([str(trap_handler(tmp_path, e.bot.url))],
                                  env={"SWITCHBOARD_ALERTS_TOKEN": ALERTS_TOKEN})
        sent = time.monotonic()
        trapd.send_v2c(LINK_DOWN, (f"{IF_INDEX}.2", "i", "2"), (f"{IF_DESCR}.2", "s", "eth1"))
        title = "linkDown from 127.0.0.1 (ifIndex=2)"
        post = e.post(title, timeout=15)
        print(f"\nsnmptrap to its post: {time.monotonic() - sent:.2f} s")
        assert field(post, "Alert") == "linkDown" and field(post, "Severity") == "warning"
        assert field(post, "Host") == "127.0.0.1"
        assert field(post, "Labels") == "`trap=1.3.6.1.6.3.1.1.5.3`"
        assert f"{IF_DESCR[1:]}.2 = eth1" in post["props"]["attachments"][0]["text"]
        assert post["props"]["attachments"][0]["footer"] == "snmp alert"

        # The same trap again lands on the same post; another interface gets its own.
        trapd.send_v2c(LINK_DOWN, (f"{IF_INDEX}.2", "i", "2"), (f"{IF_DESCR}.2", "s", "eth1"))
        trapd.send_v2c(LINK_DOWN, (f"{IF_INDEX}.3", "i", "3"), (f"{IF_DESCR}.3", "s", "eth2"))
        e.post("linkDown from 127.0.0.1 (ifIndex=3)", timeout=15)
        assert len(e.alert_posts()) == 2

        # linkUp of interface 2 resolves its linkDown, and only that one.
        trapd.send_v2c(LINK_UP, (f"{IF_INDEX}.2", "i", "2"), (f"{IF_DESCR}.2", "s", "eth1"))
        wait_until(lambda: field(e.post(title), "Status") == "Resolved", 15, "the recovery")
        assert field(e.post("linkDown from 127.0.0.1 (ifIndex=3)"), "Status") == "Firing"
        assert len(e.alert_posts()) == 2
        log = (tmp_path / "handler.log").read_text()
        assert log.count("sent: ") == 4 and ALERTS_TOKEN not in log
    finally:
        e.close()


def sendevt(*args: str, data: bytes, token: str = "t") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "plugin.cli", "sendevt", *args], input=data,
                          cwd=ROOT, capture_output=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin", "SWITCHBOARD_ALERTS_TOKEN": token})


def test_a_handler_given_no_trap_exits_with_a_clear_error() -> None:
    bad = sendevt("--format", "snmptrap", "--server", "http://127.0.0.1:9",
                  data=b"not a trap\n")
    assert bad.returncode == 2 and b"not a trap from snmptrapd" in bad.stderr


JAPANESE_SUBJECT = "【障害】db1 ディスク使用率 95%"


def japanese_mail(subject: str, body: str) -> bytes:
    word = base64.b64encode(subject.encode("iso2022_jp")).decode()
    head = (f"From: monitor@example.jp\r\nTo: alerts@localhost\r\n"
            f"Subject: =?ISO-2022-JP?B?{word}?=\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n")
    return head.encode("ascii") + body.encode("iso2022_jp")


def test_monitoring_mail_through_sendevt_shows_its_japanese_subject(tmp_path: Path) -> None:
    e = Env(tmp_path)
    try:
        sent = sendevt("--format", "mail", "--server", e.bot.url, token=ALERTS_TOKEN,
                       data=b"From monitor@example.jp  Mon Dec  7 21:00:00 2026\n"
                            + japanese_mail(JAPANESE_SUBJECT, "使用率が閾値を超えました\n"))
        assert sent.returncode == 0, sent.stderr
        post = e.post(JAPANESE_SUBJECT, timeout=15)
        assert field(post, "Severity") == "high"  # 障害
        assert post["props"]["attachments"][0]["text"] == "使用率が閾値を超えました"
        assert post["props"]["attachments"][0]["footer"] == "mail alert"
        # The recovery mail of the same subject resolves the same post.
        recovered = sendevt("--format", "mail", "--server", e.bot.url, token=ALERTS_TOKEN,
                            data=japanese_mail("【復旧】db1 ディスク使用率 95%", "戻りました\n"))
        assert recovered.returncode == 0, recovered.stderr
        wait_until(lambda: any(field(p, "Status") == "Resolved" for p in e.alert_posts()),
                   15, "the recovery")
        assert len(e.alert_posts()) == 1
    finally:
        e.close()


def test_mail_exit_statuses_tell_the_mail_server_what_to_do() -> None:
    # Not a mail: bounced (65), nothing sent; the bot unreachable: deferred and retried (75).
    bad = sendevt("--format", "mail", "--server", "http://127.0.0.1:9", data=b"hello\n")
    assert bad.returncode == 65 and b"not a mail" in bad.stderr
    down = sendevt("--format", "mail", "--server", "http://127.0.0.1:9", "--max-retry", "0",
                   data=japanese_mail("PROBLEM: x", "y"))
    assert down.returncode == 75 and b"gave up" in down.stderr


def test_an_iso_2022_jp_mail_through_a_real_postfix_shows_its_japanese_subject(
        tmp_path: Path, postfix_factory: PostfixFactory) -> None:
    """postfix delivers a mail sent over SMTP to an alias piped to `sendevt --format mail`
    (run as `nobody`, as postfix runs it); the post shows the Japanese subject, and the
    recovery mail resolves it."""
    e = Env(tmp_path)
    try:
        postfix = postfix_factory(
            f"SWITCHBOARD_ALERTS_TOKEN={ALERTS_TOKEN} PYTHONPATH=\"$CODE\" exec /usr/bin/python3 "
            f"-m plugin.sendevt --format mail --server {e.bot.url} --max-retry 3 "
            "--retry-interval 0.2 >> \"$LOG\" 2>&1\n")
        sent = time.monotonic()
        postfix.send(japanese_mail(JAPANESE_SUBJECT, "使用率が閾値を超えました\n"))
        post = wait_until(lambda: next((p for p in e.alert_posts() if JAPANESE_SUBJECT in
                                        p["props"]["attachments"][0]["title"]), None), 30,
                          f"the mail's post\n{postfix.log_tail()}")
        print(f"\nSMTP to its post: {time.monotonic() - sent:.2f} s")
        assert post["props"]["attachments"][0]["text"] == "使用率が閾値を超えました"
        postfix.send(japanese_mail("【復旧】db1 ディスク使用率 95%", "戻りました\n"))
        wait_until(lambda: any(field(p, "Status") == "Resolved" for p in e.alert_posts()),
                   30, f"the recovery\n{postfix.log_tail()}")
        assert len(e.alert_posts()) == 1
    finally:
        e.close()
