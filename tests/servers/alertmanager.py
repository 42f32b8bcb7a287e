"""A real Prometheus Alertmanager (Debian's package) for the tests, on 127.0.0.1.

`install_alertmanager()` installs the package when it is missing, without letting the package's
own service start (and stops and disables it if it did). `AlertmanagerServer` writes a config
with one route to a webhook receiver, starts the binary on a free loopback port with clustering
off and its own storage folder, and stops it on exit:

    with AlertmanagerServer(receiver_url="http://127.0.0.1:8111/hook", bearer="s3cret") as am:
        am.inject({"alertname": "DiskFull", "severity": "critical"}, {"summary": "..."})
        am.resolve({"alertname": "DiskFull", "severity": "critical"})
        am.silences()

The receiver may also be set after the start with `set_receiver(url, bearer)` (the config is
rewritten and reloaded). Everything is logged to a file; a failure raises
`AlertmanagerSetupError` with the tail of the log.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

PACKAGE = "prometheus-alertmanager"
BINARY = Path("/usr/bin/prometheus-alertmanager")
SERVICE = "prometheus-alertmanager"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
#: Kept between runs on one machine: the install log and the lock.
STATE_DIR = Path(os.environ.get("SWITCHBOARD_ALERTMANAGER_STATE",
                                "/var/tmp/switchboard-alertmanager"))
WORKDIR_PREFIX = "switchboard-alertmanager-"
RECEIVER = "switchboard"


class AlertmanagerSetupError(RuntimeError):
    """Installing or starting Alertmanager failed; the message ends with the log's tail."""


# --------------------------------------------------------------------------- helpers


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _fail(message: str, log: Path) -> AlertmanagerSetupError:
    return AlertmanagerSetupError(f"{message} (log: {log})\n--- last lines of the log ---\n"
                                  f"{_tail(log)}")


def _note(log: IO[str], text: str) -> None:
    log.write(f"\n### {time.strftime('%H:%M:%S')} {text}\n")
    log.flush()


def _root_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(DEBIAN_FRONTEND="noninteractive", DEBCONF_NONINTERACTIVE_SEEN="true",
               LANG="C.UTF-8", LC_ALL="C.UTF-8")
    return env


