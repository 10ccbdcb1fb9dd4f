"""The recovery read side: what a restarted daemon learns from its journal before it trades.

`read_recovery(conn)` reads a journal (already opened and checked) into a `Recovery`; see the
package docstring for how the daemon uses each part.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from daemon.brokers.lifecycle import TERMINAL
from daemon.events import Fill, Liquidity, Order, OrderType, Side
from daemon.journal.schema import RECORD_TABLES

# Terminal order states (no further event can change them); every other state is open. EXPIRED is
# terminal even before the lifecycle table names it.
TERMINAL_STATES: frozenset[str] = frozenset({str(s) for s in TERMINAL} | {"EXPIRED"})


@dataclass(frozen=True, slots=True)
class JournaledOrder:
    """An order as journaled: what was sent, where it stood last, and how much the journal saw filled.

    `filled_qty` sums the journaled fills; `acked` says the venue acknowledged it (False: it may or
    may not exist there); `venue_filled` is the venue's cumulative filled quantity last reported.
    """

    order: Order
    client_seq: int | None
    venue: str
    state: str
    venue_order_id: str | None
    filled_qty: int
    acked: bool
    cancel_requested: bool
    venue_filled: int
    seq: int
    updated_ts: int

    @property
    def leaves_qty(self) -> int:
        """Quantity not yet filled, by the journal's fills."""
        return self.order.qty - self.filled_qty


@dataclass(frozen=True, slots=True)
class JournaledFill:
    """A fill as journaled, with the venue it came from and its journal sequence number."""

    fill: Fill
    venue: str
    seq: int


@dataclass(frozen=True, slots=True)
class FillMark:
    """The latest fill (by `ts`) journaled for a symbol: ask the venue for fills from a margin before `ts`."""

    ts: int
    venue: str
    trade_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """A journaled position: qty in lots (signed), average price and money in quote currency."""

    symbol: str
    ts: int
    qty: int
    avg_price: float | None
    realised: float
    fees: float
    seq: int


@dataclass(frozen=True, slots=True)
class TradingStateRecord:
    """A journaled change of trading state."""

    ts: int
    old: str
    new: str
    by: str
    reason: str
    seq: int


@dataclass(frozen=True, slots=True)
class Recovery:
    """Everything a restarted daemon needs from the journal to rebuild its state and reconcile.

    `open_orders` in journal order; `last_fills`, `positions` and `fills_after_snapshot` by symbol;
    `next_client_seq` is 1 + the highest n of `<prefix>-<n>` client ids (1 when none); `last_seq`
    the last record's sequence number; `last_boot` the highest boot id journaled (None: first start);
    `counts` the records per table; `open_order_fills` every fill of the open orders, in journal order (with
    `open_orders`, what rebuilds an OrderTracker).
    """

    open_orders: list[JournaledOrder]
    last_fills: dict[str, FillMark]
    positions: dict[str, PositionSnapshot]
    fills_after_snapshot: dict[str, list[JournaledFill]]
    trading_state: TradingStateRecord | None
    next_client_seq: int
    last_seq: int
    last_boot: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    open_order_fills: list[Fill] = field(default_factory=list)

    @property
    def unacked_orders(self) -> list[JournaledOrder]:
        """Open orders sent (or about to be) without a venue acknowledgement: look them up by client id."""
        return [o for o in self.open_orders if not o.acked]


_ORDER_COLS = ("seq, ts, client_id, client_seq, symbol, side, qty, order_type, limit_px, tag, venue, state, "
               "venue_order_id, acked, cancel_requested, venue_filled, updated_ts")
_FILL_COLS = "seq, ts, venue, trade_id, client_id, symbol, side, price, qty, fee, liquidity"


_SIDES = {int(s): s for s in Side}
_LIQUIDITY = {str(x): x for x in Liquidity}


def _order(row: tuple, filled: dict[str, int]) -> JournaledOrder:
    seq, ts, cid, cseq, sym, side, qty, otype, px, tag, venue, state, void, acked, cancel, vfilled, uts = row
    order = Order(cid, sym, ts, _SIDES[side], qty, OrderType(otype), px, tag)
    return JournaledOrder(order, cseq, venue, state, void, filled.get(cid, 0), bool(acked), bool(cancel), vfilled,
                          seq, uts)


