"""Monitoring mail as alerts: the MIME message a mail alias pipes, and the alert it becomes.

`read_mail(raw)` parses one message as a mail server hands it to a pipe (an mbox `From ` line
first, then the headers): the subject with its encoded words decoded, the text body (the first
`text/plain` part; an HTML-only message converted to text), each in its declared charset (Japanese
monitoring mail's `ISO-2022-JP` and `Shift_JIS` included; base64 and quoted-printable undone),
and the headers that identify a thread. `MailEvent.to_json()` is what `switchboard sendevt
--format mail` sends to the bot's `/alerts/mail` route. Something that is not a mail raises
`MailParseError`, and nothing is sent.

`parse_mail(body, rules)` turns that JSON into an `Alert`: the subject is the title; the key comes
from `rules.key` (the subject without its status words, a header, or the thread the mail
answers); severity and recovery come from words in the subject.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any

from .alerts import Alert, AlertParseError, AlertStatus, Severity

SOURCE = "mail"

#: Largest message read; longest body text kept.
MAX_MAIL, MAX_TEXT = 5_000_000, 20_000
#: Charsets mail declares, read as the superset senders really use.
_CHARSET_READ_AS = {"shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932",
                    "x-sjis": "cp932", "windows-31j": "cp932", "iso-2022-jp": "iso2022_jp_ext",
                    "euc-jp": "euc_jis_2004", "gb2312": "gb18030", "gbk": "gb18030",
                    "ks_c_5601-1987": "cp949", "us-ascii": "utf-8", "ascii": "utf-8"}
_FALLBACKS = ("utf-8", "cp932", "euc_jis_2004", "iso2022_jp_2")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_THREAD_HEADERS = ("message-id", "in-reply-to", "references")


class MailParseError(AlertParseError):
    """The input is not a mail message; the message says why."""


@dataclass(frozen=True)
class MailEvent:
    """One monitoring mail, decoded."""

    subject: str
    sender: str
    text: str
    message_id: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    #: Other headers a key may be taken from (`X-…` ones and a few standard ones), by
    #: lower-case name.
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "from": self.sender, "text": self.text,
                "message_id": self.message_id, "in_reply_to": self.in_reply_to,
                "references": list(self.references), "headers": dict(self.headers)}


def _decode(data: bytes, charset: str | None) -> str:
    """Bytes in a declared charset (read as the superset senders use), else the usual ones."""
    names = []
    if charset:
        declared = charset.strip().strip('"').lower()
        names += [_CHARSET_READ_AS.get(declared, declared), declared]
    for name in (*names, *_FALLBACKS):
        try:
            return data.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("utf-8", errors="replace")


def _html_text(markup: str) -> str:
    markup = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", "", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(?:p|div|li|tr|h[1-6])\s*>", "\n", markup)
    text = html.unescape(re.sub(r"<[^>]*>", "", markup)).replace("\xa0", " ")
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return _decode(payload, part.get_content_charset())


def _body(msg: Message) -> str:
    """The first text/plain part that is not an attachment, else the first HTML one as text."""
    html_part: Message | None = None
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/plain":
            return _part_text(part)
        if kind == "text/html" and html_part is None:
            html_part = part
    return _html_text(_part_text(html_part)) if html_part is not None else ""


def read_mail(raw: bytes) -> MailEvent:
    """The mail in what a mail server pipes to a command."""
    if len(raw) > MAX_MAIL:
        raise MailParseError(f"the mail is larger than {MAX_MAIL} bytes")
    data = raw.lstrip(b"\r\n")
    while data.startswith(b"From "):  # the mbox envelope line a pipe delivery adds
        data = data.partition(b"\n")[2]
    if not _HEADER_LINE.match(data):
        raise MailParseError("not a mail: it does not start with a header")
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if not isinstance(msg, Message) or not msg.keys():
        raise MailParseError("not a mail: no headers")
    charset = next((c for c in msg.get_charsets() if c), None)
    try:
        subject = _decoded_header(msg, "Subject", charset)
        sender = _decoded_header(msg, "From", charset)
        text = _body(msg)
    except (ValueError, TypeError, LookupError) as exc:
        raise MailParseError(f"the mail cannot be decoded: {exc}") from None
    if not subject and not text.strip():
        raise MailParseError("the mail has neither a subject nor a text")
    references = tuple(re.findall(r"<[^<>\s]+>", str(msg.get("References") or "")))
    headers = {name.lower(): " ".join(str(value).split())[:500]
               for name, value in msg.items()
               if name.lower().startswith("x-") or name.lower() in ("to", "date")}
    return MailEvent(subject=subject[:1000], sender=sender[:500], text=text.strip()[:MAX_TEXT],
                     message_id=str(msg.get("Message-ID") or "").strip()[:500],
                     in_reply_to=str(msg.get("In-Reply-To") or "").strip()[:500],
                     references=references[:50], headers=dict(list(headers.items())[:30]))


def _decoded_header(msg: Message, name: str, charset: str | None) -> str:
    """A header with its encoded words (RFC 2047) decoded, each in its own charset."""
    value = msg.get(name)
    if value is None:
        return ""
    parts = []
    # A header with undeclared 8-bit bytes comes as a `Header` of "unknown-8bit" chunks: those
    # are read in the body's charset.
    for chunk, chunk_charset in email.header.decode_header(value):
        if isinstance(chunk, bytes):
            declared = None if chunk_charset in (None, "unknown-8bit") else chunk_charset
            parts.append(_decode(chunk, declared or charset))
        else:
            parts.append(chunk)
    text = "".join(parts)
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        text = _decode(text.encode("utf-8", "surrogateescape"), charset)
    return " ".join(text.split())


@dataclass(frozen=True)
class MailRules:
    """How a mail becomes an alert."""

    #: `subject` (the subject without its status words and reply prefixes), `thread` (the first
    #: message of the thread: References, else In-Reply-To, else the mail's own Message-ID),
    #: `header:<name>`, or `pattern` (`key_pattern`'s first group in the subject).
    key: str = "subject"
    key_pattern: str = ""
    #: Words in the subject that make the mail a recovery.
    resolve_words: tuple[str, ...] = ("RECOVERY", "RECOVERED", "RESOLVED", "OK", "UP",
                                      "復旧", "回復", "正常")
    #: Words in the subject and the severity they mean, the first found wins.
    severity_words: tuple[tuple[str, Severity], ...] = (
        ("CRITICAL", Severity.CRITICAL), ("DOWN", Severity.CRITICAL), ("障害", Severity.HIGH),
        ("PROBLEM", Severity.HIGH), ("ERROR", Severity.HIGH), ("WARNING", Severity.WARNING),
        ("警告", Severity.WARNING), ("INFO", Severity.INFO))
    default_severity: Severity = Severity.WARNING


def _has_word(subject: str, word: str) -> bool:
    if word.isascii():
        return re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", subject,
                         re.IGNORECASE) is not None
    return word in subject


def _subject_key(subject: str, rules: MailRules) -> str:
    text = subject
    while True:
        stripped = re.sub(r"^\s*(?:re|fw|fwd|aw|wg|sv|転送|返信)\s*[:：]\s*", "", text,
                          flags=re.IGNORECASE)
        if stripped == text:
            break
        text = stripped
    for word in (*rules.resolve_words, *(w for w, _ in rules.severity_words)):
        if word.isascii():
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", " ", text,
                          flags=re.IGNORECASE)
        else:
            text = text.replace(word, " ")
    text = re.sub(r"[\[\]【】()（）<>:：*!\-]+", " ", text)
    return " ".join(text.split()).lower()


def _key(event: dict[str, Any], subject: str, rules: MailRules) -> str:
    rule = rules.key
    if rule == "thread":
        refs = event.get("references") or []
        return str((refs[0] if refs else "") or event.get("in_reply_to")
                   or event.get("message_id") or "")
    if rule.startswith("header:"):
        headers = event.get("headers") or {}
        return str(headers.get(rule[7:].strip().lower(), ""))
    if rule == "pattern" and rules.key_pattern:
        found = re.search(rules.key_pattern, subject)
        return (found.group(1) if found and found.groups() else found.group(0)) if found else ""
    return _subject_key(subject, rules)


def parse_mail(body: Any, rules: MailRules | None = None) -> list[Alert]:
    """The alert for one mail as `MailEvent.to_json()` sends it."""
    rules = rules or MailRules()
    if not isinstance(body, dict):
        raise AlertParseError("a mail must be a JSON object")
    for name in ("subject", "from", "text", "message_id", "in_reply_to"):
        if not isinstance(body.get(name, ""), str):
            raise AlertParseError(f"{name} must be a string")
    refs, headers = body.get("references") or [], body.get("headers") or {}
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise AlertParseError("references must be a list of strings")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise AlertParseError("headers must be an object of strings")
    subject = " ".join(str(body.get("subject", "")).split())[:500]
    text = str(body.get("text", ""))[:MAX_TEXT]
    if not subject:
        subject = next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]
    if not subject:
        raise AlertParseError("the mail has neither a subject nor a text")
    resolved = any(_has_word(subject, w) for w in rules.resolve_words)
    severity = next((s for w, s in rules.severity_words if _has_word(subject, w)),
                    rules.default_severity)
    identity = _key(body, subject, rules) or _subject_key(subject, rules) or subject
    key = hashlib.sha256(identity.encode()).hexdigest()[:24]
    sender = str(body.get("from", ""))[:200]
    return [Alert(
        source=SOURCE, key=key, status=AlertStatus.RESOLVED if resolved else AlertStatus.FIRING,
        severity=severity, title=subject, text=text[:3000],
        labels={"from": sender} if sender else {},
        started_at=datetime.now(UTC), ref={"message_id": str(body.get("message_id", ""))})]


__all__ = ["MailEvent", "MailParseError", "MailRules", "parse_mail", "read_mail"]
