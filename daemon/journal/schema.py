"""The journal's SQLite schema, and opening a journal file safely.

Opening checks, in order, and raises JournalError naming the file and the problem at the first
failure: the file is a SQLite database (not another file, not empty or truncated), `PRAGMA
integrity_check` answers "ok", it is a depthd journal (its `schema_version` table says so), and its
schema version is one this code knows (a newer one is refused: an older daemon must not write to a
journal it does not understand; an older one is migrated forward in one transaction). A journal is
never silently replaced: a new one is created only where no file exists, built under a temporary
name and renamed into place once its schema is committed, so a crash during creation leaves no
half-made journal behind. A WAL file left by a crash is replayed by SQLite when the journal opens.

Schema version 1 (every record has the clock time `ts` in ns it happened at and a journal-wide,
strictly increasing `seq`):

    intents          ts, symbol, side, qty, order_type, limit_px, reduce_only, tag,
                     decision ('passed'|'refused'), reason, client_id (when passed)
    orders           ts, client_id UNIQUE, client_seq, symbol, side, qty, order_type, limit_px, tag,
                     venue, state, venue_order_id, acked, cancel_requested, venue_filled,
                     updated_ts, updated_seq   (written before sending; the rest kept by its events)
    order_events     ts, client_id -> orders, event, state (after the event), venue_order_id, payload (JSON)
    fills            ts, venue, trade_id, client_id, symbol, side, price, qty, fee, liquidity;
                     UNIQUE (venue, trade_id)
    positions        ts, symbol, qty (lots), avg_price, realised, fees
    trading_states   ts, old, new, by, reason
    reconciliations  ts, report (JSON)
    boots            ts, boot UNIQUE   (the boot id of each start, for client ids `<prefix>-<boot>-<seq>`)
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from daemon.errors import DepthdError

SCHEMA_VERSION = 1
APP = "depthd-journal"


class JournalError(DepthdError):
    """The journal cannot be used: unreadable, corrupt, not a journal, newer schema, or in use."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"journal {path}: {problem}")


_SIDE = "side INTEGER NOT NULL CHECK (side IN (1, -1))"
_SEQ = "seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL"

SCHEMA_V1: tuple[str, ...] = (
    "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), app TEXT NOT NULL, "
    "version INTEGER NOT NULL)",
    f"CREATE TABLE intents ({_SEQ}, symbol TEXT NOT NULL, {_SIDE}, qty INTEGER NOT NULL CHECK (qty > 0), "
    "order_type TEXT NOT NULL, limit_px INTEGER, reduce_only INTEGER NOT NULL, tag TEXT NOT NULL, "
    "decision TEXT NOT NULL CHECK (decision IN ('passed', 'refused')), reason TEXT NOT NULL, client_id TEXT)",
    f"CREATE TABLE orders ({_SEQ}, client_id TEXT NOT NULL UNIQUE, client_seq INTEGER, symbol TEXT NOT NULL, "
    f"{_SIDE}, qty INTEGER NOT NULL CHECK (qty > 0), order_type TEXT NOT NULL, limit_px INTEGER, "
    "tag TEXT NOT NULL, venue TEXT NOT NULL, state TEXT NOT NULL, venue_order_id TEXT, "
    "acked INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0, "
    "venue_filled INTEGER NOT NULL DEFAULT 0, updated_ts INTEGER NOT NULL, updated_seq INTEGER NOT NULL)",
    "CREATE INDEX orders_state ON orders (state)",
    f"CREATE TABLE order_events ({_SEQ}, client_id TEXT NOT NULL REFERENCES orders (client_id), "
    "event TEXT NOT NULL, state TEXT NOT NULL, venue_order_id TEXT, payload TEXT NOT NULL)",
    "CREATE INDEX order_events_client ON order_events (client_id)",
    f"CREATE TABLE fills ({_SEQ}, venue TEXT NOT NULL, trade_id TEXT NOT NULL, client_id TEXT NOT NULL, "
    f"symbol TEXT NOT NULL, {_SIDE}, price INTEGER NOT NULL, qty INTEGER NOT NULL CHECK (qty > 0), "
    "fee REAL NOT NULL, liquidity TEXT NOT NULL, UNIQUE (venue, trade_id))",
    "CREATE INDEX fills_symbol ON fills (symbol, ts)",
    "CREATE INDEX fills_client ON fills (client_id)",
    f"CREATE TABLE positions ({_SEQ}, symbol TEXT NOT NULL, qty INTEGER NOT NULL, avg_price REAL, "
    "realised REAL NOT NULL, fees REAL NOT NULL)",
    "CREATE INDEX positions_symbol ON positions (symbol, seq)",
    f"CREATE TABLE trading_states ({_SEQ}, old TEXT NOT NULL, new TEXT NOT NULL, by TEXT NOT NULL, "
    "reason TEXT NOT NULL)",
    f"CREATE TABLE reconciliations ({_SEQ}, report TEXT NOT NULL)",
    f"CREATE TABLE boots ({_SEQ}, boot INTEGER NOT NULL UNIQUE CHECK (boot >= 0))",
)

