"""The order lifecycle table: every legal move, every illegal one raises, and the paths live brokers take."""

from __future__ import annotations

import pytest

from daemon.brokers.lifecycle import TERMINAL, TRANSITIONS, OrderEvent, OrderState, next_state
from daemon.errors import IllegalTransition

S = OrderState
E = OrderEvent

LEGAL = [(s, e, t) for s, row in TRANSITIONS.items() for e, t in row.items()]
ILLEGAL = [(s, e) for s in OrderState for e in OrderEvent if e not in TRANSITIONS[s]]

EXPECTED = {
    S.PENDING_NEW: {E.ACCEPT: S.NEW, E.REJECT: S.REJECTED, E.CANCEL_REQUEST: S.PENDING_CANCEL,
                    E.SEND_TIMEOUT: S.UNKNOWN},
    S.NEW: {E.PARTIAL_FILL: S.PARTIALLY_FILLED, E.FULL_FILL: S.FILLED, E.CANCEL_REQUEST: S.PENDING_CANCEL,
            E.CANCEL: S.CANCELED, E.EXPIRE: S.EXPIRED, E.REPLACE_REQUEST: S.PENDING_REPLACE},
    S.PARTIALLY_FILLED: {E.PARTIAL_FILL: S.PARTIALLY_FILLED, E.FULL_FILL: S.FILLED,
                         E.CANCEL_REQUEST: S.PENDING_CANCEL, E.CANCEL: S.CANCELED, E.EXPIRE: S.EXPIRED,
                         E.REPLACE_REQUEST: S.PENDING_REPLACE},
    S.PENDING_REPLACE: {E.REPLACE: S.NEW, E.REPLACE_REJECT: S.NEW, E.PARTIAL_FILL: S.PENDING_REPLACE,
                        E.FULL_FILL: S.FILLED, E.CANCEL_REQUEST: S.PENDING_CANCEL, E.CANCEL: S.CANCELED,
                        E.EXPIRE: S.EXPIRED},
    S.PENDING_CANCEL: {E.ACCEPT: S.PENDING_CANCEL, E.REJECT: S.REJECTED, E.PARTIAL_FILL: S.PENDING_CANCEL,
                       E.FULL_FILL: S.FILLED, E.CANCEL: S.CANCELED, E.CANCEL_REJECT: S.NEW, E.EXPIRE: S.EXPIRED,
                       E.SEND_TIMEOUT: S.UNKNOWN},
    S.UNKNOWN: {E.ACCEPT: S.NEW, E.REJECT: S.REJECTED, E.NOT_FOUND: S.REJECTED, E.CANCEL_REQUEST: S.UNKNOWN},
    S.FILLED: {}, S.CANCELED: {}, S.REJECTED: {}, S.EXPIRED: {},
}


def test_table_is_exactly_the_documented_lifecycle() -> None:
    assert TRANSITIONS == EXPECTED


def test_terminal_states_are_the_four_dead_ends() -> None:
    assert set(TERMINAL) == {S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}


@pytest.mark.parametrize(("state", "event", "target"), LEGAL, ids=[f"{s}-{e}" for s, e, _ in LEGAL])
def test_every_legal_move_reaches_its_target(state: OrderState, event: OrderEvent, target: OrderState) -> None:
    assert next_state(state, event) is target


@pytest.mark.parametrize(("state", "event"), ILLEGAL, ids=[f"{s}-{e}" for s, e in ILLEGAL])
def test_every_illegal_move_raises_naming_state_and_event(state: OrderState, event: OrderEvent) -> None:
    with pytest.raises(IllegalTransition) as info:
        next_state(state, event, "order x")

    assert (info.value.machine, info.value.state, info.value.event) == ("order x", str(state), str(event))


def test_every_state_is_reachable_from_pending_new() -> None:
    seen, todo = {S.PENDING_NEW}, [S.PENDING_NEW]
    while todo:
        for target in TRANSITIONS[todo.pop()].values():
            if target not in seen:
                seen.add(target)
                todo.append(target)

    assert seen == set(OrderState)


def test_every_non_terminal_state_can_end() -> None:
    for state in set(OrderState) - TERMINAL:
        seen, todo = {state}, [state]
        while todo:
            for target in TRANSITIONS[todo.pop()].values():
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        assert seen & TERMINAL, state


def _walk(*events: OrderEvent) -> OrderState:
    state = S.PENDING_NEW
    for event in events:
        state = next_state(state, event)
    return state


def test_timed_out_send_found_at_the_venue_goes_on_as_accepted() -> None:
    assert _walk(E.SEND_TIMEOUT, E.ACCEPT, E.PARTIAL_FILL, E.FULL_FILL) is S.FILLED


def test_timed_out_send_the_venue_never_had_is_rejected() -> None:
    assert _walk(E.SEND_TIMEOUT, E.NOT_FOUND) is S.REJECTED


def test_cancel_requested_while_unknown_waits_for_the_lookup() -> None:
    assert _walk(E.SEND_TIMEOUT, E.CANCEL_REQUEST) is S.UNKNOWN
    assert _walk(E.SEND_TIMEOUT, E.CANCEL_REQUEST, E.ACCEPT, E.CANCEL_REQUEST, E.CANCEL) is S.CANCELED


def test_in_flight_order_with_a_cancel_can_still_time_out() -> None:
    assert _walk(E.CANCEL_REQUEST, E.SEND_TIMEOUT) is S.UNKNOWN


def test_refused_cancel_returns_to_working() -> None:
    assert _walk(E.ACCEPT, E.PARTIAL_FILL, E.CANCEL_REQUEST, E.CANCEL_REJECT, E.PARTIAL_FILL) is S.PARTIALLY_FILLED


def test_ioc_rest_expires() -> None:
    assert _walk(E.ACCEPT, E.PARTIAL_FILL, E.EXPIRE) is S.EXPIRED
    assert _walk(E.ACCEPT, E.CANCEL_REQUEST, E.EXPIRE) is S.EXPIRED


def test_modify_waits_for_the_venue_then_works_on() -> None:
    assert _walk(E.ACCEPT, E.REPLACE_REQUEST, E.PARTIAL_FILL, E.REPLACE, E.PARTIAL_FILL) is S.PARTIALLY_FILLED
    assert _walk(E.ACCEPT, E.REPLACE_REQUEST, E.REPLACE_REJECT, E.FULL_FILL) is S.FILLED
    assert _walk(E.ACCEPT, E.REPLACE_REQUEST, E.CANCEL_REQUEST, E.CANCEL) is S.CANCELED
