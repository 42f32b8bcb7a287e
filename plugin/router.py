"""Declared handlers: a `Router` per feature, combined into one tree.

A feature is one module with its `Router`; everything it plugs into the bot is declared there:

- handlers, all of one shape — `@router.message(...)`, `@router.command(...)`,
  `@router.action(...)`, `@router.dialog(...)`, `@router.slash(...)`, `@router.webhook(...)` —
  each receiving only the arguments it names (the table is `plugin.arguments`; an unknown name
  is refused here, at registration);
- outbox executors (`@router.executor(kind)`), HTTP intake routes (`@router.intake(prefix)`,
  served at `POST /<prefix>/<name>`), periodic jobs (`@router.every(seconds)`), and start and stop
  hooks (`@router.on_start`, `@router.on_stop`). A start hook receives the `Runtime`, the only
  part of the running bot a feature reaches.

`help` is generated from the declarations.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import arguments, i18n
from . import filters as F
from .arguments import DeclarationError, Kind
from .events import Message
from .i18n import _

if TYPE_CHECKING:
    from .context import Context
    from .runtime import Runtime
    from .store import OutboxEntry

Handler = Callable[..., Awaitable[Any]]
Executor = Callable[["OutboxEntry"], Awaitable[None]]
RetryHook = Callable[["OutboxEntry", str], Awaitable[None]]
#: An intake handler: (the name after the prefix, the parsed body, the request's headers).
Intake = Callable[[str, Any, dict[str, str]], Awaitable[dict[str, Any]]]
StartHook = Callable[["Runtime"], Awaitable[None]]
StopHook = Callable[[], Awaitable[None]]
Job = Callable[[], Awaitable[None]]
#: A message route's handler of requests found too late: (context, message, what it captured).
LateHandler = Callable[["Context", Message, dict[str, Any]], Awaitable[None]]

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


@dataclass(frozen=True)
class ExecutorDecl:
    kind: str
    run: Executor
    on_retry: RetryHook | None = None


@dataclass(frozen=True)
class IntakeDecl:
    prefix: str
    handle: Intake


@dataclass(frozen=True)
class JobDecl:
    name: str
    seconds: float
    run: Job


@dataclass
class Declarations:
    """What features declared besides handlers, in declaration order."""

    executors: list[ExecutorDecl] = field(default_factory=list)
    intakes: list[IntakeDecl] = field(default_factory=list)
    jobs: list[JobDecl] = field(default_factory=list)
    starts: list[StartHook] = field(default_factory=list)
    stops: list[StopHook] = field(default_factory=list)


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
        self.captures = frozenset({"text"}) | (
            frozenset(self._args.groupindex) | {"usage_error"} if self._args else frozenset())

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
        self._declared = Declarations()

    def include(self, *routers: Router) -> Router:
        self._children.extend(routers)
        return self

    def routes(self, kind: Kind | None = None) -> Iterator[Route]:
        for r in self._routes:
            if kind is None or r.kind == kind:
                yield r
        for child in self._children:
            yield from child.routes(kind)

    def declarations(self) -> Declarations:
        """This router's declarations and its children's, in order."""
        merged = Declarations()
        for router in self._walk():
            d = router._declared
            merged.executors += d.executors
            merged.intakes += d.intakes
            merged.jobs += d.jobs
            merged.starts += d.starts
            merged.stops += d.stops
        return merged

    def _walk(self) -> Iterator[Router]:
        yield self
        for child in self._children:
            yield from child._walk()

    def _add(self, kind: Kind, key: str, filters: tuple[F.Filter, ...], description: str,
             usage: str, options: dict[str, Any]) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"handler {fn.__name__} must be an async function")
            params = _params(fn)
            if params is not None:
                arguments.check(kind, fn.__name__, params, F.captures_of(filters))
            self._routes.append(Route(kind, fn, key, filters, description or
                                      (inspect.getdoc(fn) or "").split("\n")[0], usage,
                                      params, options))
            return fn
        return register

    # --- what a feature plugs in besides handlers -----------------------------------------------
    def executor(self, kind: str, *, on_retry: RetryHook | None = None
                 ) -> Callable[[Executor], Executor]:
        """Carries out the outbox's entries of `kind`; `on_retry` hears of each retryable
        failure."""
        def register(fn: Executor) -> Executor:
            self._declared.executors.append(ExecutorDecl(kind, fn, on_retry))
            return fn
        return register

    def intake(self, prefix: str) -> Callable[[Intake], Intake]:
        """Serves `POST /<prefix>/<name>`: the handler gets the name, the body (JSON, or a form as
        a dict) and the headers, and answers with a JSON object or raises `HTTPError`."""
        if not re.fullmatch(r"[a-z][a-z0-9-]*", prefix):
            raise DeclarationError(
                f"intake prefix {prefix!r} must be lowercase letters, digits or -")

        def register(fn: Intake) -> Intake:
            self._declared.intakes.append(IntakeDecl(prefix, fn))
            return fn
        return register

    def every(self, seconds: float, *, name: str = "") -> Callable[[Job], Job]:
        """Runs the job once the bot has started, then again `seconds` after each run ends,
        until the bot stops; a failing run is logged and the next one comes all the same."""
        if seconds <= 0:
            raise DeclarationError("a periodic job needs a positive interval")

        def register(fn: Job) -> Job:
            self._declared.jobs.append(JobDecl(name or fn.__name__, seconds, fn))
            return fn
        return register

    def on_start(self, fn: StartHook) -> StartHook:
        """Runs at start, before any message is handled, with the `Runtime`."""
        self._declared.starts.append(fn)
        return fn

    def on_stop(self, fn: StopHook) -> StopHook:
        """Runs at shutdown, after the handlers have finished."""
        self._declared.stops.append(fn)
        return fn

    # --- registrars ----------------------------------------------------------------------------
    def message(self, *filters: F.Filter, direct: bool | None = None,
                channels: list[str] | None = None, users: list[str] | None = None,
                description: str = "", usage: str = "",
                describe: dict[str, str] | None = None,
                late: LateHandler | None = None) -> Callable[[Handler], Handler]:
        """A message in a channel or DM that passes every filter.

        `direct=True` only DMs, `direct=False` only channels; `channels` and `users` restrict
        further. `description` (marked with `N_()`) is translated for help, then filled with
        `describe`'s values. `late(ctx, message, captured)` gets, once, a matching message found
        after an outage but too old to answer (`backfill.max_age`): to offer it to its author.
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
                         {"describe": describe or {}, "late": late})

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
            raise DeclarationError(f"action name {name!r} must be letters and digits only")
        return self._add("action", name, (), description, "", {})

    def dialog(self, callback_id: str, *, description: str = "") -> Callable[[Handler], Handler]:
        return self._add("dialog", callback_id, (), description, "", {})

    def slash(self, command: str, *, description: str = "") -> Callable[[Handler], Handler]:
        if not command.startswith("/"):
            command = "/" + command
        return self._add("slash", command.lower(), (), description, "", {})

    def webhook(self, name: str, *, description: str = "") -> Callable[[Handler], Handler]:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise DeclarationError(
                f"webhook name {name!r} must be lowercase letters, digits, - or _")
        return self._add("webhook", name, (), description, "", {})


class RouteTable:
    """The flattened tree, indexed for the hot path."""

    def __init__(self, root: Router) -> None:
        self.root = root
        self.declared = root.declarations()
        kinds = [e.kind for e in self.declared.executors]
        prefixes = [i.prefix for i in self.declared.intakes]
        for what, names in (("outbox executors", kinds), ("intake routes", prefixes)):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise DeclarationError(
                    f"two {what} declared for {', '.join(map(repr, twice))}")
        self.commands = [r for r in root.routes("command")]
        self.messages = [r for r in root.routes("message")]
        self.keyed: dict[tuple[Kind, str], Route] = {}
        keyed_kinds: tuple[Kind, ...] = ("action", "dialog", "slash", "webhook")
        for kind in keyed_kinds:
            for r in root.routes(kind):
                if (r.kind, r.key) in self.keyed:
                    raise DeclarationError(f"two handlers declared for {r.kind} {r.key!r}")
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
