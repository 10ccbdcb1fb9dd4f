"""FeedRouter: a venue adapter wired to the engine's books (checksum rule, depth, health, lost-book
hook), resyncs routed after the message that caused them, requests kept or dropped, decode errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import orjson
import pytest

from daemon.app import TradingPath, build_path, instrument_lookup
from daemon.book.sync import BookState, SyncEvent
from daemon.clock import ReplayClock
from daemon.config import settings_from_dict
from daemon.events import BookDelta, BookReset, BookSnapshot, MarketEvent, Quote
from daemon.instruments import Instrument
from daemon.routing import FeedRouter
from daemon.venues import CH_MARKER, CH_WS, DecodeError, Resubscribe, ResyncPolicy
from daemon.venues.checksum import BookChecksum, FeedState
from daemon.venues.generic import GenericAdapter
from daemon.venues.kraken import KrakenAdapter
from daemon.venues.okx import OkxAdapter
from tests.venues.test_kraken import StrBook as KrakenStrBook
from tests.venues.test_kraken import lv, snapshot_frame, update_frame
from tests.venues.test_okx import StrBook as OkxStrBook
from tests.venues.test_okx import book_frame, with_checksum

MS = 1_000_000
T0 = 1_700_000_000_000 * MS
LIVE, INVALID, INIT = BookState.LIVE, BookState.INVALID, BookState.INIT
OKX_SYM, KRAKEN_PAIR = "BTC-USDT", "X/Y"
INSTRUMENTS = {"X": {"tick_size": 0.01, "lot_size": 0.001}, "Y": {"tick_size": 0.01, "lot_size": 0.001},
               OKX_SYM: {"tick_size": 0.1, "lot_size": 1e-8}, KRAKEN_PAIR: {"tick_size": 0.1, "lot_size": 1e-8}}
SETTINGS = settings_from_dict({"daemon": {"log_level": "error"}, "instruments": INSTRUMENTS})


def path_for(symbols: list[str]) -> TradingPath:
    return build_path(SETTINGS, ReplayClock(T0), symbols)


def lookup() -> Callable[[str], Instrument]:
    return instrument_lookup(SETTINGS, {})


def generic_snapshot(ts: int, bids: list, asks: list) -> dict:
    return {"ts": ts, "kind": "snapshot", "bids": bids, "asks": asks}


def generic_delta(ts: int, bids: list | None = None, asks: list | None = None) -> dict:
    return {"ts": ts, "kind": "delta", "bids": bids or [], "asks": asks or []}


def arr(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


def snap_event(symbol: str, ts: int, bid: int = 10000, ask: int = 10001, seq: int = 0) -> BookSnapshot:
    return BookSnapshot(symbol, ts, ts, arr(bid, bid - 1), arr(1000, 1000), arr(ask, ask + 1), arr(1000, 1000), seq)


class ResyncingAdapter(GenericAdapter):
    """The generic adapter, but a lost book is answered with the events `answers` holds (as a venue whose
    sync rules re-send a book would); every resync call is recorded."""

    def __init__(self, instrument: Callable[[str], Instrument]) -> None:
        super().__init__(instrument)
        self.calls: list[tuple[str, str, int]] = []
        self.answers: list[list[MarketEvent]] = []

    def resync(self, symbol: str, reason: str, ts: int) -> list[MarketEvent]:
        self.calls.append((symbol, reason, ts))
        return self.answers.pop(0) if self.answers else []


def spy_on_market(path: TradingPath) -> list[tuple[str, str]]:
    """(event type, symbol) of every event the engine is handed, in order; the engine still gets them."""
    seen: list[tuple[str, str]] = []
    real = path.engine.on_market

    def on_market(ev: MarketEvent) -> None:
        seen.append((type(ev).__name__, ev.symbol))
        real(ev)

    path.engine.on_market = on_market  # type: ignore[method-assign]
    return seen


# --- wiring -----------------------------------------------------------------------------------------


def test_wire_gives_each_sync_the_generic_venues_rules() -> None:
    path = path_for(["X", "Y"])
    adapter = GenericAdapter(lookup())
    router = FeedRouter(path.engine, adapter, ["X", "Y"])

    for sym in ("X", "Y"):
        sync = path.engine.syncs[sym]
        assert sync.verify is None and sync.max_depth == 0
        assert sync.health is adapter.health.symbol(sym)
        assert sync.on_lost == router._lost


def test_wire_gives_okx_books_their_checksum_rule() -> None:
    path = path_for([OKX_SYM])
    adapter = OkxAdapter(lookup())
    FeedRouter(path.engine, adapter, [OKX_SYM])

    sync = path.engine.syncs[OKX_SYM]
    assert isinstance(sync.verify, BookChecksum) and sync.verify is adapter.checksum(OKX_SYM)
    assert sync.max_depth == 0, "OKX sends a delete for a level leaving its window"
    assert sync.health is adapter.health.symbol(OKX_SYM)


@pytest.mark.parametrize("depth", [10, 25, 1000])
def test_wire_gives_kraken_books_their_depth_and_checksum_rule(depth: int) -> None:
    path = path_for([KRAKEN_PAIR])
    adapter = KrakenAdapter(lookup(), depth)
    FeedRouter(path.engine, adapter, [KRAKEN_PAIR])

    sync = path.engine.syncs[KRAKEN_PAIR]
    assert sync.max_depth == depth
    assert sync.verify is adapter.checksum(KRAKEN_PAIR)


def test_wire_is_idempotent_and_creates_missing_books() -> None:
    path = path_for([])
    adapter = GenericAdapter(lookup())
    router = FeedRouter(path.engine, adapter)
    assert path.engine.syncs == {}

    router.wire(["X"])
    sync = path.engine.syncs["X"]
    sync.max_depth = 7  # whatever the first wiring left is not redone
    router.wire(["X", "X"])

    assert path.engine.syncs["X"] is sync and sync.max_depth == 7


def test_a_symbol_first_seen_in_an_event_is_wired_before_the_event_reaches_its_book() -> None:
    path = path_for([])
    adapter = OkxAdapter(lookup())
    router = FeedRouter(path.engine, adapter)
    strbook = OkxStrBook()
    frame = with_checksum(strbook, book_frame("snapshot", [("100", "1")], [("101", "2")]))

    router.route(T0, "", CH_WS, frame)

    sync = path.engine.syncs[OKX_SYM]
    assert sync.state is LIVE
    assert (sync.checksum_checks, sync.checksum_failures) == (1, 0), "the first event was already verified"
    assert sync.health is adapter.health.symbol(OKX_SYM) and sync.on_lost == router._lost


def test_a_symbol_first_seen_in_a_generic_event_is_wired() -> None:
    path = path_for([])
    adapter = ResyncingAdapter(lookup())
    router = FeedRouter(path.engine, adapter)

    router.route(T0, "Y", CH_WS, generic_snapshot(T0, [[100.0, 1.0]], [[100.0, 1.0]]))

    assert path.engine.syncs["Y"].state is INVALID
    assert adapter.calls == [("Y", "crossed", T0)], "the new symbol's lost book reached the adapter"


# --- a lost book ------------------------------------------------------------------------------------


def test_a_crossed_generic_book_is_handed_to_the_adapter_to_resync() -> None:
    path = path_for(["X"])
    router = FeedRouter(path.engine, GenericAdapter(lookup()), ["X"])
    router.route(T0, "X", CH_WS, generic_snapshot(T0, [[100.0, 1.0]], [[100.01, 1.0]]))

    events = router.route(T0 + MS, "X", CH_WS, generic_delta(T0 + MS, bids=[[100.02, 1.0]]))

    assert [type(e) for e in events] == [BookDelta]
    assert path.engine.syncs["X"].state is INVALID and path.engine.syncs["X"].crossed == 1
    assert router.take_requests() == [], "the generic venue repairs a book with its next snapshot"


@pytest.mark.parametrize("reason", ["crossed", "quote_mismatch"])
def test_a_lost_book_calls_resync_with_symbol_reason_and_time(reason: str) -> None:
    path = path_for(["X"])
    adapter = ResyncingAdapter(lookup())
    router = FeedRouter(path.engine, adapter, ["X"])
    router.route_events([snap_event("X", T0, seq=5)])

    if reason == "crossed":
        router.route_events([BookDelta("X", T0 + MS, T0 + 2 * MS, arr(10001), arr(1), arr(), arr(), 6)])
    else:
        router.route_events([Quote("X", T0 + MS, T0 + 2 * MS, 10000, 999, 10001, 1000, 5)])

    assert adapter.calls == [("X", reason, T0 + 2 * MS)]
    assert path.engine.syncs["X"].state is INVALID


def test_the_resyncs_events_follow_the_rest_of_the_message() -> None:
    path = path_for(["X", "Y"])
    adapter = ResyncingAdapter(lookup())
    router = FeedRouter(path.engine, adapter, ["X", "Y"])
    adapter.answers = [[snap_event("X", T0 + 5 * MS, bid=20000, ask=20001)]]
    seen = spy_on_market(path)

    router.route_events([snap_event("X", T0, bid=10001, ask=10001),  # locked: lost, resync answers a snapshot
                         BookDelta("X", T0, T0, arr(10000), arr(7), arr(), arr()),
                         snap_event("Y", T0)])

    assert seen == [("BookSnapshot", "X"), ("BookDelta", "X"), ("BookSnapshot", "Y"), ("BookSnapshot", "X")]
    sync = path.engine.syncs["X"]
    assert sync.state is LIVE and sync.book.best_bid() == (20000, 1000)
    assert sync.event_counts[SyncEvent.DELTA_WITHOUT_BOOK] == 1, "the message's delta met the lost book"


def test_route_returns_only_the_messages_own_events() -> None:
    path = path_for(["X"])
    adapter = ResyncingAdapter(lookup())
    router = FeedRouter(path.engine, adapter, ["X"])
    adapter.answers = [[BookReset("X", T0, T0, "resync")]]

    events = router.route(T0, "X", CH_WS, generic_snapshot(T0, [[100.0, 1.0]], [[99.0, 1.0]]))

    assert [type(e) for e in events] == [BookSnapshot]
    assert path.engine.syncs["X"].resets == {"resync": 1}


def test_a_resyncs_events_that_lose_the_book_again_are_resynced_again() -> None:
    path = path_for(["X"])
    adapter = ResyncingAdapter(lookup())
    router = FeedRouter(path.engine, adapter, ["X"])
    adapter.answers = [[snap_event("X", T0 + MS, bid=10002, ask=10001)], [snap_event("X", T0 + 2 * MS)]]

    router.route_events([snap_event("X", T0, bid=10001, ask=10001)])

    assert [(reason, ts) for _, reason, ts in adapter.calls] == [("crossed", T0), ("crossed", T0 + MS)]
    assert path.engine.syncs["X"].state is LIVE
    assert router._pending == []


def test_a_reset_or_a_delta_without_a_book_is_not_resynced() -> None:
    path = path_for(["X"])
    adapter = ResyncingAdapter(lookup())
    router = FeedRouter(path.engine, adapter, ["X"])

    router.route_events([BookDelta("X", T0, T0, arr(10000), arr(1), arr(), arr())])
    router.route_events([snap_event("X", T0 + MS), BookReset("X", T0 + MS, T0 + MS, "gap")])

    assert adapter.calls == []
    assert path.engine.syncs["X"].state is INVALID


# --- OKX: checksum failure -> resubscribe --------------------------------------------------------


def okx_live(drop_requests: bool = False, policy: ResyncPolicy | None = None) -> tuple[TradingPath, OkxAdapter,
                                                                                        FeedRouter, OkxStrBook]:
    path = path_for([OKX_SYM])
    adapter = OkxAdapter(lookup(), policy)
    router = FeedRouter(path.engine, adapter, [OKX_SYM], drop_requests=drop_requests)
    strbook = OkxStrBook()
    router.route(T0, "", CH_WS, with_checksum(strbook, book_frame("snapshot", [("100", "1"), ("99.9", "2")],
                                                                  [("100.1", "1"), ("100.2", "2")])))
    assert path.engine.syncs[OKX_SYM].state is LIVE
    return path, adapter, router, strbook


def bad_okx_update(strbook: OkxStrBook) -> dict:
    frame = with_checksum(strbook, book_frame("update", [("100", "3")], []))
    frame["data"][0]["checksum"] ^= 1
    return frame


def test_an_okx_checksum_failure_loses_the_book_and_asks_for_a_resubscription() -> None:
    path, adapter, router, strbook = okx_live()

    router.route(T0 + MS, "", CH_WS, bad_okx_update(strbook))

    sync = path.engine.syncs[OKX_SYM]
    assert sync.state is INVALID and (sync.checksum_checks, sync.checksum_failures) == (2, 1)
    assert adapter.state(OKX_SYM) is FeedState.RESYNC
    health = adapter.health.symbol(OKX_SYM)
    assert (health.checksum_failures, health.resyncs, health.in_sync) == (1, 1, False)
    assert router.take_requests() == [Resubscribe(OKX_SYM, "checksum")]
    assert router.take_requests() == []
    assert router.requests_dropped == 0


def test_okx_updates_wait_for_the_resubscriptions_snapshot_which_repairs_the_book() -> None:
    path, adapter, router, strbook = okx_live()
    router.route(T0 + MS, "", CH_WS, bad_okx_update(strbook))

    dropped = router.route(T0 + 2 * MS, "", CH_WS, with_checksum(strbook, book_frame("update", [("99.8", "1")], [])))
    strbook = OkxStrBook()
    router.route(T0 + 3 * MS, "", CH_WS, with_checksum(strbook, book_frame("snapshot", [("100", "5")],
                                                                            [("100.1", "5")])))
    router.route(T0 + 4 * MS, "", CH_WS, with_checksum(strbook, book_frame("update", [("100", "6")], [])))

    sync = path.engine.syncs[OKX_SYM]
    assert dropped == [] and adapter.dropped[OKX_SYM] == 1
    assert sync.state is LIVE and sync.book.best_bid() == (1000, 6 * 10**8)
    assert adapter.state(OKX_SYM) is FeedState.LIVE
    assert router.take_requests() == [Resubscribe(OKX_SYM, "checksum")], "one resubscription for one loss"


def test_a_replay_router_drops_and_counts_the_requests() -> None:
    path, adapter, router, strbook = okx_live(drop_requests=True)

    router.route(T0 + MS, "", CH_WS, bad_okx_update(strbook))

    assert router.requests_dropped == 1
    assert router.take_requests() == [] and adapter.take_requests() == []
    assert path.engine.syncs[OKX_SYM].state is INVALID


def test_an_okx_gap_resets_the_book_and_is_dropped_on_replay() -> None:
    path = path_for([OKX_SYM])
    adapter = OkxAdapter(lookup())
    router = FeedRouter(path.engine, adapter, [OKX_SYM], drop_requests=True)
    strbook = OkxStrBook()
    router.route(T0, "", CH_WS, with_checksum(strbook, book_frame("snapshot", [("100", "1")], [("100.1", "1")],
                                                                  seqId=10, prevSeqId=-1)))

    events = router.route(T0 + MS, "", CH_WS, with_checksum(strbook, book_frame("update", [("100", "2")], [],
                                                                                 seqId=12, prevSeqId=11)))

    sync = path.engine.syncs[OKX_SYM]
    assert [type(e) for e in events] == [BookReset]
    assert sync.state is INVALID and sync.resets == {"gap": 1}
    assert router.requests_dropped == 1 and adapter.health.symbol(OKX_SYM).gaps == 1


def test_a_disconnect_marker_resets_every_book_of_the_connection() -> None:
    path, _, router, _ = okx_live()

    events = router.route(T0 + MS, "", CH_MARKER, {"event": "disconnected"})

    assert events == [BookReset(OKX_SYM, T0 + MS, T0 + MS, "disconnect")]
    assert path.engine.syncs[OKX_SYM].state is INVALID
    assert path.engine.syncs[OKX_SYM].resets == {"disconnect": 1}
    assert router.take_requests() == [], "the reconnect subscribes again"


def test_repeated_checksum_failures_make_the_symbol_untradeable() -> None:
    path, adapter, router, strbook = okx_live(policy=ResyncPolicy(max_resyncs=1, window_ns=60_000 * MS))
    for i in range(2):
        router.route(T0 + (10 * i + 1) * MS, "", CH_WS, bad_okx_update(strbook))
        strbook = OkxStrBook()
        router.route(T0 + (10 * i + 2) * MS, "", CH_WS, with_checksum(strbook, book_frame(
            "snapshot", [("100", "1")], [("100.1", "1")])))

    sync = path.engine.syncs[OKX_SYM]
    assert sync.live and not sync.tradeable
    assert adapter.health.untradeable() == [OKX_SYM]
    assert "2 resyncs within 60 s (last: checksum)" in (adapter.health.problem(T0) or "")


def test_an_untradeable_okx_symbol_that_stays_in_sync_for_a_window_is_tradeable_again() -> None:
    path, _, router, strbook = okx_live(policy=ResyncPolicy(max_resyncs=1, window_ns=1_000 * MS))
    for i in range(2):
        router.route(T0 + (10 * i + 1) * MS, "", CH_WS, bad_okx_update(strbook))
        strbook = OkxStrBook()
        router.route(T0 + (10 * i + 2) * MS, "", CH_WS, with_checksum(strbook, book_frame(
            "snapshot", [("100", "1")], [("100.1", "1")])))
    assert not path.engine.syncs[OKX_SYM].tradeable

    for i in range(1, 30):  # good updates, one every 100 ms, for 2.9 s: well past the 1 s window
        router.route(T0 + i * 100 * MS, "", CH_WS, with_checksum(strbook, book_frame("update", [("100", str(i))], [])))

    assert path.engine.syncs[OKX_SYM].state is LIVE
    assert path.engine.syncs[OKX_SYM].tradeable


# --- Kraken: depth and resync ------------------------------------------------------------------------


def test_kraken_books_are_kept_to_the_subscribed_depth_through_the_router() -> None:
    path = path_for([KRAKEN_PAIR])
    adapter = KrakenAdapter(lookup(), 10)
    router = FeedRouter(path.engine, adapter, [KRAKEN_PAIR])
    strbook = KrakenStrBook(10)
    asks = [lv(f"{101 + i}.0", "1.00000000") for i in range(12)]
    bids = [lv(f"{100 - i}.0", "1.00000000") for i in range(12)]
    strbook.apply(asks, bids)

    router.route(T0, "", CH_WS, snapshot_frame(asks, bids, depth=10))
    first = (path.engine.syncs[KRAKEN_PAIR].book.n_bid, path.engine.syncs[KRAKEN_PAIR].book.n_ask)
    router.route(T0 + MS, "", CH_WS, update_frame(strbook, [], [lv("100.5", "2.00000000")], depth=10))

    sync = path.engine.syncs[KRAKEN_PAIR]
    assert first == (10, 10)
    assert sync.state is LIVE and (sync.checksum_checks, sync.checksum_failures) == (1, 0)
    assert (sync.book.n_bid, sync.book.n_ask) == (10, 10)
    assert sync.book.best_bid_px == 1005 and sync.book.top(10)[0][-1] == 920, "the worst bid fell out"


def test_a_crossed_kraken_book_is_resubscribed() -> None:
    path = path_for([KRAKEN_PAIR])
    adapter = KrakenAdapter(lookup(), 10)
    router = FeedRouter(path.engine, adapter, [KRAKEN_PAIR])
    router.route(T0, "", CH_WS, snapshot_frame([lv("101.0", "1.0")], [lv("100.0", "1.0")], depth=10))

    router.route(T0 + MS, "", CH_WS, update_frame(None, [], [lv("102.0", "1.0")], depth=10))

    assert path.engine.syncs[KRAKEN_PAIR].state is INVALID
    assert router.take_requests() == [Resubscribe(KRAKEN_PAIR, "crossed")]
    assert adapter.state(KRAKEN_PAIR) is FeedState.RESYNC
    assert adapter.health.symbol(KRAKEN_PAIR).resyncs == 1


# --- decode errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("msg", [b"not json", {"ts": T0, "kind": "nope"}, {"ts": T0, "kind": "delta", "bids": 3},
                                 ["a", "list"]])
def test_a_decode_error_is_counted_and_raised_and_nothing_is_routed(msg: object) -> None:
    path = path_for(["X"])
    router = FeedRouter(path.engine, GenericAdapter(lookup()), ["X"])
    seen = spy_on_market(path)

    with pytest.raises(DecodeError):
        router.route(T0, "X", CH_WS, msg)

    assert router.decode_errors == 1 and seen == []
    assert path.engine.syncs["X"].state is INIT


def test_decode_errors_keep_counting_and_good_messages_still_route() -> None:
    path = path_for([OKX_SYM])
    router = FeedRouter(path.engine, OkxAdapter(lookup()), [OKX_SYM])
    for bad in (b"{", {"event": "error", "code": "60012", "msg": "bad"}, {"arg": {}}):
        with pytest.raises(DecodeError):
            router.route(T0, "", CH_WS, bad)
    good = with_checksum(OkxStrBook(), book_frame("snapshot", [("100", "1")], [("100.1", "1")]))

    router.route(T0 + MS, "", CH_WS, orjson.dumps(good))

    assert router.decode_errors == 3
    assert path.engine.syncs[OKX_SYM].state is LIVE
