"""OperatorControl: what `depthd kill` / `resume` / `status` do to a running daemon.

The control server calls these synchronously on the event loop, so they act on the path like any
other event: a kill halts through the trading state machine (the engine then cancels every open
order and, if asked, flattens within the price band), and the halt is persisted; a resume returns
to ACTIVE and forgets it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from daemon.app import TradingPath
from daemon.risk.state import TradingState

if TYPE_CHECKING:
    pass

log = structlog.get_logger("depthd.control")


class OperatorControl:
    """The ControlHandler of the daemon: kill, resume and status over one TradingPath."""

    def __init__(self, path: TradingPath, extra: Callable[[], dict] | None = None) -> None:
        self.path = path
        self.extra = extra  # more for /status (readiness, feeds, model) from the session's Service

    def kill(self, flatten: bool, reason: str, operator: str) -> dict:
        """Halt (cancel open orders; flatten if asked, also when already halted)."""
        machine = self.path.state
        counts = self.path.engine.counts
        cancels_before = counts["halt_cancels"]
        already = machine.state is TradingState.HALTED
        machine.operator_halt(reason, operator, flatten)
        if already and flatten:
            self.path.engine.halt.flatten()
        return {"ok": True, "state": str(machine.state), "flatten": machine.flatten_requested,
                "cancelled": counts["halt_cancels"] - cancels_before, "open_orders": self._open_orders()}

    def resume(self, operator: str, reason: str) -> dict:
        """Back to ACTIVE (the triggers may move it again at their next evaluation)."""
        machine = self.path.state
        machine.operator_resume(reason, operator)
        return {"ok": True, "state": str(machine.state)}

    def status(self) -> dict:
        """Trading state, fired triggers, positions, PnL and open orders."""
        p = self.path
        out = {"state": str(p.state.state), "risk": p.monitor.status(), "positions": p.portfolio.snapshot(),
               "pnl": p.portfolio.pnl(), "open_orders": self._open_orders(),
               "orders": self._order_list(),
               "last_transition": p.state.transitions[-1].as_dict() if p.state.transitions else None}
        if self.extra is not None:
            out.update(self.extra())
        return out

    def _order_list(self, limit: int = 100) -> list[dict]:
        return [{"client_id": v.order.client_id, "symbol": v.order.symbol, "side": v.order.side.name,
                 "qty_lots": v.order.qty, "filled_lots": v.filled_qty, "limit_ticks": v.order.limit_px,
                 "state": str(v.state)} for v in self.path.engine.open_orders()[:limit]]

    def _open_orders(self) -> int:
        return len(self.path.engine.open_orders())
