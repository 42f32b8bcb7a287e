"""The message catalogs: complete in every shipped language, faithful to their placeholders, and
the machinery that picks a language."""

from __future__ import annotations

import re
import string

import pytest

from plugin import i18n
from plugin.i18n import extract
from plugin.router import Command

MESSAGES = extract.extract()
PLACEHOLDER = re.compile(r"(?<!\{)\{([a-z_]+)\}(?!\})")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _entries(lang: str) -> dict[tuple[str | None, str], dict[str, object]]:
    text = i18n.catalog_path(lang).read_text(encoding="utf-8")
    found: dict[tuple[str | None, str], dict[str, object]] = {}
    for e in i18n.parse_po(text, lang):
        if e.get("msgid"):
            ctx = e.get("msgctxt")
            found[(None if ctx is None else str(ctx), str(e["msgid"]))] = e
    return found


def test_the_code_has_messages_to_translate() -> None:
    # Guards the extractor itself: a broken one would make the completeness test vacuous.
    ids = {m.msgid for m in MESSAGES}
    assert "You have no open tickets." in ids
    assert len(MESSAGES) > 40


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_catalog_has_every_message_translated(lang: str) -> None:
    entries = _entries(lang)
    nplurals = int(extract.PLURAL_FORMS[lang].split(";")[0].split("=")[1])
    missing, fuzzy, forms = [], [], []
    for m in MESSAGES:
        e = entries.get(m.key)
        translations = e.get("msgstr") if e else None
        if e is None or not isinstance(translations, list) or not all(translations):
            missing.append(m.msgid)
            continue
        flags = e.get("flags")
        if isinstance(flags, list) and "fuzzy" in flags:
            fuzzy.append(m.msgid)
        if m.plural is not None and len(translations) != nplurals:
            forms.append(m.msgid)
    hint = "run `make i18n`, then translate the new entries"
    assert not missing, f"{lang}: {len(missing)} untranslated ({hint}): {missing[:5]}"
    assert not fuzzy, f"{lang}: fuzzy entries: {fuzzy[:5]}"
    assert not forms, f"{lang}: wrong number of plural forms: {forms[:5]}"


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_translations_keep_their_placeholders(lang: str) -> None:
    entries = _entries(lang)
    wrong = []
    for m in MESSAGES:
        e = entries.get(m.key)
        if e is None:
            continue
        wanted = _fields(m.plural if m.plural is not None else m.msgid)
        forms = e.get("msgstr")
        assert isinstance(forms, list)
        for form in forms:
            if not form:
                continue  # untranslated: the completeness test reports it
            try:
                got = _fields(form)
                form.format(**{name: "x" for name in got})
            except (ValueError, KeyError, IndexError) as exc:
                wrong.append(f"{m.msgid!r}: {exc}")
                continue
            if got != wanted:
                wrong.append(f"{m.msgid!r}: {sorted(got)} instead of {sorted(wanted)}")
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
    words = [m.msgid for m in MESSAGES if m.context == i18n.COMMAND]
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


def test_po_reader_rejects_broken_catalogs() -> None:
    with pytest.raises(i18n.CatalogError):
        i18n.parse_po('msgid "a"\nmsgstr "b"\nbogus "c"\n')
    with pytest.raises(i18n.CatalogError):
        i18n.parse_po('msgid "a"\nmsgstr[1] "b"\n')
    with pytest.raises(i18n.CatalogError, match="twice"):
        i18n.parse_po('msgid "a"\nmsgstr "b"\n\nmsgid "a"\nmsgstr "c"\n')
    with pytest.raises(i18n.CatalogError, match="without msgstr"):
        i18n.parse_po('msgid "a"\n\nmsgid "b"\nmsgstr "c"\n')
    entries = i18n.parse_po('msgid ""\nmsgstr "h"\n\nmsgid "a\\n"\n"b"\nmsgstr "c"\n"d"\n')
    assert entries[1]["msgid"] == "a\nb" and entries[1]["msgstr"] == ["cd"]


def test_a_catalog_without_charset_is_read_as_utf8() -> None:
    import gettext
    import io

    entries = i18n.parse_po('msgid ""\nmsgstr "Language: ru\\n"\n\nmsgid "a"\nmsgstr "б"\n')
    assert gettext.GNUTranslations(io.BytesIO(i18n.compile_mo(entries))).gettext("a") == "б"
