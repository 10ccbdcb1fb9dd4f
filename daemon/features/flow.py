"""numba kernels for the features that depend on history: flow windows, returns and EWMAs.

Per symbol, two rings hold the recent events: book changes (ts, OFI contribution in lots, 2 x mid
in ticks or -1, counted) and trades (ts, buy lots, sell lots); they share one int64 array, book
rows in columns 0-3 and trade rows in columns 4-6, each with its own start and end. Each window (1 s, 10 s, 60 s) keeps
a pointer to its oldest event and running integer sums, so adding an event and moving a window
are O(1) amortised and the sums are exact. `finish` moves the windows to the sample time and
writes the time-dependent features. All state lives in int64/float64 arrays (see the slot names).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from daemon.features import bands, kernels
from daemon.features.schema import INDEX as _I
from daemon.features.schema import NAMES

W_NS = np.array([1_000_000_000, 10_000_000_000, 60_000_000_000], np.int64)
TAU_NS = 10_000_000_000.0
OFI0, TFI0, VOL0 = _I["ofi_1s"], _I["tfi_1s"], _I["vol_1s"]
TRADE_RATE, BOOK_RATE, RET0 = _I["trade_rate_10s"], _I["book_rate_10s"], _I["ret_1s_bps"]
EWMA_VOL, EWMA_SPREAD, PERSIST = _I["ewma_vol_10s"], _I["ewma_spread_10s"], _I["imb_persist_s"]
SINCE_TRADE, SINCE_MID = _I["since_trade_s"], _I["since_mid_s"]
SPREAD_BPS, IMB_L1 = _I["spread_bps"], _I["imb_l1"]

# int state slots
(FIRST_TS, LAST_TRADE_TS, PERIOD, PERIOD_START, PREV_BB, PREV_BQ, PREV_BA, PREV_AQ, LAST_BOOK_TS, PREV_MID2,
 MID_TS, VOL_TS, PERSIST_SIGN, PERSIST_SINCE,
 B_START, B_END, B_P0, B_P1, B_P2, B_OFI0, B_OFI1, B_OFI2, B_CNT0, B_CNT1, B_CNT2,
 T_START, T_END, T_P0, T_P1, T_P2, T_BUY0, T_BUY1, T_BUY2, T_SELL0, T_SELL1, T_SELL2, BANDS_VALID) = range(37)
BAND_I = 37  # bands.INT_SLOTS slots of depth-band state from here
N_INT = BAND_I + bands.INT_SLOTS
# float state: the feature values (schema order), then parameters, then EWMA state
N_VALUES = len(NAMES)
TICK, LOT, COST_NOTIONAL, IMB_THRESHOLD, EWMA_E, SPREAD_PREV, VOL_V = range(N_VALUES, N_VALUES + 7)
BAND_F = N_VALUES + 7  # bands.FLOAT_SLOTS, then 14 scratch slots for the best-level sums
TOP = BAND_F + bands.FLOAT_SLOTS
N_FLOAT = TOP + 14
# ring columns: book ts, ofi lots, 2 x mid ticks (-1 = none), counted as a book change; trade ts, buy, sell
BT, BOFI, BMID, BCNT, TT, TBUY, TSELL = range(7)
OK, NEED_ROOM = 0, 1
# Book counters slots (daemon.book.kernels): edit log rows, edit log overflowed, level counts
LOG_COUNT, LOG_OVERFLOW, N_BID, N_ASK = 2, 3, 4, 5


def new_state(tick: float, lot: float, cost_notional: float, imbalance_threshold: float,
              capacity: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fresh (float state with NaN values, int state, rings) of one symbol."""
    st = np.zeros(N_INT, np.int64)
    st[FIRST_TS] = -1
    st[LAST_TRADE_TS] = -1
    fs = np.zeros(N_FLOAT)
    fs[:N_VALUES] = np.nan
    fs[TICK], fs[LOT], fs[COST_NOTIONAL], fs[IMB_THRESHOLD] = tick, lot, cost_notional, imbalance_threshold
    return fs, st, np.zeros((capacity, 7), np.int64)


def grown(ring: np.ndarray) -> np.ndarray:
    """The rings with twice the rows (called when a kernel answered NEED_ROOM)."""
    out = np.zeros((2 * len(ring), ring.shape[1]), np.int64)
    out[: len(ring)] = ring
    return out


@njit(cache=True, nogil=True)
def _room(ring: np.ndarray, c0: int, c1: int, st: np.ndarray, start: int, end: int, first_ptr: int) -> bool:
    """Make room for one row at the end of the ring in columns c0:c1, compacting its live rows to the
    front; False if it is too full for that (the caller grows the array)."""
    if st[end] < len(ring):
        return True
    s = st[start]
    if s == 0 or st[end] - s > (len(ring) * 3) // 4:
        return False
    n = st[end] - s
    ring[:n, c0:c1] = ring[s: st[end], c0:c1]
    st[start] = 0
    st[end] = n
    for p in range(first_ptr, first_ptr + 3):
        st[p] -= s
    return True


