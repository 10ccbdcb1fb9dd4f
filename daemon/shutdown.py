"""Graceful stop of a trading session (SIGTERM/SIGINT): no new orders, open orders cancelled (or left, as
configured) and their cancels awaited while the feed and broker still run; then the session closes its
connections and flushes the journal and the recorder (`LiveSession.run`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from daemon.engine import Engine

log = structlog.get_logger("depthd.shutdown")


@dataclass
class WindDown:
    """What the stop did to the orders."""

    open_at_stop: list[str] = field(default_factory=list)
    cancelled: bool = False
    left_open: list[str] = field(default_factory=list)
    seconds: float = 0.0


def open_client_ids(engine: Engine) -> list[str]:
    """Client ids of every order working at the engine's broker."""
    return [v.order.client_id for v in engine.open_orders()]


async def wind_down(engine: Engine, cancel: bool, wait_s: float,
                    now: Callable[[], float] = time.monotonic) -> WindDown:
    """Stop new orders; cancel the open ones if `cancel` and wait up to `wait_s` for the cancels to land."""
    started = now()
    engine.stop_trading()
    result = WindDown(open_client_ids(engine), cancel)
    if cancel and engine.broker is not None:
        for cid in result.open_at_stop:
            try:
                engine.broker.cancel(cid)
            except Exception as exc:  # a broken broker must not stop the rest of the shutdown
                log.error("stop_cancel_failed", client_id=cid, error=f"{type(exc).__name__}: {exc}")
        while open_client_ids(engine) and now() - started < wait_s:
            await asyncio.sleep(0.02)
    result.left_open = open_client_ids(engine)
    result.seconds = now() - started
    (log.warning if cancel and result.left_open else log.info)(
        "wind_down", open_at_stop=len(result.open_at_stop), cancel=cancel, left_open=result.left_open,
        seconds=round(result.seconds, 3))
    return result
