"""The generated configuration reference: up to date, complete, and correct about what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin import config, configdoc

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"
SHIPPED = ROOT / "plugin.yaml"


def _section(text: str, heading: str) -> str:
    """The body of one `## heading` section of the Markdown."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _row(section: str, key: str) -> list[str]:
    for line in section.splitlines():
        if line.startswith(f"| `{key}` |"):
            return [c.strip() for c in line.strip("|").split(" | ")]
    raise AssertionError(f"no row for {key}")


def test_every_field_has_a_description() -> None:
    missing = configdoc.undocumented()
    assert missing == [], (
        "give these fields of plugin/config.py a Field(description=...), then run `make docs`: "
        + ", ".join(missing))


def test_reference_is_up_to_date() -> None:
    expected = configdoc.render(SHIPPED.read_text(encoding="utf-8"))
    assert REFERENCE.read_text(encoding="utf-8") == expected, (
        "docs/configuration.md is out of date: run `make docs`")


def test_a_field_without_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    info = config.StreamSettings.model_fields["ping_interval"]
    monkeypatch.setattr(info, "description", None)
    assert "StreamSettings.ping_interval" in configdoc.undocumented()
    with pytest.raises(configdoc.UndocumentedField, match=r"settings\.stream\.ping_interval"):
        configdoc.render(SHIPPED.read_text(encoding="utf-8"))


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    args = ["--config", str(SHIPPED), "--output", str(out)]
    assert configdoc.main([*args, "--check"]) == 1  # missing
    assert configdoc.main(args) == 0
    assert configdoc.main([*args, "--check"]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("Seconds", "Minutes", 1),
                   encoding="utf-8")
    assert configdoc.main([*args, "--check"]) == 1
    assert configdoc.main(args) == 0
    assert configdoc.main([*args, "--check"]) == 0


def test_every_key_path_has_a_row_under_its_section() -> None:
    text = configdoc.render(SHIPPED.read_text(encoding="utf-8"))
    paths = list(configdoc.iter_key_paths())
    for path in ("settings.mattermost.url", "settings.trackers.<name>.user_token",
                 "settings.helpdesk.triggers[].keyword", "settings.alerts.sources.<name>.url",
                 "settings.alerts.routes[].channels", "manifest.min_server_version"):
        assert path in paths
    for path in paths:
        parent, _, key = path.rpartition(".")
        if not parent:
            continue
        sections = [s for s in text.split("\n## ")[1:] if s.startswith(f"`{parent}`")]
        assert sections, f"no section for {parent}"
        assert any(f"| `{key}` |" in s for s in sections), path


def test_types_defaults_constraints_and_secrets() -> None:
    text = configdoc.render(SHIPPED.read_text(encoding="utf-8"))
    mm = _section(text, "`settings.mattermost`")
    assert _row(mm, "request_timeout")[1:3] == ["number, > 0, ≤ 300", "`10`"]
    assert _row(mm, "token")[1:4] == ["text, **secret**", "empty", "`MM_BOT_TOKEN`"]
    assert _row(mm, "url")[3] == "`MM_URL`"
    security = _section(text, "`settings.security`")
    assert _row(security, "action_ttl")[2] == "`604800` (7 days)"
    glpi = _section(text, "`settings.trackers.<name>` — `kind: glpi`")
    assert _row(glpi, "url")[3] == "`GLPI_URL` (`settings.trackers.glpi`)"
    assert _row(glpi, "ticket_type")[1] == "one of `1`, `2`"
    assert _row(glpi, "requesttypes_id")[1] == "integer, or empty"
    sources = _section(text, "`settings.alerts.sources.<name>`")
    assert "`ZABBIX_URL` (`settings.alerts.sources.zabbix`)" in _row(sources, "url")[3]
    routes = _section(text, "`settings.alerts.routes[]`")
    assert _row(routes, "channels")[1:3] == ["list of texts, at least 1 item", "required"]
    variables = _section(text, "Environment variables")
    assert _row(variables, "MM_BOT_TOKEN")[1:4] == ["`settings.mattermost.token`", "empty",
                                                    "yes"]
    assert _row(variables, "SWITCHBOARD_LISTEN")[2:4] == ["`127.0.0.1:8470`", ""]
    assert _row(variables, "SLASH_TOKEN")[3] == "yes"


def test_environment_variables_are_found_at_their_generic_keys() -> None:
    text = """
manifest: {id: a.b.c, name: x, version: 1.0.0, min_server_version: 5.36.0}
settings:
  listener:
    slash_tokens: ["${ONE}", "${TWO:-}"]
  trackers:
    desk: {kind: redmine, url: "${RM_URL:-http://rm}", project: p}
  helpdesk:
    triggers:
      - {keyword: "112", tracker: "${WHICH:-desk}"}
"""
    refs = configdoc.env_refs(text)
    assert refs[(config.ListenerSettings, "slash_tokens")] == [
        configdoc.EnvRef("ONE", None, "", "settings.listener.slash_tokens[0]"),
        configdoc.EnvRef("TWO", "", "", "settings.listener.slash_tokens[1]")]
    assert refs[(config.RedmineSettings, "url")] == [
        configdoc.EnvRef("RM_URL", "http://rm", "settings.trackers.desk",
                         "settings.trackers.desk.url")]
    assert (config.GLPISettings, "url") not in refs
    assert refs[(config.Trigger, "tracker")][0].where == "settings.helpdesk.triggers[0]"
    variables = _section(configdoc.render(text), "Environment variables")
    assert _row(variables, "ONE")[2:4] == ["required", "yes"]


def test_table_cells_stay_one_cell() -> None:
    # A newline or `|` would break the table; `<word` would be taken for an HTML tag.
    assert configdoc._cell("a <b>\n `<c>` < 3 | d") == "a &lt;b> `<c>` < 3 \\| d"
