"""Pre-trade check benchmark: per-call latency of `RiskGate.check` and of the engine's whole `submit`.

`RiskGate.check` is timed on an intent that passes, so every check runs (trading state, book, feed,
model, size, price, order notional, open orders, price band / depth, self-trade, worst-case position
and notional, both order-rate windows), against a realistic RiskView: a position, working orders on
both sides, our own resting bid and ask, a LIVE book with depth. The clock moves 1 ms per call, so
the rate windows hold and trim a steady ~1,000 / ~60,000 sent times, as a busy gate would.

`Engine.submit` adds what the engine does around it: `risk_view` (the open orders, the book's mid
and depth within the band), the Order, the risk monitor's bookkeeping and the broker call, once with
a broker that only records (the engine's own cost) and once with the PaperBroker (which schedules
the order's arrival; the clock is advanced between calls, untimed, so orders arrive and fill).

Per-call times come from perf_counter_ns around each call, less the timer's own cost (an empty call
timed the same way). Target: median < 5 µs for one full pre-trade check.

    .venv/bin/python bench/bench_risk.py --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.app import build_path  # noqa: E402
from daemon.brokers.base import OpenOrder  # noqa: E402
from daemon.brokers.lifecycle import OrderState  # noqa: E402
from daemon.clock import ReplayClock  # noqa: E402
from daemon.config import settings_from_dict  # noqa: E402
from daemon.events import BookSnapshot, Order, OrderIntent, OrderType, Side  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402
from daemon.risk import RiskGate, RiskView  # noqa: E402

TARGET_MEDIAN_US = 5.0
MS = 1_000_000
T0 = 1_700_000_000_000 * MS
SYM = "BTCUSDT"
CONFIG = {
    "daemon": {"log_level": "error"},
    "instruments": {SYM: {"tick_size": 0.01, "lot_size": 0.00001}},
    "risk": {"max_position": 2.0, "max_notional": 500_000.0, "max_order_qty": 0.5, "max_order_notional": 100_000.0,
             "max_open_orders": 20, "max_orders_per_second": 5_000, "max_orders_per_minute": 1_000_000,
             "price_band_bps": 50.0, "min_order_qty": 0.0001, "feed_stale_ms": 5_000},
}
BID, ASK = 6_500_000, 6_500_001  # 65,000.00 / 65,000.01


def timed(fn: Callable[[int], object], before: Callable[[int], None], calls: int) -> np.ndarray:
    """Per-call ns of fn(i), with `before(i)` run untimed ahead of each call."""
    clock = time.perf_counter_ns
    out = np.empty(calls, dtype=np.int64)
    gc.collect()
    gc.disable()
    try:
        for i in range(calls):
            before(i)
            t0 = clock()
            fn(i)
            out[i] = clock() - t0
    finally:
        gc.enable()
    return out


def timer_overhead(calls: int) -> float:
    """The median ns that timing an empty call costs."""
    def nothing(i: int) -> None:
        return None

    return float(np.median(timed(nothing, nothing, calls)))


def report(name: str, runs: list[np.ndarray], overhead: float) -> float:
    """Print best-of-N and median-of-N of the p50 / p99 in µs (timer cost removed); returns the best p50."""
    figs = np.array([np.percentile(r, [50, 99]) - overhead for r in runs]) / 1e3
    best, med = figs.min(0), np.median(figs, 0)
    print(f"  {name:<34} best p50 {best[0]:6.2f}  p99 {best[1]:6.2f} µs | "
          f"median of {len(runs)}: p50 {med[0]:6.2f}  p99 {med[1]:6.2f} µs")
    return float(best[0])


# --- RiskGate.check alone ---------------------------------------------------------------------------


def gate_case(calls: int) -> tuple[Callable[[int], object], Callable[[int], None]]:
    """A gate, a passing intent pair (buy, sell) and a realistic view; the clock moves 1 ms per call."""
    settings = settings_from_dict(CONFIG)
    clock = ReplayClock(T0)
    inst = settings.instrument(SYM)
    gate = RiskGate(settings.risk, lambda s: inst, clock)
    view = RiskView(position=50_000, open_buy=10_000, open_sell=20_000, book_live=True, ref_price=ASK,
                    open_orders=2, mid=(BID + ASK) / 2, far_depth=900_000, own_bid=BID - 5, own_ask=ASK + 5,
                    last_market_ts=T0)
    # limit orders joining the touch: a market order would cross our own resting order on the other side
    intents = (OrderIntent(SYM, T0, Side.BUY, 1_000, OrderType.LIMIT, BID),
               OrderIntent(SYM, T0, Side.SELL, 1_000, OrderType.LIMIT, ASK))
    check = gate.check
    views = [view]

    def before(i: int) -> None:
        now = T0 + i * MS
        clock.advance_to(now)
        views[0] = RiskView(50_000, 10_000, 20_000, True, ASK, 2, (BID + ASK) / 2, 900_000, BID - 5, ASK + 5, now)

    def call(i: int) -> object:
        result = check(intents[i & 1], views[0])
        if result is not None:
            raise AssertionError(f"the benchmark intent was refused: {result.reason}: {result.detail}")
        return result

    return call, before


# --- Engine.submit ---------------------------------------------------------------------------------------


class RecordingBroker:
    """A broker that keeps two working orders (one a side, away from the touch) and only counts submits."""

    def __init__(self) -> None:
        self.sent = 0
        self._open = [OpenOrder(Order("w-1", SYM, T0, Side.BUY, 10_000, OrderType.LIMIT, BID - 5), 0, 10_000,
                                OrderState.NEW),
                      OpenOrder(Order("w-2", SYM, T0, Side.SELL, 20_000, OrderType.LIMIT, ASK + 5), 0, 20_000,
                                OrderState.NEW)]

    def submit(self, order: Order) -> None:
        """Count it."""
        self.sent += 1

    def cancel(self, client_id: str) -> None:
        """Nothing to cancel."""

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """The two working orders."""
        return self._open


def snapshot(ts: int) -> BookSnapshot:
    """20 levels a side of 0.5 each around 65,000."""
    levels = np.arange(20, dtype=np.int64)
    qty = np.full(20, 50_000, dtype=np.int64)
    return BookSnapshot(SYM, ts, ts, BID - levels, qty, ASK + levels, qty.copy())


def engine_case(paper: bool) -> tuple[Callable[[int], object], Callable[[int], None]]:
    """The engine's submit of alternating limit buys and sells on a LIVE book: joining the touch beside
    the recording broker's two working orders, or crossing it with the PaperBroker (so each fills)."""
    clock = ReplayClock()
    path = build_path(settings_from_dict(CONFIG), clock, [SYM])
    engine = path.engine
    path.engine.strategy.on_sample = lambda sample: None  # type: ignore[method-assign]
    clock.advance_to(T0)
    engine.on_market(snapshot(T0))
    if not paper:
        engine.broker = RecordingBroker()  # type: ignore[assignment]
    submit = engine.submit
    sides = (Side.BUY, Side.SELL)
    prices = (ASK, BID) if paper else (BID, ASK)
    intent = [OrderIntent(SYM, T0, Side.BUY, 1_000, OrderType.LIMIT, prices[0])]

    def before(i: int) -> None:
        now = T0 + (i + 1) * MS
        clock.advance_to(now)  # a paper order sent 1 ms ago arrives and fills here, untimed
        if i % 40 == 0:  # fresh liquidity (the paper broker remembers what our fills took) and a fresh feed
            engine.on_market(snapshot(now))
        intent[0] = OrderIntent(SYM, now, sides[i & 1], 1_000, OrderType.LIMIT, prices[i & 1])  # the caller's

    def call(i: int) -> object:
        order = submit(intent[0])
        if order is None:
            raise AssertionError(f"the benchmark intent was refused: {dict(path.risk.rejects)}")
        return order

    return call, before


