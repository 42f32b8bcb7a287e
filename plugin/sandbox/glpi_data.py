"""The GLPI simulator's data conventions: GLPI's ticket statuses and actor kinds, how GLPI 10 stores
text, and how PHP reads query strings."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from typing import Any

#: GLPI's ticket statuses and their English labels.
STATUS_LABELS = {1: "New", 2: "Processing (assigned)", 3: "Processing (planned)", 4: "Pending",
                 5: "Solved", 6: "Closed"}

#: `ITILSolution.status` (GLPI's validation states): none, waiting for the requester's
#: approval, accepted, refused.
SOLUTION_NONE, SOLUTION_WAITING, SOLUTION_ACCEPTED, SOLUTION_REFUSED = 1, 2, 3, 4

#: `Ticket_User.type`: requester, assigned technician, observer.
REQUESTER, ASSIGNED, OBSERVER = 1, 2, 3



# -- GLPI 10's storage of text --------------------------------------------------------------------

def sanitize(value: Any) -> Any:
    """Encode `&`, `<`, `>` in every string, as GLPI 10 does to its inputs before storing them."""
    if isinstance(value, str):
        return value.replace("&", "&#38;").replace("<", "&#60;").replace(">", "&#62;")
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    return value


def unsanitize(value: Any) -> Any:
    """The inverse of `sanitize` (what `X-GLPI-Sanitized-Content: false` answers)."""
    if isinstance(value, str):
        return value.replace("&#60;", "<").replace("&#62;", ">").replace("&#38;", "&")
    if isinstance(value, list):
        return [unsanitize(v) for v in value]
    if isinstance(value, dict):
        return {k: unsanitize(v) for k, v in value.items()}
    return value


def _php_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Decode a query string the way PHP does: `criteria[0][field]=1` becomes nested dicts."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if match is None:
            root[key] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for index, part in enumerate(parts):
            if part == "":
                part = str(len(node))
            if index == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return root


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return [value]


def _to_int(value: Any, default: int | None = None) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return default


def _like(value: str) -> Callable[[str], bool]:
    """GLPI's text search (`Search::makeTextSearch`): a case-insensitive substring, where a
    leading `^` and a trailing `$` anchor the match."""
    start = value.startswith("^")
    end = value.endswith("$") and len(value) > (1 if start else 0)
    core = value[1 if start else 0: len(value) - 1 if end else len(value)].lower()

    def test(candidate: str) -> bool:
        text = candidate.lower()
        if start and end:
            return text == core
        if start:
            return text.startswith(core)
        if end:
            return text.endswith(core)
        return core in text

    return test


def _text_of_html(value: str) -> str:
    """Plain text of stored (sanitized) HTML, for GLPI's automatic ticket titles."""
    raw = html.unescape(re.sub(r"<[^>]*>", " ", unsanitize(value)))
    return re.sub(r"\s+", " ", raw).strip()
