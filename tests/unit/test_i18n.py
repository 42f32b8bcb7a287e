"""The message catalogs: complete in every shipped language, faithful to their placeholders, kept
in step with the code by `make i18n`, and the machinery that picks a language."""

from __future__ import annotations

import gettext
import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message

from plugin import i18n
from plugin.i18n import extract
from plugin.router import Command

TEMPLATE = extract.extract()
MESSAGES = [m for m in TEMPLATE if m.id]
PLACEHOLDER = re.compile(r"(?<!\{)\{([a-z_]+)\}(?!\})")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _msgid(m: Message) -> str:
    return m.id if isinstance(m.id, str) else m.id[0]


def _plural(m: Message) -> str | None:
    return None if isinstance(m.id, str) else m.id[1]


def _key(m: Message) -> tuple[str | None, str]:
    return m.context, _msgid(m)


def _forms(m: Message) -> list[str]:
    return list(m.string) if isinstance(m.string, (tuple, list)) else [m.string or ""]


def _catalog(lang: str) -> Catalog:
    return i18n.read_catalog(i18n.catalog_path(lang))


def _entries(lang: str) -> dict[tuple[str | None, str], Message]:
    return {_key(m): m for m in _catalog(lang) if m.id}


def test_the_code_has_messages_to_translate() -> None:
    # Guards the extractor itself: a broken one would make the completeness test vacuous.
    ids = {_msgid(m) for m in MESSAGES}
    assert "You have no open tickets." in ids
    assert len(MESSAGES) > 40
    assert any(_plural(m) for m in MESSAGES)
    assert any(m.context == "severity" for m in MESSAGES)


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_catalog_has_every_message_translated(lang: str) -> None:
    entries = _entries(lang)
    nplurals = _catalog(lang).num_plurals
    missing, fuzzy, forms = [], [], []
    for m in MESSAGES:
        e = entries.get(_key(m))
        if e is None or not all(_forms(e)):
            missing.append(_msgid(m))
            continue
        if e.fuzzy:
            fuzzy.append(_msgid(m))
        if _plural(m) is not None and (_plural(e) is None or len(_forms(e)) != nplurals):
            forms.append(_msgid(m))
    hint = "run `make i18n`, then translate the new entries"
    assert not missing, f"{lang}: {len(missing)} untranslated ({hint}): {missing[:5]}"
    assert not fuzzy, f"{lang}: fuzzy entries: {fuzzy[:5]}"
    assert not forms, f"{lang}: wrong number of plural forms: {forms[:5]}"


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_translations_keep_their_placeholders(lang: str) -> None:
    entries = _entries(lang)
    wrong = []
    for m in MESSAGES:
        e = entries.get(_key(m))
        if e is None:
            continue
        wanted = _fields(_plural(m) or _msgid(m))
        for form in _forms(e):
            if not form:
                continue  # untranslated: the completeness test reports it
            try:
                got = _fields(form)
                form.format(**{name: "x" for name in got})
            except (ValueError, KeyError, IndexError) as exc:
                wrong.append(f"{_msgid(m)!r}: {exc}")
                continue
            if got != wanted:
                wrong.append(f"{_msgid(m)!r}: {sorted(got)} instead of {sorted(wanted)}")
    assert not wrong, f"{lang}: " + "; ".join(wrong[:5])


def test_catalogs_compile_and_translate() -> None:
    with i18n.use("ru"):
        text = i18n._("You have no open tickets.")
    assert text != "You have no open tickets."
    assert re.search(r"[а-яА-Я]", text)
    with i18n.use("ja"):
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", i18n._("You have no open tickets."))
    with i18n.use("xx-YY"):  # unknown locales get the default
        assert i18n._("You have no open tickets.") == "You have no open tickets."


def test_russian_plural_forms() -> None:
    with i18n.use("ru"):
        one, few, many = (i18n.ngettext("{count} alert from {source}",
                                        "{count} alerts from {source}", n) for n in (1, 3, 5))
    # One, few and many take three different forms of the noun in Russian.
    assert len({one, few, many}) == 3, (one, few, many)


