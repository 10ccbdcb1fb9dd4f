"""Binance's local order book procedure, rule by rule, with small synthetic frames through the adapter."""

from __future__ import annotations

import orjson
import pytest

from daemon.errors import IllegalTransition
from daemon.events import BookDelta, BookReset, BookSnapshot, Quote, Trade
from daemon.instruments import Instrument
from daemon.venues import SnapshotRequest
from daemon.venues.binance import BinanceSpotAdapter, BinanceUsdmAdapter
from daemon.venues.binance_sync import SyncEvent, SyncState

SYM = "BTCUSDT"
MS = 1_000_000


def instrument(symbol: str) -> Instrument:
    return Instrument(symbol, 0.01, 1e-8)


def depth(first: int, last: int, bids=((100.0, 1.0),), asks=((100.5, 2.0),), pu: int | None = None,
          event_ms: int = 1_000, symbol: str = SYM) -> bytes:
    """A combined-stream depthUpdate frame as Binance sends it (USD-M when `pu` is given)."""
    data: dict = {"e": "depthUpdate", "E": event_ms}
    if pu is not None:
        data["T"] = event_ms - 1
    data |= {"s": symbol, "U": first, "u": last}
    if pu is not None:
        data["pu"] = pu
    data["b"] = [[f"{p:.8f}", f"{q:.8f}"] for p, q in bids]
    data["a"] = [[f"{p:.8f}", f"{q:.8f}"] for p, q in asks]
    speed = "0ms" if pu is not None else "100ms"
    return orjson.dumps({"stream": f"{symbol.lower()}@depth@{speed}", "data": data})


def snapshot(last_id: int, bids=((100.0, 1.0), (99.0, 3.0)), asks=((100.5, 2.0), (101.0, 4.0))) -> bytes:
    """A REST depth answer."""
    return orjson.dumps({"lastUpdateId": last_id, "bids": [[f"{p:.8f}", f"{q:.8f}"] for p, q in bids],
                         "asks": [[f"{p:.8f}", f"{q:.8f}"] for p, q in asks]})


def seqs(events: list) -> list[tuple[str, int]]:
    """(event type, seq or reason) of each event, for compact assertions."""
    return [(type(e).__name__, e.reason if isinstance(e, BookReset) else e.seq) for e in events]


@pytest.fixture
def spot() -> BinanceSpotAdapter:
    return BinanceSpotAdapter(instrument)


@pytest.fixture
def usdm() -> BinanceUsdmAdapter:
    return BinanceUsdmAdapter(instrument)


def live_spot(adapter: BinanceSpotAdapter, last_u: int = 15) -> None:
    """Bring SYM to LIVE with last applied update id `last_u`."""
    adapter.decode(1, SYM, "snapshot", snapshot(last_u - 5))
    adapter.decode(2, "", "ws", depth(last_u - 4, last_u))
    assert adapter.sync_state(SYM).state is SyncState.LIVE
    adapter.take_requests()


# --- buffering and the snapshot ------------------------------------------------------------------


def test_depth_before_the_snapshot_is_buffered(spot) -> None:
    out = spot.decode(1, "", "ws", depth(1, 5))

    assert out == []
    sync = spot.sync_state(SYM)
    assert sync.state is SyncState.WAITING
    assert [d.delta.seq for d in sync.buffer] == [5]
    assert spot.stats(SYM).buffered == 1


def test_snapshot_drops_what_it_contains_and_applies_the_buffered_rest_in_order(spot) -> None:
    for ts, (first, last) in enumerate([(1, 5), (6, 10), (11, 15)], 1):
        spot.decode(ts, "", "ws", depth(first, last, event_ms=ts))

    out = spot.decode(50, SYM, "snapshot", snapshot(8))

    assert seqs(out) == [("BookSnapshot", 8), ("BookDelta", 10), ("BookDelta", 15)]
    snap = out[0]
    assert isinstance(snap, BookSnapshot) and snap.complete is False
    assert snap.bid_px.tolist() == [10000, 9900] and snap.ask_qty.tolist() == [200_000_000, 400_000_000]
    assert [e.ts_recv for e in out] == [50, 50, 50]  # released by the snapshot: its receive time
    assert [e.ts_venue for e in out[1:]] == [2 * MS, 3 * MS]  # their own venue time
    assert spot.stats(SYM).dropped == 1
    assert spot.sync_state(SYM).state is SyncState.LIVE
    assert spot.health.symbol(SYM).in_sync


