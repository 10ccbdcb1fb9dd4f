"""numba kernel that recomputes the book-state features from the book arrays after a change.

It reads the Book's layout directly (bids keyed by price, asks by negated price, best level last)
and writes the price, imbalance, depth and shape features in place. Best-level sums walk at most
20 levels; the depth bands (10/50/100 bps of mid) come from bands.py, which keeps them current
from the book's edit log instead of rescanning thousands of levels. A value that cannot be
computed (an empty side, a zero denominator) is NaN, never 0.
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
def _top(key: np.ndarray, qty: np.ndarray, n: int, sign: int, out: np.ndarray) -> None:
    """Best-level sums of one side into out: size of the best 3/5/10/20, price x size of the best 5/10
    (in ticks x lots), and the price of the 10th (or deepest) level."""
    q = 0.0
    v = 0.0
    last = n - 1
    for depth in range(1, 21):
        m = n - depth
        if m < 0:
            break
        q += float(qty[m])
        last = m
        if depth <= 10:
            v += float(key[m]) * float(qty[m])
        if depth == 3:
            out[0] = q
        elif depth == 5:
            out[1] = q
            out[4] = sign * v
        elif depth == 10:
            out[2] = q
            out[5] = sign * v
    depth = n - last
    if depth < 3:
        out[0] = q
    if depth < 5:
        out[1] = q
        out[4] = sign * v
    if depth < 10:
        out[2] = q
        out[5] = sign * v
    out[3] = q
    out[6] = sign * float(key[max(n - 10, 0)])


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
                  na: int, tick: float, lot: float, cost_notional: float, out: np.ndarray, band_i: np.ndarray,
                  band_f: np.ndarray, top: np.ndarray) -> None:
    """Write the book-state features (the first N_BOOK_FEATURES slots) into out.

    band_i/band_f are the depth-band state of bands.py, already current for this book; `top` is
    scratch for 14 floats.
    """
    if nb == 0 or na == 0:
        for i in range(N_BOOK_FEATURES):
            out[i] = math.nan
        return
    bt = top[:7]
    at = top[7:14]
    _top(bid_px, bid_qty, nb, 1, bt)
    _top(ask_key, ask_qty, na, -1, at)
    bb = float(bid_px[nb - 1])
    ba = -float(ask_key[na - 1])
    bq = float(bid_qty[nb - 1])
    aq = float(ask_qty[na - 1])
    mid_t = (bb + ba) / 2.0
    tl = tick * lot
    out[MID] = mid_t * tick
    micro_t = (bb * aq + ba * bq) / (bq + aq)
    out[MICRO] = micro_t * tick
    b5 = bt[1]
    a5 = at[1]
    wmid_t = (bt[4] / b5 * a5 + at[4] / a5 * b5) / (b5 + a5)
    out[WMID5] = wmid_t * tick
    out[SPREAD_TICKS] = ba - bb
    out[SPREAD_BPS] = (ba - bb) / mid_t * 1e4
    out[MICRO_MID] = (micro_t - mid_t) / mid_t * 1e4
    out[WMID5_MID] = (wmid_t - mid_t) / mid_t * 1e4
    out[IMB_L1] = _imb(bq, aq)
    out[IMB3] = _imb(bt[0], at[0])
    out[IMB5] = _imb(b5, a5)
    out[IMB10] = _imb(bt[2], at[2])
    out[IMB20] = _imb(bt[3], at[3])
    out[DEPTH_IMB10] = _imb(bt[5], at[5])
    for b in range(3):
        qb = float(band_i[4 * b + 2])
        qa = float(band_i[4 * (3 + b) + 2])
        out[BQ10 + 2 * b] = qb * lot
        out[AQ10 + 2 * b] = qa * lot
        out[BN10 + 2 * b] = band_f[b] * tl
        out[AN10 + 2 * b] = -band_f[3 + b] * tl
        out[IMB_B10 + b] = _imb(qb, qa)
    out[BL10] = band_i[3]
    out[AL10] = band_i[4 * 3 + 3]
    out[BL100] = band_i[4 * 2 + 3]
    out[AL100] = band_i[4 * 5 + 3]
    out[DEPTH_RATIO] = _ratio(float(band_i[4 * 2 + 2]), float(band_i[4 * 5 + 2]))
    out[BID_SLOPE] = _ratio(bt[2] * lot, (bb - bt[6]) / mid_t * 1e4)
    out[ASK_SLOPE] = _ratio(at[2] * lot, (at[6] - ba) / mid_t * 1e4)
    notional_tl = cost_notional / tl
    out[COST_BUY] = (_cost(ask_key, ask_qty, na, -1, notional_tl) - mid_t) / mid_t * 1e4
    out[COST_SELL] = (mid_t - _cost(bid_px, bid_qty, nb, 1, notional_tl)) / mid_t * 1e4
