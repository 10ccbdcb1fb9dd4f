"""FeatureCalculator: per-symbol feature values kept current as the book changes, sampled on demand.

It is told of every book change and trade; it recomputes the book-state features right away (one
numba call) so that a sample is only a copy. A book that is not LIVE has NaN features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from daemon.book import Book
from daemon.events import Trade
from daemon.features import kernels, schema
from daemon.instruments import Instrument


@dataclass(slots=True)
class FeatureSample:
    """The feature values of one symbol at one event time, in schema order.

    Not frozen (its array could not be anyway): one is made per symbol and sample tick, and a plain
    slots class is built in half the time. Treat it as read-only.
    """

    symbol: str
    ts: int
    values: np.ndarray
    live: bool

    def __getitem__(self, name: str) -> float:
        return float(self.values[schema.index_of(name)])

    def as_dict(self) -> dict[str, float]:
        """Feature name -> value, in schema order."""
        return dict(zip(schema.NAMES, self.values.tolist(), strict=True))


class _SymbolFeatures:
    __slots__ = ("last_trade_ts", "live", "lot", "tick", "values")

    def __init__(self, instrument: Instrument) -> None:
        self.values = np.full(len(schema.NAMES), np.nan)
        self.live = False
        self.tick = instrument.tick_size
        self.lot = instrument.lot_size
        self.last_trade_ts = 0


class FeatureCalculator:
    """Keeps each symbol's features current; `sample` hands out a copy stamped with event time."""

    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self._instruments = instruments
        self._state: dict[str, _SymbolFeatures] = {}
        self.updates = 0

    def _get(self, symbol: str) -> _SymbolFeatures:
        st = self._state.get(symbol)
        if st is None:
            st = self._state[symbol] = _SymbolFeatures(self._instruments[symbol])
        return st

    def on_book(self, book: Book, live: bool) -> None:
        """The book of a symbol changed (or its sync state did): bring its features up to date."""
        st = self._get(book.symbol)
        st.live = live
        self.updates += 1
        if live:
            kernels.book_features(book.bid_px, book.bid_qty, book.n_bid, book.ask_key, book.ask_qty,
                                  book.n_ask, st.tick, st.lot, st.values)
        else:
            st.values[:] = np.nan

    def on_trade(self, trade: Trade) -> None:
        """A market trade: flow features will use it; for now it stamps the last-trade time."""
        st = self._state.get(trade.symbol) or self._get(trade.symbol)
        st.last_trade_ts = trade.ts_recv

    def sample(self, symbol: str, ts: int) -> FeatureSample:
        """A copy of the symbol's current features, stamped with the sample's event time."""
        st = self._get(symbol)
        return FeatureSample(symbol, ts, st.values.copy(), st.live)
