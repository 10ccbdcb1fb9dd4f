"""systemd's service notification protocol (sd_notify): READY=1, WATCHDOG=1, STOPPING=1 and STATUS=...

Each notification is one datagram to the unix socket named by $NOTIFY_SOCKET (a leading '@' names the
abstract namespace). Without $NOTIFY_SOCKET (not started by systemd with Type=notify) every call is a
no-op, so the daemon behaves the same from a terminal. The watchdog interval is $WATCHDOG_USEC (for this
process only when $WATCHDOG_PID, if set, is our pid); pings go at half of it, as sd_watchdog_enabled(3)
advises. The protocol is a few lines over a socket, so it is written here rather than taken from a
library (the PyPI packages for it are unmaintained or pull in libsystemd).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("depthd.sdnotify")


class Notifier:
    """Sends notifications to systemd when run under it; otherwise does nothing."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + path[1:]) if path.startswith("@") else path
        self.errors = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_usec = int(usec) if usec.isdigit() and int(usec) > 0 and pid in ("", str(os.getpid())) else 0
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """Whether systemd listens ($NOTIFY_SOCKET is set)."""
        return self._sock is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1 (half of $WATCHDOG_USEC), or None when systemd runs no watchdog."""
        return self.watchdog_usec / 2e6 if self.enabled and self.watchdog_usec else None

    def notify(self, *fields: str) -> bool:
        """Send `fields` (e.g. "READY=1", "STATUS=...") as one datagram; False when not sent."""
        if self._sock is None:
            return False
        text = "\n".join(fields)
        try:
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            self.errors += 1
            log.warning("sd_notify_failed", error=f"{type(exc).__name__}: {exc}", message=text.split("\n")[0])
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """The service is up: systemd's start job completes (Type=notify)."""
        return self.notify("READY=1", *((f"STATUS={status}",) if status else ()))

    def stopping(self, status: str = "") -> bool:
        """The service is shutting down."""
        return self.notify("STOPPING=1", *((f"STATUS={status}",) if status else ()))

    def watchdog(self) -> bool:
        """The event loop is alive: reset systemd's watchdog timer."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """A one-line status for `systemctl status`."""
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        """Release the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
