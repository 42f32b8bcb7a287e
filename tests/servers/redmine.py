"""A real Redmine 5 (Debian's packages, SQLite) for the tests, on 127.0.0.1.

`install_redmine()` installs the packages when they are missing (fast when they are there);
`RedmineServer` starts Redmine on a free port with its own copy of a provisioned database and
stops it on exit:

    with RedmineServer() as redmine:
        redmine.url, redmine.admin_key, redmine.users["alice"].api_key ...

The provisioned database (REST API on, a project `helpdesk`, users `alice` and `bob` with API
keys) is made once per machine and cached; every start copies it, so each start is clean.
Everything is logged to files; a failure raises `RedmineSetupError` with the tail of the log.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import yaml

REDMINE_ROOT = Path("/usr/share/redmine")
GEMFILE_LOCAL = REDMINE_ROOT / "Gemfile.local"
GEMFILE_LOCK = Path("/var/lib/redmine/Gemfile.lock")
INSTANCE = "default"
DATABASE_YML = Path(f"/etc/redmine/{INSTANCE}/database.yml")
PACKAGES = ("redmine", "redmine-sqlite", "puma")
RUN_AS = "www-data"
#: Kept between runs on one machine: the install log, the lock and the provisioned database.
STATE_DIR = Path(os.environ.get("SWITCHBOARD_REDMINE_STATE", "/var/tmp/switchboard-redmine"))

PROJECT = "helpdesk"
DEBCONF = f"""\
redmine redmine/current-instances string {INSTANCE}
redmine redmine/instances/{INSTANCE}/dbconfig-install boolean true
redmine redmine/instances/{INSTANCE}/database-type select sqlite3
redmine redmine/instances/{INSTANCE}/default-language select en
"""

# Makes the empty `gems/<name>-<version>` directory of every gem whose specification comes from
# Debian's rubygems-integration layout but whose directory is missing: without it, the bundler
# of Debian 12's ruby3.1 security update refuses `bundle install --local`.
GEM_DIR_CURE = r"""
require 'fileutils'
Gem::Specification.each do |spec|
  next unless spec.loaded_from.to_s.include?('rubygems-integration')
  dir = spec.full_gem_path
  next if File.directory?(dir)
  FileUtils.mkdir_p(dir)
  puts "created #{dir}"
end
"""

# Run with `rails runner` against a copy of the installed database; writes what the tests need
# as JSON to $SB_FACTS_PATH.
PROVISION = r"""
require 'json'
require 'securerandom'

Redmine::DefaultData::Loader.load('en') if Redmine::DefaultData::Loader.no_data?

Setting.rest_api_enabled = '1'
Setting.notified_events = []
Setting.default_language = 'en'

admin = User.where(admin: true, status: User::STATUS_ACTIVE).order(:id).first
raise 'no active administrator in the database' if admin.nil?
admin.must_change_passwd = false
admin.mail_notification = 'none'
admin.save!(validate: false)

project = Project.find_by(identifier: '__PROJECT__') || Project.new
project.identifier = '__PROJECT__'
project.name = 'Helpdesk'
project.is_public = false
project.trackers = Tracker.sorted.to_a
project.enabled_module_names = %w[issue_tracking]
project.save!

def ensure_member(login, first, last, role, project)
  user = User.find_by(login: login) || User.new
  user.login = login
  user.firstname = first
  user.lastname = last
  user.mail = "#{login}@sandbox.local"
  if user.new_record?
    user.password = SecureRandom.hex(16)
    user.password_confirmation = user.password
  end
  user.mail_notification = 'none'
  user.status = User::STATUS_ACTIVE
  user.save!
  member = Member.find_by(user_id: user.id, project_id: project.id) ||
           Member.new(project: project, user_id: user.id)
  member.role_ids = [role.id]
  member.save!
  user
end

