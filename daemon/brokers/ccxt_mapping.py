"""Pure translations between depthd's orders/fills (ticks, lots) and ccxt's unified dicts, and ccxt error triage.

No I/O and no clock reads: the gateway (daemon/brokers/ccxt_gateway.py) hands these what ccxt returns or raises,
with the time. Decimals become ticks and lots only through the symbol's Instrument.

- `VenueReports` applies ccxt order and trade dicts to an OrderTracker and returns the BrokerEvents to deliver;
  it maps symbols (daemon <-> ccxt), venue order ids to client ids, and keeps the per-symbol trade cursor for
  polling (the newest trade time seen, held back while a trade may belong to an UNKNOWN order).
- `RateGate` keeps the throttle (429 Retry-After) and ban (418) deadlines and the venue's used weight.
- Functions: `create_args`, `order_state`, `to_fill`, `reject_reason` (stable OrderRejected reasons:
  insufficient_funds, duplicate_client_id, unknown_symbol, invalid_order, auth_error, clock_skew, rate_limited,
  ip_banned, exchange_error), `send_outcome_unknown`, `is_rate_limit`, `is_ban`, `retry_after_s`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import ccxt
import structlog

from daemon.brokers.lifecycle import OrderState
from daemon.brokers.orders import OrderTracker
from daemon.events import BrokerEvent, Fill, Liquidity, Order, OrderType, Side
from daemon.instruments import Instrument, OffGridError

log = structlog.get_logger("depthd.brokers.ccxt")
WEIGHT_HEADERS = ("x-mbx-used-weight-1m", "x-mbx-used-weight")

_STATES = {"closed": OrderState.FILLED, "canceled": OrderState.CANCELED, "cancelled": OrderState.CANCELED,
           "expired": OrderState.EXPIRED, "rejected": OrderState.REJECTED}
_BAN = re.compile(r"(^|\D)418(\D|$)|\bbanned\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CreateArgs:
    """The arguments of one `exchange.create_order` call."""

    symbol: str
    type: str
    side: str
    amount: float
    price: float | None
    params: dict[str, Any]


def create_args(order: Order, inst: Instrument, ccxt_symbol: str) -> CreateArgs:
    """ccxt create_order arguments for an order: decimals from ticks/lots, the client id as clientOrderId."""
    price = inst.price(order.limit_px) if order.order_type is OrderType.LIMIT and order.limit_px is not None else None
    side = "buy" if order.side is Side.BUY else "sell"
    return CreateArgs(ccxt_symbol, str(order.order_type), side, inst.qty(order.qty), price,
                      {"clientOrderId": order.client_id})


def order_client_id(o: Mapping[str, Any]) -> str | None:
    """The client id of a ccxt order dict: the original one (a Binance cancel answer carries its own id)."""
    info = o.get("info") or {}
    orig = info.get("origClientOrderId") if isinstance(info, Mapping) else None
    return orig or o.get("clientOrderId") or None


def order_state(o: Mapping[str, Any], filled_lots: int) -> OrderState | None:
    """The lifecycle state a ccxt order dict reports, or None for a status depthd does not know."""
    status = o.get("status")
    if status == "open":
        return OrderState.PARTIALLY_FILLED if filled_lots > 0 else OrderState.NEW
    return _STATES.get(str(status))


def filled_lots(o: Mapping[str, Any], inst: Instrument) -> int:
    """The cumulative filled quantity of a ccxt order dict, in lots (0 when absent)."""
    filled = o.get("filled")
    return 0 if filled is None else inst.lot(float(filled))


def trade_side(t: Mapping[str, Any]) -> Side:
    """The side of a ccxt trade dict; ValueError on anything but buy/sell."""
    side = t.get("side")
    if side == "buy":
        return Side.BUY
    if side == "sell":
        return Side.SELL
    raise ValueError(f"trade {t.get('id')!r}: side {side!r} is neither buy nor sell")


def trade_client_id(t: Mapping[str, Any]) -> str | None:
    """A ccxt trade's client order id when the venue told it (a Binance executionReport's `c`), else None."""
    info = t.get("info") or {}
    return (info.get("c") or info.get("clientOrderId") or None) if isinstance(info, Mapping) else None


def to_fill(t: Mapping[str, Any], client_id: str, symbol: str, inst: Instrument, base: str, quote: str,
            ts: int) -> Fill:
    """A depthd Fill from a ccxt trade dict; the fee in the quote currency (a base-currency fee at the trade price).

    A fee in a third currency (e.g. BNB) cannot be valued here: it is left out (0.0) and logged.
    """
    trade_id = t.get("id")
    if not trade_id:
        raise ValueError(f"trade of order {client_id!r} has no id")
    price = float(t["price"])
    fee = 0.0
    f = t.get("fee") or {}
    cost = f.get("cost")
    if cost:
        currency = f.get("currency")
        if currency in (quote, None):
            fee = float(cost)
        elif currency == base:
            fee = float(cost) * price
        else:
            log.warning("fee_other_currency", client_id=client_id, trade_id=trade_id, currency=currency, cost=cost)
    liq = Liquidity.MAKER if t.get("takerOrMaker") == "maker" else Liquidity.TAKER
    return Fill(client_id, symbol, ts, trade_side(t), inst.tick(price), inst.lot(float(t["amount"])), fee, liq,
                str(trade_id))


def reject_reason(exc: BaseException) -> str:
    """A stable OrderRejected reason for an error a create raised that proves the venue did not book the order."""
    if isinstance(exc, ccxt.InsufficientFunds):
        return "insufficient_funds"
    if isinstance(exc, ccxt.DuplicateOrderId):
        return "duplicate_client_id"
    if isinstance(exc, ccxt.BadSymbol):
        return "unknown_symbol"
    if isinstance(exc, ccxt.InvalidOrder):
        return "invalid_order"
    if isinstance(exc, ccxt.AuthenticationError):
        return "auth_error"
    if isinstance(exc, ccxt.InvalidNonce):
        return "clock_skew"
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return "ip_banned" if is_ban(exc) else "rate_limited"
    if isinstance(exc, ccxt.ExchangeError):
        return "exchange_error"
    return "error"


def send_outcome_unknown(exc: BaseException) -> bool:
    """Whether a create that raised this may still have reached the venue (timeout, dropped connection)."""
    return isinstance(exc, ccxt.NetworkError) and not isinstance(
        exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded | ccxt.InvalidNonce)


def is_rate_limit(exc: BaseException) -> bool:
    """A 429-style refusal (or a 418 ban): the venue did not process the request."""
    return isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded)


def is_ban(exc: BaseException) -> bool:
    """Binance's 418 (IP banned): ccxt raises DDoSProtection with the status (and 'banned') in the message."""
    return isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded) and bool(_BAN.search(str(exc)))


