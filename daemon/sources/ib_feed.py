"""IbFeed: market depth and tick-by-tick trades from Interactive Brokers (TWS or IB Gateway) via ib_async.

It connects (`IB.connectAsync`, read-only, without the account/order download a broker needs),
requests `reqMktDepth(contract, num_rows, smart_depth)` and `reqTickByTickData(contract, "AllLast")`
per symbol, and forwards what ib_async reports after each network read as plain messages to
`sink(ts_recv, channel, symbol, msg)`: the new DOM rows (`Ticker.domTicks`) on "ib_depth", the new
prints on "ib_trades". Before each depth request it sends the marker `{"event": "subscribed",
"num_rows": n}` so the adapter (`daemon.venues.ib.IbAdapter`) starts from an empty book; when the
connection drops it sends `{"event": "disconnected", "reason": ...}` per symbol, reconnects with
backoff and subscribes again. IB's own notices are acted on: 1100 (TWS lost IB's servers) resets
every book, 1101/1102 (restored) resubscribes them; a depth request IB refuses (no permission, too
many depth requests, unknown contract) resets that symbol's book and is counted in `errors`; 317
("market depth data has been reset: empty the book") becomes a "subscribed" marker (an empty book)
in place of the deletes ib_async makes up for it, which follow ib_async's own rows, not IB's.
`request(Resubscribe)` carries out the adapter's request to start a symbol's depth over.

Contracts without a `conId` are qualified once, at the first connection (`qualifyContractsAsync`); one
IB does not know, or cannot tell apart from others, ends `run()` with a ConfigError naming it. Depth
on exchange "SMART" is requested as IB's smart depth (several exchanges merged), as IB requires.

Running against an IB paper account
-----------------------------------
1. Log in to TWS or IB Gateway with the paper account (the username IB gives the paper account).
2. Enable the API: TWS: File > Global Configuration > API > Settings > "Enable ActiveX and Socket
   Clients"; IB Gateway: Configure > Settings > API > Settings. Untick "Read-Only API" only if the
   same gateway also takes orders (this feed needs no more than read-only). Add 127.0.0.1 to the
   trusted IPs, or accept the connection prompt.
3. Ports: TWS paper 7497 (live 7496), IB Gateway paper 4002 (live 4001).
4. Client id: any integer unique among the clients connected at the same time; give the feed its
   own (e.g. 11) and the order gateway another, so they do not cancel each other.
5. Market data: a paper account sees only the market data subscriptions of the live account it
   belongs to, once they are shared with it (Client Portal: Settings > Paper Trading Account).
   Depth needs a Level II subscription for the exchange (e.g. NASDAQ TotalView for ISLAND); without
   one IB refuses the request (e.g. error 354 or 10092, counted in `errors`) and the book stays reset.
   IB limits how many depth requests may run at once (error 309 past the limit).
6. Configure it (config.toml):

       [feed]
       venue = "ib"
       symbols = ["AAPL"]
       ib_port = 4002          # 7497 for TWS
       ib_client_id = 17
       ib_depth_rows = 10
       ib_contracts = { AAPL = { secType = "STK", symbol = "AAPL", exchange = "ISLAND", currency = "USD" } }
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from ib_async import IB, Contract, TickByTickAllLast
from ib_async.ib import StartupFetchNONE

from daemon.config import FeedSettings
from daemon.errors import ConfigError
from daemon.sources.backoff import Backoff
from daemon.venues.base import CH_MARKER, FeedRequest, Resubscribe
from daemon.venues.health import FeedHealth
from daemon.venues.ib import CH_IB_DEPTH, CH_IB_TRADES

log = structlog.get_logger("depthd.ib_feed")

Sink = Callable[[int, str, str, Any], None]
DEPTH_RESET = 317  # "empty the book": ib_async makes up deletes of the rows it holds
LOST, RESTORED = 1100, (1101, 1102)  # TWS <-> IB servers


def _is_warning(code: int) -> bool:
    """IB's informational codes (farm connection notices and the like): no action needed."""
    return 2100 <= code < 2200 or code in (2000, 10167)


