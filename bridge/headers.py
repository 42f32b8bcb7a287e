"""HTTP header fields, read in any case, as the embedded listener and the Mattermost client
receive them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Headers"]


class Headers(Mapping[str, str]):
    """Header fields as received (a request's or an answer's): looked up in any case; iterated
    (and copied with `dict()`) under the name as the sender wrote it. A repeated field reads as
    its first value; `get_all` has every one."""

    __slots__ = ("_first", "_items")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        first: dict[str, tuple[str, str]] = {}
        for name, value in items:
            first.setdefault(name.lower(), (name, value))
        self._first = first

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()][1]

    def get(self, name: str, default: Any = None) -> Any:  # the fast path of Mapping.get
        found = self._first.get(name.lower())
        return default if found is None else found[1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._first.values())

    def __len__(self) -> int:
        return len(self._first)

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self._items if key.lower() == wanted]

    def __repr__(self) -> str:  # names only: values carry credentials
        return f"<Headers {sorted(self)}>"
