"""What an incident's post shows of the alert: its other labels, compact and safe."""

from __future__ import annotations

from bridge.alerts import Alert, AlertStatus, Severity
from plugin.handlers.alerts.render import LABEL_WIDTH, LABELS_SHOWN, label_line


def alert(labels: dict[str, str], **kw: str) -> Alert:
    return Alert(source="alertmanager", key="k", status=AlertStatus.FIRING,
                 severity=Severity.WARNING, title=kw.get("title", "API latency above 2 s"),
                 name=kw.get("name", "HighLatency"), host=kw.get("host", "api1:9100"),
                 service=kw.get("service", "api"), labels=labels)


def test_labels_shown_elsewhere_are_left_out_and_the_rest_sorted() -> None:
    shown = alert({"alertname": "HighLatency", "severity": "warning", "instance": "api1:9100",
                   "job": "api", "team": "payments", "env": "prod", "pod": "api1:9100"})
    assert label_line(shown) == "`env=prod` · `team=payments`"
    assert label_line(alert({"alertname": "HighLatency", "job": "api"})) == ""


def test_values_are_code_and_long_lists_and_values_are_cut() -> None:
    hostile = alert({"note": "*bold* [x](https://evil.example) `tick`"})
    line = label_line(hostile)
    assert line.startswith("``") and "https://evil.example" in line  # inside a code span
    many = alert({f"l{i:02d}": "v" * (LABEL_WIDTH + 10) for i in range(LABELS_SHOWN + 3)})
    line = label_line(many)
    assert line.count("`l") == LABELS_SHOWN and line.endswith("and 3 more")
    assert ("v" * (LABEL_WIDTH - 1 - 4) + "…") in line and "v" * LABEL_WIDTH not in line
