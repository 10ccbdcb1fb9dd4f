"""RestClient against real aiohttp servers on 127.0.0.1: answers, rate limits, bans, weight, timeouts, retries."""

from __future__ import annotations

import asyncio
import gzip
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from daemon.errors import VenueError
from daemon.sources.backoff import Backoff
from daemon.sources.rest import MINUTE_NS, RateLimited, RestClient, RestError
from daemon.venues.health import FeedHealth

Handler = Callable[[web.Request], web.StreamResponse]


class Venue:
    """An aiohttp app on an ephemeral loopback port whose handler answers from a script of responses."""

    def __init__(self, *answers: Callable[[web.Request], object]) -> None:
        self.answers = list(answers)
        self.hits: list[web.Request] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request)
        answer = self.answers[min(len(self.hits), len(self.answers)) - 1]
        result = answer(request)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, web.StreamResponse)
        return result


@asynccontextmanager
async def serving(venue: Venue) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", venue.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client(url: str, **kwargs: object) -> AsyncIterator[RestClient]:
    options: dict = {"health": FeedHealth("test"), **kwargs}
    rest = RestClient(url, **options)
    try:
        yield rest
    finally:
        await rest.close()


def ok(body: bytes = b'{"ok":true}', **headers: str) -> Callable[[web.Request], web.Response]:
    return lambda request: web.Response(body=body, headers=headers)


def status(code: int, **headers: str) -> Callable[[web.Request], web.Response]:
    return lambda request: web.Response(status=code, body=b'{"code":-1003,"msg":"Too much request weight used"}',
                                        headers=headers)


def fast() -> Backoff:
    return Backoff(0.01, 0.02, rng=random.Random(3), floor_s=0.005)


class FakeWallClock:
    """Wall time we choose, moved forward by the test."""

    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


async def test_ok_answer_carries_body_headers_and_receive_stamp() -> None:
    venue = Venue(ok(b'{"lastUpdateId":1}', **{"X-MBX-USED-WEIGHT-1M": "7"}))
    clock = FakeWallClock(1_723_161_254_000_000_000)
    async with serving(venue) as url, client(url, now=clock, weight_limit_per_min=100) as rest:
        resp = await rest.get("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 5000}, weight=5)

    assert (resp.ts_recv, resp.status, resp.body) == (clock.t, 200, b'{"lastUpdateId":1}')
    assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "7"
    assert venue.hits[0].path == "/api/v3/depth" and dict(venue.hits[0].query) == {"symbol": "BTCUSDT", "limit": "5000"}
    assert rest.used_weight == 7  # the venue's count (7) is above ours (5)
    assert not rest.health.rest_errors


async def test_429_raises_with_retry_after_and_nothing_is_sent_until_it_has_passed() -> None:
    venue = Venue(status(429, **{"Retry-After": "7"}), ok())
    clock = FakeWallClock(1_000 * MINUTE_NS)
    async with serving(venue) as url, client(url, now=clock) as rest:
        with pytest.raises(RateLimited) as caught:
            await rest.get("/depth")
        assert (caught.value.retry_after_s, caught.value.banned, caught.value.status) == (7.0, False, 429)
        assert rest.health.rate_limited_until_ns == clock.t + 7_000_000_000

        clock.t += 6_000_000_000
        with pytest.raises(RateLimited) as held:
            await rest.get("/depth")
        assert held.value.retry_after_s == pytest.approx(1.0)
        assert len(venue.hits) == 1  # refused here, never sent

        clock.t += 1_000_000_000
        assert (await rest.get("/depth")).status == 200
    assert rest.health.rest_errors == {"rate_limited": 1, "held_back": 1}
    assert isinstance(caught.value, VenueError)


async def test_418_marks_the_ip_banned_and_retry_gives_up_at_once() -> None:
    venue = Venue(status(418, **{"Retry-After": "120"}), ok())
    clock = FakeWallClock(1_000 * MINUTE_NS)
    async with serving(venue) as url, client(url, now=clock) as rest:
        with pytest.raises(RateLimited) as caught:
            await rest.get_with_retry("/depth", backoff=fast())
        assert caught.value.banned and caught.value.status == 418 and caught.value.retry_after_s == 120
        assert rest.health.banned and len(venue.hits) == 1

        with pytest.raises(RateLimited, match="IP banned"):
            await rest.get_with_retry("/depth", backoff=fast())  # still banned: refused without a request
        assert len(venue.hits) == 1

        clock.t += 120_000_000_000
        await rest.get("/depth")
        assert not rest.health.banned


async def test_slow_answer_is_a_timeout_error() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(body=b"{}")

    async with serving(Venue(slow)) as url, client(url, timeout_s=0.1) as rest:
        with pytest.raises(RestError) as caught:
            await rest.get("/depth")
    assert caught.value.kind == "timeout" and "0.1 s" in caught.value.detail
    assert rest.health.rest_errors["timeout"] == 1


async def test_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with client(f"http://127.0.0.1:{port}") as rest:
        with pytest.raises(RestError) as caught:
            await rest.get("/depth")
    assert caught.value.kind == "connect"
    assert rest.health.rest_errors["connect"] == 1


async def test_torn_body_is_a_bad_body_error() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{\"bids\":[")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        async with client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}") as rest:
            with pytest.raises(RestError) as caught:
                await rest.get("/depth")
    finally:
        server.close()
    assert caught.value.kind == "bad_body"
    assert rest.health.rest_errors["bad_body"] == 1


