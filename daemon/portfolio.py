"""Portfolio: positions with an average entry price, realised/unrealised PnL, fees, equity curve.

Pure: fills and marks in, numbers out. Positions are held in signed lots (ticks inside, rule 9);
money is quote-currency floats computed from decimal prices and sizes through the instrument.
Every symbol is assumed to be quoted in the same currency, so the totals add up.

- Adding to a position moves the average entry price (size-weighted); reducing it realises
  (fill - average) * closed size, signed by the position; a fill that flips the position closes the
  old one at the fill price and opens the remainder at the fill price.
- Unrealised = (mark - average) * size, 0 until the symbol has a mark. Fees add up separately;
  equity = realised + unrealised - fees.
- The equity curve stays bounded for any replay length: it keeps every `stride`-th recorded point,
  and when full drops every other kept point and doubles the stride; the latest point is always
  shown. The max drawdown (peak-to-trough fall of the recorded equity, in quote currency) is
  tracked over every recorded value, not only the kept ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from daemon.errors import LocalError
from daemon.events import Fill
from daemon.instruments import Instrument


@dataclass(slots=True)
class _Position:
    """One symbol's position, its cost basis and what it has earned and paid so far."""

    lots: int = 0
    avg_price: float | None = None
    realised: float = 0.0
    fees: float = 0.0
    mark: float | None = None

    def unrealised(self, inst: Instrument) -> float:
        """Open PnL at the last mark (0 when flat or unmarked)."""
        if self.lots == 0 or self.mark is None or self.avg_price is None:
            return 0.0
        return (self.mark - self.avg_price) * inst.qty(self.lots)