def test_first_applied_event_must_straddle_the_snapshot(spot) -> None:
    spot.decode(1, "", "ws", depth(9, 12))  # U <= 8 + 1 <= u

    out = spot.decode(2, SYM, "snapshot", snapshot(8))

    assert seqs(out) == [("BookSnapshot", 8), ("BookDelta", 12)]


def test_snapshot_newer_than_every_buffered_event_waits_for_a_straddling_one(spot) -> None:
    spot.decode(1, "", "ws", depth(1, 5))

    out = spot.decode(2, SYM, "snapshot", snapshot(9))
    assert seqs(out) == [("BookSnapshot", 9)]
    assert spot.sync_state(SYM).state is SyncState.BRIDGING
    assert spot.decode(3, "", "ws", depth(6, 9)) == []  # held by the snapshot: dropped
    out = spot.decode(4, "", "ws", depth(8, 12))

    assert seqs(out) == [("BookDelta", 12)]
    assert spot.sync_state(SYM).state is SyncState.LIVE
    assert spot.stats(SYM).dropped == 2


def test_snapshot_older_than_the_buffered_stream_is_stale_and_another_is_requested(spot) -> None:
    spot.decode(1, "", "ws", depth(10, 15))

    out = spot.decode(2, SYM, "snapshot", snapshot(5))  # hole: 6..9 are in neither

    assert out == []
    assert spot.health.symbol(SYM).stale_snapshots == 1
    assert spot.take_requests() == [SnapshotRequest(SYM, "stale_snapshot")]
    assert spot.sync_state(SYM).state is SyncState.WAITING
    out = spot.decode(3, SYM, "snapshot", snapshot(12))
    assert seqs(out) == [("BookSnapshot", 12), ("BookDelta", 15)]


def test_bridging_event_that_does_not_straddle_shows_a_stale_snapshot(spot) -> None:
    spot.decode(1, SYM, "snapshot", snapshot(9))

    out = spot.decode(2, "", "ws", depth(12, 15, event_ms=7))

    assert out == [BookReset(SYM, 7 * MS, 2, "stale_snapshot")]
    assert spot.health.symbol(SYM).stale_snapshots == 1
    assert spot.take_requests() == [SnapshotRequest(SYM, "stale_snapshot")]
    assert [d.delta.seq for d in spot.sync_state(SYM).buffer] == [15]
    assert seqs(spot.decode(3, SYM, "snapshot", snapshot(13))) == [("BookSnapshot", 13), ("BookDelta", 15)]


def test_gap_inside_the_buffer_keeps_only_the_newer_run(spot) -> None:
    spot.decode(1, "", "ws", depth(1, 5))
    spot.decode(2, "", "ws", depth(9, 12))

    assert [d.delta.seq for d in spot.sync_state(SYM).buffer] == [12]
    assert spot.health.symbol(SYM).gaps == 1


def test_full_buffer_drops_its_oldest_event_and_counts_it() -> None:
    adapter = BinanceSpotAdapter(instrument, buffer_limit=3)
    for k in range(5):
        adapter.decode(k, "", "ws", depth(5 * k + 1, 5 * k + 5))

    assert [d.delta.seq for d in adapter.sync_state(SYM).buffer] == [15, 20, 25]
    assert adapter.stats(SYM).overflow == 2


# --- live --------------------------------------------------------------------------------------


def test_continuous_events_apply_while_live(spot) -> None:
    live_spot(spot, 15)

    out = spot.decode(5, "", "ws", depth(16, 20))

    assert seqs(out) == [("BookDelta", 20)]
    assert out[0].ts_recv == 5


