"""RiskGate (first cut): every intent is checked before it may become an order.

Checks, each its own method with a stable reason code: the book is LIVE, the order size, the
worst-case position (every open order on the same side filling) and the notional of that
worst-case position. A refusal is a RiskReject with a readable detail; the gate counts them by
reason. Pure: no I/O, no time of its own.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from daemon.config import RiskLimits, RiskSettings
from daemon.events import OrderIntent, OrderType, RiskReject, Side
from daemon.instruments import Instrument


@dataclass(frozen=True, slots=True)
class RiskView:
    """What the gate needs to know about a symbol at the moment of the check."""

    position: int
    open_buy: int
    open_sell: int
    book_live: bool
    ref_price: int | None


class _Limits:
    __slots__ = ("max_notional", "max_order", "max_position")

    def __init__(self, lim: RiskLimits, inst: Instrument) -> None:
        # Floor to whole lots, with slack for float division (0.29 / 1e-8 = 28999999.999999996).
        self.max_position = math.floor(lim.max_position / inst.lot_size + 1e-6)
        self.max_order = math.floor(lim.max_order_qty / inst.lot_size + 1e-6)
        self.max_notional = lim.max_notional


class RiskGate:
    """Pre-trade checks; `check` returns None when the intent may pass."""

    def __init__(self, settings: RiskSettings, instrument: Callable[[str], Instrument]) -> None:
        self._settings = settings
        self._instrument = instrument
        self._limits: dict[str, _Limits] = {}
        self.rejects: Counter[str] = Counter()
        self.passed = 0
        # set by the model runtime: why the model cannot be trusted now (a failing score, drift), or None
        self.model_problem: str | None = None

    def _limits_for(self, symbol: str) -> _Limits:
        lim = self._limits.get(symbol)
        if lim is None:
            lim = self._limits[symbol] = _Limits(self._settings.limits_for(symbol), self._instrument(symbol))
        return lim

    def check(self, intent: OrderIntent, view: RiskView) -> RiskReject | None:
        """Run every check in order; the first failure is the reject."""
        lim = self._limits_for(intent.symbol)
        for check in (self._book_live, self._model_healthy, self._order_size, self._position, self._notional):
            detail = check(intent, view, lim)
            if detail is not None:
                reason, text = detail
                self.rejects[reason] += 1
                return RiskReject(intent, reason, text)
        self.passed += 1
        return None

    @staticmethod
    def _worst_position(intent: OrderIntent, view: RiskView) -> int:
        if intent.side is Side.BUY:
            return view.position + view.open_buy + intent.qty
        return view.position - view.open_sell - intent.qty

    @staticmethod
    def _only_reduces(worst: int, view: RiskView) -> bool:
        """True when the worst case stays on the position's side and is smaller: a pure reduction."""
        return worst == 0 or ((worst > 0) == (view.position > 0) and abs(worst) < abs(view.position))

    def _book_live(self, intent: OrderIntent, view: RiskView, lim: _Limits) -> tuple[str, str] | None:
        if not view.book_live:
            return "book_not_live", f"{intent.symbol}: the book is not LIVE"
        return None

    def _model_healthy(self, intent: OrderIntent, view: RiskView, lim: _Limits) -> tuple[str, str] | None:
        problem = self.model_problem
        if problem is not None and not self._only_reduces(self._worst_position(intent, view), view):
            return "model_unhealthy", f"{intent.symbol}: {problem}"
        return None

    def _order_size(self, intent: OrderIntent, view: RiskView, lim: _Limits) -> tuple[str, str] | None:
        if intent.qty > lim.max_order:
            inst = self._instrument(intent.symbol)
            return "max_order_qty", (f"{intent.symbol}: order qty {inst.qty(intent.qty)} exceeds "
                                     f"max_order_qty {inst.qty(lim.max_order)}")
        return None

    def _position(self, intent: OrderIntent, view: RiskView, lim: _Limits) -> tuple[str, str] | None:
        worst = self._worst_position(intent, view)
        if abs(worst) > lim.max_position and not self._only_reduces(worst, view):
            inst = self._instrument(intent.symbol)
            return "max_position", (f"{intent.symbol}: worst-case position {inst.qty(worst)} would exceed "
                                    f"max_position {inst.qty(lim.max_position)}")
        return None

    def _notional(self, intent: OrderIntent, view: RiskView, lim: _Limits) -> tuple[str, str] | None:
        px = intent.limit_px if intent.order_type is OrderType.LIMIT else view.ref_price
        if px is None:
            return "no_price", f"{intent.symbol}: no price to value the order at"
        worst = self._worst_position(intent, view)
        inst = self._instrument(intent.symbol)
        notional = abs(inst.qty(worst) * inst.price(px))
        if notional > lim.max_notional and not self._only_reduces(worst, view):
            return "max_notional", (f"{intent.symbol}: worst-case notional {notional:.2f} would exceed "
                                    f"max_notional {lim.max_notional:.2f}")
        return None


def snapshot_rejects(gate: RiskGate) -> Mapping[str, int]:
    """Rejects by reason, sorted by reason (stable for reports)."""
    return dict(sorted(gate.rejects.items()))
