"""plugin.yaml: interpolation, validation with key paths, secrets kept out of messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin import config
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
    assert config.check_runnable(c) == []
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
    problems = config.check_runnable(config.load(path))
    assert "settings.mattermost.ca_bundle: no such file: /nonexistent/ca.pem" in problems
