"""Declared handlers: a `Router` per feature, combined into one tree.

Registrars all have one shape — `@router.message(...)`, `@router.command(...)`,
`@router.action(...)`, `@router.dialog(...)`, `@router.slash(...)`, `@router.webhook(...)` — and
a handler receives only the arguments it names: `ctx`, `event`, `post`, `text`, `user_id`,
`channel_id`, plus whatever its filters captured. `help` is generated from the declarations.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from . import filters as F
from . import i18n
from .events import Message
from .i18n import _

Kind = Literal["message", "command", "action", "dialog", "slash", "webhook"]
Handler = Callable[..., Awaitable[Any]]

_ACTION_NAME = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Route:
    kind: Kind
    handler: Handler
    key: str = ""
    filters: tuple[F.Filter, ...] = ()
    description: str = ""
    usage: str = ""
    #: Names the handler accepts; None when it takes **kwargs.
    params: frozenset[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def call(self, available: dict[str, Any]) -> Awaitable[Any]:
        if self.params is None:
            return self.handler(**available)
        return self.handler(**{k: v for k, v in available.items() if k in self.params})


@dataclass(frozen=True)
class Match:
    route: Route
    captured: dict[str, Any]


def _params(fn: Handler) -> frozenset[str] | None:
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return frozenset(sig.parameters)


class Command:
    """Filter for a command word (or words: "my tickets") at the start of a message.

    The command also answers to its translations in every catalog (`статус` for `status`), and
    to any `aliases` given. `args` is a regex the rest must fully match; its named groups are
    captured. A command whose arguments do not match still matches, with `usage_error` set, so
    the handler is not skipped silently and the user learns the right form.
    """

    def __init__(self, name: str, args: str | None = None, aliases: tuple[str, ...] = ()) -> None:
        self.name = name
        self.names = tuple(dict.fromkeys((*i18n.aliases(name), *aliases)))
        heads = "|".join(r"\s+".join(re.escape(w) for w in n.split())
                         for n in sorted(self.names, key=len, reverse=True))
        # A number may follow the word directly (`ステータス123`: Japanese needs no space).
        self._head = re.compile(rf"\s*(?:{heads})(?:\s+|$|(?=[#\d]))", re.IGNORECASE)
        self._args = re.compile(args, re.IGNORECASE) if args else None

    def __call__(self, msg: Message) -> F.FilterResult:
        m = self._head.match(msg.post.message)
        if m is None:
            return False
        rest = msg.post.message[m.end():].strip()
        if self._args is None:
            return {"text": rest}
        am = self._args.fullmatch(rest)
        if am is None:
            return {"text": rest, "usage_error": True}
        return {"text": rest, "usage_error": False} | am.groupdict()


class Router:
    """A set of declared handlers; routers nest with `include`."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._routes: list[Route] = []
        self._children: list[Router] = []

    def include(self, *routers: Router) -> Router:
        self._children.extend(routers)
        return self

    def routes(self, kind: Kind | None = None) -> Iterator[Route]:
        for r in self._routes:
            if kind is None or r.kind == kind:
                yield r
        for child in self._children:
            yield from child.routes(kind)

    def _add(self, kind: Kind, key: str, filters: tuple[F.Filter, ...], description: str,
             usage: str, options: dict[str, Any]) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"handler {fn.__name__} must be an async function")
            self._routes.append(Route(kind, fn, key, filters, description or
                                      (inspect.getdoc(fn) or "").split("\n")[0], usage,
                                      _params(fn), options))
            return fn
        return register

    # --- registrars ----------------------------------------------------------------------------
    def message(self, *filters: F.Filter, direct: bool | None = None,
                channels: list[str] | None = None, users: list[str] | None = None,
                description: str = "", usage: str = "",
                describe: dict[str, str] | None = None) -> Callable[[Handler], Handler]:
        """A message in a channel or DM that passes every filter.

        `direct=True` only DMs, `direct=False` only channels; `channels` and `users` restrict
        further. `description` (marked with `N_()`) is translated for help, then filled with
        `describe`'s values.
        """
        fs = list(filters)
        if direct is True:
            fs.insert(0, F.DirectOnly)
        elif direct is False:
            fs.insert(0, F.ChannelsOnly)
        if channels:
            fs.insert(0, F.InChannels(channels))
        if users:
            fs.insert(0, F.FromUsers(users))
        return self._add("message", "", tuple(fs), description, usage,
                         {"describe": describe or {}})

    def command(self, name: str, *, args: str | None = None, description: str = "",
                usage: str = "", anywhere: bool = False, users: list[str] | None = None,
                aliases: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
        """A command in a DM to the bot (`status 123`); `anywhere` also takes it in channels when
        the bot is @mentioned first. Its translations in the catalogs (context `command`) and
        `aliases` are other names for it. Mark `description` with `N_()`: help shows it in the
        reader's language."""
        fs: list[F.Filter] = []
        if not anywhere:
            fs.append(F.DirectOnly)
        if users:
            fs.append(F.FromUsers(users))
        fs.append(Command(name, args, aliases))
        return self._add("command", name.lower(), tuple(fs), description, usage or name,
                         {"anywhere": anywhere})

    def action(self, name: str, *, description: str = "") -> Callable[[Handler], Handler]:
        """A button or menu click whose signed payload names this action."""
        if not _ACTION_NAME.match(name):
            raise ValueError(f"action name {name!r} must be letters and digits only")
        return self._add("action", name, (), description, "", {})

    def dialog(self, callback_id: str, *, description: str = "") -> Callable[[Handler], Handler]:
        return self._add("dialog", callback_id, (), description, "", {})

    def slash(self, command: str, *, description: str = "") -> Callable[[Handler], Handler]:
        if not command.startswith("/"):
            command = "/" + command
        return self._add("slash", command.lower(), (), description, "", {})

    def webhook(self, name: str, *, description: str = "") -> Callable[[Handler], Handler]:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ValueError(f"webhook name {name!r} must be lowercase letters, digits, - or _")
        return self._add("webhook", name, (), description, "", {})


class RouteTable:
    """The flattened tree, indexed for the hot path."""

    def __init__(self, root: Router) -> None:
        self.root = root
        self.commands = [r for r in root.routes("command")]
        self.messages = [r for r in root.routes("message")]
        self.keyed: dict[tuple[Kind, str], Route] = {}
        keyed_kinds: tuple[Kind, ...] = ("action", "dialog", "slash", "webhook")
        for kind in keyed_kinds:
            for r in root.routes(kind):
                if (r.kind, r.key) in self.keyed:
                    raise ValueError(f"two handlers declared for {r.kind} {r.key!r}")
                self.keyed[(r.kind, r.key)] = r

    def match_message(self, msg: Message, bot_mention: str = "") -> Match | None:
        """The first route that takes this message: commands first, then messages."""
        if self.commands:
            probe: Message | None = msg
            if bot_mention and not msg.is_direct:
                text = msg.post.message.lstrip()
                probe = None
                if text.lower().startswith(bot_mention.lower()):
                    rest = text[len(bot_mention):].lstrip(" ,:")
                    probe = replace(msg, post=replace(msg.post, message=rest))
            if probe is not None:
                for route in self.commands:
                    if not msg.is_direct and not route.options.get("anywhere"):
                        continue
                    captured = F.apply(route.filters, probe)
                    if captured is not None:
                        return Match(route, captured)
        for route in self.messages:
            captured = F.apply(route.filters, msg)
            if captured is not None:
                return Match(route, captured)
        return None

    def get(self, kind: Kind, key: str) -> Route | None:
        return self.keyed.get((kind, key))

    def help_text(self, direct: bool = True) -> str:
        """The commands and triggers a user can use, from their declarations, in the language
        in force."""

        def line(usage: str, description: str, alias: str = "",
                 fill: dict[str, str] | None = None) -> str:
            fill = fill or {}
            shown = f"`{usage}`" + (f" (`{alias}`)" if alias else "")
            if not description:
                return f"- {shown}"
            text = _(description)
            if fill:
                try:
                    text = text.format(**fill)
                except (KeyError, IndexError, ValueError):
                    pass  # a description with braces of its own is shown as written
            return f"- {shown} — {text}"

        lines = [_("**Commands** (send them to me in a direct message):")]
        for r in self.commands:
            local = i18n.pgettext(i18n.COMMAND, r.key)
            lines.append(line(r.usage, r.description,
                              local if local.lower() != r.key.lower() else ""))
        # Catch-all routes have no usage to show; only declared triggers are listed.
        triggers = [r for r in self.messages if r.usage]
        if triggers:
            lines.append("")
            lines.append(_("**In channels:**"))
            for r in triggers:
                lines.append(line(r.usage, r.description, fill=r.options.get("describe")))
        slashes = [r for r in self.keyed.values() if r.kind == "slash"]
        if slashes:
            lines.append("")
            lines.append(_("**Slash commands:**"))
            for r in slashes:
                lines.append(line(r.key, r.description))
        return "\n".join(lines)