async def test_retry_rides_out_5xx_and_a_429_but_not_a_400() -> None:
    venue = Venue(status(503), status(502), status(429, **{"Retry-After": "0"}), ok(b"[1]"))
    async with serving(venue) as url, client(url) as rest:
        resp = await rest.get_with_retry("/depth", backoff=fast())
    assert resp.body == b"[1]" and len(venue.hits) == 4
    assert rest.health.rest_errors == {"http_5xx": 2, "rate_limited": 1}

    bad = Venue(status(400), ok())
    async with serving(bad) as url, client(url) as rest:
        with pytest.raises(RestError) as caught:
            await rest.get_with_retry("/depth", backoff=fast())
    assert caught.value.kind == "http_4xx" and caught.value.status == 400 and len(bad.hits) == 1


async def test_retry_gives_up_after_the_attempts_allowed() -> None:
    venue = Venue(status(500))
    async with serving(venue) as url, client(url) as rest:
        with pytest.raises(RestError) as caught:
            await rest.get_with_retry("/depth", attempts=3, backoff=fast())
    assert caught.value.kind == "http_5xx" and len(venue.hits) == 3


async def test_retry_after_as_an_http_date_is_understood() -> None:
    clock = FakeWallClock(1_723_161_254_000_000_000)  # 2024-08-08 23:54:14 UTC
    venue = Venue(status(429, **{"Retry-After": "Thu, 08 Aug 2024 23:54:44 GMT"}))
    async with serving(venue) as url, client(url, now=clock) as rest:
        with pytest.raises(RateLimited) as caught:
            await rest.get("/depth")
    assert caught.value.retry_after_s == pytest.approx(30.0)


async def test_a_request_over_the_weight_budget_waits_for_the_next_minute() -> None:
    # Wall time runs at real speed from 0.15 s before a minute boundary.
    start, base = time.monotonic_ns(), 28_000_000 * MINUTE_NS - 150_000_000

    def now() -> int:
        return base + time.monotonic_ns() - start

    served_at: list[int] = []

    def answer(request: web.Request) -> web.Response:
        served_at.append(now())
        return web.Response(body=b"{}", headers={"X-MBX-USED-WEIGHT-1M": "9"})

    venue = Venue(answer)
    async with serving(venue) as url, client(url, now=now, weight_limit_per_min=10, minute_grace_s=0) as rest:
        await rest.get("/depth", weight=1)
        assert rest.used_weight == 9  # the venue says 9 of 10 are used (other programs on this IP)
        await rest.get("/depth", weight=2)

    assert served_at[0] // MINUTE_NS == 28_000_000 - 1
    assert served_at[1] // MINUTE_NS == 28_000_000  # sent only once the new minute began
    assert rest.weight_waits == 1
    with pytest.raises(ValueError, match="can never fit"):
        await rest.get("/depth", weight=11)


async def test_real_binance_snapshot_comes_back_byte_for_byte(shared_data: Path) -> None:
    path = shared_data / "binance_spot_btcusdt" / "btcusdt_20240808.gz"
    with gzip.open(path, "rb") as fh:
        snapshot = next(raw for line in fh if (raw := line.rstrip(b"\n").partition(b" ")[2]).startswith(b'{"lastUp'))
    venue = Venue(ok(snapshot, **{"X-MBX-USED-WEIGHT-1M": "250"}))
    async with serving(venue) as url, client(url, weight_limit_per_min=6000) as rest:
        resp = await rest.get_with_retry("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 1000}, weight=250)
    assert resp.body == snapshot and len(snapshot) > 50_000
    assert rest.used_weight == 250


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        RestClient("ws://x", health=FeedHealth("t"))
    with pytest.raises(ValueError, match="weight_limit_per_min"):
        RestClient("http://x", health=FeedHealth("t"), weight_limit_per_min=0)
