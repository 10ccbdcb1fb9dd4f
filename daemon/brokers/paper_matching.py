"""Matching primitives of the paper broker: walking a replayed book without taking liquidity twice.

The replayed book does not know about the daemon's own paper orders, so liquidity they take stays
visible until the venue's feed changes that level. `ConsumedLiquidity` remembers, per
(side, price), how much of the shown size our orders already took and the shown size at the time;
as soon as the book shows a different size at that price the record is dropped (the feed has
moved on and the new size is taken at face value). A snapshot, or anything else after which the
broker cannot tell, clears every record.
"""

from __future__ import annotations

import numpy as np

from daemon.book.book import Book
from daemon.events import Side


def shown_size(book: Book, side: Side, px: int) -> int:
    """Size the book shows at a price on one side (bids for BUY, asks for SELL); 0 if no level."""
    if side is Side.BUY:
        keys, qtys, n, key = book.bid_px, book.bid_qty, book.n_bid, px
    else:
        keys, qtys, n, key = book.ask_key, book.ask_qty, book.n_ask, -px
    i = int(np.searchsorted(keys[:n], key))
    return int(qtys[i]) if i < n and keys[i] == key else 0


class ConsumedLiquidity:
    """Per-(resting side, price) amount of shown size already taken by our own paper orders."""

    __slots__ = ("_used",)

    def __init__(self) -> None:
        # (side of the book level, price ticks) -> (shown size when recorded, lots taken)
        self._used: dict[tuple[Side, int], tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._used)

    def available(self, side: Side, px: int, shown: int) -> int:
        """Shown size minus what we took, if the level still shows the size we took it from."""
        rec = self._used.get((side, px))
        if rec is None or rec[0] != shown:
            return shown
        return max(shown - rec[1], 0)

    def consume(self, side: Side, px: int, shown: int, qty: int) -> None:
        """Record that our orders took `qty` lots from a level showing `shown` lots."""
        rec = self._used.get((side, px))
        already = rec[1] if rec is not None and rec[0] == shown else 0
        self._used[(side, px)] = (shown, already + qty)

    def refresh(self, book: Book) -> None:
        """Drop the records of levels whose shown size changed since they were made."""
        stale = [key for key, (shown, _) in self._used.items() if shown_size(book, *key) != shown]
        for key in stale:
            del self._used[key]

    def clear(self) -> None:
        """Forget everything (after a snapshot, or whenever the book's history is unknown)."""
        self._used.clear()


def take(book: Book, consumed: ConsumedLiquidity, taker: Side, want: int,
         limit_px: int | None) -> list[tuple[int, int]]:
    """Walk the side opposite `taker` from its best level, taking up to `want` lots at prices no
    worse than `limit_px` (None: any price) out of what is shown and not yet consumed.

    Returns (price ticks, lots) per level touched, best first, and records the consumption.
    """
    if taker is Side.BUY:
        keys, qtys, n, sign, maker = book.ask_key, book.ask_qty, book.n_ask, -1, Side.SELL
    else:
        keys, qtys, n, sign, maker = book.bid_px, book.bid_qty, book.n_bid, 1, Side.BUY
    out: list[tuple[int, int]] = []
    left = want
    i = n - 1
    while i >= 0 and left > 0:
        px = sign * int(keys[i])
        if limit_px is not None and (px > limit_px if taker is Side.BUY else px < limit_px):
            break
        shown = int(qtys[i])
        qty = min(consumed.available(maker, px, shown), left)
        if qty > 0:
            consumed.consume(maker, px, shown, qty)
            out.append((px, qty))
            left -= qty
        i -= 1
    return out
