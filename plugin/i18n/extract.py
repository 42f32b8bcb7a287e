"""Keep the catalogs in step with the code: `python -m plugin.i18n.extract` (`make i18n`).

It collects every `_()`, `N_()`, `ngettext()` and `pgettext()` call with literal strings in the
bot's sources, writes the template `switchboard.pot`, and merges it into each language's `.po`:
translations are kept, new messages are added untranslated (English gets its msgid), messages the
code no longer has are dropped. `--check` changes nothing and exits 1 when a file is out of date.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import COMMAND, DOMAIN, HERE, LANGUAGES, catalog_path, parse_po

ROOT = HERE.parent.parent
SOURCES = ("plugin",)
PLURAL_FORMS = {
    "en": "nplurals=2; plural=(n != 1);",
    "de": "nplurals=2; plural=(n != 1);",
    "fr": "nplurals=2; plural=(n > 1);",
    "ru": "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && "
          "(n%100<10 || n%100>=20) ? 1 : 2);",
    "ja": "nplurals=1; plural=0;",
}
NAMES = {"en": "English", "ru": "Russian", "fr": "French", "de": "German", "ja": "Japanese"}


@dataclass
class Message:
    msgid: str
    plural: str | None = None
    context: str | None = None
    where: list[str] = field(default_factory=list)
    line: int = 0

    @property
    def key(self) -> tuple[str | None, str]:
        return self.context, self.msgid


def _literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def extract(root: Path = ROOT) -> list[Message]:
    """Every translatable message in the sources, in order of first appearance."""
    found: dict[tuple[str | None, str], Message] = {}
    for top in SOURCES:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), rel)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                if isinstance(node.func, ast.Name):
                    name = node.func.id
                elif isinstance(node.func, ast.Attribute):  # i18n._("...")
                    name = node.func.attr
                else:
                    continue
                args = node.args
                msg: Message | None = None
                if name in ("_", "N_") and len(args) == 1 and _literal(args[0]) is not None:
                    msg = Message(str(_literal(args[0])))
                elif name == "ngettext" and len(args) == 3 and _literal(args[0]) is not None \
                        and _literal(args[1]) is not None:
                    msg = Message(str(_literal(args[0])), plural=_literal(args[1]))
                elif name == "pgettext" and len(args) == 2 and _literal(args[0]) is not None \
                        and _literal(args[1]) is not None:
                    msg = Message(str(_literal(args[1])), context=_literal(args[0]))
                elif name in ("command", "aliases") and args and _literal(args[0]) is not None:
                    # Command words (`router.command("status")`, `i18n.aliases("mine")`) are
                    # translated as their aliases in each language.
                    msg = Message(str(_literal(args[0])), context=COMMAND)
                if msg is None or not msg.msgid:
                    continue
                if msg.key in found:
                    if rel not in found[msg.key].where:
                        found[msg.key].where.append(rel)
                else:
                    msg.where.append(rel)
                    msg.line = node.lineno
                    found[msg.key] = msg
    # Grouped by file, in the order of the code; references name files, not lines, so that
    # moving code does not change the catalogs.
    return sorted(found.values(), key=lambda m: (m.context or "", m.where[0], m.line))


def _quote(text: str) -> str:
    body = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
            .replace("\r", "\\r").replace("\n", "\\n"))
    return f'"{body}"'


def _field(keyword: str, text: str) -> list[str]:
    # Multi-line messages are written one line per source line, as gettext's tools do.
    if "\n" not in text.rstrip("\n"):
        return [f"{keyword} {_quote(text)}"]
    lines = [f'{keyword} ""']
    parts = text.split("\n")
    for i, part in enumerate(parts):
        piece = part + ("\n" if i < len(parts) - 1 else "")
        if piece:
            lines.append(_quote(piece))
    return lines


def render(messages: list[Message], lang: str | None,
           translated: dict[tuple[str | None, str], list[str]]) -> str:
    """A `.pot` (lang None) or a language's `.po`."""
    header = [
        f"# Switchboard's messages{'' if lang is None else ' in ' + NAMES[lang]}.",
        "# Generated entries: edit translations only; run `make i18n` after changing the code.",
        'msgid ""',
        'msgstr ""',
        '"Project-Id-Version: switchboard\\n"',
        f'"Language: {lang or ""}\\n"',
        '"MIME-Version: 1.0\\n"',
        '"Content-Type: text/plain; charset=UTF-8\\n"',
        '"Content-Transfer-Encoding: 8bit\\n"',
        f'"Plural-Forms: {PLURAL_FORMS[lang or "en"]}\\n"',
        "",
    ]
    out = header
    nplurals = int(PLURAL_FORMS[lang or "en"].split(";")[0].split("=")[1])
    for m in messages:
        out.append("#: " + " ".join(m.where[:4]))
        if "{" in m.msgid:
            out.append("#, python-brace-format")
        if m.context is not None:
            out.append(f"msgctxt {_quote(m.context)}")
        out += _field("msgid", m.msgid)
        forms = translated.get(m.key)
        if lang == "en" and not forms:
            forms = [m.msgid] if m.plural is None else [m.msgid, m.plural]
        if m.plural is not None:
            out += _field("msgid_plural", m.plural)
            forms = list(forms or [])
            forms = (forms + [""] * nplurals)[:nplurals]
            for i, form in enumerate(forms):
                out += _field(f"msgstr[{i}]", form)
        else:
            out += _field("msgstr", (forms or [""])[0])
        out.append("")
    return "\n".join(out)


def existing(lang: str) -> dict[tuple[str | None, str], list[str]]:
    path = catalog_path(lang)
    if not path.exists():
        return {}
    result: dict[tuple[str | None, str], list[str]] = {}
    for e in parse_po(path.read_text(encoding="utf-8"), str(path)):
        if not e.get("msgid"):
            continue
        ctx = e.get("msgctxt")
        forms = e.get("msgstr") or []
        assert isinstance(forms, list)
        result[(None if ctx is None else str(ctx), str(e["msgid"]))] = forms
    return result


def outputs(root: Path = ROOT) -> dict[Path, str]:
    """Every catalog file as it should be."""
    messages = extract(root)
    files = {HERE / f"{DOMAIN}.pot": render(messages, None, {})}
    for lang in LANGUAGES:
        files[catalog_path(lang)] = render(messages, lang, existing(lang))
    return files


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if "--check" not in argv:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "out of date" if "--check" in argv else "updated"
        print(f"{path.relative_to(ROOT)}: {verb}")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
