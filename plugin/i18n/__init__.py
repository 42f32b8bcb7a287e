"""The bot's languages: gettext catalogs, and which one speaks to whom.

Every text the bot writes to people goes through `_()` (or `ngettext`, `pgettext`). The catalogs
are the gettext convention's `.po` files, one per language, in `<lang>/LC_MESSAGES/switchboard.po`
beside this module, with `switchboard.pot` as their template; they are compiled in memory when
first used, so no generated file is kept in the repository.

The language in force is a context variable: the dispatcher sets it to the Mattermost user's locale
(or the configured default) before a handler runs, so handlers simply call `_()`. Work done later
for someone (a ticket filed from the outbox, a status change announced in a thread) sets it again
with `use(locale)`.

Command words have localized aliases: a command declared as `status` also answers to every
catalog's translation of `status` in the `command` context (`статус`, `statut`, …).
"""

from __future__ import annotations

import ast
import contextvars
import gettext
import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

DOMAIN = "switchboard"
HERE = Path(__file__).resolve().parent
#: The languages that ship complete; the first is the source language.
LANGUAGES = ("en", "ru", "fr", "de", "ja")
#: The context of command words in the catalogs.
COMMAND = "command"

_default = "en"
_current: contextvars.ContextVar[str] = contextvars.ContextVar("switchboard_locale", default="")


# --- reading catalogs -----------------------------------------------------------------------------
class CatalogError(ValueError):
    """A `.po` file that cannot be read."""


def _unquote(token: str, where: str) -> str:
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError):
        raise CatalogError(f"{where}: not a quoted string: {token[:40]}") from None
    if not isinstance(value, str):
        raise CatalogError(f"{where}: not a quoted string: {token[:40]}")
    return value


def parse_po(text: str, name: str = "catalog") -> list[dict[str, str | list[str]]]:
    """The entries of a `.po` file: dicts with `msgctxt`, `msgid`, `msgid_plural`, `msgstr` (a list
    of forms), `flags` and `comments`; the header is the entry whose msgid is empty."""
    entries: list[dict[str, str | list[str]]] = []
    entry: dict[str, str | list[str]] = {}
    field = ""
    flags: list[str] = []
    comments: list[str] = []
    seen: set[tuple[str, str]] = set()
    where = name

    def finish() -> None:
        nonlocal entry, flags, comments
        if "msgid" in entry:
            if "msgstr" not in entry:
                raise CatalogError(f"{where}: an entry without msgstr")
            key = (str(entry.get("msgctxt", "\x00")), str(entry["msgid"]))
            if key in seen:
                raise CatalogError(f"{where}: the message {key[1][:40]!r} appears twice")
            seen.add(key)
            entry["flags"] = flags
            entry["comments"] = comments
            entries.append(entry)
        entry, flags, comments = {}, [], []

    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{name}:{n}"
        if not line:
            continue
        if line.startswith("#"):
            if field.startswith("msgstr"):
                finish()
                field = ""
            if line.startswith("#,"):
                flags += [f.strip() for f in line[2:].split(",") if f.strip()]
            elif line.startswith("#."):
                comments.append(line[2:].strip())
            continue
        if line.startswith('"'):
            if not field:
                raise CatalogError(f"{where}: a string outside an entry")
            piece = _unquote(line, where)
            if field.startswith("msgstr["):
                forms = entry["msgstr"]
                assert isinstance(forms, list)
                forms[-1] += piece
            elif field == "msgstr":
                forms = entry["msgstr"]
                assert isinstance(forms, list)
                forms[0] += piece
            else:
                entry[field] = str(entry[field]) + piece
            continue
        keyword, _, rest = line.partition(" ")
        if keyword in ("msgctxt", "msgid") and field.startswith("msgstr"):
            finish()
        elif keyword in ("msgctxt", "msgid") and "msgid" in entry:
            raise CatalogError(f"{where}: an entry without msgstr")
        if keyword in ("msgctxt", "msgid", "msgid_plural"):
            entry[keyword] = _unquote(rest.strip(), where)
        elif keyword == "msgstr":
            entry["msgstr"] = [_unquote(rest.strip(), where)]
        elif keyword.startswith("msgstr[") and keyword.endswith("]"):
            forms = entry.setdefault("msgstr", [])
            assert isinstance(forms, list)
            if keyword != f"msgstr[{len(forms)}]":
                raise CatalogError(f"{where}: plural forms out of order")
            forms.append(_unquote(rest.strip(), where))
        else:
            raise CatalogError(f"{where}: unknown keyword {keyword!r}")
        field = keyword
    finish()
    return entries


