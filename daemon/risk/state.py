"""Trading state: ACTIVE -> REDUCING (only exposure-reducing orders) -> HALTED (nothing; orders cancelled).

A transition table (DESIGN rule 10): automatic triggers may escalate, and may bring REDUCING back
to ACTIVE once they have all cleared, but only an operator leaves HALTED. Every transition records
its time (the clock's), the reason and who caused it (`operator:<name>`, `trigger:<name>`,
`startup`). A halt is persisted through a HaltStore (an atomically replaced JSON file) and a
daemon that starts with one on disk comes up HALTED until an operator resumes. The listener (the
engine: cancel, flatten) hears of a transition only after the halt is on disk and the flatten wish
is set.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.clock import Clock
from daemon.errors import IllegalTransition

log = structlog.get_logger("depthd.risk")


class TradingState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class StateEvent(enum.StrEnum):
    TRIGGER_REDUCE = "trigger_reduce"
    TRIGGER_HALT = "trigger_halt"
    TRIGGERS_CLEAR = "triggers_clear"
    OPERATOR_HALT = "operator_halt"
    OPERATOR_RESUME = "operator_resume"


_A, _R, _H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
_E = StateEvent
# (state, event) -> next state. Missing pairs are illegal; a pair that maps to its own state is a no-op.
TABLE: dict[tuple[TradingState, StateEvent], TradingState] = {
    (_A, _E.TRIGGER_REDUCE): _R, (_A, _E.TRIGGER_HALT): _H, (_A, _E.TRIGGERS_CLEAR): _A,
    (_A, _E.OPERATOR_HALT): _H, (_A, _E.OPERATOR_RESUME): _A,
    (_R, _E.TRIGGER_REDUCE): _R, (_R, _E.TRIGGER_HALT): _H, (_R, _E.TRIGGERS_CLEAR): _A,
    (_R, _E.OPERATOR_HALT): _H, (_R, _E.OPERATOR_RESUME): _A,
    # HALTED: triggers (firing or clearing) never move it; only an operator resumes
    (_H, _E.TRIGGER_REDUCE): _H, (_H, _E.TRIGGER_HALT): _H, (_H, _E.TRIGGERS_CLEAR): _H,
    (_H, _E.OPERATOR_HALT): _H, (_H, _E.OPERATOR_RESUME): _A,
}


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of trading state: when (clock ns), from, to, why, and by whom."""

    ts: int
    old: TradingState
    new: TradingState
    reason: str
    by: str

    def as_dict(self) -> dict[str, object]:
        """For report.json, logs and the halt file."""
        return {"ts": self.ts, "old": str(self.old), "new": str(self.new), "reason": self.reason, "by": self.by}


class HaltStore:
    """The persisted halt: a JSON file written atomically (temp file, fsync, rename) and removed on resume."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def save(self, halt: Transition, flatten: bool = False) -> None:
        """Persist the halt (replaces any earlier one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps({**halt.as_dict(), "flatten": flatten}, sort_keys=True).encode()
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def load(self) -> dict[str, object] | None:
        """The persisted halt, or None. An unreadable file counts as a halt (fail safe)."""
        try:
            raw = self.path.read_bytes()
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            return doc
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # a directory, no permission, not JSON, not UTF-8...
            return {"reason": f"unreadable halt file {self.path} ({exc}): halted to be safe", "by": "startup",
                    "ts": 0}

    def clear(self) -> None:
        """Forget the halt (on resume); an OSError (the file cannot be removed) propagates."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class TradingStateMachine:
    """The current trading state, its history and the persisted halt."""

    def __init__(self, clock: Clock, store: HaltStore | None = None,
                 on_transition: Callable[[Transition], None] | None = None, max_kept: int = 10_000) -> None:
        self.clock = clock
        self.store = store
        self.state = TradingState.ACTIVE
        self.transitions: list[Transition] = []
        self.counts: dict[str, int] = {}
        self._on_transition = on_transition
        self._max_kept = max_kept
        self.flatten_requested = False
        self.resumes = 0  # operator resumes so far: the risk monitor acknowledges latched facts on each
        persisted = store.load() if store is not None else None
        if persisted is not None:
            self.flatten_requested = persisted.get("flatten") is True
            self._move(StateEvent.OPERATOR_HALT, f"halt persisted at {persisted.get('ts')} by "
                                                 f"{persisted.get('by')}: {persisted.get('reason')}", "startup")

    def set_listener(self, on_transition: Callable[[Transition], None]) -> None:
        """Who hears of every transition from now on (the engine: the gate follows, a halt cancels)."""
        self._on_transition = on_transition

    def _move(self, event: StateEvent, reason: str, by: str) -> Transition | None:
        new = TABLE.get((self.state, event))
        if new is None:
            raise IllegalTransition("TradingState", str(self.state), str(event))
        if new is self.state:
            return None
        t = Transition(self.clock.now(), self.state, new, reason, by)
        self.state = new
        if len(self.transitions) < self._max_kept:
            self.transitions.append(t)
        key = f"{t.old}->{t.new}"
        self.counts[key] = self.counts.get(key, 0) + 1
        log.warning("trading_state", old=str(t.old), new=str(t.new), reason=reason, by=by, ts=t.ts)
        return t

    def _notify(self, t: Transition | None) -> None:
        """Tell the listener, once the halt is persisted and the flatten wish is set (it acts on both)."""
        if t is not None and self._on_transition is not None:
            self._on_transition(t)

    def operator_halt(self, reason: str, operator: str, flatten: bool = False) -> Transition | None:
        """An operator's kill: HALTED from any state, persisted (a repeat only updates the flatten wish)."""
        self.flatten_requested = self.flatten_requested or flatten
        t = self._move(StateEvent.OPERATOR_HALT, reason or "manual kill", f"operator:{operator}")
        if self.store is not None:
            self.store.save(t or Transition(self.clock.now(), self.state, self.state, reason, f"operator:{operator}"),
                            self.flatten_requested)
        self._notify(t)
        return t

    def operator_resume(self, reason: str, operator: str) -> Transition | None:
        """An operator's resume: ACTIVE, and the persisted halt forgotten."""
        if self.store is not None:
            self.store.clear()  # first: a halt file that cannot be removed leaves the daemon HALTED
        t = self._move(StateEvent.OPERATOR_RESUME, reason or "manual resume", f"operator:{operator}")
        self.flatten_requested = False
        self.resumes += 1
        self._notify(t)
        return t

    def from_triggers(self, wanted: TradingState, reason: str, by: str, flatten: bool = False) -> Transition | None:
        """What the triggers want now: escalate to it, or back to ACTIVE from REDUCING once all cleared.

        The table keeps HALTED where it is whatever the triggers say.
        """
        event = {TradingState.HALTED: StateEvent.TRIGGER_HALT, TradingState.REDUCING: StateEvent.TRIGGER_REDUCE,
                 TradingState.ACTIVE: StateEvent.TRIGGERS_CLEAR}[wanted]
        if wanted is TradingState.REDUCING and self.state is TradingState.REDUCING:
            return None
        t = self._move(event, reason, by)
        if t is not None and t.new is TradingState.HALTED:
            self.flatten_requested = flatten
            if self.store is not None:
                self.store.save(t, flatten)
        self._notify(t)
        return t

    def as_dicts(self) -> list[dict[str, object]]:
        """Every transition kept, oldest first."""
        return [t.as_dict() for t in self.transitions]

