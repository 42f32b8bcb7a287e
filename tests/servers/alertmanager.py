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

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Self

import httpx

from tests.servers import common
from tests.servers.common import (
    LOOPBACK,
    ProcessServer,
    ServerSetupError,
    apt_install,
    free_port,
    install_once,
    note,
    packages_installed,
    port_open,
    run_logged,
    services_held,
    spawn,
    systemd_runs,
    update_apt_lists_if_needed,
)

PACKAGE = "prometheus-alertmanager"
BINARY = Path("/usr/bin/prometheus-alertmanager")
SERVICE = "prometheus-alertmanager"
#: Kept between runs on one machine: the install log and the lock.
STATE_DIR = Path(os.environ.get("SWITCHBOARD_ALERTMANAGER_STATE",
                                "/var/tmp/switchboard-alertmanager"))
WORKDIR_PREFIX = "switchboard-alertmanager-"
RECEIVER = "switchboard"


class AlertmanagerSetupError(ServerSetupError):
    """Installing or starting Alertmanager failed; the message ends with the log's tail."""


# --------------------------------------------------------------------------- helpers


_fail = AlertmanagerSetupError.with_log


def _run(cmd: Sequence[str], log: IO[str], *, timeout: float = 600.0) -> int:
    """Runs `cmd` as root for apt, its output appended to `log`; returns the exit status (127
    when there is no such command)."""
    try:
        return run_logged(cmd, log, env=common.apt_env(), timeout=timeout)
    except FileNotFoundError:
        note(log, "command not found")
        return 127


def is_installed() -> bool:
    return packages_installed([PACKAGE]) and BINARY.exists()


def _quiet_service(log: IO[str]) -> None:
    """Stops the package's service if it runs, and keeps it from starting at boot."""
    if systemd_runs():
        _run(["systemctl", "disable", "--now", SERVICE], log, timeout=60)
    else:
        init_script = Path(f"/etc/init.d/{SERVICE}")
        if init_script.exists():
            if port_open(9093):  # the package's default port
                _run([str(init_script), "stop"], log, timeout=60)
            if shutil.which("update-rc.d"):
                _run(["update-rc.d", SERVICE, "disable"], log, timeout=60)


def install_alertmanager(log_path: Path | None = None) -> float:
    """Installs Debian's Alertmanager unless it is there; returns the seconds spent (0.0 when
    nothing was needed)."""
    return install_once("Alertmanager", installed=is_installed, install=_install_locked,
                        state_dir=STATE_DIR, log_path=log_path, error=AlertmanagerSetupError)


def _install_locked(log: IO[str], log_path: Path) -> None:
    update_apt_lists_if_needed([PACKAGE], log, log_path, AlertmanagerSetupError, timeout=600)
    with services_held(log):
        status = apt_install([PACKAGE], log, env=common.apt_env(), timeout=600)
    _quiet_service(log)
    if status != 0 or not is_installed():
        raise _fail(f"installing {PACKAGE} failed", log_path)


def sweep_orphans() -> None:
    """Removes the working folders left by test processes that died without cleaning up."""
    common.sweep_orphans(WORKDIR_PREFIX)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


# --------------------------------------------------------------------------- the server


class AlertmanagerServer(ProcessServer):
    """A running Alertmanager on 127.0.0.1 whose one route posts to a webhook receiver.

    After `start()` (or entering the context): `url`, `port`, `version`, `config_path`,
    `log_path`, `install_seconds`, `start_seconds`, `receiver_url`, `bearer`.
    """

    def __init__(self, receiver_url: str = "", *, bearer: str = "",
                 workdir: Path | None = None, group_by: Sequence[str] = ("...",),
                 group_wait: str = "1s", group_interval: str = "2s",
                 repeat_interval: str = "24h", start_timeout: float = 30.0,
                 keep_workdir: bool = False) -> None:
        super().__init__(workdir, prefix=WORKDIR_PREFIX, log_name="alertmanager.log",
                         start_timeout=start_timeout, keep_workdir=keep_workdir)
        self.config_path = self.workdir / "alertmanager.yml"
        self.storage = self.workdir / "data"
        self.receiver_url = receiver_url
        self.bearer = bearer
        self.group_by = list(group_by)
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.version = ""
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
    label = "Alertmanager"
    error = AlertmanagerSetupError
    _not_yet = (httpx.HTTPError,)

    def start(self) -> Self:
        if self._proc is not None:
            raise AlertmanagerSetupError("this Alertmanager is already running")
        self.install_seconds = install_alertmanager(STATE_DIR / "install.log")
        began = time.monotonic()
        self.storage.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._start_on_free_port()
        self.start_seconds = time.monotonic() - began
        return self

    def _port_clash(self, exited: bool) -> bool:
        return exited and "address already in use" in common.tail(self.log_path, 200).lower()

    def _spawn(self) -> None:
        cmd = [str(BINARY), f"--config.file={self.config_path}",
               f"--storage.path={self.storage}",
               f"--web.listen-address={LOOPBACK}:{self.port}",
               f"--web.external-url={self.url}",
               "--cluster.listen-address=", "--log.level=debug"]
        with open(self.log_path, "a") as log:
            self._proc = spawn(cmd, log, cwd=self.workdir,
                               env={"PATH": "/usr/bin:/bin", "HOME": str(self.workdir)},
                               long_lived_thread=True)

    def _ready(self) -> bool:
        ready = httpx.get(self.url + "/-/ready", timeout=2.0)
        if ready.status_code != 200:
            return False
        status = httpx.get(self.url + "/api/v2/status", timeout=2.0)
        if status.status_code != 200:
            return False
        info = status.json().get("versionInfo") or {}
        self.version = str(info.get("version") or "")
        return True

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


__all__ = ["AlertmanagerServer", "AlertmanagerSetupError", "free_port", "install_alertmanager",
           "is_installed", "sweep_orphans"]
