"""Link previews: the page a post's first bare link points to, fetched before the post is answered.

A 5.36 server, preparing a new or edited post, looks for the message's first link written as a
bare URL (or `<url>`) and fetches that page for its OpenGraph metadata before it answers the
request and broadcasts the post: with `User-Agent: Mattermost-Bot/1.1`, following redirects,
giving up after a timeout, ignoring every failure. A markdown link `[text](url)`, a URL in code
and the links of message attachments are not fetched; a post with attachments gets no preview at
all (its embed is the attachments). What was fetched is remembered per URL and hour, so the same
link in the same hour is fetched once.

The simulator records every fetch in `LinkPreviews.fetches`; it adds no `opengraph` embed to the
post (no recorded shape to follow).
"""

from __future__ import annotations

import re
import time
from typing import Any, NamedTuple

import aiohttp

USER_AGENT = "Mattermost-Bot/1.1"
#: How much of a page is read (the head, where the metadata is).
READ_LIMIT = 64 * 1024
_HOUR_MS = 3_600_000

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}\1[ \t]*$|\Z)",
                    re.MULTILINE | re.DOTALL)
#: An indented code block: indented lines at the start or after a blank line.
_INDENTED = re.compile(r"(?:\A|(?<=\n\n))(?:(?: {4}|\t)[^\n]*(?:\n|\Z))+")
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
_LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*\S+[^\n]*$", re.MULTILINE)
#: `[text](url)`, `![alt](url)` and `[text][ref]`, one level of brackets inside the text.
_MARKDOWN_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\s*\)"
    r"|!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<(https?://[^<>\s]+)>|(?:(?<=[\s*_~(])|^)(https?://[^\s<]+)",
                       re.IGNORECASE | re.MULTILINE)
_TRAILING = "?!.,:*_~'\""


def _blank(match: re.Match[str]) -> str:
    # Keep the text's length and line breaks; only what was matched stops counting.
    return re.sub(r"[^\n]", " ", match.group(0))


def _trim(url: str) -> str:
    """A bare URL without the punctuation that ends its sentence (and unbalanced `)`)."""
    while url:
        if url[-1] in _TRAILING or (url.endswith(")") and url.count(")") > url.count("(")):
            url = url[:-1]
        elif re.search(r"&[A-Za-z0-9]+;$", url):
            url = re.sub(r"&[A-Za-z0-9]+;$", "", url)
        else:
            break
    return url


def first_link(message: str) -> str | None:
    """The URL of the message's first bare link, or None (markdown links and code skipped)."""
    text = _FENCE.sub(_blank, message)
    text = _INDENTED.sub(_blank, text)
    text = _CODE_SPAN.sub(_blank, text)
    text = _LINK_DEFINITION.sub(_blank, text)
    text = _MARKDOWN_LINK.sub(_blank, text)
    for match in _AUTOLINK.finditer(text):
        url = match.group(1) or _trim(match.group(2))
        if re.fullmatch(r"https?://[^/?#\s]+.*", url, re.IGNORECASE | re.DOTALL):
            return url
    return None


def preview_url(message: str, props: dict[str, Any]) -> str | None:
    """The URL the server would fetch for a post with this message and these props."""
    if "attachments" in props:
        return None
    return first_link(message)


class Fetch(NamedTuple):
    """One link-preview fetch: the URL, the status (None when it failed) and when it ended."""

    url: str
    status: int | None
    time: float


class LinkPreviews:
    """Fetches previews for the simulator and remembers what it fetched."""

    def __init__(self, *, enabled: bool = True, timeout_s: float = 5.0) -> None:
        self.enabled = enabled
        self.timeout_s = timeout_s
        #: Every fetch made, oldest first.
        self.fetches: list[Fetch] = []
        self._seen: set[tuple[str, int]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def needed(self, message: str, props: dict[str, Any], create_at_ms: int) -> str | None:
        """The URL to fetch for this post, unless previews are off or it was fetched already."""
        if not self.enabled:
            return None
        url = preview_url(message, props)
        if url is None or (url, create_at_ms // _HOUR_MS) in self._seen:
            return None
        return url

    async def fetch_for(self, message: str, props: dict[str, Any], create_at_ms: int) -> bool:
        """Fetch the preview a post needs, if any; whether a fetch was made."""
        url = self.needed(message, props, create_at_ms)
        if url is None:
            return False
        self._seen.add((url, create_at_ms // _HOUR_MS))
        await self.fetch(url)
        return True

    async def fetch(self, url: str) -> int | None:
        """GET `url` as the server does; the status, or None when it failed (never raises)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": USER_AGENT},
                connector=aiohttp.TCPConnector(limit=0, force_close=True))
        status: int | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            async with self._session.get(url, timeout=timeout, allow_redirects=True,
                                         max_redirects=10) as response:
                await response.content.read(READ_LIMIT)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError):
            status = None
        self.fetches.append(Fetch(url, status, time.monotonic()))
        return status
