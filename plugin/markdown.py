"""Links in the bot's posts, written so that Mattermost does not preview them.

Before it answers a post's creation, Mattermost fetches the first bare address of the message
(`https://…` or `www.…`) for a link preview, and the images of inline `![…](…)` for their size: a
GET against the tracker's or the monitoring system's web pages for every reply that carries one.
A markdown link `[text](url)` is neither fetched nor previewed, and reads the same.

`link` writes one such link whatever its text and address hold (brackets, parentheses, spaces,
line breaks); an address that is not `http` or `https` is shown as code, never as a link.
`without_bare_urls` does the same for free text the bot passes on (a ticket's title, a technician's
answer, an error): its bare addresses become links, inline images become links to them, and
everything else, code and existing links included, stays as written.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: The schemes a link may have; any other address is shown as code.
SCHEMES = ("http", "https")

#: What ends a link's text or starts something that would swallow its end: `[`, `]`, `(`, `)`,
#: a code span's backtick, an angle autolink's `<`, and the backslash that would escape them.
_LABEL_SPECIAL = re.compile(r"([\\\[\]()`<>])")
_LINE_BREAKS = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")
#: Characters a link's address may not hold as written: they would end it or change its meaning.
_DESTINATION_UNSAFE = frozenset("()<>`\\\"'")

#: Free text, token by token: what is left as written, what becomes a link.
_TOKENS = re.compile(
    # A fenced code block (to its closing fence, or to the end as an unclosed one runs).
    r"(?P<fenced>^[ ]{0,3}(?P<fence>`{3,}|~{3,}).*?(?:^[ ]{0,3}(?P=fence)[ \t]*$|\Z))"
    # A code span.
    r"|(?P<code>(?P<ticks>`+)(?!`)(?:(?!\n[ \t]*\n).)+?(?<!`)(?P=ticks)(?!`))"
    # A link reference definition: `[name]: url`.
    r"|(?P<definition>^[ ]{0,3}\[(?:\\.|[^\\\[\]\n])+\]:[ \t]*\S+)"
    # A link or an inline image.
    r"|(?P<link>(?P<bang>!?)\[(?P<label>(?:\\.|[^\\\[\]])*)\]"
    r"\((?P<dest>(?:\\.|[^\\()\s]|\((?:\\.|[^\\()\s])*\))*)"
    r"(?P<title>\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\))"
    # The address part of a link whose text the pattern above could not take (nested brackets).
    r"|(?P<target>\]\((?:\\.|[^\\()\s])*\))"
    # An angle autolink: `<https://…>`.
    r"|<(?P<angle>https?://[^\s<>]+)>"
    # A bare address, as Mattermost's autolinking finds it.
    r"|(?P<bare>https?://[^\s<>]+|(?<![\w@.:/-])www\.[^\s<>]+)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL)
#: Punctuation after an address that ends the sentence rather than the address.
_TRAILING = ".,;:!?*_~'\""


def escape(text: str) -> str:
    """Text that reads as written inside a link's brackets: the characters that would end the
    link or open something that swallows its end are escaped, line breaks become spaces."""
    return _LABEL_SPECIAL.sub(r"\\\1", _LINE_BREAKS.sub(" ", text))


def destination(url: str) -> str:
    """A link's address as markdown takes it: spaces, control characters, parentheses, angle
    brackets, quotes, backticks and backslashes percent-encoded (the address is unchanged)."""
    if url.isascii() and url.isprintable() and " " not in url and \
            _DESTINATION_UNSAFE.isdisjoint(url):
        return url  # nothing to encode (the usual address)
    out = []
    for ch in url:
        if ch.isspace() or ch in _DESTINATION_UNSAFE or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            out.append("".join(f"%{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


def is_web_address(url: str) -> bool:
    """An `http` or `https` address with a host: what a link may point to."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in SCHEMES and bool(parts.netloc)


def code(text: str) -> str:
    """Text as an inline code span, whatever backticks and line breaks it holds ("" stays "")."""
    text = _LINE_BREAKS.sub(" ", text)
    if not text:
        return ""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def link(text: str, url: str) -> str:
    """`[text](url)`, safe whatever either holds.

    The text is escaped (an empty one shows the address); the address is percent-encoded where
    markdown would misread it. An address that is not `http` or `https` (`javascript:`, `file:`,
    a relative path) is not linked: the text is followed by the address as code. No address: the
    text alone."""
    url = url.strip()
    label = escape(text.strip()) or escape(url)
    if not url:
        return label
    if not is_web_address(url):
        shown = code(url)
        return f"{escape(text.strip())} ({shown})" if text.strip() else shown
    return f"[{label}]({destination(url)})"


def _trim(address: str) -> tuple[str, str]:
    """An address found in text, and what follows it that is not part of it (a full stop, the
    closing parenthesis of a remark)."""
    tail = ""
    while address:
        last = address[-1]
        if last in _TRAILING or (last == ")" and address.count("(") < address.count(")")) or \
                (last == "]" and address.count("[") < address.count("]")):
            tail = last + tail
            address = address[:-1]
        else:
            break
    return address, tail


def _token(m: re.Match[str]) -> str:
    if m["link"]:
        if not m["bang"]:
            return m[0]
        # An inline image is fetched for its size: it becomes a link to the image.
        label = m["label"] or escape(m["dest"])
        return f"[{label}]({m['dest']}{m['title'] or ''})"
    if m["angle"]:
        return link(m["angle"], m["angle"])
    if m["bare"]:
        address, tail = _trim(m["bare"])
        if "://" in address:
            target = address
        elif len(address.split("/", 1)[0]) > len("www."):
            target = f"http://{address}"  # as Mattermost links it
        else:
            return m[0]  # `www.` alone is no address
        if not is_web_address(target):
            return m[0]
        return link(address, target) + tail
    return m[0]


def without_bare_urls(text: str) -> str:
    """Free text with its bare addresses made markdown links and its inline images made links,
    so that Mattermost fetches nothing for it; the rest is left as written."""
    if not text:
        return text
    return _TOKENS.sub(_token, text)


def quote(text: str) -> str:
    """Free text as a block quote (each line behind `> `), its bare addresses made links as
    `without_bare_urls` makes them; "" for no text."""
    return "\n".join("> " + line for line in without_bare_urls(text).splitlines())
