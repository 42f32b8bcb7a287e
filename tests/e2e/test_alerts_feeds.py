"""Alert feeds that reach the bot through `switchboard sendevt`: SNMP traps from a real
snmptrapd (Debian's), handed to `sendevt --format snmptrap` as its `traphandle`, sent with the
real `snmptrap`."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest

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


def test_a_handler_given_no_trap_exits_with_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    bad = subprocess.run([sys.executable, "-m", "plugin.cli", "sendevt", "--format", "snmptrap",
                          "--server", "http://127.0.0.1:9"], input="not a trap\n", cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False,
                         env={"PATH": "/usr/bin:/bin", "SWITCHBOARD_ALERTS_TOKEN": "t"})
    assert bad.returncode == 2 and "not a trap from snmptrapd" in bad.stderr
