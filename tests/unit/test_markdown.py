"""Links in the bot's posts: one markdown link whatever its text and address hold, never a link to
anything but a web page, and free text whose bare addresses become links (which Mattermost does
not fetch for a preview)."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from plugin.markdown import code, destination, escape, link, without_bare_urls

#: A whole markdown link: text of escaped or plain characters but brackets, and an address with
#: no space, parenthesis, angle bracket or backslash (what cannot end it early).
ONE_LINK = re.compile(r"\[(?P<text>(?:\\[^\n]|[^\\\[\]\n])*)\]\((?P<url>[^\s()<>\\`]+)\)")


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parsed(md: str) -> tuple[str, str]:
    """The text and address of a message that is exactly one link (the test fails otherwise)."""
    m = ONE_LINK.fullmatch(md)
    assert m is not None, f"not one whole link: {md!r}"
    return unescape(m["text"]), m["url"]


def test_a_ticket_link() -> None:
    assert link("#42", "http://glpi/front/ticket.form.php?id=42") == \
        "[#42](http://glpi/front/ticket.form.php?id=42)"
    assert link("Runbook", "https://wiki.example.com/runbooks/disk#full") == \
        "[Runbook](https://wiki.example.com/runbooks/disk#full)"


@pytest.mark.parametrize("text", [
    "a](javascript:alert(1))",
    "[nested [brackets]]",
    "close ] then ( open",
    "trailing backslash \\",
    "line one\nline two\r\n\nline three",
    "`code that would swallow the end",
    "<https://elsewhere.example/>",
    "**bold** and _italics_",
])
def test_hostile_text_stays_inside_the_link(text: str) -> None:
    md = link(text, "https://tracker.example/ticket/1")
    shown, url = parsed(md)
    assert url == "https://tracker.example/ticket/1"
    assert shown == re.sub(r"\s*[\r\n]+\s*", " ", text)
    assert "\n" not in md


@pytest.mark.parametrize("url", [
    "https://wiki.example/Rendering_(computer_graphics)",
    "https://tracker.example/search?q=disk full&sort=new",
    "https://tracker.example/a)b(c",
    "https://tracker.example/x\\)y",
    "https://tracker.example/<script>\"'`",
    "https://tracker.example/line\nbreak\ttab",
    "https://[::1]:8080/path",
    "https://пример.example/путь",
])
def test_addresses_with_spaces_and_parentheses_stay_one_address(url: str) -> None:
    md = link("the page", url)
    shown, target = parsed(md)
    assert shown == "the page"
    assert unquote(target) == url  # the same address, encoded where markdown would misread it


def test_only_web_addresses_are_linked() -> None:
    for url in ("javascript:alert(document.cookie)", "JavaScript:alert(1)", "java\tscript:x",
                " javascript:x", "data:text/html;base64,PHNjcmlwdD4=", "file:///etc/passwd",
                "vbscript:msgbox", "/relative/path", "//evil.example/x", "https://", "http:x",
                "https://[::1/broken"):
        md = link("#7", url)
        assert "](" not in md, md
        assert md.startswith("#7 (`") and md.endswith("`)"), md
    # Shown as code, the address cannot become a link or end the span early.
    assert link("#7", "javascript:alert(`x`)") == "#7 (``javascript:alert(`x`)``)"
    assert link("", "javascript:x") == "`javascript:x`"
    assert link("a]b", "mailto:x@y") == "a\\]b (`mailto:x@y`)"


def test_no_text_shows_the_address_and_no_address_shows_the_text() -> None:
    assert link("", "https://x.example/a(b)") == \
        "[https://x.example/a\\(b\\)](https://x.example/a%28b%29)"
    assert link("#7", "") == "#7"
    assert link("[#7]", "  ") == "\\[#7\\]"


def test_the_parts() -> None:
    assert escape("a[b]c(d)e\\f`g<h") == "a\\[b\\]c\\(d\\)e\\\\f\\`g\\<h"
    assert destination("https://x/a b(c)") == "https://x/a%20b%28c%29"
    assert destination("https://x/%41?a=1&b=[2]") == "https://x/%41?a=1&b=[2]"
    assert code("") == ""
    assert code("a`b") == "``a`b``"
    assert code("`x`") == "`` `x` ``"
    assert code("one\ntwo") == "`one two`"


# --- free text -----------------------------------------------------------------------------------

def test_bare_addresses_become_links() -> None:
    url = "https://grafana.example/d/abc?from=now-1h"
    assert without_bare_urls(f"see {url} now") == f"see [{url}]({url}) now"
    assert without_bare_urls("Docs: http://wiki.example/Disk_(full).") == \
        "Docs: [http://wiki.example/Disk_\\(full\\)](http://wiki.example/Disk_%28full%29)."
    assert without_bare_urls("(see https://x.example/y)") == \
        "(see [https://x.example/y](https://x.example/y))"
    assert without_bare_urls("at www.example.com/help, or") == \
        "at [www.example.com/help](http://www.example.com/help), or"
    assert without_bare_urls("<https://x.example/a>") == "[https://x.example/a](https://x.example/a)"
    assert without_bare_urls("HTTPS://X.EXAMPLE") == "[HTTPS://X.EXAMPLE](HTTPS://X.EXAMPLE)"


def test_what_is_no_bare_address_is_left_as_written() -> None:
    for text in ("no address here", "www. alone", "http:// alone", "ftp://files.example/x",
                 "already [a link](https://x.example/a) here",
                 "[a [nested] label](https://x.example/b)",
                 "`https://in.code.example/` span", "``a ` https://x.example/ b``",
                 "```\nhttps://in.a.fence.example/\n```",
                 "[ref]: https://x.example/definition",
                 "**bold** _it_ `code` ~~gone~~ @alice ~town-square #42", ""):
        assert without_bare_urls(text) == text


def test_inline_images_become_links() -> None:
    assert without_bare_urls("screenshot: ![shot](https://glpi.example/doc?id=3)") == \
        "screenshot: [shot](https://glpi.example/doc?id=3)"
    assert without_bare_urls("![](https://glpi.example/doc)") == \
        "[https://glpi.example/doc](https://glpi.example/doc)"


def test_free_text_keeps_its_other_addresses_and_layout() -> None:
    text = ("Disk full on db1\nrunbook https://rb.example/disk and "
            "`curl https://api.example/`\n\n```\nGET https://x.example/\n```\nthen www.ex.org.")
    assert without_bare_urls(text) == (
        "Disk full on db1\nrunbook [https://rb.example/disk](https://rb.example/disk) and "
        "`curl https://api.example/`\n\n```\nGET https://x.example/\n```\n"
        "then [www.ex.org](http://www.ex.org).")
    # A lone backtick does not hide an address in a later paragraph.
    assert without_bare_urls("a ` tick\n\nhttps://x.example/ ` b") == \
        "a ` tick\n\n[https://x.example/](https://x.example/) ` b"


def test_made_links_are_left_alone_the_second_time() -> None:
    once = without_bare_urls("see https://x.example/a(b) and www.y.example")
    assert without_bare_urls(once) == once
