"""Instruments: the tick and lot grid of a symbol, and conversion between decimals and integers.

Inside depthd prices are integer ticks and sizes integer lots (DESIGN rule 9); these helpers are the
only place decimals become integers and back, and they refuse values that are off the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

# Slack allowed when a value is checked against the grid, in grid steps: an absolute part plus a
# part relative to the value (float64 parsing and division err by a few ulp, about 2e-16 each).
_ABS_SLACK = 1e-6
_REL_SLACK = 1e-14
# Past this many steps the slack nears half a step and the check can no longer tell; it is skipped
# there, and the conversion stays deterministic and injective for distinct inputs.
_CHECK_LIMIT = 1e13


class OffGridError(ValueError):
    """A price or size is not a whole number of ticks or lots."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """A symbol's grid: price tick and size lot, both as decimals (e.g. 0.01 and 0.00001)."""

    symbol: str
    tick_size: float
    lot_size: float
    _price_dp: int = field(default=0, init=False, repr=False, compare=False)
    _qty_dp: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.tick_size > 0 and self.lot_size > 0):
            raise ValueError(f"{self.symbol}: tick_size and lot_size must be > 0")
        object.__setattr__(self, "_price_dp", _decimals(self.tick_size))
        object.__setattr__(self, "_qty_dp", _decimals(self.lot_size))

    def price_to_ticks(self, prices: np.ndarray) -> np.ndarray:
        """Decimal prices to int64 ticks; raises OffGridError naming the first off-grid price."""
        return _to_grid(prices, self.tick_size, "price", "tick_size", self.symbol)

    def qty_to_lots(self, qtys: np.ndarray) -> np.ndarray:
        """Decimal sizes to int64 lots; raises OffGridError naming the first off-grid size."""
        return _to_grid(qtys, self.lot_size, "qty", "lot_size", self.symbol)

    def tick(self, price: float) -> int:
        """One decimal price to ticks."""
        return _scalar_to_grid(price, self.tick_size, "price", "tick_size", self.symbol)

    def lot(self, qty: float) -> int:
        """One decimal size to lots."""
        return _scalar_to_grid(qty, self.lot_size, "qty", "lot_size", self.symbol)

    def price(self, ticks: int | float) -> float:
        """Ticks back to a decimal price, rounded to the tick's decimals."""
        return round(float(ticks) * self.tick_size, self._price_dp)

    def qty(self, lots: int | float) -> float:
        """Lots back to a decimal size, rounded to the lot's decimals."""
        return round(float(lots) * self.lot_size, self._qty_dp)


def _decimals(step: float) -> int:
    """How many decimals a grid step needs (0.01 -> 2, 1e-8 -> 8, 5 -> 0)."""
    for d in range(0, 13):
        if abs(round(step, d) - step) <= step * 1e-9:
            return d
    return 12


@njit(cache=True, nogil=True)
def on_grid(value: float, step: float) -> tuple[bool, int]:
    """(True, value / step as whole steps), or (False, 0) when value is not finite or off the grid.

    The one grid rule of depthd: every path that turns a decimal into ticks or lots goes through it.
    """
    x = value / step
    if not math.isfinite(x):
        return False, 0
    r = np.rint(x)
    ax = abs(x)
    if abs(x - r) > _ABS_SLACK + _REL_SLACK * ax and ax < _CHECK_LIMIT:
        return False, 0
    return True, np.int64(r)


def _scalar_to_grid(value: float, step: float, what: str, key: str, symbol: str) -> int:
    ok, steps = on_grid(float(value), step)
    if not ok:
        raise OffGridError(f"{symbol}: {what} {float(value)!r} is not a multiple of {key} {step!r}")
    return steps


@njit(cache=True, nogil=True)
def _grid_kernel(values: np.ndarray, step: float, out: np.ndarray) -> int:
    """Fill out with the values in whole steps; return the index of the first off-grid value, or -1."""
    for i in range(values.shape[0]):
        ok, steps = on_grid(values[i], step)
        if not ok:
            return i
        out[i] = steps
    return -1


@njit(cache=True, nogil=True)
def levels_to_grid(levels: np.ndarray, tick: float, lot: float, px: np.ndarray, qty: np.ndarray) -> int:
    """Validate and convert (n, 2) [price, size] rows into ticks and lots in one pass.

    Returns -1 when all is well, else a code: 10*row + 1 price not positive/finite, + 2 size negative
    or not finite, + 3 price off the tick grid, + 4 size off the lot grid.
    """
    for i in range(levels.shape[0]):
        p = levels[i, 0]
        q = levels[i, 1]
        if not (math.isfinite(p) and p > 0.0):
            return 10 * i + 1
        if not (math.isfinite(q) and q >= 0.0):
            return 10 * i + 2
        ok, ticks = on_grid(p, tick)
        if not ok:
            return 10 * i + 3
        px[i] = ticks
        ok, lots = on_grid(q, lot)
        if not ok:
            return 10 * i + 4
        qty[i] = lots
    return -1


def _to_grid(values: np.ndarray, step: float, what: str, key: str, symbol: str) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    out = np.empty(arr.shape[0], np.int64)
    bad = _grid_kernel(arr, step, out)
    if bad >= 0:
        raise OffGridError(f"{symbol}: {what} {float(arr[bad])!r} is not a multiple of {key} {step!r}")
    return out
