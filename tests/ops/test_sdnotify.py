"""Notifier: sd_notify datagrams to a real unix socket; a no-op outside systemd."""

from __future__ import annotations

import os
from pathlib import Path

from daemon.sdnotify import Notifier
from tests.ops.notify_socket import NotifySocket


def test_ready_status_watchdog_and_stopping_reach_the_socket(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path / "notify")
    n = Notifier({"NOTIFY_SOCKET": sock.name, "WATCHDOG_USEC": "2000000"})
    assert n.enabled and n.watchdog_interval_s == 1.0
    assert n.ready("up") and n.watchdog() and n.status("busy") and n.stopping()
    assert [text for _, text in sock.drain()] == ["READY=1\nSTATUS=up", "WATCHDOG=1", "STATUS=busy", "STOPPING=1"]
    n.close()
    sock.close()


def test_abstract_namespace_socket(tmp_path: Path) -> None:
    sock = NotifySocket(f"@depthd-test-{os.getpid()}")
    n = Notifier({"NOTIFY_SOCKET": sock.name})
    assert n.ready() and sock.messages("READY=1")
    assert n.watchdog_interval_s is None, "no WATCHDOG_USEC: no watchdog"
    sock.close()


def test_outside_systemd_everything_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled and not n.ready() and not n.watchdog() and n.watchdog_interval_s is None


def test_watchdog_for_another_pid_is_not_ours(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "x"), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval_s is None


def test_a_socket_that_is_gone_is_counted_not_raised(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert not n.ready() and n.errors == 1
