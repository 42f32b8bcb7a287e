"""A real Icinga 2 (Debian's `icinga2` package) for the tests, as a private instance on 127.0.0.1.

`install_icinga2()` installs the package when it is missing, without leaving Debian's own
service running. `IcingaServer` runs one instance whose every file lives in a temporary folder
(configuration, state, logs, pid file), as the current user:

    with IcingaServer(receiver_url, token) as icinga:
        icinga.raise_problem(2, "DISK CRITICAL - 97% used")
        icinga.acknowledgement()   # 0 none, 1 normal, 2 sticky
        icinga.recover()

The instance has an API listener on a free loopback port (`url`, `username`, `password`,
`ca_file`, `ssl_context()`), a host `web01` checked with `dummy` (always UP), a passive service
`web01!disk`, and the notification setup of `contrib/icinga2/switchboard.conf` included as it is,
so its commands run `contrib/nagios/switchboard-notify` against `receiver_url` with `token`.

The API certificates (a CA and the node's certificate) are made once per machine and cached.
The daemon runs in the foreground in its own process group; it is stopped (the whole group) on
exit and receives SIGTERM when the test process dies.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import shutil
import ssl
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Self

import httpx

from tests.servers import common
from tests.servers.common import (
    ProcessServer,
    ServerSetupError,
    apt_env,
    apt_install,
    free_port,
    install_once,
    locked,
    package_version,
    packages_installed,
    run_logged,
    services_held,
    spawn,
    systemd_runs,
    tail,
    term_with_parent,
    update_apt_lists_if_needed,
)

PACKAGE = "icinga2"
REPO = Path(__file__).resolve().parents[2]
NOTIFY_SCRIPT = REPO / "contrib" / "nagios" / "switchboard-notify"
CONTRIB_CONF = REPO / "contrib" / "icinga2" / "switchboard.conf"
#: Kept between runs on one machine: the install log, the lock and the certificates.
STATE_DIR = Path(os.environ.get("SWITCHBOARD_ICINGA_STATE", "/var/tmp/switchboard-icinga"))
NODE_NAME = "switchboard-icinga-test"
WORKDIR_PREFIX = "switchboard-icinga-"
API_USER = "switchboard"
HOST = "web01"
SERVICE = "disk"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class IcingaSetupError(ServerSetupError):
    """Installing or starting Icinga 2 failed; the message ends with the log's tail."""


# --------------------------------------------------------------------------- helpers


_fail = IcingaSetupError.with_log


def is_installed() -> bool:
    return packages_installed([PACKAGE]) and shutil.which("icinga2", path=_PATH) is not None


def _stop_system_service(log: IO[str]) -> None:
    """Debian's own icinga2 service must not stay enabled or running."""
    if systemd_runs():
        run_logged(["systemctl", "disable", "--now", "icinga2"], log, env=apt_env(), timeout=600)
        return
    if shutil.which("update-rc.d"):
        run_logged(["update-rc.d", "icinga2", "disable"], log, env=apt_env(), timeout=600)
    pid_file = Path("/run/icinga2/icinga2.pid")
    if pid_file.exists() and shutil.which("service"):
        run_logged(["service", "icinga2", "stop"], log, env=apt_env(), timeout=600)


def install_icinga2(log_path: Path | None = None) -> float:
    """Installs Debian's `icinga2` (without recommends) unless it is there; returns the seconds
    spent (0.0 when nothing was needed)."""
    return install_once("icinga2", installed=is_installed, install=_install_locked,
                        state_dir=STATE_DIR, log_path=log_path, error=IcingaSetupError)


def _install_locked(log: IO[str], log_path: Path) -> None:
    update_apt_lists_if_needed([PACKAGE], log, log_path, IcingaSetupError, timeout=600)
    with services_held(log):
        status = apt_install([PACKAGE], log, env=apt_env(), timeout=600)
    _stop_system_service(log)
    if status != 0 or not is_installed():
        raise _fail("apt-get install icinga2 failed", log_path)


def _version() -> str:
    return package_version(PACKAGE)


def _run_as() -> tuple[str, str]:
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def _defines(folder: Path) -> list[str]:
    """`-D` options that put every path of an instance inside `folder`."""
    user, group = _run_as()
    return [f"-DConfiguration.ConfigDir={folder / 'etc'}",
            f"-DConfiguration.DataDir={folder / 'data'}",
            f"-DConfiguration.LogDir={folder / 'log'}",
            f"-DConfiguration.CacheDir={folder / 'cache'}",
            f"-DConfiguration.SpoolDir={folder / 'spool'}",
            f"-DConfiguration.InitRunDir={folder / 'run'}",
            f"-DRunAsUser={user}", f"-DRunAsGroup={group}"]


def _make_dirs(folder: Path) -> None:
    for name in ("etc", "data/certs", "log/crash", "cache", "spool", "run"):
        (folder / name).mkdir(parents=True, exist_ok=True)


