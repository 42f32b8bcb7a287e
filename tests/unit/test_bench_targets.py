"""`make bench`'s judging of figures against their targets (no figure is measured here)."""

from __future__ import annotations

from bench.targets import Scorecard, shown


def test_a_figure_past_its_target_is_marked_miss_and_fails_the_run() -> None:
    card = Scorecard()
    ratio = card.judge("helpdesk ratio", 1.31, "<=", 1.3, decimals=2)
    assert (ratio.shown, ratio.mark) == ("1.31", "[target <= 1.3: MISS]")
    assert not ratio.met
    rate = card.judge("throughput", 6123.4, ">=", 5000, unit="/s")
    assert (rate.shown, rate.mark) == ("6,123", "[target >= 5,000/s: ok]")
    assert card.missed == [ratio]
    assert card.summary() == ("summary: MISS: 1 of 2 figures missed their targets: helpdesk "
                              "ratio 1.31 (target <= 1.3)")
    assert card.exit_status() == 1


def test_every_figure_on_target_passes_the_run() -> None:
    card = Scorecard()
    card.judge("latency median", 4.2, "<", 20, decimals=1, unit=" ms")
    card.judge("clicks p99", 99.9, "<", 100, decimals=1, unit=" ms")
    card.judge("helpdesk ratio", 1.3, "<=", 1.3, decimals=2)
    assert [j.mark for j in card.judged] == ["[target < 20 ms: ok]", "[target < 100 ms: ok]",
                                             "[target <= 1.3: ok]"]
    assert card.summary() == "summary: all 3 figures met their targets"
    assert card.exit_status() == 0


def test_the_bound_itself_meets_only_an_inclusive_target() -> None:
    card = Scorecard()
    assert card.judge("a", 20.0, "<", 20, decimals=1).mark == "[target < 20: MISS]"
    assert card.judge("b", 5000, ">", 5000).mark == "[target > 5,000: MISS]"
    assert card.judge("c", 5000, ">=", 5000).mark == "[target >= 5,000: ok]"
    assert card.exit_status() == 1


def test_rounding_never_hides_a_miss_or_invents_one() -> None:
    # Shown with the decimals asked for, the value would seem to agree with the target.
    assert shown(1.3004, "<=", 1.3, 2) == "1.3004"
    assert shown(4999.6, ">=", 5000, 0) == "4,999.6"
    assert shown(19.96, "<", 20, 1) == "19.96"
    # Otherwise the decimals asked for.
    assert shown(1.2996, "<=", 1.3, 2) == "1.30"
    assert shown(1.31, "<=", 1.3, 2) == "1.31"
    assert shown(12345.678, ">=", 5000, 0) == "12,346"