RECORD_TABLES: tuple[str, ...] = ("intents", "orders", "order_events", "fills", "positions", "trading_states",
                                  "reconciliations", "boots")

# MIGRATIONS[v] brings a version-v journal to version v + 1 (applied in order, in one transaction).
MIGRATIONS: dict[int, tuple[str, ...]] = {}


def connect(path: Path) -> sqlite3.Connection:
    """A checked connection to the journal at `path`, creating a new one only where no file exists."""
    if not path.exists():
        _create(path)
    elif path.stat().st_size == 0:
        raise JournalError(path, "the file is empty (0 bytes): truncated? refusing to start a new journal over it")
    conn = _raw_connect(path)
    try:
        _check(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _raw_connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise JournalError(path, f"cannot open: {exc}") from exc
    return conn


def _check(conn: sqlite3.Connection, path: Path) -> None:
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        if rows != ["ok"]:
            raise JournalError(path, "integrity_check failed: " + "; ".join(rows[:5]))
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise JournalError(path, f"cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        if has is None:
            raise JournalError(path, "not a depthd journal (a SQLite database without a schema_version table)")
        row = conn.execute("SELECT app, version FROM schema_version WHERE id = 1").fetchone()
    except sqlite3.DatabaseError as exc:
        raise JournalError(path, f"not a readable SQLite journal: {exc}") from exc
    if row is None or row[0] != APP:
        raise JournalError(path, f"not a depthd journal (schema_version names {row[0] if row else 'nothing'!r})")
    version = int(row[1])
    if version > SCHEMA_VERSION:
        raise JournalError(path, f"schema version {version} is newer than this depthd understands "
                                 f"({SCHEMA_VERSION}): run a newer depthd")
    if version < SCHEMA_VERSION:
        _migrate(conn, path, version)


def _migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    missing = [v for v in range(version, SCHEMA_VERSION) if v not in MIGRATIONS]
    if missing:
        raise JournalError(path, f"schema version {version} has no migration to {SCHEMA_VERSION}")
    try:
        conn.execute("BEGIN IMMEDIATE")
        for v in range(version, SCHEMA_VERSION):
            for stmt in MIGRATIONS[v]:
                conn.execute(stmt)
        conn.execute("UPDATE schema_version SET version = ? WHERE id = 1", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK")
        raise JournalError(path, f"migration from schema version {version} failed: {exc}") from exc


def _create(path: Path) -> None:
    """Build a new journal under a temporary name, then rename it into place (atomic, durable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
        stale.unlink(missing_ok=True)
    conn = _raw_connect(tmp)
    try:
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN")
        for stmt in SCHEMA_V1:
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_version (id, app, version) VALUES (1, ?, ?)", (APP, SCHEMA_VERSION))
        conn.execute("COMMIT")
    finally:
        conn.close()
    os.chmod(tmp, 0o600)  # trading records: readable by the daemon's user only
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
