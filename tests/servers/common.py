"""What the real-server modules share: logs and their tails, commands run into a log, Debian
package installs under one lock (waiting for any other installer on the machine), private
working folders, free ports, servers started in their own process group that die with the test
process, waiting for them, stopping them, and the pytest factories that start servers for one
test."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, ParamSpec, Protocol, Self, TypeVar

_T = TypeVar("_T")
_P = ParamSpec("_P")

#: Debian's usual place for the policy that `invoke-rc.d` asks before it starts a service.
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
#: The loopback address every server listens on.
LOOPBACK = "127.0.0.1"
#: How long apt-get and dpkg wait for the package system while another installer uses it.
PACKAGE_LOCK_TIMEOUT_S = 600.0
#: How often a lock apt does not wait for itself is tried again.
PACKAGE_LOCK_POLL_S = 2.0
#: The lock every dpkg frontend (apt, dpkg run by hand) holds while it works.
DPKG_FRONTEND_LOCK = Path("/var/lib/dpkg/lock-frontend")
#: How apt reports a lock it did not get (in C.UTF-8, which apt_env sets).
_LOCK_BUSY = re.compile(r"^E: Could not get lock ", re.MULTILINE)


class ServerSetupError(RuntimeError):
    """Installing or starting a server failed; the message ends with the log's tail."""

    @classmethod
    def with_log(cls, message: str, log: Path, *extra: Path) -> Self:
        """The error for `message`, followed by the tail of `log` (and shorter tails of
        `extra` logs)."""
        text = f"{message} (log: {log})\n--- last lines of the log ---\n{tail(log)}"
        for path in extra:
            text += f"\n--- last lines of {path.name} ---\n{tail(path, 30)}"
        return cls(text)


# --------------------------------------------------------------------------- logs