@njit(cache=True, nogil=True)
def _advance(now: int, st: np.ndarray, r: np.ndarray) -> None:
    """Move every window to (now - W, now], dropping rows no window (or return) still needs."""
    for w in range(3):
        limit = now - W_NS[w]
        p = st[B_P0 + w]
        end = st[B_END]
        while p < end and r[p, BT] <= limit:
            st[B_OFI0 + w] -= r[p, BOFI]
            st[B_CNT0 + w] -= r[p, BCNT]
            p += 1
        st[B_P0 + w] = p
        p = st[T_P0 + w]
        end = st[T_END]
        while p < end and r[p, TT] <= limit:
            st[T_BUY0 + w] -= r[p, TBUY]
            st[T_SELL0 + w] -= r[p, TSELL]
            p += 1
        st[T_P0 + w] = p
    # keep the last book row at or before now - 60 s: it holds the mid of then
    st[B_START] = max(st[B_START], st[B_P2] - 1)
    st[T_START] = st[T_P2]


@njit(cache=True, nogil=True)
def update_book(bid_px: np.ndarray, bid_qty: np.ndarray, ask_key: np.ndarray, ask_qty: np.ndarray,
                changes: np.ndarray, edits: np.ndarray, live: bool, ts: int, fs: np.ndarray, st: np.ndarray,
                r: np.ndarray) -> int:
    """A book change at ts: bring the depth bands, the book features and the flow state up to date.

    `changes`/`edits` are the Book's counters and edit log (consumed here). One call with few
    arguments: numba's dispatch costs ~60 ns an argument. NEED_ROOM (nothing changed) when the
    ring is full.
    """
    if not _room(r, BT, BCNT + 1, st, B_START, B_END, B_P0):
        return NEED_ROOM
    nb = changes[N_BID]
    na = changes[N_ASK]
    values = fs[:N_VALUES]
    band_i = st[BAND_I:]
    band_f = fs[BAND_F:TOP]
    if live and nb > 0 and na > 0:
        mid_t = (float(bid_px[nb - 1]) - float(ask_key[na - 1])) / 2.0
        if st[BANDS_VALID] == 0 or changes[LOG_OVERFLOW] != 0:
            bands.recompute(bid_px, bid_qty, nb, 0, mid_t, band_i, band_f)
            bands.recompute(ask_key, ask_qty, na, 1, mid_t, band_i, band_f)
            st[BANDS_VALID] = 1
        else:
            bands.replay_edits(edits, changes[LOG_COUNT], band_i, band_f)
            bands.move(bid_px, bid_qty, nb, 0, mid_t, band_i, band_f)
            bands.move(ask_key, ask_qty, na, 1, mid_t, band_i, band_f)
        kernels.book_features(bid_px, bid_qty, nb, ask_key, ask_qty, na, fs[TICK], fs[LOT], fs[COST_NOTIONAL],
                              values, band_i, band_f, fs[TOP:])
    else:
        st[BANDS_VALID] = 0
        for i in range(kernels.N_BOOK_FEATURES):
            values[i] = math.nan
    changes[LOG_COUNT] = 0
    changes[LOG_OVERFLOW] = 0
    if st[FIRST_TS] < 0:
        st[FIRST_TS] = ts
    row = st[B_END]
    r[row, BT] = ts
    r[row, BOFI] = 0
    if not live or nb == 0 or na == 0:
        st[PERIOD] = 0
        r[row, BMID] = -1
        r[row, BCNT] = 1 if live else 0
    else:
        bb = bid_px[nb - 1]
        bq = bid_qty[nb - 1]
        ba = -ask_key[na - 1]
        aq = ask_qty[na - 1]
        mid2 = bb + ba
        spread = values[SPREAD_BPS]
        imb = values[IMB_L1]
        thr = fs[IMB_THRESHOLD]
        sign = 1 if imb > thr else (-1 if imb < -thr else 0)
        if st[PERIOD] == 1:
            e = 0
            if bb >= st[PREV_BB]:
                e += bq
            if bb <= st[PREV_BB]:
                e -= st[PREV_BQ]
            if ba <= st[PREV_BA]:
                e -= aq
            if ba >= st[PREV_BA]:
                e += st[PREV_AQ]
            r[row, BOFI] = e
            a = math.exp(-(ts - st[LAST_BOOK_TS]) / TAU_NS)
            fs[EWMA_E] = fs[EWMA_E] * a + fs[SPREAD_PREV] * (1.0 - a)
            if mid2 != st[PREV_MID2]:
                lr = math.log(mid2 / st[PREV_MID2]) * 1e4
                fs[VOL_V] = fs[VOL_V] * math.exp(-(ts - st[VOL_TS]) / TAU_NS) + lr * lr
                st[VOL_TS] = ts
                st[MID_TS] = ts
            if sign != st[PERSIST_SIGN]:
                st[PERSIST_SIGN] = sign
                st[PERSIST_SINCE] = ts
        else:
            st[PERIOD] = 1
            st[PERIOD_START] = ts
            fs[EWMA_E] = spread
            fs[VOL_V] = 0.0
            st[VOL_TS] = ts
            st[MID_TS] = ts
            st[PERSIST_SIGN] = sign
            st[PERSIST_SINCE] = ts
        fs[SPREAD_PREV] = spread
        st[PREV_BB] = bb
        st[PREV_BQ] = bq
        st[PREV_BA] = ba
        st[PREV_AQ] = aq
        st[PREV_MID2] = mid2
        st[LAST_BOOK_TS] = ts
        r[row, BMID] = mid2
        r[row, BCNT] = 1
    st[B_END] = row + 1
    for w in range(3):
        st[B_OFI0 + w] += r[row, BOFI]
        st[B_CNT0 + w] += r[row, BCNT]
    _advance(ts, st, r)
    return OK


