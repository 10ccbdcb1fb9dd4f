"""config.toml -> typed, validated settings.

Validation happens here, at the edge (DESIGN rule 5): an unknown key, a wrong type or an
out-of-range value is a ConfigError that names the file and the dotted key. Strategy parameters
are validated by the strategy's own model, loaded by name, so `check-config` catches them too.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from daemon.errors import ConfigError
from daemon.instruments import Instrument


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class DaemonSettings(_Section):
    mode: Literal["replay", "paper", "live"] = "replay"
    instance: str = Field("depthd", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    on_stop: Literal["cancel", "leave"] = Field("cancel", description="SIGTERM/SIGINT: cancel the open orders "
                                                "before exiting, or leave them working at the venue")
    stop_wait_s: float = Field(10.0, ge=0, le=600, description="how long a stop waits for its cancels to land "
                               "(keep it under systemd's TimeoutStopSec)")


class InstrumentSettings(_Section):
    tick_size: float = Field(gt=0, le=1e6)
    lot_size: float = Field(gt=0, le=1e6)


class ReplaySettings(_Section):
    symbol: str = Field("", description="symbol for generic inputs; empty = the file's stem")
    default_tick_size: float = Field(1e-8, gt=0, le=1e6)
    default_lot_size: float = Field(1e-8, gt=0, le=1e6)
    skip_bad: bool = False


class FeatureSettings(_Section):
    sample_interval_ms: int = Field(100, ge=1, le=3_600_000)
    pause_after_ms: int = Field(60_000, ge=1, le=86_400_000,
                                description="no samples once no market event arrived for this long")
    cost_notional: float = Field(1000.0, gt=0, allow_inf_nan=False,
                                 description="quote notional of the cost_buy_bps / cost_sell_bps features")
    imbalance_threshold: float = Field(0.3, gt=0, lt=1, description="imb_persist_s counts time beyond this")


class StrategySettings(_Section):
    name: str = Field("imbalance", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    symbols: list[str] = Field(default_factory=list, description="symbols traded; empty = every symbol")
    params: dict[str, Any] = Field(default_factory=dict)


class ExecutionSettings(_Section):
    order_type: Literal["market", "limit"] = "market"
    client_id_prefix: str = Field("dd", min_length=1, max_length=16, pattern=r"^[A-Za-z0-9]+$")


_LIMIT_FIELDS = ("max_position", "max_notional", "max_order_qty", "max_order_notional", "max_open_orders",
                 "max_orders_per_second", "max_orders_per_minute", "price_band_bps", "min_order_qty", "feed_stale_ms")


class RiskLimits(_Section):
    """One symbol's pre-trade limits (`[risk.symbols.SYM]`); a key left out takes `[risk]`'s value."""

    max_position: float | None = Field(None, gt=0, description="worst-case |position| (decimal quantity)")
    max_notional: float | None = Field(None, gt=0, description="worst-case |position| x price (quote)")
    max_order_qty: float | None = Field(None, gt=0)
    max_order_notional: float | None = Field(None, gt=0, description="one order's qty x price (quote)")
    max_open_orders: int | None = Field(None, ge=1, le=10_000)
    max_orders_per_second: float | None = Field(None, gt=0, description="at most this many orders in any 1 s "
                                                "(sliding window; fractions round down, at least 1)")
    max_orders_per_minute: float | None = Field(None, gt=0, description="at most this many orders in any 60 s "
                                                "(sliding window; fractions round down, at least 1)")
    price_band_bps: float | None = Field(None, gt=0, le=10_000, description="limit price at most this far "
                                         "from mid; market orders only into this much depth")
    min_order_qty: float | None = Field(None, ge=0)
    feed_stale_ms: int | None = Field(None, ge=1, le=86_400_000, description="no new orders once the "
                                      "symbol's feed has been silent this long")


class TriggerSettings(_Section):
    """One automatic trigger: the threshold that fires it and the state it leads to. Hysteresis: once
    fired it stays until its condition has been clear for `clear_after_ms`."""

    enabled: bool = True
    threshold: float | None = Field(None, ge=0, description="unset = the trigger is off")
    state: Literal["REDUCING", "HALTED"] = "REDUCING"
    clear_after_ms: int = Field(10_000, ge=0, le=86_400_000)


class DailyLossTrigger(TriggerSettings):
    state: Literal["REDUCING", "HALTED"] = "HALTED"
    reset_time: str = Field("00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM the day starts")
    reset_zone: str = Field("UTC", description="IANA time zone of reset_time")

    @model_validator(mode="after")
    def _zone(self) -> DailyLossTrigger:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.reset_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.reset_zone!r}") from None
        return self


class RejectRateTrigger(TriggerSettings):
    threshold: float | None = Field(0.5, ge=0, le=1, description="rejected / sent over the window")
    window_ms: int = Field(60_000, ge=1_000, le=86_400_000)
    min_orders: int = Field(10, ge=1, description="no verdict on fewer orders than this in the window")


def _trigger(threshold: float | None, state: str = "REDUCING") -> Any:
    return Field(default_factory=lambda: TriggerSettings(threshold=threshold, state=state))


class TriggersSettings(_Section):
    daily_loss: DailyLossTrigger = Field(default_factory=DailyLossTrigger)
    drawdown: TriggerSettings = _trigger(None, "HALTED")
    fill_breach: TriggerSettings = _trigger(0.0, "HALTED")
    reject_rate: RejectRateTrigger = Field(default_factory=RejectRateTrigger)
    broker_errors: TriggerSettings = _trigger(5, "HALTED")
    feed_stale_ms: TriggerSettings = _trigger(5_000)
    book_invalid_ms: TriggerSettings = _trigger(5_000)
    model: TriggerSettings = _trigger(0.0)
    clock_skew_ms: TriggerSettings = _trigger(None)
    broker_disconnected: TriggerSettings = _trigger(0.0, "HALTED")
    feed_down: TriggerSettings = _trigger(0.0)


class RiskSettings(_Section):
    max_position: float = Field(1.0, gt=0)
    max_notional: float = Field(1_000_000.0, gt=0)
    max_order_qty: float = Field(1.0, gt=0)
    max_order_notional: float = Field(1_000_000.0, gt=0)
    max_open_orders: int = Field(10, ge=1, le=10_000)
    max_orders_per_second: float = Field(5.0, gt=0)
    max_orders_per_minute: float = Field(120.0, gt=0)
    price_band_bps: float = Field(100.0, gt=0, le=10_000)
    min_order_qty: float = Field(0.0, ge=0)
    feed_stale_ms: int = Field(5_000, ge=1, le=86_400_000)
    symbols: dict[str, RiskLimits] = Field(default_factory=dict)
    max_feature_psi: float | None = Field(None, gt=0, description="refuse new exposure while a model feature's "
                                          "PSI against its training histogram exceeds this; unset = report only")
    flatten_on_halt: bool = Field(False, description="an automatic halt also flattens, within the price band")
    evaluate_ms: int = Field(500, ge=10, le=60_000, description="the triggers are judged this often (and "
                             "right after every fill and broker error)")
    halt_file: str = Field("", description="where a halt is persisted so it survives a restart; "
                                           "required in paper and live mode")
    triggers: TriggersSettings = Field(default_factory=TriggersSettings)

    def limits_for(self, symbol: str) -> RiskLimits:
        """The limits of one symbol, every field set: its own table's keys over the defaults."""
        own = self.symbols.get(symbol)
        merged = {f: getattr(self, f) for f in _LIMIT_FIELDS}
        if own is not None:
            merged.update({f: v for f in _LIMIT_FIELDS if (v := getattr(own, f)) is not None})
        return RiskLimits(**merged)