class IbFeed:
    """Depth and prints of `contracts` (symbol -> Contract) from one TWS/Gateway connection."""

    def __init__(self, ib: IB, contracts: dict[str, Contract], *, sink: Sink, health: FeedHealth,
                 now: Callable[[], int] = time.time_ns, host: str = "127.0.0.1", port: int = 7497,
                 client_id: int = 1, num_rows: int = 10, smart_depth: bool = False, trades: bool = True,
                 backoff: Callable[[], Backoff] | None = None, connect_timeout: float = 4.0) -> None:
        if not contracts:
            raise ValueError("contracts must name at least one symbol")
        if type(num_rows) is not int or not 1 <= num_rows <= 100:
            raise ValueError(f"num_rows must be an integer in 1..100, got {num_rows!r}")
        self.ib = ib
        self.contracts = dict(contracts)
        self.health = health
        self.host, self.port, self.client_id = host, port, client_id
        self.num_rows, self.smart_depth, self.trades = num_rows, smart_depth, trades
        self.connect_timeout = connect_timeout
        self.errors: Counter[int] = Counter()  # IB error codes about our requests (and connection notices)
        self.connect_failures = 0
        self.skipped_prints = 0  # prints without a price or size (IB's "no value")
        self._sink, self._now = sink, now
        self._backoff = backoff or Backoff
        self._by_conid: dict[int, str] = {}  # filled once every contract is qualified
        self._depth_reqs: dict[int, str] = {}  # reqId of the live depth request -> symbol
        self._tbt_reqs: dict[int, str] = {}
        self._reset_at: dict[str, int] = {}  # symbol -> index in ticker.domTicks where IB's 317 reset falls
        self._stop = asyncio.Event()
        self._lost = asyncio.Event()
        self._fresh = False  # connected, no data yet: the backoff resets at the first data

    async def run(self) -> None:
        """Connect, subscribe, forward; reconnect with backoff after a drop; return after `close()`."""
        ib = self.ib
        ib.pendingTickersEvent += self._on_tickers
        ib.disconnectedEvent += self._on_disconnected
        ib.errorEvent += self._on_error
        backoff = self._backoff()
        try:
            while not self._stop.is_set():
                if not await self._connect() or not await self._qualify():
                    await self._sleep(backoff.next())
                    continue
                self._fresh = True
                self._subscribe_all()
                await self._wait_lost()
                self._on_lost()
                if not self._fresh:  # data came through: the connection was healthy
                    backoff.reset()
                await self._sleep(backoff.next())
        finally:
            ib.pendingTickersEvent -= self._on_tickers
            ib.disconnectedEvent -= self._on_disconnected
            ib.errorEvent -= self._on_error

    async def close(self) -> None:
        """Stop reconnecting and disconnect."""
        self._stop.set()
        if self.ib.isConnected():
            self.ib.disconnect()

    def request(self, req: FeedRequest) -> None:
        """Carry out an adapter's request (IB has no REST snapshots: only Resubscribe applies)."""
        if isinstance(req, Resubscribe):
            self.resubscribe(req.symbol, req.reason)
        else:
            log.warning("ib_request_ignored", request=str(req))

    def resubscribe(self, symbol: str, reason: str = "") -> None:
        """Cancel a symbol's depth request and make it again, so its book starts over from empty."""
        if symbol not in self.contracts:
            raise ValueError(f"unknown symbol {symbol!r}")
        if not self.ib.isConnected():
            return  # the next connection subscribes it
        log.info("ib_resubscribe", symbol=symbol, reason=reason)
        for req, sym in list(self._depth_reqs.items()):
            if sym == symbol:
                self.ib.cancelMktDepth(self.contracts[symbol], self._smart(symbol))
                del self._depth_reqs[req]
                # rows of the old request still on the wire must not reach the new book
                self.ib.wrapper.reqId2Ticker.pop(req, None)
        self._subscribe_depth(symbol)

    # --- connection ----------------------------------------------------------------------------

    async def _connect(self) -> bool:
        try:
            await self.ib.connectAsync(self.host, self.port, clientId=self.client_id, timeout=self.connect_timeout,
                                       readonly=True, fetchFields=StartupFetchNONE)
        except (OSError, TimeoutError) as exc:
            self.connect_failures += 1
            log.warning("ib_connect_failed", host=self.host, port=self.port, error=f"{type(exc).__name__}: {exc}")
            return False
        self._lost.clear()
        return True

    async def _qualify(self) -> bool:
        """Look up the contracts given without conId (once); False: IB did not answer in time."""
        missing = [s for s, c in self.contracts.items() if not c.conId]
        if missing:
            try:
                await asyncio.wait_for(self.ib.qualifyContractsAsync(*[self.contracts[s] for s in missing]),
                                       self.connect_timeout)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("ib_qualify_failed", symbols=missing, error=f"{type(exc).__name__}: {exc}")
                self.ib.disconnect()
                return False
            unknown = [s for s in missing if not self.contracts[s].conId]
            if unknown:
                self.ib.disconnect()
                raise ConfigError("ib_contracts: IB knows no single contract for "
                                  + ", ".join(f"{s} ({self.contracts[s]})" for s in unknown))
        self._by_conid = {c.conId: s for s, c in self.contracts.items()}
        h = self.health
        h.connected, h.connects, h.connected_since_ns = True, h.connects + 1, self._now()
        self._depth_reqs.clear()
        self._tbt_reqs.clear()
        return True

    async def _wait_lost(self) -> None:
        stop, lost = asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait((stop, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            lost.cancel()

    def _on_lost(self) -> None:
        """The connection ended: every book is unknown (unless we are closing)."""
        self.health.connected = False
        if not self._stop.is_set():
            self.health.disconnects += 1
            self._reset_all("disconnected from TWS/Gateway")

    def _on_disconnected(self) -> None:
        self._lost.set()

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    # --- subscriptions -------------------------------------------------------------------------

    def _subscribe_all(self) -> None:
        for symbol, contract in self.contracts.items():
            self._subscribe_depth(symbol)
            if self.trades:
                ticker = self.ib.reqTickByTickData(contract, "AllLast")
                self._tbt_reqs[self.ib.wrapper.ticker2ReqId["AllLast"][ticker]] = symbol

    def _subscribe_depth(self, symbol: str) -> None:
        self._emit(CH_MARKER, symbol, {"event": "subscribed", "num_rows": self.num_rows}, count=False)
        ticker = self.ib.reqMktDepth(self.contracts[symbol], self.num_rows, self._smart(symbol))
        self._depth_reqs[self.ib.wrapper.ticker2ReqId["mktDepth"][ticker]] = symbol

    def _smart(self, symbol: str) -> bool:
        """Smart depth (exchanges merged): asked for, or required by exchange SMART."""
        return self.smart_depth or self.contracts[symbol].exchange == "SMART"

    def _reset_all(self, reason: str) -> None:
        for symbol in self.contracts:
            self._emit(CH_MARKER, symbol, {"event": "disconnected", "reason": reason}, count=False)

    # --- ib_async events -----------------------------------------------------------------------

    def _on_tickers(self, tickers: set) -> None:
        """One network read's worth of updates: forward each symbol's new rows and prints."""
        for ticker in tickers:
            contract = ticker.contract
            symbol = self._by_conid.get(contract.conId) if contract is not None else None
            if symbol is None:
                continue
            rows = ticker.domTicks
            reset_at = self._reset_at.pop(symbol, None)
            if reset_at is not None:  # what came before IB's reset, and the made-up deletes, are void
                self._emit(CH_MARKER, symbol, {"event": "subscribed", "num_rows": self.num_rows,
                                               "reason": f"IB {DEPTH_RESET}"}, count=False)
                rows = rows[reset_at:]
            if rows:
                self._emit(CH_IB_DEPTH, symbol, [
                    {"position": d.position, "operation": d.operation, "side": d.side, "price": d.price,
                     "size": d.size, "mm": d.marketMaker} for d in rows])
            prints = [t for t in ticker.tickByTicks if isinstance(t, TickByTickAllLast)]
            if prints:
                msg = []
                for t in prints:
                    if not (math.isfinite(t.price) and t.price > 0 and math.isfinite(t.size) and t.size > 0):
                        self.skipped_prints += 1
                        continue
                    msg.append({"price": t.price, "size": t.size, "exchange": t.exchange,
                                "conditions": t.specialConditions, "past_limit": t.tickAttribLast.pastLimit,
                                "unreported": t.tickAttribLast.unreported})
                if msg:
                    self._emit(CH_IB_TRADES, symbol, msg)

    def _on_error(self, req_id: int, code: int, text: str, contract: Any) -> None:
        if code == LOST:
            self.errors[code] += 1
            log.warning("ib_connectivity_lost", code=code, text=text)
            self._reset_all(f"IB {code}: {text}")
        elif code in RESTORED:
            self.errors[code] += 1
            log.info("ib_connectivity_restored", code=code, text=text)
            for symbol in self.contracts:
                self.resubscribe(symbol, f"IB {code}")
        elif req_id in self._depth_reqs and code == DEPTH_RESET:
            self.errors[code] += 1
            ticker = self.ib.wrapper.reqId2Ticker.get(req_id)
            if ticker is not None:  # the rows after this point in the current read follow the reset
                self._reset_at[self._depth_reqs[req_id]] = len(ticker.domTicks)
        elif req_id in self._depth_reqs and not _is_warning(code):
            symbol = self._depth_reqs.pop(req_id)
            self.errors[code] += 1
            log.error("ib_depth_refused", symbol=symbol, code=code, text=text)
            self._emit(CH_MARKER, symbol, {"event": "disconnected", "reason": f"IB {code}: {text}"}, count=False)
        elif req_id in self._tbt_reqs and not _is_warning(code):
            self.errors[code] += 1
            log.error("ib_trades_refused", symbol=self._tbt_reqs[req_id], code=code, text=text)

    def _emit(self, channel: str, symbol: str, msg: Any, count: bool = True) -> None:
        ts = self._now()
        if count:
            h = self.health
            h.messages += 1
            h.last_message_ns = ts
            self._fresh = False
        self._sink(ts, channel, symbol, msg)


def contract_from_config(symbol: str, fields: dict[str, Any]) -> Contract:
    """An ib_async Contract from config fields (strings, as TOML gives them); unknown fields are errors."""
    known = set(Contract.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"ib_contracts.{symbol}: unknown Contract field(s) {unknown}")
    values: dict[str, Any] = dict(fields)
    try:
        if "conId" in values:
            values["conId"] = int(values["conId"])
        if "strike" in values:
            values["strike"] = float(values["strike"])
    except ValueError as exc:
        raise ConfigError(f"ib_contracts.{symbol}: {exc}") from None
    return Contract(**values)


def build_ib_feed(settings: FeedSettings, health: FeedHealth, sink: Sink, now: Callable[[], int]) -> IbFeed:
    """The IB feed of a `[feed]` config section (venue = "ib")."""
    contracts = {s: contract_from_config(s, settings.ib_contracts[s]) for s in settings.symbols}
    return IbFeed(IB(), contracts, sink=sink, health=health, now=now, host=settings.ib_host, port=settings.ib_port,
                  client_id=settings.ib_client_id, num_rows=settings.ib_depth_rows, trades=settings.trades != "none",
                  backoff=lambda: Backoff(settings.reconnect_initial_s, settings.reconnect_max_s))
