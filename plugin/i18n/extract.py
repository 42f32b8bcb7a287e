"""Keep the catalogs in step with the code: `python -m plugin.i18n.extract` (`make i18n`).

Babel does the work, as `pybabel extract` and `pybabel update` would: it collects the `_()`,
`N_()`, `ngettext()` and `pgettext()` calls with literal strings in the bot's sources into the
template `switchboard.pot`, then updates each language's `.po` from it. Translations are kept, a
message whose wording changed keeps its old translation marked fuzzy (to be reviewed), new messages
are added untranslated (English gets its msgid), and messages the code no longer has are dropped.
A `# TRANSLATORS:` comment just above a call reaches the translators as an extracted comment.

What Babel cannot be told by keywords alone is added here: command words, the first argument of
`router.command("status", …)` and `i18n.aliases("mine")`, are messages in the `command` context.

`--check` changes nothing and exits 1 when a file is out of date.
"""

from __future__ import annotations

import ast
import copy
import io
import re
import sys
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file, extract_python
from babel.messages.pofile import write_po

from .. import __version__
from . import COMMAND, DOMAIN, HERE, LANGUAGES, catalog_path, read_catalog

ROOT = HERE.parent.parent
SOURCES = ("plugin",)
#: Babel keyword specs of the translation functions (`pybabel extract -k`).
KEYWORDS: dict[str, Any] = {"_": None, "N_": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2),
                            "NP_": ((1, "c"), 2)}
#: Calls whose first argument is a command word.
COMMAND_WORDS = ("command", "aliases")
COMMENT_TAGS = ("TRANSLATORS:",)
NAMES = {"en": "English", "ru": "Russian", "fr": "French", "de": "German", "ja": "Japanese"}
HEADER = ("Switchboard's messages{in_lang}.\n"
          "Generated entries: edit translations only; run `make i18n` after changing the code.")
#: Header fields that change on every run or with the tools, not with the messages.
VOLATILE = re.compile(r'^"(?:POT-Creation-Date|Project-Id-Version|Generated-By): .*"\n', re.M)


def extract_switchboard(fileobj: Any, keywords: Mapping[str, Any],
                        comment_tags: Collection[str], options: Any,
                        ) -> Iterator[tuple[int, Any, Any, Any]]:
    """A Babel extraction method: Babel's own for Python, plus the command words.

    Command words are found with `ast` rather than Babel's tokenizer, which would also take a
    variable that happens to be called `command` (`command["id"]`) for a call."""
    # Babel types the method's yield as the final result; it is (line, function, args, comments).
    yield from extract_python(fileobj, keywords, comment_tags, options)
    fileobj.seek(0)
    for node in ast.walk(ast.parse(fileobj.read())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else ""
        word = node.args[0]
        if name in COMMAND_WORDS and isinstance(word, ast.Constant) \
                and isinstance(word.value, str) and word.value:
            yield node.lineno, "pgettext", (COMMAND, word.value), []


def _header(lang: str | None) -> str:
    text = HEADER.format(in_lang=f" in {NAMES.get(lang, lang)}" if lang else "")
    return "\n".join(f"# {line}" for line in text.splitlines())


def extract(root: Path = ROOT) -> Catalog:
    """The template: every translatable message in the sources.

    Messages are grouped by context (plain ones first) and then by the file and line where each
    first appears; references name files, not lines, so that moving code does not change the
    catalogs."""
    found: list[tuple[tuple[str, str, int], str, int, str | tuple[str, ...], list[str],
                      str | None]] = []
    first: dict[tuple[str | None, str], tuple[str, str, int]] = {}
    for top in SOURCES:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for lineno, message, comments, context in extract_from_file(
                    extract_switchboard, path, keywords=KEYWORDS, comment_tags=COMMENT_TAGS,
                    strip_comment_tags=True):
                msgid = message if isinstance(message, str) else message[0]
                order = first.setdefault((context, msgid), (context or "", rel, lineno))
                found.append((order, rel, lineno, message, comments, context))
    template = Catalog(domain=DOMAIN, project=DOMAIN, version=__version__, fuzzy=False,
                       header_comment=_header(None), charset="utf-8")
    for _, rel, lineno, message, comments, context in sorted(found, key=lambda f: f[0]):
        template.add(message, locations=[(rel, lineno)], auto_comments=comments,
                     context=context)
    return template


def update(template: Catalog, lang: str, folder: Path = HERE) -> Catalog:
    """A language's catalog brought in step with the template (`pybabel update`)."""
    path = catalog_path(lang, folder)
    if path.exists():
        catalog = read_catalog(path)
    else:  # `pybabel init`
        catalog = Catalog(locale=lang, domain=DOMAIN, fuzzy=False, header_comment=_header(lang),
                          charset="utf-8")
    catalog.project, catalog.version = template.project, template.version
    if "LL@li.org" in catalog.language_team:  # Babel's placeholder
        catalog.language_team = NAMES.get(lang, lang)
    # A copy: Babel adds the template's new messages themselves, and they are changed below.
    catalog.update(copy.deepcopy(template))
    if lang == LANGUAGES[0]:
        # The source language: its text is the msgid, unless someone has rewritten it there.
        for message in catalog:
            if message.id and (message.fuzzy or not all(_forms(message.string))):
                message.string = message.id
                message.flags.discard("fuzzy")
    return catalog


def _forms(string: str | tuple[str, ...] | list[str] | None) -> list[str]:
    if isinstance(string, (tuple, list)):
        return list(string)
    return [string or ""]


def render(catalog: Catalog) -> str:
    """A catalog as the text of its file."""
    out = io.BytesIO()
    # No wrapping: a message stays one line (one per line of its text), easy to find and diff.
    write_po(out, catalog, width=0, ignore_obsolete=True, include_lineno=False)
    return out.getvalue().decode("utf-8")


def outputs(root: Path = ROOT, folder: Path = HERE) -> dict[Path, str]:
    """Every catalog file as it should be: the template, then each language's."""
    template = extract(root)
    pot = folder / f"{DOMAIN}.pot"
    if pot.exists():
        # The template keeps its date while its messages stay the same.
        created = template.creation_date
        template.creation_date = read_catalog(pot).creation_date
        if stale({pot: render(template)}):
            template.creation_date = created
    files = {pot: render(template)}
    for lang in LANGUAGES:
        files[catalog_path(lang, folder)] = render(update(template, lang, folder))
    return files


def _stable(text: str) -> str:
    return VOLATILE.sub("", text)


def stale(files: dict[Path, str]) -> list[Path]:
    """The files whose text is not as given (but for the header fields that change by
    themselves)."""
    return [path for path, text in files.items()
            if not path.exists() or _stable(path.read_text(encoding="utf-8")) != _stable(text)]


def main(argv: list[str] | None = None, root: Path = ROOT, folder: Path = HERE) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    files = outputs(root, folder)
    out_of_date = stale(files)
    for path in out_of_date:
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path], encoding="utf-8")
        print(f"{path.relative_to(folder)}: {'out of date' if check else 'updated'}")
    return 1 if out_of_date and check else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
