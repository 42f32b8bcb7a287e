"""What every check shares: the report (one line per finding, secrets masked, a verdict), the
names an operator knows a setting by, and what kept a connection from being made."""

from __future__ import annotations

import errno
import re
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from bridge.alerts import SourceError
from bridge.tickets import TrackerError

from ..logs import RedactSecrets
from ..mattermost import MattermostError

#: Between what is wrong and what to do, in a FAIL line (and in the bridges' probe errors).
FIX = " — fix: "


class Report:
    """Prints `[  ok] ...`, `[warn] ...` and `[FAIL] ... — fix: ...` lines, then a verdict;
    `[info] ...` lines tell what was found without judging it (the verdict does not count them).

    Every line goes through the secret mask first: a library's error text may quote a URL or
    a header, and the doctor never prints a token, a password or a key."""

    def __init__(self, out: Callable[[str], None], secrets: Iterable[str] = ()) -> None:
        self._out = out
        self._redact = RedactSecrets(secrets)
        self.counts: Counter[str] = Counter()

    def _line(self, level: str, text: str) -> None:
        self.counts[level] += 1
        # `_mask` is the log filter's own masking: the same secrets, the same rule.
        self._out(self._redact._mask(f"[{level:>4}] {text}"))

    def ok(self, text: str) -> None:
        self._line("ok", text)

    def info(self, text: str) -> None:
        self._line("info", text)

    def warn(self, text: str, fix: str = "") -> None:
        self._line("warn", text + (FIX + fix if fix else ""))

    def fail(self, text: str, fix: str) -> None:
        self._line("FAIL", text + FIX + fix)

    @property
    def failed(self) -> bool:
        return self.counts["FAIL"] > 0

    def verdict(self) -> int:
        """Print the verdict line; the exit status: 1 when any check failed, else 0."""
        ok, warn, fail = self.counts["ok"], self.counts["warn"], self.counts["FAIL"]
        warnings = f"{warn} warning" + ("s" if warn != 1 else "")
        if fail:
            self._out(f"verdict: NOT READY ({fail} failed, {warnings}, {ok} ok): fix the "
                      "[FAIL] lines, then run `switchboard doctor` again")
            return 1
        tail = f", {warnings}: read the [warn] lines" if warn else ""
        self._out(f"verdict: ready ({ok} ok{tail})")
        return 0


#: A configured file a check group opens: (how the operator sets it, the path set there).
FileSetting = tuple[str, str]
_FILE_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM)


def _leaf(exc: BaseException) -> BaseException:
    """The first error an exception group holds (what a task group failed on)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _file_problem(exc: BaseException, files: Iterable[FileSetting]) -> tuple[str, str] | None:
    """(setting, what is wrong with its file) when `exc` came from opening a configured file."""
    if not any((isinstance(e, OSError) and e.errno in _FILE_ERRNOS)
               or "invalid path" in str(e) for e in _chain(exc)):
        return None
    for setting, path in files:
        if not path:
            continue
        file = Path(path)
        if not file.exists():
            return setting, f"the file {path} does not exist"
        if file.is_dir():
            return setting, f"{path} is a folder, not a file"
        try:
            file.open("rb").close()
        except OSError as err:
            return setting, f"the file {path} cannot be read ({err.strerror or err})"
    return None


@contextmanager
def guarded(report: Report, group: str, files: Iterable[FileSetting] = ()) -> Iterator[None]:
    """Run one group of checks (`group` names it, as its lines do): an error none of its checks
    expected becomes one FAIL line, and the doctor goes on with the next group instead of
    ending in a traceback. When the error came from opening a file in `files` (a CA bundle),
    the line names that setting and the file instead."""
    try:
        yield
    except Exception as exc:  # any error: the report must still be complete
        problem = _file_problem(exc, files)
        if problem is not None:
            setting, what = problem
            report.fail(f"{group}: {what} (set in {setting})",
                        f"set {setting} to an existing, readable CA bundle file (PEM), or "
                        "empty it to use the system's CAs")
            return
        leaf = _leaf(exc)
        text = " ".join(str(leaf).split())[:300]
        report.fail(f"{group}: unexpected error {type(leaf).__name__}"
                    + (f": {text}" if text else ""),
                    "unexpected error in the doctor's checks; please report it, with this "
                    "line (the other checks went on)")


def secret_values(node: Any) -> list[str]:
    """Every secret in a settings tree: each `SecretStr`, wherever it sits."""
    if isinstance(node, SecretStr):
        return [node.get_secret_value()]
    if isinstance(node, BaseModel):
        return [v for name in type(node).model_fields for v in secret_values(getattr(node, name))]
    if isinstance(node, dict):
        return [v for item in node.values() for v in secret_values(item)]
    if isinstance(node, list | tuple):
        return [v for item in node for v in secret_values(item)]
    return []


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


class SettingNames:
    """How an operator sets a setting: the environment variable plugin.yaml reads it from (when
    it reads one), then its key path: `GLPI_USER_TOKEN (settings.trackers.glpi.user_token)`."""

    def __init__(self, raw: Any = None) -> None:
        self._raw = raw if isinstance(raw, dict) else {}

    @classmethod
    def from_file(cls, path: str | Path) -> SettingNames:
        """From the configuration file as written (before `${VAR}` is replaced)."""
        try:
            return cls(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError):
            return cls()

    def __call__(self, path: str) -> str:
        node: Any = self._raw
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list):  # a list read from one variable (a token list)
            names = sorted({v for item in node if isinstance(item, str)
                            for v in _VAR.findall(item)})
        else:
            names = _VAR.findall(node) if isinstance(node, str) else []
        return f"{names[0]} ({path})" if len(names) == 1 else path

    def explain(self, text: str, base: str) -> str:
        """Replace each `key` a bridge names in backquotes with how the operator sets it."""
        return re.sub(r"`([a-z_]+)`", lambda m: self(f"{base}.{m.group(1)}"), text)


# --- why a connection failed -------------------------------------------------------------------

DNS, REFUSED, TLS, TLS_NAME, TLS_HANDSHAKE, TIMEOUT, UNREACHABLE = (
    "the host name does not resolve", "connection refused", "TLS certificate not trusted",
    "TLS certificate made for another host name", "TLS handshake failed", "timed out",
    "network unreachable")

_TEXTS = ((DNS, ("name or service not known", "nodename nor servname", "name resolution",
                 "getaddrinfo failed", "no address associated")),
          (REFUSED, ("connection refused", "connect call failed")),
          (TLS_NAME, ("hostname mismatch", "address mismatch")),
          (TLS, ("certificate verify failed", "certificate_verify_failed")),
          (TIMEOUT, ("timed out", "timeout")),
          (UNREACHABLE, ("network is unreachable", "no route to host")))


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """The exception and everything it was raised from or during (and, for an exception
    group, what it holds), once each."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None),
                  *current.args, *getattr(current, "exceptions", ())]
        todo += [e for e in linked if isinstance(e, BaseException)]


