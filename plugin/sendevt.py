"""`switchboard sendevt [key=value ...]`: send one event to the bot's generic alert route.

With pairs, they are the event (`title=... severity=critical host=db1`). Without, standard input
is the event: its first non-empty line the title, the whole the text. With `--format snmptrap`,
standard input is a trap as snmptrapd hands its `traphandle`; it goes to the `snmp` route,
where the bot names it, rates it and keys it (`settings.alerts.snmp`). The token comes from the
environment (`SWITCHBOARD_ALERTS_TOKEN` or `ALERTS_TOKEN`), never from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import IO, Any

import httpx

from bridge.alerts import AlertParseError
from bridge.mail import MAX_MAIL, read_mail
from bridge.snmptrap import read_traphandle

EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE = 2, 3, 4
#: For `--format mail`, the statuses a mail server reads (sysexits.h): not a mail (bounced),
#: refused by the bot (bounced), the bot not reachable (the mail server tries again later).
MAIL_EXITS = {EXIT_USAGE: 65, EXIT_REFUSED: 77, EXIT_UNREACHABLE: 75}


def build_event(pairs: list[str], stdin: IO[str], form: str = "event") -> dict[str, Any]:
    """The event from key=value pairs, or from standard input when there are none (in
    snmptrapd's trap handler format with `form` "snmptrap")."""
    if form in ("snmptrap", "mail") and pairs:
        raise ValueError(f"--format {form} reads standard input only")
    if form == "snmptrap":
        try:
            return read_traphandle(stdin.read(1_000_000)).to_json()
        except AlertParseError as exc:
            raise ValueError(str(exc)) from None
    if form == "mail":
        binary = getattr(stdin, "buffer", None)
        raw = binary.read(MAX_MAIL + 1) if binary is not None else \
            stdin.read(MAX_MAIL + 1).encode("utf-8", "surrogateescape")
        try:
            return read_mail(raw).to_json()
        except AlertParseError as exc:
            raise ValueError(str(exc)) from None
    event: dict[str, Any] = {}
    if pairs:
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{pair!r} is not key=value")
            key = key.strip()
            if key.startswith("labels."):
                event.setdefault("labels", {})[key[7:]] = value
            else:
                event[key] = value
    else:
        text = stdin.read(1_000_000)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise ValueError("no key=value pairs and nothing on standard input")
        event = {"title": lines[0][:200], "text": text.strip()}
    event.setdefault("title", event.get("summary") or event.get("message") or "Event")
    return event


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchboard sendevt", description=__doc__.split("\n")[0])
    p.add_argument("pairs", nargs="*", metavar="key=value")
    p.add_argument("-c", "--config", help="plugin.yaml to read the listener's URL from")
    p.add_argument("--server", help="the bot's URL (default: its public URL from the config)")
    p.add_argument("--source", help="alert route (default: generic; snmp for traps)")
    p.add_argument("--format", choices=["event", "snmptrap", "mail"], default="event",
                   help="what standard input holds: an event's text (default), a trap from "
                        "snmptrapd's traphandle, or a mail piped by a mail server (exit "
                        "statuses then as sysexits: 65 not a mail, 75 try again later, 77 "
                        "refused)")
    p.add_argument("--max-retry", type=int, default=3)
    p.add_argument("--retry-interval", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--dry-run", action="store_true", help="print the event, send nothing")
    p.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument("--cacert", help="CA bundle to verify the bot's certificate with")
    return p


def _server(args: argparse.Namespace) -> str:
    if args.server:
        return str(args.server).rstrip("/")
    from .config import load
    s = load(args.config).settings
    if s.listener.public_url:
        return s.listener.public_url
    return f"http://{s.listener.listen}"


def main(argv: list[str], stdin: IO[str] | None = None, out: IO[str] | None = None) -> int:
    args = parser().parse_args(argv)
    status = _send(args, stdin, out or sys.stdout)
    return MAIL_EXITS.get(status, status) if args.format == "mail" else status


def _send(args: argparse.Namespace, stdin: IO[str] | None, out: IO[str]) -> int:
    try:
        event = build_event(args.pairs, stdin or sys.stdin, args.format)
    except ValueError as exc:
        print(f"sendevt: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        print(json.dumps(event, ensure_ascii=False, indent=2), file=out)
        return 0
    token = os.environ.get("SWITCHBOARD_ALERTS_TOKEN") or os.environ.get("ALERTS_TOKEN", "")
    if not token:
        print("sendevt: set SWITCHBOARD_ALERTS_TOKEN (or ALERTS_TOKEN)", file=sys.stderr)
        return EXIT_USAGE
    source = args.source or {"snmptrap": "snmp", "mail": "mail"}.get(args.format, "generic")
    url = f"{_server(args)}/alerts/{source}"
    verify: bool | str = False if args.insecure else (args.cacert or True)
    last = ""
    for attempt in range(args.max_retry + 1):
        if attempt:
            time.sleep(args.retry_interval)
        try:
            r = httpx.post(url, json=event, timeout=args.timeout, verify=verify,
                           headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            last = f"cannot reach {url} ({type(exc).__name__})"
            continue
        if r.status_code >= 500:
            last = f"{url} answered {r.status_code}"
            continue
        if r.status_code >= 400:
            try:
                reason = r.json().get("error", r.text)
            except ValueError:
                reason = r.text[:200]
            print(f"sendevt: refused ({r.status_code}): {reason}", file=sys.stderr)
            return EXIT_REFUSED
        print(f"sent: {r.text.strip()}", file=out)
        return 0
    print(f"sendevt: {last}; gave up after {args.max_retry + 1} tries", file=sys.stderr)
    return EXIT_UNREACHABLE


if __name__ == "__main__":  # `python -m plugin.sendevt`: the same without the bot's packages
    sys.exit(main(sys.argv[1:]))
