"""Monitoring mail: MIME parsing as a pipe delivery hands it over (charsets Japanese monitoring
mail uses, transfer encodings, encoded-word subjects, HTML-only mail), refusals, and the alert a
mail becomes (key rules, severity and recovery from the subject)."""

from __future__ import annotations

import base64
import quopri

import pytest

from bridge.alerts import AlertParseError, AlertStatus, Severity
from bridge.mail import MailParseError, MailRules, parse_mail, read_mail

ENVELOPE = b"From nagios@example.org  Mon Dec  7 21:00:00 2026\n"


def mail(headers: str, body: bytes) -> bytes:
    return ENVELOPE + headers.replace("\n", "\r\n").encode("ascii") + b"\r\n" + body


def encoded_word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def test_an_iso_2022_jp_mail_shows_its_japanese_subject_and_body() -> None:
    subject = "【障害】サーバー db1 のディスク使用率"
    raw = mail(f"From: =?iso-2022-jp?B?{base64.b64encode('監視'.encode('iso2022_jp')).decode()}?="
               f" <mon@example.jp>\nTo: ops@example.jp\n"
               f"Subject: {encoded_word(subject, 'iso-2022-jp')}\nMIME-Version: 1.0\n"
               "Content-Type: text/plain; charset=ISO-2022-JP\n"
               "Content-Transfer-Encoding: 7bit\nMessage-ID: <a1@example.jp>\n",
               "ディスク使用率が 95% を超えました。\n".encode("iso2022_jp"))
    event = read_mail(raw)
    assert event.subject == subject
    assert event.sender == "監視 <mon@example.jp>"
    assert event.text == "ディスク使用率が 95% を超えました。"
    assert event.message_id == "<a1@example.jp>"
    [alert] = parse_mail(event.to_json())
    assert alert.title == subject and alert.severity is Severity.HIGH  # 障害
    assert alert.status is AlertStatus.FIRING


def test_shift_jis_with_windows_characters_base64_and_a_raw_8bit_subject() -> None:
    text = "①サーバー停止\n担当：運用チーム\n"
    raw = mail("From: mon@example.jp\nSubject: =?Shift_JIS?B?"
               + base64.b64encode("警告 ①".encode("cp932")).decode() + "?=\n"
               "Content-Type: text/plain; charset=Shift_JIS\n"
               "Content-Transfer-Encoding: base64\n",
               base64.encodebytes(text.encode("cp932")))
    event = read_mail(raw)
    assert event.subject == "警告 ①" and event.text == text.strip()
    raw8 = (ENVELOPE + b"From: mon@example.jp\r\nSubject: " + "復旧 db1".encode("cp932")
            + b"\r\nContent-Type: text/plain; charset=Shift_JIS\r\n\r\n"
            + "正常に戻りました".encode("cp932"))
    event = read_mail(raw8)
    assert event.subject == "復旧 db1" and event.text == "正常に戻りました"
    assert parse_mail(event.to_json())[0].status is AlertStatus.RESOLVED


def test_quoted_printable_utf8_and_an_html_only_multipart() -> None:
    body = quopri.encodestring("Température: 95 °C — dépassée\n".encode())
    raw = mail("From: a@example.org\nSubject: =?utf-8?Q?Temp=C3=A9rature_CRITICAL?=\n"
               "Content-Type: text/plain; charset=utf-8\n"
               "Content-Transfer-Encoding: quoted-printable\n", body)
    event = read_mail(raw)
    assert event.subject == "Température CRITICAL"
    assert event.text == "Température: 95 °C — dépassée"
    assert parse_mail(event.to_json())[0].severity is Severity.CRITICAL
    html = ('<html><head><style>p {}</style></head><body><p>Disk <b>full</b> on db1</p>'
            '<p>Used:&nbsp;97%<br>Free: 3%</p><script>x()</script></body></html>')
    multipart = mail(
        "From: a@example.org\nSubject: PROBLEM: disk full on db1\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b1"\n',
        b"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n" + base64.encodebytes(html.encode()) + b"--b1\r\n"
        b"Content-Type: text/plain; name=\"report.txt\"\r\n"
        b"Content-Disposition: attachment; filename=\"report.txt\"\r\n\r\nnot this\r\n--b1--\r\n")
    event = read_mail(multipart)
    assert event.text == "Disk full on db1\nUsed: 97%\nFree: 3%"


@pytest.mark.parametrize("raw", [
    b"", b"\n\n", b"just some text\nno headers here\n", ENVELOPE + b"not a header line\n",
    ENVELOPE + b"X-Only: header\r\n\r\n"])
def test_what_is_not_a_usable_mail_is_refused(raw: bytes) -> None:
    with pytest.raises(MailParseError):
        read_mail(raw)


def test_problem_and_recovery_share_a_key_by_subject_and_rules_change_the_key() -> None:
    problem = parse_mail({"subject": "PROBLEM: Disk full on db1", "text": "97%"})[0]
    recovery = parse_mail({"subject": "Re: RECOVERY: Disk full on db1", "text": "40%"})[0]
    other = parse_mail({"subject": "PROBLEM: Disk full on db2"})[0]
    assert problem.key == recovery.key != other.key
    assert problem.status is AlertStatus.FIRING and recovery.status is AlertStatus.RESOLVED
    assert problem.severity is Severity.HIGH and problem.source == "mail"
    # By a header, by the thread, by a pattern.
    by_header = MailRules(key="header:X-Incident")
    a = parse_mail({"subject": "PROBLEM x", "headers": {"x-incident": "INC-7"}}, by_header)[0]
    b = parse_mail({"subject": "other words", "headers": {"x-incident": "INC-7"}}, by_header)[0]
    assert a.key == b.key
    thread = MailRules(key="thread")
    first = parse_mail({"subject": "PROBLEM db1", "message_id": "<m1@x>"}, thread)[0]
    reply = parse_mail({"subject": "RECOVERY db1", "message_id": "<m2@x>",
                        "in_reply_to": "<m1@x>", "references": ["<m1@x>"]}, thread)[0]
    assert first.key == reply.key and reply.status is AlertStatus.RESOLVED
    pattern = MailRules(key="pattern", key_pattern=r"host=(\S+)")
    assert (parse_mail({"subject": "PROBLEM host=db1 disk"}, pattern)[0].key
            == parse_mail({"subject": "RECOVERY host=db1 load"}, pattern)[0].key)


@pytest.mark.parametrize("body", [
    [], {"subject": 3}, {"subject": "", "text": ""}, {"subject": "x", "references": "y"},
    {"subject": "x", "headers": {"a": 1}}])
def test_malformed_bodies_are_refused(body: object) -> None:
    with pytest.raises(AlertParseError):
        parse_mail(body)