#: Kinds that say exactly what is wrong: they win over a timeout or "cannot connect" found
#: elsewhere in the chain.
_SPECIFIC = (TLS, TLS_NAME, TLS_HANDSHAKE, DNS, REFUSED, UNREACHABLE)
#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH = (62, 64)


def _kind(e: BaseException) -> str | None:
    if isinstance(e, TrackerError | SourceError | MattermostError):
        # The project's own errors may quote a server's words ("connection refused" by its
        # database); what happened on the wire is in the exceptions they were raised from.
        return None
    verify_code = getattr(e, "verify_code", None)
    if isinstance(e, ssl.SSLCertVerificationError) and verify_code in _NAME_MISMATCH:
        return TLS_NAME
    if isinstance(e, socket.gaierror):
        return DNS
    if isinstance(e, ConnectionRefusedError):
        return REFUSED
    text = str(e).lower()
    for kind, words in _TEXTS:
        if any(w in text for w in words):
            return kind
    if isinstance(e, ssl.SSLCertVerificationError):
        return TLS
    if isinstance(e, ssl.SSLError):
        return TLS_HANDSHAKE
    if isinstance(e, TimeoutError) or "Timeout" in type(e).__name__:
        return TIMEOUT
    if isinstance(e, OSError) or "Connect" in type(e).__name__:
        return "cannot connect"
    return None


def reach_error(exc: BaseException) -> str | None:
    """What kept a connection from being made (DNS, refused, TLS, timeout), from the exception
    and the chain it was raised from; None when it is not a connection failure (an answer)."""
    generic: str | None = None
    for e in _chain(exc):
        kind = _kind(e)
        if kind in _SPECIFIC:
            return kind
        generic = generic or kind
    return generic


def reach_fix(kind: str, url_setting: str, tls_settings: str, name_setting: str = "") -> str:
    """The fix for a connection failure of `kind` to the URL set by `url_setting`;
    `name_setting` is the setting of the name a certificate is checked against, if any."""
    if kind == DNS:
        return f"check the host name in {url_setting}: this host cannot resolve it"
    if kind == REFUSED:
        return (f"nothing listens there: check the host and port in {url_setting}, and that "
                "the service runs")
    if kind == TLS_NAME:
        if name_setting:
            return (f"write the host name the server's certificate was made for in "
                    f"{url_setting}, or set {name_setting} to that name (to keep an IP "
                    "address or another name in the URL), or give the server a certificate "
                    "for the name used there")
        return (f"write the host name the server's certificate was made for in {url_setting}, "
                "or give the server a certificate for the name used there")
    if kind == TLS_HANDSHAKE:
        return (f"if the server has no TLS, write http:// in {url_setting}; otherwise check "
                "the port and the server's TLS settings")
    if kind.startswith("TLS"):
        return (f"this host does not trust the server's certificate: set {tls_settings} "
                "(a CA bundle file for a private CA), or use http:// if the server has no TLS")
    return f"check {url_setting}, and any firewall or proxy between this host and the server"
