"""plugin.yaml: interpolation, validation with key paths, secrets kept out of messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plugin import config, review
from plugin.cli import main

SHIPPED = Path(__file__).resolve().parents[2] / "plugin.yaml"


def test_shipped_file_is_valid_and_reads_the_environment() -> None:
    env = {"MM_URL": "https://chat.example.org/", "MM_BOT_TOKEN": "tok-123456",
           "SWITCHBOARD_LISTEN": "0.0.0.0:9000", "SWITCHBOARD_SECRET": "s" * 32,
           "SWITCHBOARD_PUBLIC_URL": "https://bot.example.org", "SWITCHBOARD_DB": "/var/x.db"}
    c = config.load(SHIPPED, env)
    s = c.settings
    assert s.mattermost.url == "https://chat.example.org"
    assert s.mattermost.token.get_secret_value() == "tok-123456"
    assert (s.listener.host, s.listener.port) == ("0.0.0.0", 9000)
    assert s.listener.public_url == "https://bot.example.org"
    assert s.state.path == "/var/x.db"
    assert not s.sandbox
    assert review.check_runnable(c) == []
    assert c.manifest.min_server_version == "5.36.0"
    assert {e.key for e in c.manifest.settings_schema.settings} >= {
        "MM_URL", "MM_BOT_TOKEN", "SWITCHBOARD_LISTEN", "SWITCHBOARD_PUBLIC_URL",
        "SWITCHBOARD_SECRET", "SWITCHBOARD_DB"}


def test_empty_environment_means_sandbox() -> None:
    c = config.load(SHIPPED, {})
    assert c.settings.sandbox
    assert c.settings.state.path == "./state/switchboard.db"


def test_errors_name_the_key_path() -> None:
    text = SHIPPED.read_text().replace("ping_interval: 30", "ping_interval: -1").replace(
        "retries: 4", "retryz: 4")
    with pytest.raises(config.ConfigError) as err:
        config.parse(text, {})
    problems = err.value.problems
    assert "settings.stream.ping_interval: Input should be greater than 0" in problems
    assert "settings.mattermost.retryz: unknown key" in problems


def test_missing_required_variable_is_named() -> None:
    text = "manifest: {id: a.b.c, name: x, version: 1.0.0, min_server_version: 5.36.0}\n" \
           "settings:\n  mattermost:\n    token: ${NOPE_TOKEN}\n"
    with pytest.raises(config.ConfigError) as err:
        config.parse(text, {})
    assert err.value.problems == [
        "settings.mattermost.token: environment variable NOPE_TOKEN is not set"]


def test_interpolation_types_and_defaults() -> None:
    env = {"N": "12", "FLAG": "true", "EMPTY": ""}
    data = {"a": "${N}", "b": "${FLAG}", "c": "x-${N}-y", "d": "${EMPTY:-fallback}",
            "e": ["${MISSING:-7}"]}
    assert config.interpolate(data, env) == {"a": 12, "b": True, "c": "x-12-y",
                                             "d": "fallback", "e": [7]}


def test_a_secret_never_appears_in_an_error() -> None:
    secret = "hunter2-very-secret-value"
    text = SHIPPED.read_text().replace("${MM_URL:-}", secret)
    with pytest.raises(config.ConfigError) as err:
        config.parse(text, {"MM_BOT_TOKEN": secret})
    assert "settings.mattermost.url" in str(err.value)
    assert secret not in str(err.value)


def test_bad_yaml_and_wrong_top_level() -> None:
    with pytest.raises(config.ConfigError, match="at line 3"):
        config.parse("manifest:\n  id: [unclosed\n", {})
    with pytest.raises(config.ConfigError, match="top level"):
        config.parse("- a\n- b\n", {})
    with pytest.raises(config.ConfigError, match="manifest: is required"):
        config.parse("settings: {}\n", {})


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MM_URL", "MM_BOT_TOKEN", "SWITCHBOARD_SECRET", "SWITCHBOARD_PUBLIC_URL"):
        monkeypatch.delenv(var, raising=False)
    assert main(["check", "-c", str(SHIPPED)]) == 0
    assert "configuration is valid" in capsys.readouterr().out
    broken = tmp_path / "plugin.yaml"
    broken.write_text(SHIPPED.read_text().replace("concurrency: 16", "concurrency: lots"))
    assert main(["check", "-c", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "settings.dispatch.concurrency: Input should be a valid integer" in err
    monkeypatch.setenv("MM_URL", "https://chat.example.org")
    assert main(["check", "-c", str(SHIPPED)]) == 1
    err = capsys.readouterr().err
    assert "settings.mattermost.token: is empty (set MM_BOT_TOKEN)" in err


MANIFEST = "manifest: {id: io.example.x, name: X, version: 1.0.0, min_server_version: 5.36.0}\n"


def test_urls_with_an_impossible_port_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "plugin.yaml"
    path.write_text(MANIFEST + "settings:\n  listener:\n    public_url: http://bot.example:99999\n")
    with pytest.raises(config.ConfigError, match=r"settings.listener.public_url: .*port"):
        config.load(path)


def test_a_missing_ca_bundle_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "plugin.yaml"
    path.write_text(MANIFEST + "settings:\n  mattermost:\n    ca_bundle: /nonexistent/ca.pem\n")
    problems = review.check_runnable(config.load(path))
    assert "settings.mattermost.ca_bundle: no such file: /nonexistent/ca.pem" in problems


# --- settings given in part --------------------------------------------------------------------

SECRET_VALUE = "given-secret-value-0123456789"


@pytest.fixture
def shipped_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No variable the shipped plugin.yaml reads is set (`check` then sees the sandbox)."""
    for var in set(re.findall(r"\$\{(\w+)", SHIPPED.read_text())):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          env: dict[str, str], path: Path = SHIPPED) -> tuple[int, list[str]]:
    """`switchboard check` with `env` set: its exit status and the lines it wrote on stderr."""
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    code = main(["check", "-c", str(path)])
    out, err = capsys.readouterr()
    assert SECRET_VALUE not in out + err
    return code, err.splitlines()