def _run(cmd: Sequence[str], log: IO[str], *, timeout: float = 600.0) -> int:
    """Runs `cmd`, its output appended to `log`; returns the exit status."""
    _note(log, "$ " + " ".join(cmd))
    try:
        proc = subprocess.run(list(cmd), env=_root_env(), stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except FileNotFoundError:
        _note(log, "command not found")
        return 127
    _note(log, f"exit status {proc.returncode}")
    return proc.returncode


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time across processes (several test runs may share a machine)."""
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
    return proc.returncode == 0 and proc.stdout.strip() == "installed" and BINARY.exists()


@contextlib.contextmanager
def _no_service_start(log: IO[str]) -> Iterator[None]:
    """Makes invoke-rc.d refuse to start services while the package installs, with a
    policy-rc.d of our own unless the machine already has one (which is left as it is)."""
    if POLICY_RC_D.exists():
        _note(log, f"{POLICY_RC_D} already present: kept")
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# Temporary: no service starts during a test install.\n"
                           "exit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            POLICY_RC_D.unlink()


def _service_running() -> bool:
    """Whether anything answers on the package's default port (9093)."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", 9093)) == 0


def _quiet_service(log: IO[str]) -> None:
    """Stops the package's service if it runs, and keeps it from starting at boot."""
    systemd = Path("/run/systemd/system").is_dir() and shutil.which("systemctl")
    if systemd:
        _run(["systemctl", "disable", "--now", SERVICE], log, timeout=60)
    else:
        init_script = Path(f"/etc/init.d/{SERVICE}")
        if init_script.exists():
            if _service_running():
                _run([str(init_script), "stop"], log, timeout=60)
            if shutil.which("update-rc.d"):
                _run(["update-rc.d", SERVICE, "disable"], log, timeout=60)


def install_alertmanager(log_path: Path | None = None) -> float:
    """Installs Debian's Alertmanager unless it is there; returns the seconds spent (0.0 when
    nothing was needed)."""
    if is_installed():
        return 0.0
    if os.geteuid() != 0:
        raise AlertmanagerSetupError("installing Alertmanager needs root (apt-get)")
    log_path = log_path or STATE_DIR / "install.log"
    started = time.monotonic()
    with _locked(STATE_DIR / "install.lock"):
        if is_installed():  # another process did it while this one waited
            return time.monotonic() - started
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            policy = subprocess.run(["apt-cache", "policy", PACKAGE], capture_output=True,
                                    text=True, check=False, env=_root_env())
            log.write(policy.stdout)
            if ("Candidate:" not in policy.stdout or "Candidate: (none)" in policy.stdout) \
                    and _run(["apt-get", "update"], log) != 0:
                raise _fail("apt-get update failed", log_path)
            with _no_service_start(log):
                status = _run(["apt-get", "install", "-y", "--no-install-recommends",
                               "-o", "Dpkg::Options::=--force-confdef",
                               "-o", "Dpkg::Options::=--force-confold", PACKAGE], log)
            _quiet_service(log)
            if status != 0 or not is_installed():
                raise _fail(f"installing {PACKAGE} failed", log_path)
    return time.monotonic() - started


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
    """Removes the working folders left by test processes that died without cleaning up."""
    for folder in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            owner = int((folder / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            shutil.rmtree(folder, ignore_errors=True)


_PR_SET_PDEATHSIG = 1
#: The parent-death signal follows the *thread* that forked the child: a server started from a
#: short-lived thread (asyncio.to_thread, an executor shut down with its event loop) would be
#: killed when that thread ends. Every server is therefore spawned from this one thread, which
#: lives as long as the test process.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alertmanager-spawn")


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process goes away."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


# --------------------------------------------------------------------------- the server


class AlertmanagerServer:
    """A running Alertmanager on 127.0.0.1 whose one route posts to a webhook receiver.

    After `start()` (or entering the context): `url`, `port`, `version`, `config_path`,
    `log_path`, `install_seconds`, `start_seconds`, `receiver_url`, `bearer`.
    """

    def __init__(self, receiver_url: str = "", *, bearer: str = "",
                 workdir: Path | None = None, group_by: Sequence[str] = ("...",),
                 group_wait: str = "1s", group_interval: str = "2s",
                 repeat_interval: str = "24h", start_timeout: float = 30.0,
                 keep_workdir: bool = False) -> None:
        self._own_workdir = workdir is None
        if workdir is None:
            sweep_orphans()
            workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
            (workdir / "owner.pid").write_text(str(os.getpid()))
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "alertmanager.yml"
        self.storage = self.workdir / "data"
        self.log_path = self.workdir / "alertmanager.log"
        self.receiver_url = receiver_url
        self.bearer = bearer
        self.group_by = list(group_by)
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.start_timeout = start_timeout
        self.keep_workdir = keep_workdir
        self.port = 0
        self.url = ""
        self.version = ""
        self.install_seconds = 0.0
        self.start_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        #: labels → the startsAt this helper sent for them (resolve repeats it).
        self._starts: dict[tuple[tuple[str, str], ...], str] = {}

    # -- config
    def config(self) -> dict[str, Any]:
        receiver: dict[str, Any] = {"name": RECEIVER}
        if self.receiver_url:
            webhook: dict[str, Any] = {"url": self.receiver_url, "send_resolved": True,
                                       "max_alerts": 0}
            if self.bearer:
                webhook["http_config"] = {
                    "authorization": {"type": "Bearer", "credentials": self.bearer}}
            receiver["webhook_configs"] = [webhook]
        return {
            "route": {"receiver": RECEIVER, "group_by": self.group_by,
                      "group_wait": self.group_wait, "group_interval": self.group_interval,
                      "repeat_interval": self.repeat_interval},
            "receivers": [receiver],
        }

    def _write_config(self) -> None:
        # JSON is YAML: no escaping doubts for URLs or credentials.
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n")
        self.config_path.chmod(0o600)

    def set_receiver(self, url: str, bearer: str | None = None) -> None:
        """Points the route at another webhook URL (and bearer token) and reloads."""
        self.receiver_url = url
        if bearer is not None:
            self.bearer = bearer
        self._write_config()
        if self.running:
            response = httpx.post(self.url + "/-/reload", timeout=10.0)
            if response.status_code != 200:
                raise _fail(f"reloading the config failed: HTTP {response.status_code} "
                            f"{response.text[:300]}", self.log_path)

    # -- lifecycle
    def start(self) -> AlertmanagerServer:
        if self._proc is not None:
            raise AlertmanagerSetupError("this Alertmanager is already running")
        self.install_seconds = install_alertmanager(STATE_DIR / "install.log")
        began = time.monotonic()
        self.storage.mkdir(parents=True, exist_ok=True)
        self._write_config()
        for attempt in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self._spawn()
            try:
                self._wait_ready()
                break
            except AlertmanagerSetupError:
                # A port taken between the probe and the bind: try another one.
                exited = self._proc is not None and self._proc.poll() is not None
                self._terminate()
                if not exited or attempt == 2 or "address already in use" not in _tail(
                        self.log_path, 200).lower():
                    raise
        self.start_seconds = time.monotonic() - began
        return self

    def _spawn(self) -> None:
        cmd = [str(BINARY), f"--config.file={self.config_path}",
               f"--storage.path={self.storage}",
               f"--web.listen-address=127.0.0.1:{self.port}",
               f"--web.external-url={self.url}",
               "--cluster.listen-address=", "--log.level=debug"]
        with open(self.log_path, "a") as log:
            _note(log, "$ " + " ".join(cmd))
            self._proc = _SPAWNER.submit(
                subprocess.Popen, cmd, cwd=self.workdir,
                env={"PATH": "/usr/bin:/bin", "HOME": str(self.workdir)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                process_group=0, preexec_fn=_die_with_parent).result()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise _fail(f"Alertmanager exited with status {code} while starting",
                            self.log_path)
            try:
                ready = httpx.get(self.url + "/-/ready", timeout=2.0)
                if ready.status_code == 200:
                    status = httpx.get(self.url + "/api/v2/status", timeout=2.0)
                    if status.status_code == 200:
                        info = status.json().get("versionInfo") or {}
                        self.version = str(info.get("version") or "")
                        return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self._terminate()
                raise _fail(f"Alertmanager did not answer on {self.url} within "
                            f"{self.start_timeout:.0f} s", self.log_path)
            time.sleep(0.1)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        self._terminate()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def __enter__(self) -> AlertmanagerServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- helpers for tests
    def api(self, method: str, path: str, *, json_body: Any = None,
            params: Any = None, timeout: float = 10.0) -> httpx.Response:
        return httpx.request(method, self.url + path, json=json_body, params=params,
                             timeout=timeout)

    def inject(self, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None,
               starts_at: datetime | None = None, ends_at: datetime | None = None,
               generator_url: str = "") -> str:
        """Posts one alert (as Prometheus would); returns the startsAt sent."""
        starts = _iso(starts_at or datetime.now(UTC))
        alert: dict[str, Any] = {"labels": dict(labels), "annotations": dict(annotations or {}),
                                 "startsAt": starts}
        if ends_at is not None:
            alert["endsAt"] = _iso(ends_at)
        if generator_url:
            alert["generatorURL"] = generator_url
        response = self.api("POST", "/api/v2/alerts", json_body=[alert])
        if response.status_code != 200:
            raise AssertionError(f"injecting the alert failed: {response.status_code} "
                                 f"{response.text[:300]}")
        self._starts[_label_key(labels)] = starts
        return starts

    def resolve(self, labels: Mapping[str, str],
                annotations: Mapping[str, str] | None = None) -> None:
        """Posts the alert again with an end in the past: Alertmanager resolves it."""
        starts = self._starts.get(_label_key(labels))
        now = datetime.now(UTC)
        ends = now - timedelta(seconds=1)
        if starts is not None:
            begun = datetime.fromisoformat(starts.replace("Z", "+00:00"))
            ends = min(max(ends, begun), now)
        alert: dict[str, Any] = {"labels": dict(labels), "annotations": dict(annotations or {}),
                                 "endsAt": _iso(ends)}
        if starts is not None:
            alert["startsAt"] = starts
        response = self.api("POST", "/api/v2/alerts", json_body=[alert])
        if response.status_code != 200:
            raise AssertionError(f"resolving the alert failed: {response.status_code} "
                                 f"{response.text[:300]}")

    def alerts(self) -> list[dict[str, Any]]:
        response = self.api("GET", "/api/v2/alerts")
        response.raise_for_status()
        data = response.json()
        assert isinstance(data, list)
        return data

    def silences(self) -> list[dict[str, Any]]:
        """Every silence Alertmanager knows (active, pending and expired)."""
        response = self.api("GET", "/api/v2/silences")
        response.raise_for_status()
        data = response.json()
        assert isinstance(data, list)
        return data

    def active_silences(self) -> list[dict[str, Any]]:
        return [s for s in self.silences()
                if (s.get("status") or {}).get("state") in ("active", "pending")]

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)


__all__ = ["AlertmanagerServer", "AlertmanagerSetupError", "free_port", "install_alertmanager",
           "is_installed", "sweep_orphans"]