def certificates(log_path: Path | None = None) -> Path:
    """The folder holding `ca.crt`, `<node>.crt` and `<node>.key` for `NODE_NAME`; made with
    `icinga2 pki` on first use (a few seconds of RSA-4096) and cached."""
    key = hashlib.sha256(f"{_version()} {NODE_NAME}".encode()).hexdigest()[:12]
    folder = STATE_DIR / f"pki-{key}"
    wanted = [folder / "ca.crt", folder / f"{NODE_NAME}.crt", folder / f"{NODE_NAME}.key"]
    log_path = log_path or STATE_DIR / "pki.log"
    with locked(STATE_DIR / "pki.lock"):
        if all(p.exists() for p in wanted):
            return folder
        work = Path(tempfile.mkdtemp(prefix="pki-", dir=STATE_DIR))
        try:
            _make_dirs(work)
            certs = work / "data" / "certs"
            d = _defines(work)
            steps = [
                ["icinga2", "pki", "new-ca", *d],
                ["icinga2", "pki", "new-cert", *d, "--cn", NODE_NAME,
                 "--key", str(certs / f"{NODE_NAME}.key"), "--csr", str(certs / "node.csr")],
                ["icinga2", "pki", "sign-csr", *d, "--csr", str(certs / "node.csr"),
                 "--cert", str(certs / f"{NODE_NAME}.crt")],
            ]
            with open(log_path, "a") as log:
                for step in steps:
                    if run_logged(step, log, timeout=120) != 0:
                        raise _fail("making the Icinga 2 certificates failed", log_path)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            shutil.copyfile(work / "data" / "ca" / "ca.crt", folder / "ca.crt")
            shutil.copyfile(certs / f"{NODE_NAME}.crt", folder / f"{NODE_NAME}.crt")
            shutil.copyfile(certs / f"{NODE_NAME}.key", folder / f"{NODE_NAME}.key")
            (folder / f"{NODE_NAME}.key").chmod(0o600)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folder


def sweep_orphans() -> None:
    """Stops the instances, and removes the folders, of test processes that died without
    cleaning up."""
    common.sweep_orphans(WORKDIR_PREFIX)


def _quote(text: str) -> str:
    """A string literal of the Icinga 2 configuration language."""
    return json.dumps(text)


# --------------------------------------------------------------------------- the server


class IcingaServer(ProcessServer):
    """A running private Icinga 2 whose notifications go to `receiver_url` with `token`.

    After `start()`: `url` (https://127.0.0.1:port), `port`, `username`, `password`,
    `ca_file`, `host`, `service`, `object_name` ("web01!disk"), `version`,
    `install_seconds`, `start_seconds`, `log_path`, `workdir`."""

    def __init__(self, receiver_url: str, token: str, *, start_timeout: float = 30.0,
                 keep_workdir: bool = False) -> None:
        super().__init__(None, prefix=WORKDIR_PREFIX, log_name="icinga2.log",
                         start_timeout=start_timeout, keep_workdir=keep_workdir)
        self.receiver_url = receiver_url
        self.token = token
        self.host = HOST
        self.service = SERVICE
        self.object_name = f"{HOST}!{SERVICE}"
        self.username = API_USER
        self.password = os.urandom(12).hex()
        self.ca_file = ""
        self.version = ""
        self._pki = Path()

    # -- configuration
    def _write_config(self, pki: Path) -> None:
        _make_dirs(self.workdir)
        certs = self.workdir / "data" / "certs"
        for name in ("ca.crt", f"{NODE_NAME}.crt", f"{NODE_NAME}.key"):
            shutil.copyfile(pki / name, certs / name)
        (certs / f"{NODE_NAME}.key").chmod(0o600)
        self.ca_file = str(certs / "ca.crt")
        token_file = self.workdir / "switchboard.token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        conf = f"""\
const NodeName = {_quote(NODE_NAME)}
const ZoneName = NodeName
const SwitchboardUrl = {_quote(self.receiver_url)}
const SwitchboardTokenFile = {_quote(str(token_file))}
const SwitchboardNotifyScript = {_quote(str(NOTIFY_SCRIPT))}

include <itl>

object Endpoint NodeName {{ }}
object Zone ZoneName {{ endpoints = [ NodeName ] }}

object IcingaApplication "app" {{ }}
object CheckerComponent "checker" {{ }}
object NotificationComponent "notification" {{ }}
object FileLogger "main-log" {{
  severity = "information"
  path = {_quote(str(self.workdir / "log" / "icinga2.log"))}
}}

object ApiListener "api" {{
  bind_host = "127.0.0.1"
  bind_port = {self.port}
  cert_path = {_quote(str(certs / f"{NODE_NAME}.crt"))}
  key_path = {_quote(str(certs / f"{NODE_NAME}.key"))}
  ca_path = {_quote(str(certs / "ca.crt"))}
  accept_config = false
  accept_commands = false
}}

object ApiUser {_quote(API_USER)} {{
  password = {_quote(self.password)}
  permissions = [ "*" ]
}}

