"""What `depthd run` / `depthd record` print when they stop: feed, books, recorder, trading."""

from __future__ import annotations

import numpy as np

from daemon.live import LiveSession


def summary_lines(session: LiveSession) -> list[str]:
    """A few lines for the operator: messages, feed health, book states, recordings, orders."""
    h = session.adapter.health
    eng = session.path.engine
    lines = [f"feed {h.venue}: {session.stats.messages} messages, {h.connects} connect(s), "
             f"{h.disconnects} disconnect(s), {h.stale_reconnects} silent-feed reconnect(s), "
             f"{session.stats.decode_errors} bad message(s)"]
    books = session.books_at_stop or session.book_summary()
    for sym in sorted(eng.syncs):
        sync = eng.syncs[sym]
        sh = h.symbols.get(sym)
        extra = ""
        if sh is not None:
            extra = (f", gaps {sh.gaps}, resyncs {sh.resyncs}, stale snapshots {sh.stale_snapshots}"
                     + (f", UNTRADEABLE ({sh.untradeable_reason})" if sh.untradeable else ""))
        b = books[sym]
        lines.append(f"  {sym}: {b['state']} at stop, {b['bids']}/{b['asks']} levels ({b['trusted_bids']}/"
                     f"{b['trusted_asks']} trusted), checksum failures {sync.checksum_failures}/"
                     f"{sync.checksum_checks}, quote mismatches {sync.quote_mismatches}/{sync.quote_checks}{extra}")
    lat = session.route_latency_ns()
    if len(lat):
        p50, p99 = np.percentile(lat, [50, 99]) / 1e3
        lines.append(f"receive-to-book latency: p50 {p50:.0f} us, p99 {p99:.0f} us")
    rec = session.recorder
    if rec is not None:
        lines.append(f"recorded {rec.lines} lines, {rec.bytes_written} bytes in {len(rec.files)} file(s), "
                     f"{rec.errors} write error(s), {rec.dropped_lines} line(s) lost")
        lines.extend(f"  {f}" for f in rec.files)
    if not session.record_only:
        lines.append(f"orders {eng.counts['orders']}, fills {eng.counts['fills']}, "
                     f"trading state {session.path.state.state}")
    return lines
