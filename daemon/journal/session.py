"""A trading session's journal: recover from it on start, keep it written while trading.

`begin` is what every `depthd run` with a journal does, paper or live: a new boot id is journaled and
client ids become `<prefix>-<boot>-<seq>` (unique across restarts); positions are rebuilt from the
last snapshot per symbol plus the journaled fills after it; every trading-state change and, every
`snapshot_s`, each position are journaled. `attach_paper` is the paper broker's part: orders the
journal left open are closed as EXPIRED (a restarted paper venue has lost them) and a JournaledBroker
sits between engine and paper broker. A live broker's part is reconciliation with its venue
(`daemon/live_broker.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from daemon.brokers.client_ids import ClientIdFactory, next_boot_id
from daemon.brokers.journaled import JournaledBroker
from daemon.journal.recovery import Recovery
from daemon.journal.writer import Journal
from daemon.portfolio import Portfolio
from daemon.risk.state import Transition

if TYPE_CHECKING:
    from daemon.app import TradingPath

log = structlog.get_logger("depthd.journal")


def restore_portfolio(portfolio: Portfolio, recovery: Recovery) -> Portfolio:
    """The journal's positions (latest snapshot per symbol) with the fills after each snapshot on top."""
    for sym, p in recovery.positions.items():
        portfolio.restore(sym, p.qty, p.avg_price, p.realised, p.fees)
    for fills in recovery.fills_after_snapshot.values():
        for jf in fills:
            portfolio.on_fill(jf.fill)
    return portfolio


def snapshot_positions(journal: Journal, portfolio: Portfolio, ts: int) -> None:
    """Journal every traded symbol's position, PnL and fees as of ts (a restart replays fills after it)."""
    records = portfolio.records()
    for symbol, lots, avg, realised, fees in records:
        journal.record_position(ts, symbol, lots, avg, realised, fees)
    log.debug("positions_journaled", symbols=len(records), ts=ts)


def begin(path: TradingPath, journal: Journal, prefix: str, snapshot_s: float = 60.0) -> tuple[dict[str, Any], Any]:
    """Recover the path's positions and client ids from the journal and journal it from now on; returns
    the recovery report and the position-snapshot timer (cancel it before closing the journal)."""
    engine, clock = path.engine, path.engine.clock
    now = clock.now()
    rec = journal.recovery
    boot = next_boot_id(rec.last_boot)
    journal.record_boot(now, boot)
    engine.client_ids = ClientIdFactory(prefix, boot).next
    restore_portfolio(path.portfolio, rec)
    known = sorted(set(rec.positions) | set(rec.fills_after_snapshot))
    positions = {sym: path.portfolio.position(sym) for sym in known}

    halt_listener = engine.halt.on_transition

    def on_transition(tr: Transition) -> None:
        journal.record_trading_state(tr.ts, str(tr.old), str(tr.new), tr.by, tr.reason)
        halt_listener(tr)

    path.state.set_listener(on_transition)

    timer = clock.call_every(int(snapshot_s * 1e9), lambda ts: snapshot_positions(journal, path.portfolio, ts))
    report = {"boot": boot, "positions": positions, "last_seq": rec.last_seq,
              "trading_state": rec.trading_state.new if rec.trading_state is not None else None}
    return report, timer


def attach_paper(path: TradingPath, journal: Journal, report: dict[str, Any]) -> dict[str, Any]:
    """The paper broker's recovery (lost orders expired and reported) and its journaling wrapper."""
    engine, now = path.engine, path.engine.clock.now()
    expired = []
    for jo in journal.recovery.open_orders:
        journal.record_order_event(now, jo.order.client_id, "EXPIRE", "EXPIRED",
                                   payload={"reason": "the paper venue restarted without it"}, durable=True)
        expired.append(jo.order.client_id)
    report = {**report, "orders_expired": expired}
    journal.record_reconciliation(now, report)
    log.info("journal_recovered", **report)
    journaled = JournaledBroker(journal, "paper", engine.clock, engine.on_broker_event)
    journaled.attach(path.broker)
    path.broker.rebind(journaled.on_venue_event)
    engine.use_broker(journaled)
    return report
