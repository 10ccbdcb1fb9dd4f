"""User strategies, loaded by name from config.toml (`[strategy] name = "imbalance"`).

A strategy module `strategies/<name>.py` exposes `STRATEGY`, a `Strategy` subclass with a pydantic
`Params` model (extra keys forbidden). A strategy only sees feature samples, fills and its
context (clock, instruments, positions), so the same strategy runs in replay and live. It answers
with target positions; the engine turns them into orders and the risk gate vets them.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from daemon.clock import Clock
from daemon.events import Fill, TargetPosition
from daemon.features import FeatureSample
from daemon.instruments import Instrument

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StrategyLoadError(Exception):
    """No strategy by that name, or its module does not expose a proper STRATEGY."""


class StrategyParams(BaseModel):
    """Base of a strategy's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """All a strategy may touch besides its inputs: time, instruments and its positions (lots)."""

    clock: Clock
    instruments: Mapping[str, Instrument]
    position: Callable[[str], int]


class Strategy(ABC):
    """Base class: react to feature samples (and fills) with target positions."""

    Params: ClassVar[type[StrategyParams]] = StrategyParams
    # True when the strategy trades on `sample.score`: the config must then name a model.
    needs_model: ClassVar[bool] = False

    def __init__(self, params: StrategyParams, ctx: StrategyContext) -> None:
        self.params = params
        self.ctx = ctx

    @abstractmethod
    def on_sample(self, sample: FeatureSample) -> TargetPosition | None:
        """A new feature sample of one symbol; return a target position, or None to keep the last."""

    def on_fill(self, fill: Fill) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """One of our orders filled."""


def load_strategy(name: str) -> type[Strategy]:
    """The Strategy class of `strategies/<name>.py`."""
    if not _NAME.match(name):
        raise StrategyLoadError(f"invalid strategy name {name!r}")
    try:
        module = importlib.import_module(f"strategies.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"strategies.{name}":
            raise StrategyLoadError(f"no strategy named {name!r} (no strategies/{name}.py)") from None
        raise
    cls = getattr(module, "STRATEGY", None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyLoadError(f"strategies/{name}.py does not define STRATEGY = <Strategy subclass>")
    return cls


def validate_params(name: str, params: Mapping[str, Any]) -> StrategyParams:
    """Validate a strategy's params with its own model (raises pydantic's ValidationError)."""
    return load_strategy(name).Params.model_validate(dict(params))


def build_strategy(name: str, params: Mapping[str, Any], ctx: StrategyContext) -> Strategy:
    """Load, validate and construct a strategy."""
    cls = load_strategy(name)
    return cls(cls.Params.model_validate(dict(params)), ctx)
