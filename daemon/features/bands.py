"""numba kernels that keep the depth within 10/50/100 bps of mid current without rescanning the book.

Per side and band the state is the boundary key L (a level is inside when its key >= L; keys are
prices for bids and negated prices for asks), k = the number of levels below L, and the size,
count and key x size of the levels inside. A book change is replayed from the Book's edit log
(each edit moves the sums of the bands it falls in, or k when it falls below), then each boundary
walks to where the new mid puts it, adding or dropping the few levels it crosses. A snapshot, an
overflowed log or a new LIVE period recomputes from the book (a binary search and one pass).
Size and count are exact integers; key x size is a float sum of the same terms in event order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

BANDS_BPS = (10.0, 50.0, 100.0)
# int state per (side, band): boundary key, levels below it, size inside (lots), levels inside
L, K, Q, C = range(4)
INT_SLOTS = 4 * 6
FLOAT_SLOTS = 6  # key x size inside, per (side, band)


@njit(cache=True, nogil=True)
def bounds(mid_t: float, side: int, band: int) -> int:
    """The boundary key of a band: bids priced >= mid * (1 - f), asks priced <= mid * (1 + f)."""
    f = (10.0, 50.0, 100.0)[band] / 10_000.0
    if side == 0:
        return np.int64(math.ceil(mid_t * (1.0 - f)))
    return -np.int64(math.floor(mid_t * (1.0 + f)))


@njit(cache=True, nogil=True)
def recompute(key: np.ndarray, qty: np.ndarray, n: int, side: int, mid_t: float, ist: np.ndarray,
              fst: np.ndarray) -> None:
    """Set the three bands of one side from scratch (ist/fst are the band slices of the state)."""
    for b in range(3):
        j = side * 3 + b
        lim = bounds(mid_t, side, b)
        k = np.searchsorted(key[:n], lim)
        q = 0
        v = 0.0
        for m in range(k, n):
            q += qty[m]
            v += float(key[m]) * float(qty[m])
        ist[4 * j + L] = lim
        ist[4 * j + K] = k
        ist[4 * j + Q] = q
        ist[4 * j + C] = n - k
        fst[j] = v


@njit(cache=True, nogil=True)
def replay_edits(edits: np.ndarray, count: int, ist: np.ndarray, fst: np.ndarray) -> None:
    """Apply the edit log's (side, key, old, new) rows to the bands, against their current boundaries."""
    for e in range(count):
        side = edits[e, 0]
        key = edits[e, 1]
        old = edits[e, 2]
        new = edits[e, 3]
        dc = (1 if new > 0 else 0) - (1 if old > 0 else 0)
        for b in range(3):
            j = side * 3 + b
            if key >= ist[4 * j + L]:
                ist[4 * j + Q] += new - old
                ist[4 * j + C] += dc
                fst[j] += float(key) * float(new - old)
            else:
                ist[4 * j + K] += dc


@njit(cache=True, nogil=True)
def move(key: np.ndarray, qty: np.ndarray, n: int, side: int, mid_t: float, ist: np.ndarray,
         fst: np.ndarray) -> None:
    """Walk each boundary of one side to the new mid, dropping or adding the levels it crosses."""
    for b in range(3):
        j = side * 3 + b
        lim = bounds(mid_t, side, b)
        if lim == ist[4 * j + L]:
            continue
        k = ist[4 * j + K]
        q = ist[4 * j + Q]
        c = ist[4 * j + C]
        v = fst[j]
        while k < n and key[k] < lim:
            q -= qty[k]
            c -= 1
            v -= float(key[k]) * float(qty[k])
            k += 1
        while k > 0 and key[k - 1] >= lim:
            k -= 1
            q += qty[k]
            c += 1
            v += float(key[k]) * float(qty[k])
        ist[4 * j + L] = lim
        ist[4 * j + K] = k
        ist[4 * j + Q] = q
        ist[4 * j + C] = c
        fst[j] = v