object Host {_quote(HOST)} {{
  check_command = "dummy"
  check_interval = 1m
  vars.dummy_state = 0
  vars.dummy_text = "up"
  vars.switchboard = true
}}

object Service {_quote(SERVICE)} {{
  host_name = {_quote(HOST)}
  check_command = "dummy"
  enable_active_checks = false
  max_check_attempts = 1
}}

include {_quote(str(CONTRIB_CONF))}
"""
        (self.workdir / "etc" / "icinga2.conf").write_text(conf)

    # -- lifecycle
    label = "icinga2"
    error = IcingaSetupError
    scheme = "https"
    leader_only = True  # the umbrella process stops its workers and waits for them
    stop_wait = 15.0
    _not_yet = (httpx.HTTPError,)

    def start(self) -> Self:
        if self._proc is not None:
            raise IcingaSetupError("this Icinga 2 is already running")
        self.install_seconds = install_icinga2()
        began = time.monotonic()
        self.version = _version()
        self._pki = certificates()
        self._start_on_free_port()
        self.start_seconds = time.monotonic() - began
        return self

    def _prepare_port(self) -> None:
        self._write_config(self._pki)

    def _port_clash(self, exited: bool) -> bool:
        return "Address already in use" in tail(self.log_path, 200)

    def _on_timeout(self) -> None:
        """The failed start stops the daemon."""

    @property
    def _unanswered(self) -> str:
        return "Icinga 2's API"

    def _spawn(self) -> None:
        conf = self.workdir / "etc" / "icinga2.conf"
        binary = shutil.which("icinga2", path=_PATH) or "/usr/sbin/icinga2"
        cmd = [binary, "daemon", "-c", str(conf), *_defines(self.workdir)]
        env = {"PATH": _PATH, "LANG": "C.UTF-8", "HOME": str(self.workdir)}
        with open(self.log_path, "a") as log:
            self._proc = spawn(cmd, log, env=env, on_parent_death=term_with_parent)
        # The group to kill, should this test process die without cleaning up.
        (self.workdir / "group.pid").write_text(str(self._proc.pid))

    def _ready(self) -> bool:
        response = self.api("GET", f"/v1/objects/services/{self.object_name}", timeout=2.0)
        return response.status_code == 200

    # -- helpers for tests
    def ssl_context(self) -> ssl.SSLContext:
        """Trusts this instance's CA (its certificate is for NODE_NAME, not 127.0.0.1)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = False
        return context

    def api(self, method: str, path: str, *, json_body: Any = None,
            timeout: float = 10.0) -> httpx.Response:
        return httpx.request(method, self.url + path, json=json_body,
                             auth=(self.username, self.password),
                             headers={"Accept": "application/json"},
                             verify=self.ssl_context(), timeout=timeout)

    def _service_filter(self) -> dict[str, Any]:
        return {"type": "Service", "filter": "host.name == h && service.name == s",
                "filter_vars": {"h": self.host, "s": self.service}}

    def _check_result(self, exit_status: int, output: str) -> None:
        body = self._service_filter() | {"exit_status": exit_status, "plugin_output": output}
        response = self.api("POST", "/v1/actions/process-check-result", json_body=body)
        if response.status_code != 200:
            raise AssertionError(f"process-check-result: {response.status_code} "
                                 f"{response.text[:300]}")

    def raise_problem(self, exit_status: int = 2, output: str = "DISK CRITICAL") -> None:
        """A passive check result for the service (2 CRITICAL, 1 WARNING, 3 UNKNOWN)."""
        self._check_result(exit_status, output)

    def recover(self, output: str = "DISK OK") -> None:
        self._check_result(0, output)

    def service_attrs(self, *names: str) -> dict[str, Any]:
        query = "&".join(f"attrs={n}" for n in names)
        response = self.api("GET", f"/v1/objects/services/{self.object_name}?{query}")
        if response.status_code != 200:
            raise AssertionError(f"GET service: {response.status_code} {response.text[:300]}")
        attrs: dict[str, Any] = response.json()["results"][0]["attrs"]
        return attrs

    def acknowledgement(self) -> int:
        """The service's acknowledgement: 0 none, 1 normal, 2 sticky."""
        return int(self.service_attrs("acknowledgement")["acknowledgement"])

    def downtimes(self) -> list[str]:
        """Names of the downtimes of the service."""
        response = self.api("GET", "/v1/objects/downtimes")
        if response.status_code != 200:
            raise AssertionError(f"GET downtimes: {response.status_code} {response.text[:300]}")
        return [str(r["name"]) for r in response.json()["results"]
                if r["attrs"].get("host_name") == self.host
                and r["attrs"].get("service_name") == self.service]

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.workdir / "log" / "icinga2.log", lines) + "\n" + tail(
            self.log_path, lines)


__all__ = ["HOST", "NODE_NAME", "SERVICE", "IcingaServer", "IcingaSetupError", "certificates",
           "free_port", "install_icinga2", "is_installed", "sweep_orphans"]
