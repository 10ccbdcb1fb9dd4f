"""Live loopback feed benchmark: a fake Binance in another process streams diff-depth, trades and
bookTicker frames at a fixed rate to a `depthd run` session (paper trading, recorder on); the session
measures receive-to-book-updated latency of every message (receive stamp right after the websocket
read, to after the book, features and strategy have taken it).

    .venv/bin/python bench/bench_live_feed.py [--rate 5000] [--seconds 10] [--no-record]

Target (issue 5): at 5,000 messages/s, p99 under 500 us with the recorder on. It also prints the
service's histograms as /metrics exports them: tick-to-order, feature sample, event-loop lag.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAKE = """
import asyncio, sys
sys.path.insert(0, {root!r})
from tests.fakes.binance_venue import FakeBinance

async def main():
    async with FakeBinance("spot", ["BTCUSDT"], source="synthetic", seed=11) as fake:
        print(fake.ws_url, fake.rest_url, flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                return
            if line[0] == "push":
                await fake.push(int(line[1]))
            elif line[0] == "stream":
                fake.start_stream(float(line[1]))
            elif line[0] == "stop":
                await fake.stop_stream()
            print("ok", fake.sent_frames, flush=True)

asyncio.run(main())
"""


async def run(rate: float, seconds: float, record: bool) -> None:
    from daemon.live import LiveSession
    from tests.live_harness import live_settings

    proc = subprocess.Popen([sys.executable, "-c", FAKE.format(root=str(ROOT))], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    loop = asyncio.get_running_loop()

    async def command(text: str) -> str:
        proc.stdin.write(text + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        return await loop.run_in_executor(None, proc.stdout.readline)  # type: ignore[union-attr]

    ws_url, rest_url = proc.stdout.readline().split()
    with tempfile.TemporaryDirectory() as tmp:
        settings = live_settings(Path(tmp), "binance", ["BTCUSDT"], ws_url, rest_url,
                                 record={"enabled": record, "dir": str(Path(tmp) / "rec")},
                                 feed={"stale_after_s": 10.0, "ping_interval_s": 20.0, "ping_timeout_s": 20.0})
        session = LiveSession(settings)
        stop = asyncio.Event()
        task = asyncio.create_task(session.run(stop))
        sync = session.path.engine.syncs["BTCUSDT"]
        deadline = time.monotonic() + 15
        while not sync.live:
            if time.monotonic() > deadline:
                raise SystemExit("the session never got a LIVE book")
            await command("push 20")
            await asyncio.sleep(0.05)
        before = int((await command("push 0")).split()[1])
        after = int((await command("push 2000")).split()[1])  # warm-up: numba and the book settle
        per_event = (after - before) / 2000  # frames per source event (depth + bookTicker, or a trade)
        await asyncio.sleep(0.5)
        start_n = session.stats.latency_n
        t0 = time.perf_counter()
        await command(f"stream {rate / per_event}")
        await asyncio.sleep(seconds)
        await command("stop")
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(0.2)
        n = session.stats.latency_n - start_n
        lat = session.route_latency_ns()[-n:] / 1e3 if n else np.zeros(0)
        state, disconnects = sync.state, session.adapter.health.disconnects
        stop.set()
        await task
        await command("quit")
        proc.wait(10)
        health = session.adapter.health
        rec = session.recorder
        print(f"messages {n} in {elapsed:.1f} s = {n / elapsed:,.0f} msg/s (asked {rate:,.0f}/s); "
              f"book {state}, gaps {health.symbol('BTCUSDT').gaps}, disconnects {disconnects}")
        if n:
            p50, p90, p99, p999, mx = np.percentile(lat, [50, 90, 99, 99.9, 100])
            print(f"receive-to-book-updated latency: p50 {p50:.0f} us, p90 {p90:.0f} us, p99 {p99:.0f} us, "
                  f"p99.9 {p999:.0f} us, max {mx:.0f} us")
        if rec is not None:
            print(f"recorder: {rec.lines} lines, {rec.bytes_written:,} bytes, {rec.errors} errors")
        print(f"orders {session.path.engine.counts['orders']}, samples {session.path.engine.counts['samples']}")
        svc = session.service
        if svc is not None:  # the /metrics histograms (bucket upper bounds)
            def q(h: object) -> str:
                return ", ".join(f"p{int(p * 100)} <= {h.quantile_s(p) * 1e6:,.0f} us" for p in (0.5, 0.99))  # type: ignore[attr-defined]

            st = svc.stopwatch.stages
            print(f"tick-to-order ({st['tick_to_order'].count}): {q(st['tick_to_order'])}; feature sample "
                  f"({st['features'].count}): {q(st['features'])}; event-loop lag ({svc.loop.lag.count}): "
                  f"{q(svc.loop.lag)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.run(run(args.rate, args.seconds, not args.no_record))
    except ImportError:
        asyncio.run(run(args.rate, args.seconds, not args.no_record))


if __name__ == "__main__":
    main()