CANNOT_RUN = "plugin.yaml is valid, but the bot cannot run with it:"


@pytest.mark.parametrize(("env", "problem"), [
    ({"GLPI_URL": "https://glpi.example.org/apirest.php"},
     "settings.trackers.glpi: url is set but user_token is empty (set GLPI_USER_TOKEN)"),
    ({"GLPI_USER_TOKEN": SECRET_VALUE},
     "settings.trackers.glpi: user_token is set but url is empty (set GLPI_URL)"),
    ({"GLPI_APP_TOKEN": SECRET_VALUE},
     "settings.trackers.glpi: app_token is set but url and user_token are empty (set GLPI_URL "
     "and GLPI_USER_TOKEN)"),
    ({"REDMINE_URL": "https://redmine.example.org"},
     "settings.trackers.redmine: url is set but api_key and project are empty (set "
     "REDMINE_API_KEY and REDMINE_PROJECT)"),
    ({"REDMINE_API_KEY": SECRET_VALUE},
     "settings.trackers.redmine: api_key is set but url and project are empty (set REDMINE_URL "
     "and REDMINE_PROJECT)"),
    ({"REDMINE_URL": "https://redmine.example.org", "REDMINE_API_KEY": SECRET_VALUE},
     "settings.trackers.redmine: url and api_key are set but project is empty (set "
     "REDMINE_PROJECT)"),
])
def test_check_names_what_a_tracker_given_in_part_lacks(
        shipped_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        env: dict[str, str], problem: str) -> None:
    assert check(shipped_env, capsys, env) == (1, [CANNOT_RUN, f"  - {problem}"])


