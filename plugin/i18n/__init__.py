"""The bot's languages: gettext catalogs, and which one speaks to whom.

Every text the bot writes to people goes through `_()` (or `ngettext`, `pgettext`). The catalogs
are the gettext convention's `.po` files, one per language, in `<lang>/LC_MESSAGES/switchboard.po`
beside this module, with `switchboard.pot` as their template. The bot reads each one straight
into memory when its language is first used (`po.py`, with the standard library alone), so no
compiled file is kept in the repository; `extract.py` (`make i18n`) keeps them in step with the
code, with Babel, a development tool the running bot never imports.

The language in force is a context variable: the dispatcher sets it to the Mattermost user's locale
(or the configured default) before a handler runs, so handlers simply call `_()`. Work done later
for someone (a ticket filed from the outbox, a status change announced in a thread) sets it again
with `use(locale)`.

Command words have localized aliases: a command declared as `status` also answers to every
catalog's translation of `status` in the `command` context (`статус`, `statut`, …).
"""

from __future__ import annotations

import contextvars
import gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from .po import CatalogError as CatalogError
from .po import read as read_translations

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog

DOMAIN = "switchboard"
HERE = Path(__file__).resolve().parent
#: The languages that ship complete; the first is the source language.
LANGUAGES = ("en", "ru", "fr", "de", "ja")
#: The context of command words in the catalogs.
COMMAND = "command"

_default = "en"
_current: contextvars.ContextVar[str] = contextvars.ContextVar("switchboard_locale", default="")


# --- reading catalogs -----------------------------------------------------------------------------
def catalog_path(lang: str, folder: Path = HERE) -> Path:
    return folder / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(path: Path) -> Catalog:
    """A `.po` (or `.pot`) file as a Babel catalog, for the tools (`make i18n`) and the tests;
    `CatalogError` when Babel cannot read it. Babel is a development dependency."""
    from babel.messages.pofile import PoFileError, read_po

    # utf-8-sig: an editor's byte-order mark is not part of the first line.
    lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    try:
        return read_po(lines, abort_invalid=True)
    except PoFileError as exc:
        raise CatalogError(f"{path}: {exc}") from None


def compile_catalog(catalog: Catalog) -> gettext.GNUTranslations:
    """A Babel catalog compiled in memory (fuzzy and untranslated entries left out), as Babel
    would write it to a `.mo` file."""
    from babel.messages.mofile import write_mo

    mo = io.BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return gettext.GNUTranslations(mo)


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalog of a language (identity when it has none)."""
    path = catalog_path(lang)
    if not path.exists():
        return gettext.NullTranslations()
    return read_translations(path)


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


def NP_(context: str, message: str) -> str:
    """`N_` for a message with a context: marked, translated later with `pgettext`."""
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
