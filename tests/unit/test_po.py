"""The bot's own `.po` reader (plugin/i18n/po.py): it translates every shipped message exactly as
the Babel-compiled catalog does, follows the format where Babel is lax, and names the file and the
line of whatever it cannot read."""

from __future__ import annotations

import gettext
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin import i18n
from plugin.i18n import po

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(ROOT.glob("plugin/i18n/*/LC_MESSAGES/*.po"))
RU_HEADER = ('msgid ""\nmsgstr ""\n"Language: ru\\n"\n'
             '"Content-Type: text/plain; charset=UTF-8\\n"\n'
             '"Plural-Forms: nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && '
             'n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);\\n"\n\n')


def _babel(data: bytes) -> gettext.GNUTranslations:
    """What Babel makes of a catalog: read, then compiled to a `.mo` and loaded by gettext."""
    catalog = read_po(io.BytesIO(data), abort_invalid=True)
    mo = io.BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return gettext.GNUTranslations(mo)


def _differences(data: bytes, name: str) -> list[str]:
    """Every lookup of every message in the catalog where the two readers disagree."""
    ours, babel = po.parse(data, name), _babel(data)
    catalog = read_po(io.BytesIO(data))
    wrong = []
    for m in catalog:
        if not m.id:
            continue
        ctx = m.context
        one = m.id if isinstance(m.id, str) else m.id[0]
        asked: list[tuple[str, tuple[str | int, ...]]] = [
            ("gettext", (one,)) if ctx is None else ("pgettext", (ctx, one))]
        if not isinstance(m.id, str):
            for n in range(31):
                asked.append(("ngettext", (one, m.id[1], n)) if ctx is None
                             else ("npgettext", (ctx, one, m.id[1], n)))
        for call, args in asked:
            got, want = getattr(ours, call)(*args), getattr(babel, call)(*args)
            if got != want:
                wrong.append(f"{call}{args!r}: {got!r} instead of {want!r}")
    return wrong


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parts[-3])
def test_every_shipped_message_translates_as_babel_compiled_it(path: Path) -> None:
    data = path.read_bytes()
    assert not _differences(data, str(path))
    ours, catalog = po.parse(data, str(path)), read_po(io.BytesIO(data))
    assert ours.info()["plural-forms"] == catalog.plural_forms
    assert [ours.plural(n) for n in range(200)] == \
           [gettext.c2py(catalog.plural_expr)(n) for n in range(200)]
    assert ours.gettext("no such message") == "no such message"
    assert ours.ngettext("no such {n}", "no such {n}s", 2) == "no such {n}s"


def test_the_shipped_catalogs_are_all_compared() -> None:
    assert {p.parts[-3] for p in SHIPPED} == set(i18n.LANGUAGES)
    assert isinstance(i18n.translations("ru"), po.Translations)
    with i18n.use("ru"):
        assert i18n.pgettext(i18n.COMMAND, "status") != "status"


