"""The journal: records round-trip into the recovery view, fills are idempotent, bad files are refused,
and a writer killed at random moments leaves a journal that opens with every acknowledged write in it."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.events import Fill, Liquidity, Order, OrderIntent, OrderType, Side
from daemon.journal import SCHEMA_VERSION, Journal, JournalError
from tests.conftest import REPO
from tests.journal.crash_child import fill_for, order_for


def order(n: int, symbol: str = "BTCUSDT", side: Side = Side.BUY, qty: int = 5) -> Order:
    return Order(f"dd-{n}", symbol, 100 * n, side, qty, OrderType.LIMIT, 1000 + n, "t")


def fill(o: Order, trade_id: str, qty: int, ts: int | None = None) -> Fill:
    return Fill(o.client_id, o.symbol, ts if ts is not None else o.ts + 1, o.side, o.limit_px or 0, qty, 0.5,
                Liquidity.TAKER, trade_id)


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def journal(jpath: Path):
    j = Journal.open(jpath)
    yield j
    j.close()


# --- writing and reading back ----------------------------------------------------------------


def test_new_journal_recovers_nothing(journal: Journal) -> None:
    rec = journal.recovery
    assert rec.open_orders == [] and rec.last_fills == {} and rec.positions == {}
    assert rec.trading_state is None and rec.next_client_seq == 1 and rec.last_seq == 0


def test_open_order_round_trips_with_state_venue_id_and_filled_qty(journal: Journal, jpath: Path) -> None:
    o = order(1)
    journal.record_order(o, venue="binance")
    journal.record_order_event(150, o.client_id, "ACCEPT", "NEW", venue_order_id="V1", payload={"status": "NEW"})
    journal.record_fill(fill(o, "T1", 2), "binance", state="PARTIALLY_FILLED", event="PARTIAL_FILL")
    journal.close()

    rec = Journal.open(jpath).recovery

    (jo,) = rec.open_orders
    assert jo.order == o
    assert (jo.venue, jo.state, jo.venue_order_id, jo.filled_qty, jo.leaves_qty) == ("binance", "PARTIALLY_FILLED",
                                                                                        "V1", 2, 3)
    assert jo.acked and rec.unacked_orders == []


def test_order_written_before_send_without_ack_is_unacked(journal: Journal) -> None:
    journal.record_order(order(1))
    journal.record_order(order(2))
    journal.record_order_event(300, "dd-2", "SEND_TIMEOUT", "UNKNOWN")

    assert [o.order.client_id for o in journal.recover().unacked_orders] == ["dd-1", "dd-2"]


def test_cancel_requested_before_the_ack_stays_unacked_until_the_venue_answers(journal: Journal) -> None:
    journal.record_order(order(1))
    journal.record_order_event(200, "dd-1", "CANCEL_REQUEST", "PENDING_CANCEL")

    (jo,) = journal.recover().unacked_orders
    assert (jo.state, jo.acked, jo.cancel_requested) == ("PENDING_CANCEL", False, True)

    journal.record_order_event(300, "dd-1", "ACCEPT", "PENDING_CANCEL", venue_order_id="V1")
    (jo,) = journal.recover().open_orders
    assert (jo.acked, jo.cancel_requested, jo.venue_order_id) == (True, True, "V1")


def test_acked_and_venue_filled_never_go_back(journal: Journal) -> None:
    o = order(1)
    journal.record_order(o)
    journal.record_fill(fill(o, "T1", 1), "v", state="PARTIALLY_FILLED")  # a fill proves the venue has it
    journal.record_order_event(300, "dd-1", "STATUS", "PARTIALLY_FILLED", venue_filled=3)
    journal.record_order_event(400, "dd-1", "STATUS", "PARTIALLY_FILLED", venue_filled=2, acked=False)

    (jo,) = journal.recover().open_orders
    assert (jo.acked, jo.venue_filled, jo.filled_qty) == (True, 3, 1)


@pytest.mark.parametrize("terminal", ["FILLED", "CANCELED", "REJECTED", "EXPIRED"])
def test_terminal_orders_are_not_open(journal: Journal, terminal: str) -> None:
    journal.record_order(order(1))
    journal.record_order(order(2))
    journal.record_order_event(300, "dd-1", "X", terminal)

    assert [o.order.client_id for o in journal.recover().open_orders] == ["dd-2"]


def test_duplicate_fill_is_a_noop_that_says_so(journal: Journal) -> None:
    o = order(1)
    journal.record_order(o)
    first = journal.record_fill(fill(o, "T1", 2), "binance", state="PARTIALLY_FILLED")

    again = journal.record_fill(fill(o, "T1", 2), "binance", state="PARTIALLY_FILLED")

    assert first.inserted and not again.inserted and again.seq == first.seq
    assert journal.counts["duplicate_fills"] == 1
    rec = journal.recover()
    assert rec.open_orders[0].filled_qty == 2 and rec.counts["fills"] == 1 and rec.counts["order_events"] == 1
    assert rec.last_seq == first.seq + 1 == journal.last_seq


def test_same_trade_id_on_another_venue_is_another_fill(journal: Journal) -> None:
    o = order(1)
    journal.record_order(o)

    assert journal.record_fill(fill(o, "T1", 1), "binance").inserted
    assert journal.record_fill(fill(o, "T1", 1), "okx").inserted


def test_fill_and_its_order_event_are_one_write(journal: Journal) -> None:
    stranger = fill(order(9), "T9", 1)

    with pytest.raises(JournalError, match="dd-9"):
        journal.record_fill(stranger, "binance", state="FILLED")

    assert journal.recover().counts["fills"] == 0 and journal.last_seq == 0
    assert journal.record_fill(stranger, "binance").inserted  # without a state: a fill of an order we do not own


def test_client_id_already_journaled_is_refused(journal: Journal) -> None:
    journal.record_order(order(1))

    with pytest.raises(JournalError, match=r"order dd-1 refused: UNIQUE constraint failed: orders.client_id"):
        journal.record_order(order(1))
    assert journal.counts["failed_writes"] == 1 and journal.last_seq == 1


def test_event_for_an_order_not_journaled_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="client id 'dd-7', which is not journaled"):
        journal.record_order_event(1, "dd-7", "ACCEPT", "NEW")
    assert journal.recover().counts["order_events"] == 0


def test_payload_that_is_not_json_is_refused_and_nothing_written(journal: Journal) -> None:
    journal.record_order(order(1))

    with pytest.raises(JournalError, match="not JSON-serialisable"):
        journal.record_order_event(1, "dd-1", "ACCEPT", "NEW", payload={"x": object()})
    assert journal.recover().open_orders[0].state == "PENDING_NEW"


def test_sequence_numbers_increase_across_record_kinds_and_restarts(journal: Journal, jpath: Path) -> None:
    o = order(1)
    intent = OrderIntent("BTCUSDT", 100, Side.BUY, 5, OrderType.LIMIT, 1001)
    seqs = [journal.record_intent(intent, passed=True, client_id="dd-1"), journal.record_order(o),
            journal.record_order_event(101, "dd-1", "ACCEPT", "NEW"), journal.record_fill(fill(o, "T1", 5), "b").seq,
            journal.record_position(102, "BTCUSDT", 5, 1.001, 0.0, 0.5),
            journal.record_trading_state(103, "ACTIVE", "HALTED", "operator:ann", "manual"),
            journal.record_reconciliation(104, {"ok": True})]
    journal.close()

    reopened = Journal.open(jpath)
    seqs.append(reopened.record_intent(intent, passed=False, reason="halted"))
    reopened.close()

    assert seqs == list(range(1, 9))


def test_recovery_gives_latest_snapshot_and_the_fills_after_it(journal: Journal) -> None:
    a, b = order(1), order(2, symbol="ETHUSDT")
    journal.record_order(a)
    journal.record_order(b)
    journal.record_fill(fill(a, "A1", 1), "v")
    journal.record_position(500, "BTCUSDT", 1, 1.001, 0.0, 0.5)
    journal.record_fill(fill(a, "A2", 2), "v")
    journal.record_fill(fill(b, "B1", 3), "v")

    rec = journal.recover()

    assert list(rec.positions) == ["BTCUSDT"] and rec.positions["BTCUSDT"].qty == 1
    assert {s: [f.fill.trade_id for f in fs] for s, fs in rec.fills_after_snapshot.items()} == {
        "BTCUSDT": ["A2"], "ETHUSDT": ["B1"]}
    assert rec.fills_after_snapshot["BTCUSDT"][0].fill == fill(a, "A2", 2)


def test_last_fill_per_symbol_is_the_latest_by_time(journal: Journal) -> None:
    a, b = order(1), order(2, symbol="ETHUSDT")
    journal.record_order(a)
    journal.record_order(b)
    journal.record_fill(fill(a, "A2", 1, ts=900), "v")
    journal.record_fill(fill(a, "A1", 1, ts=800), "v")  # arrived late, happened earlier
    journal.record_fill(fill(b, "B1", 1, ts=700), "v")

    marks = journal.recover().last_fills

    assert {s: (m.ts, m.trade_id) for s, m in marks.items()} == {"BTCUSDT": (900, "A2"), "ETHUSDT": (700, "B1")}


def test_last_trading_state_and_next_client_seq_survive_restart(journal: Journal, jpath: Path) -> None:
    journal.record_trading_state(1, "ACTIVE", "REDUCING", "trigger:stale_feed", "feed down")
    journal.record_trading_state(2, "REDUCING", "HALTED", "trigger:daily_loss", "loss 1200 > 1000")
    journal.record_order(order(41))
    journal.record_order(Order("manual-x", "BTCUSDT", 5, Side.SELL, 1, OrderType.MARKET))
    journal.close()

    rec = Journal.open(jpath).recovery

    assert rec.trading_state is not None
    assert (rec.trading_state.new, rec.trading_state.by, rec.trading_state.reason) == (
        "HALTED", "trigger:daily_loss", "loss 1200 > 1000")
    assert rec.next_client_seq == 42


def test_boot_ids_are_journaled_once_and_recovered(journal: Journal, jpath: Path) -> None:
    journal.record_boot(1, 0)
    journal.record_boot(2, 1)
    with pytest.raises(JournalError, match="boot 1 refused"):
        journal.record_boot(3, 1)
    journal.close()

    assert Journal.open(jpath).recovery.last_boot == 1


def test_only_plain_numbered_client_ids_count_for_next_client_seq(journal: Journal) -> None:
    for cid in ("dd-7", "dd1-k3x9qz-90", "manual", "x-1a"):
        journal.record_order(Order(cid, "BTCUSDT", 1, Side.BUY, 1, OrderType.MARKET))

    assert journal.recover().next_client_seq == 8


def test_refused_intent_and_reconciliation_report_are_stored(journal: Journal, jpath: Path) -> None:
    intent = OrderIntent("BTCUSDT", 100, Side.SELL, 2, OrderType.MARKET, reduce_only=True, tag="exit")
    journal.record_intent(intent, passed=False, reason="max_notional")
    journal.record_reconciliation(7, {"discrepancies": [{"client_id": "dd-3", "kind": "orphan"}]})
    journal.close()

    with sqlite3.connect(jpath) as conn:
        assert conn.execute("SELECT side, reduce_only, tag, decision, reason, client_id FROM intents").fetchall() == [
            (-1, 1, "exit", "refused", "max_notional", None)]
        assert conn.execute("SELECT ts, report FROM reconciliations").fetchall() == [
            (7, '{"discrepancies":[{"client_id":"dd-3","kind":"orphan"}]}')]


def test_durable_and_lazy_writes_are_counted(jpath: Path) -> None:
    with Journal.open(jpath) as j:
        j.record_order(order(1))
        j.record_order_event(1, "dd-1", "ACCEPT", "NEW")
        j.flush()
        assert (j.counts["durable_writes"], j.counts["lazy_writes"]) == (1, 1)
    with Journal.open(jpath, all_durable=True) as j:
        j.record_order_event(2, "dd-1", "CANCEL_REQUEST", "PENDING_CANCEL")
        assert (j.counts["durable_writes"], j.counts["lazy_writes"]) == (1, 0)


def test_closed_journal_refuses_writes(jpath: Path) -> None:
    j = Journal.open(jpath)
    j.close()

    with pytest.raises(JournalError, match="closed"):
        j.record_order(order(1))
    with pytest.raises(JournalError, match="recover: the journal is closed"):
        j.recover()


# --- files that are not a usable journal -------------------------------------------------------


def test_second_writer_is_refused_while_the_first_holds_the_journal(journal: Journal, jpath: Path) -> None:
    with pytest.raises(JournalError, match="in use by another process"):
        Journal.open(jpath)


def test_file_that_is_not_sqlite_is_refused(jpath: Path) -> None:
    jpath.write_bytes(b"this is a config file, not a journal\n" * 200)

    with pytest.raises(JournalError, match=r"journal .*journal.db: not a readable SQLite journal: file is not a"):
        Journal.open(jpath)
    assert jpath.read_bytes().startswith(b"this is a config file")


def test_empty_file_is_refused_not_replaced(jpath: Path) -> None:
    jpath.write_bytes(b"")

    with pytest.raises(JournalError, match="empty"):
        Journal.open(jpath)


def _filled_journal(jpath: Path, n: int) -> None:
    with Journal.open(jpath) as j:
        for i in range(1, n + 1):
            o = order(i)
            j.record_order(o)
            j.record_fill(fill(o, f"T{i}", 5), "v", state="FILLED")


def test_truncated_journal_is_refused(jpath: Path) -> None:
    _filled_journal(jpath, 100)
    size = jpath.stat().st_size
    with open(jpath, "r+b") as f:
        f.truncate(size // 2)

    with pytest.raises(JournalError, match=r"integrity_check failed|malformed"):
        Journal.open(jpath)


def test_corrupt_page_is_refused(jpath: Path) -> None:
    _filled_journal(jpath, 100)
    with open(jpath, "r+b") as f:
        f.seek(4096 * 3)  # page 4: the root of the orders table
        f.write(b"\xff" * 4096)

    with pytest.raises(JournalError, match=r"integrity_check failed|malformed"):
        Journal.open(jpath)


def test_future_schema_version_is_refused(jpath: Path) -> None:
    Journal.open(jpath).close()
    with sqlite3.connect(jpath) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))

    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1} is newer than this depthd"):
        Journal.open(jpath)


def test_older_schema_without_a_migration_is_refused(jpath: Path) -> None:
    Journal.open(jpath).close()
    with sqlite3.connect(jpath) as conn:
        conn.execute("UPDATE schema_version SET version = 0")

    with pytest.raises(JournalError, match=f"schema version 0 has no migration to {SCHEMA_VERSION}"):
        Journal.open(jpath)


def test_sqlite_database_of_something_else_is_refused(jpath: Path) -> None:
    with sqlite3.connect(jpath) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")

    with pytest.raises(JournalError, match="not a depthd journal"):
        Journal.open(jpath)


def test_new_journal_is_created_in_a_new_directory_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "j.db"

    with Journal.open(path):
        pass

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not path.with_name("j.db.new").exists()
    assert path.stat().st_mode & 0o777 == 0o600


# --- kill -9 ---------------------------------------------------------------------------------


def _run_and_kill(jpath: Path, rng: random.Random) -> tuple[int, list[str]]:
    """Start the child, let it acknowledge a random number of writes, SIGKILL it at a random moment."""
    child = subprocess.Popen([sys.executable, "-m", "tests.journal.crash_child", str(jpath)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        assert ready[0] == "R", ready
        wanted = rng.randint(0, 40)
        lines: list[str] = []
        while len(lines) < wanted:
            line = child.stdout.readline()
            assert line, "child ended before it was killed"
            lines.append(line.strip())
        time.sleep(rng.uniform(0, 0.003))  # land the kill at a random point of the next writes
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return int(ready[1]), lines + [x.strip() for x in rest.splitlines() if x.strip()]


def test_kill_9_at_random_moments_loses_no_acknowledged_write(jpath: Path) -> None:
    rng = random.Random(20261122)
    acked_fills: set[str] = set()
    acked_orders: set[str] = set()
    wal_seen = 0
    next_seq = 1
    for _run in range(8):
        start, lines = _run_and_kill(jpath, rng)
        assert start == next_seq  # the child numbered its orders from the previous recovery
        acked_orders |= {x.split()[1] for x in lines if x.startswith("O ")}
        acked_fills |= {x.split()[1] for x in lines if x.startswith("F ")}
        wal = Path(f"{jpath}-wal")
        wal_seen += wal.exists() and wal.stat().st_size > 0

        with Journal.open(jpath) as j:  # replays the WAL the crash left, integrity_check passes
            rec = j.recovery
            conn = sqlite3.connect(jpath)
            try:
                fills = conn.execute("SELECT trade_id, client_id, symbol, side, price, qty, ts FROM fills").fetchall()
                orders = conn.execute(
                    "SELECT client_id, symbol, side, qty, limit_px, tag, state FROM orders").fetchall()
                fill_events = conn.execute(
                    "SELECT client_id FROM order_events WHERE event = 'FULL_FILL'").fetchall()
                seqs = [r[0] for r in conn.execute(
                    "SELECT seq FROM orders UNION ALL SELECT seq FROM order_events UNION ALL SELECT seq FROM fills "
                    "UNION ALL SELECT seq FROM positions")]
            finally:
                conn.close()

        trade_ids = [f[0] for f in fills]
        assert len(trade_ids) == len(set(trade_ids))  # exactly once
        assert acked_fills <= set(trade_ids)
        assert acked_orders <= {o[0] for o in orders}
        # no partial record: every row is whole and is what the child meant to write
        for trade_id, cid, sym, side, px, qty, ts in fills:
            n = int(trade_id[1:])
            f = fill_for(n)
            assert (cid, sym, side, px, qty, ts) == (f.client_id, f.symbol, int(f.side), f.price, f.qty, f.ts)
        for cid, sym, side, qty, px, tag, state in orders:
            o = order_for(int(cid[3:]))
            assert (sym, side, qty, px, tag) == (o.symbol, int(o.side), o.qty, o.limit_px, o.tag)
            assert state in ("PENDING_NEW", "NEW", "FILLED")
        # a fill and its FULL_FILL event were one transaction: both or neither
        assert sorted(c for (c,) in fill_events) == sorted(f[1] for f in fills)
        assert {o[0] for o in orders if o[6] == "FILLED"} == {f[1] for f in fills}
        assert len(seqs) == len(set(seqs)) and max(seqs) == rec.last_seq
        next_seq = rec.next_client_seq
        assert next_seq == 1 + max((int(o[0][3:]) for o in orders), default=0)
        assert {jo.order.client_id for jo in rec.open_orders} == {o[0] for o in orders if o[6] != "FILLED"}
    assert wal_seen >= 1
    assert len(acked_fills) > 0


def test_a_confirmed_replace_is_what_recovery_rebuilds(tmp_path) -> None:
    from daemon.brokers.lifecycle import OrderState
    from daemon.brokers.reconcile import restore_tracker

    j = Journal.open(str(tmp_path / "r.db"))
    o = Order("dd-0-1", "BTCUSDT", 1, Side.BUY, 10, OrderType.LIMIT, 100)
    j.record_order(o, "ib")
    j.record_order_event(2, o.client_id, "ACCEPT", "NEW", "55")
    j.record_order_event(3, o.client_id, "REPLACE_REQUEST", "PENDING_REPLACE", payload={"qty": 30, "limit_px": 99})
    j.record_replace(4, o.client_id, 30, 99, "NEW")

    [view] = restore_tracker(j).open_orders()
    assert (view.order.qty, view.order.limit_px, view.state) == (30, 99, OrderState.NEW)
    with pytest.raises(JournalError, match="not journaled"):
        j.record_replace(5, "nope", 1, 1, "NEW")
    j.close()
