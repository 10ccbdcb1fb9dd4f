"""Service: the operations side of a running session (a paced replay, paper or live trading).

Beside the session's own work it runs:

- the HTTP endpoint (`[control]`, aiohttp on the session's loop, 127.0.0.1 by default): public
  `GET /metrics` (Prometheus exposition), `GET /health` and `GET /ready` (200 or 503, JSON), and
  token-protected `GET /status`, `POST /kill`, `POST /resume` (`daemon.control`);
- the loop monitor (event-loop lag; systemd's watchdog pinged from the loop);
- systemd notifications: READY=1 once the session is first ready (feeds connected, books LIVE, broker
  connected, journal recovered), STATUS= when readiness changes, STOPPING=1 when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from daemon.app import TradingPath
from daemon.config import Settings
from daemon.latency import Stopwatch
from daemon.loop_monitor import LoopMonitor
from daemon.metrics import PathCollector
from daemon.metrics_ops import OpsCollector
from daemon.probes import Probes
from daemon.sdnotify import Notifier
from daemon.venues.health import FeedHealth

if TYPE_CHECKING:
    from daemon.control import ControlServer
    from daemon.journal import Journal
    from daemon.reload import Reloader
    from daemon.sources.recorder import Recorder

log = structlog.get_logger("depthd.service")

READY_POLL_S = 0.2


class Service:
    """HTTP endpoint, metrics, probes, loop monitor and systemd notifications of one session."""

    def __init__(self, settings: Settings, path: TradingPath, mode: str, *, feeds: list[FeedHealth] | None = None,
                 recorder: Recorder | None = None, journal: Journal | None = None,
                 broker_connected: Callable[[], bool] | None = None,
                 journal_recovered: Callable[[], bool] | None = None, bad_lines: dict[str, int] | None = None,
                 reloader: Reloader | None = None, notifier: Notifier | None = None, live: bool = False) -> None:
        self.settings = settings
        self.path = path
        self.notifier = notifier if notifier is not None else Notifier()
        self.loop = LoopMonitor(self.notifier)
        self.stopwatch = Stopwatch(time.perf_counter_ns, time.time_ns if live else None)
        path.engine.stopwatch = self.stopwatch
        self.feeds = feeds or []
        self.journal = journal
        self.probes = Probes(path, self.loop, self.feeds, broker_connected, journal_recovered)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PathCollector(path, bad_lines))
        self.registry.register(OpsCollector(path, mode, self.loop, self.stopwatch, journal, reloader))
        if live:
            from daemon.metrics_feed import FeedCollector

            self.registry.register(FeedCollector(path, self.feeds, recorder))
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.server: ControlServer | None = None
        self.ready_since: float | None = None
        self._ready_task: asyncio.Task[None] | None = None
        self._last_missing: list[str] | None = None
        self._start_time = time.monotonic()

    @property
    def url(self) -> str | None:
        """The HTTP endpoint's base URL, when it serves."""
        return self.server.url if self.server is not None else None

    async def start(self) -> None:
        """Start the loop monitor, the HTTP endpoint (if `[control] enabled`) and the readiness watch."""
        self._start_time = time.monotonic()
        self.loop.start()
        ctl = self.settings.control
        if ctl.enabled:
            from daemon.control import ControlServer, load_token
            from daemon.operator import OperatorControl

            token = load_token(ctl.token_env, ctl.token_file or None)
            server = ControlServer(OperatorControl(self.path, self.status_extra), token, ctl.host, ctl.port)
            server.add_route("GET", "/metrics", self._metrics, auth=False)
            server.add_route("GET", "/health", self._probe(self.probes.health), auth=False)
            server.add_route("GET", "/ready", self._probe(self.probes.ready), auth=False)
            await server.start()
            self.server = server
        self._ready_task = asyncio.get_running_loop().create_task(self._watch_ready(), name="ready-watch")

    async def stop(self, status: str = "stopping") -> None:
        """STOPPING=1, then stop serving and measuring."""
        self.notifier.stopping(status)
        if self._ready_task is not None:
            self._ready_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ready_task
        if self.server is not None:
            await self.server.stop()
        await self.loop.stop()
        self.notifier.close()

    def status_extra(self) -> dict[str, Any]:
        """What /status adds to the trading state: readiness, health, feeds, model."""
        ready, detail = self.probes.ready()
        healthy, health = self.probes.health()
        model = self.path.engine.model
        return {"ready": ready, "missing": detail["missing"], "healthy": healthy, "loop": health,
                "feeds": [{"venue": f.venue, "connected": f.connected, "messages": f.messages,
                           "reconnects": f.connects - 1 if f.connects else 0, "banned": f.banned,
                           "untradeable": f.untradeable()} for f in self.feeds if f.live],
                "model": None if model is None else {"sha256": model.scorer.model_hash, "scored": model.scored,
                                                     "score_errors": model.score_errors,
                                                     "problem": self.path.risk.model_problem}}

    async def _watch_ready(self) -> None:
        """READY=1 the first time the session is ready; STATUS= whenever what is missing changes."""
        while True:
            try:
                ok, detail = self.probes.ready()
            except Exception:  # a probe that fails is "not ready", logged, and asked again
                log.exception("ready_probe_failed")
                ok, detail = False, {"missing": ["the readiness probe failed (see the log)"]}
            missing = detail["missing"]
            if ok and self.ready_since is None:
                self.ready_since = time.monotonic()
                self.notifier.ready("ready")
                log.info("service_ready", after_s=round(self.ready_since - self._start_time, 3))
            elif missing != self._last_missing and self.ready_since is not None:
                self.notifier.status("ready" if ok else "not ready: " + "; ".join(missing)[:200])
            self._last_missing = missing
            await asyncio.sleep(READY_POLL_S)

    async def _metrics(self, request: web.Request) -> web.Response:
        """The exposition format the scraper asks for (Accept), text 0.0.4 by default."""
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})

    @staticmethod
    def _probe(check: Callable[[], tuple[bool, dict[str, Any]]]) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A route answering a probe's details with 200 when it passes, 503 when not."""
        from daemon.control import json_response

        async def route(request: web.Request) -> web.Response:
            ok, detail = check()
            return json_response(detail, status=200 if ok else 503)

        return route
