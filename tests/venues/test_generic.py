"""The generic venue adapter: normalized L2 lines in, typed events with ticks and lots out."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.events import BookDelta, BookSnapshot, Side, Trade
from daemon.instruments import Instrument
from daemon.venues import DecodeError, adapter_for

INST = Instrument("X", 0.01, 0.001)


@pytest.fixture
def adapter():
    return adapter_for("generic", lambda symbol: INST)


def test_decodes_snapshot_into_ticks_and_lots(adapter) -> None:
    msg = {"ts": 5, "kind": "snapshot", "bids": [[100.01, 1.5]], "asks": [[100.02, 0.25], [100.05, 2]]}

    (ev,) = adapter.decode(5, "X", "book", msg)

    assert isinstance(ev, BookSnapshot)
    assert (ev.ts_venue, ev.ts_recv) == (5, 5)
    assert ev.bid_px.tolist() == [10001] and ev.bid_qty.tolist() == [1500]
    assert ev.ask_px.tolist() == [10002, 10005] and ev.ask_qty.tolist() == [250, 2000]
    assert ev.bid_px.dtype == np.int64


def test_decodes_delta_with_deletes_and_an_empty_side(adapter) -> None:
    (ev,) = adapter.decode(7, "X", "book", {"ts": 7, "kind": "delta", "bids": [[100.0, 0]], "asks": []})

    assert isinstance(ev, BookDelta)
    assert ev.bid_qty.tolist() == [0]
    assert len(ev.ask_px) == 0


def test_decodes_trade_with_aggressor_side(adapter) -> None:
    (ev,) = adapter.decode(9, "X", "trade", {"ts": 9, "kind": "trade", "price": 100.02, "qty": 0.5, "side": "sell"})

    assert ev == Trade("X", 9, 9, 10002, 500, Side.SELL)


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        ({"kind": "delta", "bids": [[100.0, 1]]}, "missing 'asks'"),
        ({"kind": "delta", "bids": "x", "asks": []}, "must be a list"),
        ({"kind": "delta", "bids": [[100.0]], "asks": []}, "pairs"),
        ({"kind": "delta", "bids": [[100.0, "a"]], "asks": []}, "number pairs"),
        ({"kind": "delta", "bids": [[-1.0, 1]], "asks": []}, "positive finite"),
        ({"kind": "delta", "bids": [[100.0, -1]], "asks": []}, "negative"),
        ({"kind": "delta", "bids": [[100.005, 1]], "asks": []}, "off the tick grid"),
        ({"kind": "delta", "bids": [[100.0, 0.0005]], "asks": []}, "off the lot grid"),
        ({"kind": "trade", "price": 100.0, "qty": 1, "side": "up"}, "side"),
        ({"kind": "trade", "price": 0, "qty": 1, "side": "buy"}, "positive"),
        ({"kind": "trade", "price": True, "qty": 1, "side": "buy"}, "positive"),
        ({"kind": "trade", "price": 100.001, "qty": 1, "side": "buy"}, "tick_size"),
        ({"kind": "quote"}, "unknown kind"),
    ],
)
def test_rejects_malformed_messages_with_a_reason(adapter, msg: dict, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        adapter.decode(1, "X", "book", msg)


def test_rejects_a_message_that_is_not_an_object(adapter) -> None:
    with pytest.raises(DecodeError, match="JSON object"):
        adapter.decode(1, "X", "book", [1, 2])


def test_unknown_venue_names_the_known_ones() -> None:
    with pytest.raises(DecodeError, match=r"known: .*generic"):
        adapter_for("nasdaq-itch", lambda s: INST)
