"""Prometheus metrics of the market-data feeds: connection, sync, book trust, feed lag, recorder.

Read at scrape time from the feeds' FeedHealth, the books' BookSync counters, the risk monitor's
per-symbol receive/venue skew and the recorder's counters (one source of truth, nothing on the hot
path). Labels are bounded: venue, symbol, kind, side.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.app import TradingPath
from daemon.venues.health import FeedHealth

if TYPE_CHECKING:
    from daemon.sources.recorder import Recorder


class FeedCollector(Collector):
    """Feed health, sync counters, trusted depth, feed lag and recorder counters."""

    def __init__(self, path: TradingPath, feeds: list[FeedHealth], recorder: Recorder | None = None) -> None:
        self.path = path
        self.feeds = feeds
        self.recorder = recorder

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus-client at each scrape."""
        now = self.path.engine.clock.now()
        g = GaugeMetricFamily
        c = CounterMetricFamily
        connected = g("depthd_feed_connected", "1 while the venue connection is up", labels=["venue"])
        silent = g("depthd_feed_silent_seconds", "Time since the feed's last frame", labels=["venue"])
        messages = c("depthd_feed_messages", "Frames received", labels=["venue"])
        received = c("depthd_feed_received_bytes", "Bytes received", labels=["venue"])
        disconnects = c("depthd_feed_disconnects", "Connections lost (each is followed by a reconnect)",
                        labels=["venue"])
        stale = c("depthd_feed_stale_reconnects", "Reconnects because a connected feed went silent", labels=["venue"])
        rest = c("depthd_feed_rest_errors", "REST failures by kind", labels=["venue", "kind"])
        banned = g("depthd_feed_banned", "1 once the venue answered 418 (IP ban)", labels=["venue"])
        gaps = c("depthd_feed_gaps", "Sequence gaps seen by the venue's sync rules", labels=["venue", "symbol"])
        resyncs = c("depthd_feed_resyncs", "Books rebuilt from a new snapshot", labels=["venue", "symbol"])
        stale_snap = c("depthd_feed_stale_snapshots", "Snapshots refused as older than the stream",
                       labels=["venue", "symbol"])
        decode = c("depthd_feed_decode_errors", "Messages that could not be decoded", labels=["venue", "symbol"])
        untradeable = g("depthd_feed_untradeable", "1 while the sync rules have given up on the symbol",
                        labels=["venue", "symbol"])
        for h in self.feeds:
            v = h.venue
            if h.live:
                connected.add_metric([v], 1 if h.connected else 0)
                silent.add_metric([v], h.silent_ns(now) / 1e9)
                messages.add_metric([v], h.messages)
                received.add_metric([v], h.bytes)
                disconnects.add_metric([v], h.disconnects)
                stale.add_metric([v], h.stale_reconnects)
                banned.add_metric([v], 1 if h.banned else 0)
                for kind, n in sorted(h.rest_errors.items()):
                    rest.add_metric([v, kind], n)
            for sym, sh in sorted(h.symbols.items()):
                gaps.add_metric([v, sym], sh.gaps)
                resyncs.add_metric([v, sym], sh.resyncs)
                stale_snap.add_metric([v, sym], sh.stale_snapshots)
                decode.add_metric([v, sym], sh.decode_errors)
                untradeable.add_metric([v, sym], 1 if sh.untradeable else 0)
        yield from (connected, silent, messages, received, disconnects, stale, rest, banned, gaps, resyncs,
                    stale_snap, decode, untradeable)
        yield from self._book_metrics()
        yield from self._recorder_metrics()

    def _book_metrics(self) -> Iterator[Metric]:
        eng = self.path.engine
        checks = CounterMetricFamily("depthd_book_checksum_checks", "Venue checksums verified", labels=["symbol"])
        fails = CounterMetricFamily("depthd_book_checksum_failures", "Venue checksums that did not match the book",
                                    labels=["symbol"])
        quotes = CounterMetricFamily("depthd_book_quote_mismatches", "Venue best bid/ask that disagreed with the "
                                     "book at the same update id", labels=["symbol"])
        resets = CounterMetricFamily("depthd_book_resets", "Books thrown away by the venue's sync rules",
                                     labels=["symbol", "reason"])
        trusted = GaugeMetricFamily("depthd_book_trusted_levels", "Levels within the last snapshot's depth "
                                    "(complete)", labels=["symbol", "side"])
        lag = GaugeMetricFamily("depthd_feed_lag_seconds", "Receive time minus venue time of the symbol's last "
                                "event (includes clock offset)", labels=["symbol"])
        for sym in sorted(eng.syncs):
            sync = eng.syncs[sym]
            checks.add_metric([sym], sync.checksum_checks)
            fails.add_metric([sym], sync.checksum_failures)
            quotes.add_metric([sym], sync.quote_mismatches)
            for reason, n in sorted(sync.resets.items()):
                resets.add_metric([sym, reason], n)
            nb, na = sync.book.trusted_levels()
            trusted.add_metric([sym, "bid"], nb)
            trusted.add_metric([sym, "ask"], na)
        monitor = self.path.monitor
        for sym, skew in sorted(monitor.skew_ns.items()):
            lag.add_metric([sym], skew / 1e9)
        yield from (checks, fails, quotes, resets, trusted, lag)

    def _recorder_metrics(self) -> Iterator[Metric]:
        rec = self.recorder
        if rec is None:
            return
        yield CounterMetricFamily("depthd_recorder_written_bytes", "Bytes written to recordings",
                                  value=rec.bytes_written)
        yield CounterMetricFamily("depthd_recorder_lines", "Lines recorded", value=rec.lines)
        yield CounterMetricFamily("depthd_recorder_errors", "Recording write errors (disk full, I/O)",
                                  value=rec.errors)
        yield CounterMetricFamily("depthd_recorder_dropped_lines", "Lines lost to write errors",
                                  value=rec.dropped_lines)
        yield GaugeMetricFamily("depthd_recorder_failing", "1 while the recorder cannot write",
                                value=1 if rec.failing else 0)
