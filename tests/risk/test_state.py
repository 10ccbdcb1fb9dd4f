"""Trading state: the transition table (every pair), operator vs trigger rules, HALTED sticky against
triggers, transitions recorded with ts/reason/by, and the persisted halt surviving a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.clock import ReplayClock
from daemon.risk.state import TABLE, HaltStore, StateEvent, TradingState, TradingStateMachine, Transition

A, R, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
E = StateEvent
T0 = 1_700_000_000_000_000_000

EXPECTED = {
    (A, E.TRIGGER_REDUCE): R, (A, E.TRIGGER_HALT): H, (A, E.TRIGGERS_CLEAR): A,
    (A, E.OPERATOR_HALT): H, (A, E.OPERATOR_RESUME): A,
    (R, E.TRIGGER_REDUCE): R, (R, E.TRIGGER_HALT): H, (R, E.TRIGGERS_CLEAR): A,
    (R, E.OPERATOR_HALT): H, (R, E.OPERATOR_RESUME): A,
    (H, E.TRIGGER_REDUCE): H, (H, E.TRIGGER_HALT): H, (H, E.TRIGGERS_CLEAR): H,
    (H, E.OPERATOR_HALT): H, (H, E.OPERATOR_RESUME): A,
}


def machine(store: HaltStore | None = None, start: TradingState = A) -> tuple[TradingStateMachine, list[Transition]]:
    seen: list[Transition] = []
    m = TradingStateMachine(ReplayClock(T0), store, on_transition=seen.append)
    if start is R:
        m.from_triggers(R, "setup", "trigger:setup")
    elif start is H:
        m.operator_halt("setup", "test")
    seen.clear()
    return m, seen


def fire(m: TradingStateMachine, event: StateEvent) -> Transition | None:
    """Drive the machine with one event through its public calls."""
    if event is E.OPERATOR_HALT:
        return m.operator_halt("op", "alice")
    if event is E.OPERATOR_RESUME:
        return m.operator_resume("op", "alice")
    wanted = {E.TRIGGER_REDUCE: R, E.TRIGGER_HALT: H, E.TRIGGERS_CLEAR: A}[event]
    return m.from_triggers(wanted, "because", "trigger:test")


def test_the_table_covers_every_state_and_event_and_nothing_else() -> None:
    assert TABLE == EXPECTED
    assert set(TABLE) == {(s, e) for s in TradingState for e in StateEvent}


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED, key=str))
def test_each_pair_of_the_table_through_the_machine(state: TradingState, event: StateEvent) -> None:
    m, seen = machine(start=state)

    t = fire(m, event)

    want = EXPECTED[state, event]
    assert m.state is want
    if want is state:
        assert t is None and seen == [], "a pair that maps to its own state is a no-op"
    else:
        assert t is not None and seen == [t] and (t.old, t.new) == (state, want)


def test_an_event_missing_from_the_table_is_an_illegal_transition(monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.errors import IllegalTransition

    m, _ = machine(start=H)
    monkeypatch.delitem(TABLE, (H, E.TRIGGER_REDUCE))

    with pytest.raises(IllegalTransition, match="HALTED"):
        m.from_triggers(R, "x", "trigger:x")


def test_a_transition_records_time_reason_and_who() -> None:
    clock = ReplayClock(T0)
    m = TradingStateMachine(clock)
    clock.advance_to(T0 + 5)

    t1 = m.from_triggers(R, "feed X silent for 6000 ms > 5000 ms", "trigger:feed_stale_ms")
    clock.advance_to(T0 + 9)
    t2 = m.operator_halt("fat finger", "alice")

    assert t1 == Transition(T0 + 5, A, R, "feed X silent for 6000 ms > 5000 ms", "trigger:feed_stale_ms")
    assert t2 == Transition(T0 + 9, R, H, "fat finger", "operator:alice")
    assert m.as_dicts() == [t1.as_dict(), t2.as_dict()]
    assert m.as_dicts()[1] == {"ts": T0 + 9, "old": "REDUCING", "new": "HALTED", "reason": "fat finger",
                               "by": "operator:alice"}
    assert m.counts == {"ACTIVE->REDUCING": 1, "REDUCING->HALTED": 1}


def test_an_empty_reason_gets_a_default() -> None:
    m, _ = machine()

    assert m.operator_halt("", "bob").reason == "manual kill"
    assert m.operator_resume("", "bob").reason == "manual resume"


def test_triggers_escalate_and_return_from_reducing_once_clear() -> None:
    m, seen = machine()

    m.from_triggers(R, "a", "trigger:a")
    m.from_triggers(R, "b", "trigger:b")  # already REDUCING: nothing new
    m.from_triggers(A, "every trigger has cleared", "trigger:clear")

    assert [(t.old, t.new, t.by) for t in seen] == [(A, R, "trigger:a"), (R, A, "trigger:clear")]


@pytest.mark.parametrize("wanted", [A, R])
def test_halted_is_sticky_against_triggers(wanted: TradingState) -> None:
    m, seen = machine()
    m.from_triggers(H, "daily loss 600 > 500", "trigger:daily_loss")

    for _ in range(3):
        assert m.from_triggers(wanted, "cleared", "trigger:clear") is None

    assert m.state is H and len(seen) == 1


def test_only_an_operator_leaves_halted() -> None:
    m, _ = machine()
    m.from_triggers(H, "broker disconnected", "trigger:broker_disconnected")
    m.from_triggers(A, "every trigger has cleared", "trigger:clear")

    t = m.operator_resume("checked the gateway", "alice")

    assert m.state is A and t is not None and t.by == "operator:alice" and (t.old, t.new) == (H, A)


def test_the_flatten_wish_is_set_before_the_listener_hears_of_the_halt() -> None:
    heard: list[bool] = []
    m = TradingStateMachine(ReplayClock(T0))
    m.set_listener(lambda t: heard.append(m.flatten_requested))

    m.from_triggers(H, "drawdown", "trigger:drawdown", flatten=True)
    m.operator_resume("ok", "alice")
    m.operator_halt("again", "alice", flatten=True)

    assert heard == [True, False, True], "the engine reads the wish when it hears of the halt"


def test_a_repeated_operator_halt_only_adds_the_flatten_wish() -> None:
    m, seen = machine()
    m.operator_halt("first", "alice")

    assert m.operator_halt("second", "bob", flatten=True) is None
    assert m.flatten_requested and len(seen) == 1
    assert m.operator_halt("third", "bob", flatten=False) is None
    assert m.flatten_requested, "a later halt without flatten does not take the wish back"


def test_a_resume_counts_and_forgets_the_flatten_wish() -> None:
    m, _ = machine()
    m.operator_halt("x", "alice", flatten=True)

    m.operator_resume("ok", "alice")
    m.operator_resume("again", "alice")  # already ACTIVE: a no-op transition, still an acknowledgement

    assert m.resumes == 2 and not m.flatten_requested


def test_kept_transitions_are_bounded_but_counts_are_not() -> None:
    m = TradingStateMachine(ReplayClock(T0), max_kept=3)
    for _ in range(5):
        m.from_triggers(R, "x", "trigger:x")
        m.from_triggers(A, "clear", "trigger:clear")

    assert len(m.transitions) == 3
    assert m.counts == {"ACTIVE->REDUCING": 5, "REDUCING->ACTIVE": 5}


# --- persistence ---------------------------------------------------------------------------------------


def test_a_halt_survives_a_restart_on_the_same_store(tmp_path: Path) -> None:
    path = tmp_path / "state" / "halt.json"
    m, _ = machine(HaltStore(path))
    m.from_triggers(H, "daily loss 600 > 500", "trigger:daily_loss", flatten=True)

    again = TradingStateMachine(ReplayClock(T0 + 10), HaltStore(path))

    assert again.state is H
    [t] = again.transitions
    assert (t.old, t.new, t.by, t.ts) == (A, H, "startup", T0 + 10)
    assert "trigger:daily_loss" in t.reason and "daily loss 600 > 500" in t.reason and str(T0) in t.reason
    assert again.flatten_requested, "the flatten wish is persisted with the halt"


def test_an_operator_halt_is_persisted_with_who_and_why(tmp_path: Path) -> None:
    store = HaltStore(tmp_path / "halt.json")
    m, _ = machine(store)

    m.operator_halt("maintenance", "alice")

    doc = json.loads((tmp_path / "halt.json").read_text())
    assert doc == {"ts": T0, "old": "ACTIVE", "new": "HALTED", "reason": "maintenance", "by": "operator:alice",
                   "flatten": False}
    assert store.load() == doc


def test_a_repeated_halt_rewrites_the_file_with_the_flatten_wish(tmp_path: Path) -> None:
    store = HaltStore(tmp_path / "halt.json")
    m, _ = machine(store)
    m.from_triggers(H, "broker disconnected", "trigger:broker_disconnected")

    m.operator_halt("flatten please", "alice", flatten=True)

    doc = store.load()
    assert doc is not None and doc["flatten"] is True and doc["by"] == "operator:alice"


def test_resume_clears_the_file_and_a_restart_comes_up_active(tmp_path: Path) -> None:
    path = tmp_path / "halt.json"
    m, _ = machine(HaltStore(path))
    m.operator_halt("x", "alice")

    m.operator_resume("done", "alice")

    assert not path.exists()
    assert TradingStateMachine(ReplayClock(T0), HaltStore(path)).state is A


def test_resuming_without_a_file_is_fine(tmp_path: Path) -> None:
    store = HaltStore(tmp_path / "halt.json")
    m, _ = machine(store)

    m.operator_resume("nothing to resume", "alice")
    store.clear()

    assert m.state is A and store.load() is None


def test_reducing_is_not_persisted(tmp_path: Path) -> None:
    path = tmp_path / "halt.json"
    m, _ = machine(HaltStore(path))

    m.from_triggers(R, "feed stale", "trigger:feed_stale_ms")

    assert not path.exists()


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b"\xff\xfe\x00", b"null"])
def test_a_corrupt_halt_file_counts_as_a_halt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "halt.json"
    path.write_bytes(content)

    m = TradingStateMachine(ReplayClock(T0), HaltStore(path))

    assert m.state is H
    assert "unreadable halt file" in m.transitions[0].reason
    assert not m.flatten_requested


def test_a_halt_file_that_cannot_be_read_counts_as_a_halt_and_cannot_be_resumed_away(tmp_path: Path) -> None:
    path = tmp_path / "halt.json"
    path.mkdir()  # a directory where the file should be

    m = TradingStateMachine(ReplayClock(T0), HaltStore(path))

    assert m.state is H and "unreadable halt file" in m.transitions[0].reason
    with pytest.raises(OSError):
        m.operator_resume("try", "alice")
    assert m.state is H, "the resume fails before the state moves: the file would halt the next start"


def test_the_write_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "halt.json"
    store = HaltStore(path)
    path.write_text("old contents")

    store.save(Transition(T0, A, H, "r", "operator:x"), flatten=True)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["halt.json"]
    assert json.loads(path.read_text())["flatten"] is True


def test_a_leftover_temp_file_from_a_crash_is_ignored_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "halt.json"
    (tmp_path / "halt.json.tmp").write_text("half a wri")
    store = HaltStore(path)

    assert store.load() is None
    store.save(Transition(T0, A, H, "r", "operator:x"))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["halt.json"]


def test_the_halt_is_on_disk_before_the_listener_runs(tmp_path: Path) -> None:
    path = tmp_path / "halt.json"
    on_disk: list[bool] = []
    m = TradingStateMachine(ReplayClock(T0), HaltStore(path), on_transition=lambda t: on_disk.append(path.exists()))

    m.operator_halt("x", "alice")
    m.operator_resume("y", "alice")
    m.from_triggers(H, "z", "trigger:z")

    assert on_disk == [True, False, True]
