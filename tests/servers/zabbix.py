"""A real Zabbix 6.0 (Debian 12's packages, PostgreSQL) for the tests, on 127.0.0.1.

`install_zabbix()` installs the packages when they are missing and unpacks `zabbix_sender` from
the `zabbix-agent` package without installing it (no agent ever runs). `ZabbixServer` starts,
in a private folder:

* a private PostgreSQL cluster on a loopback port, restored from a cached tarball of a freshly
  imported Zabbix database (made once per machine and package version);
* `zabbix_server` listening on 127.0.0.1 with a fast configuration sync;
* the PHP frontend (for its JSON-RPC API) served by `php -S` on 127.0.0.1;

then provisions it through the API: an API token for Admin, a second user `sb-notify` who owns
the webhook media, the media type imported from `contrib/zabbix/switchboard_mediatype.yaml`, a
host with a trapper item and a trigger that may be closed by hand, and an action that notifies
`sb-notify` of problems, recoveries and updates.

    with ZabbixServer() as zabbix:
        zabbix.set_receiver("http://127.0.0.1:PORT/alerts/zabbix", "secret")
        zabbix.send_value(95)        # raises the problem; the webhook follows
        zabbix.api("event.get", {...})

Every process dies with the test process (a parent-death signal, and a watchdog that kills the
process groups when the test process is gone, even by SIGKILL). Everything is logged to files;
a failure raises `ZabbixSetupError` with the tail of the log.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Self

import httpx

from tests.servers import common
from tests.servers.common import (
    LOOPBACK,
    ServerContext,
    ServerSetupError,
    apt_env,
    apt_install,
    chown_tree,
    free_port,
    install_once,
    installed_version,
    locked,
    new_workdir,
    note,
    poll_until,
    port_open,
    run_apt_get,
    run_logged,
    spawn,
    stop_group,
    tail,
    update_apt_lists_if_needed,
)
from tests.servers.postgres import (
    pg_bin,
    plain_env,
    postgres_cmd,
    psql,
    stop_postgres,
    wait_postgres,
)

PACKAGES = ("zabbix-server-pgsql", "zabbix-frontend-php", "php8.2-cgi", "php8.2-cli",
            "php8.2-pgsql", "postgresql")
AGENT_PACKAGE = "zabbix-agent"
FRONTEND_ROOT = Path("/usr/share/zabbix")
FRONTEND_CONF = Path("/etc/zabbix/zabbix.conf.php")
SQL_DIR = Path("/usr/share/zabbix-server-pgsql")
SQL_FILES = ("schema.sql.gz", "images.sql.gz", "data.sql.gz")
ZABBIX_USER = "zabbix"
DB_USER = "postgres"
PHP_USER = "www-data"
#: Kept between runs on one machine: install log, lock, database tarball, unpacked sender.
STATE_DIR = Path(os.environ.get("SWITCHBOARD_ZABBIX_STATE", "/var/tmp/switchboard-zabbix"))
MEDIA_TYPE_FILE = Path(__file__).resolve().parents[2] / "contrib" / "zabbix" \
    / "switchboard_mediatype.yaml"
MEDIA_TYPE_NAME = "Switchboard"

ADMIN_LOGIN = "Admin"
ADMIN_PASSWORD = "zabbix"
NOTIFY_LOGIN = "sb-notify"
HOST_GROUP = "Switchboard tests"
HOST = "sb-web-01"
ITEM_KEY = "sb.load"
TRIGGER_THRESHOLD = 90
TRIGGER_NAME = "Load is too high on {HOST.NAME}"
ACTION_NAME = "Switchboard notifications"

#: Written to the fixed path Debian's frontend reads; the values come from the environment
#: of the `php -S` process, so several instances can run side by side.
FRONTEND_CONF_TEXT = """<?php
// switchboard-tests: written by tests/servers/zabbix.py; values come from the environment.
global $DB;
$DB['TYPE'] = 'POSTGRESQL';
$DB['SERVER'] = '127.0.0.1';
$DB['PORT'] = getenv('SB_ZBX_DB_PORT') ?: '5432';
$DB['DATABASE'] = 'zabbix';
$DB['USER'] = 'zabbix';
$DB['PASSWORD'] = 'zabbix';
$DB['SCHEMA'] = '';
$DB['ENCRYPTION'] = false;
$DB['KEY_FILE'] = '';
$DB['CERT_FILE'] = '';
$DB['CA_FILE'] = '';
$DB['VERIFY_HOST'] = false;
$DB['CIPHER_LIST'] = '';
$DB['VAULT_URL'] = '';
$DB['VAULT_DB_PATH'] = '';
$DB['VAULT_TOKEN'] = '';
$DB['DOUBLE_IEEE754'] = true;
$ZBX_SERVER = '127.0.0.1';
$ZBX_SERVER_PORT = getenv('SB_ZBX_SERVER_PORT') ?: '10051';
$ZBX_SERVER_NAME = 'switchboard-tests';
$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
"""
CONF_MARKER = "switchboard-tests"

# Reads process-group ids, one a line, on standard input; when standard input ends (the test
# process is gone, however it went), terminates those groups.
WATCHDOG = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
groups = []
for line in sys.stdin:
    line = line.strip()
    if line.startswith('-'):
        groups = [g for g in groups if g != int(line[1:])]
    elif line.isdigit():
        groups.append(int(line))
def alive(g):
    try:
        os.killpg(g, 0)
        return True
    except OSError:
        return False
for sig, pause in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
    for g in groups:
        try:
            os.killpg(g, sig)
        except OSError:
            pass
    end = time.monotonic() + pause
    while pause and time.monotonic() < end and any(alive(g) for g in groups):
        time.sleep(0.1)
"""


