"""numba kernel that recomputes the book-state features from the book arrays after a change.

It reads the Book's layout directly (bids keyed by price, asks by negated price, best level last)
and writes every value in schema order; a value that cannot be computed (an empty side, a zero
denominator) is NaN, never 0. Adding a feature: add it to schema.FEATURES and write its slot here.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MID, MICRO, SPREAD_BPS, IMB_L1, IMB_5, IMB_10, BID_DEPTH_1, ASK_DEPTH_1, DEPTH_RATIO_1 = range(9)
N_BOOK_FEATURES = 9


@njit(cache=True, nogil=True)
def _ratio(num: float, den: float) -> float:
    return num / den if den != 0.0 else math.nan


@njit(cache=True, nogil=True)
def _top_sum(qty: np.ndarray, n: int, k: int) -> float:
    total = 0.0
    for m in range(n - 1, max(n - k, 0) - 1, -1):
        total += qty[m]
    return total


@njit(cache=True, nogil=True)
def book_features(bid_px: np.ndarray, bid_qty: np.ndarray, nb: int, ask_key: np.ndarray,
                  ask_qty: np.ndarray, na: int, tick: float, lot: float, out: np.ndarray) -> None:
    """Write the book features of the current book into out[0:N_BOOK_FEATURES]."""
    if nb == 0 or na == 0:
        for i in range(N_BOOK_FEATURES):
            out[i] = math.nan
        return
    bb = float(bid_px[nb - 1])
    ba = -float(ask_key[na - 1])
    bq = float(bid_qty[nb - 1])
    aq = float(ask_qty[na - 1])
    mid_t = (bb + ba) / 2.0
    out[MID] = mid_t * tick
    out[MICRO] = _ratio(bb * aq + ba * bq, bq + aq) * tick
    out[SPREAD_BPS] = _ratio(ba - bb, mid_t) * 1e4
    out[IMB_L1] = _ratio(bq - aq, bq + aq)
    b5 = _top_sum(bid_qty, nb, 5)
    a5 = _top_sum(ask_qty, na, 5)
    out[IMB_5] = _ratio(b5 - a5, b5 + a5)
    b10 = _top_sum(bid_qty, nb, 10)
    a10 = _top_sum(ask_qty, na, 10)
    out[IMB_10] = _ratio(b10 - a10, b10 + a10)
    lo = np.int64(math.ceil(mid_t * 0.99))
    hi = np.int64(math.floor(mid_t * 1.01))
    bid_band = 0.0
    m = nb - 1
    while m >= 0 and bid_px[m] >= lo:
        bid_band += bid_qty[m]
        m -= 1
    ask_band = 0.0
    m = na - 1
    while m >= 0 and -ask_key[m] <= hi:
        ask_band += ask_qty[m]
        m -= 1
    out[BID_DEPTH_1] = bid_band * lot
    out[ASK_DEPTH_1] = ask_band * lot
    out[DEPTH_RATIO_1] = _ratio(bid_band, ask_band)
