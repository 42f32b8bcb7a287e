"""A real PostgreSQL (Debian's `postgresql` package) for the tests, on 127.0.0.1.

`PostgresServer` makes a throw-away cluster in a fresh folder (initdb, as the `postgres` system
user: PostgreSQL will not run as root), starts it on a free loopback port with durability
traded for speed (`fsync=off`), creates a database, and stops it when the test is done. The
Zabbix test server runs its own cluster with the same programs (`pg_bin`, `postgres_cmd`,
`wait_postgres`, `stop_postgres`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from tests.servers.common import (
    LOOPBACK,
    ServerContext,
    ServerSetupError,
    chown_tree,
    free_port,
    install_packages,
    new_workdir,
    note,
    poll_until,
    run_logged,
    spawn,
)

STATE_DIR = Path("/var/tmp/switchboard-test-postgres")
DB_USER = "postgres"


class PostgresSetupError(ServerSetupError):
    """Installing or starting PostgreSQL failed."""


def plain_env(**extra: str) -> dict[str, str]:
    """The environment PostgreSQL's programs run in: nothing of the test's."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "HOME": "/tmp"}
    env.update(extra)
    return env


def pg_bin(name: str) -> Path:
    """A PostgreSQL server program (initdb, postgres, pg_ctl) of the newest installed version."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise PostgresSetupError(f"no PostgreSQL program {name} under /usr/lib/postgresql")
    return Path(found[-1])


def postgres_cmd(datadir: Path, port: int, sockdir: Path) -> list[str]:
    return [str(pg_bin("postgres")), "-D", str(datadir), "-p", str(port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockdir}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=60", "-c", "shared_buffers=32MB",
            "-c", "logging_collector=off"]


def psql(port: int, *args: str) -> list[str]:
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", LOOPBACK, "-p", str(port),
            *args]


def wait_postgres(proc: subprocess.Popen[bytes], port: int,
                  fail: Callable[[str], Exception], timeout: float = 60.0) -> None:
    """Until the server answers; `fail(message)` is raised when it exits or does not."""
    def ready() -> bool:
        return subprocess.run(["pg_isready", "-q", "-h", LOOPBACK, "-p", str(port),
                               "-U", "postgres", "-d", "postgres"],
                              check=False, capture_output=True).returncode == 0

    poll_until(ready, timeout=timeout, interval=0.1, proc=proc,
               exited=lambda code: fail(f"PostgreSQL exited with status {code}"),
               timed_out=lambda: fail(f"PostgreSQL did not start within {timeout:.0f} s"))


def stop_postgres(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # fast shutdown: a clean data directory
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def install_postgres(log_path: Path | None = None) -> float:
    """Debian's PostgreSQL server, installed once per machine; the seconds it took."""
    return install_packages("PostgreSQL", ["postgresql"], [], state_dir=STATE_DIR,
                            log_path=log_path, error=PostgresSetupError,
                            services=["postgresql"])


async def empty_schema(dsn: str) -> None:
    """The database as new: every table of the last test gone."""
    import asyncpg  # type: ignore[import-untyped]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


class PostgresServer(ServerContext):
    """One PostgreSQL cluster of its own, with the database `database` (owner `postgres`,
    trusted on the loopback address). `dsn` is its URL."""

    def __init__(self, database: str = "switchboard") -> None:
        self.database = database
        self.port = 0
        self.workdir: Path | None = None
        self.log_path = Path("/dev/null")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{self.database}"

    def start(self) -> Self:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        install_postgres(STATE_DIR / "install.log")
        self.workdir = workdir = new_workdir("switchboard-postgres-")
        self.log_path = workdir / "postgres.log"
        datadir, sockdir = workdir / "pgdata", workdir / "sock"
        datadir.mkdir()
        sockdir.mkdir()
        chown_tree(workdir, DB_USER)

        def fail(message: str) -> Exception:
            return PostgresSetupError.with_log(message, self.log_path)

        with open(self.log_path, "a") as log:
            if run_logged([str(pg_bin("initdb")), "-D", str(datadir), "-U", "postgres",
                           "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"], log,
                          env=plain_env(), user=DB_USER, timeout=120) != 0:
                raise fail("initdb failed")
            self.port = free_port()
            note(log, f"starting PostgreSQL on {LOOPBACK}:{self.port}")
            self._proc = spawn(postgres_cmd(datadir, self.port, sockdir), log, env=plain_env(),
                               user=DB_USER)
        try:
            wait_postgres(self._proc, self.port, fail)
            with open(self.log_path, "a") as log:
                if run_logged(psql(self.port, "-U", "postgres", "-d", "postgres", "-c",
                                   f"CREATE DATABASE {self.database}"), log,
                              env=plain_env(), timeout=60) != 0:
                    raise fail(f"creating the database {self.database} failed")
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the server (fast: every connection cut) and start it again on the same port
        after `down_for` seconds, as an outage or a failover looks to its clients."""
        assert self._proc is not None and self.workdir is not None
        stop_postgres(self._proc)
        time.sleep(down_for)
        with open(self.log_path, "a") as log:
            note(log, f"starting PostgreSQL again on {LOOPBACK}:{self.port}")
            self._proc = spawn(postgres_cmd(self.workdir / "pgdata", self.port,
                                            self.workdir / "sock"), log, env=plain_env(),
                               user=DB_USER)
        wait_postgres(self._proc, self.port,
                      lambda m: PostgresSetupError.with_log(m, self.log_path))

    def stop(self) -> None:
        if self._proc is not None:
            stop_postgres(self._proc)
            self._proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