def retry_after_s(headers: Mapping[str, Any] | None, default: float) -> float:
    """The Retry-After header in seconds (case-insensitive), or `default` when absent or not a number."""
    v = _header(headers, ("retry-after",))
    try:
        return default if v is None else max(0.0, float(v))
    except (TypeError, ValueError):
        return default


def _header(headers: Mapping[str, Any] | None, names: Iterable[str]) -> Any:
    wanted = set(names)
    for k, v in (headers or {}).items():
        if str(k).lower() in wanted:
            return v
    return None


class RateGate:
    """Throttle and ban deadlines (monotonic seconds, given by the caller) and the venue's used request weight."""

    def __init__(self, default_retry_after_s: float = 1.0, default_ban_s: float = 60.0) -> None:
        self.default_retry_after_s = default_retry_after_s
        self.default_ban_s = default_ban_s
        self.throttle_until = 0.0
        self.ban_until = 0.0
        self.used_weight = 0

    def note_failure(self, exc: BaseException, headers: Mapping[str, Any] | None, now: float) -> tuple[str, float]:
        """Classify a failed request: ("ban" | "rate_limit" | "network" | "", Retry-After s); sets the deadlines."""
        if is_ban(exc):
            after = retry_after_s(headers, self.default_ban_s)
            self.ban_until = max(self.ban_until, now + after)
            return "ban", after
        if is_rate_limit(exc):
            after = retry_after_s(headers, self.default_retry_after_s)
            self.throttle_until = max(self.throttle_until, now + after)
            return "rate_limit", after
        if isinstance(exc, ccxt.NetworkError) and not isinstance(exc, ccxt.InvalidNonce):
            return "network", 0.0
        return "", 0.0

    def note_success(self, headers: Mapping[str, Any] | None) -> None:
        """Keep the used weight a successful answer reports (Binance X-MBX-USED-WEIGHT-1M)."""
        v = _header(headers, WEIGHT_HEADERS)
        if v is not None and str(v).strip().isdigit():
            self.used_weight = int(v)

    def banned(self, now: float) -> bool:
        """The IP ban's Retry-After has not passed."""
        return now < self.ban_until

    def wait_s(self, now: float) -> float:
        """Seconds until a request may leave (0 when not throttled)."""
        return max(0.0, self.throttle_until - now)


