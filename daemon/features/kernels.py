"""numba kernel that recomputes the book-state features from the book arrays after a change.

It reads the Book's layout directly (bids keyed by price, asks by negated price, best level last)
and writes the price, imbalance, depth and shape features in place. Each side keeps running sums
of size and key x size from its worst level up, redone only from the lowest level the book
changed (the Book's low-water mark), so any band or top-N sum is a binary search and a
subtraction: a change near the touch of a book of thousands of levels costs tens of ns, not a
scan. A value that cannot be computed (an empty side, a zero denominator) is NaN, never 0.
Sizes are summed as integer lots (exact); notionals as float ticks x lots.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from daemon.features.schema import INDEX as _I

MID, MICRO, WMID5, SPREAD_TICKS, SPREAD_BPS = _I["mid"], _I["microprice"], _I["wmid_5"], _I["spread_ticks"], \
    _I["spread_bps"]
MICRO_MID, WMID5_MID, IMB_L1 = _I["micro_mid_bps"], _I["wmid5_mid_bps"], _I["imb_l1"]
IMB3, IMB5, IMB10, IMB20 = _I["imb_3"], _I["imb_5"], _I["imb_10"], _I["imb_20"]
IMB_B10, IMB_B50, IMB_B100 = _I["imb_10bp"], _I["imb_50bp"], _I["imb_100bp"]
DEPTH_RATIO, DEPTH_IMB10 = _I["depth_ratio_100bp"], _I["depth_imb_10"]
BQ10, AQ10, BQ50, AQ50, BQ100, AQ100 = (_I["bid_qty_10bp"], _I["ask_qty_10bp"], _I["bid_qty_50bp"],
                                        _I["ask_qty_50bp"], _I["bid_qty_100bp"], _I["ask_qty_100bp"])
BN10, AN10, BN50, AN50, BN100, AN100 = (_I["bid_notional_10bp"], _I["ask_notional_10bp"], _I["bid_notional_50bp"],
                                        _I["ask_notional_50bp"], _I["bid_notional_100bp"],
                                        _I["ask_notional_100bp"])
BL10, AL10, BL100, AL100 = _I["bid_levels_10bp"], _I["ask_levels_10bp"], _I["bid_levels_100bp"], \
    _I["ask_levels_100bp"]
BID_SLOPE, ASK_SLOPE, COST_BUY, COST_SELL = _I["bid_slope_10"], _I["ask_slope_10"], _I["cost_buy_bps"], \
    _I["cost_sell_bps"]
N_BOOK_FEATURES = COST_SELL + 1  # the book-state features are the first block of the schema


@njit(cache=True, nogil=True)
def _ratio(num: float, den: float) -> float:
    return num / den if den != 0.0 else math.nan


@njit(cache=True, nogil=True)
def _imb(b: float, a: float) -> float:
    return _ratio(b - a, b + a)


@njit(cache=True, nogil=True)
def _ceil(x: float) -> int:
    return np.int64(math.ceil(x))


@njit(cache=True, nogil=True)
def _floor(x: float) -> int:
    return np.int64(math.floor(x))


@njit(cache=True, nogil=True)
def refresh_cumulative(key: np.ndarray, qty: np.ndarray, n: int, low: int, cq: np.ndarray, cn: np.ndarray) -> None:
    """Redo the running sums of one side from index `low` up: cq[j] = sum of qty[:j+1] (lots, exact
    below 2**53), cn[j] = sum of key * qty over [:j+1] (left folds, so they equal a fresh computation
    bit for bit whatever the history)."""
    start = max(low, 0)
    if start >= n:
        return
    q = cq[start - 1] if start > 0 else 0.0
    v = cn[start - 1] if start > 0 else 0.0
    for m in range(start, n):
        q += float(qty[m])
        v += float(key[m]) * float(qty[m])
        cq[m] = q
        cn[m] = v


@njit(cache=True, nogil=True)
def _qsum(cq: np.ndarray, lo: int, hi: int) -> float:
    """Size of the levels [lo, hi) from the running sums."""
    if hi <= lo:
        return 0.0
    return cq[hi - 1] - (cq[lo - 1] if lo > 0 else 0.0)


@njit(cache=True, nogil=True)
def _nsum(cn: np.ndarray, lo: int, hi: int) -> float:
    """Key x size of the levels [lo, hi) from the running sums."""
    if hi <= lo:
        return 0.0
    return cn[hi - 1] - (cn[lo - 1] if lo > 0 else 0.0)


@njit(cache=True, nogil=True)
def _cost(key: np.ndarray, qty: np.ndarray, n: int, sign: int, notional_tl: float) -> float:
    """Average price in ticks to trade `notional_tl` (ticks x lots) walking from the best level, or NaN."""
    remaining = notional_tl
    got = 0.0
    for m in range(n - 1, -1, -1):
        px = sign * float(key[m])
        level = px * float(qty[m])
        if level >= remaining:
            got += remaining / px
            return notional_tl / got
        remaining -= level
        got += float(qty[m])
    return math.nan


@njit(cache=True, nogil=True)
def book_features(bid_px: np.ndarray, bid_qty: np.ndarray, nb: int, ask_key: np.ndarray, ask_qty: np.ndarray,
                  na: int, tick: float, lot: float, cost_notional: float, out: np.ndarray, cum: np.ndarray) -> None:
    """Write the book-state features (the first N_BOOK_FEATURES slots) into out.

    cum rows are the running sums (see refresh_cumulative) of bid size, bid key x size, ask size and
    ask key x size, already current.
    """
    if nb == 0 or na == 0:
        for i in range(N_BOOK_FEATURES):
            out[i] = math.nan
        return
    bcq, bcn, acq, acn = cum[0], cum[1], cum[2], cum[3]
    bb = float(bid_px[nb - 1])
    ba = -float(ask_key[na - 1])
    bq = float(bid_qty[nb - 1])
    aq = float(ask_qty[na - 1])
    mid_t = (bb + ba) / 2.0
    tl = tick * lot
    out[MID] = mid_t * tick
    micro_t = (bb * aq + ba * bq) / (bq + aq)
    out[MICRO] = micro_t * tick
    b5 = _qsum(bcq, max(nb - 5, 0), nb)
    a5 = _qsum(acq, max(na - 5, 0), na)
    vb = _nsum(bcn, max(nb - 5, 0), nb) / b5
    va = -_nsum(acn, max(na - 5, 0), na) / a5
    wmid_t = (vb * a5 + va * b5) / (b5 + a5)
    out[WMID5] = wmid_t * tick
    out[SPREAD_TICKS] = ba - bb
    out[SPREAD_BPS] = (ba - bb) / mid_t * 1e4
    out[MICRO_MID] = (micro_t - mid_t) / mid_t * 1e4
    out[WMID5_MID] = (wmid_t - mid_t) / mid_t * 1e4
    out[IMB_L1] = _imb(bq, aq)
    out[IMB3] = _imb(_qsum(bcq, max(nb - 3, 0), nb), _qsum(acq, max(na - 3, 0), na))
    out[IMB5] = _imb(b5, a5)
    b10 = _qsum(bcq, max(nb - 10, 0), nb)
    a10 = _qsum(acq, max(na - 10, 0), na)
    out[IMB10] = _imb(b10, a10)
    out[IMB20] = _imb(_qsum(bcq, max(nb - 20, 0), nb), _qsum(acq, max(na - 20, 0), na))
    out[DEPTH_IMB10] = _imb(_nsum(bcn, max(nb - 10, 0), nb), -_nsum(acn, max(na - 10, 0), na))
    for b in range(3):
        f = (10.0, 50.0, 100.0)[b] / 10_000.0
        # a bid is inside when price >= mid * (1 - f); an ask when price <= mid * (1 + f), i.e. key >= -that
        kb = np.searchsorted(bid_px[:nb], _ceil(mid_t * (1.0 - f)))
        ka = np.searchsorted(ask_key[:na], -_floor(mid_t * (1.0 + f)))
        qb = _qsum(bcq, kb, nb)
        qa = _qsum(acq, ka, na)
        out[BQ10 + 2 * b] = qb * lot
        out[AQ10 + 2 * b] = qa * lot
        out[BN10 + 2 * b] = _nsum(bcn, kb, nb) * tl
        out[AN10 + 2 * b] = -_nsum(acn, ka, na) * tl
        out[IMB_B10 + b] = _imb(qb, qa)
        if b == 0:
            out[BL10] = nb - kb
            out[AL10] = na - ka
        elif b == 2:
            out[BL100] = nb - kb
            out[AL100] = na - ka
            out[DEPTH_RATIO] = _ratio(qb, qa)
    p10b = float(bid_px[max(nb - 10, 0)])
    p10a = -float(ask_key[max(na - 10, 0)])
    out[BID_SLOPE] = _ratio(b10 * lot, (bb - p10b) / mid_t * 1e4)
    out[ASK_SLOPE] = _ratio(a10 * lot, (p10a - ba) / mid_t * 1e4)
    notional_tl = cost_notional / tl
    out[COST_BUY] = (_cost(ask_key, ask_qty, na, -1, notional_tl) - mid_t) / mid_t * 1e4
    out[COST_SELL] = (mid_t - _cost(bid_px, bid_qty, nb, 1, notional_tl)) / mid_t * 1e4
