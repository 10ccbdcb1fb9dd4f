"""The order lifecycle as a transition table, shared by the paper broker and the live brokers.

Rules:

- An order starts in PENDING_NEW when it is handed to a broker and ends in exactly one of the
  terminal states FILLED, CANCELED, REJECTED or EXPIRED; a terminal state accepts no event.
- A cancel may be requested while the order is in flight (PENDING_NEW) or working (NEW,
  PARTIALLY_FILLED); the order then sits in PENDING_CANCEL until the cancel lands. Fills that
  happen before the cancel lands still stand, and an order still in flight may be accepted while
  PENDING_CANCEL (the broker learns of the acceptance after it asked to cancel).
- The venue may cancel a working order by itself (e.g. a market order's unfilled rest), so NEW and
  PARTIALLY_FILLED go to CANCELED without a request.
- The venue may expire an order (time in force reached, the unfilled rest of an IOC/FOK order):
  EXPIRE ends any working order in EXPIRED.
- A venue may refuse a cancel (CANCEL_REJECT: too late, rate-limited). The order goes back to NEW;
  one that has fills then takes PARTIAL_FILL back to PARTIALLY_FILLED (the tracker does both).

Live brokers only (the paper broker never sends these):

- SEND_TIMEOUT: the create request timed out or the connection dropped mid-request, so nobody
  knows whether the venue has the order. PENDING_NEW (and an unacknowledged PENDING_CANCEL) go to
  UNKNOWN. A create is never re-sent blindly: the gateway looks the order up by client id.
- From UNKNOWN the lookup or any venue report settles it. Anything showing the order exists (an
  ack, a fill, a cancel, an expiry, a status) implies ACCEPT first, which leads to NEW and from
  there on as usual; REJECT leads to REJECTED; NOT_FOUND, sent only once the venue confirms it has
  no such order, leads to REJECTED ("not_found"). A cancel requested while UNKNOWN keeps the order
  UNKNOWN (the gateway cancels by client id; the tracker remembers the request and moves the order
  to PENDING_CANCEL once it is found).

Modify (IB `placeOrder` on the order's own id): a working order (NEW, PARTIALLY_FILLED) takes
REPLACE_REQUEST to PENDING_REPLACE. The venue's word ends it: REPLACE (the order now carries the new
quantity/price) or REPLACE_REJECT (it keeps the old), both back to NEW, after which the tracker moves
on by the fills (PARTIAL_FILL, FULL_FILL). Meanwhile fills, a cancel request, a cancel and an expiry
apply as from NEW. A restored PENDING_REPLACE order comes back working: the venue's open order says
which quantity and price it has.

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
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"
    PENDING_REPLACE = "PENDING_REPLACE"


class OrderEvent(enum.StrEnum):
    """What can happen to an order."""

    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    PARTIAL_FILL = "PARTIAL_FILL"
    FULL_FILL = "FULL_FILL"
    CANCEL_REQUEST = "CANCEL_REQUEST"
    CANCEL = "CANCEL"
    CANCEL_REJECT = "CANCEL_REJECT"
    EXPIRE = "EXPIRE"
    SEND_TIMEOUT = "SEND_TIMEOUT"
    NOT_FOUND = "NOT_FOUND"
    REPLACE_REQUEST = "REPLACE_REQUEST"
    REPLACE = "REPLACE"
    REPLACE_REJECT = "REPLACE_REJECT"


_S = OrderState
_E = OrderEvent

TRANSITIONS: dict[OrderState, dict[OrderEvent, OrderState]] = {
    _S.PENDING_NEW: {
        _E.ACCEPT: _S.NEW,
        _E.REJECT: _S.REJECTED,
        _E.CANCEL_REQUEST: _S.PENDING_CANCEL,
        _E.SEND_TIMEOUT: _S.UNKNOWN,
    },
    _S.NEW: {
        _E.PARTIAL_FILL: _S.PARTIALLY_FILLED,
        _E.FULL_FILL: _S.FILLED,
        _E.CANCEL_REQUEST: _S.PENDING_CANCEL,
        _E.CANCEL: _S.CANCELED,
        _E.EXPIRE: _S.EXPIRED,
        _E.REPLACE_REQUEST: _S.PENDING_REPLACE,
    },
    _S.PARTIALLY_FILLED: {
        _E.PARTIAL_FILL: _S.PARTIALLY_FILLED,
        _E.FULL_FILL: _S.FILLED,
        _E.CANCEL_REQUEST: _S.PENDING_CANCEL,
        _E.CANCEL: _S.CANCELED,
        _E.EXPIRE: _S.EXPIRED,
        _E.REPLACE_REQUEST: _S.PENDING_REPLACE,
    },
    _S.PENDING_CANCEL: {
        _E.ACCEPT: _S.PENDING_CANCEL,
        _E.REJECT: _S.REJECTED,
        _E.PARTIAL_FILL: _S.PENDING_CANCEL,
        _E.FULL_FILL: _S.FILLED,
        _E.CANCEL: _S.CANCELED,
        _E.CANCEL_REJECT: _S.NEW,
        _E.EXPIRE: _S.EXPIRED,
        _E.SEND_TIMEOUT: _S.UNKNOWN,
    },
    _S.PENDING_REPLACE: {
        _E.REPLACE: _S.NEW,
        _E.REPLACE_REJECT: _S.NEW,
        _E.PARTIAL_FILL: _S.PENDING_REPLACE,
        _E.FULL_FILL: _S.FILLED,
        _E.CANCEL_REQUEST: _S.PENDING_CANCEL,
        _E.CANCEL: _S.CANCELED,
        _E.EXPIRE: _S.EXPIRED,
    },
    _S.UNKNOWN: {
        _E.ACCEPT: _S.NEW,
        _E.REJECT: _S.REJECTED,
        _E.NOT_FOUND: _S.REJECTED,
        _E.CANCEL_REQUEST: _S.UNKNOWN,
    },
    _S.FILLED: {},
    _S.CANCELED: {},
    _S.REJECTED: {},
    _S.EXPIRED: {},
}

TERMINAL: frozenset[OrderState] = frozenset(s for s, moves in TRANSITIONS.items() if not moves)


def next_state(state: OrderState, event: OrderEvent, machine: str = "order") -> OrderState:
    """The state an order moves to on an event; raises IllegalTransition if the table forbids it."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(machine, str(state), str(event)) from None
