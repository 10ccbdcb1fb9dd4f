"""Depth-imbalance strategy: lean with the side of the book that stays heavier.

Go long when the chosen imbalance feature stays above `threshold` for `persistence_ms` (short
when below -threshold); flat otherwise. Confidence grows with how far past the threshold the
imbalance is and with how long it has persisted (full after `full_persistence_ms`); the target
position is `max_position * confidence`, rounded down to `position_step` (then to the lot grid)
so that small wiggles in confidence do not churn orders.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from daemon.events import TargetPosition
from daemon.features import FeatureSample
from daemon.features.schema import index_of
from strategies import Strategy, StrategyContext, StrategyParams


class ImbalanceParams(StrategyParams):
    feature: str = "imb_5"
    threshold: float = Field(0.3, gt=0, lt=1)
    persistence_ms: int = Field(500, ge=0, le=3_600_000)
    full_persistence_ms: int = Field(3_000, ge=1, le=3_600_000)
    max_position: float = Field(1.0, gt=0)
    position_step: float = Field(0.25, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ImbalanceParams:
        try:
            index_of(self.feature)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        if self.position_step > self.max_position:
            raise ValueError("position_step exceeds max_position")
        return self


class _Run:
    """The current run of the imbalance beyond the threshold on one side."""

    __slots__ = ("side", "since")

    def __init__(self) -> None:
        self.side = 0
        self.since = 0


class ImbalanceStrategy(Strategy):
    Params = ImbalanceParams

    def __init__(self, params: ImbalanceParams, ctx: StrategyContext) -> None:
        super().__init__(params, ctx)
        self.p = params
        self._col = index_of(params.feature)
        self._runs: dict[str, _Run] = {}

    def on_sample(self, sample: FeatureSample) -> TargetPosition | None:
        """Target from the imbalance run of this symbol: flat, or long/short scaled by confidence."""
        p = self.p
        run = self._runs.get(sample.symbol)
        if run is None:
            run = self._runs[sample.symbol] = _Run()
        x = float(sample.values[self._col])
        if not sample.live or math.isnan(x):
            run.side = 0
            return TargetPosition(sample.symbol, sample.ts, 0, 0.0, "no_signal")
        side = 1 if x > p.threshold else -1 if x < -p.threshold else 0
        if side != run.side:
            run.side = side
            run.since = sample.ts
        held_ms = (sample.ts - run.since) / 1e6
        if side == 0 or held_ms < p.persistence_ms:
            return TargetPosition(sample.symbol, sample.ts, 0, 0.0, "flat")
        magnitude = min(1.0, (abs(x) - p.threshold) / (1.0 - p.threshold))
        persistence = min(1.0, held_ms / p.full_persistence_ms)
        confidence = min(1.0, 0.5 * magnitude + 0.5 * persistence)
        steps = math.floor(p.max_position * confidence / p.position_step + 1e-9)
        lot_size = self.ctx.instruments[sample.symbol].lot_size
        lots = math.floor(steps * p.position_step / lot_size + 1e-9)
        reason = "long" if side > 0 else "short"
        return TargetPosition(sample.symbol, sample.ts, side * lots, confidence, reason)


STRATEGY = ImbalanceStrategy