manager = Role.find_by!(name: 'Manager')
reporter = Role.find_by!(name: 'Reporter')
people = [
  ensure_member('alice', 'Alice', 'Liddell', manager, project),
  ensure_member('bob', 'Bob', 'Builder', reporter, project),
]

def person(user)
  { id: user.id, login: user.login, mail: user.mail, name: user.name,
    api_key: user.api_key }
end

facts = {
  redmine_version: Redmine::VERSION.to_s,
  admin: person(admin),
  users: people.map { |u| person(u) },
  project: { id: project.id, identifier: project.identifier, name: project.name },
  trackers: Tracker.sorted.map { |t| { id: t.id, name: t.name } },
  statuses: IssueStatus.sorted.map { |s| { id: s.id, name: s.name, is_closed: s.is_closed } },
  priorities: IssuePriority.active.sorted.map { |p|
    { id: p.id, name: p.name, is_default: p.is_default } },
}
File.write(ENV.fetch('SB_FACTS_PATH'), JSON.generate(facts))
""".replace("__PROJECT__", PROJECT)


class RedmineSetupError(RuntimeError):
    """Installing, provisioning or starting Redmine failed; the message ends with the log's tail."""


@dataclass(frozen=True)
class RedmineUser:
    id: int
    login: str
    email: str
    name: str
    api_key: str


# --------------------------------------------------------------------------- helpers


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _fail(message: str, log: Path) -> RedmineSetupError:
    return RedmineSetupError(f"{message} (log: {log})\n--- last lines of the log ---\n"
                             f"{_tail(log)}")


def _note(log: IO[str], text: str) -> None:
    log.write(f"\n### {time.strftime('%H:%M:%S')} {text}\n")
    log.flush()


def _run(cmd: Sequence[str], log: IO[str], *, env: Mapping[str, str] | None = None,
         cwd: Path | None = None, user: str | None = None, input_text: str | None = None,
         timeout: float = 900.0) -> int:
    """Runs `cmd`, its output appended to `log`; returns the exit status."""
    _note(log, "$ " + " ".join(cmd))
    proc = subprocess.run(
        list(cmd), cwd=cwd, env=dict(env) if env is not None else None, user=user,
        group=user, extra_groups=[] if user else None, input=input_text, text=True,
        stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False,
        stdin=None if input_text is not None else subprocess.DEVNULL)
    _note(log, f"exit status {proc.returncode}")
    return proc.returncode


def _root_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUNDLE_", "GEM_", "RUBY"))}
    env.update(DEBIAN_FRONTEND="noninteractive", DEBCONF_NONINTERACTIVE_SEEN="true",
               LANG="C.UTF-8", LC_ALL="C.UTF-8")
    return env