def compile_mo(entries: list[dict[str, str | list[str]]]) -> bytes:
    """The binary `.mo` form of parsed entries (fuzzy and untranslated entries left out)."""
    pairs: dict[bytes, bytes] = {}
    for e in entries:
        forms = e.get("msgstr") or [""]
        assert isinstance(forms, list)
        if "fuzzy" in e.get("flags", []) and e.get("msgid"):
            continue
        if e.get("msgid") and not all(forms):
            continue
        key = str(e["msgid"])
        if "msgid_plural" in e:
            key += "\0" + str(e["msgid_plural"])
        if "msgctxt" in e:
            key = str(e["msgctxt"]) + "\x04" + key
        pairs[key.encode()] = "\0".join(forms).encode()
    # Catalogs are UTF-8 whatever their header says (gettext would read them as ASCII).
    header = pairs.get(b"", b"").decode()
    if "charset=" not in header:
        pairs[b""] = (header + "Content-Type: text/plain; charset=UTF-8\n").encode()
    keys = sorted(pairs)
    ids = strs = b""
    offsets = []
    for k in keys:
        offsets.append((len(k), len(ids), len(pairs[k]), len(strs)))
        ids += k + b"\0"
        strs += pairs[k] + b"\0"
    id_table = 7 * 4  # after the header
    str_table = id_table + len(keys) * 8
    ids_at = str_table + len(keys) * 8
    strs_at = ids_at + len(ids)
    out = [struct.pack("Iiiiiii", 0x950412DE, 0, len(keys), id_table, str_table, 0, 0)]
    out += [struct.pack("ii", length, ids_at + off) for length, off, _, _ in offsets]
    out += [struct.pack("ii", length, strs_at + off) for _, _, length, off in offsets]
    return b"".join(out) + ids + strs


def catalog_path(lang: str) -> Path:
    return HERE / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of a language (identity when it has none)."""
    path = catalog_path(lang)
    if not path.exists():
        return gettext.NullTranslations()
    # utf-8-sig: an editor's byte-order mark is not part of the first line.
    entries = parse_po(path.read_text(encoding="utf-8-sig"), str(path))
    return gettext.GNUTranslations(io.BytesIO(compile_mo(entries)))


# --- which language ------------------------------------------------------------------------------
def normalize(locale: str | None) -> str:
    """A Mattermost locale (`ru`, `pt-BR`, `zh_CN`) → the language we speak to it, or ""."""
    if not locale:
        return ""
    tag = locale.strip().replace("_", "-").lower()
    if tag in LANGUAGES:
        return tag
    base = tag.split("-")[0]
    return base if base in LANGUAGES else ""


def set_default(locale: str) -> None:
    """The language for people whose own locale is unknown or unsupported."""
    global _default
    _default = normalize(locale) or "en"


def default() -> str:
    return _default


def current() -> str:
    return _current.get() or _default


def choose(locale: str | None) -> str:
    """The language to speak to someone whose Mattermost locale is this."""
    return normalize(locale) or _default


def activate(locale: str | None) -> contextvars.Token[str]:
    """Speak this locale in the current context (until reset with the token)."""
    return _current.set(choose(locale))


@contextmanager
def use(locale: str | None) -> Iterator[str]:
    """Speak this locale inside the block."""
    token = activate(locale)
    try:
        yield current()
    finally:
        _current.reset(token)


# --- translating ---------------------------------------------------------------------------------
def _(message: str) -> str:
    """The message in the language in force."""
    return translations(current()).gettext(message)


def N_(message: str) -> str:
    """Marks a message for the catalogs; translated later, where it is shown, with `_()`."""
    return message


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    return translations(current()).pgettext(context, message)


def gettext_in(lang: str, message: str) -> str:
    """The message in a given language, whatever is in force."""
    return translations(choose(lang)).gettext(message)


def aliases(word: str, context: str = COMMAND) -> tuple[str, ...]:
    """A command word and its translations in every shipped catalog, first the word itself."""
    seen = [word]
    for lang in LANGUAGES:
        alias = translations(lang).pgettext(context, word)
        if alias and alias.lower() not in {s.lower() for s in seen}:
            seen.append(alias)
    return tuple(seen)
