"""Automatic triggers: each fires on its condition and leads to its configured state; hysteresis
(fired until clear for clear_after_ms); severity ordering; disabled or threshold None = off."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.config import TriggersSettings
from daemon.risk.state import TradingState
from daemon.risk.triggers import CONDITIONS, RiskFacts, TriggerSet

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
A, R, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED

# name -> (threshold, facts that meet the condition, facts just short of it, text the detail shows)
CASES: dict[str, tuple[float, RiskFacts, RiskFacts, str]] = {
    "daily_loss": (500.0, RiskFacts(daily_pnl=-500.01), RiskFacts(daily_pnl=-500.0), "daily loss 500.01 > 500"),
    "drawdown": (300.0, RiskFacts(drawdown=300.5), RiskFacts(drawdown=300.0), "drawdown from peak equity 300.5"),
    "fill_breach": (0.0, RiskFacts(fill_breach="X: position 1.2 after a fill exceeds max_position 1"), RiskFacts(),
                    "after a fill exceeds"),
    "reject_rate": (0.5, RiskFacts(reject_rate=0.6), RiskFacts(reject_rate=0.5), "broker reject rate 0.6 > 0.5"),
    "broker_errors": (3, RiskFacts(broker_errors=3), RiskFacts(broker_errors=2), "3 consecutive broker errors"),
    "feed_stale_ms": (1000, RiskFacts(feed_stale_ms=1000.5, worst={"feed": "X"}), RiskFacts(feed_stale_ms=1000.0),
                      "feed X silent for 1000.5 ms > 1000 ms"),
    "book_invalid_ms": (200, RiskFacts(book_invalid_ms=250.0, worst={"book": "Y"}), RiskFacts(book_invalid_ms=200.0),
                        "book Y not LIVE for 250 ms > 200 ms"),
    "model": (0.0, RiskFacts(model_problem="scores failing: onnxruntime error"), RiskFacts(), "scores failing"),
    "clock_skew_ms": (50, RiskFacts(clock_skew_ms=75.0, worst={"skew": "X"}), RiskFacts(clock_skew_ms=50.0),
                      "clock skew X 75 ms > 50 ms"),
    "broker_disconnected": (0.0, RiskFacts(broker_connected=False), RiskFacts(broker_connected=True),
                            "broker disconnected"),
    "feed_down": (0.0, RiskFacts(feed_problem="binance: feed disconnected"), RiskFacts(), "feed disconnected"),
}


def settings(**triggers: dict[str, Any]) -> TriggersSettings:
    """Every trigger off except those given (a dict of its keys)."""
    raw: dict[str, Any] = {name: {"enabled": False} for name in CONDITIONS}
    raw.update(triggers)
    return TriggersSettings.model_validate(raw)


def only(name: str, state: str = "REDUCING", clear_after_ms: int = 0, threshold: float | None = None) -> TriggerSet:
    th = CASES[name][0] if threshold is None else threshold
    return TriggerSet(settings(**{name: {"threshold": th, "state": state, "clear_after_ms": clear_after_ms}}))


def test_every_condition_has_a_case() -> None:
    assert set(CASES) == set(CONDITIONS)


@pytest.mark.parametrize("state", ["REDUCING", "HALTED"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_trigger_fires_on_its_condition_and_leads_to_its_configured_state(name: str, state: str) -> None:
    _, meets, _, text = CASES[name]
    ts = only(name, state)

    wanted, reason, by = ts.evaluate(meets, T0)

    assert wanted is TradingState(state)
    assert by == f"trigger:{name}"
    assert text in reason
    assert ts.fire_counts == {name: 1}
    assert ts.status()[name] == {"state": state, "detail": reason, "since": T0}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_trigger_stays_quiet_just_short_of_its_threshold(name: str) -> None:
    _, _, short, _ = CASES[name]
    ts = only(name, "HALTED")

    assert ts.evaluate(short, T0) == (A, "every trigger has cleared", "trigger:clear")
    assert not ts.fired and not ts.fire_counts


def test_broker_errors_with_a_zero_threshold_needs_at_least_one_error() -> None:
    ts = only("broker_errors", "HALTED", threshold=0)

    assert ts.evaluate(RiskFacts(broker_errors=0), T0)[0] is A
    assert ts.evaluate(RiskFacts(broker_errors=1), T0 + MS)[0] is H


def test_unknown_daily_pnl_is_not_a_loss() -> None:
    ts = only("daily_loss", "HALTED")

    assert ts.evaluate(RiskFacts(daily_pnl=None), T0)[0] is A


def test_too_few_orders_for_a_reject_rate_is_not_a_high_rate() -> None:
    ts = only("reject_rate", "HALTED")

    assert ts.evaluate(RiskFacts(reject_rate=None), T0)[0] is A


# --- hysteresis ------------------------------------------------------------------------------------


def test_a_fired_trigger_stays_until_clear_for_clear_after_ms() -> None:
    ts = only("feed_stale_ms", "REDUCING", clear_after_ms=500)
    stale, fresh = CASES["feed_stale_ms"][1], RiskFacts()

    assert ts.evaluate(stale, T0)[0] is R
    assert ts.evaluate(fresh, T0 + 100 * MS)[0] is R
    assert ts.evaluate(fresh, T0 + 499 * MS)[0] is R
    assert ts.evaluate(fresh, T0 + 500 * MS) == (A, "every trigger has cleared", "trigger:clear")
    assert ts.fire_counts == {"feed_stale_ms": 1}


def test_the_clear_period_restarts_whenever_the_condition_holds_again() -> None:
    ts = only("feed_stale_ms", "REDUCING", clear_after_ms=500)
    stale, fresh = CASES["feed_stale_ms"][1], RiskFacts()

    ts.evaluate(stale, T0)
    ts.evaluate(fresh, T0 + 400 * MS)
    ts.evaluate(stale, T0 + 450 * MS)  # flaps back
    held = ts.evaluate(fresh, T0 + 900 * MS)[0]
    cleared = ts.evaluate(fresh, T0 + 950 * MS)[0]

    assert held is R, "450 ms since it last held"
    assert cleared is A
    assert ts.fire_counts == {"feed_stale_ms": 1}, "a flap inside the clear period is not a new firing"
    assert ts.evaluate(stale, T0 + 2_000 * MS)[0] is R
    assert ts.fire_counts == {"feed_stale_ms": 2}


def test_clear_after_zero_clears_on_the_first_clear_evaluation() -> None:
    ts = only("model", "REDUCING", clear_after_ms=0)

    ts.evaluate(CASES["model"][1], T0)

    assert ts.evaluate(RiskFacts(), T0)[0] is A


def test_the_detail_follows_the_latest_facts_while_fired() -> None:
    ts = only("drawdown", "HALTED", clear_after_ms=1000)

    ts.evaluate(RiskFacts(drawdown=301.0), T0)
    _, reason, _ = ts.evaluate(RiskFacts(drawdown=450.0), T0 + MS)

    assert "450" in reason and ts.status()["drawdown"]["since"] == T0


def test_release_forgets_only_the_triggers_whose_condition_is_gone() -> None:
    ts = TriggerSet(settings(model={"threshold": 0, "state": "REDUCING", "clear_after_ms": 60_000},
                             broker_disconnected={"threshold": 0, "state": "HALTED", "clear_after_ms": 60_000}))
    ts.evaluate(RiskFacts(model_problem="drift", broker_connected=False), T0)

    released = ts.release(RiskFacts(model_problem="drift", broker_connected=True))

    assert released == ["broker_disconnected"]
    assert list(ts.fired) == ["model"]


# --- severity --------------------------------------------------------------------------------------


def test_the_most_severe_fired_trigger_wins_whatever_the_order() -> None:
    ts = TriggerSet(settings(feed_stale_ms={"threshold": 1000, "state": "REDUCING", "clear_after_ms": 0},
                             broker_disconnected={"threshold": 0, "state": "HALTED", "clear_after_ms": 0},
                             model={"threshold": 0, "state": "REDUCING", "clear_after_ms": 0}))

    first = ts.evaluate(RiskFacts(feed_stale_ms=2000, worst={"feed": "X"}), T0)
    both = ts.evaluate(RiskFacts(feed_stale_ms=2000, broker_connected=False, model_problem="drift"), T0 + MS)
    halt_gone = ts.evaluate(RiskFacts(feed_stale_ms=2000, model_problem="drift"), T0 + 2 * MS)

    assert first[0] is R and first[2] == "trigger:feed_stale_ms"
    assert both[0] is H and both[2] == "trigger:broker_disconnected"
    assert halt_gone[0] is R and halt_gone[2] == "trigger:feed_stale_ms", "among equals the earliest speaks"


# --- on and off ----------------------------------------------------------------------------------


def test_a_disabled_trigger_or_one_without_threshold_is_off() -> None:
    ts = TriggerSet(settings(daily_loss={"enabled": False, "threshold": 1.0},
                             drawdown={"threshold": None},
                             broker_disconnected={"enabled": True, "threshold": 0}))

    wanted = ts.evaluate(RiskFacts(daily_pnl=-1e9, drawdown=1e9, broker_connected=True), T0)

    assert ts.names == ["broker_disconnected"]
    assert wanted[0] is A and not ts.fire_counts


def test_the_defaults() -> None:
    ts = TriggerSet(TriggersSettings())

    assert ts.names == ["fill_breach", "reject_rate", "broker_errors", "feed_stale_ms", "book_invalid_ms", "model",
                        "broker_disconnected", "feed_down"]
    d = TriggersSettings()
    assert (d.daily_loss.state, d.fill_breach.state, d.broker_errors.state, d.broker_disconnected.state) == (
        "HALTED", "HALTED", "HALTED", "HALTED")
    assert (d.feed_stale_ms.state, d.book_invalid_ms.state, d.model.state, d.reject_rate.state,
            d.feed_down.state) == ("REDUCING", "REDUCING", "REDUCING", "REDUCING", "REDUCING")
