"""Features use only the past: changing every event from time T on leaves every sample before T
bit-identical (and changes some sample after it, so the change was seen at all)."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.app import build_path
from daemon.clock import ReplayClock
from daemon.events import BookDelta, BookSnapshot, MarketEvent, Side, Trade
from tests.features.test_reference_parity import S, settings, synthetic

Sampled = list[tuple[str, int, np.ndarray]]


def run(events: list[MarketEvent], symbols: list[str]) -> Sampled:
    clock = ReplayClock()
    path = build_path(settings(), clock, symbols)
    out: Sampled = []
    path.engine.sample_sinks.append(lambda s: out.append((s.symbol, s.ts, s.values.copy())))
    for ev in events:
        clock.advance_to(ev.ts_recv)
        path.engine.on_market(ev)
    clock.advance_to(events[-1].ts_recv + 70 * S)
    return out


def perturbed(ev: MarketEvent, what: str) -> MarketEvent:
    """The same event moved 50 ticks up, with other sizes (a delete stays a delete), a trade of the
    other side."""
    if type(ev) is Trade:
        if what == "book":
            return ev
        side = Side.SELL if ev.side is Side.BUY else Side.BUY
        return Trade(ev.symbol, ev.ts_venue, ev.ts_recv, ev.price + 50, ev.qty * 3 + 1, side)
    if what == "trades":
        return ev
    cls = BookSnapshot if type(ev) is BookSnapshot else BookDelta
    assert isinstance(ev, BookSnapshot | BookDelta)

    def qty(q: np.ndarray) -> np.ndarray:
        return np.where(q > 0, q * 2 + 1, 0)

    return cls(ev.symbol, ev.ts_venue, ev.ts_recv, ev.bid_px + 50, qty(ev.bid_qty), ev.ask_px + 50,
               qty(ev.ask_qty))


def bits(values: np.ndarray) -> bytes:
    return values.tobytes()  # NaN payloads and signed zeros included


@pytest.mark.parametrize("what", ["all", "book", "trades"])
@pytest.mark.parametrize(("seed", "at"), [(41, 0.2), (42, 0.5), (43, 0.8)])
def test_changing_the_future_leaves_earlier_samples_bit_identical(seed: int, at: float, what: str) -> None:
    symbols = ["X", "Y"]
    events = synthetic(seed, tuple(symbols), n=600)
    first, last = events[0].ts_recv, events[-1].ts_recv
    cut = first + int((last - first) * at) | 1  # odd ns: never on the 100 ms sampling grid
    changed = [ev if ev.ts_recv < cut else perturbed(ev, what) for ev in events]

    base = run(events, symbols)
    alt = run(changed, symbols)

    before = [(sym, ts, bits(v)) for sym, ts, v in base if ts < cut]
    assert before, "no sample before the cut"
    assert [(sym, ts, bits(v)) for sym, ts, v in alt if ts < cut] == before
    later_base = {(sym, ts): bits(v) for sym, ts, v in base if ts >= cut}
    later_alt = {(sym, ts): bits(v) for sym, ts, v in alt if ts >= cut}
    assert any(later_alt.get(key) != b for key, b in later_base.items()), "the changed events changed nothing"