def _fill(row: tuple) -> JournaledFill:
    seq, ts, venue, tid, cid, sym, side, px, qty, fee, liq = row
    return JournaledFill(Fill(cid, sym, ts, _SIDES[side], px, qty, fee, _LIQUIDITY[liq], tid), venue, seq)


def read_recovery(conn: sqlite3.Connection) -> Recovery:
    """Read the recovery view of a journal in one read transaction (a consistent snapshot)."""
    conn.execute("BEGIN")
    try:
        return _read(conn)
    finally:
        conn.execute("COMMIT")


def _read(conn: sqlite3.Connection) -> Recovery:
    marks = ",".join("?" * len(TERMINAL_STATES))
    rows = conn.execute(f"SELECT {_ORDER_COLS} FROM orders WHERE state NOT IN ({marks}) ORDER BY seq",
                        tuple(TERMINAL_STATES)).fetchall()
    filled: dict[str, int] = {}
    if rows:
        filled = dict(conn.execute(
            f"SELECT client_id, SUM(qty) FROM fills WHERE client_id IN (SELECT client_id FROM orders "
            f"WHERE state NOT IN ({marks})) GROUP BY client_id", tuple(TERMINAL_STATES)).fetchall())
    open_orders = [_order(r, filled) for r in rows]
    open_fills = [_fill(r).fill for r in conn.execute(
        f"SELECT {_FILL_COLS} FROM fills WHERE client_id IN (SELECT client_id FROM orders WHERE state NOT IN "
        f"({marks})) ORDER BY seq", tuple(TERMINAL_STATES))] if rows else []

    last_fills: dict[str, FillMark] = {}
    # SQLite takes the bare columns of a MAX() aggregate from the row that holds the maximum
    for seq, ts, venue, tid, sym in conn.execute(
            "SELECT seq, MAX(ts), venue, trade_id, symbol FROM fills GROUP BY symbol"):
        last_fills[sym] = FillMark(ts, venue, tid, seq)

    positions: dict[str, PositionSnapshot] = {}
    for seq, ts, sym, qty, avg, realised, fees in conn.execute(
            "SELECT p.seq, p.ts, p.symbol, p.qty, p.avg_price, p.realised, p.fees FROM positions p "
            "JOIN (SELECT symbol, MAX(seq) AS m FROM positions GROUP BY symbol) l ON p.seq = l.m"):
        positions[sym] = PositionSnapshot(sym, ts, qty, avg, realised, fees, seq)

    after: dict[str, list[JournaledFill]] = {}
    for row in conn.execute(
            f"SELECT {_FILL_COLS} FROM fills f WHERE f.seq > COALESCE((SELECT MAX(p.seq) FROM positions p "
            "WHERE p.symbol = f.symbol), 0) ORDER BY f.seq"):
        jf = _fill(row)
        after.setdefault(jf.fill.symbol, []).append(jf)

    ts_row = conn.execute(
        "SELECT ts, old, new, by, reason, seq FROM trading_states ORDER BY seq DESC LIMIT 1").fetchone()
    trading_state = TradingStateRecord(*ts_row) if ts_row else None

    max_cseq = conn.execute("SELECT MAX(client_seq) FROM orders").fetchone()[0]
    boot = conn.execute("SELECT MAX(boot) FROM boots").fetchone()[0]
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in RECORD_TABLES}
    return Recovery(open_orders, last_fills, positions, after, trading_state,
                    (max_cseq or 0) + 1, last_seq(conn), boot, counts, open_fills)


def last_seq(conn: sqlite3.Connection) -> int:
    """The highest sequence number written to any record table (0 for an empty journal)."""
    union = " UNION ALL ".join(f"SELECT MAX(seq) AS m FROM {t}" for t in RECORD_TABLES)
    return conn.execute(f"SELECT COALESCE(MAX(m), 0) FROM ({union})").fetchone()[0]
