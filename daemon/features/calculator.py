"""FeatureCalculator: per-symbol feature values kept current as the book changes, sampled on demand.

It is told of every book change and trade (with its receive time). A book change recomputes the
book-state features (one numba call over the book arrays) and accounts the change in the flow
state (a second call); a trade is one call. A sample moves the time windows to the sample time,
fills the time-dependent features and copies the vector. A book that is not LIVE has NaN book
features; a windowed feature is NaN until its window has been watched (schema.py conventions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from daemon.book import Book
from daemon.events import Side, Trade
from daemon.features import flow, schema
from daemon.instruments import Instrument

_BUY = Side.BUY  # enum member lookups cost ~80 ns on Python 3.11; this is the per-trade path
_update_book = flow.update_book  # one global lookup on the per-message path, not two
_finish = flow.finish


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """Feature settings from `[features]`: the notional of the cost features, the imbalance threshold."""

    cost_notional: float = 1000.0
    imbalance_threshold: float = 0.3


@dataclass(slots=True)
class FeatureSample:
    """The feature values of one symbol at one event time, in schema order, and the model's score.

    Not frozen (its array could not be anyway): one is made per symbol and sample tick, and a plain
    slots class is built in half the time. Treat it as read-only; the engine sets `score` (NaN
    when there is no model or it failed) before the strategy sees the sample.
    """

    symbol: str
    ts: int
    values: np.ndarray
    live: bool
    score: float = float("nan")

    def __getitem__(self, name: str) -> float:
        return float(self.values[schema.index_of(name)])

    def as_dict(self) -> dict[str, float]:
        """Feature name -> value, in schema order."""
        return dict(zip(schema.NAMES, self.values.tolist(), strict=True))

    def missing(self) -> list[str]:
        """Names of the features that could not be computed at this sample (NaN)."""
        return [schema.NAMES[i] for i in np.flatnonzero(np.isnan(self.values))]

    @property
    def complete(self) -> bool:
        """Every feature has a value (warm-up over, book LIVE and two-sided)."""
        return not np.isnan(self.values).any()


class _SymbolFeatures:
    __slots__ = ("fs", "live", "ring", "st", "values")

    def __init__(self, instrument: Instrument, params: FeatureParams) -> None:
        self.live = False
        self.fs, self.st, self.ring = flow.new_state(instrument.tick_size, instrument.lot_size,
                                                     params.cost_notional, params.imbalance_threshold)
        self.values = self.fs[: flow.N_VALUES]  # a view: the kernels write the features there


class FeatureCalculator:
    """Keeps each symbol's features current; `sample` hands out a copy stamped with event time."""

    def __init__(self, instruments: Mapping[str, Instrument], params: FeatureParams | None = None) -> None:
        self._instruments = instruments
        self.params = params or FeatureParams()
        self._state: dict[str, _SymbolFeatures] = {}

    def _get(self, symbol: str) -> _SymbolFeatures:
        st = self._state.get(symbol)
        if st is None:
            st = self._state[symbol] = _SymbolFeatures(self._instruments[symbol], self.params)
        return st

    def on_book(self, book: Book, live: bool, ts: int) -> None:
        """The book of a symbol changed (or its sync state did) at receive time ts: update its features."""
        s = self._state.get(book.symbol) or self._get(book.symbol)
        s.live = live
        while _update_book(book.bid_px, book.bid_qty, book.ask_key, book.ask_qty, book.counters, book.edits, live, ts,
                           s.fs, s.st, s.ring):
            s.ring = flow.grown(s.ring)

    def on_trade(self, trade: Trade) -> None:
        """A market trade: it feeds the trade-flow windows and the time since the last trade."""
        s = self._state.get(trade.symbol) or self._get(trade.symbol)
        while flow.on_trade(trade.ts_recv, trade.side is _BUY, trade.qty, s.st, s.ring):
            s.ring = flow.grown(s.ring)

    def sample(self, symbol: str, ts: int) -> FeatureSample:
        """A copy of the symbol's features at event time ts (windows moved to ts first)."""
        s = self._state.get(symbol) or self._get(symbol)
        _finish(ts, s.fs, s.st, s.ring)
        return FeatureSample(symbol, ts, s.values.copy(), s.live)
