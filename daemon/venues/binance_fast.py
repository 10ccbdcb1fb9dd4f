"""A numba fast path for Binance websocket frames in the shape Binance sends them.

A combined-stream frame such as
`{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":2,"u":3,"b":[["1.00","2"]],"a":[]}}`
(or its bare payload) is parsed straight from its bytes into ticks and lots, skipping the Python
objects a JSON parser builds: `depthUpdate` (spot, and USD-M with `T` and `pu`), `trade`, `aggTrade`
and `bookTicker`. The parser recognises a strict subset of JSON (no whitespace, no escapes, the keys
Binance sends and no others, each once) and answers FALLBACK for anything else, including every
invalid, negative or off-grid value and a payload symbol other than the expected one, so that the
adapter's dict path, which has the precise error messages, decides those frames.

Binance sends prices and sizes as decimal strings ("61837.63000000"); they become ticks and lots
in exact integer arithmetic (digits up to the grid's decimals, the rest must be zeros), with no
float in between. For a value on the grid this is the very number `daemon.instruments.on_grid`
gives; a value it refuses (off the grid, too many digits, an exponent) falls back, and the dict
path applies `on_grid`'s rule, so both paths always agree.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from daemon.venues.generic_fast import _is, _uint

OK, FALLBACK, NEED_ROOM = 0, 1, 2
KIND_DEPTH, KIND_TRADE, KIND_AGG_TRADE, KIND_BOOK_TICKER = 1, 2, 3, 4
NO_ID = -1  # an id field (`pu`, `T`, `E`) the frame does not carry

_FAIL = (FALLBACK, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_PFAIL = (-1, FALLBACK, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_PROOM = (-1, NEED_ROOM, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_QUOTE, _COLON, _COMMA, _LBRACKET, _RBRACKET, _LBRACE, _RBRACE = 34, 58, 44, 91, 93, 123, 125
_BACKSLASH, _DOT, _ZERO, _NINE = 92, 46, 48, 57
_MAX_DIGITS = 17  # integer digits + grid decimals of one value: its steps must fit an int64
_MAX_STEPS = 10**13  # past this many steps the float grid rule (instruments.on_grid) stops checking
_POW10_INT = np.array([10**k for k in range(19)], np.int64)

# bits of the payload keys seen (_bl/_al: `b`/`a` as level lists; _bq/_aq: as quoted prices)
_e, _E, _T, _s, _U, _u, _pu, _bl, _al = 1, 2, 4, 8, 16, 32, 64, 128, 256
_bq, _aq, _B, _A, _p, _q, _m, _t, _M = 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072
_aid, _f, _l, _X = 262144, 524288, 1048576, 2097152
_DEPTH_NEED = _e | _E | _s | _U | _u | _bl | _al
_DEPTH_MAY = _DEPTH_NEED | _T | _pu
_TRADE_NEED = _e | _E | _s | _t | _p | _q | _T | _m
_TRADE_MAY = _TRADE_NEED | _M | _X
_AGG_NEED = _e | _E | _s | _aid | _p | _q | _f | _l | _T | _m
_AGG_MAY = _AGG_NEED | _M
_TICKER_NEED = _u | _s | _bq | _B | _aq | _A
_TICKER_MAY = _TICKER_NEED | _e | _E | _T


@njit(cache=True, nogil=True)
def _skip_string(b: bytes, i: int, n: int) -> int:
    """Index after the plain string opening at b[i] (a quote); -1 for an escape or no end."""
    if i >= n or b[i] != _QUOTE:
        return -1
    i += 1
    while i < n:
        c = b[i]
        if c == _QUOTE:
            return i + 1
        if c == _BACKSLASH:
            return -1
        i += 1
    return -1


@njit(cache=True, nogil=True)
def _qdec(b: bytes, i: int, step_c: int, step_d: int) -> tuple[int, int]:
    """A plain decimal in quotes at b[i:] (`"61837.63000000"`) as a whole number of grid steps
    `step_c * 10**-step_d`: (index after it, steps), or (-1, 0) when it is not such a decimal, has
    more digits than fit, or is off the grid. The frame must end in a non-digit (`parse_frame`
    checks its closing brace), which ends every digit run without a bounds test."""
    if b[i] != _QUOTE or step_c <= 0:
        return -1, 0
    i += 1
    start = i
    v = 0
    d = (b[i] - _ZERO) & 0xFF  # a non-digit wraps to > 9
    while d <= 9:
        v = v * 10 + d
        i += 1
        d = (b[i] - _ZERO) & 0xFF
    nd = i - start
    if nd == 0 or nd + step_d > _MAX_DIGITS or (nd > 1 and b[start] == _ZERO):
        return -1, 0
    f = 0
    if b[i] == _DOT:
        i += 1
        frac = i
        d = (b[i] - _ZERO) & 0xFF
        while d <= 9 and f < step_d:
            v = v * 10 + d
            f += 1
            i += 1
            d = (b[i] - _ZERO) & 0xFF
        while d == 0:  # digits past the grid's decimals must be zeros
            i += 1
            d = (b[i] - _ZERO) & 0xFF
        if d <= 9 or i == frac:
            return -1, 0
    if b[i] != _QUOTE:
        return -1, 0
    v *= _POW10_INT[step_d - f]
    if step_c != 1:
        if v % step_c:
            return -1, 0
        v //= step_c
    if v >= _MAX_STEPS:
        return -1, 0
    return i + 1, v


@njit(cache=True, nogil=True)
def _bool(b: bytes, i: int, n: int) -> tuple[int, int]:
    """`true` or `false` at b[i:]: (index after, 1 or 0), or (-1, 0)."""
    if _is(b, i, n, b"true"):
        return i + 4, 1
    if _is(b, i, n, b"false"):
        return i + 5, 0
    return -1, 0


@njit(cache=True, nogil=True)
def _levels(b: bytes, i: int, n: int, grid: tuple[int, int, int, int], px: np.ndarray,
            qty: np.ndarray) -> tuple[int, int]:
    """Parse `[["p","q"],...]` at b[i:] into ticks and lots; (index after it, count), count -1 to
    fall back, -2 when the buffers are too small."""
    tc, td, lc, ld = grid
    if i >= n or b[i] != _LBRACKET:
        return i, -1
    i += 1
    k = 0
    if i < n and b[i] == _RBRACKET:
        return i + 1, 0
    cap = px.shape[0]
    while True:
        if i >= n or b[i] != _LBRACKET:
            return i, -1
        i, p = _qdec(b, i + 1, tc, td)
        if i < 0 or i >= n or b[i] != _COMMA or p == 0:
            return i, -1
        i, q = _qdec(b, i + 1, lc, ld)
        if i < 0 or i >= n or b[i] != _RBRACKET:
            return i, -1
        i += 1
        if k >= cap:
            return i, -2
        px[k] = p
        qty[k] = q
        k += 1
        if i < n and b[i] == _COMMA:
            i += 1
            continue
        if i < n and b[i] == _RBRACKET:
            return i + 1, k
        return i, -1


@njit(cache=True, nogil=True)
def _compact(levels: np.ndarray, cap: int, nb: int, na: int) -> None:
    """Move the four runs parsed at 0, cap, 2 cap and 3 cap together: bid px, bid qty, ask px, ask qty.
    Each run moves down, after the run it might overlap has moved, element by element upward."""
    for k in range(nb):
        levels[nb + k] = levels[cap + k]
    base = 2 * nb
    for k in range(na):
        levels[base + k] = levels[2 * cap + k]
    base += na
    for k in range(na):
        levels[base + k] = levels[3 * cap + k]


@njit(cache=True, nogil=True)
def _payload(b: bytes, i: int, n: int, sym: bytes, grid: tuple[int, int, int, int],
             levels: np.ndarray) -> tuple[int, int, int, int, int, int, int, int, int, int, int, int, int, int]:
    """Parse the payload object at b[i:]; (index after it, then the fields of `parse_frame`)."""
    tc, td, lc, ld = grid
    cap = levels.shape[0] // 4
    if i >= n or b[i] != _LBRACE:
        return _PFAIL
    i += 1
    seen = 0
    kind = 0
    ev_E = NO_ID
    ev_T = NO_ID
    first_id = 0
    last_id = 0
    prev_id = NO_ID
    nb = 0
    na = 0
    x0 = 0
    x1 = 0
    x2 = 0
    x3 = 0
    maker = 0
    while True:
        if i + 3 >= n or b[i] != _QUOTE:
            return _PFAIL
        k0 = b[i + 1]
        if b[i + 2] == _QUOTE and b[i + 3] == _COLON:
            i += 4
            if k0 == 101:  # e
                bit = _e
                if _is(b, i, n, b'"depthUpdate"'):
                    kind, i = KIND_DEPTH, i + 13
                elif _is(b, i, n, b'"trade"'):
                    kind, i = KIND_TRADE, i + 7
                elif _is(b, i, n, b'"aggTrade"'):
                    kind, i = KIND_AGG_TRADE, i + 10
                elif _is(b, i, n, b'"bookTicker"'):
                    kind, i = KIND_BOOK_TICKER, i + 12
                else:
                    return _PFAIL
            elif k0 == 69:  # E
                bit = _E
                i, ev_E = _uint(b, i, n)
            elif k0 == 84:  # T
                bit = _T
                i, ev_T = _uint(b, i, n)
            elif k0 == 115:  # s
                bit = _s
                m = len(sym)
                if i + m + 2 > n or b[i] != _QUOTE or b[i + m + 1] != _QUOTE or not _is(b, i + 1, n, sym):
                    return _PFAIL
                i += m + 2
            elif k0 == 85:  # U
                bit = _U
                i, first_id = _uint(b, i, n)
            elif k0 == 117:  # u
                bit = _u
                i, last_id = _uint(b, i, n)
            elif k0 == 98:  # b: depth bid levels, or the bookTicker's best bid price
                if i < n and b[i] == _LBRACKET:
                    bit = _bl
                    i, nb = _levels(b, i, n, grid, levels[:cap], levels[cap:2 * cap])
                    if nb < 0:
                        return _PROOM if nb == -2 else _PFAIL
                else:
                    bit = _bq
                    i, x0 = _qdec(b, i, tc, td)
            elif k0 == 97:  # a: depth ask levels, the bookTicker's best ask price, or the aggTrade id
                if i < n and b[i] == _LBRACKET:
                    bit = _al
                    i, na = _levels(b, i, n, grid, levels[2 * cap:3 * cap], levels[3 * cap:])
                    if na < 0:
                        return _PROOM if na == -2 else _PFAIL
                elif i < n and b[i] == _QUOTE:
                    bit = _aq
                    i, x2 = _qdec(b, i, tc, td)
                else:
                    bit = _aid
                    i, _ = _uint(b, i, n)
            elif k0 == 66:  # B
                bit = _B
                i, x1 = _qdec(b, i, lc, ld)
            elif k0 == 65:  # A
                bit = _A
                i, x3 = _qdec(b, i, lc, ld)
            elif k0 == 112:  # p
                bit = _p
                i, x0 = _qdec(b, i, tc, td)
            elif k0 == 113:  # q
                bit = _q
                i, x1 = _qdec(b, i, lc, ld)
            elif k0 == 109:  # m
                bit = _m
                i, maker = _bool(b, i, n)
            elif k0 == 77:  # M
                bit = _M
                i, _ = _bool(b, i, n)
            elif k0 == 88:  # X: the USD-M trade type; only a MARKET print is taken here
                bit = _X
                if not _is(b, i, n, b'"MARKET"'):
                    return _PFAIL
                i += 8
            elif k0 == 116:  # t
                bit = _t
                i, _ = _uint(b, i, n)
            elif k0 == 102:  # f
                bit = _f
                i, _ = _uint(b, i, n)
            elif k0 == 108:  # l
                bit = _l
                i, _ = _uint(b, i, n)
            else:
                return _PFAIL
        elif _is(b, i, n, b'"pu":'):
            bit = _pu
            i, prev_id = _uint(b, i + 5, n)
        else:
            return _PFAIL
        if i < 0 or seen & bit:
            return _PFAIL
        seen |= bit
        if i < n and b[i] == _COMMA:
            i += 1
            continue
        if i < n and b[i] == _RBRACE:
            i += 1
            break
        return _PFAIL
    if kind == 0 and seen & _e == 0:
        kind = KIND_BOOK_TICKER
    if kind == KIND_DEPTH:
        if seen & _DEPTH_NEED != _DEPTH_NEED or seen & ~_DEPTH_MAY or first_id > last_id:
            return _PFAIL
        _compact(levels, cap, nb, na)
        return i, OK, kind, nb, na, ev_E, ev_T, first_id, last_id, prev_id, 0, 0, 0, 0
    if kind == KIND_BOOK_TICKER:
        if seen & _TICKER_NEED != _TICKER_NEED or seen & ~_TICKER_MAY or x0 == 0 or x2 == 0:
            return _PFAIL
        return i, OK, kind, 0, 0, ev_E, ev_T, 0, last_id, NO_ID, x0, x1, x2, x3
    if kind == KIND_TRADE:
        need, may = _TRADE_NEED, _TRADE_MAY
    else:
        need, may = _AGG_NEED, _AGG_MAY
    if seen & need != need or seen & ~may or x0 == 0 or x1 == 0:
        return _PFAIL
    return i, OK, kind, 0, 0, ev_E, ev_T, 0, 0, NO_ID, x0, x1, -1 if maker else 1, 0


@njit(cache=True, nogil=True)
def parse_frame(b: bytes, sym: bytes, grid: tuple[int, int, int, int],
                levels: np.ndarray) -> tuple[int, int, int, int, int, int, int, int, int, int, int, int, int]:
    """Parse one frame of symbol `sym`; a depth event's levels go into `levels` (4 * capacity int64):
    bid prices, bid sizes, ask prices and ask sizes, one run after the other from index 0. `grid` is
    (tick c, tick d, lot c, lot d): the tick is c * 10**-d, and so is the lot. Returns (code, kind,
    n bids, n asks, E, T, U, u, pu, x0, x1, x2, x3) with code OK, FALLBACK or NEED_ROOM; x0..x3 are
    the bookTicker's bid px/qty and ask px/qty, or a trade's price, size and aggressor side (+1 buy,
    -1 sell). An id the frame lacks is NO_ID."""
    n = len(b)
    while n > 0 and (b[n - 1] == 10 or b[n - 1] == 13):
        n -= 1
    if n < 2 or b[n - 1] != _RBRACE:
        return _FAIL
    if _is(b, 0, n, b'{"stream":'):
        i = _skip_string(b, 10, n)
        if i < 0 or not _is(b, i, n, b',"data":'):
            return _FAIL
        r = _payload(b, i + 8, n, sym, grid, levels)
        i = r[0]
        if i < 0:
            return r[1:]
        if i != n - 1 or b[i] != _RBRACE:
            return _FAIL
        return r[1:]
    r = _payload(b, 0, n, sym, grid, levels)
    if r[0] != n:
        return _FAIL if r[0] >= 0 else r[1:]
    return r[1:]


def decimal_grid(step: float) -> tuple[int, int]:
    """A grid step as (c, d) with step == c * 10**-d exactly as decimals, or (0, 0) when it has no
    such form within 12 decimals (then every frame takes the dict path)."""
    for d in range(13):
        c = round(step * 10**d)
        if c >= 1 and abs(c / 10**d - step) <= step * 1e-12:
            return (c, d) if d + len(str(c)) <= _MAX_DIGITS else (0, 0)
    return 0, 0
