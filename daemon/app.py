"""Assembles the path and runs it. `build_path` is the one wiring function for every mode: only
the clock, the source and the broker differ between live and replay (DESIGN: the path)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from daemon.brokers.paper import PaperBroker
from daemon.clock import Clock
from daemon.config import Settings
from daemon.engine import Engine, ExecutionPolicy
from daemon.events import OrderType
from daemon.features import FeatureCalculator
from daemon.features.calculator import FeatureParams
from daemon.instruments import Instrument
from daemon.portfolio import Portfolio
from daemon.risk import RiskGate
from daemon.risk.monitor import RiskMonitor
from daemon.risk.state import HaltStore, TradingStateMachine
from strategies import StrategyContext, build_strategy


@dataclass
class TradingPath:
    """The assembled objects of one daemon: the engine and the parts it routes between."""

    engine: Engine
    broker: PaperBroker
    portfolio: Portfolio
    risk: RiskGate
    features: FeatureCalculator
    instruments: dict[str, Instrument]
    state: TradingStateMachine
    monitor: RiskMonitor


def instrument_lookup(settings: Settings, cache: dict[str, Instrument]) -> Callable[[str], Instrument]:
    """A memoised symbol -> Instrument function over the config's [instruments] and defaults."""

    def lookup(symbol: str) -> Instrument:
        inst = cache.get(symbol)
        if inst is None:
            inst = cache[symbol] = settings.instrument(symbol)
        return inst

    return lookup


def build_path(settings: Settings, clock: Clock, symbols: Iterable[str]) -> TradingPath:
    """Build engine, features, strategy, risk, paper broker and portfolio for these symbols."""
    instruments: dict[str, Instrument] = {}
    instrument = instrument_lookup(settings, instruments)
    for symbol in symbols:
        instrument(symbol)
    fset = settings.features
    features = FeatureCalculator(instruments, FeatureParams(fset.cost_notional, fset.imbalance_threshold))
    portfolio = Portfolio(instruments)
    risk = RiskGate(settings.risk, instrument, clock)
    policy = ExecutionPolicy(OrderType(settings.execution.order_type), settings.execution.client_id_prefix)
    engine = Engine(clock, instrument, features, risk, portfolio, policy,
                    sample_interval_ns=settings.features.sample_interval_ms * 1_000_000,
                    traded_symbols=settings.strategy.symbols, max_fills_kept=settings.report.max_fills,
                    pause_after_ns=settings.features.pause_after_ms * 1_000_000)
    for symbol in instruments:
        engine.add_symbol(symbol)
    paper = settings.paper
    broker = PaperBroker(clock, engine.books, instruments, engine.on_broker_event,
                         latency_ns=paper.latency_us * 1_000, taker_fee_bps=paper.taker_fee_bps,
                         maker_fee_bps=paper.maker_fee_bps)
    if settings.model.path:
        from daemon.model.live import ModelRuntime

        engine.model = ModelRuntime.load(settings.model.path, risk, settings.model.drift_window,
                                         settings.model.drift_min_samples, settings.risk.max_feature_psi)
    ctx = StrategyContext(clock, instruments, portfolio.position)
    strategy = build_strategy(settings.strategy.name, settings.strategy.params, ctx)
    engine.attach(strategy, broker)
    store = HaltStore(settings.risk.halt_file) if settings.risk.halt_file else None
    machine = TradingStateMachine(clock, store)
    machine.set_listener(engine.halt.on_transition)
    risk.state = machine.state
    engine.risk_eval_ns = settings.risk.evaluate_ms * 1_000_000
    engine.monitor = RiskMonitor(settings.risk, clock, machine, risk, portfolio, instrument,
                                 lambda: {s: sync.live for s, sync in engine.syncs.items()},
                                 lambda: getattr(broker, "connected", True))
    return TradingPath(engine, broker, portfolio, risk, features, instruments, machine, engine.monitor)