def test_gap_while_live_resets_the_book_requests_a_snapshot_and_recovers(spot) -> None:
    live_spot(spot, 15)

    out = spot.decode(5, "", "ws", depth(20, 25, event_ms=9))

    assert out == [BookReset(SYM, 9 * MS, 5, "gap")]
    h = spot.health.symbol(SYM)
    assert (h.gaps, h.resyncs, h.in_sync) == (1, 1, False)
    assert spot.take_requests() == [SnapshotRequest(SYM, "gap")]
    assert spot.sync_state(SYM).state is SyncState.WAITING
    out = spot.decode(6, SYM, "snapshot", snapshot(22))  # the event that showed the gap continues it
    assert seqs(out) == [("BookSnapshot", 22), ("BookDelta", 25)]
    assert spot.health.symbol(SYM).in_sync


def test_entirely_old_event_while_live_is_a_dropped_duplicate(spot) -> None:
    live_spot(spot, 15)

    assert spot.decode(5, "", "ws", depth(11, 15)) == []

    assert spot.stats(SYM).duplicates == 1
    assert spot.sync_state(SYM).state is SyncState.LIVE
    assert seqs(spot.decode(6, "", "ws", depth(16, 18))) == [("BookDelta", 18)]


def test_snapshot_that_comes_when_live_is_ignored(spot) -> None:
    live_spot(spot, 15)

    assert spot.decode(5, SYM, "snapshot", snapshot(30)) == []

    assert spot.stats(SYM).ignored_snapshots == 1
    assert spot.sync_state(SYM).last_u == 15


def test_trades_and_quotes_pass_while_the_book_waits(spot) -> None:
    trade = orjson.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "E": 5, "s": SYM, "t": 1, "p": "100.00",
                                                                "q": "0.5", "T": 4, "m": True, "M": True}})
    ticker = orjson.dumps({"stream": "btcusdt@bookTicker", "data": {"u": 3, "s": SYM, "b": "100.00", "B": "1",
                                                                     "a": "100.50", "A": "2"}})

    assert [type(e) for e in spot.decode(1, "", "ws", trade) + spot.decode(2, "", "ws", ticker)] == [Trade, Quote]


# --- markers and downstream --------------------------------------------------------------------


def test_connected_marker_requests_a_snapshot_per_symbol(spot) -> None:
    out = spot.decode(1, "", "marker", {"event": "connected", "symbols": ["btcusdt", "ETHUSDT"]})

    assert out == []
    assert spot.take_requests() == [SnapshotRequest("BTCUSDT", "connected"), SnapshotRequest("ETHUSDT", "connected")]
    assert spot.sync_state("ETHUSDT").state is SyncState.WAITING


def test_disconnect_marker_resets_every_symbol_that_had_a_book(spot) -> None:
    live_spot(spot, 15)
    spot.decode(3, "", "ws", depth(1, 5, symbol="ETHUSDT"))

    out = spot.decode(9, "", "marker", b'{"event": "disconnected", "reason": "closed"}')

    assert out == [BookReset(SYM, 9, 9, "disconnect")]
    for symbol in (SYM, "ETHUSDT"):
        assert spot.sync_state(symbol).state is SyncState.WAITING
        assert not spot.sync_state(symbol).buffer
    assert spot.health.symbol(SYM).resyncs == 1


def test_connected_marker_while_live_loses_the_old_book(spot) -> None:
    live_spot(spot, 15)

    out = spot.decode(9, "", "marker", {"event": "connected", "symbols": [SYM]})

    assert out == [BookReset(SYM, 9, 9, "reconnect")]
    assert spot.take_requests() == [SnapshotRequest(SYM, "connected")]


def test_unknown_marker_event_gives_nothing(spot) -> None:
    assert spot.decode(1, "", "marker", {"event": "heartbeat"}) == []


def test_resync_from_downstream_waits_for_a_new_snapshot(spot) -> None:
    live_spot(spot, 15)

    assert spot.resync(SYM, "quote_mismatch", 7) == []

    assert spot.sync_state(SYM).state is SyncState.WAITING
    assert spot.take_requests() == [SnapshotRequest(SYM, "quote_mismatch")]
    assert spot.health.symbol(SYM).resyncs == 1
    assert spot.decode(8, "", "ws", depth(16, 20)) == []  # buffered until the snapshot
    assert seqs(spot.decode(9, SYM, "snapshot", snapshot(17))) == [("BookSnapshot", 17), ("BookDelta", 20)]