def _ruby_env(home: Path, database: Path | None = None) -> dict[str, str]:
    """A small, explicit environment for Redmine's processes (nothing of pytest's leaks in)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "REDMINE_INSTANCE": INSTANCE, "RAILS_ENV": "production"}
    if database is not None:
        # Rails prefers DATABASE_URL over database.yml: this start's own copy of the database.
        env["DATABASE_URL"] = f"sqlite3:{database}?timeout=10000"
    return env


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


def _packages_installed() -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}\n", *PACKAGES],
        capture_output=True, text=True, check=False)
    states = proc.stdout.split()
    return proc.returncode == 0 and states == ["installed"] * len(PACKAGES)


def _puma_in_bundle() -> bool:
    try:
        return ('gem "puma"' in GEMFILE_LOCAL.read_text()
                and "puma" in GEMFILE_LOCK.read_text())
    except OSError:
        return False


def is_installed() -> bool:
    return _packages_installed() and _puma_in_bundle()


def _apt_has_candidates(log: IO[str]) -> bool:
    proc = subprocess.run(["apt-cache", "policy", *PACKAGES], capture_output=True, text=True,
                          check=False, env=_root_env())
    log.write(proc.stdout)
    return proc.returncode == 0 and "Candidate: (none)" not in proc.stdout \
        and proc.stdout.count("Candidate:") == len(PACKAGES)


def install_redmine(log_path: Path | None = None) -> float:
    """Installs Redmine, its SQLite backend and puma from Debian's packages unless they are
    already there; returns the seconds spent (0.0 when nothing was needed)."""
    if is_installed():
        return 0.0
    if os.geteuid() != 0:
        raise RedmineSetupError("installing Redmine needs root (apt-get)")
    log_path = log_path or STATE_DIR / "install.log"
    started = time.monotonic()
    with _locked(STATE_DIR / "install.lock"):
        if is_installed():  # another process did it while this one waited
            return time.monotonic() - started
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            _install_locked(log, log_path)
    return time.monotonic() - started


def _install_locked(log: IO[str], log_path: Path) -> None:
    env = _root_env()
    if not _packages_installed():
        if not _apt_has_candidates(log) and _run(["apt-get", "update"], log, env=env) != 0:
            raise _fail("apt-get update failed", log_path)
        if _run(["debconf-set-selections"], log, env=env, input_text=DEBCONF) != 0:
            raise _fail("debconf-set-selections failed", log_path)
        status = _run(["apt-get", "install", "-y", "--no-install-recommends",
                       "-o", "Dpkg::Options::=--force-confdef",
                       "-o", "Dpkg::Options::=--force-confold", *PACKAGES], log, env=env)
        if status != 0:
            # Redmine's post-install `bundle install --local` trips on the gem directories
            # missing from Debian's old layout: create them and finish the configuration.
            _note(log, "apt-get failed: applying the gem-directory cure")
            _run(["ruby", "-e", GEM_DIR_CURE], log, env=env)
            if _run(["dpkg", "--configure", "-a"], log, env=env) != 0:
                raise _fail("configuring the Redmine packages failed", log_path)
        if not _packages_installed():
            raise _fail("the Redmine packages are not installed after apt-get", log_path)
    if not _puma_in_bundle():
        text = GEMFILE_LOCAL.read_text() if GEMFILE_LOCAL.exists() else ""
        if 'gem "puma"' not in text:
            GEMFILE_LOCAL.write_text(text + ("" if text.endswith("\n") or not text else "\n")
                                     + 'gem "puma"\n')
        _run(["ruby", "-e", GEM_DIR_CURE], log, env=env)
        if _run(["bundle", "install", "--local"], log, env=env, cwd=REDMINE_ROOT) != 0:
            raise _fail("bundle install --local with puma failed", log_path)
        with contextlib.suppress(OSError):
            shutil.chown(GEMFILE_LOCK, RUN_AS, RUN_AS)
        if not _puma_in_bundle():
            raise _fail("puma is not in Redmine's bundle", log_path)


def installed_database() -> Path:
    """The SQLite file that Debian's configuration made and migrated for the instance."""
    config = yaml.safe_load(DATABASE_YML.read_text())
    production = config["production"]
    base = Path(str(production["database"]))
    if base.is_absolute():
        return base
    return REDMINE_ROOT / base


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def _golden_key() -> str:
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "redmine"],
                             capture_output=True, text=True, check=False).stdout
    return hashlib.sha256((version + PROVISION).encode()).hexdigest()[:12]