def test_the_running_bot_does_not_import_babel() -> None:
    code = ("import sys, plugin.cli, plugin.app\n"
            "from plugin import i18n\n"
            "for lang in i18n.LANGUAGES: i18n.translations(lang)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'babel'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


# --- what a catalog says --------------------------------------------------------------------------
def _read(text: str) -> po.Translations:
    return po.parse(text.encode(), "test.po")


def test_contexts_plurals_and_lookups() -> None:
    t = _read(RU_HEADER + 'msgctxt "command"\nmsgid "status"\nmsgstr "статус"\n\n'
                          'msgid "status"\nmsgstr "состояние"\n\n'
                          'msgid "{n} ticket"\nmsgid_plural "{n} tickets"\n'
                          'msgstr[0] "{n} заявка"\nmsgstr[1] "{n} заявки"\n'
                          'msgstr[2] "{n} заявок"\n\n'
                          'msgctxt "mail"\nmsgid "{n} ticket"\nmsgid_plural "{n} tickets"\n'
                          'msgstr[0] "{n} письмо"\nmsgstr[1] "{n} письма"\nmsgstr[2] "{n} писем"\n')
    assert t.pgettext("command", "status") == "статус"
    assert t.gettext("status") == "состояние"
    assert t.pgettext("other", "status") == "status"
    assert [t.ngettext("{n} ticket", "{n} tickets", n) for n in (1, 3, 5, 21)] == \
           ["{n} заявка", "{n} заявки", "{n} заявок", "{n} заявка"]
    assert t.npgettext("mail", "{n} ticket", "{n} tickets", 2) == "{n} письма"
    assert t.npgettext("other", "{n} ticket", "{n} tickets", 2) == "{n} tickets"
    assert t.gettext("{n} ticket") == "{n} заявка"  # a plural message asked in the singular
    assert t.ngettext("status", "statuses", 2) == "statuses"  # not a plural message
    assert t.info()["language"] == "ru" and t.charset() == "utf-8"


def test_a_fallback_answers_what_the_catalog_does_not() -> None:
    t = _read(RU_HEADER + 'msgid "a"\nmsgstr "а"\n')
    t.add_fallback(_read('msgid "b"\nmsgstr "B"\n\nmsgctxt "c"\nmsgid "d"\nmsgstr "D"\n'))
    assert (t.gettext("a"), t.gettext("b"), t.pgettext("c", "d")) == ("а", "B", "D")


def test_without_plural_forms_the_rule_is_gettexts_default() -> None:
    t = _read('msgid "{n} day"\nmsgid_plural "{n} days"\nmsgstr[0] "1"\nmsgstr[1] "2"\n')
    assert [t.ngettext("{n} day", "{n} days", n) for n in (0, 1, 2)] == ["2", "1", "2"]


def test_fuzzy_and_untranslated_entries_fall_back() -> None:
    text = (RU_HEADER
            + '#, fuzzy\nmsgid "fuzzy"\nmsgstr "нечётко"\n\n'
            + '#, python-brace-format, fuzzy\nmsgid "{n} f"\nmsgid_plural "{n} fs"\n'
              'msgstr[0] "а"\nmsgstr[1] "б"\nmsgstr[2] "в"\n\n'
            + 'msgid "empty"\nmsgstr ""\n\n'
            + '#, fuzzy\n#~ msgid "old"\n#~ msgstr "старое"\n\n'  # obsolete: its flag stays
            + '#, python-brace-format\nmsgid "kept"\nmsgstr "оставлено"\n')
    t = _read(text)
    assert t.gettext("fuzzy") == "fuzzy"
    assert t.ngettext("{n} f", "{n} fs", 5) == "{n} fs"
    assert t.gettext("empty") == "empty"
    assert t.gettext("old") == "old"
    assert t.gettext("kept") == "оставлено"
    assert not _differences(text.encode(), "test.po")  # Babel leaves them out too


def test_a_plural_message_with_an_empty_or_missing_form_falls_back_whole() -> None:
    # Here the reader parts from Babel, which fills each empty form with the msgid or the
    # msgid_plural by its index (n=21 in Russian takes form 0: "21 ticket", and n=3 with only
    # form 1 missing would be English among Russian): gettext's own fallback, by n == 1, is right.
    text = RU_HEADER + ('msgid "{n} ticket"\nmsgid_plural "{n} tickets"\n'
                        'msgstr[0] "{n} заявка"\nmsgstr[1] ""\nmsgstr[2] "{n} заявок"\n\n'
                        'msgid "{n} day"\nmsgid_plural "{n} days"\n'
                        'msgstr[0] "{n} день"\nmsgstr[1] "{n} дня"\n\n'
                        'msgid "{n} hour"\nmsgid_plural "{n} hours"\n'
                        'msgstr[0] ""\nmsgstr[1] ""\nmsgstr[2] ""\n')
    t = _read(text)
    for n in (1, 3, 5, 21):
        for one, many in (("{n} ticket", "{n} tickets"), ("{n} day", "{n} days"),
                          ("{n} hour", "{n} hours")):
            assert t.ngettext(one, many, n) == (one if n == 1 else many)
    assert _babel(text.encode()).ngettext("{n} hour", "{n} hours", 21) == "{n} hour"


def test_a_fuzzy_header_still_gives_the_plural_rule() -> None:
    t = _read("#, fuzzy\n" + RU_HEADER + 'msgid "{n} x"\nmsgid_plural "{n} xs"\n'
                                          'msgstr[0] "а"\nmsgstr[1] "б"\nmsgstr[2] "в"\n')
    assert [t.ngettext("{n} x", "{n} xs", n) for n in (1, 2, 5)] == ["а", "б", "в"]


def test_strings_span_lines_and_use_c_escapes() -> None:
    t = _read('msgid ""\n"multi "\n"line"\nmsgstr "a\\n"\n  "b\\tc"  \n\n'
              'msgid "quotes"\nmsgstr "\\"q\\" \\\\ \\r \\a\\b\\f\\v \\\' \\?"\n\n'
              'msgid "bytes"\nmsgstr "\\303\\251\\xc3\\xa9 \\101\\x41 \\0"\n\n'
              'msgid "raw"\nmsgstr "é ✓ \\u"\n'.replace("\\u", "x"))
    assert t.gettext("multi line") == "a\nb\tc"
    assert t.gettext("quotes") == '"q" \\ \r \a\b\f\v \' ?'
    assert t.gettext("bytes") == "éé AA \x00"
    assert t.gettext("raw") == "é ✓ x"


def test_windows_line_ends_and_a_byte_order_mark() -> None:
    text = RU_HEADER + 'msgid "a"\r\nmsgstr "б"\r\n'
    t = po.parse(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode(), "test.po")
    assert t.gettext("a") == "б"


def test_line_separators_inside_strings_are_text() -> None:
    # Only "\n" ends a line: U+2028 or a form feed in a translation is part of it.
    t = _read('msgid "a"\nmsgstr "x\u2028y\x0cz\x85"\n')
    assert t.gettext("a") == "x\u2028y\x0cz\x85"


@pytest.mark.parametrize("charset", ["UTF-8", "utf-8", "utf8", "Utf-8"])
def test_utf8_is_accepted_however_spelled(charset: str) -> None:
    header = f'msgid ""\nmsgstr "Content-Type: text/plain; charset={charset}\\n"\n\n'
    assert _read(header + 'msgid "a"\nmsgstr "б"\n').gettext("a") == "б"


def test_a_catalog_without_header_or_charset_is_read_as_utf8() -> None:
    assert _read('msgid "a"\nmsgstr "б"\n').gettext("a") == "б"


@pytest.mark.parametrize("charset, body", [
    ("ISO-8859-1", "é".encode("latin-1")),  # not even valid UTF-8
    ("ISO-8859-1", b"e"),  # valid UTF-8, but declared otherwise
    ("KOI8-R", "б".encode("koi8-r")),
    ("CHARSET", b"e"),  # a template's placeholder
])
def test_other_charsets_are_refused(charset: str, body: bytes) -> None:
    data = (b'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=' + charset.encode()
            + b'\\n"\n\nmsgid "a"\nmsgstr "' + body + b'"\n')
    # The error names the header's line, where the charset is declared.
    with pytest.raises(po.CatalogError, match=rf"^test\.po:3: the catalog's charset is "
                                              rf"'{charset}'; only UTF-8"):
        po.parse(data, "test.po")


def test_invalid_utf8_names_its_line() -> None:
    with pytest.raises(po.CatalogError, match=r"^test\.po:4: not valid UTF-8"):
        po.parse(b'msgid "a"\nmsgstr "b"\n\nmsgid "\xff"\nmsgstr "c"\n', "test.po")


# --- what it refuses ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, line, problem", [
    ('msgid "a"\nmsgstr "b\n', 2, "unterminated string"),
    ('msgid "a"\nmsgstr "b\\"\n', 2, "unterminated string"),
    ('msgid "a"\nmsgstr "b" x\n', 2, "text after the closing quote"),
    ('msgid "a"\nmsgstr "b"\n"c\n', 3, "unterminated string"),
    ('\n\nmsgstr "b"\n', 3, "msgstr without a msgid before it"),
    ('msgid "a"\nmsgstr "b"\nmsgstr "c"\n', 3, "msgstr after the msgstr of the entry at line 1"),
    ('msgid "a"\n\nmsgid "b"\nmsgstr "c"\n', 3, "msgid, but the entry at line 1 has no msgstr"),
    ('msgid "a"\nmsgctxt "c"\nmsgstr "b"\n', 2, "msgctxt, but the entry at line 1"),
    ('msgid "a"\n', 1, "the file ends before this entry's msgstr"),
    ('msgid "a"\nmsgstr "b"\n\nmsgctxt "c"\nmsgid "d"\n"e"\n\n', 4,
     "the file ends before this entry's msgstr"),
    ('msgid "a"\n#, fuzzy\nmsgstr "b"\n', 2, "a comment inside the entry at line 1"),
    ('"a"\nmsgid "a"\nmsgstr "b"\n', 1, "a string outside an entry"),
    ('msgid "a"\nmsgstr "b"\nbogus "c"\n', 3, "expected msgctxt, msgid, msgid_plural, msgstr"),
    ('msgid "a"\nmsgstr\n', 2, "msgstr without a quoted string"),
    ('msgid[0] "a"\nmsgstr "b"\n', 1, "msgid takes no index"),
    ('msgid_plural "a"\nmsgstr[0] "b"\n', 1, "msgid_plural without a msgid before it"),
    ('msgid "a"\nmsgstr[0] "b"\n', 2, "msgstr[0] in a message without msgid_plural"),
    ('msgid "a"\nmsgid_plural "as"\nmsgstr "b"\n', 3, "a plural message takes msgstr[0]"),
    ('msgid "a"\nmsgid_plural "as"\nmsgstr[1] "b"\n', 3,
     r"bad plural index: msgstr[1] where msgstr[0] was expected"),
    ('msgid "a"\nmsgid_plural "as"\nmsgstr[0] "b"\nmsgstr[2] "c"\n', 4,
     r"bad plural index: msgstr[2] where msgstr[1] was expected"),
    ('msgid "a"\nmsgid_plural "as"\nmsgstr[x] "b"\n', 3, "bad plural index: msgstr[x]"),
    ('msgid "a"\nmsgid_plural "as"\nmsgstr[0] "b"\nmsgstr[1] "c"\nmsgstr "d"\n', 5,
     "msgstr after the msgstr of the entry at line 1"),
    ('msgid "a"\nmsgstr "\\q"\n', 2, r"unknown escape \q"),
    ('msgid "a"\nmsgstr "\\777"\n', 2, r"escape \777 is not a byte"),
    ('msgid "a"\nmsgstr "\\x100"\n', 2, r"escape \x100 is not a byte"),
    ('msgid "a"\nmsgstr "x"\n"\\303"\n', 2, "escaped bytes that are not UTF-8"),
    ('msgid "a"\nmsgstr "b"\n\n#: f.py\nmsgid "a"\nmsgstr "c"\n', 5,
     "'a' is already in the catalog (line 1)"),
    ('msgctxt "k"\nmsgid "a"\nmsgstr "b"\n\nmsgctxt "k"\nmsgid "a"\nmsgstr "c"\n', 5,
     "'a' in context 'k' is already in the catalog (line 1)"),
    ('msgid ""\nmsgstr "Plural-Forms: nplurals=2; plural=n>1 ? 0 : 1 : 2;\\n"\n', 2,
     "Plural-Forms has a plural expression gettext cannot read"),
    ('#, fuzzy\nmsgid ""\nmsgstr ""\n"Language: xx\\n"\n\n"Plural-Forms: nplurals=2; '
     'plural=import os;\\n"\n"X: y\\n"\n\nmsgid "a"\nmsgstr "b"\n', 6,
     "Plural-Forms has a plural expression gettext cannot read"),
    ('msgid ""\nmsgstr "Plural-Forms: plural=n != 1;\\n"\n', 2, "Plural-Forms 'plural=n != 1;' "
                                                               "is not 'nplurals=<count>;"),
    ('msgid ""\nmsgstr "Plural-Forms: nplurals=1; plural=0;\\n"\n\n'
     'msgid "a"\nmsgid_plural "as"\nmsgstr[0] "b"\nmsgstr[1] "c"\n', 4,
     "2 plural forms, but the catalog's Plural-Forms has nplurals=1"),
    ('msgid "a"\nmsgid_plural "as"\nmsgstr[0] "b"\nmsgstr[1] ""\nmsgstr[2] ""\n', 1,
     "3 plural forms, but the catalog's Plural-Forms has nplurals=2"),
])
def test_a_malformed_catalog_is_an_error_naming_the_file_and_line(
        tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = tmp_path / "switchboard.po"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(po.CatalogError) as caught:
        po.read(path)
    assert str(caught.value).startswith(f"{path}:{line}: {problem}"), str(caught.value)
    assert i18n.CatalogError is po.CatalogError


def test_a_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(po.CatalogError, match=re.escape(str(tmp_path / "none.po"))):
        po.read(tmp_path / "none.po")


# --- any catalog Babel writes ---------------------------------------------------------------------
# Text a catalog may carry: printable and control characters, quotes, backslashes, tabs, new
# lines; not NUL (the `.mo` format's separator) nor the line breaks Babel itself misreads.
TEXT = st.text(st.characters(blacklist_categories=["Cs"],
                             blacklist_characters="\x00\x04\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
               max_size=90)
IDS = TEXT.filter(bool)
MESSAGE = st.tuples(st.one_of(st.none(), IDS), IDS, st.one_of(st.none(), IDS),
                    st.booleans(), TEXT, st.lists(IDS, min_size=3, max_size=3))


@settings(max_examples=60, deadline=None)
@given(st.lists(MESSAGE, max_size=12), st.sampled_from(["ru", "ja", "fr", "de"]))
def test_any_catalog_babel_writes_translates_as_babel_compiles_it(
        messages: list[tuple[str | None, str, str | None, bool, str, list[str]]],
        lang: str) -> None:
    catalog = Catalog(locale=lang)  # its header is fuzzy, as a new catalog's is
    for context, msgid, plural, fuzzy, string, forms in messages:
        flags = ["fuzzy"] if fuzzy else []
        if plural is None:
            catalog.add(msgid, string, context=context, flags=flags)
        else:
            catalog.add((msgid, plural), tuple(forms[:catalog.num_plurals]), context=context,
                        flags=flags)
    out = io.BytesIO()
    write_po(out, catalog, width=40)  # narrow: long strings span lines
    assert not _differences(out.getvalue(), "test.po")