class ModelSettings(_Section):
    path: str = Field("", description="ONNX model written by `depthd train`; empty = no model")
    drift_window: int = Field(3000, ge=10, le=10_000_000, description="samples per symbol in the PSI window")
    drift_min_samples: int = Field(300, ge=1, le=10_000_000, description="no PSI before this many samples")


class ControlSettings(_Section):
    """The HTTP control endpoint (`depthd kill` / `resume` / `status` talk to it)."""

    enabled: bool = Field(False, description="serve the control endpoint (a paced replay, paper and live)")
    host: str = Field("127.0.0.1", min_length=1, description="address to bind; keep it on loopback")
    port: int = Field(8787, ge=0, le=65_535)
    token_env: str = Field("DEPTHD_CONTROL_TOKEN", min_length=1, description="environment variable with the token")
    token_file: str = Field("", description="file with the token (mode 600), used when the variable is unset")


class FeedSettings(_Section):
    """The live market-data feed of `depthd run` / `depthd record`: one venue, its symbols, endpoints."""

    venue: Literal["binance", "binance_usdm", "okx", "kraken", "ccxt", "ib"] = "binance"
    symbols: list[str] = Field(default_factory=list, description="the venue's symbols (BTCUSDT, BTC-USDT, XMR/USD)")
    ws_url: str = Field("", description="websocket base URL; empty = the venue's production endpoint")
    rest_url: str = Field("", description="REST base URL; empty = the venue's production endpoint")
    depth_speed: Literal["100ms", "250ms", "500ms", "1000ms"] = Field("100ms", description="Binance diff-depth "
                                                                        "cadence")
    trades: Literal["trade", "aggTrade", "none"] = "trade"
    book_ticker: bool = Field(True, description="Binance bookTicker: the venue's best bid/ask checks the book")
    snapshot_limit: int = Field(1000, ge=5, le=5000, description="levels a side in a REST depth snapshot")
    ping_interval_s: float = Field(20.0, gt=0, le=600)
    ping_timeout_s: float = Field(10.0, gt=0, le=600)
    stale_after_s: float = Field(10.0, gt=0, le=3600, description="no frame for this long => reconnect")
    reconnect_initial_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    rest_timeout_s: float = Field(10.0, gt=0, le=120)
    rest_weight_limit: int = Field(0, ge=0, description="REST weight per minute we allow ourselves; 0 = "
                                   "the venue's default (Binance spot 6000, USD-M 2400), kept at 80%")
    max_resyncs: int = Field(5, ge=1, le=1000, description="more resyncs than this within resync_window_s "
                             "make the symbol untradeable")
    resync_window_s: float = Field(60.0, gt=0, le=86_400)
    ccxt_exchange: str = Field("", pattern=r"^[a-z0-9]*$", description="ccxt exchange id (venue = ccxt)")
    ccxt_sandbox: bool = False
    ccxt_depth: int = Field(0, ge=0, le=5000, description="levels a side asked of watch_order_book; 0 = the "
                            "venue's default channel (a limit can select a channel that needs a login, e.g. OKX 50)")
    ib_host: str = "127.0.0.1"
    ib_port: int = Field(4002, ge=1, le=65_535, description="TWS 7497 / IB Gateway 4002 (paper accounts)")
    ib_client_id: int = Field(17, ge=0)
    ib_depth_rows: int = Field(10, ge=1, le=100)
    ib_contracts: dict[str, dict[str, str]] = Field(default_factory=dict, description="symbol -> ib_async "
                                                    "Contract fields (secType, symbol, exchange, currency)")

    @model_validator(mode="after")
    def _venue_needs(self) -> FeedSettings:
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols: listed twice")
        if self.venue == "ccxt" and not self.ccxt_exchange:
            raise ValueError("ccxt_exchange: required when venue = 'ccxt'")
        if self.venue == "ib":
            missing = [s for s in self.symbols if s not in self.ib_contracts]
            if missing:
                raise ValueError(f"ib_contracts: no contract for {missing}")
        for key in ("ws_url", "rest_url"):
            url = getattr(self, key)
            if url and not url.startswith(("ws://", "wss://", "http://", "https://")):
                raise ValueError(f"{key}: not a ws(s):// or http(s):// URL (got {url!r})")
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise ValueError("reconnect_initial_s exceeds reconnect_max_s")
        return self