class ZabbixSetupError(ServerSetupError):
    """Installing, starting or provisioning Zabbix failed; the message ends with the log's tail."""


# --------------------------------------------------------------------------- helpers


_fail = ZabbixSetupError.with_log


def _packages_installed() -> bool:
    return all(installed_version(name) for name in PACKAGES)


def sender_path() -> Path:
    """`zabbix_sender` as unpacked from the zabbix-agent package."""
    return STATE_DIR / f"agent-{installed_version('zabbix-server-pgsql')}" / "usr" / "bin" \
        / "zabbix_sender"


def is_installed() -> bool:
    return _packages_installed() and sender_path().exists()


def install_zabbix(log_path: Path | None = None) -> float:
    """Installs Zabbix 6.0 server, frontend, PHP and PostgreSQL from Debian's packages and
    unpacks `zabbix_sender`, unless already done; returns the seconds spent (0.0 when nothing
    was needed)."""
    return install_once("Zabbix", installed=is_installed, install=_install_locked,
                        state_dir=STATE_DIR, log_path=log_path, error=ZabbixSetupError)


def _install_locked(log: IO[str], log_path: Path) -> None:
    env = apt_env()
    update_apt_lists_if_needed((*PACKAGES, AGENT_PACKAGE), log, log_path, ZabbixSetupError,
                               env=env)
    if not _packages_installed():
        # The CGI flavour of PHP satisfies the frontend's dependency without Apache; with
        # --no-install-recommends no service is pulled in.
        status = apt_install(PACKAGES, log, env=env)
        if status != 0 or not _packages_installed():
            raise _fail("installing the Zabbix packages failed", log_path)
    target = sender_path()
    if not target.exists():
        # The agent package is unpacked, never installed: installing it would start an agent.
        work = Path(tempfile.mkdtemp(prefix="agent-", dir=STATE_DIR))
        try:
            if run_apt_get(["download", AGENT_PACKAGE], log, env=env, cwd=work) != 0:
                raise _fail("apt-get download zabbix-agent failed", log_path)
            debs = sorted(work.glob("zabbix-agent_*.deb"))
            if not debs:
                raise _fail("apt-get download left no zabbix-agent package", log_path)
            unpacked = work / "root"
            if run_logged(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], log, env=env) != 0:
                raise _fail("unpacking zabbix-agent failed", log_path)
            if not (unpacked / "usr" / "bin" / "zabbix_sender").exists():
                raise _fail("zabbix_sender is not in the zabbix-agent package", log_path)
            folder = target.parents[2]
            shutil.rmtree(folder, ignore_errors=True)
            shutil.move(str(unpacked), str(folder))
        finally:
            shutil.rmtree(work, ignore_errors=True)


def free_low_port() -> int:
    """A free port below 32768: zabbix_server's ListenPort accepts only 1024-32767."""
    return common.free_low_port()


WORKDIR_PREFIX = "switchboard-zabbix-"


def sweep_orphans() -> None:
    """Removes the working folders left by test processes that died without cleaning up."""
    common.sweep_orphans(WORKDIR_PREFIX)


