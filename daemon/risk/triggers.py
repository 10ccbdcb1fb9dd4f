"""Automatic triggers: conditions on the facts of the moment that move the trading state.

Each trigger has a threshold and the state it leads to (`[risk.triggers.<name>]`). It fires as soon
as its condition holds and stays fired until the condition has been clear for `clear_after_ms`
(hysteresis: a flapping feed does not toggle the state every second). The state the triggers want
is the most severe one among those fired; the state machine decides what that means (it never
leaves HALTED on its own). Pure: facts in, wanted state out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from daemon.config import TriggerSettings, TriggersSettings
from daemon.risk.state import TradingState

log = structlog.get_logger("depthd.risk")

_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@dataclass
class RiskFacts:
    """What the risk monitor measured at one moment (quote currency, ms, counts)."""

    daily_pnl: float | None = None  # realised + unrealised - fees since the day's reset; None = no valid mark
    drawdown: float = 0.0  # peak equity - equity
    fill_breach: str | None = None  # a fill left a position or notional over its limit
    reject_rate: float | None = None  # None while too few orders in the window
    broker_errors: int = 0  # consecutive broker errors
    feed_stale_ms: float = 0.0  # worst symbol: time since its last market event
    book_invalid_ms: float = 0.0  # worst symbol: time its book has not been LIVE
    model_problem: str | None = None
    clock_skew_ms: float = 0.0  # worst symbol: |receive - venue time| of its last event
    broker_connected: bool = True
    feed_problem: str | None = None  # a live feed down or banned, or a symbol its sync rules gave up on
    worst: dict[str, str] = field(default_factory=dict)  # fact -> the symbol behind it


Condition = Callable[[RiskFacts, float], str | None]


def _over(value: float | None, threshold: float, what: str, unit: str = "") -> str | None:
    if value is not None and value > threshold:
        return f"{what} {value:.6g}{unit} > {threshold:g}{unit}"
    return None


CONDITIONS: dict[str, Condition] = {
    "daily_loss": lambda f, t: _over(-f.daily_pnl if f.daily_pnl is not None else None, t, "daily loss"),
    "drawdown": lambda f, t: _over(f.drawdown, t, "drawdown from peak equity"),
    "fill_breach": lambda f, t: f.fill_breach,
    "reject_rate": lambda f, t: _over(f.reject_rate, t, "broker reject rate"),
    "broker_errors": lambda f, t: (f"{f.broker_errors} consecutive broker errors (limit {t:g})"
                                   if f.broker_errors >= max(t, 1) else None),  # no errors is never a run
    "feed_stale_ms": lambda f, t: _over(f.feed_stale_ms, t, f"feed {f.worst.get('feed', '')} silent for", " ms"),
    "book_invalid_ms": lambda f, t: _over(f.book_invalid_ms, t, f"book {f.worst.get('book', '')} not LIVE for",
                                          " ms"),
    "model": lambda f, t: f.model_problem,
    "clock_skew_ms": lambda f, t: _over(f.clock_skew_ms, t, f"clock skew {f.worst.get('skew', '')}", " ms"),
    "broker_disconnected": lambda f, t: None if f.broker_connected else "broker disconnected",
    "feed_down": lambda f, t: f.feed_problem,
}


@dataclass
class _Fired:
    state: TradingState
    detail: str
    since: int
    last_true: int


class TriggerSet:
    """The configured triggers with their hysteresis; `evaluate` says which state they want now."""

    def __init__(self, settings: TriggersSettings) -> None:
        self._specs: list[tuple[str, TriggerSettings, Condition]] = []
        for name, cond in CONDITIONS.items():
            spec: TriggerSettings = getattr(settings, name)
            if spec.enabled and spec.threshold is not None:
                self._specs.append((name, spec, cond))
        self.fired: dict[str, _Fired] = {}
        self.fire_counts: Counter[str] = Counter()

    @property
    def names(self) -> list[str]:
        """The triggers that are on."""
        return [name for name, _, _ in self._specs]

    def evaluate(self, facts: RiskFacts, now: int) -> tuple[TradingState, str, str]:
        """(wanted state, reason, by) after updating every trigger with these facts at time `now`."""
        for name, spec, cond in self._specs:
            detail = cond(facts, float(spec.threshold))  # type: ignore[arg-type]
            fired = self.fired.get(name)
            state = TradingState(spec.state)
            if detail is not None:
                if fired is None:
                    self.fired[name] = _Fired(state, detail, now, now)
                    self.fire_counts[name] += 1
                    log.warning("risk_trigger", trigger=name, detail=detail, leads_to=str(state), ts=now)
                else:
                    fired.detail = detail
                    fired.last_true = now
            elif fired is not None and now - fired.last_true >= spec.clear_after_ms * 1_000_000:
                del self.fired[name]
                log.info("risk_trigger_cleared", trigger=name, ts=now)
        if not self.fired:
            return TradingState.ACTIVE, "every trigger has cleared", "trigger:clear"
        name, worst = max(self.fired.items(), key=lambda kv: (_SEVERITY[kv[1].state], -kv[1].since))
        return worst.state, worst.detail, f"trigger:{name}"

    def release(self, facts: RiskFacts) -> list[str]:
        """Forget, without waiting for `clear_after_ms`, every fired trigger whose condition these facts
        do not meet (an operator's resume: the memory of a cleared condition must not undo it). Returns
        the names released."""
        released = []
        for name, spec, cond in self._specs:
            if name in self.fired and cond(facts, float(spec.threshold)) is None:  # type: ignore[arg-type]
                del self.fired[name]
                released.append(name)
                log.info("risk_trigger_released", trigger=name)
        return released

    def status(self) -> dict[str, dict[str, object]]:
        """The fired triggers: state they lead to, detail, since when."""
        return {n: {"state": str(f.state), "detail": f.detail, "since": f.since} for n, f in sorted(self.fired.items())}
