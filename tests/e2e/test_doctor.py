"""End to end: `switchboard doctor` as an operator runs it, against the Mattermost and GLPI
simulators and a real Redmine. Each run checks the exit status, the FAIL line with its fix, and
that no secret appears anywhere in what the doctor printed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugin.sandbox.glpi import GLPISimulatorThread
from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread
from tests.servers.alertmanager_fixture import AlertmanagerFactory
from tests.servers.icinga import NODE_NAME as ICINGA_NODE
from tests.servers.icinga_fixture import IcingaFactory
from tests.servers.redmine import RedmineServer
from tests.servers.zabbix import ZabbixServer

from .harness import BOT_TOKEN, ROOT, SECRET, BotProcess, free_port

pytestmark = pytest.mark.e2e

GLPI_TOKEN = "doctor-glpi-user-token-0123"


@pytest.fixture
def sim(mm: SimulatorThread) -> MattermostSimulator:
    assert mm.simulator is not None
    return mm.simulator


@pytest.fixture
def glpi() -> Iterator[GLPISimulatorThread]:
    thread = GLPISimulatorThread(user_token=GLPI_TOKEN)
    thread.start()
    yield thread
    thread.stop()


class Result:
    """One `switchboard doctor` run: its exit status and its report, line by line."""

    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.code = done.returncode
        self.out = done.stdout
        self.err = done.stderr
        self.lines = done.stdout.splitlines()

    def level(self, level: str) -> list[str]:
        return [line[7:] for line in self.lines if line.startswith(f"[{level:>4}] ")]

    def line(self, level: str, *words: str) -> str:
        """The one line of `level` holding all of `words`."""
        found = [line for line in self.level(level) if all(w in line for w in words)]
        assert len(found) == 1, f"no single [{level}] line with {words}:\n{self.out}{self.err}"
        return found[0]


def run_doctor(sim: MattermostSimulator, tmp: Path, *, token: str = BOT_TOKEN,
               env: dict[str, str] | None = None, settings: dict[str, Any] | None = None,
               secrets: tuple[str, ...] = ()) -> Result:
    """`switchboard doctor` with the environment and configuration a bot process would get."""
    setup = BotProcess(sim, tmp, token=token, env=env, settings=settings)  # never started
    done = subprocess.run([sys.executable, "-m", "plugin.cli", "doctor", "-c",
                           str(setup.config)], cwd=ROOT, env=setup.env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    result = Result(done)
    for secret in (token, SECRET, *secrets):
        assert secret not in result.out + result.err, f"a secret was printed:\n{result.out}"
    assert result.lines and result.lines[-1].startswith("verdict: "), result.out + result.err
    return result


def glpi_env(glpi: GLPISimulatorThread) -> dict[str, str]:
    assert glpi.simulator is not None
    return {"GLPI_URL": glpi.simulator.api_url, "GLPI_USER_TOKEN": GLPI_TOKEN,
            "HELPDESK_TRACKER": "glpi"}


def test_a_wrong_bot_token_is_named_with_its_fix(sim: MattermostSimulator,
                                                 tmp_path: Path) -> None:
    wrong = "not-the-bot-token-0123456789"
    result = run_doctor(sim, tmp_path, token=wrong)
    assert result.code == 1
    failure = result.line("FAIL", "token")
    assert "401" in failure
    assert "personal access token" in failure and "EnableUserAccessTokens" in failure
    assert "MM_BOT_TOKEN (settings.mattermost.token)" in failure
    assert result.line("ok", "Mattermost answers at")
    assert result.lines[-1].startswith("verdict: NOT READY (1 failed")


@pytest.mark.parametrize("kind", ["glpi", "redmine"])
def test_an_unreachable_tracker_is_named_with_its_fix(sim: MattermostSimulator, tmp_path: Path,
                                                      kind: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    env = ({"GLPI_URL": f"{closed}/apirest.php", "GLPI_USER_TOKEN": GLPI_TOKEN}
           if kind == "glpi" else
           {"REDMINE_URL": closed, "REDMINE_API_KEY": "a" * 40, "REDMINE_PROJECT": "helpdesk",
            "HELPDESK_TRACKER": "redmine"})
    result = run_doctor(sim, tmp_path, env=env, secrets=(GLPI_TOKEN, "a" * 40))
    assert result.code == 1
    failure = result.line("FAIL", f"tracker {kind}")
    assert "cannot reach" in failure and "connection refused" in failure
    assert f"{kind.upper()}_URL (settings.trackers.{kind}.url)" in failure.partition("fix:")[2]
    assert len(result.level("FAIL")) == 1, result.out


def test_a_missing_ca_bundle_is_named_and_the_other_checks_go_on(
        sim: MattermostSimulator, glpi: GLPISimulatorThread, tmp_path: Path) -> None:
    missing = tmp_path / "private-ca.pem"
    result = run_doctor(sim, tmp_path, env=glpi_env(glpi), secrets=(GLPI_TOKEN,),
                        settings={"trackers": {"glpi": {"tls": {"ca_bundle": str(missing)}}}})
    assert result.code == 1
    failure = result.line("FAIL", "tracker glpi")
    assert f"the file {missing} does not exist" in failure
    assert "settings.trackers.glpi.tls.ca_bundle" in failure.partition("fix:")[2]
    assert "please report it" not in failure
    assert result.line("ok", "alert source generic")
    assert "Traceback" not in result.err, result.err


def test_a_public_url_with_an_impossible_port_ends_without_a_traceback(
        sim: MattermostSimulator, tmp_path: Path) -> None:
    setup = BotProcess(sim, tmp_path, env={"SWITCHBOARD_PUBLIC_URL": "http://127.0.0.1:99999"})
    done = subprocess.run([sys.executable, "-m", "plugin.cli", "doctor", "-c",
                           str(setup.config)], cwd=ROOT, env=setup.env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    # Named either by the configuration's checks or by the listener's.
    assert "settings.listener.public_url" in done.stdout + done.stderr, done.stdout


def test_a_healthy_setup_passes_with_the_bot_stopped_or_running(
        sim: MattermostSimulator, glpi: GLPISimulatorThread, tmp_path: Path) -> None:
    assert glpi.simulator is not None
    result = run_doctor(sim, tmp_path, env=glpi_env(glpi), secrets=(GLPI_TOKEN,))
    assert result.code == 0, result.out + result.err
    assert result.level("FAIL") == []
    assert result.line("ok", "signed in as @switchboard")
    assert result.line("ok", "@switchboard is a bot account")
    assert result.line("ok", "websocket event stream says hello")
    assert result.line("ok", "where the doctor listened for a moment")
    assert result.line("ok", "tracker glpi: API session opened as helpdesk, and closed")
    # The sandbox bot is no system admin: the server's setting is left to check by hand.
    assert "AllowedUntrustedInternalConnections" in result.line("warn", "127.0.0.1")
    assert result.lines[-1].startswith("verdict: ready")
    paths = [r.path for r in glpi.simulator.request_log]
    assert paths[-1].endswith("/killSession"), paths

    bot = BotProcess(sim, tmp_path, env=glpi_env(glpi)).start()
    try:
        bot.wait_ready()
        again = run_doctor(sim, tmp_path, env=bot.env, secrets=(GLPI_TOKEN,))
    finally:
        assert bot.stop() == 0, bot.log()
    assert again.code == 0, again.out
    assert again.line("ok", "leads to the running bot on 127.0.0.1:")


def test_server_settings_and_memberships_are_checked_with_their_fixes(
        mm: SimulatorThread, sim: MattermostSimulator, tmp_path: Path) -> None:
    # A system admin's token can read the server's configuration.
    made_admin = httpx.put(f"{sim.url}/api/v4/users/{sim.bot_id}/roles",
                           json={"roles": "system_user system_admin"},
                           headers={"Authorization": f"Bearer {sim.token('admin')}"})
    assert made_admin.status_code == 200, made_admin.text
    service = sim.server_config["ServiceSettings"]
    service["AllowedUntrustedInternalConnections"] = "chat.example.org, 10.0.0.0/8"
    env = {"ALERTS_CHANNEL": "sandbox/off-topic", "ALERTS_TOKEN": "doctor-alerts-token-0123"}
    result = run_doctor(sim, tmp_path, env=env)
    assert result.code == 1
    refused = result.line("FAIL", "Mattermost will refuse to call")
    assert "127.0.0.1 is a loopback address" in refused
    assert "add 127.0.0.1 there" in refused
    assert "'chat.example.org 10.0.0.0/8 127.0.0.1'" in refused
    absent = result.line("FAIL", "not a member of ~off-topic")
    assert "ALERTS_CHANNEL (settings.alerts.channel)" in absent
    assert "add @switchboard to ~off-topic" in absent
    assert len(result.level("FAIL")) == 2, result.out

    # Doing what the fixes say makes the doctor content.
    service["AllowedUntrustedInternalConnections"] = "chat.example.org 10.0.0.0/8 127.0.0.1"
    mm.call(sim.add_member("off-topic", "switchboard"))
    fixed = run_doctor(sim, tmp_path, env=env)
    assert fixed.code == 0, fixed.out
    assert fixed.line("ok", "AllowedUntrustedInternalConnections lets Mattermost call it")
    assert fixed.line("ok", "alerts go to ~off-topic (sandbox/off-topic)")

    missing = run_doctor(sim, tmp_path, env={"ALERTS_CHANNEL": "sandbox/no-such-channel"})
    assert missing.code == 1
    assert "no such team or channel" in missing.line("FAIL", "sandbox/no-such-channel")

    # The helpdesk's triage channel is checked the same way.
    triage = run_doctor(sim, tmp_path, env=dict(env, HELPDESK_TRIAGE_CHANNEL="sandbox/off-topic"))
    assert triage.line("ok", "new tickets go to ~off-topic (sandbox/off-topic)")
    elsewhere = run_doctor(sim, tmp_path, env=dict(env, HELPDESK_TRIAGE_CHANNEL="sandbox/nowhere"))
    assert "no such team or channel" in elsewhere.line("FAIL",
                                                       "new tickets go to 'sandbox/nowhere'")


def test_redmine_key_and_project_are_checked(sim: MattermostSimulator, tmp_path: Path,
                                             redmine_server: RedmineServer) -> None:
    env = {"REDMINE_URL": redmine_server.url, "REDMINE_PROJECT": redmine_server.project,
           "HELPDESK_TRACKER": "redmine"}
    wrong_key = "0123456789abcdef0123456789abcdef01234567"
    result = run_doctor(sim, tmp_path, env=env | {"REDMINE_API_KEY": wrong_key},
                        secrets=(wrong_key, redmine_server.admin_key))
    assert result.code == 1
    failure = result.line("FAIL", "tracker redmine")
    assert "Redmine rejected the API key (HTTP 401" in failure
    assert "REDMINE_API_KEY (settings.trackers.redmine.api_key)" in failure
    assert "My account > API access key" in failure

    good = env | {"REDMINE_API_KEY": redmine_server.admin_key}
    result = run_doctor(sim, tmp_path, env=good, secrets=(redmine_server.admin_key,))
    assert result.code == 0, result.out
    assert result.line("ok", "tracker redmine: API key of")
    assert result.line("ok", f"project {redmine_server.project!r}")

    result = run_doctor(sim, tmp_path, env=good | {"REDMINE_PROJECT": "no-such-project"},
                        secrets=(redmine_server.admin_key,))
    assert result.code == 1
    failure = result.line("FAIL", "tracker redmine")
    assert "sees no project 'no-such-project'" in failure
    assert "set REDMINE_PROJECT (settings.trackers.redmine.project)" in failure


def test_monitoring_sources_are_reached_with_their_credentials(
        sim: MattermostSimulator, tmp_path: Path, zabbix_server: ZabbixServer,
        icinga_factory: IcingaFactory, alertmanager_factory: AlertmanagerFactory) -> None:
    alertmanager = alertmanager_factory()
    icinga = icinga_factory("http://127.0.0.1:9/unused", "unused-token-0123")
    env = {"ALERTS_TOKEN": "doctor-alerts-token-0123", "ALERTS_CHANNEL": "sandbox/town-square",
           "ALERTMANAGER_URL": alertmanager.url, "ZABBIX_URL": zabbix_server.url,
           "ZABBIX_API_TOKEN": zabbix_server.api_token, "ICINGA_URL": icinga.url,
           "ICINGA_USER": icinga.username, "ICINGA_PASSWORD": icinga.password}
    secrets = (zabbix_server.api_token, icinga.password)
    result = run_doctor(sim, tmp_path, env=env, secrets=secrets)
    assert result.code == 1
    assert result.line("ok", "alert source alertmanager: Alertmanager")
    assert result.line("ok", "alert source zabbix: API token accepted")
    # Icinga's API certificate comes from its own CA, which this host does not trust.
    untrusted = result.line("FAIL", "alert source nagios")
    assert "TLS certificate not trusted" in untrusted
    assert "settings.alerts.sources.nagios.tls.ca_bundle" in untrusted
    assert len(result.level("FAIL")) == 1, result.out
    # Trusting the CA is not enough: the certificate names the node, not 127.0.0.1.
    ca = {"alerts": {"sources": {"nagios": {"tls": {"ca_bundle": icinga.ca_file}}}}}
    result = run_doctor(sim, tmp_path, env=env, settings=ca, secrets=secrets)
    named = result.line("FAIL", "alert source nagios")
    assert "TLS certificate made for another host name" in named
    assert "ICINGA_URL (settings.alerts.sources.nagios.url)" in named
    assert "settings.alerts.sources.nagios.tls.server_name" in named
    # ... and naming the node the certificate was made for is.
    ca["alerts"]["sources"]["nagios"]["tls"]["server_name"] = ICINGA_NODE
    result = run_doctor(sim, tmp_path, env=env, settings=ca, secrets=secrets)
    assert result.code == 0, result.out
    assert result.line("ok", "alert source nagios: Icinga")

    trusted = {"alerts": {"sources": {"nagios": {"tls": {"insecure": True}}}}}
    result = run_doctor(sim, tmp_path, env=env, settings=trusted, secrets=secrets)
    assert result.code == 0, result.out
    assert result.line("ok", "alert source nagios: Icinga")

    wrong = env | {"ZABBIX_API_TOKEN": "feedface" * 8, "ICINGA_PASSWORD": "not-the-password"}
    result = run_doctor(sim, tmp_path, env=wrong, settings=trusted,
                        secrets=(*secrets, "feedface" * 8, "not-the-password"))
    assert result.code == 1
    assert "ZABBIX_API_TOKEN (settings.alerts.sources.zabbix.api_token)" in result.line(
        "FAIL", "alert source zabbix")
    refused = result.line("FAIL", "alert source nagios")
    assert "rejected the API user's credentials" in refused
    assert "ICINGA_PASSWORD (settings.alerts.sources.nagios.api_password)" in refused
