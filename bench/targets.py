"""Figures against their targets: each judged figure is printed with its target and marked `ok`
or `MISS`, and the run ends with a summary line and exit status 1 when any figure missed."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

#: "within": a range, from `bound` to `upper` (`Scorecard.expect`).
Op = Literal[">=", ">", "<=", "<", "within"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
#: Decimals added, at most, so that the value printed agrees with the verdict.
_MORE_DECIMALS = 6


@dataclass(frozen=True)
class Judged:
    """One figure against its target."""

    name: str
    value: float
    op: Op
    bound: float
    #: The value as printed: with enough decimals to agree with the verdict.
    shown: str
    unit: str = ""
    #: The high end of an expected range (op "within"), inclusive.
    upper: float | None = None

    @property
    def met(self) -> bool:
        return _met(self.value, self.op, self.bound, self.upper)

    @property
    def target(self) -> str:
        if self.op == "within":
            return f"expected {self.bound:,g}–{self.upper:,g}{self.unit}"
        return f"target {self.op} {self.bound:,g}{self.unit}"

    @property
    def mark(self) -> str:
        """`[target <= 1.3: ok]`, or `[target <= 1.3: MISS]`."""
        return f"[{self.target}: {'ok' if self.met else 'MISS'}]"

    def __str__(self) -> str:
        return f"{self.name} {self.shown}{self.unit} ({self.target})"


def _met(value: float, op: Op, bound: float, upper: float | None = None) -> bool:
    if op == "within":
        return bound <= value <= (upper if upper is not None else bound)
    return _OPS[op](value, bound)


def shown(value: float, op: Op, bound: float, decimals: int, upper: float | None = None) -> str:
    """`value` with `decimals` decimals, or more when rounding would make it look as if it met
    a target it misses (or missed one it meets): 1.3004 against `<= 1.3` is `1.3004`."""
    met = _met(value, op, bound, upper)
    for places in range(decimals, decimals + _MORE_DECIMALS + 1):
        text = f"{value:,.{places}f}"
        if _met(float(text.replace(",", "")), op, bound, upper) == met:
            return text
    return f"{value:,}"


class Scorecard:
    """Judges every figure that has a target, and sums them up at the end."""

    def __init__(self) -> None:
        self.judged: list[Judged] = []

    def judge(self, name: str, value: float, op: Op, bound: float, *, decimals: int = 0,
              unit: str = "") -> Judged:
        """Judge `value` against `op bound`; the result prints the value (`.shown`) and its
        mark (`.mark`) for the figure's line."""
        judged = Judged(name, value, op, bound, shown(value, op, bound, decimals), unit)
        self.judged.append(judged)
        return judged

    def expect(self, name: str, value: float, low: float, high: float, *, decimals: int = 0,
               unit: str = "") -> Judged:
        """Judge `value` against the range `low`–`high` (both included), printed as an
        expectation: `[expected 2.04–3.335: ok]`."""
        judged = Judged(name, value, "within", low,
                        shown(value, "within", low, decimals, high), unit, high)
        self.judged.append(judged)
        return judged

    @property
    def missed(self) -> list[Judged]:
        return [j for j in self.judged if not j.met]

    def summary(self) -> str:
        """The closing line: how many figures met their targets, and each one that missed."""
        total = f"{len(self.judged)} figure" + ("s" if len(self.judged) != 1 else "")
        if not self.missed:
            return f"summary: all {total} met their targets"
        return (f"summary: MISS: {len(self.missed)} of {total} missed their targets: "
                + "; ".join(str(j) for j in self.missed))

    def exit_status(self) -> int:
        """1 when any figure missed its target, else 0."""
        return 1 if self.missed else 0
