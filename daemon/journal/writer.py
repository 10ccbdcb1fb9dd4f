"""`Journal`: the write side, called synchronously on the event loop by the engine and the brokers.

Every `record_*` call is one SQLite transaction that is committed when the call returns; its records
get the next journal-wide sequence numbers. Two durabilities (see the package docstring for why the
lazy one is safe):

- durable (`synchronous=FULL`: the WAL is fsynced before the call returns; survives a power loss):
  orders, fills, trading-state changes, reconciliation reports.
- lazy (`synchronous=NORMAL`: committed to the WAL in the OS page cache, no fsync; survives a crash
  of the process, kill -9 included, but not of the machine until the next durable write or
  `flush()`): intents, order events not written with a fill, position snapshots.

A failed write raises JournalError and leaves nothing of itself behind (the transaction is rolled
back); the caller must not act as if it was journaled (an order whose `record_order` failed is not
sent).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import orjson

from daemon.events import Fill, Order, OrderIntent
from daemon.journal.recovery import Recovery, last_seq, read_recovery
from daemon.journal.schema import JournalError, connect
from daemon.latency import LatencyHistogram


class FillWrite(NamedTuple):
    """The outcome of `record_fill`: inserted, or a duplicate (same venue and trade id) left as it was."""

    inserted: bool
    seq: int


# States that do not show the venue has the order (it may not).
_NOT_ACKING_STATES = frozenset({"PENDING_NEW", "UNKNOWN", "PENDING_CANCEL"})
_PREFIX_N = re.compile(r"[A-Za-z0-9_]+-([0-9]+)")


def _client_seq(client_id: str) -> int | None:
    """The number an engine client id `<prefix>-<n>` was made from; None for any other form."""
    m = _PREFIX_N.fullmatch(client_id)
    return int(m.group(1)) if m else None


class _Tx:
    """Hands out the sequence numbers of one transaction."""

    def __init__(self, first: int) -> None:
        self.next = first

    def seq(self) -> int:
        s = self.next
        self.next += 1
        return s


class Journal:
    """The SQLite WAL journal of one daemon; `Journal.open(path)` checks it and reads its `recovery`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock_fd: int, all_durable: bool) -> None:
        self._conn = conn
        self.path = path
        self._lock_fd = lock_fd
        self._all_durable = all_durable
        self._sync_full = True
        self._seq = last_seq(conn)
        self.write_latency = LatencyHistogram()  # durable writes (fsync'd commits), for /metrics
        self.lazy_write_latency = LatencyHistogram()
        self.counts: dict[str, int] = {"durable_writes": 0, "lazy_writes": 0, "duplicate_fills": 0,
                                       "failed_writes": 0}
        self.recovery: Recovery = read_recovery(conn)

    @classmethod
    def open(cls, path: str | Path, all_durable: bool = False) -> Journal:
        """Open (or create, where no file exists) the journal at `path`, check it, and read its recovery."""
        path = Path(path)
        lock_fd = _lock(path)
        try:
            conn = connect(path)
        except BaseException:
            os.close(lock_fd)
            raise
        try:
            return cls(conn, path, lock_fd, all_durable)
        except sqlite3.Error as exc:
            conn.close()
            os.close(lock_fd)
            raise JournalError(path, f"cannot read: {exc}") from exc

    @property
    def last_seq(self) -> int:
        """The sequence number of the last record written."""
        return self._seq

    def recover(self) -> Recovery:
        """Read the recovery view as the journal stands now (the one from `open` is `self.recovery`)."""
        self._check_open("recover")
        return read_recovery(self._conn)

    # --- writes --------------------------------------------------------------------------------

    def record_intent(self, intent: OrderIntent, passed: bool, reason: str = "", client_id: str | None = None) -> int:
        """Journal an intent and the risk gate's decision (lazy); returns its sequence number."""
        with self._tx(durable=False, what="intent") as tx:
            seq = tx.seq()
            self._conn.execute(
                "INSERT INTO intents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, intent.ts, intent.symbol, int(intent.side), intent.qty, str(intent.order_type), intent.limit_px,
                 int(intent.reduce_only), intent.tag, "passed" if passed else "refused", reason, client_id))
        return seq

    def record_order(self, order: Order, venue: str = "", state: str = "PENDING_NEW",
                     client_seq: int | None = None) -> int:
        """Journal an order BEFORE it is sent (durable); a client id already journaled is an error."""
        cseq = client_seq if client_seq is not None else _client_seq(order.client_id)
        with self._tx(durable=True, what=f"order {order.client_id}") as tx:
            seq = tx.seq()
            self._conn.execute(
                "INSERT INTO orders (seq, ts, client_id, client_seq, symbol, side, qty, order_type, limit_px, tag, "
                "venue, state, updated_ts, updated_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, order.ts, order.client_id, cseq, order.symbol, int(order.side), order.qty, str(order.order_type),
                 order.limit_px, order.tag, venue, str(state), order.ts, seq))
        return seq

    def record_order_event(self, ts: int, client_id: str, event: str, state: str, venue_order_id: str | None = None,
                           payload: Mapping[str, object] | None = None, durable: bool = False,
                           acked: bool | None = None, venue_filled: int | None = None) -> int:
        """Journal an order's event and the state it leaves the order in (lazy unless `durable`).

        The order's `acked` flag (the venue knows the order) is set by `acked=True`, or when None by a
        venue order id or a state the venue put it in (not PENDING_NEW, UNKNOWN or PENDING_CANCEL);
        `cancel_requested` by a CANCEL_REQUEST event or the PENDING_CANCEL state; `venue_filled` (the
        venue's cumulative filled quantity) keeps its highest value. None of the three ever goes back.
        """
        if acked is None:
            acked = venue_order_id is not None or str(state) not in _NOT_ACKING_STATES
        with self._tx(durable=durable, what=f"order event {event} of {client_id}") as tx:
            seq = tx.seq()
            self._event(seq, ts, client_id, event, state, venue_order_id, payload, acked, venue_filled or 0)
        return seq

    def record_replace(self, ts: int, client_id: str, qty: int, limit_px: int | None, state: str) -> int:
        """Journal a modification the venue confirmed (durable): the order's row takes the new quantity and
        price, so a recovery rebuilds the order as it now works; the event keeps the old ones."""
        with self._tx(durable=True, what=f"replace of {client_id}") as tx:
            seq = tx.seq()
            old = self._conn.execute("SELECT qty, limit_px FROM orders WHERE client_id = ?", (client_id,)).fetchone()
            if old is None:
                raise JournalError(self.path, f"replace of client id {client_id!r}, which is not journaled")
            self._conn.execute("UPDATE orders SET qty = ?, limit_px = ? WHERE client_id = ?",
                               (qty, limit_px, client_id))
            self._event(seq, ts, client_id, "REPLACE", state, None,
                        {"qty": qty, "limit_px": limit_px, "old_qty": old[0], "old_limit_px": old[1]}, True, 0)
        return seq

    def record_fill(self, fill: Fill, venue: str, state: str | None = None, event: str = "FILL",
                    payload: Mapping[str, object] | None = None) -> FillWrite:
        """Journal a fill once per (venue, trade id) (durable); with `state`, the order's event goes in with it.

        A fill already journaled is a no-op that says so (`inserted=False`, the earlier record's seq),
        and its order event is not written again.
        """
        with self._tx(durable=True, what=f"fill {venue}/{fill.trade_id}") as tx:
            seq = tx.seq()
            cur = self._conn.execute(
                "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (venue, trade_id) DO NOTHING",
                (seq, fill.ts, venue, fill.trade_id, fill.client_id, fill.symbol, int(fill.side), fill.price, fill.qty,
                 float(fill.fee), str(fill.liquidity)))
            if cur.rowcount == 0:
                tx.next = seq
                old = self._conn.execute("SELECT seq FROM fills WHERE venue = ? AND trade_id = ?",
                                         (venue, fill.trade_id)).fetchone()[0]
                self.counts["duplicate_fills"] += 1
                return FillWrite(False, old)
            if state is not None:
                summary = {"trade_id": fill.trade_id, "qty": fill.qty, "price": fill.price, **(payload or {})}
                self._event(tx.seq(), fill.ts, fill.client_id, event, state, None, summary, True, 0)
        return FillWrite(True, seq)

    def record_position(self, ts: int, symbol: str, qty: int, avg_price: float | None, realised: float,
                        fees: float) -> int:
        """Journal a position snapshot (lazy: it can be rebuilt from an earlier one and the fills after it)."""
        with self._tx(durable=False, what=f"position {symbol}") as tx:
            seq = tx.seq()
            self._conn.execute("INSERT INTO positions VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (seq, ts, symbol, qty, avg_price, float(realised), float(fees)))
        return seq

    def record_trading_state(self, ts: int, old: str, new: str, by: str, reason: str) -> int:
        """Journal a change of trading state (durable: a halt must survive a restart)."""
        with self._tx(durable=True, what=f"trading state {old}->{new}") as tx:
            seq = tx.seq()
            self._conn.execute("INSERT INTO trading_states VALUES (?, ?, ?, ?, ?, ?)",
                               (seq, ts, str(old), str(new), by, reason))
        return seq

    def record_reconciliation(self, ts: int, report: Mapping[str, object]) -> int:
        """Journal a reconciliation report (free-form JSON, durable)."""
        with self._tx(durable=True, what="reconciliation report") as tx:
            seq = tx.seq()
            self._conn.execute("INSERT INTO reconciliations VALUES (?, ?, ?)", (seq, ts, _json(report, self.path)))
        return seq

    def record_boot(self, ts: int, boot: int) -> int:
        """Journal this start's boot id (durable, before the first order); a boot id used before is an error."""
        with self._tx(durable=True, what=f"boot {boot}") as tx:
            seq = tx.seq()
            self._conn.execute("INSERT INTO boots VALUES (?, ?, ?)", (seq, ts, boot))
        return seq

    def flush(self) -> None:
        """Make every lazily written record durable (fsync the WAL by a checkpoint); e.g. on a timer, at exit."""
        self._check_open("flush")
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            raise JournalError(self.path, f"checkpoint failed: {exc}") from exc

    def close(self) -> None:
        """Checkpoint and close the journal and release its lock."""
        if self._lock_fd < 0:
            return
        try:
            self._conn.close()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------

    def _event(self, seq: int, ts: int, client_id: str, event: str, state: str, venue_order_id: str | None,
               payload: Mapping[str, object] | None, acked: bool, venue_filled: int) -> None:
        cancel = str(event) == "CANCEL_REQUEST" or str(state) == "PENDING_CANCEL"
        cur = self._conn.execute(
            "UPDATE orders SET state = ?, venue_order_id = COALESCE(?, venue_order_id), acked = MAX(acked, ?), "
            "cancel_requested = MAX(cancel_requested, ?), venue_filled = MAX(venue_filled, ?), updated_ts = ?, "
            "updated_seq = ? WHERE client_id = ?",
            (str(state), venue_order_id, int(acked), int(cancel), venue_filled, ts, seq, client_id))
        if cur.rowcount != 1:
            raise JournalError(self.path, f"order event {event} for client id {client_id!r}, which is not journaled")
        body = _json(payload or {}, self.path)
        self._conn.execute("INSERT INTO order_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (seq, ts, client_id, str(event), str(state), venue_order_id, body))

    def _check_open(self, what: str) -> None:
        if self._lock_fd < 0:
            raise JournalError(self.path, f"{what}: the journal is closed")

    @contextlib.contextmanager
    def _tx(self, durable: bool, what: str) -> Iterator[_Tx]:
        self._check_open(what)
        full = durable or self._all_durable
        conn = self._conn
        tx = _Tx(self._seq + 1)
        t0 = time.perf_counter_ns()
        try:
            if full != self._sync_full:
                conn.execute("PRAGMA synchronous = FULL" if full else "PRAGMA synchronous = NORMAL")
                self._sync_full = full
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield tx
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as exc:
            self.counts["failed_writes"] += 1
            raise JournalError(self.path, f"{what} refused: {exc}") from exc
        except sqlite3.Error as exc:
            self.counts["failed_writes"] += 1
            raise JournalError(self.path, f"{what} not written: {exc}") from exc
        except JournalError:
            self.counts["failed_writes"] += 1
            raise
        self._seq = tx.next - 1
        self.counts["durable_writes" if full else "lazy_writes"] += 1
        (self.write_latency if full else self.lazy_write_latency).observe_ns(time.perf_counter_ns() - t0)


def _json(obj: Mapping[str, object], path: Path) -> str:
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError as exc:
        raise JournalError(path, f"payload is not JSON-serialisable: {exc}") from exc


def _lock(path: Path) -> int:
    """Take the journal's writer lock (a sibling `.lock` file): one daemon writes a journal at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalError(path, f"in use by another process (lock {lock_path} is held)") from None
    return fd
