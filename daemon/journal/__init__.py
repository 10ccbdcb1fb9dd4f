"""The journal: SQLite in WAL mode, written before orders are sent, read on restart to recover (DESIGN rule 6).

Modules: `schema` (tables, opening and checking a journal file, JournalError), `writer` (`Journal`,
the write API), `recovery` (`Recovery`, the read side).

Writing (on the event loop; each call is one committed transaction and returns in ~15 µs lazy,
~0.25 ms durable on an SSD; see `writer`):

    journal = Journal.open(path)               # checks, takes the writer lock, reads journal.recovery
    journal.record_intent(intent, passed=False, reason="max_position")
    journal.record_order(order, venue="binance")          # durable, BEFORE broker.submit(order)
    broker.submit(order)
    journal.record_order_event(ts, cid, "ACCEPT", "NEW", venue_order_id="8812", payload={...})
    journal.record_fill(fill, venue="binance", state="PARTIALLY_FILLED")  # FillWrite(inserted, seq)
    journal.record_position(ts, sym, lots, avg_price, realised, fees)
    journal.record_trading_state(ts, "ACTIVE", "HALTED", "trigger:daily_loss", "loss 1200 > 1000")
    journal.record_reconciliation(ts, {"discrepancies": [...]})
    journal.record_boot(ts, boot)                          # durable, once per start, before any order

Why the lazy records are safe to lose on a power loss (never on a process crash: they are in the
WAL, in the OS page cache, when the call returns): an intent is an audit record; a lost order event
leaves the order in its last journaled state, which is at worst PENDING_NEW (unacknowledged) or
still open, and startup reconciliation asks the venue about every such order by client id; a lost
position snapshot leaves an earlier one (or none) and the fills after it, from which the position
is rebuilt. Orders and fills, which cannot be rebuilt from anything else we own, are durable.

How a restarted daemon uses `journal.recovery` (before it trades; the reconciler owns the steps
that talk to the venue):

1. `trading_state`: if the last journaled change left the daemon HALTED, it comes up HALTED (the
   halt survives the restart until an operator resumes); REDUCING comes back as REDUCING.
2. Client ids never repeat a journaled one. With `daemon.brokers.client_ids` ids
   (`<prefix>-<boot>-<seq>`): `boot = next_boot_id(recovery.last_boot)`, then
   `journal.record_boot(ts, boot)` (durable, refused if that boot id was used) before the first
   order; seq restarts at 0. With the engine's plain `<prefix>-<n>` ids: number from
   `next_client_seq` (1 + the highest n journaled). Either way an order is journaled before it is
   sent, so an id reserved but never journaled was never sent.
3. `positions` + `fills_after_snapshot`: the portfolio is the latest snapshot per symbol with the
   journaled fills after it applied on top (by sequence number).
4. `last_fills`: per symbol the latest journaled fill (by ts); the reconciler fetches the venue's
   fills from a margin before that time (venues report fills out of order) and journals each with
   `record_fill`: one already journaled comes back `inserted=False` and is not applied again; an
   inserted one is applied to the portfolio and its order.
5. `open_orders` (every order not FILLED/CANCELED/REJECTED/EXPIRED; each maps onto
   `daemon.brokers.orders.OrderRecord`: order, state, filled_qty, acked, cancel_requested,
   venue_order_id, venue_filled, with the journaled fills), of which `unacked_orders` (never
   acknowledged: the send may or may not have reached the venue) are looked up at the
   venue by client id; each order's venue answer is journaled as an order event (e.g. ACCEPT ->
   NEW, or REJECT/EXPIRED when the venue never saw it). An order the venue has open but the journal
   does not own is an orphan. Anything that cannot be resolved is reported with
   `record_reconciliation` and the daemon comes up HALTED.
6. `last_seq`: the sequence number of the last record, for logs and the reconciliation report.
"""

from daemon.journal.recovery import (
    TERMINAL_STATES,
    FillMark,
    JournaledFill,
    JournaledOrder,
    PositionSnapshot,
    Recovery,
    TradingStateRecord,
)
from daemon.journal.schema import SCHEMA_VERSION, JournalError
from daemon.journal.writer import FillWrite, Journal

__all__ = [
    "SCHEMA_VERSION",
    "TERMINAL_STATES",
    "FillMark",
    "FillWrite",
    "Journal",
    "JournalError",
    "JournaledFill",
    "JournaledOrder",
    "PositionSnapshot",
    "Recovery",
    "TradingStateRecord",
]
