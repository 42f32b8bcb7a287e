"""The numbers of the buttons the sandbox console shows: a person presses `[N] name` by typing N.

A number stays with its button for as long as the button is on show, across edits of its post,
and a button an edit brings never takes the number of one the edit took away (so a number typed
twice never presses a button that replaced the first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .terminal import clean


@dataclass(frozen=True)
class Button:
    """A button on show as `[number] name`."""

    number: int
    post_id: str
    action_id: str
    name: str


class ButtonNumbers:
    """The buttons on show, by number, and each post's numbers, by action id."""

    def __init__(self) -> None:
        self.shown: dict[int, Button] = {}
        self._posts: dict[str, dict[str, int]] = {}

    def number(self, post_id: str, buttons: list[tuple[str, str]]) -> dict[str, int]:
        """Numbers for the buttons a post shows now (action id, name), by action id.

        A button that stays across an edit keeps its number; a new one takes the smallest
        number not on show, before the post's vanished buttons give theirs up."""
        known = self._posts.get(post_id, {})
        numbers: dict[str, int] = {}
        for action_id, name in buttons:
            number = known.get(action_id)
            if number is None:
                number = 1
                while number in self.shown:
                    number += 1
            numbers[action_id] = number
            self.shown[number] = Button(number, post_id, action_id, name)
        for action_id, number in known.items():
            if action_id not in numbers:
                self.shown.pop(number, None)
        if numbers:
            self._posts[post_id] = numbers
        else:
            self._posts.pop(post_id, None)
        return numbers

    def retire(self, post_id: str, action_id: str | None = None) -> list[int]:
        """Take a post's buttons (or one of them) off show; their numbers."""
        known = self._posts.get(post_id, {})
        gone = [a for a in known if action_id is None or a == action_id]
        numbers = [known.pop(a) for a in gone]
        for number in numbers:
            self.shown.pop(number, None)
        if not known:
            self._posts.pop(post_id, None)
        return numbers


def label(action: dict[str, Any], numbers: dict[str, int]) -> str:
    """A button as the console shows it: `[N] name` when numbered, else `[name]`."""
    name = clean(str(action.get("name")))
    number = numbers.get(str(action.get("id")))
    return f"[{number}] {name}" if number is not None else f"[{name}]"
