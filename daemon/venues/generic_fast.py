"""A numba fast path for normalized L2 lines in their canonical shape.

A line such as `{"ts":1,"kind":"delta","bids":[[61837.63,3.78826]],"asks":[]}` (no whitespace,
keys from the format only, plain ASCII strings) is parsed straight from its bytes into ticks and
lots, skipping the Python lists a JSON parser builds. It recognises a strict subset of JSON and
answers FALLBACK for anything else, including every invalid or out-of-range value, so that the
generic adapter's dict path, which has the precise error messages, decides those lines. Numbers
are converted exactly as Python's float() does (Clinger's fast path: at most 15 significant digits
and a power of ten within 1e22; anything else falls back), then put on the grid with the same
rule, `daemon.instruments.on_grid`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from daemon.instruments import on_grid

OK, FALLBACK, NEED_ROOM = 0, 1, 2
KIND_SNAPSHOT, KIND_DELTA, KIND_TRADE = 1, 2, 3
_FAIL = (FALLBACK, 0, 0, 0, 0, 0, 0)
_ROOM = (NEED_ROOM, 0, 0, 0, 0, 0, 0)

_POW10 = np.array([10.0**k for k in range(23)])
_QUOTE, _COLON, _COMMA, _LBRACKET, _RBRACKET, _LBRACE, _RBRACE = 34, 58, 44, 91, 93, 123, 125
_MINUS, _DOT, _ZERO, _NINE, _E, _e, _PLUS = 45, 46, 48, 57, 69, 101, 43


@njit(cache=True, nogil=True)
def _number(b: bytes, i: int, n: int) -> tuple[int, float]:
    """Parse a JSON number at b[i:]; (index after it, value), or (-1, 0.0) to fall back."""
    neg = False
    if i < n and b[i] == _MINUS:
        neg = True
        i += 1
    if i >= n or not (_ZERO <= b[i] <= _NINE):
        return -1, 0.0
    if b[i] == _ZERO and i + 1 < n and _ZERO <= b[i + 1] <= _NINE:
        return -1, 0.0
    mant = 0
    sig = 0
    exp10 = 0
    while i < n and _ZERO <= b[i] <= _NINE:
        if mant or b[i] != _ZERO:
            mant = mant * 10 + (b[i] - _ZERO)
            sig += 1
        i += 1
    if i < n and b[i] == _DOT:
        i += 1
        if i >= n or not (_ZERO <= b[i] <= _NINE):
            return -1, 0.0
        while i < n and _ZERO <= b[i] <= _NINE:
            if mant or b[i] != _ZERO:
                mant = mant * 10 + (b[i] - _ZERO)
                sig += 1
            exp10 -= 1
            i += 1
    if i < n and (b[i] == _E or b[i] == _e):
        i += 1
        eneg = False
        if i < n and (b[i] == _PLUS or b[i] == _MINUS):
            eneg = b[i] == _MINUS
            i += 1
        if i >= n or not (_ZERO <= b[i] <= _NINE):
            return -1, 0.0
        e = 0
        while i < n and _ZERO <= b[i] <= _NINE:
            e = e * 10 + (b[i] - _ZERO)
            if e > 400:
                return -1, 0.0
            i += 1
        exp10 += -e if eneg else e
    if sig > 15:
        return -1, 0.0
    if mant == 0:
        value = 0.0
    elif 0 <= exp10 <= 22:
        value = float(mant) * _POW10[exp10]
    elif -22 <= exp10 < 0:
        value = float(mant) / _POW10[-exp10]
    else:
        return -1, 0.0
    return i, -value if neg else value


_INT64_MAX = 2**63 - 1


@njit(cache=True, nogil=True)
def _uint(b: bytes, i: int, n: int) -> tuple[int, int]:
    """Parse unsigned decimal digits at b[i:] that fit an int64: (index after, value), or (-1, 0)."""
    start = i
    value = 0
    while i < n and _ZERO <= b[i] <= _NINE:
        d = b[i] - _ZERO
        if value > (_INT64_MAX - d) // 10:
            return -1, 0
        value = value * 10 + d
        i += 1
    if i == start or (b[start] == _ZERO and i - start > 1):
        return -1, 0
    return i, value


@njit(cache=True, nogil=True)
def _is(b: bytes, i: int, n: int, word: bytes) -> bool:
    """b[i:] starts with word."""
    m = len(word)
    if i + m > n:
        return False
    for k in range(m):  # noqa: SIM110 - numba compiles no generator expression here
        if b[i + k] != word[k]:
            return False
    return True


@njit(cache=True, nogil=True)
def _levels(b: bytes, i: int, n: int, tick: float, lot: float, px: np.ndarray, qty: np.ndarray) -> tuple[int, int]:
    """Parse `[[p,q],...]` at b[i:] into px/qty; (index after it, count), count -1 to fall back,
    -2 when the buffers are too small."""
    if i >= n or b[i] != _LBRACKET:
        return i, -1
    i += 1
    k = 0
    if i < n and b[i] == _RBRACKET:
        return i + 1, 0
    while True:
        if i >= n or b[i] != _LBRACKET:
            return i, -1
        i, p = _number(b, i + 1, n)
        if i < 0 or i >= n or b[i] != _COMMA:
            return i, -1
        i, q = _number(b, i + 1, n)
        if i < 0 or i >= n or b[i] != _RBRACKET:
            return i, -1
        i += 1
        if not (math.isfinite(p) and p > 0.0 and math.isfinite(q) and q >= 0.0):
            return i, -1
        if k >= px.shape[0]:
            return i, -2
        ok, pt = on_grid(p, tick)
        if not ok:
            return i, -1
        ok, ql = on_grid(q, lot)
        if not ok:
            return i, -1
        px[k] = pt
        qty[k] = ql
        k += 1
        if i < n and b[i] == _COMMA:
            i += 1
            continue
        if i < n and b[i] == _RBRACKET:
            return i + 1, k
        return i, -1


@njit(cache=True, nogil=True)
def parse_line(b: bytes, tick: float, lot: float, levels: np.ndarray) -> tuple[int, int, int, int, int, int, int]:
    """Parse one canonical normalized line; the levels go into `levels` (rows: bid px, bid qty, ask px,
    ask qty). Returns (code, kind, n bids, n asks, trade price, trade qty, trade side) with code OK,
    FALLBACK or NEED_ROOM; one array argument and a tuple result keep numba's call overhead low."""
    bid_px, bid_qty, ask_px, ask_qty = levels[0], levels[1], levels[2], levels[3]
    n = len(b)
    while n > 0 and (b[n - 1] == 10 or b[n - 1] == 13):
        n -= 1
    if n < 2 or b[0] != _LBRACE:
        return _FAIL
    seen = 0
    kind = 0
    nb = 0
    na = 0
    price = 0.0
    size = 0.0
    side = 0
    i = 1
    while True:
        if i >= n or b[i] != _QUOTE:
            return _FAIL
        if _is(b, i, n, b'"ts":'):
            bit, i = 1, i + 5
            i, _ts = _uint(b, i, n)
            if i < 0:
                return _FAIL
        elif _is(b, i, n, b'"kind":"'):
            bit, i = 2, i + 8
            if _is(b, i, n, b'delta"'):
                kind, i = KIND_DELTA, i + 6
            elif _is(b, i, n, b'trade"'):
                kind, i = KIND_TRADE, i + 6
            elif _is(b, i, n, b'snapshot"'):
                kind, i = KIND_SNAPSHOT, i + 9
            else:
                return _FAIL
        elif _is(b, i, n, b'"bids":'):
            bit = 4
            i, nb = _levels(b, i + 7, n, tick, lot, bid_px, bid_qty)
            if nb < 0:
                return _ROOM if nb == -2 else _FAIL
        elif _is(b, i, n, b'"asks":'):
            bit = 8
            i, na = _levels(b, i + 7, n, tick, lot, ask_px, ask_qty)
            if na < 0:
                return _ROOM if na == -2 else _FAIL
        elif _is(b, i, n, b'"price":'):
            bit = 16
            i, price = _number(b, i + 8, n)
            if i < 0:
                return _FAIL
        elif _is(b, i, n, b'"qty":'):
            bit = 32
            i, size = _number(b, i + 6, n)
            if i < 0:
                return _FAIL
        elif _is(b, i, n, b'"side":"'):
            bit, i = 64, i + 8
            if _is(b, i, n, b'buy"'):
                side, i = 1, i + 4
            elif _is(b, i, n, b'sell"'):
                side, i = -1, i + 5
            else:
                return _FAIL
        else:
            return _FAIL
        if seen & bit:
            return _FAIL
        seen |= bit
        if i < n and b[i] == _COMMA:
            i += 1
            continue
        if i == n - 1 and b[i] == _RBRACE:
            break
        return _FAIL
    if kind == KIND_TRADE:
        if seen != 1 | 2 | 16 | 32 | 64:
            return _FAIL
        if not (math.isfinite(price) and price > 0.0 and math.isfinite(size) and size > 0.0):
            return _FAIL
        ok, pt = on_grid(price, tick)
        if not ok:
            return _FAIL
        ok, ql = on_grid(size, lot)
        if not ok:
            return _FAIL
        return OK, kind, 0, 0, pt, ql, side
    if kind == 0 or seen != 1 | 2 | 4 | 8:
        return _FAIL
    return OK, kind, nb, na, 0, 0, 0


@njit(cache=True, nogil=True)
def scan_head(b: bytes) -> tuple[int, int]:
    """(ts, kind) of a line that opens with `{"ts":<digits>,"kind":"<kind>"`, else (-1, 0)."""
    n = len(b)
    if not _is(b, 0, n, b'{"ts":'):
        return -1, 0
    i, ts = _uint(b, 6, n)
    if i < 0 or not _is(b, i, n, b',"kind":"'):
        return -1, 0
    i += 9
    if _is(b, i, n, b'delta"'):
        return ts, KIND_DELTA
    if _is(b, i, n, b'trade"'):
        return ts, KIND_TRADE
    if _is(b, i, n, b'snapshot"'):
        return ts, KIND_SNAPSHOT
    return -1, 0