# --------------------------------------------------------------------------- the database


def _golden_key() -> str:
    versions = installed_version("zabbix-server-pgsql") + pg_bin("postgres").parts[4]
    return hashlib.sha256(versions.encode()).hexdigest()[:12]


def golden_database(log_path: Path) -> Path:
    """The tarball of a PostgreSQL data directory holding a freshly imported Zabbix database
    (role and database `zabbix`, password `zabbix`); made on first use."""
    tarball = STATE_DIR / f"pgdata-{_golden_key()}.tar"
    with locked(STATE_DIR / "install.lock"):
        if tarball.exists():
            return tarball
        work = Path(tempfile.mkdtemp(prefix="golden-", dir=STATE_DIR))
        try:
            _make_golden(work, log_path)
            partial = tarball.with_suffix(".partial")
            with open(log_path, "a") as log:
                if run_logged(["tar", "-C", str(work), "-cf", str(partial), "pgdata"], log) != 0:
                    raise _fail("archiving the database failed", log_path)
            partial.rename(tarball)
            for old in STATE_DIR.glob("pgdata-*.tar"):
                if old != tarball:
                    old.unlink(missing_ok=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tarball


def _make_golden(work: Path, log_path: Path) -> None:
    datadir, sockdir = work / "pgdata", work / "sock"
    datadir.mkdir()
    sockdir.mkdir()
    chown_tree(work, DB_USER)
    with open(log_path, "a") as log:
        if run_logged([str(pg_bin("initdb")), "-D", str(datadir), "-U", "postgres",
                       "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"], log,
                      env=plain_env(), user=DB_USER, timeout=120) != 0:
            raise _fail("initdb failed", log_path)
        port = free_port()
        note(log, f"starting PostgreSQL on {LOOPBACK}:{port} to import the schema")
        proc = spawn(postgres_cmd(datadir, port, sockdir), log, env=plain_env(),
                     user=DB_USER)
        try:
            wait_postgres(proc, port, lambda m: _fail(m, log_path))
            setup = ("CREATE ROLE zabbix LOGIN PASSWORD 'zabbix';\n"
                     "CREATE DATABASE zabbix OWNER zabbix ENCODING 'UTF8' TEMPLATE template0;\n")
            status = subprocess.run(psql(port, "-U", "postgres", "-d", "postgres"),
                                    input=setup.encode(), stdout=log, stderr=subprocess.STDOUT,
                                    env=plain_env(), check=False, timeout=60).returncode
            if status != 0:
                raise _fail("creating the zabbix role and database failed", log_path)
            for name in SQL_FILES:
                note(log, f"importing {name}")
                with gzip.open(SQL_DIR / name, "rb") as sql:
                    feeder = subprocess.Popen(psql(port, "-U", "zabbix", "-d", "zabbix"),
                                              stdin=subprocess.PIPE, stdout=log,
                                              stderr=subprocess.STDOUT,
                                              env=plain_env(PGPASSWORD="zabbix"))
                    assert feeder.stdin is not None
                    with contextlib.suppress(BrokenPipeError):
                        shutil.copyfileobj(sql, feeder.stdin, 1 << 20)
                    feeder.stdin.close()
                    if feeder.wait(600) != 0:
                        raise _fail(f"importing {name} failed", log_path)
        finally:
            stop_postgres(proc)


# --------------------------------------------------------------------------- processes


class _Watchdog:
    """A separate process that kills the registered process groups once the test process is
    gone (its end of a pipe closes however the test process ends)."""

    def __init__(self) -> None:
        read_end, write_end = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", WATCHDOG], stdin=read_end,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            close_fds=True)
        os.close(read_end)
        self._pipe: IO[str] | None = os.fdopen(write_end, "w")

    def watch(self, pgid: int) -> None:
        if self._pipe is not None:
            self._pipe.write(f"{pgid}\n")
            self._pipe.flush()

    def forget(self, pgid: int) -> None:
        if self._pipe is not None:
            self._pipe.write(f"-{pgid}\n")
            self._pipe.flush()

    def close(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(15)


def _server_conf(workdir: Path, db_port: int, listen_port: int) -> str:
    run = workdir / "zabbix"
    return "\n".join([
        f"LogFile={run}/zabbix_server.log", "LogFileSize=0", "DebugLevel=3",
        f"PidFile={run}/zabbix_server.pid", f"SocketDir={run}",
        "DBHost=127.0.0.1", f"DBPort={db_port}", "DBName=zabbix", "DBUser=zabbix",
        "DBPassword=zabbix", "ListenIP=127.0.0.1", f"ListenPort={listen_port}",
        "StartPollers=1", "StartPollersUnreachable=1", "StartPingers=0",
        "StartDiscoverers=0", "StartHTTPPollers=0", "StartTrappers=2", "StartTimers=1",
        "StartEscalators=1", "StartAlerters=1", "StartDBSyncers=1", "StartPreprocessors=1",
        "StartLLDProcessors=1", "StartReportWriters=0", "StartProxyPollers=0",
        "StartHistoryPollers=1", "HousekeepingFrequency=0", "CacheUpdateFrequency=1",
        "CacheSize=16M", "HistoryCacheSize=8M", "HistoryIndexCacheSize=4M",
        "TrendCacheSize=4M", "ValueCacheSize=8M", "Timeout=4",
        "LogSlowQueries=0", f"TmpDir={run}", f"AlertScriptsPath={run}",
        f"ExternalScripts={run}", "",
    ])


class ZabbixServer(ServerContext):
    """A running, provisioned Zabbix 6.0 on 127.0.0.1.

    After `start()` (or entering the context): `url` (frontend base; the API is
    `url + "/api_jsonrpc.php"`), `api_token` (Admin's), `admin_userid`, `notify_userid`,
    `mediatypeid`, `hostid`, `host` (technical name), `itemid`, `item_key`, `triggerid`,
    `actionid`, `server_port` (the trapper port for `zabbix_sender`), `db_port`, `version`,
    `install_seconds`, `database_seconds` (restoring or making the database),
    `start_seconds` (everything after the install), `log_path`, `server_log`.
    """

    def __init__(self, workdir: Path | None = None, *, start_timeout: float = 120.0,
                 keep_workdir: bool = False) -> None:
        self._own_workdir = workdir is None
        self.workdir = new_workdir(WORKDIR_PREFIX) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # the database and the server run as their own users
        self.log_path = self.workdir / "zabbix.log"
        self.server_log = self.workdir / "zabbix" / "zabbix_server.log"
        self.php_log = self.workdir / "php.log"
        self.conf_path = self.workdir / "zabbix" / "zabbix_server.conf"
        self.start_timeout = start_timeout
        self.keep_workdir = keep_workdir
        self.url = ""
        self.db_port = 0
        self.web_port = 0
        self.server_port = 0
        self.install_seconds = 0.0
        self.database_seconds = 0.0
        self.start_seconds = 0.0
        self.version = ""
        self.api_token = ""
        self.admin_userid = ""
        self.notify_userid = ""
        self.mediatypeid = ""
        self.groupid = ""
        self.hostid = ""
        self.host = HOST
        self.itemid = ""
        self.item_key = ITEM_KEY
        self.triggerid = ""
        self.actionid = ""
        self.receiver_url = ""
        self._session = ""
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._watchdog: _Watchdog | None = None
        self._http = httpx.Client(timeout=30.0)

    # -- lifecycle
    def start(self) -> Self:
        if self._procs:
            raise ZabbixSetupError("this Zabbix is already running")
        self.install_seconds = install_zabbix(STATE_DIR / "install.log")
        began = time.monotonic()
        self._write_frontend_conf()
        self._watchdog = _Watchdog()
        tarball = golden_database(self.log_path)
        self._start_postgres(tarball)
        self.database_seconds = time.monotonic() - began
        # The server starts only once everything is provisioned: its first configuration sync
        # then holds the item, the trigger and the action together. Provisioned beside a
        # running server, a periodic sync could take the item without the action yet, and a
        # problem sent at once fired no action at all.
        self.server_port = free_low_port()
        self._start_frontend()
        self._provision()
        self._start_server()
        self._wait_item_known()
        self.start_seconds = time.monotonic() - began
        return self

    def _write_frontend_conf(self) -> None:
        with locked(STATE_DIR / "install.lock"):
            if FRONTEND_CONF.exists():
                current = FRONTEND_CONF.read_text(errors="replace")
                if current == FRONTEND_CONF_TEXT:
                    return
                if CONF_MARKER not in current:
                    raise ZabbixSetupError(
                        f"{FRONTEND_CONF} exists and was not written by these tests; "
                        "refusing to overwrite it")
            FRONTEND_CONF.parent.mkdir(parents=True, exist_ok=True)
            FRONTEND_CONF.write_text(FRONTEND_CONF_TEXT)
            FRONTEND_CONF.chmod(0o644)

    def _spawn(self, name: str, cmd: Sequence[str], *, user: str | None, env: dict[str, str],
               log_path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with open(log_path, "a") as log:
            proc = spawn(cmd, log, env=env, cwd=cwd, user=user, new_session=True)
        self._procs[name] = proc
        if self._watchdog is not None:
            self._watchdog.watch(proc.pid)
        return proc

    def _start_postgres(self, tarball: Path) -> None:
        with open(self.log_path, "a") as log:
            if run_logged(["tar", "-C", str(self.workdir), "-xf", str(tarball)], log) != 0:
                raise _fail("restoring the database failed", self.log_path)
        datadir, sockdir = self.workdir / "pgdata", self.workdir / "pgsock"
        sockdir.mkdir(exist_ok=True)
        chown_tree(datadir, DB_USER)
        chown_tree(sockdir, DB_USER)
        datadir.chmod(0o700)
        for attempt in range(3):
            self.db_port = free_port()
            proc = self._spawn("postgres", postgres_cmd(datadir, self.db_port, sockdir),
                               user=DB_USER, env=plain_env(), log_path=self.log_path)
            try:
                wait_postgres(proc, self.db_port, lambda m: _fail(m, self.log_path))
                return
            except ZabbixSetupError:
                self._stop("postgres")
                if attempt == 2 or "already in use" not in tail(self.log_path, 30):
                    raise

    def _start_server(self) -> None:
        run = self.workdir / "zabbix"
        run.mkdir(exist_ok=True)
        self.conf_path.write_text(_server_conf(self.workdir, self.db_port, self.server_port))
        chown_tree(run, ZABBIX_USER)
        proc = self._spawn("server", ["zabbix_server", "-f", "-c", str(self.conf_path)],
                           user=ZABBIX_USER, env=plain_env(), log_path=self.log_path,
                           cwd=run)
        poll_until(lambda: "server #0 started" in tail(self.server_log, 400)
                   and port_open(self.server_port),
                   timeout=self.start_timeout, interval=0.1, proc=proc,
                   exited=lambda code: _fail(f"zabbix_server exited with status {code}",
                                             self.log_path, self.server_log),
                   timed_out=lambda: _fail("zabbix_server did not start", self.log_path,
                                           self.server_log))

    def _start_frontend(self) -> None:
        for attempt in range(3):
            self.web_port = free_port()
            self.url = f"http://127.0.0.1:{self.web_port}"
            env = plain_env(SB_ZBX_DB_PORT=str(self.db_port),
                             SB_ZBX_SERVER_PORT=str(self.server_port),
                             PHP_CLI_SERVER_WORKERS="4")
            proc = self._spawn("php", ["php", "-S", f"127.0.0.1:{self.web_port}",
                                       "-t", str(FRONTEND_ROOT),
                                       "-d", "memory_limit=256M", "-d", "post_max_size=16M",
                                       "-d", "max_execution_time=300",
                                       "-d", "date.timezone=UTC"],
                               user=PHP_USER, env=env, log_path=self.php_log,
                               cwd=FRONTEND_ROOT)
            deadline = time.monotonic() + self.start_timeout
            while True:
                if proc.poll() is not None:
                    break
                try:
                    answer = self._http.post(
                        self.url + "/api_jsonrpc.php",
                        json={"jsonrpc": "2.0", "method": "apiinfo.version", "params": {},
                              "id": 1})
                    data = answer.json() if answer.status_code == 200 else {}
                    if isinstance(data, dict) and "result" in data:
                        self.version = str(data["result"])
                        return
                    if isinstance(data, dict) and "error" in data:
                        raise _fail(f"the Zabbix API answers an error: {data['error']}",
                                    self.php_log)
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise _fail("the Zabbix frontend did not answer", self.php_log)
                time.sleep(0.1)
            self._stop("php")
            if attempt == 2 or "in use" not in tail(self.php_log, 20):
                raise _fail("php -S exited while starting", self.php_log)

    def _stop(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        if name == "postgres" and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        stop_group(proc, wait=15.0)
        if self._watchdog is not None:
            self._watchdog.forget(proc.pid)

    def stop(self) -> None:
        for name in ("php", "server", "postgres"):
            self._stop(name)
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        self._http.close()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for p in self._procs.values())

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    # -- API
    def api(self, method: str, params: Any, *, auth: str | None = None) -> Any:
        """One JSON-RPC call (Admin's token unless `auth`); returns `result`, raises
        `ZabbixSetupError` on an error answer."""
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        token = auth if auth is not None else (self.api_token or self._session)
        if token and method not in ("user.login", "apiinfo.version"):
            body["auth"] = token
        answer = self._http.post(self.url + "/api_jsonrpc.php", json=body,
                                 headers={"Content-Type": "application/json-rpc"})
        try:
            data = answer.json()
        except ValueError:
            raise _fail(f"{method}: HTTP {answer.status_code}, not JSON: {answer.text[:300]}",
                        self.php_log) from None
        if "error" in data:
            error = data["error"]
            raise ZabbixSetupError(f"{method} failed: {error.get('message')} "
                                   f"{error.get('data')}")
        return data["result"]

    def _provision(self) -> None:
        try:
            self._provision_steps()
        except ZabbixSetupError as exc:
            raise _fail(f"provisioning failed: {exc}", self.log_path, self.php_log) from None

    def _provision_steps(self) -> None:
        self._session = str(self.api("user.login", {"username": ADMIN_LOGIN,
                                                    "password": ADMIN_PASSWORD}))
        admin = self.api("user.get", {"filter": {"username": ADMIN_LOGIN},
                                      "output": ["userid"]})
        self.admin_userid = str(admin[0]["userid"])
        tokenids = self.api("token.create", {"name": "switchboard-tests",
                                             "userid": self.admin_userid})["tokenids"]
        generated = self.api("token.generate", tokenids)
        self.api_token = str(generated[0]["token"])

        self.api("configuration.import", {
            "format": "yaml", "source": MEDIA_TYPE_FILE.read_text(),
            "rules": {"mediaTypes": {"createMissing": True, "updateExisting": True}}})
        media = self.api("mediatype.get", {"filter": {"name": MEDIA_TYPE_NAME},
                                           "output": ["mediatypeid"]})
        if not media:
            raise ZabbixSetupError(f"the media type {MEDIA_TYPE_NAME!r} was not imported")
        self.mediatypeid = str(media[0]["mediatypeid"])

        role = self.api("role.get", {"filter": {"name": "Super admin role"},
                                     "output": ["roleid"]})
        group = self.api("usergroup.get", {"filter": {"name": "Zabbix administrators"},
                                           "output": ["usrgrpid"]})
        made = self.api("user.create", {
            "username": NOTIFY_LOGIN, "name": "Switchboard", "surname": "Notifications",
            "passwd": "Qx7!" + os.urandom(12).hex(), "roleid": role[0]["roleid"],
            "usrgrps": [{"usrgrpid": group[0]["usrgrpid"]}],
            "medias": [self._media("http://127.0.0.1:9/unset")]})
        self.notify_userid = str(made["userids"][0])

        self.groupid = str(self.api("hostgroup.create", {"name": HOST_GROUP})["groupids"][0])
        self.hostid = str(self.api("host.create", {
            "host": HOST, "name": HOST, "groups": [{"groupid": self.groupid}]})["hostids"][0])
        self.itemid = str(self.api("item.create", {
            "hostid": self.hostid, "name": "Load", "key_": ITEM_KEY, "type": 2,
            "value_type": 3})["itemids"][0])
        self.triggerid = str(self.api("trigger.create", {
            "description": TRIGGER_NAME,
            "expression": f"last(/{HOST}/{ITEM_KEY})>{TRIGGER_THRESHOLD}",
            "priority": 4, "manual_close": 1})["triggerids"][0])

        def message() -> dict[str, Any]:
            return {"operationtype": 0,
                    "opmessage": {"default_msg": 1, "mediatypeid": self.mediatypeid},
                    "opmessage_usr": [{"userid": self.notify_userid}]}

        self.actionid = str(self.api("action.create", {
            "name": ACTION_NAME, "eventsource": 0, "status": 0, "esc_period": "1h",
            "filter": {"evaltype": 0, "conditions": [
                {"conditiontype": 0, "operator": 0, "value": self.groupid}]},
            "operations": [{**message(), "esc_step_from": 1, "esc_step_to": 1}],
            "recovery_operations": [message()],
            "update_operations": [message()]})["actionids"][0])

    def _media(self, sendto: str) -> dict[str, Any]:
        return {"mediatypeid": self.mediatypeid, "sendto": sendto, "active": 0,
                "severity": 63, "period": "1-7,00:00-24:00"}

    def _wait_item_known(self) -> None:
        """Sends an OK value until the server knows the item: its first configuration sync is
        done, and it brought the trigger and the action with the item."""
        poll_until(lambda: self.send_value(0, check=False), timeout=self.start_timeout,
                   interval=0.3,
                   timed_out=lambda: _fail("zabbix_server never accepted a value for the "
                                           "trapper item", self.log_path, self.server_log))

    # -- helpers for tests
    def set_receiver(self, url: str, token: str) -> None:
        """Points the webhook at `url` (the notified user's media "send to") with `token` as
        the bearer token. Media types are read at each delivery: no sync needed."""
        self.api("user.update", {"userid": self.notify_userid, "medias": [self._media(url)]})
        current = self.api("mediatype.get", {"mediatypeids": [self.mediatypeid],
                                             "output": ["parameters"]})[0]["parameters"]
        parameters = [{"name": p["name"], "value": token if p["name"] == "token"
                       else p["value"]} for p in current]
        self.api("mediatype.update", {"mediatypeid": self.mediatypeid,
                                      "parameters": parameters})
        self.receiver_url = url

    def set_media_parameter(self, name: str, value: str) -> None:
        current = self.api("mediatype.get", {"mediatypeids": [self.mediatypeid],
                                             "output": ["parameters"]})[0]["parameters"]
        parameters = [{"name": p["name"], "value": p["value"]} for p in current
                      if p["name"] != name]
        parameters.append({"name": name, "value": value})
        self.api("mediatype.update", {"mediatypeid": self.mediatypeid,
                                      "parameters": parameters})

    def send_value(self, value: int, *, check: bool = True) -> bool:
        """Sends one value of the trapper item with `zabbix_sender`; True when the server
        processed it."""
        cmd = [str(sender_path()), "-z", "127.0.0.1", "-p", str(self.server_port), "-s", HOST,
               "-k", ITEM_KEY, "-o", str(value)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        with open(self.log_path, "a") as log:
            note(log, "$ " + " ".join(cmd))
            log.write(proc.stdout + proc.stderr)
        ok = re.search(r"processed: 1;", proc.stdout) is not None
        if check and not ok:
            raise _fail(f"zabbix_sender was refused: {proc.stdout.strip()[-300:]}",
                        self.log_path, self.server_log)
        return ok

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 60.0,
                 interval: float = 0.3) -> Any:
        """Polls `probe` until it returns something true; raises with the logs' tails."""
        return poll_until(probe, timeout=timeout, interval=interval,
                          timed_out=lambda: _fail(f"timed out waiting for {what}",
                                                  self.server_log, self.php_log))

    def logtail(self, lines: int = 60) -> str:
        return tail(self.server_log, lines)

    def diagnosis(self) -> str:
        """What Zabbix itself recorded of the trigger's events and the webhook's deliveries
        (status, attempts, error), for a test's failure message: it tells a problem that never
        fired from one whose deliveries failed."""
        try:
            events = self.api("event.get", {
                "objectids": [self.triggerid], "source": 0, "object": 0,
                "output": ["eventid", "clock", "value", "acknowledged"],
                "sortfield": ["eventid"], "sortorder": "DESC", "limit": 10})
            alerts = self.api("alert.get", {
                "actionids": [self.actionid],
                "output": ["alertid", "eventid", "clock", "status", "retries", "error"],
                "sortfield": ["alertid"], "sortorder": "DESC", "limit": 10})
        except Exception as exc:  # a diagnosis must not hide the failure it explains
            return f"(no diagnosis: {type(exc).__name__}: {exc})"
        return (f"trigger events (newest first): {events}\n"
                f"webhook alerts (newest first; status 0 queued, 1 sent, 2 failed): {alerts}")


__all__ = ["HOST", "ITEM_KEY", "MEDIA_TYPE_FILE", "MEDIA_TYPE_NAME", "NOTIFY_LOGIN",
           "TRIGGER_THRESHOLD", "ZabbixServer", "ZabbixSetupError", "free_port",
           "golden_database", "install_zabbix", "is_installed", "sender_path", "sweep_orphans"]
