"""Reading `.po` catalogs for the running bot, with the standard library alone.

A catalog is read straight into a `Translations` object (a `gettext.NullTranslations` that answers
`gettext`, `ngettext`, `pgettext` and `npgettext`), as if it had been compiled to a `.mo` file and
loaded with `gettext.GNUTranslations`:

- the header entry (empty msgid) gives the charset, which must be UTF-8, and the plural rule
  (`Plural-Forms`, evaluated with `gettext.c2py`; without one, gettext's default `n != 1`);
- fuzzy entries are left out (the header excepted), and so are untranslated ones: an empty
  `msgstr`, or a plural message with an empty or missing form. Such messages fall back to the
  source text, in all their forms;
- obsolete entries (`#~`) and all other comments are ignored;
- strings may span lines and use C escapes (`\\n`, `\\t`, `\\"`, `\\\\`, …, octal `\\303` and hex
  `\\xc3` bytes, which must form UTF-8).

A file that breaks the format, or says the same message twice, is a `CatalogError` naming the file
and the line.
"""

from __future__ import annotations

import codecs
import gettext
import re
from collections.abc import Callable
from pathlib import Path

#: What joins a message's context to its msgid in a compiled catalog.
CONTEXT_SEPARATOR = "\x04"

_KEYWORD = re.compile(r"(msgctxt|msgid_plural|msgid|msgstr)(\[[^\]]*\])?(?=[\s\"]|$)\s*(.*)")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"\s*')
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]+)|(.))")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "a": "\a",
                   "\\": "\\", '"': '"', "'": "'", "?": "?"}
#: Escaped bytes of 0x80 and above, kept as the lone surrogates of `surrogateescape` until decoded.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_CHARSET = re.compile(r"charset\s*=\s*([-\w.:]+)", re.I)
_NPLURALS = re.compile(r"nplurals\s*=\s*(\d+)")
_PLURAL = re.compile(r"\bplural\s*=\s*([^;]+)")


class CatalogError(ValueError):
    """A `.po` file that cannot be read."""


class Translations(gettext.NullTranslations):
    """A catalog's translated messages, looked up as `gettext.GNUTranslations` does."""

    _fallback: gettext.NullTranslations | None  # set by NullTranslations (`add_fallback`)

    def __init__(self, messages: dict[str, str], plurals: dict[str, tuple[str, ...]],
                 plural: Callable[[int], int], info: dict[str, str]) -> None:
        super().__init__()
        self._messages = messages
        self._plurals = plurals
        self.plural = plural
        self._info = info
        self._charset = "utf-8"

    def _one(self, key: str) -> str | None:
        found = self._messages.get(key)
        if found is None and key in self._plurals:  # a plural msgid asked for in the singular
            found = self._form(key, 1)
        return found

    def _form(self, key: str, n: int) -> str | None:
        forms = self._plurals.get(key)
        if forms is None:
            return None
        index = self.plural(n)
        return forms[index] if 0 <= index < len(forms) else None

    def gettext(self, message: str) -> str:
        found = self._one(message)
        if found is not None:
            return found
        return self._fallback.gettext(message) if self._fallback else message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        found = self._form(msgid1, n)
        if found is not None:
            return found
        if self._fallback:
            return self._fallback.ngettext(msgid1, msgid2, n)
        return msgid1 if n == 1 else msgid2

    def pgettext(self, context: str, message: str) -> str:
        found = self._one(f"{context}{CONTEXT_SEPARATOR}{message}")
        if found is not None:
            return found
        return self._fallback.pgettext(context, message) if self._fallback else message

    def npgettext(self, context: str, msgid1: str, msgid2: str, n: int) -> str:
        found = self._form(f"{context}{CONTEXT_SEPARATOR}{msgid1}", n)
        if found is not None:
            return found
        if self._fallback:
            return self._fallback.npgettext(context, msgid1, msgid2, n)
        return msgid1 if n == 1 else msgid2


