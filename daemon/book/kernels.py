"""numba kernels behind the Book: sorted int64 level arrays with the best level at the end.

Each side is a pair of arrays (`px`, `qty`) sorted ascending by key with `n` live entries. Bids
use the price as key, asks the negated price, so on both sides the best level is entry `n - 1`
and the changes that come most often (near the touch) move the fewest entries. The kernels take
prices and a `sign` (+1 bids, -1 asks) and negate inside, so no caller allocates a key array.

A delta is applied per side as one batch: its changes are ordered by key, the changes to one
price are folded in message order (so the result and the absent-delete count equal applying
them one by one), and then every surviving level moves at most once, by the net number of
inserts minus deletes below it. One insert or delete deep in the book thus costs one pass over
the levels above it per message, not one per change.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

# Up to this many changes a side's order is found by insertion sort (no allocation); past it
# by a stable argsort.
_INSERTION_SORT_MAX = 32
# Scratch int64 slots apply_side needs per change: order, then edit index, key and size, and shift.
_SCRATCH_PER_CHANGE = 5


@intrinsic
def _memmove(typingctx, arr, dst, src, count):
    """arr[dst:dst + count] = arr[src:src + count] for a C-contiguous 1-d array, overlap allowed.

    One llvm.memmove instead of an element loop: shifting the levels above a deep insert or
    delete is most of the kernel's work.
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"):
        return None
    sig = types.void(arr, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        ary_ty = signature.args[0]
        ary = context.make_array(ary_ty)(context, builder, args[0])
        itemsize = context.get_abi_sizeof(context.get_data_type(ary_ty.dtype))
        cgutils.raw_memmove(builder, builder.gep(ary.data, [args[1]]), builder.gep(ary.data, [args[2]]),
                            args[3], itemsize)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _find_from_top(px: np.ndarray, hi: int, key: int) -> int:
    """First index in px[:hi] whose key is >= `key` (hi if none), searched from the top end.

    Gallops down from `hi` and then bisects, so a key near the touch costs a few steps and a key
    deep in the book log2(distance). The caller guarantees px[hi:...] holds keys >= key.
    """
    lo = 0
    step = 1
    while True:
        probe = hi - step
        if probe < 0:
            break
        if px[probe] < key:
            lo = probe + 1
            break
        hi = probe
        step *= 2
    # Branch-free bisection of [lo, hi]: the comparisons deep in a book are unpredictable.
    size = hi - lo
    if size == 0:
        return lo
    while size > 1:
        half = size >> 1
        lo = lo + half if px[lo + half - 1] < key else lo
        size -= half
    return lo + 1 if px[lo] < key else lo


@njit(cache=True, nogil=True)
def _order_by_key_desc(prices: np.ndarray, sign: int, order: np.ndarray) -> None:
    """Fill `order` with the indices of `prices` by key (sign * price) descending, stable.

    Venues list a side best-first or worst-first; both are recognised in one pass.
    """
    k = prices.shape[0]
    desc = True
    asc = True
    for j in range(1, k):
        a = sign * prices[j - 1]
        b = sign * prices[j]
        if a <= b:
            desc = False
        if a >= b:
            asc = False
    if desc:
        for j in range(k):
            order[j] = j
    elif asc:
        for j in range(k):
            order[j] = k - 1 - j
    elif k <= _INSERTION_SORT_MAX:
        for j in range(k):
            key = sign * prices[j]
            m = j
            while m > 0 and sign * prices[order[m - 1]] < key:
                order[m] = order[m - 1]
                m -= 1
            order[m] = j
    else:
        order[:k] = np.argsort(-sign * prices, kind="mergesort")


# counters slots
ABSENT_DELETES, LEVEL_CHANGES, LOG_COUNT, LOG_OVERFLOW, N_BID, N_ASK = range(6)
N_COUNTERS = 6
EDIT_LOG_ROWS = 4096


def new_counters() -> np.ndarray:
    """A fresh counters array (the edit log starts overflowed: nothing has been read yet)."""
    c = np.zeros(N_COUNTERS, np.int64)
    c[LOG_OVERFLOW] = 1
    return c


@njit(cache=True, nogil=True)
def _log_edit(counters: np.ndarray, edits: np.ndarray, side: int, key: int, old: int, new: int) -> None:
    """Append (side 0 bid / 1 ask, key, old size, new size) to the edit log; past its end, flag overflow.

    A reader that keeps sums over parts of the book (the feature calculator's depth bands) replays
    the log and resets it; after an overflow (or a snapshot) it recomputes from the book instead.
    """
    m = counters[LOG_COUNT]
    if m < edits.shape[0]:
        edits[m, 0] = side
        edits[m, 1] = key
        edits[m, 2] = old
        edits[m, 3] = new
        counters[LOG_COUNT] = m + 1
    else:
        counters[LOG_OVERFLOW] = 1


@njit(cache=True, nogil=True)
def apply_side(px: np.ndarray, qty: np.ndarray, n: int, prices: np.ndarray, sizes: np.ndarray, sign: int,
               counters: np.ndarray, scratch: np.ndarray, edits: np.ndarray) -> int:
    """Apply one message's (price, size) changes to one side in message order; size 0 deletes.

    Returns the new n. `counters[0]` is incremented by the deletes of absent levels, `counters[1]`
    by the changes applied; every level whose size changed is appended to the edit log (see
    _log_edit). The caller guarantees room for n + len(prices) entries, equal lengths,
    and _SCRATCH_PER_CHANGE * len(prices) entries of `scratch`.
    """
    k = prices.shape[0]
    counters[1] += k
    if k == 0:
        return n
    side = 0 if sign == 1 else 1
    order = scratch[:k]
    _order_by_key_desc(prices, sign, order)
    # Net edits, by key descending: old index, new key, new size (0 = delete the level at the index).
    e_pos = scratch[k:2 * k]
    e_key = scratch[2 * k:3 * k]
    e_qty = scratch[3 * k:4 * k]
    ne = 0
    hi = n
    j = 0
    while j < k:
        key = sign * prices[order[j]]
        i = _find_from_top(px, hi, key)
        hi = i
        had = i < n and px[i] == key
        has = had
        size = qty[i] if had else 0
        while j < k and sign * prices[order[j]] == key:
            s = sizes[order[j]]
            if s != 0:
                has = True
                size = s
            elif has:
                has = False
            else:
                counters[0] += 1
            j += 1
        old = qty[i] if had else 0
        new = size if has else 0
        if old != new:
            _log_edit(counters, edits, side, key, old, new)
        if had and has:
            qty[i] = size
        elif had or has:
            e_pos[ne] = i
            e_key[ne] = key
            e_qty[ne] = size if has else 0
            ne += 1
    if ne == 0:
        return n
    # Walk the edits upward (key ascending): the levels between two edits shift by the net count of
    # inserts minus deletes so far. Leftward shifts go bottom-up, rightward ones top-down, so no
    # run of levels is overwritten before it has moved.
    shift = scratch[4 * k:4 * k + ne]
    d = 0
    for e in range(ne - 1, -1, -1):
        d += 1 if e_qty[e] != 0 else -1
        shift[e] = d
    for e in range(ne - 1, -1, -1):
        if shift[e] < 0:
            _shift_run(px, qty, e_pos, e_qty, e, n, shift[e])
    for e in range(ne):
        if shift[e] > 0:
            _shift_run(px, qty, e_pos, e_qty, e, n, shift[e])
    for e in range(ne):
        if e_qty[e] != 0:
            dest = e_pos[e] + shift[e] - 1
            px[dest] = e_key[e]
            qty[dest] = e_qty[e]
    return n + shift[0]


@njit(cache=True, nogil=True)
def _shift_run(px: np.ndarray, qty: np.ndarray, e_pos: np.ndarray, e_qty: np.ndarray, e: int, n: int,
               d: int) -> None:
    """Move the old levels between edit e and the next edit above it (or the top) by d places.

    The run may be empty, never negative: an edit above a delete at i sits at index i + 1 or higher.
    """
    start = e_pos[e] + (1 if e_qty[e] == 0 else 0)
    end = e_pos[e - 1] if e > 0 else n
    _memmove(px, start + d, start, end - start)
    _memmove(qty, start + d, start, end - start)


@njit(cache=True, nogil=True)
def apply_message(bid_px: np.ndarray, bid_qty: np.ndarray, n_bid: int, ask_key: np.ndarray,
                  ask_qty: np.ndarray, n_ask: int, bid_prices: np.ndarray, bid_sizes: np.ndarray,
                  ask_prices: np.ndarray, ask_sizes: np.ndarray, counters: np.ndarray, edits: np.ndarray) -> tuple:
    """Apply one delta message to both sides in one call; returns (n_bid, n_ask).

    Returns (-1, -1) and changes nothing when a side might not have room for the message's
    levels: the caller grows the arrays and calls again.
    """
    kb = bid_prices.shape[0]
    ka = ask_prices.shape[0]
    if bid_sizes.shape[0] != kb or ask_sizes.shape[0] != ka:
        raise ValueError("prices and sizes differ in length")
    if n_bid + kb > bid_px.shape[0] or n_ask + ka > ask_key.shape[0]:
        return -1, -1
    scratch = np.empty(_SCRATCH_PER_CHANGE * max(kb, ka), np.int64)
    n_bid = apply_side(bid_px, bid_qty, n_bid, bid_prices, bid_sizes, 1, counters, scratch, edits)
    n_ask = apply_side(ask_key, ask_qty, n_ask, ask_prices, ask_sizes, -1, counters, scratch, edits)
    counters[N_BID] = n_bid
    counters[N_ASK] = n_ask
    return n_bid, n_ask


@njit(cache=True, nogil=True)
def load_side(px: np.ndarray, qty: np.ndarray, prices: np.ndarray, sizes: np.ndarray, sign: int) -> int:
    """Replace a side with the given levels (any order; size-0 entries skipped; a repeated price keeps
    the last size). Returns n."""
    if sizes.shape[0] != prices.shape[0]:
        raise ValueError("prices and sizes differ in length")
    keys = sign * prices
    order = np.argsort(keys, kind="mergesort")
    n = 0
    for j in range(order.shape[0]):
        k = keys[order[j]]
        s = sizes[order[j]]
        if n > 0 and px[n - 1] == k:
            if s == 0:
                n -= 1
            else:
                qty[n - 1] = s
            continue
        if s == 0:
            continue
        px[n] = k
        qty[n] = s
        n += 1
    return n


@njit(cache=True, nogil=True)
def qty_beyond(px: np.ndarray, qty: np.ndarray, n: int, key_limit: int) -> int:
    """Total size of the levels whose key is >= key_limit (the levels at or better than a price)."""
    i = np.searchsorted(px[:n], key_limit)
    total = 0
    for m in range(i, n):
        total += qty[m]
    return total


@njit(cache=True, nogil=True)
def sweep(px: np.ndarray, qty: np.ndarray, n: int, want: int, key_limit: int, sign: int) -> tuple:
    """Walk a side from the best level taking up to `want` lots at keys >= key_limit.

    Returns (lots taken, sum of price*lots in ticks*lots as float); `sign` turns keys into prices.
    """
    taken = 0
    notional = 0.0
    m = n - 1
    while m >= 0 and taken < want and px[m] >= key_limit:
        take = min(qty[m], want - taken)
        taken += take
        notional += float(sign * px[m]) * float(take)
        m -= 1
    return taken, notional
