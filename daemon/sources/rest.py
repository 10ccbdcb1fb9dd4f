"""A REST client for venue snapshots that respects the venue's rate limits.

A trader's IP must never be banned because of us, so three rules hold before anything is sent:
- after a 429 (rate limited) or 418 (IP banned) answer, no request leaves until its `Retry-After`
  has passed (`health.rate_limited_until_ns`): `get` raises `RateLimited` at once instead;
- with `weight_limit_per_min`, the request weight used in the current minute is tracked (our own
  count, raised to what the venue reports in `weight_header`, which also counts other programs on
  the same IP); a request that would exceed the limit waits for the next minute instead of going
  out. Minutes start `minute_grace_s` after the wall-clock minute, so a venue clock a little
  behind ours has rolled its window over before we spend the new budget;
- `get_with_retry` retries only what is worth retrying (timeouts, connection failures, torn
  bodies, 5xx, 429 after its Retry-After) and gives up at once on a ban (418) and on other 4xx.

Every failure is counted in `health.rest_errors` by kind: timeout, connect, bad_body, http_4xx,
http_5xx, http_other (an unexpected 1xx/3xx), rate_limited (429), banned (418), held_back (refused
here, unsent, while a Retry-After runs).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import NamedTuple

import aiohttp
import structlog

from daemon.errors import VenueError
from daemon.sources.backoff import Backoff
from daemon.venues.health import FeedHealth

log = structlog.get_logger("depthd.feed")

MINUTE_NS = 60_000_000_000
RETRYABLE = frozenset({"timeout", "connect", "bad_body", "http_5xx"})
Params = Mapping[str, str | int | float]


class RateLimited(VenueError):
    """The venue asked us to slow down (429) or banned the IP (418): nothing goes out for `retry_after_s`."""

    def __init__(self, retry_after_s: float, banned: bool, status: int, detail: str = "") -> None:
        self.retry_after_s = retry_after_s
        self.banned = banned
        self.status = status
        what = "IP banned (418)" if banned else f"rate limited ({status})"
        super().__init__(f"{what}: retry after {retry_after_s:g} s" + (f"; {detail}" if detail else ""))


class RestError(VenueError):
    """A REST request failed; `kind` is timeout, connect, bad_body, http_4xx, http_5xx or http_other."""

    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        self.kind = kind
        self.detail = detail
        self.status = status
        super().__init__(f"{kind}: {detail}")


class RestResponse(NamedTuple):
    """A successful (2xx) answer, stamped with `now()` once its whole body was read."""

    ts_recv: int
    status: int
    body: bytes
    headers: dict[str, str]


class RestClient:
    """GET requests to one venue's REST API under its rate limits; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        *,
        health: FeedHealth,
        now: Callable[[], int] = time.time_ns,
        timeout_s: float = 10.0,
        weight_limit_per_min: int | None = None,
        weight_header: str | None = "X-MBX-USED-WEIGHT-1M",
        session: aiohttp.ClientSession | None = None,
        default_retry_after_s: float = 60.0,
        minute_grace_s: float = 1.0,
        name: str = "",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if weight_limit_per_min is not None and (type(weight_limit_per_min) is not int or weight_limit_per_min < 1):
            raise ValueError(f"weight_limit_per_min must be a positive int or None, got {weight_limit_per_min!r}")
        if not default_retry_after_s > 0:
            raise ValueError(f"default_retry_after_s must be > 0, got {default_retry_after_s!r}")
        if not 0 <= minute_grace_s < 60:
            raise ValueError(f"minute_grace_s must be in [0, 60), got {minute_grace_s!r}")
        self.base_url = base_url.rstrip("/")
        self.health = health
        self.name = name or health.venue
        self._now = now
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self.weight_limit_per_min = weight_limit_per_min
        self._weight_header = weight_header
        self._session = session
        self._own_session = session is None
        self._default_retry_after = default_retry_after_s
        self._grace_ns = int(minute_grace_s * 1e9)
        self._minute = -1
        self.used_weight = 0  # weight spent in the current minute, as far as we know
        self.weight_waits = 0  # requests that waited for the next minute's budget

    async def get(self, path: str, params: Params | None = None, weight: int = 1) -> RestResponse:
        """One GET; a 2xx answer, else RateLimited (429/418, or unsent while one runs) or RestError."""
        limit = self.weight_limit_per_min
        if type(weight) is not int or weight < 0:
            raise ValueError(f"request weight must be an int >= 0, got {weight!r}")
        if limit is not None and weight > limit:
            raise ValueError(f"request weight {weight} can never fit weight_limit_per_min={limit}")
        self._hold_back_while_limited()
        await self._take_weight(weight)
        self._hold_back_while_limited()
        url = f"{self.base_url}/{path.lstrip('/')}"
        session = self._session
        if session is None:
            session = self._session = aiohttp.ClientSession()
        try:
            async with session.get(url, params=params, timeout=self._timeout) as resp:
                body = await resp.read()
                ts = self._now()
                status, headers = resp.status, resp.headers
        except TimeoutError as exc:
            raise self._failed("timeout", f"GET {url}: no complete answer within {self._timeout_s:g} s") from exc
        except aiohttp.ClientPayloadError as exc:
            raise self._failed("bad_body", f"GET {url}: body cut short or undecodable: {exc}") from exc
        except aiohttp.ClientResponseError as exc:
            raise self._failed("bad_body", f"GET {url}: malformed answer: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._failed("connect", f"GET {url}: {type(exc).__name__}: {exc}") from exc
        self._note_weight(headers, ts)
        if 200 <= status < 300:
            if self.health.banned and ts >= self.health.rate_limited_until_ns:
                self.health.banned = False
                log.info("rest ban over", feed=self.name)
            return RestResponse(ts, status, body, dict(headers))
        if status in (429, 418):
            raise self._limited(status, headers, ts, url)
        kind = "http_5xx" if status >= 500 else "http_4xx" if status >= 400 else "http_other"
        raise self._failed(kind, f"GET {url}: status {status}: {body[:200]!r}", status)

    async def get_with_retry(
        self,
        path: str,
        params: Params | None = None,
        weight: int = 1,
        *,
        attempts: int | None = None,
        backoff: Backoff | None = None,
    ) -> RestResponse:
        """GET until it succeeds or `attempts` are used (None: until cancelled); a ban or other 4xx raises at once."""
        if attempts is not None and attempts < 1:
            raise ValueError(f"attempts must be >= 1 or None, got {attempts!r}")
        backoff = backoff or Backoff()
        tried = 0
        while True:
            tried += 1
            try:
                return await self.get(path, params, weight)
            except RateLimited as exc:
                if exc.banned or (attempts is not None and tried >= attempts):
                    raise
                delay, error = max(exc.retry_after_s, backoff.next()), str(exc)
            except RestError as exc:
                if exc.kind not in RETRYABLE or (attempts is not None and tried >= attempts):
                    raise
                delay, error = backoff.next(), str(exc)
            log.warning("rest retry", feed=self.name, path=path, attempt=tried, delay_s=round(delay, 3), error=error)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Close the HTTP session if this client made it (a session passed in belongs to the caller)."""
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def _hold_back_while_limited(self) -> None:
        """Raise RateLimited, sending nothing, while a 429/418 Retry-After is running."""
        h = self.health
        until = h.rate_limited_until_ns
        if not until:
            return
        t = self._now()
        if until > t:
            h.rest_errors["held_back"] += 1
            raise RateLimited((until - t) / 1e9, h.banned, 418 if h.banned else 429, "request not sent")

    async def _take_weight(self, weight: int) -> None:
        """Reserve `weight` in this minute's budget, sleeping into the next minute when it would not fit."""
        limit = self.weight_limit_per_min
        if limit is None:
            return
        while True:
            t = self._now()
            minute = (t - self._grace_ns) // MINUTE_NS
            if minute > self._minute:
                self._minute, self.used_weight = minute, 0
            if self.used_weight + weight <= limit:
                self.used_weight += weight
                return
            wait_s = ((minute + 1) * MINUTE_NS + self._grace_ns - t) / 1e9
            self.weight_waits += 1
            log.info("rest weight budget spent; waiting for the next minute", feed=self.name,
                     used=self.used_weight, weight=weight, limit=limit, wait_s=round(wait_s, 3))
            await asyncio.sleep(wait_s)

    def _note_weight(self, headers: Mapping[str, str], ts: int) -> None:
        """Raise our count of this minute's used weight to what the venue reports."""
        if self._weight_header is None:
            return
        value = headers.get(self._weight_header)
        if value is None:
            return
        try:
            used = int(value)
        except ValueError:
            log.warning("rest weight header is not an integer", feed=self.name, header=self._weight_header, value=value)
            return
        minute = (ts - self._grace_ns) // MINUTE_NS
        if minute > self._minute:
            self._minute, self.used_weight = minute, used
        elif minute == self._minute:
            self.used_weight = max(self.used_weight, used)

    def _limited(self, status: int, headers: Mapping[str, str], ts: int, url: str) -> RateLimited:
        """Record a 429/418 answer: stop sending until its Retry-After; 418 also marks the IP banned."""
        h = self.health
        banned = status == 418
        retry_after = _retry_after_s(headers.get("Retry-After"), ts)
        if retry_after is None:
            retry_after = self._default_retry_after * (2 if banned else 1)
        h.rate_limited_until_ns = max(h.rate_limited_until_ns, ts + int(retry_after * 1e9))
        h.rest_errors["banned" if banned else "rate_limited"] += 1
        if banned:
            h.banned = True
        log.error("rest rate limited by the venue", feed=self.name, url=url, status=status, banned=banned,
                  retry_after_s=retry_after)
        return RateLimited(retry_after, banned, status, f"GET {url}")

    def _failed(self, kind: str, detail: str, status: int | None = None) -> RestError:
        """Count and log a failed request, and make its error."""
        self.health.rest_errors[kind] += 1
        log.warning("rest request failed", feed=self.name, kind=kind, detail=detail)
        return RestError(kind, detail, status)


def _retry_after_s(value: str | None, now_ns: int) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now_ns / 1e9
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None