class RecordSettings(_Section):
    """Recording of every raw frame and REST answer, with its receive time (zstd NDJSON, DESIGN formats)."""

    enabled: bool = Field(False, description="record while trading (`depthd record` always records)")
    dir: str = Field("recordings", min_length=1)
    rotate_minutes: float = Field(60, gt=0, le=1440, description="a new file at every boundary of this many "
                                  "minutes (of receive time, UTC)")
    max_file_mb: int = Field(512, ge=1, le=1_000_000, description="... or once a file is this big")
    zstd_level: int = Field(3, ge=1, le=19)
    flush_interval_ms: int = Field(1000, ge=10, le=60_000, description="data reaches the disk at least this often")


class BrokerSettings(_Section):
    """Where `depthd run` sends orders: the paper broker, or a live venue through ccxt or IB (mode = "live")."""

    kind: Literal["paper", "ccxt", "ib"] = "paper"
    exchange: str = Field("", pattern=r"^[a-z0-9]*$", description="ccxt exchange id (binance, kraken, ...)")
    sandbox: bool = Field(False, description="the venue's testnet/sandbox (ccxt set_sandbox_mode)")
    credentials_file: str = Field("", description="`api_key = ...` / `api_secret = ...` lines, mode 600; the "
                                  "environment's DEPTHD_<EXCHANGE>_API_KEY/_API_SECRET come first")
    rest_url: str = Field("", description="send every REST call here instead (a loopback venue, a proxy)")
    ws_url: str = Field("", description="... and every websocket")
    positions: bool = Field(False, description="the venue holds positions (derivatives); false = spot balances")
    cancel_orphans: bool = Field(False, description="cancel open orders at the venue that this daemon did not send")
    reconcile_s: float = Field(30.0, gt=0, le=3600, description="periodic reconciliation with the venue")
    poll_s: float = Field(2.0, gt=0, le=600, description="order/fill polling behind the user stream")
    ib_host: str = "127.0.0.1"
    ib_port: int = Field(4002, ge=1, le=65_535, description="TWS 7497 / IB Gateway 4002 (paper; live 7496 / 4001)")
    ib_client_id: int = Field(21, ge=1, description="the gateway's API client id: the same on every start (IB "
                              "lists a client's open orders by it), not the feed's, never 0")
    ib_account: str = Field("", description="the account orders go to, when the login manages several")
    ib_tif: Literal["DAY", "GTC", "IOC"] = "DAY"
    ib_contracts: dict[str, dict[str, str]] = Field(default_factory=dict, description="symbol -> ib_async Contract "
                                                    "fields; empty = [feed] ib_contracts")
    connect_wait_s: float = Field(30.0, gt=0, le=600, description="IB: how long start waits for TWS/Gateway")

    @model_validator(mode="after")
    def _needs(self) -> BrokerSettings:
        if self.kind == "ccxt" and not self.exchange:
            raise ValueError("exchange: required when kind = 'ccxt'")
        for key in ("rest_url", "ws_url"):
            url = getattr(self, key)
            if url and not url.startswith(("ws://", "wss://", "http://", "https://")):
                raise ValueError(f"{key}: not a ws(s):// or http(s):// URL (got {url!r})")
        return self


