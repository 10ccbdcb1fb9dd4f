"""CcxtGateway: the live Broker for ccxt venues (async ccxt / ccxt pro), every venue report through an OrderTracker.

    gw = build_ccxt_gateway("binance", instruments, engine.on_broker_event, clock_now=clock.now,
                            credentials=load_credentials("BINANCE", path), sandbox=True)
    await gw.start()            # load_markets, user-stream watch loops, polling loop
    gw.submit(order)            # returns at once; OrderAccepted/Fill/OrderCanceled/OrderRejected follow, once each
    await gw.close()            # stops the loops and closes the ccxt client

Broker protocol, synchronous: `submit` and `cancel` note the action (journal first), then schedule the request on
the running loop. Refusals known on the spot ("not_started", "gateway_closed", "unknown_symbol",
"duplicate_client_id", "rate_limited", "ip_banned", "journal_error") are reported before `submit` returns.
Every venue report (create/cancel answers, `watch_orders`, `watch_my_trades`, polling) goes through the
OrderTracker, so duplicates and reordering are harmless.

Rules:

- Creates carry the order's client id (ccxt `clientOrderId`; Binance `newClientOrderId`). A create whose outcome
  is unknown (RequestTimeout, connection lost) is NEVER re-sent: the tracker gets `send_timeout` (UNKNOWN) and the
  gateway looks the order up by client id with backoff until found, or until the venue says it has no such order
  once `absent_after_s` have passed since the send (past the venue's recvWindow a late create can no longer be
  booked; the default 11 s is ccxt binance's recvWindow of 10 s plus 1) -> `not_found`. UNKNOWN orders restored
  from a journal are looked up the same way by `poll_once`, and are `not_found` at the first confirmed absence.
- Rate limits: ccxt's limiter is on (`enableRateLimit` in the factory). A 429 (or RateLimitExceeded) sets a
  throttle until its Retry-After: no request leaves before then (requests wait) and `submit` refuses new orders
  with "rate_limited" (counted). A 418 (IP ban) sets `ip_banned` until its Retry-After, logs an error, calls
  `on_ban(retry_after_s)` once per ban and refuses every request locally ("ip_banned"); the risk monitor should
  halt on it. The venue's used-weight header (`X-MBX-USED-WEIGHT-1M`) is kept in `used_weight`.
- Fills and updates: `watch_orders` and `watch_my_trades` loops (reconnect with Backoff; each reconnect triggers a
  poll), plus `poll_once` every `poll_interval_s` (None: no loop; tests call `poll_once`): open orders, trades since
  the last seen trade time per symbol, a lookup of each tracked open order the venue no longer lists, and the
  trades of orders whose venue fill the seen fills do not cover. That also covers a terminated stream that ccxt
  does not report as an error; a poll that finds news the streams did not bring makes extra watch calls, which
  subscribe again (see `poll_once`). A create's own answer applies its status and any fills it lists at once.
- Cancels go by venue id (else client id). One asked for while the create (or its lookup) is in flight is sent
  once the order is found. A cancel that times out is repeated (CANCEL_RETRIES); one the venue refuses as unknown
  makes the gateway fetch the order to learn how it ended. `cancel_all` cancels only the daemon's own orders.
- Event timestamps come from `clock_now` (the daemon's one clock), not from the venue.
- `connected` is False while banned, while a user-stream loop is reconnecting, or after a REST call failed with a
  network error until the next one succeeds (for the risk monitor's broker_disconnected trigger).

Journal (optional, `daemon.brokers.journal_port.OrderJournal`, which `daemon.journal.Journal` implements):
`record_order` before a create is sent (a failure refuses the order, "journal_error"), `record_order_event`
for our own actions (CANCEL_REQUEST, SEND_TIMEOUT, NOT_FOUND) and every
non-fill event, `record_fill` for every fill, all before the event reaches `on_event`. A journal failure on a venue
report is logged and counted ("journal_error") and the event is still delivered: the venue has acted, and the
engine must know.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import ccxt
import structlog

from daemon.brokers import ccxt_mapping as cm
from daemon.brokers.base import BrokerEventSink, OpenOrder
from daemon.brokers.ccxt_client import ccxt_client
from daemon.brokers.credentials import ApiCredentials
from daemon.brokers.journal_port import OrderJournal, TrackerJournal
from daemon.brokers.lifecycle import TERMINAL, OrderState
from daemon.brokers.orders import OrderTracker
from daemon.events import BrokerEvent, Order, OrderRejected
from daemon.instruments import Instrument
from daemon.sources.backoff import Backoff

log = structlog.get_logger("depthd.brokers.ccxt")

MAX_REWATCHES = 8  # extra watch calls waiting per user stream, one per poll round (see `_rewatch`)
CANCEL_RETRIES = 5  # a cancel that timed out is sent again this many times, then the order is looked up


class IpBanned(Exception):
    """A request refused locally: the venue has banned this IP and the ban has not expired."""


class CcxtGateway:
    """A Broker on an async ccxt exchange: orders out, venue reports in through an OrderTracker."""

    def __init__(self, exchange: Any, instruments: Mapping[str, Instrument], on_event: BrokerEventSink, *,
                 clock_now: Callable[[], int], journal: OrderJournal | None = None,
                 poll_interval_s: float | None = 2.0, absent_after_s: float = 11.0,
                 lookup_backoff: Backoff | None = None, stream_backoff: Backoff | None = None,
                 on_ban: Callable[[float], None] | None = None, watch: bool = True,
                 tracker: OrderTracker | None = None, default_retry_after_s: float = 1.0) -> None:
        if poll_interval_s is not None and poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0 or None, got {poll_interval_s!r}")
        self.exchange = exchange
        self.venue = str(getattr(exchange, "id", "ccxt"))
        self.on_event = on_event
        self.clock_now = clock_now
        self.journal = journal
        self.poll_interval_s = poll_interval_s
        self.absent_after_s = absent_after_s
        self.lookup_backoff = lookup_backoff or Backoff(0.2, 5.0)
        self.stream_backoff = stream_backoff or Backoff(0.5, 30.0)
        self.on_ban = on_ban
        self.tracker = tracker or OrderTracker()
        self.reports = cm.VenueReports(self.tracker, instruments)
        self.gate = cm.RateGate(default_retry_after_s)
        self.stats: Counter[str] = Counter()
        self.journaled = TrackerJournal(journal, self.tracker, self.venue, self.stats, clock_now)
        self.on_sent: Callable[[Order], None] | None = None  # told as each create goes to the venue
        self._watchers: dict[str, Callable[[], Any]] = {"orders": exchange.watch_orders,
                                                        "trades": exchange.watch_my_trades} if watch else {}
        self._rest_ok = True
        self._streams_down: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._looking_up: set[str] = set()
        self._rewatching: Counter[str] = Counter()
        self._suspect: set[str] = set()
        self._in_flight: dict[str, float] = {}  # client id -> monotonic send time, while create/lookup runs
        self._deferred_cancels: set[str] = set()
        self._emitted = 0
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"CcxtGateway(venue={self.venue!r}, symbols={sorted(self.reports.instruments)})"

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the venue's markets, map the instruments to ccxt symbols, start the watch and poll loops."""
        if self._started:
            raise RuntimeError("CcxtGateway.start() called twice")
        await self._call(self.exchange.load_markets)
        self.reports.bind(self.exchange.markets, getattr(self.exchange, "markets_by_id", None))
        self._started = True
        loop = asyncio.get_running_loop()
        for name in self._watchers:
            self._loops.append(loop.create_task(self._watch_loop(name)))
        if self.poll_interval_s is not None:
            self._loops.append(loop.create_task(self._poll_loop(self.poll_interval_s)))

    async def close(self) -> None:
        """Stop every loop and pending request, then close the ccxt client."""
        self._closed = True
        tasks = [*self._loops, *self._tasks]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._loops.clear()
        self._tasks.clear()
        await self.exchange.close()

    @property
    def connected(self) -> bool:
        """Whether the venue is reachable and reporting: started, not banned, streams up, last REST call fine."""
        return (self._started and not self._closed and not self.ip_banned and self._rest_ok
                and not self._streams_down)

    @property
    def ip_banned(self) -> bool:
        """The venue banned our IP (HTTP 418) and the ban's Retry-After has not passed: trading must halt."""
        return self.gate.banned(time.monotonic())

    @property
    def throttled(self) -> bool:
        """A 429's Retry-After has not passed: no request leaves, new orders are refused."""
        return self.gate.wait_s(time.monotonic()) > 0

    @property
    def used_weight(self) -> int:
        """The request weight the venue says we used (Binance X-MBX-USED-WEIGHT-1M), from the last answer."""
        return self.gate.used_weight

    # --- Broker protocol ------------------------------------------------------------------------

    def submit(self, order: Order) -> None:
        """Journal the order, then send it; a refusal known now is reported before this returns."""
        ts = self.clock_now()
        reason = self._refusal(order)
        if reason:
            self.stats[f"refused_{reason}"] += 1
            self._deliver([OrderRejected(order.client_id, order.symbol, ts, reason)])
            return
        self.tracker.add(order)
        try:
            self.journaled.order(order)
        except Exception:
            log.exception("journal_failed", client_id=order.client_id)
            self.stats["refused_journal_error"] += 1
            self._deliver(self.tracker.rejected(order.client_id, ts, "journal_error"))
            return
        self._in_flight[order.client_id] = time.monotonic()
        self._spawn(self._create(order))

    def cancel(self, client_id: str) -> None:
        """Ask the venue to cancel an order by client id; OrderCanceled follows when it lands."""
        ts = self.clock_now()
        if not self.tracker.request_cancel(client_id, ts):
            return
        self.journaled.transition(ts, client_id, "CANCEL_REQUEST")
        if self._closed or not self._started:
            self.stats["cancel_not_sent"] += 1
        elif client_id in self._in_flight:  # create or lookup in flight: cancel once it has an answer
            self._deferred_cancels.add(client_id)
        else:
            self._spawn(self._cancel(client_id))

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Orders not yet in a terminal state (all symbols, or one), in submission order."""
        return self.tracker.open_orders(symbol)

    def cancel_all(self, symbol: str | None = None) -> int:
        """Cancel every open order the daemon owns (all symbols, or one); returns how many cancels were asked."""
        n = 0
        for o in self.tracker.open_orders(symbol):
            if not self.tracker.cancel_requested(o.order.client_id):
                self.cancel(o.order.client_id)
                n += 1
        return n

    # --- queries for reconciliation -------------------------------------------------------------

    async def fetch_positions_and_balances(self, positions: bool = False) -> dict[str, dict[str, Any]]:
        """{"balances": {asset: {free, used, total}}, "positions": {ccxt symbol: position}}, for reconciliation."""
        bal = await self._call(self.exchange.fetch_balance)
        out: dict[str, dict[str, Any]] = {"balances": {}, "positions": {}}
        for asset, row in bal.items():
            if isinstance(row, Mapping) and "free" in row and asset not in ("free", "used", "total", "info"):
                out["balances"][asset] = {"free": row.get("free"), "used": row.get("used"), "total": row.get("total")}
        if positions:
            for p in await self._call(self.exchange.fetch_positions, list(self.reports.ccxt_symbol.values())):
                out["positions"][p["symbol"]] = p
        return out

    async def poll_once(self) -> None:
        """One polling round: UNKNOWN lookups, open orders, new trades, ended orders and uncovered fills.

        When the round finds news the user streams did not bring, the streams are suspect (ccxt drops a
        terminated subscription without an error): until a stream delivers again, each round gives it one more
        watch call (at most MAX_REWATCHES waiting), which subscribes again if ccxt has forgotten the subscription.
        """
        before = self._emitted
        for cid in self.tracker.needs_lookup():
            if cid not in self._looking_up:
                self._spawn(self._lookup(cid))
        for sym, csym in self.reports.ccxt_symbol.items():
            open_now = await self._apply_call("orders", self.exchange.fetch_open_orders, csym)
            listed = {cm.order_client_id(o) for o in open_now}
            await self._apply_call("trades", self.exchange.fetch_my_trades, csym, self.reports.trade_since.get(sym))
            for o in self.tracker.open_orders(sym):
                cid = o.order.client_id
                if cid not in listed and o.state is not OrderState.UNKNOWN and cid not in self._in_flight:
                    await self._fetch_order(cid)
        for cid in self.tracker.fills_to_fetch():
            await self._fetch_uncovered(cid)
        self.stats["polls"] += 1
        if self._emitted > before and self._watchers:
            self.stats["poll_found_news"] += 1
            self._suspect = set(self._watchers)
        for name in self._suspect:
            if self._rewatching[name] < MAX_REWATCHES:
                self._rewatching[name] += 1
                self._spawn(self._rewatch(name))

    # --- requests -------------------------------------------------------------------------------

    async def _create(self, order: Order) -> None:
        cid = order.client_id
        args = cm.create_args(order, self.reports.instruments[order.symbol], self.reports.ccxt_symbol[order.symbol])
        if self.on_sent is not None:
            self.on_sent(order)
        try:
            o = await self._call(self.exchange.create_order, args.symbol, args.type, args.side, args.amount,
                                 args.price, args.params)
        except Exception as exc:
            if cm.send_outcome_unknown(exc):
                ts = self.clock_now()
                log.warning("create_outcome_unknown", client_id=cid, error=type(exc).__name__)
                self.stats["send_timeout"] += 1
                self._emit(self.tracker.send_timeout(cid, ts))
                self.journaled.transition(ts, cid, "SEND_TIMEOUT", {"reason": type(exc).__name__})
                await self._lookup(cid)
                return
            self._in_flight.pop(cid, None)
            self._deferred_cancels.discard(cid)
            reason = "ip_banned" if isinstance(exc, IpBanned) else cm.reject_reason(exc)
            log.warning("create_rejected", client_id=cid, reason=reason, error=str(exc)[:300])
            self._emit(self.tracker.rejected(cid, self.clock_now(), reason))
            return
        self._in_flight.pop(cid, None)
        self._emit(self.reports.create_answer(o, args, cid, self.clock_now()))
        await self._after_answer(cid)

    async def _lookup(self, cid: str) -> None:
        """Find an UNKNOWN order by client id, retrying with backoff; never re-send its create."""
        view = self.tracker.get(cid)
        if view is None or cid in self._looking_up:
            return
        self._looking_up.add(cid)
        b = self.lookup_backoff
        backoff = Backoff(b.initial_s, b.max_s, b.factor, floor_s=b.floor_s)
        sent_at = self._in_flight.setdefault(cid, float("-inf"))
        try:
            while not self._closed:
                view = self.tracker.get(cid)
                if view is None or view.state is not OrderState.UNKNOWN:
                    return
                self.stats["lookups"] += 1
                try:
                    o = await self._call(self.exchange.fetch_order, None, self.reports.ccxt_symbol[view.order.symbol],
                                         {"clientOrderId": cid})
                except ccxt.OrderNotFound:
                    if time.monotonic() - sent_at >= self.absent_after_s:
                        ts = self.clock_now()
                        self._emit(self.tracker.not_found(cid, ts))
                        self.journaled.transition(ts, cid, "NOT_FOUND")
                        return
                    self.stats["lookup_not_yet"] += 1
                except Exception as exc:
                    self.stats["lookup_error"] += 1
                    log.warning("lookup_failed", client_id=cid, error=type(exc).__name__)
                else:
                    self._in_flight.pop(cid, None)
                    self._emit(self.reports.order(o, self.clock_now(), cid))
                    await self._fetch_uncovered(cid)
                    await self._after_answer(cid)
                    return
                await asyncio.sleep(backoff.next())
        finally:
            self._looking_up.discard(cid)
            self._in_flight.pop(cid, None)
            self._deferred_cancels.discard(cid)

    async def _after_answer(self, cid: str) -> None:
        """Send a cancel that was asked for while the create (or its lookup) was in flight."""
        if cid in self._deferred_cancels:
            self._deferred_cancels.discard(cid)
            view = self.tracker.get(cid)
            if view is not None and view.state not in TERMINAL:
                await self._cancel(cid)

    async def _cancel(self, cid: str) -> None:
        view = self.tracker.get(cid)
        if view is None:
            return
        csym = self.reports.ccxt_symbol[view.order.symbol]
        b = self.lookup_backoff
        backoff = Backoff(b.initial_s, b.max_s, b.factor, floor_s=b.floor_s)
        while not self._closed:
            vid = self.tracker.venue_id(cid)
            try:
                o = await self._call(self.exchange.cancel_order, vid, csym, {} if vid else {"clientOrderId": cid})
            except IpBanned:
                self._emit(self.tracker.cancel_rejected(cid, self.clock_now(), "ip_banned"))
                return
            except Exception as exc:
                if cm.is_rate_limit(exc) and not cm.is_ban(exc):
                    self.stats["cancel_retry_rate_limited"] += 1
                    continue  # the next _call waits for Retry-After
                if cm.send_outcome_unknown(exc) and backoff.attempts < CANCEL_RETRIES:
                    self.stats["cancel_retry_network"] += 1  # a cancel is safe to repeat: at worst OrderNotFound
                    await asyncio.sleep(backoff.next())
                    continue
                self.stats["cancel_not_found" if isinstance(exc, ccxt.OrderNotFound) else "cancel_error"] += 1
                log.warning("cancel_failed", client_id=cid, error=str(exc)[:300])
                now = self.tracker.get(cid)
                if now is not None and now.state is not OrderState.UNKNOWN:
                    await self._fetch_order(cid)  # filled or gone meanwhile: learn how it ended
                return
            self._emit(self.reports.order(o, self.clock_now(), cid))
            await self._fetch_uncovered(cid)
            return

    async def _fetch_order(self, cid: str) -> None:
        """Ask the venue for one order by client id and apply what it says (and its uncovered trades)."""
        view = self.tracker.get(cid)
        if view is None:
            return
        try:
            o = await self._call(self.exchange.fetch_order, None, self.reports.ccxt_symbol[view.order.symbol],
                                 {"clientOrderId": cid})
        except ccxt.OrderNotFound:
            self._emit(self.tracker.not_found(cid, self.clock_now()))
            return
        except Exception as exc:
            self.stats["fetch_order_error"] += 1
            log.warning("fetch_order_failed", client_id=cid, error=type(exc).__name__)
            return
        self._emit(self.reports.order(o, self.clock_now(), cid))
        await self._fetch_uncovered(cid)

    async def _fetch_uncovered(self, cid: str) -> None:
        """Fetch the trades of an order whose venue fill the fills seen so far do not cover."""
        vid, view = self.tracker.venue_id(cid), self.tracker.get(cid)
        if vid is None or view is None or cid not in self.tracker.fills_to_fetch():
            return
        try:
            csym = self.reports.ccxt_symbol[view.order.symbol]
            await self._apply_call("trades", self.exchange.fetch_my_trades, csym, None, None, {"orderId": vid})
        except Exception as exc:
            self.stats["fetch_trades_error"] += 1
            log.warning("fetch_trades_failed", client_id=cid, error=type(exc).__name__)

    async def _apply_call(self, kind: str, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """A REST call answering ccxt orders or trades (`kind`), applied through the reports; returns the answer."""
        items = await self._call(fn, *args)
        self._apply_stream(kind, items, from_stream=False)
        return items

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One REST request: waits out a throttle, refuses during a ban, notes rate limits and used weight."""
        while True:
            if self.ip_banned:
                self.stats["refused_request_ip_banned"] += 1
                raise IpBanned(f"{self.venue} has banned this IP (HTTP 418); requests are refused until it ends")
            wait = self.gate.wait_s(time.monotonic())
            if wait <= 0:
                break
            self.stats["throttle_waits"] += 1
            await asyncio.sleep(wait)
        try:
            result = await fn(*args)
        except Exception as exc:
            kind, after = self.gate.note_failure(exc, getattr(self.exchange, "last_response_headers", None),
                                                 time.monotonic())
            if kind == "ban":
                self.stats["ip_banned"] += 1
                log.error("ip_banned", venue=self.venue, retry_after_s=after, error=str(exc)[:300])
                if self.on_ban is not None:
                    self.on_ban(after)
            elif kind == "rate_limit":
                self.stats["rate_limited"] += 1
                log.warning("rate_limited", venue=self.venue, retry_after_s=after)
            elif kind == "network":
                self._rest_ok = False
                self.stats["network_error"] += 1
            raise
        self._rest_ok = True
        self.gate.note_success(getattr(self.exchange, "last_response_headers", None))
        return result

    # --- user streams and polling ---------------------------------------------------------------

    async def _watch_loop(self, name: str) -> None:
        """Apply one user stream's reports; on an error, back off, reconnect (the next watch call) and poll."""
        b = self.stream_backoff
        backoff = Backoff(b.initial_s, b.max_s, b.factor, floor_s=b.floor_s)
        while not self._closed:
            try:
                items = await self._watchers[name]()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._streams_down.add(name)
                self.stats[f"stream_{name}_errors"] += 1
                log.warning("user_stream_failed", stream=name, error=type(exc).__name__)
                await asyncio.sleep(backoff.next())
                self._streams_down.discard(name)
                self._spawn(self._safe_poll())
                continue
            backoff.reset()
            self._apply_stream(name, items)

    async def _rewatch(self, name: str) -> None:
        """One extra watch call: ccxt subscribes again if it silently dropped the subscription.

        On a healthy stream it just waits for the next report with the watch loop (duplicates are harmless);
        at most MAX_REWATCHES wait per stream.
        """
        self.stats[f"rewatch_{name}"] += 1
        try:
            self._apply_stream(name, await self._watchers[name]())
        except Exception as exc:
            self.stats[f"rewatch_{name}_errors"] += 1
            log.warning("user_stream_rewatch_failed", stream=name, error=type(exc).__name__)
        finally:
            self._rewatching[name] -= 1

    def _apply_stream(self, name: str, items: list[Any], from_stream: bool = True) -> None:
        if from_stream:
            self._suspect.discard(name)
        ts = self.clock_now()
        if name == "trades":
            self._emit(self.reports.trades(items, ts))
            return
        for o in items:
            if self.reports.daemon_symbol(o.get("symbol")) is not None:
                self._emit(self.reports.order(o, ts))

    async def _poll_loop(self, interval: float) -> None:
        while not self._closed:
            await asyncio.sleep(interval)
            await self._safe_poll()

    async def _safe_poll(self) -> None:
        try:
            await self.poll_once()
        except Exception as exc:
            self.stats["poll_errors"] += 1
            log.warning("poll_failed", venue=self.venue, error=type(exc).__name__)

    # --- plumbing -------------------------------------------------------------------------------

    def _refusal(self, order: Order) -> str:
        if self._closed:
            return "gateway_closed"
        if not self._started:
            return "not_started"
        if order.symbol not in self.reports.ccxt_symbol:
            return "unknown_symbol"
        if self.tracker.get(order.client_id) is not None:
            return "duplicate_client_id"
        if self.ip_banned:
            return "ip_banned"
        if self.throttled:
            return "rate_limited"
        return ""

    def _emit(self, events: list[BrokerEvent]) -> None:
        """Journal, then deliver, the tracker's events (each is new: the tracker emits a change once)."""
        for ev in events:
            self.journaled.event(ev)
        self._deliver(events)

    def _deliver(self, events: list[BrokerEvent]) -> None:
        for ev in events:
            self._emitted += 1
            self.stats[type(ev).__name__] += 1
            if isinstance(ev, OrderRejected):
                self.stats[f"reject_{ev.reason}"] += 1
            self.on_event(ev)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.stats["task_errors"] += 1
            log.error("gateway_task_failed", error=repr(task.exception()))


def build_ccxt_gateway(exchange_id: str, instruments: Mapping[str, Instrument], on_event: BrokerEventSink, *,
                       clock_now: Callable[[], int], credentials: ApiCredentials, sandbox: bool = False,
                       api_urls: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                       timeout_ms: int = 10_000, **gateway_kw: Any) -> CcxtGateway:
    """A CcxtGateway on a ccxt pro client (see `ccxt_client`)."""
    ex = ccxt_client(exchange_id, credentials, sandbox=sandbox, api_urls=api_urls, options=options,
                     timeout_ms=timeout_ms)
    return CcxtGateway(ex, instruments, on_event, clock_now=clock_now, **gateway_kw)
