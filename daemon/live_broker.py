"""The live broker of `depthd run` in live mode: a ccxt or an Interactive Brokers gateway, reconciled with
its venue before the first order and periodically after.

ccxt: the venue's client is built (testnet if `sandbox`, every URL re-pointed when `rest_url`/`ws_url` are
set); the Reconciler rebuilds the order tracker from the journal and brings journal, tracker and portfolio
in line with the venue (unknown orders looked up by client id, missed fills applied once, orphans
cancelled if configured, holdings compared); the gateway then continues from the reconciled tracker.

IB: the venue view needs a connected gateway, so the order is the other way round: the tracker is rebuilt
from the journal first and handed to both the gateway and the Reconciler; the gateway connects and
resynchronises (its fills reach the engine), then the startup pass runs on the same tracker, so a fill
either finds first is applied once (the tracker knows its trade id, the journal refuses it twice). A
TWS/Gateway that does not answer within `connect_wait_s` stops the start with a VenueError.

Either way the gateway replaces the paper broker in the engine and the risk monitor judges its connection.
A reconciliation that is not ok, and an IP ban, halt trading (an operator resumes). Every `reconcile_s` a
periodic pass repeats the check.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from daemon.brokers.ccxt_client import make_exchange
from daemon.brokers.ccxt_gateway import CcxtGateway
from daemon.brokers.ib_gateway import IbGateway
from daemon.brokers.reconcile import ABSENT_AFTER_MS, Reconciler, ReconcileResult, restore_tracker
from daemon.brokers.venue_views import CcxtVenueView, IbVenueView, VenueView
from daemon.config import Settings
from daemon.errors import VenueError
from daemon.journal import Journal
from daemon.sources.backoff import Backoff

if TYPE_CHECKING:
    from daemon.app import TradingPath
    from daemon.brokers.orders import OrderTracker

log = structlog.get_logger("depthd.broker")


def _too_recent_wait(result: ReconcileResult) -> float | None:
    """Seconds to wait when the only problems are orders sent too recently to call absent, else None."""
    if result.ok or not result.discrepancies:
        return None
    if any(d.get("kind") != "unknown_too_recent" for d in result.discrepancies):
        return None
    return float(ABSENT_AFTER_MS) / 1000 + 0.5


def ib_contracts(settings: Settings) -> dict[str, Any]:
    """The IB contracts of the traded symbols: [broker] ib_contracts, else [feed] ib_contracts."""
    from daemon.sources.ib_feed import contract_from_config

    fields = settings.broker.ib_contracts or settings.feed.ib_contracts
    return {s: contract_from_config(s, fields[s]) for s in settings.feed.symbols}


class LiveBroker:
    """The gateway, its reconciler and their timers for one live session."""

    def __init__(self, settings: Settings, path: TradingPath, journal: Journal) -> None:
        self.settings = settings
        self.path = path
        self.journal = journal
        self.exchange = make_exchange(settings) if settings.broker.kind == "ccxt" else None
        self.ib_contracts = ib_contracts(settings) if settings.broker.kind == "ib" else {}
        self.gateway: CcxtGateway | IbGateway | None = None
        self.reconciler: Reconciler | None = None
        self.last_result: ReconcileResult | None = None
        self._timer: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.skipped_passes = 0

    async def start(self) -> ReconcileResult:
        """Reconcile with the venue, then hand the engine the gateway; halt when not ok."""
        engine, clock = self.path.engine, self.path.engine.clock
        result = await (self._start_ib() if self.settings.broker.kind == "ib" else self._start_ccxt())
        assert self.gateway is not None and self.reconciler is not None
        self.reconciler.on_event = engine.on_broker_event  # later passes go through the engine
        engine.use_broker(self.gateway)
        self.path.monitor.watch_broker(lambda: self.gateway is not None and self.gateway.connected)
        if isinstance(self.gateway, CcxtGateway):
            await self.gateway.start()
        self._judge(result, "startup")
        self._timer = clock.call_every(int(self.settings.broker.reconcile_s * 1e9), self._periodic)
        return result

    async def _start_ccxt(self) -> ReconcileResult:
        """Reconcile first (the view has its own client calls), then a gateway on the reconciled tracker."""
        b, engine = self.settings.broker, self.path.engine
        view = CcxtVenueView(self.exchange, self.path.instruments, engine.clock.now, positions=b.positions)
        result = await self._reconcile(view, None)
        assert self.reconciler is not None and self.reconciler.tracker is not None
        self.gateway = CcxtGateway(self.exchange, self.path.instruments, engine.on_broker_event,
                                   clock_now=engine.clock.now, journal=self.journal, tracker=self.reconciler.tracker,
                                   poll_interval_s=b.poll_s, on_ban=self._banned)
        return result

    async def _start_ib(self) -> ReconcileResult:
        """Gateway first (the view asks IB through it) on the journal's tracker, then the startup pass."""
        from ib_async import IB

        b, engine, f = self.settings.broker, self.path.engine, self.settings.feed
        tracker = restore_tracker(self.journal)
        gw = self.gateway = IbGateway(
            IB(), self.ib_contracts, engine.instrument, engine.on_broker_event, clock_now=engine.clock.now,
            journal=self.journal, tracker=tracker, host=b.ib_host, port=b.ib_port, client_id=b.ib_client_id,
            account=b.ib_account, tif=b.ib_tif, backoff=lambda: Backoff(f.reconnect_initial_s, f.reconnect_max_s))
        await gw.start()
        try:
            await gw.wait_synced(b.connect_wait_s)
        except TimeoutError:
            await gw.close()
            self.gateway = None
            raise VenueError(f"IB: no synchronised connection to {b.ib_host}:{b.ib_port} (client id "
                             f"{b.ib_client_id}) within {b.connect_wait_s:g} s; is TWS / IB Gateway up with the "
                             "API enabled?") from None
        return await self._reconcile(IbVenueView(gw, engine.instrument), tracker)

    async def _reconcile(self, view: VenueView, tracker: OrderTracker | None) -> ReconcileResult:
        """The startup pass, waiting out orders sent too recently to call absent (up to twice)."""
        b, clock = self.settings.broker, self.path.engine.clock
        venue = b.exchange if b.kind == "ccxt" else "ib"
        for attempt in range(3):
            self.reconciler = Reconciler(self.journal, view, self.path.portfolio, clock_now=clock.now,
                                         prefix=self.settings.execution.client_id_prefix, venue=venue,
                                         cancel_orphans=b.cancel_orphans, tracker=tracker,
                                         symbols=self.settings.feed.symbols)
            result = await self.reconciler.startup()
            tracker = self.reconciler.tracker
            wait = _too_recent_wait(result)
            if wait is None or attempt == 2:
                break
            # an order sent just before the last stop may still be booked late: once the venue's window
            # has passed, absent means never booked, and the next pass settles it
            log.info("reconcile_waiting", seconds=wait, orders=[d["client_id"] for d in result.discrepancies])
            await asyncio.sleep(wait)
        self.last_result = result
        return result

    def _periodic(self, ts: int) -> None:
        if self._tasks:  # the last pass still runs (a slow venue): passes never overlap on one tracker
            self.skipped_passes += 1
            return
        task = asyncio.get_running_loop().create_task(self._periodic_pass())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _periodic_pass(self) -> None:
        assert self.reconciler is not None
        try:
            result = self.last_result = await self.reconciler.periodic()
        except Exception as exc:  # a venue error: the next pass tries again; the gateway reports the outage
            log.warning("reconcile_failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._judge(result, "periodic")

    def _judge(self, result: ReconcileResult, kind: str) -> None:
        """Halt on what reconciliation could not resolve (an operator looks and resumes)."""
        if result.ok:
            log.info("reconciled", kind=kind, fills_applied=len(result.applied_fills), orphans=len(result.orphans))
            return
        reason = f"{kind} reconciliation: {len(result.discrepancies)} unresolved: {result.discrepancies[:3]}"
        log.error("reconcile_unresolved", kind=kind, discrepancies=result.discrepancies)
        self.path.state.operator_halt(reason[:500], "reconciler")

    def _banned(self, retry_after_s: float) -> None:
        self.path.state.operator_halt(f"the venue banned our IP for {retry_after_s:g} s (HTTP 418)", "broker")

    async def close(self) -> None:
        """Stop the timers and the gateway (open orders stay; issue 7's shutdown decides)."""
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.gateway is not None:
            await self.gateway.close()
        elif self.exchange is not None:
            await self.exchange.close()