def test_locale_is_chosen_from_mattermost_tags() -> None:
    assert i18n.normalize("ru") == "ru"
    assert i18n.normalize("pt-BR") == ""
    assert i18n.normalize("zh_CN") == ""
    assert i18n.normalize("de-AT") == "de"
    assert i18n.normalize("JA") == "ja"
    assert i18n.normalize(None) == ""
    i18n.set_default("fr")
    try:
        assert i18n.choose("pt-BR") == "fr"
        assert i18n.choose("ja") == "ja"
    finally:
        i18n.set_default("en")


def test_language_is_per_task_and_restored() -> None:
    assert i18n.current() == "en"
    with i18n.use("de"):
        assert i18n.current() == "de"
        with i18n.use(None):
            assert i18n.current() == "en"
        assert i18n.current() == "de"
    assert i18n.current() == "en"


def test_command_words_have_distinct_aliases_in_every_language() -> None:
    words = [_msgid(m) for m in MESSAGES if m.context == i18n.COMMAND]
    assert {"status", "help", "my tickets"} <= set(words)
    for lang in i18n.LANGUAGES:
        with i18n.use(lang):
            local = [i18n.pgettext(i18n.COMMAND, w).lower() for w in words]
        clashes = {w for w in local if local.count(w) > 1}
        assert not clashes, f"{lang}: two commands share the alias {clashes}"


def test_russian_alias_of_status_is_a_command() -> None:
    from plugin.events import Message, Post

    with i18n.use("ru"):
        alias = i18n.pgettext(i18n.COMMAND, "status")
    assert alias != "status"
    cmd = Command("status", r"#?(?P<number>\d+)")
    post = Post(id="p", channel_id="c", user_id="u", message=f"{alias} 123", create_at=0)
    msg = Message(post=post, channel_type="D", source="stream")
    assert cmd(msg) == {"text": "123", "usage_error": False, "number": "123"}
    other = Message(post=Post(id="p", channel_id="c", user_id="u", message="stat 1",
                              create_at=0), channel_type="D", source="stream")
    assert cmd(other) is False


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_plural_rule_of_each_catalog_uses_exactly_its_forms(lang: str) -> None:
    # A header whose rule picks a form the catalog does not have (or never picks one it has)
    # would make `ngettext` fall back to English, or leave a translated form unused.
    catalog = _catalog(lang)
    plural = gettext.c2py(catalog.plural_expr)
    assert {plural(n) for n in range(1000)} == set(range(catalog.num_plurals))


