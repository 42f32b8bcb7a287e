"""Mattermost messages as a terminal shows them, for the sandbox console.

Bold, italics and headings as ANSI styles when the output is a terminal that takes them (the
text without its markers otherwise), links as their text and address, emoji shortcodes as emoji,
and never a control character that would drive the terminal.
"""

from __future__ import annotations

import os
import re
from typing import IO

#: The emoji of the shortcodes the bot writes, and of a few that people commonly use.
EMOJI = {
    "arrows_counterclockwise": "🔄",
    "bell": "🔔",
    "bug": "🐛",
    "construction": "🚧",
    "eyes": "👀",
    "fire": "🔥",
    "heavy_check_mark": "✔️",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "inbox_tray": "📥",
    "information_source": "ℹ️",
    "leftwards_arrow_with_hook": "↩️",
    "lock": "🔒",
    "mag": "🔍",
    "memo": "📝",
    "no_entry": "⛔",
    "ok_hand": "👌",
    "pushpin": "📌",
    "question": "❓",
    "red_circle": "🔴",
    "rotating_light": "🚨",
    "smile": "😄",
    "slightly_smiling_face": "🙂",
    "speech_balloon": "💬",
    "tada": "🎉",
    "thumbsdown": "👎",
    "-1": "👎",
    "thumbsup": "👍",
    "+1": "👍",
    "ticket": "🎫",
    "warning": "⚠️",
    "wave": "👋",
    "white_check_mark": "✅",
    "wrench": "🔧",
    "x": "❌",
    "zzz": "💤",
}

#: Control characters a message could use to drive the terminal (tab and newline stay).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: What is shown as written: code, and addresses (whose `_`, `*` and `:` are not Markdown).
_VERBATIM = re.compile(
    r"(?P<code>```.*?(?:```|\Z)|`[^`\n]+`)"
    r"|(?P<link>!?\[(?P<label>[^\]\n]*)\]\((?P<target><[^>\n]*>|[^\s)]+)(?:\s+\"[^\"\n]*\")?\))"
    r"|<(?P<auto>[a-z][a-z0-9+.-]*:[^\s>]+)>"
    r"|(?P<url>\b(?:https?|ftp|mailto):[^\s<>]*[^\s<>.,;:!?'\")\]])",
    re.DOTALL | re.IGNORECASE)
_PLACEHOLDER = re.compile("\x00([0-9]+)\x00")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])"
                     r"|(?<![_\w])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![_\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_SHORTCODE = re.compile(r":([a-z0-9_+-]+):")

#: ANSI styles: (on, off). Each has its own "off", so styles nest.
BOLD = ("\x1b[1m", "\x1b[22m")
ITALIC = ("\x1b[3m", "\x1b[23m")
UNDERLINE = ("\x1b[4m", "\x1b[24m")
STRIKE = ("\x1b[9m", "\x1b[29m")


def clean(text: str) -> str:
    """The text without the control characters that would drive the terminal."""
    return _CONTROL.sub("", text)


def render_markdown(text: str, *, ansi: bool = False, emoji: bool = True) -> str:
    """Mattermost Markdown as a terminal shows it.

    Bold, italics and headings become ANSI styles when `ansi`, else the bare text; struck-out
    text (a resolved alert) is struck out with ANSI and keeps its `~~` otherwise, as that is
    its meaning. `[text](url)` becomes `text (url)`. Known `:shortcodes:` become emoji when
    `emoji` (unknown ones stay as written). Code is shown as written, backticks included.
    """
    kept: list[str] = []

    def keep(value: str) -> str:
        kept.append(value)
        return f"\x00{len(kept) - 1}\x00"

    def verbatim(m: re.Match[str]) -> str:
        if m["code"]:
            return keep(m["code"])
        if m["link"]:
            target = m["target"].strip("<>")
            label = render_markdown(m["label"], ansi=ansi, emoji=emoji).strip()
            if not label or label == target:
                return keep(target)
            return keep(f"{_style(label, UNDERLINE, ansi)} ({target})")
        return keep(m["auto"] or m["url"])

    text = _VERBATIM.sub(verbatim, clean(text))
    text = _HEADING.sub(lambda m: _style(m[1], BOLD, ansi), text)
    text = _BOLD.sub(lambda m: _style(m[1] or m[2], BOLD, ansi), text)
    text = _ITALIC.sub(lambda m: _style(m[1] or m[2], ITALIC, ansi), text)
    if ansi:
        text = _STRIKE.sub(lambda m: _style(m[1], STRIKE, ansi), text)
    if emoji:
        text = _SHORTCODE.sub(lambda m: EMOJI.get(m[1], m[0]), text)
    return _PLACEHOLDER.sub(lambda m: kept[int(m[1])], text)


def _style(text: str, style: tuple[str, str], ansi: bool) -> str:
    return f"{style[0]}{text}{style[1]}" if ansi else text


def wants_ansi(stream: IO[str]) -> bool:
    """Styles for a terminal that takes them: not when piped, NO_COLOR is set or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def can_show_emoji(stream: IO[str]) -> bool:
    """Whether the stream's encoding has the emoji (an ASCII or Latin-1 locale does not)."""
    try:
        "".join(EMOJI.values()).encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True
