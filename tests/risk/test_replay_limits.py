"""Replays in which a deliberately bad strategy tries to break each limit.

A small synthetic session (normalized NDJSON) is replayed through the real path; the strategy the
config names is swapped, on the built engine, for one that asks for huge, ratcheting or flip-flopping
targets (or sends raw intents). Every order reaching the broker is checked as it is sent; the report
(daemon.report.build_report) must count the refused intents by reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.config import settings_from_dict
from daemon.events import Fill, Order, OrderIntent, OrderType, Side, TargetPosition
from daemon.features import FeatureSample
from daemon.replay import Replay
from daemon.report import build_report
from daemon.risk.state import HaltStore, TradingState, TradingStateMachine
from tests.conftest import snapshot, trade, write_ndjson

MS = 1_000_000
SEC = 1_000 * MS
T0 = 1_700_000_000 * SEC
SYM = "X"


def session(seconds: int = 20, spread: float = 0.01, level_qty: float = 1.0, trades: str = "both",
            crossed: tuple[float, float] | None = None) -> list[dict]:
    """A snapshot every 100 ms (5 levels a side, 100.00 / 100.00 + spread) and a trade every 300 ms.

    `trades`: "both" alternates the aggressor side, "buy" only lifts the asks, "none" prints nothing.
    `crossed`: between these seconds the snapshots are crossed (the book is INVALID).
    """
    lines: list[dict] = []
    bid = 100.00
    ask = round(bid + spread, 2)
    for i in range(seconds * 10):
        ts = T0 + i * 100 * MS + 10 * MS
        bad = crossed is not None and crossed[0] * SEC <= ts - T0 < crossed[1] * SEC
        top_ask = bid - 0.01 if bad else ask
        lines.append(snapshot(ts, [[round(bid - k * 0.01, 2), level_qty] for k in range(5)],
                              [[round(top_ask + k * 0.01, 2), level_qty] for k in range(5)]))
        if trades != "none" and i % 3 == 1 and not bad:
            side = "buy" if trades == "buy" or i % 6 == 1 else "sell"
            lines.append(trade(ts + 50 * MS, ask if side == "buy" else bid, 0.3, side))
    return lines


def config(halt_file: Path | None = None, **sections: dict[str, Any]) -> Any:
    raw: dict[str, Any] = {
        "daemon": {"log_level": "error"},
        "instruments": {SYM: {"tick_size": 0.01, "lot_size": 0.001}},
        "replay": {"symbol": SYM},
        "risk": {"max_position": 1.0, "max_order_qty": 0.5, "max_notional": 1e6, "max_order_notional": 1e6,
                 "max_open_orders": 10, "max_orders_per_second": 5, "max_orders_per_minute": 120,
                 "price_band_bps": 100.0, "min_order_qty": 0.0, "feed_stale_ms": 5_000},
        "paper": {"latency_us": 1_000},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    if halt_file is not None:
        raw["risk"]["halt_file"] = str(halt_file)
    return settings_from_dict(raw)


class Bad:
    """A strategy object with a target rule: f(sample ts, position lots, samples so far) -> target lots."""

    def __init__(self, rule: Callable[[int, int, int], int | None], position: Callable[[str], int]) -> None:
        self.rule = rule
        self.position = position
        self.samples = 0
        self.fills: list[Fill] = []

    def on_sample(self, sample: FeatureSample) -> TargetPosition | None:
        self.samples += 1
        target = self.rule(sample.ts, self.position(sample.symbol), self.samples)
        return None if target is None else TargetPosition(sample.symbol, sample.ts, target, 1.0, "bad")

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)
        self.max_position = max(getattr(self, "max_position", 0), abs(self.position(fill.symbol)))


class Guard:
    """Checks every order as the engine hands it to the broker, and keeps them for the rate checks."""

    def __init__(self, rp: Replay, max_lots: int, max_open: int | None = None,
                 max_notional: float | None = None) -> None:
        self.rp = rp
        self.path = rp.path
        self.max_lots = max_lots
        self.max_open = max_open
        self.max_notional = max_notional
        self.sent: list[tuple[int, Order, TradingState]] = []
        broker = rp.path.broker
        self._submit = broker.submit
        broker.submit = self.submit  # type: ignore[method-assign]

    def submit(self, order: Order) -> None:
        path = self.path
        pos = path.portfolio.position(SYM)
        open_orders = path.broker.open_orders(SYM)
        buys = sum(o.leaves_qty for o in open_orders if o.order.side is Side.BUY)
        sells = sum(o.leaves_qty for o in open_orders if o.order.side is Side.SELL)
        long_worst = pos + buys + (order.qty if order.side is Side.BUY else 0)
        short_worst = pos - sells - (order.qty if order.side is Side.SELL else 0)
        assert long_worst <= self.max_lots and short_worst >= -self.max_lots, (order, pos, buys, sells)
        if self.max_open is not None:
            assert len(open_orders) < self.max_open, (order, len(open_orders))
        if self.max_notional is not None:
            px = path.instruments[SYM].price(order.limit_px or path.engine.books[SYM].best_ask_px)
            assert max(long_worst, -short_worst) * 0.001 * px <= self.max_notional + 1e-9, order
        self.sent.append((self.rp.clock.now(), order, path.state.state))
        self._submit(order)

    def orders_within(self, span: int) -> int:
        """The most orders sent in any half-open window of `span` ns."""
        times = [t for t, _, _ in self.sent]
        best, j = 0, 0
        for i, t in enumerate(times):
            while times[j] <= t - span:
                j += 1
            best = max(best, i - j + 1)
        return best


def run(tmp_path: Path, settings: Any, rule: Callable[[int, int, int], int | None],
        lines: list[dict] | None = None, **guard: Any) -> tuple[Replay, Guard, Bad, dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_ndjson(tmp_path / f"{SYM}.ndjson", lines if lines is not None else session())
    rp = Replay(settings, [str(data)])
    bad = Bad(rule, rp.path.portfolio.position)
    rp.path.engine.strategy = bad  # type: ignore[assignment]
    g = Guard(rp, **{"max_lots": 1000, **guard})
    result = rp.run()
    report = build_report(result)
    orjson.loads(orjson.dumps(report))  # report.json can be written
    assert report["intents"] == report["orders"] + sum(rp.path.risk.rejects.values())
    assert report["orders"] == len(g.sent), "every order the engine counted went through the guard"
    for reason, n in rp.path.risk.rejects.items():
        assert report["rejects"][reason] == n
    return rp, g, bad, report


# --- size and position ---------------------------------------------------------------------------------


def test_a_ratcheting_target_stops_at_max_position(tmp_path: Path) -> None:
    # every sample: hold 0.5 more than now (an order of max_order_qty each time)
    rp, _g, bad, report = run(tmp_path, config(), lambda ts, pos, n: pos + 500)

    assert rp.path.portfolio.position(SYM) == 1000
    assert bad.max_position == 1000
    assert report["rejects"]["max_position"] > 100
    assert report["orders"] == 2


def test_a_huge_target_is_refused_by_max_order_qty(tmp_path: Path) -> None:
    rp, g, _, report = run(tmp_path, config(), lambda ts, pos, n: 50_000)

    assert g.sent == [] and rp.path.portfolio.position(SYM) == 0
    assert report["rejects"] == {"max_order_qty": report["intents"]} and report["intents"] > 100


def test_a_flip_flopping_target_never_goes_past_either_limit(tmp_path: Path) -> None:
    settings = config(risk={"max_order_qty": 1.0})
    targets = [1000, -1000, 500, -500, 0]
    _rp, _g, bad, report = run(tmp_path, settings, lambda ts, pos, n: targets[n % len(targets)])

    assert bad.max_position == 1000
    assert len(bad.fills) > 10
    assert report["rejects"]["max_order_qty"] > 10, "a full flip is 2.0: twice max_order_qty"


def test_worst_case_notional_is_held_with_a_per_symbol_limit(tmp_path: Path) -> None:
    settings = config(risk={"symbols": {SYM: {"max_notional": 60.0}}})
    rp, _g, _, report = run(tmp_path, settings, lambda ts, pos, n: pos + 100, max_notional=60.0)

    assert rp.path.portfolio.position(SYM) == 500, "0.6 at 100.01 is 60.006"
    assert report["rejects"]["max_notional"] > 100


def test_an_order_under_min_order_qty_is_refused(tmp_path: Path) -> None:
    _rp, g, _, report = run(tmp_path, config(risk={"min_order_qty": 0.01}), lambda ts, pos, n: pos + 5)

    assert g.sent == []
    assert report["rejects"] == {"min_order_qty": report["intents"]}


# --- order rate ------------------------------------------------------------------------------------------


def test_a_strategy_that_flips_every_sample_is_held_to_the_order_rate(tmp_path: Path) -> None:
    # 10 orders a second asked for; 3 a second and 40 a minute allowed
    settings = config(risk={"max_order_qty": 1.0, "max_orders_per_second": 3, "max_orders_per_minute": 40})
    _rp, g, _, report = run(tmp_path, settings, lambda ts, pos, n: 500 if n % 2 else -500,
                           lines=session(seconds=70))

    assert g.orders_within(SEC) == 3
    assert g.orders_within(60 * SEC) == 40
    assert report["rejects"]["order_rate"] > 100
    assert report["orders"] > 40


# --- open orders, band, depth, self-trade -------------------------------------------------------------------


def test_resting_orders_stop_at_max_open_orders(tmp_path: Path) -> None:
    # limit orders join the bid; nobody sells into them, so each new step of the target adds one
    settings = config(execution={"order_type": "limit"}, risk={"max_open_orders": 3})
    rp, _g, _, report = run(tmp_path, settings, lambda ts, pos, n: min(10 * n, 400), lines=session(trades="buy"),
                           max_open=3)

    assert len(rp.path.broker.open_orders(SYM)) == 3
    assert report["rejects"] == {"max_open_orders": report["intents"] - 3}


def test_resting_orders_count_toward_the_position_limit(tmp_path: Path) -> None:
    # the target jumps by max_order_qty per sample; resting buys never fill: two of them reach max_position
    settings = config(execution={"order_type": "limit"}, risk={"max_open_orders": 10})
    rp, _g, _, report = run(tmp_path, settings, lambda ts, pos, n: 500 * n, lines=session(trades="buy"))

    assert sum(o.leaves_qty for o in rp.path.broker.open_orders(SYM)) <= 1000
    assert report["rejects"]["max_order_qty"] > 0 or report["rejects"]["max_position"] > 0


def test_limit_orders_outside_the_price_band_are_refused(tmp_path: Path) -> None:
    # a 2.00 spread around 100.00: joining the touch is 100 bps from mid, the band is 50
    settings = config(execution={"order_type": "limit"}, risk={"price_band_bps": 50.0})
    lines = session(spread=2.0)
    _rp, g, _, report = run(tmp_path, settings, lambda ts, pos, n: 500 if n % 20 < 10 else -500, lines=lines)

    assert g.sent == []
    assert report["rejects"] == {"price_band": report["intents"]}


def test_market_orders_into_a_thin_book_are_refused(tmp_path: Path) -> None:
    # 0.05 a level; within 3 bps of mid (100.005) lie only 100.01 and 100.02 asks: 0.1
    settings = config(risk={"price_band_bps": 3.0})
    _rp, g, _, report = run(tmp_path, settings, lambda ts, pos, n: 300, lines=session(level_qty=0.05))

    assert g.sent == [] and report["rejects"] == {"book_too_thin": report["intents"]}


def test_an_order_crossing_our_own_resting_order_is_refused(tmp_path: Path) -> None:
    settings = config(execution={"order_type": "limit"})
    data = write_ndjson(tmp_path / f"{SYM}.ndjson", session(trades="none"))
    rp = Replay(settings, [str(data)])
    eng = rp.path.engine
    sent: list[Order | None] = []

    class SelfTrader(Bad):
        def on_sample(self, sample: FeatureSample) -> None:
            self.samples += 1
            if self.samples == 5:  # a sell resting at the ask
                sent.append(eng.submit(OrderIntent(SYM, sample.ts, Side.SELL, 100, OrderType.LIMIT, 10_001)))
            elif self.samples > 5 and self.samples % 10 == 0:  # then buys lifting that ask
                sent.append(eng.submit(OrderIntent(SYM, sample.ts, Side.BUY, 100, OrderType.LIMIT, 10_001)))
                sent.append(eng.submit(OrderIntent(SYM, sample.ts, Side.BUY, 100, OrderType.MARKET)))

    eng.strategy = SelfTrader(lambda *a: None, rp.path.portfolio.position)  # type: ignore[assignment]
    report = build_report(rp.run())

    assert sent[0] is not None and all(o is None for o in sent[1:]) and len(sent) > 10
    assert report["rejects"] == {"self_trade": len(sent) - 1}
    assert report["fills_total"] == 0


# --- trading states ------------------------------------------------------------------------------------------


def test_a_losing_flip_flop_hits_the_daily_loss_halt_which_flattens_and_survives_a_restart(tmp_path: Path) -> None:
    halt = tmp_path / "state" / "halt.json"
    settings = config(halt, risk={"max_order_qty": 1.0, "flatten_on_halt": True,
                                  "triggers": {"daily_loss": {"threshold": 0.05, "state": "HALTED"}}},
                      paper={"latency_us": 1_000, "taker_fee_bps": 1.0})
    rp, g, _, report = run(tmp_path, settings, lambda ts, pos, n: 500 if n % 2 else -500)

    risk = report["risk"]
    assert risk["state"] == "HALTED"
    assert [t["by"] for t in risk["transitions"]] == ["trigger:daily_loss"]
    assert risk["flatten_orders"] == 1
    halted_at = risk["transitions"][0]["ts"]
    after = [(o, state) for t, o, state in g.sent if t >= halted_at]
    assert [o.tag for o, _ in after] == ["flatten"], "nothing but the flatten order after the halt"
    assert rp.path.portfolio.position(SYM) == 0, "flattened"
    assert report["rejects"]["halted"] > 50

    # the halt is on disk: the next run starts HALTED and sends nothing until an operator resumes
    assert TradingStateMachine(rp.clock, HaltStore(halt)).state is TradingState.HALTED
    _rp2, g2, _, report2 = run(tmp_path / "again", settings, lambda ts, pos, n: 500 if n % 2 else -500,
                              lines=session())
    assert g2.sent == [] and report2["orders"] == 0
    assert report2["rejects"] == {"halted": report2["intents"]}
    assert report2["risk"]["transitions"][0]["by"] == "startup"


def test_an_invalid_book_halts_by_trigger(tmp_path: Path) -> None:
    settings = config(risk={"evaluate_ms": 100,
                            "triggers": {"book_invalid_ms": {"threshold": 300, "state": "HALTED"}}})
    lines = session(crossed=(5, 7))  # the first crossed snapshot comes at 5.01 s
    rp, g, _, report = run(tmp_path, settings, lambda ts, pos, n: 300 if n % 20 < 10 else -300, lines=lines)

    risk = report["risk"]
    assert [t["by"] for t in risk["transitions"]] == ["trigger:book_invalid_ms"]
    assert risk["transitions"][0]["ts"] == T0 + 5_400 * MS, "the first evaluation more than 300 ms later"
    halted_at = risk["transitions"][0]["ts"]
    assert g.sent and all(t < halted_at for t, _, _ in g.sent), "nothing after the halt, though the book heals"
    assert report["rejects"]["halted"] > 50
    assert rp.path.engine.counts["targets_not_live"] > 0 and "book_not_live" not in report["rejects"], \
        "no intent at all from a book that is not LIVE"


def test_a_halt_cancels_the_resting_orders(tmp_path: Path) -> None:
    # resting buys that nobody sells into; the model fails 3 s in, and its trigger halts
    settings = config(execution={"order_type": "limit"},
                      risk={"triggers": {"model": {"threshold": 0, "state": "HALTED"}}})
    data = write_ndjson(tmp_path / f"{SYM}.ndjson", session(seconds=6, trades="buy"))
    rp = Replay(settings, [str(data)])

    def rule(ts: int, pos: int, n: int) -> int:
        if n == 30:
            rp.path.risk.model_problem = "scores failing"
        return min(10 * n, 400)

    rp.path.engine.strategy = Bad(rule, rp.path.portfolio.position)  # type: ignore[assignment]
    g = Guard(rp, max_lots=1000)
    report = build_report(rp.run())

    risk = report["risk"]
    assert [t["by"] for t in risk["transitions"]] == ["trigger:model"]
    assert risk["halt_cancels"] == len(g.sent) >= 3
    assert rp.path.broker.open_orders() == [] and report["fills_total"] == 0


def test_a_reducing_trigger_lets_only_reductions_through(tmp_path: Path) -> None:
    settings = config(risk={"triggers": {"model": {"threshold": 0, "state": "REDUCING", "clear_after_ms": 60_000}}})
    data = write_ndjson(tmp_path / f"{SYM}.ndjson", session(seconds=12))
    rp = Replay(settings, [str(data)])
    risk = rp.path.risk

    def rule(ts: int, pos: int, n: int) -> int:
        if n == 40:
            risk.model_problem = "scores failing"  # the model breaks 4 s in
        if n < 40:
            return 500
        return 1000 if n < 80 else 0  # asks for more, then gives up

    bad = Bad(rule, rp.path.portfolio.position)
    rp.path.engine.strategy = bad  # type: ignore[assignment]
    g = Guard(rp, max_lots=1000)
    report = build_report(rp.run())

    transitions = report["risk"]["transitions"]
    assert [(t["new"], t["by"]) for t in transitions] == [("REDUCING", "trigger:model")]
    reducing_from = transitions[0]["ts"]
    after = [o for t, o, _ in g.sent if t >= reducing_from]
    assert [(o.side, o.qty) for o in after] == [(Side.SELL, 500)], "only the cut to flat"
    assert report["rejects"]["reducing_only"] > 30
    assert rp.path.portfolio.position(SYM) == 0


@pytest.mark.parametrize("order_type", ["market", "limit"])
def test_rejects_by_reason_in_the_report_match_the_gate(tmp_path: Path, order_type: str) -> None:
    settings = config(execution={"order_type": order_type},
                      risk={"max_orders_per_second": 2, "max_open_orders": 2, "min_order_qty": 0.002})
    targets = [0, 1, 2000, 600, -600, 300, -1, 50_000]
    rp, _g, _, report = run(tmp_path, settings, lambda ts, pos, n: targets[n % len(targets)])

    from_gate = dict(sorted(rp.path.risk.rejects.items()))
    assert {k: v for k, v in report["rejects"].items() if not k.startswith("broker:")} == from_gate
    assert len(from_gate) >= 2
