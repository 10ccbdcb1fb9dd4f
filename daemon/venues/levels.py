"""Price levels of a venue message to the instrument's grid, with the first bad level named."""

from __future__ import annotations

import numpy as np

from daemon.instruments import Instrument, levels_to_grid

_PROBLEMS = {
    1: "a price that is not a positive finite number",
    2: "a size that is negative or not a finite number",
    3: "a price off the tick grid",
    4: "a size off the lot grid",
}


def to_grid(flat: np.ndarray, inst: Instrument) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(n, 2) decimal [price, size] rows to (ticks, lots, -1, "") in one numba pass, or, at the first
    bad row, (_, _, its index, what is wrong with it: "a price off the tick grid 0.01")."""
    n = flat.shape[0]
    px = np.empty(n, np.int64)
    qty = np.empty(n, np.int64)
    code = levels_to_grid(flat, inst.tick_size, inst.lot_size, px, qty)
    if code < 0:
        return px, qty, -1, ""
    row, what = divmod(code, 10)
    grid = {3: f" {inst.tick_size!r}", 4: f" {inst.lot_size!r}"}.get(what, "")
    return px, qty, row, _PROBLEMS[what] + grid
