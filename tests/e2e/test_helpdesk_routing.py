"""End to end: one keyword in two channels going to two trackers, GLPI (the simulator, in an
entity of its own) and a REAL Redmine (in a project of its own); `status N` and `my tickets` ask
both and say where each ticket lives."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin.sandbox.glpi import GLPISimulator, GLPISimulatorThread
from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread
from tests.servers.redmine import RedmineServer

from .harness import BotProcess, replies_to, wait_until

pytestmark = pytest.mark.e2e

GLPI_TOKEN = "glpi-token-for-routing-tests"


class Routes:
    def __init__(self, mm: SimulatorThread, redmine: RedmineServer, tmp: Path) -> None:
        assert mm.simulator is not None
        self.mm_thread, self.redmine = mm, redmine
        self.mm: MattermostSimulator = mm.simulator
        self.glpi_thread = GLPISimulatorThread(user_token=GLPI_TOKEN)
        self.glpi: GLPISimulator = self.glpi_thread.start()
        people = ["alice", "bob", "switchboard"]
        self.mm.create_channel("it-paris", display_name="IT Paris", members=people)
        self.mm.create_channel("dev-support", display_name="Dev support", members=people)
        self.paris = self.glpi_thread.call(lambda: self.glpi.add_entity("Paris"))
        self.infra = self._project("infra")
        settings = {
            "helpdesk": {"poll_interval": 0.5, "retry_initial": 0.3, "retry_max": 1.0,
                         "triggers": [
                             {"keyword": "112", "tracker": "glpi", "channels": ["it-paris"],
                              "fields": {"entities_id": self.paris}},
                             {"keyword": "112", "tracker": "redmine",
                              "channels": ["dev-support"], "fields": {"project_id": "infra"}}]},
            "trackers": {"glpi": {"timeout": 5}, "redmine": {"timeout": 10}}}
        self.bot = BotProcess(self.mm, tmp, settings=settings, env={
            "GLPI_URL": self.glpi.api_url, "GLPI_USER_TOKEN": GLPI_TOKEN,
            "REDMINE_URL": redmine.url, "REDMINE_API_KEY": redmine.admin_key,
            "REDMINE_PROJECT": redmine.project, "REDMINE_SWITCH_USER": "true"}).start()
        self.bot.wait_ready()

    def _project(self, identifier: str) -> int:
        """A second Redmine project, with alice as a member (made once per server)."""
        found = self.redmine.api("GET", f"/projects/{identifier}.json")
        if found.status_code == 200:
            return int(found.json()["project"]["id"])
        made = self.redmine.api("POST", "/projects.json", json_body={"project": {
            "name": "Infrastructure", "identifier": identifier, "is_public": False,
            "tracker_ids": [self.redmine.tracker_id], "enabled_module_names": ["issue_tracking"]}})
        assert made.status_code == 201, made.text
        project_id = int(made.json()["project"]["id"])
        roles = self.redmine.api("GET", "/roles.json").json()["roles"]
        manager = next(r["id"] for r in roles if r["name"] == "Manager")
        member = self.redmine.api("POST", f"/projects/{identifier}/memberships.json", json_body={
            "membership": {"user_id": self.redmine.users["alice"].id, "role_ids": [manager]}})
        assert member.status_code == 201, member.text
        return project_id

    def close(self) -> None:
        try:
            if self.bot.proc is not None and self.bot.proc.poll() is None:
                assert self.bot.stop() == 0, self.bot.log()
        finally:
            self.glpi_thread.stop()

    def say(self, channel: str, text: str, user: str = "alice") -> dict[str, Any]:
        return self.mm_thread.call(  # type: ignore[no-any-return]
            self.mm.post_as(user, channel, text))

    def reply(self, post: dict[str, Any], pattern: str, timeout: float = 20) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((r for r in replies_to(self.mm, post["id"])
                         if re.search(pattern, r["message"])), None)
        return wait_until(found, timeout, f"a reply matching {pattern!r}")  # type: ignore


@pytest.fixture
def routes(mm: SimulatorThread, redmine_server: RedmineServer,
           tmp_path: Path) -> Iterator[Routes]:
    r = Routes(mm, redmine_server, tmp_path)
    yield r
    r.close()


def number(reply: dict[str, Any]) -> str:
    m = re.search(r"#(\d+)", reply["message"])
    assert m, reply["message"]
    return m.group(1)


def test_one_keyword_two_channels_two_trackers(routes: Routes) -> None:
    paris = routes.say("it-paris", "112 printer on floor 3 jammed")
    dev = routes.say("dev-support", "112 build server out of disk")
    elsewhere = routes.say("town-square", "112 this channel files nothing")
    glpi_n = number(routes.reply(paris, r"opened in GLPI"))
    redmine_n = number(routes.reply(dev, r"opened in Redmine"))
    # Each went where its channel sends it, and only there.
    (ticket,) = routes.glpi_thread.call(routes.glpi.tickets)
    assert str(ticket["id"]) == glpi_n and ticket["entities_id"] == routes.paris
    issue = routes.redmine.api("GET", f"/issues/{redmine_n}.json").json()["issue"]
    assert issue["project"]["id"] == routes.infra
    assert issue["subject"] == "build server out of disk"
    assert issue["author"]["name"] == routes.redmine.users["alice"].name
    assert replies_to(routes.mm, elsewhere["id"]) == []
    # `my tickets` asks both trackers and says where each ticket lives.
    mine = routes.mm_thread.call(routes.mm.dm_as("alice", "my tickets"))
    answer = routes.reply(mine, r"Your open tickets")["message"]
    assert re.search(rf"#{glpi_n}\]\([^)]*ticket\.form\.php\?id={glpi_n}\).*in GLPI", answer)
    assert re.search(rf"#{redmine_n}\]\([^)]*/issues/{redmine_n}\).*in Redmine", answer)
    # `status N` too: a number is looked for in both; `status redmine N` in one.
    asked = routes.mm_thread.call(routes.mm.dm_as("alice", f"status {redmine_n}"))
    answer = routes.reply(asked, rf"#{redmine_n}")["message"]
    assert "build server out of disk" in answer and "in Redmine" in answer
    named = routes.mm_thread.call(routes.mm.dm_as("alice", f"status glpi {glpi_n}"))
    answer = routes.reply(named, rf"#{glpi_n}")["message"]
    assert "printer on floor 3 jammed" in answer and "in GLPI" in answer
    assert "in Redmine" not in answer
    # Someone else sees neither.
    other = routes.mm_thread.call(routes.mm.dm_as("bob", f"status {glpi_n}"))
    routes.reply(other, rf"#{glpi_n} was not found")
