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
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import httpx
import yaml

from tests.servers import common
from tests.servers.common import (
    LOOPBACK,
    ProcessServer,
    ServerSetupError,
    apt_env,
    apt_install,
    chown_tree,
    dpkg_frontend_locked,
    free_port,
    install_once,
    locked,
    note,
    package_version,
    packages_installed,
    run_dpkg,
    run_logged,
    spawn,
    update_apt_lists_if_needed,
)

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


class RedmineSetupError(ServerSetupError):
    """Installing, provisioning or starting Redmine failed; the message ends with the log's tail."""


@dataclass(frozen=True)
class RedmineUser:
    id: int
    login: str
    email: str
    name: str
    api_key: str


# --------------------------------------------------------------------------- helpers


_fail = RedmineSetupError.with_log


def _root_env() -> dict[str, str]:
    return apt_env(drop_prefixes=("BUNDLE_", "GEM_", "RUBY"))


def _ruby_env(home: Path, database: Path | None = None) -> dict[str, str]:
    """A small, explicit environment for Redmine's processes (nothing of pytest's leaks in)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "REDMINE_INSTANCE": INSTANCE, "RAILS_ENV": "production"}
    if database is not None:
        # Rails prefers DATABASE_URL over database.yml: this start's own copy of the database.
        env["DATABASE_URL"] = f"sqlite3:{database}?timeout=10000"
    return env


def _packages_installed() -> bool:
    return packages_installed(PACKAGES)


def _puma_in_bundle() -> bool:
    try:
        return ('gem "puma"' in GEMFILE_LOCAL.read_text()
                and "puma" in GEMFILE_LOCK.read_text())
    except OSError:
        return False


def is_installed() -> bool:
    return _packages_installed() and _puma_in_bundle()


def install_redmine(log_path: Path | None = None) -> float:
    """Installs Redmine, its SQLite backend and puma from Debian's packages unless they are
    already there; returns the seconds spent (0.0 when nothing was needed)."""
    return install_once("Redmine", installed=is_installed, install=_install_locked,
                        state_dir=STATE_DIR, log_path=log_path, error=RedmineSetupError)


def _install_locked(log: IO[str], log_path: Path) -> None:
    env = _root_env()
    if not _packages_installed():
        update_apt_lists_if_needed(PACKAGES, log, log_path, RedmineSetupError, env=env)
        # debconf's database is locked while any installer configures packages.
        with dpkg_frontend_locked(log):
            answers = run_logged(["debconf-set-selections"], log, env=env, input_text=DEBCONF)
        if answers != 0:
            raise _fail("debconf-set-selections failed", log_path)
        status = apt_install(PACKAGES, log, env=env)
        if status != 0:
            # Redmine's post-install `bundle install --local` trips on the gem directories
            # missing from Debian's old layout: create them and finish the configuration.
            note(log, "apt-get failed: applying the gem-directory cure")
            run_logged(["ruby", "-e", GEM_DIR_CURE], log, env=env)
            if run_dpkg(["--configure", "-a"], log, env=env) != 0:
                raise _fail("configuring the Redmine packages failed", log_path)
        if not _packages_installed():
            raise _fail("the Redmine packages are not installed after apt-get", log_path)
    if not _puma_in_bundle():
        text = GEMFILE_LOCAL.read_text() if GEMFILE_LOCAL.exists() else ""
        if 'gem "puma"' not in text:
            GEMFILE_LOCAL.write_text(text + ("" if text.endswith("\n") or not text else "\n")
                                     + 'gem "puma"\n')
        run_logged(["ruby", "-e", GEM_DIR_CURE], log, env=env)
        if run_logged(["bundle", "install", "--local"], log, env=env, cwd=REDMINE_ROOT) != 0:
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


def _golden_key() -> str:
    version = package_version("redmine")
    return hashlib.sha256((version + PROVISION).encode()).hexdigest()[:12]


def provisioned_database(log_path: Path) -> tuple[Path, dict[str, Any]]:
    """The cached, provisioned database and its facts; made on first use (one `rails runner`)."""
    folder = STATE_DIR / f"golden-{_golden_key()}"
    db, facts_file = folder / "redmine.sqlite3", folder / "facts.json"
    with locked(STATE_DIR / "install.lock"):
        if not (db.exists() and facts_file.exists()):
            work = Path(tempfile.mkdtemp(prefix="provision-", dir=STATE_DIR))
            try:
                shutil.copyfile(installed_database(), work / "redmine.sqlite3")
                script = work / "provision.rb"
                script.write_text(PROVISION)
                chown_tree(work, RUN_AS)
                env = _ruby_env(work, work / "redmine.sqlite3")
                env["SB_FACTS_PATH"] = str(work / "facts.json")
                with open(log_path, "a") as log:
                    status = run_logged(["bundle", "exec", "rails", "runner", str(script)],
                                        log, env=env, cwd=REDMINE_ROOT, user=RUN_AS, timeout=300)
                if status != 0 or not (work / "facts.json").exists():
                    raise _fail("provisioning Redmine with rails runner failed", log_path)
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                shutil.copyfile(work / "redmine.sqlite3", db)
                shutil.copyfile(work / "facts.json", facts_file)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return db, json.loads(facts_file.read_text())


WORKDIR_PREFIX = "switchboard-redmine-"


def sweep_orphans() -> None:
    """Removes the working folders left by test processes that died without cleaning up."""
    common.sweep_orphans(WORKDIR_PREFIX)


# --------------------------------------------------------------------------- the server


class RedmineServer(ProcessServer):
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
        super().__init__(workdir, prefix=WORKDIR_PREFIX, log_name="redmine.log",
                         start_timeout=start_timeout, keep_workdir=keep_workdir)
        self.database = self.workdir / "redmine.sqlite3"
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
    label = "Redmine"
    error = RedmineSetupError
    ready_interval = 0.2
    _not_yet = (httpx.HTTPError,)

    def start(self) -> Self:
        if self._proc is not None:
            raise RedmineSetupError("this Redmine is already running")
        install_log = STATE_DIR / "install.log"
        self.install_seconds = install_redmine(install_log)
        began = time.monotonic()
        golden, facts = provisioned_database(self.log_path)
        self._absorb(facts)
        shutil.copyfile(golden, self.database)
        chown_tree(self.workdir, RUN_AS)
        self._start_on_free_port()
        self.start_seconds = time.monotonic() - began
        return self

    def _spawn(self) -> None:
        with open(self.log_path, "a") as log:
            note(log, f"starting Redmine on {self.url}")
            self._proc = spawn(["bundle", "exec", "rackup", "-E", "production", "-s", "puma",
                                "-o", LOOPBACK, "-p", str(self.port)], log,
                               cwd=REDMINE_ROOT, env=_ruby_env(self.workdir, self.database),
                               user=RUN_AS)

    def _ready(self) -> bool:
        response = httpx.get(self.url + "/issues.json?limit=1", timeout=5.0,
                             headers={"X-Redmine-API-Key": self.admin_key})
        return response.status_code == 200

    def _abandon_start(self) -> None:
        self._terminate()  # the working folder stays for a look at the logs

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


__all__ = ["PROJECT", "RedmineServer", "RedmineSetupError", "RedmineUser", "free_port",
           "install_redmine", "installed_database", "is_installed", "provisioned_database",
           "sweep_orphans"]
