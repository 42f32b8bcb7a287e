"""Redmine's side of text: the statuses as common ones (Redmine's are free names, in its
administrators' language), and the description the tracker writes (the request, the requester
line, the chat reference last) and reads back."""

from __future__ import annotations

import re
from typing import Any

from .tickets import NewTicket, Person, Status, clean_text

REF_PREFIX = "Chat ref: "
REQUESTER_PREFIX = "Requester: "
_REQUESTER_LINE = re.compile(r"^Requester: .*\(@(?P<username>[^,\s)]+)")

_NEW = frozenset({"new", "open", "opened", "nouveau", "nouvelle", "neu", "nuevo", "nueva",
                  "novo", "nova", "nuovo"})
_SOLVED = frozenset({"resolved", "solved", "done", "fixed", "résolu", "resolu", "gelöst",
                     "erledigt", "resuelto", "resolvido", "risolto"})
_PENDING = frozenset({"feedback", "pending", "waiting", "on hold", "waiting for customer",
                      "waiting for feedback", "commentaire", "en attente", "rückmeldung",
                      "comentario", "em espera"})
CLOSED_NAMES = frozenset({"closed", "rejected", "fermé", "ferme", "rejeté", "rejete",
                     "geschlossen", "abgewiesen", "cerrado", "rechazado", "fechado", "chiuso"})


def map_status(name: str, is_closed: bool | None = None) -> Status:
    """Redmine's status (a free name plus an `is_closed` flag) as a common `Status`."""
    label = name.strip().lower()
    if is_closed or (is_closed is None and label in CLOSED_NAMES):
        return Status.CLOSED
    if label in _NEW:
        return Status.NEW
    if label in _SOLVED:
        return Status.SOLVED
    if label in _PENDING:
        return Status.PENDING
    return Status.IN_PROGRESS


def ref_line(ref: str) -> str:
    return REF_PREFIX + " ".join(clean_text(ref).split())


def requester_line(person: Person) -> str:
    display = " ".join(clean_text(person.display_name or person.username).split())
    inside = f"@{person.username}" + (f", {person.email}" if person.email else "")
    return f"{REQUESTER_PREFIX}{display} ({clean_text(inside)})"


def description_for(ticket: NewTicket) -> str:
    body = clean_text(ticket.content).rstrip()
    footer = f"{requester_line(ticket.requester)}\n{ref_line(ticket.ref)}"
    return f"{body}\n\n{footer}" if body else footer


def _lines(text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    return [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def has_ref(description: Any, ref: str) -> bool:
    lines = _lines(description)
    return bool(lines) and lines[-1] == ref_line(ref)


def named_requester(description: Any) -> str:
    """The chat username in the requester line this module wrote, or ""."""
    for line in reversed(_lines(description)[-3:]):
        match = _REQUESTER_LINE.match(line)
        if match:
            return match.group("username")
    return ""


def subject_for(title: str, limit: int) -> str:
    return " ".join(clean_text(title).split())[:limit].rstrip()


def same_text(a: Any, b: str) -> bool:
    return isinstance(a, str) and a.replace("\r\n", "\n").strip() == b.replace(
        "\r\n", "\n").strip()


def search_token(text: str) -> str:
    """A value for Redmine's "contains" filter: no '|' (a value separator), no blanks."""
    return "".join(text.replace("|", " ").split()[:1])