def test_a_tracker_given_whole_passes_and_one_given_in_part_stops_the_start(
        shipped_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    whole = {"REDMINE_URL": "https://redmine.example.org", "REDMINE_API_KEY": SECRET_VALUE,
             "REDMINE_PROJECT": "helpdesk", "GLPI_URL": "https://glpi.example.org/apirest.php",
             "GLPI_USER_TOKEN": SECRET_VALUE}
    assert check(shipped_env, capsys, whole) == (0, [])
    shipped_env.delenv("GLPI_USER_TOKEN")
    shipped_env.setenv("MM_URL", "https://chat.example.org")
    shipped_env.setenv("MM_BOT_TOKEN", SECRET_VALUE)
    shipped_env.setenv("SWITCHBOARD_SECRET", SECRET_VALUE)
    shipped_env.setenv("SWITCHBOARD_PUBLIC_URL", "https://bot.example.org")
    assert main(["run", "-c", str(SHIPPED)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "Cannot start:",
        "  - settings.trackers.glpi: url is set but user_token is empty (set GLPI_USER_TOKEN)"]
    assert SECRET_VALUE not in err


INTAKE = {"ALERTS_TOKEN": SECRET_VALUE, "ALERTS_CHANNEL": "ops/alerts"}


@pytest.mark.parametrize(("env", "problem"), [
    ({"ALERTMANAGER_URL": "http://alertmanager:9093"},
     "settings.alerts.sources.alertmanager: url is set but alerts.token and alerts.channel are "
     "empty, so alerts sent to /alerts/alertmanager are refused (set ALERTS_TOKEN and "
     "ALERTS_CHANNEL)"),
    ({"ALERTMANAGER_URL": "http://alertmanager:9093", "ALERTS_TOKEN": SECRET_VALUE},
     "settings.alerts.sources.alertmanager: url is set but alerts.channel is empty, so alerts "
     "sent to /alerts/alertmanager are refused (set ALERTS_CHANNEL)"),
    ({"ZABBIX_URL": "https://zabbix.example.org", "ZABBIX_API_TOKEN": SECRET_VALUE,
      "ALERTS_CHANNEL": "ops/alerts"},
     "settings.alerts.sources.zabbix: url and api_token are set but alerts.token is empty, so "
     "alerts sent to /alerts/zabbix are refused (set ALERTS_TOKEN)"),
    ({"ICINGA_URL": "https://icinga.example.org:5665", "ICINGA_USER": "switchboard",
      "ICINGA_PASSWORD": SECRET_VALUE},
     "settings.alerts.sources.nagios: url, api_username and api_password are set but "
     "alerts.token and alerts.channel are empty, so alerts sent to /alerts/nagios are refused "
     "(set ALERTS_TOKEN and ALERTS_CHANNEL)"),
    ({"ALERTS_CHANNEL": "ops/alerts"},
     "settings.alerts: channel is set but token is empty, so every alert is refused (set "
     "ALERTS_TOKEN)"),
    ({"ALERTS_TOKEN": SECRET_VALUE},
     "settings.alerts: token is set but channel is empty and no route is set, so every alert "
     "is refused (set ALERTS_CHANNEL)"),
])
def test_check_fails_for_an_alert_source_whose_alerts_cannot_arrive(
        shipped_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        env: dict[str, str], problem: str) -> None:
    assert check(shipped_env, capsys, env) == (1, [CANNOT_RUN, f"  - {problem}"])


@pytest.mark.parametrize(("env", "warning"), [
    ({"ZABBIX_URL": "https://zabbix.example.org"},
     "settings.alerts.sources.zabbix: url is set but api_token is empty, so acknowledgements "
     "and silences stay in the chat and never reach Zabbix (set ZABBIX_API_TOKEN)"),
    ({"ZABBIX_API_TOKEN": SECRET_VALUE},
     "settings.alerts.sources.zabbix: api_token is set but url is empty, so acknowledgements "
     "and silences stay in the chat and never reach Zabbix (set ZABBIX_URL)"),
    ({"ICINGA_URL": "https://icinga.example.org:5665"},
     "settings.alerts.sources.nagios: url is set but api_username and api_password are empty, "
     "so acknowledgements and silences stay in the chat and never reach Icinga 2 (set "
     "ICINGA_USER and ICINGA_PASSWORD)"),
    ({"ICINGA_URL": "https://icinga.example.org:5665", "ICINGA_USER": "switchboard"},
     "settings.alerts.sources.nagios: url and api_username are set but api_password is empty "
     "(set ICINGA_PASSWORD)"),
    ({"ICINGA_USER": "switchboard", "ICINGA_PASSWORD": SECRET_VALUE},
     "settings.alerts.sources.nagios: api_username and api_password are set but url is empty, "
     "so acknowledgements and silences stay in the chat and never reach Icinga 2 (set "
     "ICINGA_URL)"),
])
def test_check_warns_when_decisions_cannot_go_back_to_the_source(
        shipped_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        env: dict[str, str], warning: str) -> None:
    code, lines = check(shipped_env, capsys, INTAKE | env)
    assert (code, lines) == (0, [f"warning: {warning}"])


def test_complete_alert_sources_pass_without_a_word(
        shipped_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env = INTAKE | {"ALERTMANAGER_URL": "http://alertmanager:9093",
                    "ZABBIX_URL": "https://zabbix.example.org", "ZABBIX_API_TOKEN": SECRET_VALUE,
                    "ICINGA_URL": "https://icinga.example.org:5665", "ICINGA_USER": "sb",
                    "ICINGA_PASSWORD": SECRET_VALUE}
    assert check(shipped_env, capsys, env) == (0, [])


def test_check_lists_the_warnings_with_the_problems(
        shipped_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env = INTAKE | {"MM_URL": "https://chat.example.org", "ZABBIX_URL": "https://zabbix.example.org"}
    code, lines = check(shipped_env, capsys, env)
    assert code == 1
    assert lines[:4] == [
        CANNOT_RUN, "  - settings.mattermost.token: is empty (set MM_BOT_TOKEN)",
        "  - settings.security.secret: is empty (set SWITCHBOARD_SECRET)",
        "  - settings.listener.public_url: is empty (set SWITCHBOARD_PUBLIC_URL to the URL "
        "Mattermost uses to reach the listener)"]
    assert lines[4:] == [
        "warning: settings.trackers.glpi: not configured (url and user_token empty); the "
        "trigger(s) 112 are off (set GLPI_URL and GLPI_USER_TOKEN)",
        "warning: settings.alerts.sources.zabbix: url is set but api_token is empty, so "
        "acknowledgements and silences stay in the chat and never reach Zabbix (set "
        "ZABBIX_API_TOKEN)"]


def test_settings_no_variable_sets_are_named_by_their_key_path(tmp_path: Path) -> None:
    path = tmp_path / "plugin.yaml"
    path.write_text(MANIFEST + """settings:
  alerts:
    token: t0ken-value
    routes: [{sources: [zabbix], min_severity: high, channels: [ops/zabbix]}]
    sources:
      zabbix: {url: "https://zabbix.example.org", api_token: z-value}
      alertmanager: {url: "http://alertmanager:9093", api_username: am}
      generic: {username: nagios}
      nagios: {password: p-value}
""")
    c = config.load(path, {})
    assert review.check_runnable(c) == [
        "settings.alerts.sources.alertmanager: url and api_username are set but alerts.channel "
        "is empty and no route takes its alerts, so alerts sent to /alerts/alertmanager are "
        "refused (set settings.alerts.channel)",
        "settings.alerts.sources.generic: username is set but alerts.channel is empty and no "
        "route takes its alerts, so alerts sent to /alerts/generic are refused (set "
        "settings.alerts.channel)",
        "settings.alerts.sources.generic: username is set but password is empty, so senders get "
        "in with the user name alone (set settings.alerts.sources.generic.password)",
        "settings.alerts.sources.nagios: password is set but alerts.channel is empty and no "
        "route takes its alerts, so alerts sent to /alerts/nagios are refused (set "
        "settings.alerts.channel)"]
    assert review.warnings(c) == [
        "settings.alerts.sources.alertmanager: url and api_username are set but api_password "
        "is empty (set settings.alerts.sources.alertmanager.api_password)",
        "settings.alerts.sources.nagios: password is set but username is empty, so senders "
        "cannot sign in with it (set settings.alerts.sources.nagios.username)",
        "settings.alerts.channel: is empty and not every alert matches a route, so the others "
        "are refused (set settings.alerts.channel)"]


def test_snmp_settings_add_to_the_built_in_trap_rules() -> None:
    from bridge.alerts import Severity
    from bridge.snmptrap import TrapPair

    snmp = config.SnmpSettings.model_validate({
        "severities": {".1.3.6.1.4.1.318.0.5": "critical"}, "default_severity": "info",
        "key_variables": {"1.3.6.1.4.1.9.0.1": ["1.3.6.1.4.1.9.2.1"]},
        "pairs": [{"problem": "1.3.6.1.4.1.318.0.5", "clear": ".1.3.6.1.4.1.318.0.9"}]})
    rules = snmp.rules()
    assert rules.severities["1.3.6.1.4.1.318.0.5"] is Severity.CRITICAL
    assert rules.severities["1.3.6.1.6.3.1.1.5.3"] is Severity.WARNING  # built in, kept
    assert rules.default_severity is Severity.INFO
    assert rules.key_variables == {"1.3.6.1.4.1.9.0.1": ("1.3.6.1.4.1.9.2.1",)}
    assert TrapPair("1.3.6.1.4.1.318.0.5", "1.3.6.1.4.1.318.0.9") in rules.pairs
    assert rules.pairs[0].problem == "1.3.6.1.6.3.1.1.5.3"  # linkDown/linkUp stays
    with pytest.raises(ValueError):
        config.SnmpSettings.model_validate({"severities": {"1.2": "dire"}})


def test_mail_settings_make_the_rules_and_refuse_a_bad_pattern() -> None:
    from bridge.alerts import Severity

    mail = config.MailSettings.model_validate({
        "key": "header:X-Incident", "resolve_words": ["CLEARED"],
        "severity_words": {"SEV1": "critical", "SEV3": "info"}, "default_severity": "high"})
    rules = mail.rules()
    assert rules.key == "header:X-Incident" and rules.resolve_words == ("CLEARED",)
    assert rules.severity_words == (("SEV1", Severity.CRITICAL), ("SEV3", Severity.INFO))
    assert rules.default_severity is Severity.HIGH
    assert config.MailSettings().rules().key == "subject"
    for bad in ({"key": "body"}, {"key": "pattern", "key_pattern": "(unclosed"}):
        with pytest.raises(ValueError):
            config.MailSettings.model_validate(bad)
