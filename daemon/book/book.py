"""Book: an L2 price-level book of one symbol on numpy arrays, updated by numba kernels.

Prices are int ticks and sizes int lots. Reads (best bid/ask, top-N, depth within a band, cost to
fill a size) are cheap; nothing here allocates a Python object per level on the update path.
"""

from __future__ import annotations

import numpy as np

from daemon.book import kernels

_MIN_CAPACITY = 1024
NO_PRICE = np.iinfo(np.int64).min


class Book:
    """Two sorted sides; bids keyed by price, asks by negated price, best level last on both."""

    __slots__ = ("ask_key", "ask_qty", "bid_px", "bid_qty", "counters", "edits", "n_ask", "n_bid", "symbol",
                 "trust_ask_px", "trust_bid_px")

    def __init__(self, symbol: str, capacity: int = _MIN_CAPACITY) -> None:
        self.symbol = symbol
        cap = max(capacity, _MIN_CAPACITY)
        self.bid_px = np.zeros(cap, np.int64)
        self.bid_qty = np.zeros(cap, np.int64)
        self.ask_key = np.zeros(cap, np.int64)
        self.ask_qty = np.zeros(cap, np.int64)
        self.n_bid = 0
        self.n_ask = 0
        # [deletes of absent levels, level changes applied, edit log rows, edit log overflowed, n_bid,
        # n_ask] (kernels.ABSENT_DELETES ...). The edit log tells a reader keeping sums over parts of
        # the book (the feature calculator's depth bands) what changed; the level counts are mirrored
        # here so such a kernel needs this one array, not two more arguments.
        self.counters = kernels.new_counters()
        # rows of (side 0 bid / 1 ask, key, old size, new size) since a reader reset the log
        self.edits = np.zeros((kernels.EDIT_LOG_ROWS, 4), np.int64)
        # The last snapshot's worst bid and ask when it held only the top of the book: levels beyond
        # them were never in a snapshot and are incomplete. NO_PRICE = the whole book is trusted.
        self.trust_bid_px = NO_PRICE
        self.trust_ask_px = NO_PRICE

    # --- updates ---------------------------------------------------------------------------------

    def apply_snapshot(self, bid_px: np.ndarray, bid_qty: np.ndarray, ask_px: np.ndarray,
                       ask_qty: np.ndarray, complete: bool = True) -> None:
        """Replace the whole book with these levels (any order; size 0 entries are ignored).

        `complete=False`: the snapshot is only the top of the book, so levels beyond its worst bid
        and ask are not trusted (`trusted_levels`)."""
        if complete:
            self.trust_bid_px = self.trust_ask_px = NO_PRICE
        else:  # the worst level the snapshot holds (a size-0 entry holds nothing)
            bids, asks = bid_px[bid_qty > 0], ask_px[ask_qty > 0]
            self.trust_bid_px = int(bids.min()) if len(bids) else NO_PRICE
            self.trust_ask_px = int(asks.max()) if len(asks) else NO_PRICE
        self._reserve(len(bid_px), len(ask_px), replace=True)
        self.n_bid = kernels.load_side(self.bid_px, self.bid_qty, bid_px, bid_qty, 1)
        self.n_ask = kernels.load_side(self.ask_key, self.ask_qty, ask_px, ask_qty, -1)
        c = self.counters
        c[kernels.LEVEL_CHANGES] += len(bid_px) + len(ask_px)
        c[kernels.LOG_OVERFLOW] = 1  # a reader of the edit log must start over from the book
        c[kernels.N_BID] = self.n_bid
        c[kernels.N_ASK] = self.n_ask

    def apply_delta(self, bid_px: np.ndarray, bid_qty: np.ndarray, ask_px: np.ndarray,
                    ask_qty: np.ndarray) -> None:
        """Apply one message's level changes in order; size 0 deletes a level."""
        n_bid, n_ask = kernels.apply_message(self.bid_px, self.bid_qty, self.n_bid, self.ask_key, self.ask_qty,
                                             self.n_ask, bid_px, bid_qty, ask_px, ask_qty, self.counters,
                                             self.edits)
        if n_bid < 0:  # no room: the kernel changed nothing
            self._reserve(len(bid_px), len(ask_px), replace=False)
            n_bid, n_ask = kernels.apply_message(self.bid_px, self.bid_qty, self.n_bid, self.ask_key,
                                                 self.ask_qty, self.n_ask, bid_px, bid_qty, ask_px, ask_qty,
                                                 self.counters, self.edits)
        self.n_bid = n_bid
        self.n_ask = n_ask

    def truncate(self, max_levels: int) -> None:
        """Keep only the best `max_levels` of each side (a venue that says a book is that deep drops
        what falls out of the window without sending a delete: Kraken)."""
        if max_levels < 0:
            raise ValueError(f"{self.symbol}: max_levels must be >= 0, got {max_levels}")
        changed = False
        if self.n_bid > max_levels:
            cut = self.n_bid - max_levels
            self.bid_px[:max_levels] = self.bid_px[cut:self.n_bid]
            self.bid_qty[:max_levels] = self.bid_qty[cut:self.n_bid]
            self.n_bid = max_levels
            changed = True
        if self.n_ask > max_levels:
            cut = self.n_ask - max_levels
            self.ask_key[:max_levels] = self.ask_key[cut:self.n_ask]
            self.ask_qty[:max_levels] = self.ask_qty[cut:self.n_ask]
            self.n_ask = max_levels
            changed = True
        if changed:
            c = self.counters
            c[kernels.LOG_OVERFLOW] = 1  # the edit log does not hold these removals
            c[kernels.N_BID] = self.n_bid
            c[kernels.N_ASK] = self.n_ask

    def clear(self) -> None:
        """Forget every level (the book is unknown until the next snapshot)."""
        self.n_bid = 0
        self.n_ask = 0
        self.trust_bid_px = self.trust_ask_px = NO_PRICE
        self.counters[kernels.LOG_OVERFLOW] = 1
        self.counters[kernels.N_BID] = 0
        self.counters[kernels.N_ASK] = 0

    def _reserve(self, n_bid_new: int, n_ask_new: int, replace: bool) -> None:
        need_bid = n_bid_new + (0 if replace else self.n_bid)
        need_ask = n_ask_new + (0 if replace else self.n_ask)
        if need_bid > len(self.bid_px):
            self.bid_px, self.bid_qty = _grow(self.bid_px, self.bid_qty, need_bid)
        if need_ask > len(self.ask_key):
            self.ask_key, self.ask_qty = _grow(self.ask_key, self.ask_qty, need_ask)

    # --- counters --------------------------------------------------------------------------------

    @property
    def absent_deletes(self) -> int:
        """Deletes that named a level the book did not have (normal past a snapshot's depth)."""
        return int(self.counters[0])

    @property
    def level_updates(self) -> int:
        """Level changes applied so far, snapshots included."""
        return int(self.counters[1])

    # --- reads -----------------------------------------------------------------------------------

    @property
    def best_bid_px(self) -> int:
        """Best bid in ticks, or NO_PRICE when the side is empty."""
        return int(self.bid_px[self.n_bid - 1]) if self.n_bid else NO_PRICE

    @property
    def best_ask_px(self) -> int:
        """Best ask in ticks, or NO_PRICE when the side is empty."""
        return int(-self.ask_key[self.n_ask - 1]) if self.n_ask else NO_PRICE

    def best_bid(self) -> tuple[int, int] | None:
        """(price ticks, size lots) of the best bid, or None."""
        n = self.n_bid
        return (int(self.bid_px[n - 1]), int(self.bid_qty[n - 1])) if n else None

    def best_ask(self) -> tuple[int, int] | None:
        """(price ticks, size lots) of the best ask, or None."""
        n = self.n_ask
        return (int(-self.ask_key[n - 1]), int(self.ask_qty[n - 1])) if n else None

    def trusted_levels(self) -> tuple[int, int]:
        """(bid levels, ask levels) at or inside the last snapshot's depth: the part of the book that
        is complete. Every level when the snapshot was the whole book."""
        nb, na = self.n_bid, self.n_ask
        if self.trust_bid_px != NO_PRICE:
            nb -= int(np.searchsorted(self.bid_px[:nb], self.trust_bid_px, "left"))
        if self.trust_ask_px != NO_PRICE:
            na -= int(np.searchsorted(self.ask_key[:na], -self.trust_ask_px, "left"))
        return nb, na

    def top_trusted(self) -> bool:
        """The best bid and ask lie within the last snapshot's depth. Beyond it a level that has not
        changed since the snapshot is missing, so a better price than the book's best may exist."""
        if self.trust_bid_px != NO_PRICE and self.n_bid and self.bid_px[self.n_bid - 1] < self.trust_bid_px:
            return False
        return not (self.trust_ask_px != NO_PRICE and self.n_ask and -self.ask_key[self.n_ask - 1] > self.trust_ask_px)

    @property
    def two_sided(self) -> bool:
        """Both sides have at least one level (a mid exists)."""
        return self.n_bid > 0 and self.n_ask > 0

    def is_crossed(self) -> bool:
        """True when best bid >= best ask (crossed or locked): no single venue book can be."""
        return self.two_sided and bool(self.bid_px[self.n_bid - 1] >= -self.ask_key[self.n_ask - 1])

    def mid_ticks(self) -> float | None:
        """Mid price in (fractional) ticks, or None when a side is empty."""
        if not self.two_sided:
            return None
        return (float(self.bid_px[self.n_bid - 1]) - float(self.ask_key[self.n_ask - 1])) / 2.0

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Up to n levels per side, best first: (bid_px, bid_qty, ask_px, ask_qty) copies."""
        nb = min(n, self.n_bid)
        na = min(n, self.n_ask)
        bsl = slice(self.n_bid - nb, self.n_bid)
        asl = slice(self.n_ask - na, self.n_ask)
        return (self.bid_px[bsl][::-1].copy(), self.bid_qty[bsl][::-1].copy(),
                -self.ask_key[asl][::-1], self.ask_qty[asl][::-1].copy())

    def bid_depth_from(self, min_px: int) -> int:
        """Total bid size at prices >= min_px (lots)."""
        return int(kernels.qty_beyond(self.bid_px, self.bid_qty, self.n_bid, min_px))

    def ask_depth_to(self, max_px: int) -> int:
        """Total ask size at prices <= max_px (lots)."""
        return int(kernels.qty_beyond(self.ask_key, self.ask_qty, self.n_ask, -max_px))

    def sweep_asks(self, want: int, max_px: int | None = None) -> tuple[int, float]:
        """Buying `want` lots against the asks (not past max_px): (lots available, ticks*lots cost)."""
        limit = -max_px if max_px is not None else NO_PRICE
        return kernels.sweep(self.ask_key, self.ask_qty, self.n_ask, want, limit, -1)

    def sweep_bids(self, want: int, min_px: int | None = None) -> tuple[int, float]:
        """Selling `want` lots into the bids (not below min_px): (lots available, ticks*lots proceeds)."""
        limit = min_px if min_px is not None else NO_PRICE
        return kernels.sweep(self.bid_px, self.bid_qty, self.n_bid, want, limit, 1)

    def vwap_to_fill(self, side_is_buy: bool, want: int) -> float | None:
        """Average price in ticks to fill `want` lots by walking the book, or None if too thin."""
        got, cost = self.sweep_asks(want) if side_is_buy else self.sweep_bids(want)
        return cost / got if got == want and got > 0 else None


def _grow(px: np.ndarray, qty: np.ndarray, need: int) -> tuple[np.ndarray, np.ndarray]:
    cap = len(px)
    while cap < need:
        cap *= 2
    new_px = np.zeros(cap, np.int64)
    new_qty = np.zeros(cap, np.int64)
    new_px[: len(px)] = px
    new_qty[: len(qty)] = qty
    return new_px, new_qty