@njit(cache=True, nogil=True)
def on_trade(ts: int, buy: bool, lots: int, st: np.ndarray, r: np.ndarray) -> int:
    """Account one market trade (taker side, size in lots); NEED_ROOM if the ring is full."""
    if not _room(r, TT, TSELL + 1, st, T_START, T_END, T_P0):
        return NEED_ROOM
    if st[FIRST_TS] < 0:
        st[FIRST_TS] = ts
    st[LAST_TRADE_TS] = ts
    row = st[T_END]
    r[row, TT] = ts
    r[row, TBUY] = lots if buy else 0
    r[row, TSELL] = 0 if buy else lots
    st[T_END] = row + 1
    for w in range(3):
        st[T_BUY0 + w] += r[row, TBUY]
        st[T_SELL0 + w] += r[row, TSELL]
    _advance(ts, st, r)
    return OK


@njit(cache=True, nogil=True)
def finish(now: int, fs: np.ndarray, st: np.ndarray, r: np.ndarray) -> None:
    """Move the windows to `now` and write the flow and dynamics features into the values."""
    _advance(now, st, r)
    values = fs[:N_VALUES]
    lot = fs[LOT]
    nan = math.nan
    first = st[FIRST_TS]
    active = st[PERIOD] == 1
    for w in range(3):
        covered = first >= 0 and now - first >= W_NS[w]
        buy = st[T_BUY0 + w]
        sell = st[T_SELL0 + w]
        values[OFI0 + w] = st[B_OFI0 + w] * lot if covered else nan
        values[VOL0 + w] = (buy + sell) * lot if covered else nan
        values[TFI0 + w] = (buy - sell) / (buy + sell) if covered and buy + sell > 0 else nan
        ret = nan
        p = st[B_P0 + w] - 1
        if covered and active and p >= st[B_START] and r[p, BMID] > 0:
            then = r[p, BMID]
            ret = (st[PREV_MID2] - then) / then * 1e4
        values[RET0 + w] = ret
        if w == 1:
            values[TRADE_RATE] = (st[T_END] - st[T_P1]) / 10.0 if covered else nan
            values[BOOK_RATE] = st[B_CNT1] / 10.0 if covered else nan
    if active:
        if now - st[PERIOD_START] >= TAU_NS:
            v = fs[VOL_V] * math.exp(-(now - st[VOL_TS]) / TAU_NS)
            values[EWMA_VOL] = math.sqrt(v / (TAU_NS / 1e9))
        else:
            values[EWMA_VOL] = nan
        a = math.exp(-(now - st[LAST_BOOK_TS]) / TAU_NS)
        values[EWMA_SPREAD] = fs[EWMA_E] * a + fs[SPREAD_PREV] * (1.0 - a)
        values[PERSIST] = st[PERSIST_SIGN] * (now - st[PERSIST_SINCE]) / 1e9
        values[SINCE_MID] = (now - st[MID_TS]) / 1e9
    else:
        values[EWMA_VOL] = nan
        values[EWMA_SPREAD] = nan
        values[PERSIST] = nan
        values[SINCE_MID] = nan
    values[SINCE_TRADE] = (now - st[LAST_TRADE_TS]) / 1e9 if st[LAST_TRADE_TS] >= 0 else nan