def main() -> int:
    """Time each case `--repeat` times; print the figures and whether the gate meets the target."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (after one warm-up)")
    ap.add_argument("--calls", type=int, default=50_000, help="calls per timed run")
    args = ap.parse_args()
    if args.repeat < 1 or args.calls < 100:
        ap.error("--repeat must be >= 1 and --calls >= 100")
    configure_logging("error")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}; repeat {args.repeat} x {args.calls} calls; "
          f"target: median < {TARGET_MEDIAN_US:g} µs for one full pre-trade check")
    overhead = timer_overhead(args.calls)
    print(f"  timer overhead {overhead:.0f} ns (subtracted)")
    cases = (("RiskGate.check (all checks)", lambda: gate_case(args.calls)),
             ("Engine.submit (recording broker)", lambda: engine_case(paper=False)),
             ("Engine.submit (paper broker)", lambda: engine_case(paper=True)))
    figures: dict[str, float] = {}
    for name, make in cases:
        fn, before = make()
        timed(fn, before, min(args.calls, 5_000))  # warm-up
        runs = []
        for _ in range(args.repeat):
            fn, before = make()
            runs.append(timed(fn, before, args.calls))
        figures[name] = report(name, runs, overhead)
    gate_p50 = figures["RiskGate.check (all checks)"]
    verdict = "meets" if gate_p50 < TARGET_MEDIAN_US else "MISSES"
    print(f"\nRiskGate.check median {gate_p50:.2f} µs: {verdict} the target (< {TARGET_MEDIAN_US:g} µs); "
          f"engine submit path median {statistics.median([figures[n] for n in figures if 'submit' in n]):.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
