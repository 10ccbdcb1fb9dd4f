"""Reconnect and retry delays: exponential growth with full jitter.

Attempt n (from 0) waits a uniform draw from [floor_s, min(max_s, initial_s * factor**n)], so many
clients that lost the same venue at once do not all come back at the same moment ("full jitter"),
and no delay is shorter than `floor_s` (0.05 s by default), so a connection that fails at once
never spins the loop. `reset()` after a connection has proved healthy starts again from attempt 0.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive attempts; deterministic with a seeded `rng`."""

    def __init__(
        self,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
        *,
        floor_s: float = 0.05,
    ) -> None:
        if not initial_s > 0:
            raise ValueError(f"initial_s must be > 0, got {initial_s!r}")
        if not max_s >= initial_s:
            raise ValueError(f"max_s must be >= initial_s ({initial_s}), got {max_s!r}")
        if not factor >= 1:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        if not 0 <= floor_s <= initial_s:
            raise ValueError(f"floor_s must be in [0, initial_s={initial_s}], got {floor_s!r}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.floor_s = floor_s
        self._rng = rng or random.Random()
        self._cap = initial_s
        self.attempts = 0  # delays handed out since the last reset

    def next(self) -> float:
        """The delay before the next attempt, in seconds; each call grows the ceiling up to max_s."""
        delay = self._rng.uniform(self.floor_s, self._cap)
        self.attempts += 1
        self._cap = min(self.max_s, self._cap * self.factor)
        return delay

    def reset(self) -> None:
        """Start again from the initial ceiling (after a connection has stayed healthy)."""
        self._cap = self.initial_s
        self.attempts = 0
