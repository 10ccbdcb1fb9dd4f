"""Model-signal strategy: hold a position while the model's score says so, with hysteresis.

The score is what the configured ONNX model (`[model] path`) predicts for the sample: a forward
return in bps for a regression model, the probability of an up move for a `mid_up@H` model (set
`center = 0.5`). With s = score - center: go long when s > entry, short when s < -entry (if
allowed); a long is held until s < exit, a short until s > -exit (exit < entry, so a score
hovering near the threshold does not flip the position every sample). A NaN score (no model
output, a failed score, a book that is not LIVE) leaves the current target alone and never
creates an order.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from daemon.events import TargetPosition
from daemon.features import FeatureSample
from strategies import Strategy, StrategyContext, StrategyParams


class OnnxSignalParams(StrategyParams):
    entry: float = Field(1.0, gt=0, allow_inf_nan=False, description="|score - center| to open a position")
    exit: float = Field(0.25, allow_inf_nan=False, description="close a long when score - center falls below this")
    center: float = Field(0.0, allow_inf_nan=False, description="the neutral score (0 for returns, 0.5 for "
                                                                "probabilities)")
    max_position: float = Field(1.0, gt=0, description="position held on a signal (decimal quantity)")
    allow_short: bool = True

    @model_validator(mode="after")
    def _check(self) -> OnnxSignalParams:
        if not self.exit < self.entry:
            raise ValueError(f"exit ({self.exit}) must be below entry ({self.entry}) for hysteresis")
        return self


class OnnxSignalStrategy(Strategy):
    Params = OnnxSignalParams
    needs_model = True

    def __init__(self, params: OnnxSignalParams, ctx: StrategyContext) -> None:
        super().__init__(params, ctx)
        self.p = params
        self._side: dict[str, int] = {}

    def on_sample(self, sample: FeatureSample) -> TargetPosition | None:
        """Long, short or flat from the score with entry/exit hysteresis; None (hold) on a NaN score."""
        score = sample.score
        if math.isnan(score):
            return None
        p = self.p
        s = score - p.center
        side = self._side.get(sample.symbol, 0)
        if (side > 0 and s < p.exit) or (side < 0 and s > -p.exit):
            side = 0
        if side == 0:
            if s > p.entry:
                side = 1
            elif s < -p.entry and p.allow_short:
                side = -1
        self._side[sample.symbol] = side
        lots = math.floor(p.max_position / self.ctx.instruments[sample.symbol].lot_size + 1e-9)
        confidence = min(1.0, abs(s) / p.entry) if side else 0.0
        reason = "long" if side > 0 else "short" if side < 0 else "flat"
        return TargetPosition(sample.symbol, sample.ts, side * lots, confidence, reason)


STRATEGY = OnnxSignalStrategy