# --- reading catalogs ----------------------------------------------------------------------------
def _po(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "switchboard.po"
    path.write_text(text, encoding=encoding)
    return path


@pytest.mark.parametrize("text", [
    'msgid "a"\nmsgstr "b"\nbogus "c"\n',  # an unknown keyword
    'msgid "a"\n\nmsgid "b"\nmsgstr "c"\n',  # an entry without msgstr
])
def test_an_unreadable_catalog_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = _po(tmp_path, text)
    with pytest.raises(i18n.CatalogError, match=re.escape(str(path))):
        i18n.read_catalog(path)


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_shipped_catalogs_are_well_formed(lang: str) -> None:
    # Babel reads some malformed entries without complaint (see below); a well-formed catalog is
    # one that Babel writes back as it is.
    path = i18n.catalog_path(lang)
    assert not extract.stale({path: extract.render(i18n.read_catalog(path))}), \
        f"{path} is not as Babel writes it: run `make i18n`"


@pytest.mark.parametrize("entry", [
    'msgid "a"\nmsgstr "b"\n\nmsgid "a"\nmsgstr "c"\n',  # the same message twice
    'msgid "a"\nmsgstr[1] "b"\n',  # a plural form of a message that has none
    'msgid "a"\nmsgstr "b\n',  # an unterminated string
])
def test_malformed_entries_are_told_apart_from_well_formed_ones(tmp_path: Path,
                                                               entry: str) -> None:
    draft = _po(tmp_path, 'msgid ""\nmsgstr "Language: ru\\n"\n\nmsgid "a"\nmsgstr "b"\n')
    text = extract.render(i18n.read_catalog(draft))
    good = _po(tmp_path, text)
    assert not extract.stale({good: extract.render(i18n.read_catalog(good))})
    assert 'msgid "a"\nmsgstr "b"\n' in text
    bad = _po(tmp_path, text.replace('msgid "a"\nmsgstr "b"\n', entry))
    assert extract.stale({bad: extract.render(i18n.read_catalog(bad))})


def test_multi_line_strings_are_joined(tmp_path: Path) -> None:
    path = _po(tmp_path, 'msgid ""\nmsgstr "h"\n\nmsgid "a\\n"\n"b"\nmsgstr "c"\n"d"\n')
    assert [(m.id, m.string) for m in i18n.read_catalog(path) if m.id] == [("a\nb", "cd")]


def test_a_catalog_without_charset_is_read_as_utf8(tmp_path: Path) -> None:
    path = _po(tmp_path, 'msgid ""\nmsgstr "Language: ru\\n"\n\nmsgid "a"\nmsgstr "б"\n')
    assert i18n.compile_catalog(i18n.read_catalog(path)).gettext("a") == "б"


def test_a_byte_order_mark_is_not_part_of_the_catalog(tmp_path: Path) -> None:
    path = _po(tmp_path, 'msgid ""\nmsgstr "Language: ru\\n"\n\nmsgid "a"\nmsgstr "б"\n',
               encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert i18n.compile_catalog(i18n.read_catalog(path)).gettext("a") == "б"


def test_fuzzy_and_untranslated_entries_are_not_used(tmp_path: Path) -> None:
    path = _po(tmp_path, 'msgid ""\nmsgstr "Language: ru\\n"\n\n'
                         '#, fuzzy\nmsgid "a"\nmsgstr "б"\n\nmsgid "c"\nmsgstr ""\n\n'
                         'msgctxt "command"\nmsgid "d"\nmsgstr "д"\n')
    compiled = i18n.compile_catalog(i18n.read_catalog(path))
    assert compiled.gettext("a") == "a"
    assert compiled.gettext("c") == "c"
    assert compiled.pgettext("command", "d") == "д"
    assert compiled.gettext("d") == "d"


# --- keeping the catalogs in step (`make i18n`) ---------------------------------------------------
SOURCE = '''
from plugin import i18n
from plugin.i18n import N_, _, ngettext, pgettext


def handler(router, command, n):
    router.command("status", r"#?(?P<number>\\d+)")
    words = i18n.aliases("mine")
    token = command["token"]  # a variable, not a command word
    # TRANSLATORS: shown when nothing is open.
    empty = i18n._("Nothing is open.")
    label = N_("Ticket")
    count = ngettext("{count} ticket", "{count} tickets", n)
    level = pgettext("severity", "high")
    return _(label), _(token), words, empty, count, level
'''


def _get(catalog: Catalog, msgid: str) -> Message:
    message = catalog.get(msgid)
    assert message is not None, msgid
    return message


def _tree(tmp_path: Path, source: str) -> tuple[Path, Path]:
    root, folder = tmp_path / "src", tmp_path / "i18n"
    (root / "plugin").mkdir(parents=True, exist_ok=True)
    (root / "plugin" / "handlers.py").write_text(source, encoding="utf-8")
    return root, folder


def test_extraction_finds_every_kind_of_message(tmp_path: Path) -> None:
    root, _ = _tree(tmp_path, SOURCE)
    found = {_key(m): m for m in extract.extract(root) if m.id}
    assert set(found) == {
        (None, "Nothing is open."), (None, "Ticket"), (None, "{count} ticket"),
        ("severity", "high"), (i18n.COMMAND, "status"), (i18n.COMMAND, "mine")}
    assert _plural(found[(None, "{count} ticket")]) == "{count} tickets"
    assert found[(None, "Nothing is open.")].auto_comments == ["shown when nothing is open."]
    assert found[(None, "Ticket")].locations == [("plugin/handlers.py", 12)]
    assert "python-brace-format" in found[(None, "{count} ticket")].flags


def test_make_i18n_creates_updates_and_checks_catalogs(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root, folder = _tree(tmp_path, SOURCE)
    assert extract.main(["--check"], root, folder) == 1
    assert not (folder / "switchboard.pot").exists()  # --check changes nothing
    assert "switchboard.pot: out of date" in capsys.readouterr().out
    assert extract.main([], root, folder) == 0
    assert "ja/LC_MESSAGES/switchboard.po: updated" in capsys.readouterr().out
    assert extract.main(["--check"], root, folder) == 0
    assert extract.main([], root, folder) == 0
    assert capsys.readouterr().out == ""  # nothing left to do: a second run changes nothing

    # English speaks its msgids; the others start untranslated, with their own plural forms.
    en = i18n.read_catalog(i18n.catalog_path("en", folder))
    assert _get(en, "Nothing is open.").string == "Nothing is open."
    assert _get(en, "{count} ticket").string == ("{count} ticket", "{count} tickets")
    ru = i18n.read_catalog(i18n.catalog_path("ru", folder))
    assert ru.num_plurals == 3 and _get(ru, "{count} ticket").string == ("", "", "")
    assert i18n.read_catalog(i18n.catalog_path("ja", folder)).num_plurals == 1

    # A translator's work survives the next run; a reworded message keeps its translation for
    # review (fuzzy); a new one is added; one the code dropped is gone.
    path = i18n.catalog_path("ru", folder)
    text = path.read_text(encoding="utf-8")
    text = text.replace('msgid "Nothing is open."\nmsgstr ""',
                        'msgid "Nothing is open."\nmsgstr "Ничего не открыто."')
    text = text.replace('msgid "Ticket"\nmsgstr ""', 'msgid "Ticket"\nmsgstr "Заявка"')
    path.write_text(text, encoding="utf-8")
    source = SOURCE.replace("Nothing is open.", "Nothing is open now.")
    source = source.replace('N_("Ticket")', 'N_("Alert")')
    _tree(tmp_path, source)
    assert extract.main(["--check"], root, folder) == 1
    assert extract.main([], root, folder) == 0
    ru = i18n.read_catalog(path)
    reworded = _get(ru, "Nothing is open now.")
    assert reworded.string == "Ничего не открыто." and reworded.fuzzy
    assert _get(ru, "Alert").string == "" and not _get(ru, "Alert").fuzzy
    assert ru.get("Ticket") is None and ru.get("Nothing is open.") is None
    # ... and a fuzzy translation is not used until someone confirms it.
    with_fuzzy = i18n.compile_catalog(ru)
    assert with_fuzzy.gettext("Nothing is open now.") == "Nothing is open now."
    en = i18n.read_catalog(i18n.catalog_path("en", folder))
    assert _get(en, "Nothing is open now.").string == "Nothing is open now."
    assert not _get(en, "Nothing is open now.").fuzzy


def test_the_template_date_changes_only_with_its_messages(tmp_path: Path) -> None:
    root, folder = _tree(tmp_path, SOURCE)
    extract.main([], root, folder)
    pot = folder / "switchboard.pot"
    old = "POT-Creation-Date: 2001-02-03 04:05+0000"
    text, n = re.subn(r"POT-Creation-Date: [^\\]*", old, pot.read_text(encoding="utf-8"))
    assert n == 1
    pot.write_text(text, encoding="utf-8")
    assert old in extract.outputs(root, folder)[pot]
    assert extract.main(["--check"], root, folder) == 0
    _tree(tmp_path, SOURCE.replace("Nothing is open.", "Nothing is open now."))
    files = extract.outputs(root, folder)
    assert old not in files[pot]
    assert "POT-Creation-Date: 20" in files[pot]