def provisioned_database(log_path: Path) -> tuple[Path, dict[str, Any]]:
    """The cached, provisioned database and its facts; made on first use (one `rails runner`)."""
    folder = STATE_DIR / f"golden-{_golden_key()}"
    db, facts_file = folder / "redmine.sqlite3", folder / "facts.json"
    with _locked(STATE_DIR / "install.lock"):
        if not (db.exists() and facts_file.exists()):
            work = Path(tempfile.mkdtemp(prefix="provision-", dir=STATE_DIR))
            try:
                shutil.copyfile(installed_database(), work / "redmine.sqlite3")
                script = work / "provision.rb"
                script.write_text(PROVISION)
                _chown_tree(work, RUN_AS)
                env = _ruby_env(work, work / "redmine.sqlite3")
                env["SB_FACTS_PATH"] = str(work / "facts.json")
                with open(log_path, "a") as log:
                    status = _run(["bundle", "exec", "rails", "runner", str(script)], log,
                                  env=env, cwd=REDMINE_ROOT, user=RUN_AS, timeout=300)
                if status != 0 or not (work / "facts.json").exists():
                    raise _fail("provisioning Redmine with rails runner failed", log_path)
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                shutil.copyfile(work / "redmine.sqlite3", db)
                shutil.copyfile(work / "facts.json", facts_file)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return db, json.loads(facts_file.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


WORKDIR_PREFIX = "switchboard-redmine-"


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


def _die_with_parent() -> None:
    """In the child, after it became www-data: SIGKILL when the test process goes away."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


# --------------------------------------------------------------------------- the server


class RedmineServer:
    """A running Redmine on 127.0.0.1 with a fresh copy of the provisioned database.

    After `start()` (or entering the context): `url`, `port`, `admin_key`, `admin_login`,
    `admin_id`, `project` (identifier), `project_id`, `users` (login → `RedmineUser`: alice,
    a Manager, and bob, a Reporter, both members of the project), `tracker_id` (Support),
    `trackers`, `statuses` (name → id), `closed_status_ids`, `new_status_id`,
    `in_progress_status_id`, `resolved_status_id`, `feedback_status_id`, `closed_status_id`,
    `rejected_status_id`, `priorities` (name → id), `priority_ids` (urgency 1..5 → id),
    `default_priority_id`, `install_seconds`, `start_seconds`, `log_path`, `version`.
    """

    def __init__(self, workdir: Path | None = None, *, start_timeout: float = 90.0,
                 keep_workdir: bool = False) -> None:
        self._own_workdir = workdir is None
        if workdir is None:
            sweep_orphans()
            workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
            (workdir / "owner.pid").write_text(str(os.getpid()))
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "redmine.log"
        self.database = self.workdir / "redmine.sqlite3"
        self.start_timeout = start_timeout
        self.keep_workdir = keep_workdir
        self.port = 0
        self.url = ""
        self.install_seconds = 0.0
        self.start_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._facts: dict[str, Any] = {}
        self.admin_key = ""
        self.admin_login = ""
        self.admin_id = 0
        self.project = PROJECT
        self.project_id = 0
        self.version = ""
        self.users: dict[str, RedmineUser] = {}
        self.trackers: dict[str, int] = {}
        self.tracker_id = 0
        self.statuses: dict[str, int] = {}
        self.closed_status_ids: set[int] = set()
        self.priorities: dict[str, int] = {}
        self.priority_ids: dict[int, int] = {}
        self.default_priority_id = 0

    # -- facts
    def _absorb(self, facts: dict[str, Any]) -> None:
        self._facts = facts
        self.version = str(facts["redmine_version"])
        self.admin_key = str(facts["admin"]["api_key"])
        self.admin_login = str(facts["admin"]["login"])
        self.admin_id = int(facts["admin"]["id"])
        self.project = str(facts["project"]["identifier"])
        self.project_id = int(facts["project"]["id"])
        self.users = {
            str(u["login"]): RedmineUser(id=int(u["id"]), login=str(u["login"]),
                                         email=str(u["mail"]), name=str(u["name"]),
                                         api_key=str(u["api_key"]))
            for u in facts["users"]}
        self.trackers = {str(t["name"]): int(t["id"]) for t in facts["trackers"]}
        self.tracker_id = self.trackers.get("Support") or next(iter(self.trackers.values()))
        self.statuses = {str(s["name"]): int(s["id"]) for s in facts["statuses"]}
        self.closed_status_ids = {int(s["id"]) for s in facts["statuses"] if s["is_closed"]}
        prios = facts["priorities"]
        self.priorities = {str(p["name"]): int(p["id"]) for p in prios}
        self.priority_ids = {i + 1: int(p["id"]) for i, p in enumerate(prios[:5])}
        self.default_priority_id = next(
            (int(p["id"]) for p in prios if p["is_default"]), self.priority_ids.get(2, 0))

    def _status(self, name: str) -> int:
        try:
            return self.statuses[name]
        except KeyError:
            raise RedmineSetupError(f"Redmine has no status named {name!r}") from None

    @property
    def new_status_id(self) -> int:
        return self._status("New")

    @property
    def in_progress_status_id(self) -> int:
        return self._status("In Progress")

    @property
    def resolved_status_id(self) -> int:
        return self._status("Resolved")

    @property
    def feedback_status_id(self) -> int:
        return self._status("Feedback")

    @property
    def closed_status_id(self) -> int:
        return self._status("Closed")

    @property
    def rejected_status_id(self) -> int:
        return self._status("Rejected")

    # -- lifecycle
    def start(self) -> RedmineServer:
        if self._proc is not None:
            raise RedmineSetupError("this Redmine is already running")
        install_log = STATE_DIR / "install.log"
        self.install_seconds = install_redmine(install_log)
        began = time.monotonic()
        golden, facts = provisioned_database(self.log_path)
        self._absorb(facts)
        shutil.copyfile(golden, self.database)
        _chown_tree(self.workdir, RUN_AS)
        for attempt in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self._spawn()
            try:
                self._wait_ready()
                break
            except RedmineSetupError:
                # A port taken between the probe and the bind: try another one.
                exited = self._proc is not None and self._proc.poll() is not None
                self._terminate()
                if not exited or attempt == 2 or "Address already in use" not in _tail(
                        self.log_path, 200):
                    raise
        self.start_seconds = time.monotonic() - began
        return self

    def _spawn(self) -> None:
        with open(self.log_path, "a") as log:
            _note(log, f"starting Redmine on {self.url}")
            cmd = ["bundle", "exec", "rackup", "-E", "production", "-s", "puma",
                   "-o", "127.0.0.1", "-p", str(self.port)]
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            self._proc = subprocess.Popen(
                cmd, cwd=REDMINE_ROOT, env=_ruby_env(self.workdir, self.database),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                user=RUN_AS, group=RUN_AS, extra_groups=[], process_group=0,
                preexec_fn=_die_with_parent)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise _fail(f"Redmine exited with status {code} while starting", self.log_path)
            try:
                response = httpx.get(self.url + "/issues.json?limit=1", timeout=5.0,
                                     headers={"X-Redmine-API-Key": self.admin_key})
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self._terminate()
                raise _fail(f"Redmine did not answer on {self.url} within "
                            f"{self.start_timeout:.0f} s", self.log_path)
            time.sleep(0.2)

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
        # Anything left in the group (there should be nothing) goes too.
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

    def __enter__(self) -> RedmineServer:
        try:
            return self.start()
        except BaseException:
            self._terminate()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- helpers for tests
    def api(self, method: str, path: str, *, json_body: Any = None, user: str | None = None,
            key: str | None = None, timeout: float = 30.0) -> httpx.Response:
        """One REST call (admin key unless `key`; `user` switches to that login)."""
        headers = {"X-Redmine-API-Key": key or self.admin_key}
        if user:
            headers["X-Redmine-Switch-User"] = user
        return httpx.request(method, self.url + path, json=json_body, headers=headers,
                             timeout=timeout)

    def set_status(self, issue_id: int | str, status_id: int) -> None:
        """Changes an issue's status as the administrator."""
        response = self.api("PUT", f"/issues/{issue_id}.json",
                            json_body={"issue": {"status_id": status_id}})
        if response.status_code != 204:
            raise AssertionError(f"status change failed: {response.status_code} "
                                 f"{response.text[:300]}")

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)


__all__ = ["PROJECT", "RedmineServer", "RedmineSetupError", "RedmineUser", "free_port",
           "install_redmine", "installed_database", "is_installed", "provisioned_database",
           "sweep_orphans"]