class Portfolio:
    """Positions and PnL of every symbol, fed by broker fills and marked at the book's mid."""

    def __init__(self, instruments: Mapping[str, Instrument], max_curve_points: int = 2000) -> None:
        if max_curve_points < 2:
            raise ValueError(f"max_curve_points must be >= 2, got {max_curve_points}")
        self._instruments = instruments
        self._positions: dict[str, _Position] = {}
        self._max_points = max_curve_points
        self._curve: list[tuple[int, float]] = []
        self._last: tuple[int, float] | None = None
        self._stride = 1
        self._n_recorded = 0
        self._peak: float | None = None
        self._max_dd = 0.0

    # --- inputs ----------------------------------------------------------------------------------

    def on_fill(self, fill: Fill) -> None:
        """Apply one execution to its symbol's position, realised PnL and fees."""
        inst = self._instrument(fill.symbol)
        if fill.qty <= 0:
            raise LocalError(f"portfolio: fill {fill.trade_id} has qty {fill.qty} <= 0")
        pos = self._position(fill.symbol)
        price = inst.price(fill.price)
        delta = int(fill.side) * fill.qty
        pos.fees += fill.fee
        if pos.lots == 0 or (pos.lots > 0) == (delta > 0):
            old = abs(pos.lots)
            avg = pos.avg_price if pos.avg_price is not None else price
            pos.avg_price = (avg * old + price * abs(delta)) / (old + abs(delta))
            pos.lots += delta
            return
        closed = min(abs(delta), abs(pos.lots))
        assert pos.avg_price is not None
        direction = 1 if pos.lots > 0 else -1
        pos.realised += (price - pos.avg_price) * inst.qty(closed) * direction
        pos.lots += delta
        if pos.lots == 0:
            pos.avg_price = None
        elif abs(delta) > closed:
            pos.avg_price = price

    def restore(self, symbol: str, lots: int, avg_price: float | None, realised: float, fees: float) -> None:
        """Set a symbol's position as a journal snapshot recorded it (a restart, before any fill)."""
        pos = self._position(symbol)
        pos.lots, pos.avg_price, pos.realised, pos.fees = lots, (avg_price if lots else None), realised, fees

    def records(self) -> list[tuple[str, int, float | None, float, float]]:
        """(symbol, lots, avg price, realised, fees) of every symbol traded, for journal snapshots."""
        return [(sym, p.lots, p.avg_price, p.realised, p.fees) for sym, p in sorted(self._positions.items())]

    def mark(self, symbol: str, mid_price: float | None) -> None:
        """Set the decimal price open positions are valued at; None keeps the last mark."""
        self._instrument(symbol)
        if mid_price is None:
            return
        if not math.isfinite(mid_price):
            raise ValueError(f"{symbol}: mark price must be finite, got {mid_price!r}")
        self._position(symbol).mark = float(mid_price)

    def notional(self, symbol: str) -> float | None:
        """Signed position value at the last mark (quote currency); None before a mark."""
        pos = self._positions.get(symbol)
        if pos is None or pos.mark is None:
            return None
        return self._instruments[symbol].qty(pos.lots) * pos.mark

    def record_equity(self, ts: int) -> None:
        """Append the current equity to the (decimated) curve and update the max drawdown."""
        equity = self.equity()
        if self._peak is None or equity > self._peak:
            self._peak = equity
        self._max_dd = max(self._max_dd, self._peak - equity)
        point = (ts, equity)
        self._last = point
        if self._n_recorded % self._stride == 0:
            self._curve.append(point)
            if len(self._curve) > self._max_points - 1:
                del self._curve[1::2]
                self._stride *= 2
        self._n_recorded += 1

    # --- reads -----------------------------------------------------------------------------------

    def position(self, symbol: str) -> int:
        """Signed position in lots (0 for a symbol never traded)."""
        pos = self._positions.get(symbol)
        return pos.lots if pos is not None else 0

    def avg_price(self, symbol: str) -> float | None:
        """Average entry price of the open position (None when flat or never traded)."""
        pos = self._positions.get(symbol)
        return pos.avg_price if pos is not None else None

    def open_symbols(self) -> list[str]:
        """Symbols with a non-zero position."""
        return [sym for sym, pos in self._positions.items() if pos.lots != 0]

    def snapshot(self) -> dict:
        """Per-symbol state for status and reports, in decimals and quote currency, by symbol."""
        out: dict[str, dict] = {}
        for sym in sorted(self._positions):
            pos = self._positions[sym]
            inst = self._instruments[sym]
            out[sym] = {"qty": inst.qty(pos.lots), "avg_price": pos.avg_price,
                        "realised": pos.realised, "unrealised": pos.unrealised(inst), "fees": pos.fees}
        return out

    def pnl(self) -> dict:
        """Totals over every symbol: realised, unrealised, fees and net (= realised + unrealised - fees)."""
        realised = unrealised = fees = 0.0
        for sym in sorted(self._positions):
            pos = self._positions[sym]
            realised += pos.realised
            unrealised += pos.unrealised(self._instruments[sym])
            fees += pos.fees
        return {"realised": realised, "unrealised": unrealised, "fees": fees,
                "net": realised + unrealised - fees}

    def equity(self) -> float:
        """Net PnL so far in quote currency: what the risk gate and the equity curve watch."""
        total = 0.0
        for sym in sorted(self._positions):
            pos = self._positions[sym]
            total += pos.realised + pos.unrealised(self._instruments[sym]) - pos.fees
        return total

    @property
    def max_drawdown(self) -> float:
        """Largest fall from a running peak over every recorded equity value (>= 0)."""
        return self._max_dd

    @property
    def equity_curve(self) -> list[list]:
        """The kept [ts, equity] points, oldest first, ending with the latest recorded one."""
        points = list(self._curve)
        if self._last is not None and (not points or points[-1] is not self._last):
            points.append(self._last)
        return [[ts, eq] for ts, eq in points]

    # --- helpers ---------------------------------------------------------------------------------

    def _instrument(self, symbol: str) -> Instrument:
        inst = self._instruments.get(symbol)
        if inst is None:
            raise LocalError(f"portfolio: no instrument for symbol {symbol!r}")
        return inst

    def _position(self, symbol: str) -> _Position:
        pos = self._positions.get(symbol)
        if pos is None:
            pos = self._positions[symbol] = _Position()
        return pos
