"""Child process of the journal crash test: writes orders, events and fills until it is killed.

Usage: python -m tests.journal.crash_child JOURNAL. Opens (or creates) the journal, prints
`R <next client seq>`, then for n = next, next + 1, ...: journals order `dd-<n>` (prints `O dd-<n>`
after the call returned), its ACCEPT event (lazy), its fill `t<n>` with the FILLED state (prints
`F t<n>`), every 5th order the same fill again (must be a no-op; prints `D t<n>`), and every 10th
a position snapshot. Each line is flushed as soon as the call it acknowledges has returned, so
the parent knows exactly which writes were complete when it killed the child.
"""

from __future__ import annotations

import sys

from daemon.events import Fill, Liquidity, Order, OrderType, Side
from daemon.journal import Journal

VENUE = "crashvenue"


def order_for(n: int) -> Order:
    """The order number n: deterministic, so the parent can check every field."""
    side = Side.BUY if n % 2 else Side.SELL
    return Order(f"dd-{n}", "BTCUSDT" if n % 3 else "ETHUSDT", 1_000 * n, side, n % 7 + 1, OrderType.LIMIT,
                 10_000 + n, f"tag{n}")


def fill_for(n: int) -> Fill:
    """The fill of order n, filling it completely."""
    o = order_for(n)
    return Fill(o.client_id, o.symbol, 1_000 * n + 500, o.side, o.limit_px or 0, o.qty, 0.01 * n, Liquidity.MAKER,
                f"t{n}")


def main(path: str) -> None:
    """Write until killed (bounded, so a child the parent lost ends by itself)."""
    journal = Journal.open(path)
    start = journal.recovery.next_client_seq
    out = sys.stdout
    out.write(f"R {start}\n")
    out.flush()
    for n in range(start, start + 200_000):
        order = order_for(n)
        journal.record_order(order, venue=VENUE)
        out.write(f"O {order.client_id}\n")
        out.flush()
        journal.record_order_event(order.ts + 100, order.client_id, "ACCEPT", "NEW", venue_order_id=f"v{n}")
        fill = fill_for(n)
        res = journal.record_fill(fill, VENUE, state="FILLED", event="FULL_FILL")
        if not res.inserted:
            raise SystemExit(f"fill t{n} reported as a duplicate on its first write")
        out.write(f"F {fill.trade_id}\n")
        out.flush()
        if n % 5 == 0:
            if journal.record_fill(fill, VENUE, state="FILLED", event="FULL_FILL").inserted:
                raise SystemExit(f"fill t{n} inserted twice")
            out.write(f"D {fill.trade_id}\n")
            out.flush()
        if n % 10 == 0:
            journal.record_position(fill.ts, fill.symbol, n, 1.5, 0.0, 0.01 * n)


if __name__ == "__main__":
    main(sys.argv[1])