def test_symbol_that_keeps_losing_its_book_becomes_untradeable_and_recovers_after_a_window() -> None:
    adapter = BinanceSpotAdapter(instrument, max_resyncs=2, window_ns=1_000)
    live_spot(adapter, 15)
    u = 15
    for ts in (10, 20, 30):  # three gaps, each followed by a recovery, within one window
        u += 10
        adapter.decode(ts, "", "ws", depth(u - 4, u))
        adapter.decode(ts + 1, SYM, "snapshot", snapshot(u - 2))
    h = adapter.health.symbol(SYM)
    assert h.untradeable and "3 resyncs" in h.untradeable_reason
    assert adapter.health.untradeable() == [SYM]

    adapter.decode(500, "", "ws", depth(u + 1, u + 2))
    assert h.untradeable  # in sync, but not yet for a whole window
    adapter.decode(1_031, "", "ws", depth(u + 3, u + 4))
    assert not h.untradeable and h.in_sync


def test_illegal_transition_names_state_and_event(spot) -> None:
    spot.decode(1, "", "ws", depth(1, 5))

    with pytest.raises(IllegalTransition, match="depth_applied is not allowed in state WAITING"):
        spot.sync_state(SYM)._step(SyncEvent.DEPTH_APPLIED)


# --- USD-M -------------------------------------------------------------------------------------


def test_usdm_links_events_by_pu_not_by_consecutive_ids(usdm) -> None:
    usdm.decode(1, "", "ws", depth(90, 99, pu=80))  # contained (u < 100)
    usdm.decode(2, "", "ws", depth(95, 105, pu=99))  # straddles U <= 100 <= u
    usdm.decode(3, "", "ws", depth(120, 130, pu=105))  # U is not 106: fine on USD-M

    out = usdm.decode(4, SYM, "snapshot", snapshot(100))

    assert seqs(out) == [("BookSnapshot", 100), ("BookDelta", 105), ("BookDelta", 130)]
    assert seqs(usdm.decode(5, "", "ws", depth(140, 150, pu=130))) == [("BookDelta", 150)]
    assert seqs(usdm.decode(6, "", "ws", depth(151, 160, pu=149))) == [("BookReset", "gap")]


def test_usdm_keeps_an_event_whose_last_id_is_the_snapshots(usdm) -> None:
    usdm.decode(1, "", "ws", depth(90, 100, pu=80))  # u == lastUpdateId: U <= L <= u, applied

    out = usdm.decode(2, SYM, "snapshot", snapshot(100))

    assert seqs(out) == [("BookSnapshot", 100), ("BookDelta", 100)]
    assert usdm.stats(SYM).dropped == 0


def test_usdm_event_linked_to_the_snapshot_by_pu_bridges_it(usdm) -> None:
    usdm.decode(1, SYM, "snapshot", snapshot(100))

    assert seqs(usdm.decode(2, "", "ws", depth(101, 110, pu=100))) == [("BookDelta", 110)]


def test_usdm_depth_without_pu_is_a_decode_error(usdm) -> None:
    from daemon.venues import DecodeError

    with pytest.raises(DecodeError, match="missing 'pu'"):
        usdm.decode(1, "", "ws", depth(1, 5))
    assert not usdm.sync_state(SYM).buffer


def test_spot_uses_consecutive_ids_and_ignores_pu(spot) -> None:
    live_spot(spot, 15)

    assert seqs(spot.decode(5, "", "ws", depth(17, 20, pu=15))) == [("BookReset", "gap")]


def test_emitted_deltas_carry_ticks_and_lots(spot) -> None:
    spot.decode(1, SYM, "snapshot", snapshot(10))

    (delta,) = spot.decode(2, "", "ws", depth(11, 12, bids=((99.99, 0.00000001), (98.0, 0.0)), asks=()))

    assert isinstance(delta, BookDelta)
    assert delta.bid_px.tolist() == [9999, 9800] and delta.bid_qty.tolist() == [1, 0]
    assert delta.ask_px.tolist() == [] and delta.ask_px.dtype.kind == "i"