class VenueReports:
    """Applies ccxt order and trade dicts to an OrderTracker; each method returns the BrokerEvents to deliver."""

    def __init__(self, tracker: OrderTracker, instruments: Mapping[str, Instrument]) -> None:
        self.tracker = tracker
        self.instruments = dict(instruments)
        self.stats: Counter[str] = Counter()
        self.ccxt_symbol: dict[str, str] = {}
        self._daemon_symbol: dict[str, str] = {}
        self._base: dict[str, str] = {}
        self._quote: dict[str, str] = {}
        self._by_venue_id: dict[str, str] = {}
        self.trade_since: dict[str, int] = {}

    def bind(self, markets: Mapping[str, Any], markets_by_id: Mapping[str, Any] | None) -> None:
        """Map each instrument (a ccxt symbol or a venue id such as BTCUSDT) to the venue's loaded market."""
        for sym in self.instruments:
            market = markets.get(sym)
            by_id = (markets_by_id or {}).get(sym)
            if market is None and by_id:
                market = by_id[0] if isinstance(by_id, list) else by_id
            if market is None:
                raise ValueError(f"the venue has no market {sym!r} (neither a ccxt symbol nor a venue id)")
            self.ccxt_symbol[sym] = market["symbol"]
            self._daemon_symbol[market["symbol"]] = sym
            self._base[sym] = market["base"]
            self._quote[sym] = market["quote"]

    def daemon_symbol(self, ccxt_symbol: Any) -> str | None:
        """The daemon's symbol for a ccxt symbol, or None when it is not one of ours."""
        return self._daemon_symbol.get(ccxt_symbol)

    def order(self, o: Mapping[str, Any], ts: int, client_id: str | None = None) -> list[BrokerEvent]:
        """One ccxt order dict (create/cancel answer, stream update, poll): its status through the tracker."""
        cid = client_id or order_client_id(o)
        view = None if cid is None else self.tracker.get(cid)
        if cid is None or view is None:
            self.stats["order_report_not_ours"] += 1
            return []
        sym = view.order.symbol
        try:
            filled = filled_lots(o, self.instruments[sym])
        except (OffGridError, TypeError, ValueError) as exc:
            self.stats["bad_order_report"] += 1
            log.error("bad_order_report", client_id=cid, error=str(exc))
            return []
        state = order_state(o, filled)
        if state is None:
            self.stats["order_status_unknown"] += 1
            return []
        vid = None if o.get("id") is None else str(o["id"])
        if vid is not None:
            self._by_venue_id[vid] = cid
        reason = "expired" if state is OrderState.EXPIRED else "venue_rejected" if state is OrderState.REJECTED else ""
        return self.tracker.status(cid, ts, state, filled, vid, reason)

    def trades(self, trades: Iterable[Mapping[str, Any]], ts: int) -> list[BrokerEvent]:
        """ccxt trade dicts (stream, poll, create answer) as fills through the tracker, each trade id applied once."""
        unresolved = bool(self.tracker.needs_lookup())
        newest: dict[str, int] = {}
        pinned: dict[str, int] = {}
        events: list[BrokerEvent] = []
        for t in trades:
            sym = self.daemon_symbol(t.get("symbol"))
            if sym is None:
                self.stats["trade_other_symbol"] += 1
                continue
            ts_ms = t.get("timestamp")
            if ts_ms is not None:
                newest[sym] = max(newest.get(sym, 0), int(ts_ms))
            cid = self._by_venue_id.get(str(t.get("order"))) or trade_client_id(t)
            if cid is None or self.tracker.get(cid) is None:
                self.stats["trade_not_ours"] += 1
                if unresolved and ts_ms is not None:  # may be an UNKNOWN order's: fetch it again next poll
                    pinned[sym] = min(pinned.get(sym, int(ts_ms)), int(ts_ms))
                continue
            try:
                fill = to_fill(t, cid, sym, self.instruments[sym], self._base[sym], self._quote[sym], ts)
            except (OffGridError, ValueError, KeyError, TypeError) as exc:
                self.stats["bad_trade"] += 1
                log.error("bad_trade", client_id=cid, error=str(exc))
                continue
            events += self.tracker.fill(fill)
        for sym, ts_ms in newest.items():
            self.trade_since[sym] = max(self.trade_since.get(sym, 0), min(ts_ms, pinned.get(sym, ts_ms)))
        return events

    def create_answer(self, o: Mapping[str, Any], args: CreateArgs, client_id: str, ts: int) -> list[BrokerEvent]:
        """A create's answer: its status, then the fills it lists (taker fills; ccxt leaves side and order empty)."""
        events = self.order({**o, "symbol": o.get("symbol") or args.symbol}, ts, client_id)
        vid = None if o.get("id") is None else str(o["id"])
        listed = [{**t, "symbol": args.symbol, "side": t.get("side") or args.side, "order": t.get("order") or vid,
                   "takerOrMaker": t.get("takerOrMaker") or "taker"} for t in o.get("trades") or () if t.get("id")]
        return events + self.trades(listed, ts) if listed else events