def tail(path: Path, lines: int = 60) -> str:
    """The last `lines` lines of a log (or why there are none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def note(log: IO[str], text: str) -> None:
    """A time-stamped line of our own in a log."""
    log.write(f"\n### {time.strftime('%H:%M:%S')} {text}\n")
    log.flush()


def run_logged(cmd: Sequence[str], log: IO[str], *, env: Mapping[str, str] | None = None,
               cwd: Path | None = None, user: str | None = None,
               input_text: str | None = None, stdin: IO[bytes] | None = None,
               timeout: float = 900.0) -> int:
    """Runs `cmd` (as `user` when given), its output appended to `log`; returns the exit
    status. Its standard input is `input_text`, `stdin` or nothing."""
    note(log, "$ " + " ".join(cmd))
    if input_text is not None:
        status = subprocess.run(
            list(cmd), cwd=cwd, env=dict(env) if env is not None else None, user=user,
            group=user, extra_groups=[] if user else None, input=input_text, text=True,
            stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False).returncode
    else:
        status = subprocess.run(
            list(cmd), cwd=cwd, env=dict(env) if env is not None else None, user=user,
            group=user, extra_groups=[] if user else None,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False).returncode
    note(log, f"exit status {status}")
    return status


# --------------------------------------------------------------------------- installing


def apt_env(*, drop_prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for apt-get and dpkg: non-interactive, C.UTF-8, without the
    variables whose names start with one of `drop_prefixes`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)} \
        if drop_prefixes else dict(os.environ)
    env.update(DEBIAN_FRONTEND="noninteractive", DEBCONF_NONINTERACTIVE_SEEN="true",
               LANG="C.UTF-8", LC_ALL="C.UTF-8")
    return env


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One installer at a time across processes (several test runs may share a machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def package_version(name: str) -> str:
    """The version dpkg knows for the package `name` ("" when none)."""
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True,
                          text=True, check=False).stdout.strip()


def installed_version(name: str) -> str:
    """The version of the package `name` if it is installed, else ""."""
    proc = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", name],
                          capture_output=True, text=True, check=False)
    status, _, version = proc.stdout.partition(" ")
    return version if proc.returncode == 0 and status == "installed" else ""


def packages_installed(names: Sequence[str]) -> bool:
    """Whether every package of `names` is installed."""
    proc = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}\n", *names],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and proc.stdout.split() == ["installed"] * len(names)


def apt_has_candidates(log: IO[str], names: Sequence[str], *,
                       env: Mapping[str, str] | None = None) -> bool:
    """Whether apt knows a version of every package of `names` (else its lists need an
    update); the policy goes to `log`."""
    proc = subprocess.run(["apt-cache", "policy", *names], capture_output=True, text=True,
                          check=False, env=dict(env) if env is not None else apt_env())
    log.write(proc.stdout)
    return proc.returncode == 0 and "Candidate: (none)" not in proc.stdout \
        and proc.stdout.count("Candidate:") == len(names)


def run_apt_get(args: Sequence[str], log: IO[str], *, env: Mapping[str, str],
                cwd: Path | None = None, timeout: float = 900.0,
                lock_timeout: float = PACKAGE_LOCK_TIMEOUT_S) -> int:
    """Runs `apt-get args`, its output appended to `log`, waiting up to `lock_timeout` seconds
    for the locks another installer holds; returns the exit status. apt itself waits for dpkg's
    locks (`DPkg::Lock::Timeout`); the locks it gives up on at once (the package lists', the
    download cache's) make it fail before it changes anything, and it is run again until the
    wait is over. `timeout` bounds the work itself, on top of the wait."""
    cmd = ["apt-get", "-o", f"DPkg::Lock::Timeout={max(1, round(lock_timeout))}", *args]
    deadline = time.monotonic() + lock_timeout
    while True:
        note(log, "$ " + " ".join(cmd))
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.PIPE, text=True,
                                  timeout=timeout + lock_timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) \
                else exc.stderr or ""
            log.write(stderr)
            note(log, f"timed out after {exc.timeout:.0f} s")
            raise
        log.write(proc.stderr)
        note(log, f"exit status {proc.returncode}")
        if proc.returncode == 0 or not _LOCK_BUSY.search(proc.stderr):
            return proc.returncode
        if time.monotonic() >= deadline:
            note(log, f"gave up waiting {lock_timeout:.0f} s for the lock")
            return proc.returncode
        time.sleep(min(PACKAGE_LOCK_POLL_S, max(0.0, deadline - time.monotonic())))


@contextlib.contextmanager
def dpkg_frontend_locked(log: IO[str], *,
                         lock_timeout: float = PACKAGE_LOCK_TIMEOUT_S) -> Iterator[dict[str, str]]:
    """Holds dpkg's frontend lock, as apt does, waiting up to `lock_timeout` seconds while
    another installer has it; yields the variables that tell a `dpkg` run meanwhile that its
    frontend holds the lock. Nothing else changes the package system while it is held (the
    debconf database included)."""
    deadline = time.monotonic() + lock_timeout
    fd = os.open(DPKG_FRONTEND_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        waited = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    message = (f"{DPKG_FRONTEND_LOCK} still held by another process after "
                               f"{lock_timeout:.0f} s")
                    note(log, message)
                    raise TimeoutError(message) from None
                if not waited:
                    note(log, f"waiting for {DPKG_FRONTEND_LOCK}")
                    waited = True
                time.sleep(min(PACKAGE_LOCK_POLL_S, max(0.0, deadline - time.monotonic())))
        try:
            yield {"DPKG_FRONTEND_LOCKED": "1"}
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def run_dpkg(args: Sequence[str], log: IO[str], *, env: Mapping[str, str],
             timeout: float = 900.0, lock_timeout: float = PACKAGE_LOCK_TIMEOUT_S) -> int:
    """Runs `dpkg args` (its output appended to `log`) under dpkg's frontend lock, waiting up to
    `lock_timeout` seconds for it; returns the exit status."""
    with dpkg_frontend_locked(log, lock_timeout=lock_timeout) as locked_env:
        return run_logged(["dpkg", *args], log, env={**env, **locked_env}, timeout=timeout)


def apt_install(names: Sequence[str], log: IO[str], *, env: Mapping[str, str],
                timeout: float = 900.0) -> int:
    """`apt-get install` of `names` without recommends, keeping existing configuration files,
    once the package system is free (see run_apt_get); the exit status."""
    return run_apt_get(["install", "-y", "--no-install-recommends",
                        "-o", "Dpkg::Options::=--force-confdef",
                        "-o", "Dpkg::Options::=--force-confold", *names], log, env=env,
                       timeout=timeout)


def update_apt_lists_if_needed(names: Sequence[str], log: IO[str], log_path: Path,
                               error: type[ServerSetupError], *,
                               env: Mapping[str, str] | None = None,
                               timeout: float = 900.0) -> None:
    """Runs `apt-get update` (waiting for the lists' lock, see run_apt_get) unless apt already
    has candidates for all of `names`."""
    env = env if env is not None else apt_env()
    if not apt_has_candidates(log, names, env=env) and run_apt_get(
            ["update"], log, env=env, timeout=timeout) != 0:
        raise error.with_log("apt-get update failed", log_path)


@contextlib.contextmanager
def services_held(log: IO[str]) -> Iterator[None]:
    """Makes `invoke-rc.d` refuse to start services while packages install, with a policy-rc.d
    of our own unless the machine already has one (which is left as it is)."""
    if POLICY_RC_D.exists():
        note(log, f"{POLICY_RC_D} already present: kept")
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


def systemd_runs() -> bool:
    """Whether systemd manages this machine's services."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def install_once(what: str, *, installed: Callable[[], bool],
                 install: Callable[[IO[str], Path], None], state_dir: Path,
                 log_path: Path | None, error: type[ServerSetupError]) -> float:
    """Runs `install(log, log_path)` as root under the machine-wide install lock unless
    `installed()`; returns the seconds spent (0.0 when nothing was needed)."""
    if installed():
        return 0.0
    if os.geteuid() != 0:
        raise error(f"installing {what} needs root (apt-get)")
    log_path = log_path or state_dir / "install.log"
    started = time.monotonic()
    with locked(state_dir / "install.lock"):
        if installed():  # another process did it while this one waited
            return time.monotonic() - started
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            install(log, log_path)
    return time.monotonic() - started


def chown_tree(path: Path, user: str) -> None:
    """Gives `path` and everything below it (links themselves, not their targets) to `user`."""
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


# --------------------------------------------------------------------------- working folders


def install_packages(what: str, packages: Sequence[str], paths: Sequence[Path], *,
                     state_dir: Path, log_path: Path | None, error: type[ServerSetupError],
                     services: Sequence[str] = ()) -> float:
    """Installs Debian `packages` (as one) unless they and `paths` are there, then stops and
    disables the `services` they may have started; the seconds spent (0.0 when nothing was
    needed)."""
    def installed() -> bool:
        return packages_installed(packages) and all(p.exists() for p in paths)

    def install(log: IO[str], log_path: Path) -> None:
        update_apt_lists_if_needed(packages, log, log_path, error, timeout=600)
        with services_held(log):
            status = apt_install(packages, log, env=apt_env(), timeout=600)
        for service in services:
            if systemd_runs():
                run_logged(["systemctl", "disable", "--now", service], log, env=apt_env(),
                           timeout=60)
            elif Path(f"/etc/init.d/{service}").exists():
                run_logged([f"/etc/init.d/{service}", "stop"], log, env=apt_env(), timeout=60)
        if status != 0 or not installed():
            raise error.with_log(f"installing {' '.join(packages)} failed", log_path)

    return install_once(what, installed=installed, install=install, state_dir=state_dir,
                        log_path=log_path, error=error)


def free_low_port() -> int:
    """A free loopback port between 20000 and 32767: below the range the system gives out
    for outgoing connections, so nothing connecting elsewhere takes it while a test holds it
    for a server that starts later."""
    import random

    for _ in range(200):
        port = random.randint(20000, 32767)
        with socket.socket() as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise ServerSetupError("no free port between 20000 and 32767")


def free_port() -> int:
    """A port nothing listens on at the moment, on the loopback address."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether anything answers on `port` of the loopback address."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans(prefix: str) -> None:
    """Removes the working folders named `prefix…` of test processes that died without cleaning
    up, after killing the process group a folder names in its `group.pid`."""
    for folder in Path(tempfile.gettempdir()).glob(prefix + "*"):
        try:
            owner = int((folder / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError, ProcessLookupError, PermissionError):
            os.killpg(int((folder / "group.pid").read_text()), signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


def new_workdir(prefix: str) -> Path:
    """A fresh temporary folder named `prefix…` that names this process as its owner (orphans
    of dead processes are swept first)."""
    sweep_orphans(prefix)
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    (workdir / "owner.pid").write_text(str(os.getpid()))
    return workdir


# --------------------------------------------------------------------------- processes


_PR_SET_PDEATHSIG = 1


def _on_parent_death(sig: signal.Signals) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def die_with_parent() -> None:
    """In the child (after it changed user): SIGKILL when the test process goes away."""
    _on_parent_death(signal.SIGKILL)


def term_with_parent() -> None:
    """In the child: SIGTERM (a clean stop) when the test process goes away."""
    _on_parent_death(signal.SIGTERM)


#: The parent-death signal follows the *thread* that forked the child: a server started from a
#: short-lived thread (asyncio.to_thread, an executor shut down with its event loop) would be
#: killed when that thread ends. `spawn(..., long_lived_thread=True)` therefore forks from this
#: one thread, which lives as long as the test process.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="server-spawn")


def spawn(cmd: Sequence[str], log: IO[str], *, env: Mapping[str, str],
          cwd: Path | None = None, user: str | None = None, new_session: bool = False,
          on_parent_death: Callable[[], None] = die_with_parent,
          long_lived_thread: bool = False) -> subprocess.Popen[bytes]:
    """Starts `cmd` (as `user` when given) in a process group of its own (a session of its own
    with `new_session`), its output appended to `log`; `on_parent_death` runs in the child."""
    note(log, "$ " + " ".join(cmd))

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(cmd), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, user=user, group=user,
            extra_groups=[] if user else None, start_new_session=new_session,
            process_group=None if new_session else 0, preexec_fn=on_parent_death)

    return _SPAWNER.submit(popen).result() if long_lived_thread else popen()


def stop_group(proc: subprocess.Popen[bytes], *, first: int = signal.SIGTERM,
               leader_only: bool = False, wait: float = 10.0) -> None:
    """Stops the process group that `proc` leads: `first` (to the leader alone with
    `leader_only`), SIGKILL after `wait` seconds, and SIGKILL for whatever is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if leader_only:
                os.kill(proc.pid, first)
            else:
                os.killpg(proc.pid, first)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # What is left of the group (forked workers) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def poll_until(probe: Callable[[], _T], *, timeout: float, interval: float,
               timed_out: Callable[[], BaseException],
               proc: subprocess.Popen[bytes] | None = None,
               exited: Callable[[int], BaseException] | None = None,
               ignore: tuple[type[BaseException], ...] = ()) -> _T:
    """Calls `probe` every `interval` seconds until it returns something true, and returns that.
    Raises `exited(status)` when `proc` ends first, `timed_out()` after `timeout` seconds;
    the exceptions of `ignore` count as a false answer."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and exited is not None and proc.poll() is not None:
            raise exited(proc.returncode)
        try:
            found = probe()
            if found:
                return found
        except ignore:
            pass
        if time.monotonic() > deadline:
            raise timed_out()
        time.sleep(interval)


# --------------------------------------------------------------------------- servers


class ServerContext:
    """`with server:` starts it, and stops it on exit (or when the start fails)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _abandon_start(self) -> None:
        """What a failed start leaves behind goes."""
        self.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self._abandon_start()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ProcessServer(ServerContext):
    """A server that is one process group (`_proc`), started on a free loopback port and logging
    to `log_path` in `workdir` (removed at the stop when it was made for the server)."""

    #: For messages: what the server is called.
    label = "the server"
    #: The error this server raises.
    error: type[ServerSetupError] = ServerSetupError
    #: The scheme of `url`.
    scheme = "http"
    #: Arguments of `stop_group` for this server.
    leader_only = False
    stop_wait = 10.0

    def __init__(self, workdir: Path | None, *, prefix: str, log_name: str,
                 start_timeout: float, keep_workdir: bool) -> None:
        """`workdir`, or a new folder named `prefix…` of its own; the log is `log_name` in it."""
        self._own_workdir = workdir is None
        self.workdir = new_workdir(prefix) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / log_name
        self.start_timeout = start_timeout
        self.keep_workdir = keep_workdir
        self.port = 0
        self.url = ""
        self.install_seconds = 0.0
        self.start_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what a server does its own way
    def _spawn(self) -> None:
        """Starts the process on `self.port` into `self._proc`."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """Whether the server answers (it may raise the exceptions of `_not_yet`)."""
        raise NotImplementedError

    _not_yet: tuple[type[BaseException], ...] = ()
    ready_interval = 0.1

    def _prepare_port(self) -> None:
        """Runs before every spawn, once `port` and `url` are chosen."""

    def _port_clash(self, exited: bool) -> bool:
        """Whether a failed start lost the race for its port (then another port is tried)."""
        return exited and "Address already in use" in tail(self.log_path, 200)

    def _on_timeout(self) -> None:
        """Runs when the server did not answer in time, before the error is raised."""
        self._terminate()

    # -- lifecycle
    def _start_on_free_port(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.port = free_port()
            self.url = f"{self.scheme}://{LOOPBACK}:{self.port}"
            self._prepare_port()
            self._spawn()
            try:
                self._wait_ready()
                return
            except self.error:
                # A port taken between the probe and the bind: try another one.
                exited = self._proc is not None and self._proc.poll() is not None
                self._terminate()
                if attempt == attempts - 1 or not self._port_clash(exited):
                    raise

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None

        def timed_out() -> ServerSetupError:
            self._on_timeout()
            return self.error.with_log(f"{self._unanswered} did not answer on {self.url} "
                                       f"within {self.start_timeout:.0f} s", self.log_path)

        poll_until(self._ready, timeout=self.start_timeout, interval=self.ready_interval,
                   proc=proc, ignore=self._not_yet, timed_out=timed_out,
                   exited=lambda code: self.error.with_log(
                       f"{self.label} exited with status {code} while starting",
                       self.log_path))

    @property
    def _unanswered(self) -> str:
        """For the message of a start that timed out: what did not answer."""
        return self.label

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc, leader_only=self.leader_only, wait=self.stop_wait)

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

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)


# --------------------------------------------------------------------------- fixtures


class _Stoppable(Protocol):
    def __enter__(self) -> Self: ...

    def stop(self) -> None: ...


_S = TypeVar("_S", bound=_Stoppable)


@contextlib.contextmanager
def server_factory(make: Callable[_P, _S]) -> Iterator[Callable[_P, _S]]:
    """A factory that makes servers with `make` and starts them; all are stopped, the last
    started first, when the `with` block ends."""
    started: list[_S] = []

    def factory(*args: _P.args, **kwargs: _P.kwargs) -> _S:
        server = make(*args, **kwargs)
        started.append(server)
        return server.__enter__()

    try:
        yield factory
    finally:
        for server in reversed(started):
            server.stop()
