"""GLPI's side of text and searches: chat text as the HTML GLPI stores and back, titles that fit
GLPI's column once GLPI has encoded them, GLPI's dates, search criteria as query parameters, and
the names written on someone's behalf."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from .tickets import TicketNotFound, clean_text

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_BREAK = re.compile(r"<br\s*/?>|</(?:div|li|tr|h[1-6]|pre|blockquote)\s*>", re.I)
_PARAGRAPH = re.compile(r"</p\s*>", re.I)
_TAG = re.compile(r"<[^>]*>")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_ENCODED_WIDTH = {"&": 5, "<": 5, ">": 5}  # GLPI 10 stores them as `&#38;`, `&#60;`, `&#62;`


def text_to_html(text: str) -> str:
    """Chat text as HTML paragraphs: blank lines part paragraphs, other newlines become `<br>`,
    and every `&`, `<`, `>` is escaped so nothing in the text is read as markup."""
    text = clean_text(text).replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("<p>" + p.replace("\n", "<br>") + "</p>"
                   for p in _PARAGRAPH_BREAK.split(text) if p.strip())


def _decode_stored(value: str) -> str:
    """Undo GLPI's storage encoding (once) when the value carries it."""
    if "<" not in value and re.search(r"&(?:#0*6[02]|lt|gt);", value):
        return html.unescape(value)
    return value


def html_to_text(value: str) -> str:
    """Plain text of a stored GLPI rich-text value."""
    markup = _decode_stored(value)
    markup = _PARAGRAPH.sub("\n\n", markup)
    markup = _BREAK.sub("\n", markup)
    text = html.unescape(_TAG.sub("", markup)).replace("\xa0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def plain(value: Any) -> str:
    """A plain-text field (a title, a login) as GLPI answers it."""
    if value is None:
        return ""
    return html.unescape(str(value))


def _stored_width(text: str) -> int:
    return len(text) + sum((width - 1) * text.count(ch) for ch, width in _ENCODED_WIDTH.items())


def fit_title(text: str, limit: int) -> str:
    """Trim so the title fits GLPI's 255-character column once GLPI has encoded it."""
    if _stored_width(text) <= limit:
        return text
    kept: list[str] = []
    used = 0
    for ch in text:
        width = _ENCODED_WIDTH.get(ch, 1)
        if used + width > limit - 1:
            break
        kept.append(ch)
        used += width
    return "".join(kept).rstrip() + "…"


def parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value[:19], DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def first_of(value: Any) -> str:
    """The first value of a search result cell (one value, a list, or null)."""
    if isinstance(value, list):
        value = next((v for v in value if v not in (None, "")), None)
    return plain(value)


def criteria(*criteria: tuple[int, str, Any], forcedisplay: tuple[int, ...] = (),
              **extra: Any) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for index, (field, searchtype, value) in enumerate(criteria):
        prefix = f"criteria[{index}]"
        if index:
            params.append((f"{prefix}[link]", "AND"))
        params += [(f"{prefix}[field]", str(field)), (f"{prefix}[searchtype]", searchtype),
                   (f"{prefix}[value]", str(value))]
    params += [(f"forcedisplay[{i}]", str(f)) for i, f in enumerate(forcedisplay)]
    params += [(k, str(v)) for k, v in extra.items()]
    return params


def ticket_number(ticket_id: str) -> int:
    text = str(ticket_id).strip().lstrip("#")
    if not text.isdigit() or int(text) <= 0:
        raise TicketNotFound(f"GLPI: no ticket {ticket_id!r} (ticket ids are numbers)")
    return int(text)
