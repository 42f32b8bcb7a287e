"""Who may do what: a list of users, members of channels, members of teams."""

from __future__ import annotations

import time

from .config import StaffSettings
from .mattermost import MattermostAPI, MattermostError


class Membership:
    """Answers "is this user one of these people?", caching each answer for a few minutes."""

    def __init__(self, api: MattermostAPI, who: StaffSettings, ttl: float = 300.0) -> None:
        self.api = api
        self.who = who
        self.ttl = ttl
        self._cache: dict[str, tuple[float, bool]] = {}

    @property
    def anyone(self) -> bool:
        """Nobody named: every user qualifies."""
        return not (self.who.users or self.who.channels or self.who.teams)

    async def includes(self, user_id: str) -> bool:
        hit = self._cache.get(user_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        answer = await self._check(user_id)
        self._cache[user_id] = (time.monotonic(), answer)
        return answer

    async def _check(self, user_id: str) -> bool:
        who, api = self.who, self.api
        try:
            user = await api.user(user_id)
        except MattermostError:
            return False
        names = {u.lstrip("@") for u in who.users}
        if user_id in who.users or user.get("username") in names:
            return True
        if who.channels:
            for ch in await api.my_channels():
                if (ch["id"] in who.channels or ch.get("name") in who.channels) and \
                        await api.is_member(ch["id"], user_id):
                    return True
        if who.teams:
            for team in await api.teams():
                if (team["id"] in who.teams or team.get("name") in who.teams) and \
                        await api.is_team_member(team["id"], user_id):
                    return True
        return False
