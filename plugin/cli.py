"""The `switchboard` command: run | check | doctor | register-commands | console."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from . import __version__, logs
from .app import Bot, BotError
from .arguments import DeclarationError
from .config import Config, ConfigError, load
from .handlers import default_features
from .review import check_runnable, warnings
from .store import shown
from .trackers import build_trackers


def _secrets(config: Config) -> list[str]:
    s = config.settings
    values = [s.mattermost.token.get_secret_value(), s.security.secret.get_secret_value()]
    values += [t.get_secret_value() for t in s.listener.slash_tokens]
    values += [t.get_secret_value() for t in s.listener.outgoing_tokens]
    values += [t.get_secret_value() for t in s.listener.webhook_tokens.values()]
    values.append(s.alerts.token.get_secret_value())
    for source in s.alerts.sources.values():
        values += [source.token.get_secret_value(), source.password.get_secret_value(),
                   source.api_token.get_secret_value(), source.api_password.get_secret_value()]
    for tracker in s.trackers.values():
        for field in ("user_token", "app_token", "api_key"):
            secret = getattr(tracker, field, None)
            if secret is not None:
                values.append(secret.get_secret_value())
    return values


def cmd_check(args: argparse.Namespace) -> int:
    config = load(args.config)
    problems = check_runnable(config)
    s = config.settings
    if problems:
        print("plugin.yaml is valid, but the bot cannot run with it:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
    # Named even when the bot cannot run: one pass of `check` lists everything to fix.
    for warning in warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        return 1
    target = "the built-in sandbox" if s.sandbox else s.mattermost.url
    print(f"{config.manifest.name} {config.manifest.version}: configuration is valid "
          f"(Mattermost: {target}; listener: {s.listener.listen}; state: {shown(s.state.path)})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load(args.config)
    s = config.settings
    if s.sandbox:
        from .sandbox.run import run_sandbox
        return run_sandbox(config, console=not args.no_console)
    problems = check_runnable(config)
    if problems:
        print("Cannot start:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 2  # a configuration problem: restarting will not help
    logs.setup(s.logging.level, s.logging.format, _secrets(config))
    for warning in warnings(config):
        logging.getLogger("switchboard").warning("%s", warning)
    try:
        bot = Bot(config, default_features(config, build_trackers(s)))
    except DeclarationError as exc:
        # A feature's handler or hook cannot run as declared: restarting will not help.
        print(f"switchboard: cannot start: {exc}", file=sys.stderr)
        return 2
    return run_bot(bot)


def run_bot(bot: Bot) -> int:
    try:
        asyncio.run(bot.run())
    except BotError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor, secret_values
    config = load(args.config)
    logs.setup("WARNING", "text", secret_values(config))
    return asyncio.run(doctor(config, config_path=args.config))


def cmd_store_migrate(args: argparse.Namespace) -> int:
    """Copy an SQLite state file (the configured one by default) into a PostgreSQL database."""
    from .store import StoreError, is_database_url
    from .store.transfer import copy_to_postgres
    target = args.to or os.environ.get("SWITCHBOARD_DB_TARGET", "")
    if not is_database_url(target):
        print("switchboard: store migrate needs --to postgresql://user:password@host/database "
              "(or SWITCHBOARD_DB_TARGET)", file=sys.stderr)
        return 2
    source = args.source or load(args.config).settings.state.path
    if is_database_url(source):
        print(f"switchboard: the state is already in a database ({shown(source)}); give the "
              "SQLite file with --from", file=sys.stderr)
        return 2
    try:
        counts = asyncio.run(copy_to_postgres(source, target))
    except StoreError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 4
    copied = ", ".join(f"{n} {table}" for table, n in counts.items())
    print(f"copied {source} into {shown(target)}: {copied}. Rows already there were kept; "
          "set SWITCHBOARD_DB to the database and start the bot.")
    return 0


def cmd_register_commands(args: argparse.Namespace) -> int:
    from .commands import register_commands
    config = load(args.config)
    extra = [os.environ.get(args.token_env, "")] if args.token_env else []
    logs.setup("WARNING", "text", _secrets(config) + extra)
    return asyncio.run(register_commands(config, token_env=args.token_env,
                                         err=lambda line: print(line, file=sys.stderr)))


def cmd_console(args: argparse.Namespace) -> int:
    from .sandbox.console import run_console
    token = os.environ.get("SWITCHBOARD_CONSOLE_TOKEN", "alice-token")
    return asyncio.run(run_console(args.url, token, channel=args.channel))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchboard",
                                description="Chat-ops bridge for Mattermost.")
    p.add_argument("--version", action="version", version=f"switchboard {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("-c", "--config", default=None,
                        help="configuration file (default: ./plugin.yaml or $SWITCHBOARD_CONFIG)")
        return sp

    r = with_config(sub.add_parser("run", help="run the bot (the sandbox when MM_URL is unset)"))
    r.add_argument("--no-console", action="store_true",
                   help="sandbox only: no terminal chat, just the bot and the simulator")
    r.set_defaults(fn=cmd_run)
    with_config(sub.add_parser("check", help="validate the configuration without connecting")
                ).set_defaults(fn=cmd_check)
    with_config(sub.add_parser(
        "doctor", help="check Mattermost, the bot account, the listener, the trackers and the "
                       "monitoring sources; say what to fix (exit status 1 on any failure)")
                ).set_defaults(fn=cmd_doctor)
    rc = with_config(sub.add_parser(
        "register-commands", help="create or update the slash commands in Mattermost"))
    rc.add_argument("--token-env", metavar="NAME", default=None,
                    help="take the token from this environment variable (e.g. a system admin's "
                         "personal access token) instead of the bot's")
    rc.set_defaults(fn=cmd_register_commands)
    st = sub.add_parser("store", help="the state store").add_subparsers(dest="store_command",
                                                                        required=True)
    mg = with_config(st.add_parser(
        "migrate", help="copy an SQLite state file into a PostgreSQL database (again: nothing "
                        "copied twice); stop the bot first"))
    mg.add_argument("--from", dest="source", metavar="FILE", default=None,
                    help="the SQLite state file (default: the configured one)")
    mg.add_argument("--to", metavar="URL", default=None,
                    help="postgresql://user:password@host:port/database (or "
                         "$SWITCHBOARD_DB_TARGET, which keeps the password off the command "
                         "line)")
    mg.set_defaults(fn=cmd_store_migrate)
    sub.add_parser("sendevt", help="send an event to the alert listener (see sendevt --help)",
                   add_help=False)
    c = sub.add_parser("console", help="chat with a running sandbox as a user")
    c.add_argument("--url", default="http://127.0.0.1:8065")
    c.add_argument("--channel", default="helpdesk")
    c.set_defaults(fn=cmd_console)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sendevt"]:
        # Its own options, in the manner of the event senders operators already script.
        from . import sendevt
        try:
            return sendevt.main(argv[1:])
        except ConfigError as exc:
            print(f"switchboard: {exc}", file=sys.stderr)
            return 2
    args = parser().parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except ConfigError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
