"""The order lifecycle as a transition table, shared by the paper broker and (later) live brokers.

Rules:

- An order starts in PENDING_NEW when it is handed to a broker and ends in exactly one of the
  terminal states FILLED, CANCELED or REJECTED; a terminal state accepts no event.
- A cancel may be requested while the order is in flight (PENDING_NEW) or working (NEW,
  PARTIALLY_FILLED); the order then sits in PENDING_CANCEL until the cancel lands. Fills that
  happen before the cancel lands still stand, and an order still in flight may be accepted while
  PENDING_CANCEL (the broker learns of the acceptance after it asked to cancel).
- The venue may cancel a working order by itself (e.g. a market order's unfilled rest), so NEW and
  PARTIALLY_FILLED go to CANCELED without a request.

Any other move raises `IllegalTransition` naming the machine, the state and the event.
"""

from __future__ import annotations

import enum

from daemon.errors import IllegalTransition


class OrderState(enum.StrEnum):
    """Where an order is in its life."""

    PENDING_NEW = "PENDING_NEW"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"


class OrderEvent(enum.StrEnum):
    """What can happen to an order."""

    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    PARTIAL_FILL = "PARTIAL_FILL"
    FULL_FILL = "FULL_FILL"
    CANCEL_REQUEST = "CANCEL_REQUEST"
    CANCEL = "CANCEL"


_S = OrderState
_E = OrderEvent

TRANSITIONS: dict[OrderState, dict[OrderEvent, OrderState]] = {
    _S.PENDING_NEW: {
        _E.ACCEPT: _S.NEW,
        _E.REJECT: _S.REJECTED,
        _E.CANCEL_REQUEST: _S.PENDING_CANCEL,
    },
    _S.NEW: {
        _E.PARTIAL_FILL: _S.PARTIALLY_FILLED,
        _E.FULL_FILL: _S.FILLED,
        _E.CANCEL_REQUEST: _S.PENDING_CANCEL,
        _E.CANCEL: _S.CANCELED,
    },
    _S.PARTIALLY_FILLED: {
        _E.PARTIAL_FILL: _S.PARTIALLY_FILLED,
        _E.FULL_FILL: _S.FILLED,
        _E.CANCEL_REQUEST: _S.PENDING_CANCEL,
        _E.CANCEL: _S.CANCELED,
    },
    _S.PENDING_CANCEL: {
        _E.ACCEPT: _S.PENDING_CANCEL,
        _E.REJECT: _S.REJECTED,
        _E.PARTIAL_FILL: _S.PENDING_CANCEL,
        _E.FULL_FILL: _S.FILLED,
        _E.CANCEL: _S.CANCELED,
    },
    _S.FILLED: {},
    _S.CANCELED: {},
    _S.REJECTED: {},
}

TERMINAL: frozenset[OrderState] = frozenset(s for s, moves in TRANSITIONS.items() if not moves)


def next_state(state: OrderState, event: OrderEvent, machine: str = "order") -> OrderState:
    """The state an order moves to on an event; raises IllegalTransition if the table forbids it."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(machine, str(state), str(event)) from None
