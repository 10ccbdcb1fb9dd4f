"""ModelRuntime: the model's place on the path: score each LIVE sample, watch drift, tell risk.

The engine hands it every sample of a traded symbol at the sampling tick. A LIVE sample is scored
(the score is set on the sample before the strategy sees it) and fed to that symbol's drift
monitor; a sample of a book that is not LIVE keeps a NaN score and is not scored (its book
features are NaN by construction, not by failure). A failed or non-finite score, or a feature
whose PSI exceeds `[risk] max_feature_psi`, makes the model unhealthy: the risk gate then refuses
every order that would add exposure, until the model recovers.
"""

from __future__ import annotations

import math
from pathlib import Path

import structlog

from daemon.features import FeatureSample, schema
from daemon.model.drift import DriftMonitor
from daemon.model.scorer import Scorer
from daemon.risk import RiskGate

log = structlog.get_logger("depthd.model")


class ModelRuntime:
    """Scorer + per-symbol drift monitors + the model-health signal for the risk gate."""

    def __init__(self, scorer: Scorer, risk: RiskGate, drift_window: int = 3000, drift_min_samples: int = 300,
                 drift_every: int = 50, max_feature_psi: float | None = None) -> None:
        self.scorer = scorer
        self.risk = risk
        self._window = drift_window
        self._min_samples = drift_min_samples
        self._every = drift_every
        self.max_feature_psi = max_feature_psi
        self.monitors: dict[str, DriftMonitor] = {}
        self.drift: dict[str, tuple[str, float]] = {}  # symbol -> (worst feature, its PSI)
        self.scored = 0
        self.score_errors = 0
        self._drifting: set[str] = set()
        self._updates: dict[str, int] = {}

    @classmethod
    def load(cls, path: str | Path, risk: RiskGate, drift_window: int = 3000, drift_min_samples: int = 300,
             max_feature_psi: float | None = None) -> ModelRuntime:
        """Load and check a model file against the feature schema (ModelError if it does not fit)."""
        scorer = Scorer.load(path, schema.NAMES, schema.SCHEMA_VERSION)
        log.info("model_loaded", path=str(path), sha256=scorer.model_hash, label=scorer.meta.label,
                 features=len(scorer.meta.feature_names), trainer=scorer.meta.trainer)
        return cls(scorer, risk, drift_window, drift_min_samples, max_feature_psi=max_feature_psi)

    def on_sample(self, sample: FeatureSample) -> None:
        """Score a LIVE sample in place and account it for drift; report health changes to risk."""
        if not sample.live:
            return
        score = self.scorer.score(sample.values)
        self.scored += 1
        sample.score = score
        if math.isnan(score):
            self.score_errors += 1
        mon = self.monitors.get(sample.symbol)
        if mon is None:
            mon = self.monitors[sample.symbol] = DriftMonitor(self.scorer.meta, schema.NAMES, self._window,
                                                              self._min_samples)
        mon.update(sample.values)
        n = self._updates[sample.symbol] = self._updates.get(sample.symbol, 0) + 1
        if n % self._every == 0:
            self._check_drift(sample.symbol, mon)
        self._tell_risk()

    def _check_drift(self, symbol: str, mon: DriftMonitor) -> None:
        feature, psi = mon.max_psi()
        if math.isnan(psi):
            return
        self.drift[symbol] = (feature, psi)
        limit = self.max_feature_psi
        over = limit is not None and psi > limit
        if over and symbol not in self._drifting:
            self._drifting.add(symbol)
            log.warning("feature_drift", symbol=symbol, feature=feature, psi=round(psi, 4), limit=limit)
        elif not over and symbol in self._drifting:
            self._drifting.discard(symbol)
            log.info("feature_drift_cleared", symbol=symbol, feature=feature, psi=round(psi, 4), limit=limit)

    def _tell_risk(self) -> None:
        problem = None
        if not self.scorer.healthy:
            problem = f"model score failed ({self.scorer.consecutive_errors} in a row)"
        elif self._drifting:
            worst = max(self._drifting, key=lambda s: self.drift[s][1])
            feature, psi = self.drift[worst]
            problem = f"feature drift: {worst} {feature} PSI {psi:.3f} > {self.max_feature_psi}"
        self.risk.model_problem = problem

    def stats(self) -> dict[str, object]:
        """For report.json and metrics: the model's identity, scores, errors and drift per symbol."""
        meta = self.scorer.meta
        return {"path": str(self.scorer.path), "sha256": self.scorer.model_hash, "label": meta.label,
                "schema_version": meta.schema_version, "features": len(meta.feature_names),
                "trainer": meta.trainer, "scored": self.scored, "score_errors": self.score_errors,
                "healthy": self.scorer.healthy,
                "drift": {s: {"feature": f, "psi": round(p, 6)} for s, (f, p) in sorted(self.drift.items())}}
