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

import contextlib
import ctypes
import fcntl
import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

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
_POLICY_RC = Path("/usr/sbin/policy-rc.d")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class IcingaSetupError(RuntimeError):
    """Installing or starting Icinga 2 failed; the message ends with the log's tail."""


# --------------------------------------------------------------------------- helpers


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _fail(message: str, log: Path) -> IcingaSetupError:
    return IcingaSetupError(f"{message} (log: {log})\n--- last lines of the log ---\n"
                            f"{_tail(log)}")


def _run(cmd: Sequence[str], log: IO[str], *, env: dict[str, str] | None = None,
         timeout: float = 600.0) -> int:
    log.write(f"\n### {time.strftime('%H:%M:%S')} $ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(list(cmd), env=env, stdin=subprocess.DEVNULL, stdout=log,
                          stderr=subprocess.STDOUT, timeout=timeout, check=False)
    log.write(f"### exit status {proc.returncode}\n")
    log.flush()
    return proc.returncode


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_installed() -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "installed" \
        and shutil.which("icinga2", path=_PATH) is not None


def _apt_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(DEBIAN_FRONTEND="noninteractive", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    return env


@contextlib.contextmanager
def _services_held() -> Iterator[None]:
    """While installing, `invoke-rc.d` may not start services (a policy-rc.d answering 101),
    unless a policy is already in place."""
    if _POLICY_RC.exists():
        yield
        return
    _POLICY_RC.write_text("#!/bin/sh\n# switchboard tests: no service starts while installing\n"
                          "exit 101\n")
    _POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            _POLICY_RC.unlink()


def _stop_system_service(log: IO[str]) -> None:
    """Debian's own icinga2 service must not stay enabled or running."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        _run(["systemctl", "disable", "--now", "icinga2"], log, env=_apt_env())
        return
    if shutil.which("update-rc.d"):
        _run(["update-rc.d", "icinga2", "disable"], log, env=_apt_env())
    pid_file = Path("/run/icinga2/icinga2.pid")
    if pid_file.exists() and shutil.which("service"):
        _run(["service", "icinga2", "stop"], log, env=_apt_env())


def install_icinga2(log_path: Path | None = None) -> float:
    """Installs Debian's `icinga2` (without recommends) unless it is there; returns the seconds
    spent (0.0 when nothing was needed)."""
    if is_installed():
        return 0.0
    if os.geteuid() != 0:
        raise IcingaSetupError("installing icinga2 needs root (apt-get)")
    log_path = log_path or STATE_DIR / "install.log"
    started = time.monotonic()
    with _locked(STATE_DIR / "install.lock"):
        if is_installed():
            return time.monotonic() - started
        with open(log_path, "a") as log:
            env = _apt_env()
            policy = subprocess.run(["apt-cache", "policy", PACKAGE], capture_output=True,
                                    text=True, check=False, env=env).stdout
            if ("Candidate:" not in policy or "Candidate: (none)" in policy) and _run(
                    ["apt-get", "update"], log, env=env) != 0:
                raise _fail("apt-get update failed", log_path)
            with _services_held():
                status = _run(["apt-get", "install", "-y", "--no-install-recommends",
                               "-o", "Dpkg::Options::=--force-confdef",
                               "-o", "Dpkg::Options::=--force-confold", PACKAGE], log, env=env)
            _stop_system_service(log)
        if status != 0 or not is_installed():
            raise _fail("apt-get install icinga2 failed", log_path)
    return time.monotonic() - started


def _version() -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", PACKAGE], capture_output=True,
                          text=True, check=False).stdout.strip()


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
    with _locked(STATE_DIR / "pki.lock"):
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
                    if _run(step, log, timeout=120) != 0:
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans() -> None:
    """Stops the instances, and removes the folders, of test processes that died without
    cleaning up."""
    for folder in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            owner = int((folder / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError, ProcessLookupError, PermissionError):
            os.killpg(int((folder / "group.pid").read_text()), signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


_PR_SET_PDEATHSIG = 1


def _term_with_parent() -> None:
    """In the child: SIGTERM (a clean stop of the whole daemon) when the test process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _quote(text: str) -> str:
    """A string literal of the Icinga 2 configuration language."""
    return json.dumps(text)


# --------------------------------------------------------------------------- the server


class IcingaServer:
    """A running private Icinga 2 whose notifications go to `receiver_url` with `token`.

    After `start()`: `url` (https://127.0.0.1:port), `port`, `username`, `password`,
    `ca_file`, `host`, `service`, `object_name` ("web01!disk"), `version`,
    `install_seconds`, `start_seconds`, `log_path`, `workdir`."""

    def __init__(self, receiver_url: str, token: str, *, start_timeout: float = 30.0,
                 keep_workdir: bool = False) -> None:
        sweep_orphans()
        self.receiver_url = receiver_url
        self.token = token
        self.start_timeout = start_timeout
        self.keep_workdir = keep_workdir
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        self.log_path = self.workdir / "icinga2.log"
        self.host = HOST
        self.service = SERVICE
        self.object_name = f"{HOST}!{SERVICE}"
        self.username = API_USER
        self.password = os.urandom(12).hex()
        self.port = 0
        self.url = ""
        self.ca_file = ""
        self.version = ""
        self.install_seconds = 0.0
        self.start_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None

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
    def start(self) -> IcingaServer:
        if self._proc is not None:
            raise IcingaSetupError("this Icinga 2 is already running")
        self.install_seconds = install_icinga2()
        began = time.monotonic()
        self.version = _version()
        pki = certificates()
        for attempt in range(3):
            self.port = free_port()
            self.url = f"https://127.0.0.1:{self.port}"
            self._write_config(pki)
            self._spawn()
            try:
                self._wait_ready()
                break
            except IcingaSetupError:
                self._terminate()
                if attempt == 2 or "Address already in use" not in _tail(self.log_path, 200):
                    raise
        self.start_seconds = time.monotonic() - began
        return self

    def _spawn(self) -> None:
        conf = self.workdir / "etc" / "icinga2.conf"
        binary = shutil.which("icinga2", path=_PATH) or "/usr/sbin/icinga2"
        cmd = [binary, "daemon", "-c", str(conf), *_defines(self.workdir)]
        env = {"PATH": _PATH, "LANG": "C.UTF-8", "HOME": str(self.workdir)}
        with open(self.log_path, "a") as log:
            log.write(f"\n### {time.strftime('%H:%M:%S')} $ {' '.join(cmd)}\n")
            log.flush()
            self._proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                process_group=0, preexec_fn=_term_with_parent)
        (self.workdir / "group.pid").write_text(str(self._proc.pid))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise _fail(f"icinga2 exited with status {code} while starting", self.log_path)
            try:
                response = self.api("GET", f"/v1/objects/services/{self.object_name}",
                                    timeout=2.0)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise _fail(f"Icinga 2's API did not answer on {self.url} within "
                            f"{self.start_timeout:.0f} s", self.log_path)
            time.sleep(0.1)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # The umbrella process stops its workers and waits for them: TERM it alone first.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # The umbrella process may have gone before its worker: the group goes as a whole.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        self._terminate()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def __enter__(self) -> IcingaServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

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
        return _tail(self.workdir / "log" / "icinga2.log", lines) + "\n" + _tail(
            self.log_path, lines)


__all__ = ["HOST", "NODE_NAME", "SERVICE", "IcingaServer", "IcingaSetupError", "certificates",
           "free_port", "install_icinga2", "is_installed", "sweep_orphans"]
