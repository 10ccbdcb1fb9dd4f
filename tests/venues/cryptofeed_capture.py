"""Test helpers: read cryptofeed's v1 raw websocket captures and replay them through a venue adapter.

A capture (cryptofeed `sample_data/*.ws.*`) has one event a line, T the local time in float seconds:

    wss://host <-> T                 the connection opened
    wss://host <- T: {json}          a frame the client sent
    T: {json}                        a frame received
    https://url -> T: {json}         a REST answer

`received_frames` yields the received frames as (receive time in ns, raw JSON bytes), in file order;
T is converted exactly from its decimal digits. `CaptureReplay` routes an adapter's events into a
BookSync per symbol wired the way the engine wires them (verify, max_depth, on_lost -> resync).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from daemon.book.book import Book
from daemon.book.sync import BookSync
from daemon.events import BookDelta, BookReset, BookSnapshot, MarketEvent, Quote, Trade
from daemon.venues.base import CH_WS, VenueAdapter

_RECEIVED = re.compile(rb"^(\d+)(?:\.(\d+))?: (.*)$", re.S)
_SENT_OR_REST = re.compile(rb"^\w+://\S+ (?:<-|->) \d+(?:\.\d+)?: ")
_CONNECT = re.compile(rb"^\w+://\S+ <-> \d+(?:\.\d+)?$")


def received_frames(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(receive time ns, raw JSON bytes) of every frame received in a capture, in file order."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line or _SENT_OR_REST.match(line) or _CONNECT.match(line):
                continue
            m = _RECEIVED.match(line)
            if m is None:
                raise ValueError(f"{path}:{n}: not a cryptofeed capture line: {line[:80]!r}")
            frac = (m.group(2) or b"") + b"000000000"
            yield int(m.group(1)) * 1_000_000_000 + int(frac[:9]), m.group(3)


def merged_frames(*paths: str | Path) -> Iterator[tuple[int, bytes]]:
    """The received frames of several captures (one connection each) in receive-time order."""
    return heapq.merge(*(received_frames(p) for p in paths), key=lambda x: x[0])


class CaptureReplay:
    """Feeds frames through an adapter into per-symbol BookSyncs, as the engine does."""

    def __init__(self, adapter: VenueAdapter) -> None:
        self.adapter = adapter
        self.syncs: dict[str, BookSync] = {}
        self.trades: list[Trade] = []
        self.resets: list[BookReset] = []

    def sync(self, symbol: str) -> BookSync:
        """The symbol's BookSync, made and wired on first use."""
        sync = self.syncs.get(symbol)
        if sync is None:
            sync = self.syncs[symbol] = BookSync(Book(symbol))
            sync.verify = self.adapter.verifier(symbol)
            sync.max_depth = self.adapter.max_depth(symbol)
            sync.on_lost = lambda s, reason, ts: self.route(self.adapter.resync(s, reason, ts))
        return sync

    def feed(self, ts_recv: int, msg: Any, channel: str = CH_WS) -> list[MarketEvent]:
        """Decode one frame and route its events; returns them."""
        events = self.adapter.decode(ts_recv, "", channel, msg)
        self.route(events)
        return events

    def feed_all(self, frames: Iterable[tuple[int, bytes]]) -> None:
        """Feed every frame."""
        for ts, raw in frames:
            self.feed(ts, raw)

    def route(self, events: list[MarketEvent]) -> None:
        """Hand events to their symbol's BookSync (trades and resets are also kept)."""
        for ev in events:
            if type(ev) is Trade:
                self.trades.append(ev)
            elif type(ev) is BookDelta:
                self.sync(ev.symbol).on_delta(ev)
            elif type(ev) is BookSnapshot:
                self.sync(ev.symbol).on_snapshot(ev)
            elif type(ev) is BookReset:
                self.resets.append(ev)
                self.sync(ev.symbol).on_reset(ev)
            elif type(ev) is Quote:
                self.sync(ev.symbol).on_quote(ev)


def expected_final_book(path: Path) -> dict:
    """The independent checker's final book (`expected_final_book.txt`): depth and top 5 per side."""
    text = path.read_text()
    depth = re.search(r"^final_depth: bids=(\d+) asks=(\d+)", text, re.M)
    assert depth is not None, f"{path}: no final_depth line"
    out: dict = {"depth": (int(depth.group(1)), int(depth.group(2)))}
    for side in ("asks", "bids"):
        block = re.search(rf"final top 5 {side} \(price qty\), best first:\n((?:  .+\n?)*)", text)
        assert block is not None, f"{path}: no top 5 {side}"
        out[side] = [(float(p), float(q)) for p, q in (row.split() for row in block.group(1).strip().splitlines())]
    return out