class JournalSettings(_Section):
    """The SQLite journal of orders, fills and trading state (`depthd run`): recovery after a restart."""

    path: str = Field("", description="journal file; empty = no journal (refused in live mode)")
    snapshot_s: float = Field(60.0, gt=0, le=86_400, description="positions are journaled this often")


class PaperSettings(_Section):
    latency_us: int = Field(0, ge=0, le=60_000_000)
    taker_fee_bps: float = Field(0.0, ge=-100, le=100)
    maker_fee_bps: float = Field(0.0, ge=-100, le=100)


class ReportSettings(_Section):
    top_levels: int = Field(5, ge=1, le=100)
    max_fills: int = Field(100_000, ge=0, le=10_000_000, description="fills listed in report.json")


class Settings(_Section):
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    instruments: dict[str, InstrumentSettings] = Field(default_factory=dict)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    feed: FeedSettings = Field(default_factory=FeedSettings)
    record: RecordSettings = Field(default_factory=RecordSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)

    @model_validator(mode="after")
    def _limits_within_defaults(self) -> Settings:
        for sym in self.risk.symbols:
            lim = self.risk.limits_for(sym)
            if lim.max_order_qty > lim.max_position:
                raise ValueError(f"risk.symbols.{sym}: max_order_qty exceeds max_position")
        if self.broker.kind == "ib":
            contracts = self.broker.ib_contracts or self.feed.ib_contracts
            missing = [s for s in self.feed.symbols if s not in contracts]
            if missing:
                raise ValueError(f"broker.ib_contracts: no contract for {missing} (nor in [feed] ib_contracts)")
            if self.feed.venue == "ib" and self.feed.ib_client_id == self.broker.ib_client_id:
                raise ValueError("broker.ib_client_id: the feed uses the same IB client id; give each its own")
        if self.daemon.mode == "live" and (self.broker.kind == "paper" or not self.journal.path):
            raise ValueError("daemon.mode: live needs [broker] kind = 'ccxt' or 'ib' and a [journal] path (orders are "
                             "journaled before they are sent and reconciled with the venue on start)")
        if self.daemon.mode == "paper" and self.broker.kind != "paper":
            raise ValueError(f"broker.kind: {self.broker.kind!r} sends real orders; set daemon.mode = 'live'")
        if self.daemon.mode in ("paper", "live") and not self.risk.halt_file:
            raise ValueError(f"risk.halt_file: required in {self.daemon.mode} mode, so that a halt survives a "
                             "restart")
        if self.risk.max_order_qty > self.risk.max_position:
            raise ValueError("risk: max_order_qty exceeds max_position")
        return self

    def instrument(self, symbol: str) -> Instrument:
        """The tick/lot grid of a symbol: its [instruments] table, else the replay defaults."""
        spec = self.instruments.get(symbol)
        if spec is not None:
            return Instrument(symbol, spec.tick_size, spec.lot_size)
        return Instrument(symbol, self.replay.default_tick_size, self.replay.default_lot_size)


