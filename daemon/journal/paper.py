"""A paper-trading daemon's journal: open it, recover from it, and keep it written while trading.

On start: a new boot id is journaled and client ids become `<prefix>-<boot>-<seq>` (unique across
restarts); positions are rebuilt from the last snapshot per symbol plus the journaled fills after
it; orders the journal left open are closed as EXPIRED, because a restarted paper venue has lost
them (the report of what was found goes in the journal). While trading: every order and broker
event goes through a JournaledBroker, every trading-state change and, every `snapshot_s`, each
position are journaled. The live brokers' reconciliation with a real venue builds on the same steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from daemon.brokers.client_ids import ClientIdFactory, next_boot_id
from daemon.brokers.journaled import JournaledBroker
from daemon.journal.writer import Journal
from daemon.risk.state import Transition

if TYPE_CHECKING:
    from daemon.app import TradingPath

log = structlog.get_logger("depthd.journal")


def attach_paper_journal(path: TradingPath, journal: Journal, prefix: str, snapshot_s: float = 60.0) -> dict:
    """Recover `path` from the journal and journal it from now on; returns the recovery report."""
    engine, clock = path.engine, path.engine.clock
    now = clock.now()
    rec = journal.recovery
    boot = next_boot_id(rec.last_boot)
    journal.record_boot(now, boot)
    engine.client_ids = ClientIdFactory(prefix, boot).next

    restored = {}
    for symbol, snap in rec.positions.items():
        path.portfolio.restore(symbol, snap.qty, snap.avg_price, snap.realised, snap.fees)
    for fills in rec.fills_after_snapshot.values():
        for jf in fills:
            path.portfolio.on_fill(jf.fill)
    for symbol in sorted(set(rec.positions) | set(rec.fills_after_snapshot)):
        restored[symbol] = path.portfolio.position(symbol)
    expired = []
    for jo in rec.open_orders:
        journal.record_order_event(now, jo.order.client_id, "EXPIRE", "EXPIRED",
                                   payload={"reason": "the paper venue restarted without it"}, durable=True)
        expired.append(jo.order.client_id)
    report = {"boot": boot, "positions": restored, "orders_expired": expired, "last_seq": rec.last_seq,
              "trading_state": rec.trading_state.new if rec.trading_state is not None else None}
    journal.record_reconciliation(now, report)
    log.info("journal_recovered", **report)

    journaled = JournaledBroker(journal, "paper", clock, engine.on_broker_event)
    journaled.attach(path.broker)
    path.broker.rebind(journaled.on_venue_event)
    engine.broker = journaled  # the paper broker keeps matching on the book (engine's on_book hooks)

    halt_listener = engine.halt.on_transition

    def on_transition(tr: Transition) -> None:
        journal.record_trading_state(tr.ts, str(tr.old), str(tr.new), tr.by, tr.reason)
        halt_listener(tr)

    path.state.set_listener(on_transition)

    def snapshot(ts: int) -> None:
        for symbol, lots, avg, realised, fees in path.portfolio.records():
            journal.record_position(ts, symbol, lots, avg, realised, fees)

    clock.call_every(int(snapshot_s * 1e9), snapshot)
    return report