def read(path: Path) -> Translations:
    """The catalog in a `.po` file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{path}: {exc.strerror or exc}") from None
    return parse(data, str(path))


def parse(data: bytes, name: str = "<catalog>") -> Translations:
    """A catalog from the bytes of a `.po` file; `name` is the file named in errors."""
    try:
        text = data.decode("utf-8-sig")  # an editor's byte-order mark is not part of line 1
    except UnicodeDecodeError as exc:
        # Most likely another charset: the header says which, when it comes before the text.
        declared = _CHARSET.search(data[:exc.start].decode("latin-1"))
        if declared and not _is_utf8(declared.group(1)):
            line = data.count(b"\n", 0, declared.start()) + 1
            raise CatalogError(_unsupported(name, line, declared.group(1))) from None
        line = data.count(b"\n", 0, exc.start) + 1
        raise CatalogError(f"{name}:{line}: not valid UTF-8 ({exc.reason})") from None
    return _Parser(name).run(text)


def _is_utf8(charset: str) -> bool:
    try:
        return codecs.lookup(charset).name == "utf-8"
    except LookupError:
        return False


def _unsupported(name: str, line: int, charset: str) -> str:
    return (f"{name}:{line}: the catalog's charset is {charset!r}; only UTF-8 catalogs can be "
            f"read: convert the file (msgconv --to-code=UTF-8) and declare charset=UTF-8")


def _unescape_one(match: re.Match[str]) -> str:
    octal, hexa, char = match.groups()
    if char is not None:
        simple = _SIMPLE_ESCAPES.get(char)
        if simple is None:
            raise ValueError(f"unknown escape \\{char}")
        return simple
    value = int(octal, 8) if octal is not None else int(hexa, 16)
    if value > 0xFF:
        raise ValueError(f"escape {match.group(0)} is not a byte")
    # A byte, to be decoded with its neighbours once the whole string is known.
    return chr(value) if value < 0x80 else chr(0xDC00 + value)


def _unescape(body: str) -> str:
    return _ESCAPE.sub(_unescape_one, body) if "\\" in body else body


class _Parser:
    """One pass over a catalog's lines, entry by entry."""

    def __init__(self, name: str) -> None:
        self.name = name
        # The entry being read: where it began, its fields in order, each (keyword, line, pieces).
        self.start = 0
        self.fields: list[tuple[str, int, list[str]]] = []
        self.flags: set[str] = set()  # of the entry that comes next
        self.seen: dict[str, int] = {}  # every msgid (with its context) and its line
        self.messages: dict[str, str] = {}
        self.plurals: dict[str, tuple[str, ...]] = {}
        self.form_counts: dict[str, tuple[int, int]] = {}  # plural messages: line, forms
        self.lines: list[str] = []
        self.header: dict[str, str] = {}
        self.header_line = 0

    def fail(self, line: int, problem: str) -> CatalogError:
        return CatalogError(f"{self.name}:{line}: {problem}")

    @property
    def state(self) -> str:
        """The last keyword read in the entry ("" between entries)."""
        return self.fields[-1][0] if self.fields else ""

    def run(self, text: str) -> Translations:
        self.lines = text.split("\n")
        for lineno, raw in enumerate(self.lines, 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                self.comment(lineno, line)
            elif line.startswith('"'):
                if not self.fields:
                    raise self.fail(lineno, "a string outside an entry")
                self.fields[-1][2].append(self.string(lineno, line))
            else:
                self.keyword(lineno, line)
        if self.fields:
            if not self.state.startswith("msgstr"):
                raise self.fail(self.start, "the file ends before this entry's msgstr")
            self.finish()
        return self.result()

    def comment(self, lineno: int, line: str) -> None:
        if self.fields:
            if not self.state.startswith("msgstr"):
                raise self.fail(lineno, f"a comment inside the entry at line {self.start}, "
                                        "before its msgstr")
            self.finish()
        if line.startswith("#~"):
            self.flags = set()  # they belonged to this obsolete entry
        elif line.startswith("#,"):
            self.flags.update(flag.strip() for flag in line[2:].split(","))

    def string(self, lineno: int, text: str) -> str:
        match = _STRING.fullmatch(text)
        if match is None:
            if _STRING.match(text):
                raise self.fail(lineno, "text after the closing quote")
            raise self.fail(lineno, "unterminated string")
        try:
            return _unescape(match.group(1))
        except ValueError as exc:
            raise self.fail(lineno, str(exc)) from None

    def keyword(self, lineno: int, line: str) -> None:
        match = _KEYWORD.fullmatch(line)
        if match is None:
            shown = line if len(line) <= 40 else line[:37] + "..."
            raise self.fail(lineno, f"expected msgctxt, msgid, msgid_plural, msgstr or a quoted "
                                    f"string, found {shown!r}")
        word, index, rest = match.groups()
        if index is not None and word != "msgstr":
            raise self.fail(lineno, f"{word} takes no index")
        if not rest.startswith('"'):
            raise self.fail(lineno, f"{word}{index or ''} without a quoted string")
        state = self.state
        if word in ("msgctxt", "msgid"):
            if state.startswith("msgstr"):
                self.finish()
            elif state in ("msgid", "msgid_plural") or state == word:
                raise self.fail(lineno, f"{word}, but the entry at line {self.start} "
                                        "has no msgstr")
            if not self.fields:
                self.start = lineno
        elif state.startswith("msgstr") and (word != "msgstr" or index is None):
            raise self.fail(lineno, f"{word}{index or ''} after the msgstr of the entry at "
                                    f"line {self.start}")
        elif word == "msgid_plural":
            if state != "msgid":
                raise self.fail(lineno, "msgid_plural without a msgid before it")
        elif state not in ("msgid", "msgid_plural", "msgstr[]"):
            raise self.fail(lineno, f"msgstr{index or ''} without a msgid before it")
        elif index is not None:
            self.plural_form(lineno, index, state)
            word = "msgstr[]"
        elif state == "msgid_plural":
            raise self.fail(lineno, "a plural message takes msgstr[0], msgstr[1], …, not msgstr")
        self.fields.append((word, lineno, [self.string(lineno, rest)]))

    def plural_form(self, lineno: int, index: str, state: str) -> None:
        if state == "msgid":
            raise self.fail(lineno, f"msgstr{index} in a message without msgid_plural")
        wanted = f"[{sum(1 for field in self.fields if field[0] == 'msgstr[]')}]"
        if index != wanted:
            raise self.fail(lineno, f"bad plural index: msgstr{index} where msgstr{wanted} "
                                    "was expected")

    def text(self, pieces: list[str], lineno: int) -> str:
        joined = "".join(pieces)
        if _ESCAPED_BYTE.search(joined):
            try:
                joined = joined.encode("utf-8", "surrogateescape").decode("utf-8")
            except UnicodeError:
                raise self.fail(lineno, "escaped bytes that are not UTF-8") from None
        return joined

    def finish(self) -> None:
        fields = {word: (lineno, self.text(pieces, lineno))
                  for word, lineno, pieces in self.fields if word != "msgstr[]"}
        forms = [self.text(pieces, lineno)
                 for word, lineno, pieces in self.fields if word == "msgstr[]"]
        flags, self.fields, self.flags = self.flags, [], set()
        msgid = fields["msgid"][1]
        context = fields.get("msgctxt")
        key = msgid if context is None else f"{context[1]}{CONTEXT_SEPARATOR}{msgid}"
        if key in self.seen:
            which = f"{msgid!r}" if context is None else f"{msgid!r} in context {context[1]!r}"
            raise self.fail(self.start, f"{which} is already in the catalog "
                                        f"(line {self.seen[key]})")
        self.seen[key] = self.start
        if forms:
            self.form_counts[key] = self.start, len(forms)
        if key == "":
            if forms:
                raise self.fail(self.start, "the header entry (empty msgid) cannot be plural")
            self.read_header(fields["msgstr"][1])
            self.messages[key] = fields["msgstr"][1]
        elif "fuzzy" in flags:
            return
        elif forms:
            if all(forms):
                self.plurals[key] = tuple(forms)
        elif fields["msgstr"][1]:
            self.messages[key] = fields["msgstr"][1]

    def read_header(self, text: str) -> None:
        self.header_line = self.start
        for field in text.split("\n"):
            name, colon, value = field.partition(":")
            if colon:
                self.header[name.strip().lower()] = value.strip()
        declared = _CHARSET.search(self.header.get("content-type", ""))
        if declared and not _is_utf8(declared.group(1)):
            line = self.header_field_line("content-type")
            raise CatalogError(_unsupported(self.name, line, declared.group(1)))

    def header_field_line(self, name: str) -> int:
        """The line of the header entry where a field is (or else where the entry begins)."""
        for lineno in range(self.header_line, len(self.lines) + 1):
            text = self.lines[lineno - 1].strip()
            if lineno > self.header_line and text.startswith(("#", "msgid", "msgctxt")):
                break  # the next entry
            if f"{name}:" in text.lower():
                return lineno
        return self.header_line

    def plural_rule(self) -> tuple[int, Callable[[int], int]]:
        rule = self.header.get("plural-forms")
        if rule is None:
            return 2, lambda n: int(n != 1)
        count, expr = _NPLURALS.search(rule), _PLURAL.search(rule)
        if count is None or expr is None or int(count.group(1)) < 1:
            raise self.fail(self.header_field_line("plural-forms"),
                            f"Plural-Forms {rule!r} is not 'nplurals=<count>; "
                            "plural=<expression>;'")
        try:
            return int(count.group(1)), gettext.c2py(expr.group(1).strip())
        except (ValueError, RecursionError):
            raise self.fail(self.header_field_line("plural-forms"),
                            "Plural-Forms has a plural expression gettext cannot read: "
                            f"{expr.group(1).strip()!r}") from None

    def result(self) -> Translations:
        nplurals, plural = self.plural_rule()
        for line, count in self.form_counts.values():
            if count > nplurals:
                raise self.fail(line, f"{count} plural forms, but the catalog's Plural-Forms "
                                      f"has nplurals={nplurals}")
        # A message with fewer forms than the rule picks from is incomplete: left out.
        plurals = {key: forms for key, forms in self.plurals.items() if len(forms) == nplurals}
        return Translations(self.messages, plurals, plural, self.header)