def load_settings(path: str | Path) -> Settings:
    """Read and validate a config file; every problem is a ConfigError naming file and key."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return settings_from_dict(raw, source=str(p))


def settings_from_dict(raw: dict[str, Any], source: str = "<config>") -> Settings:
    """Validate an already-parsed config mapping (also the strategy's own params)."""
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(source, exc)) from None
    from strategies import StrategyLoadError, load_strategy, validate_params

    try:
        validate_params(settings.strategy.name, settings.strategy.params)
    except StrategyLoadError as exc:
        raise ConfigError(f"{source}: strategy: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(_describe(source, exc, prefix="strategy.params")) from None
    model = settings.model.path
    if load_strategy(settings.strategy.name).needs_model and not model:
        raise ConfigError(f"{source}: strategy {settings.strategy.name!r} scores with a model: set [model] path "
                          "to a file written by `depthd train`")
    if model and not Path(model).is_file():
        raise ConfigError(f"{source}: model.path: no such file (got {model!r})")
    return settings


def _describe(source: str, exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"] if part != "__root__")
        key = f"{prefix}.{key}" if prefix and key else (prefix or key)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] != "missing":
                msg += f" (got {err['input']!r})"
        lines.append(f"{source}: {key or '<top level>'}: {msg}")
    return "\n".join(lines)
