"""The control endpoint: token loading, auth, routes and errors, and the CLI client against a live server."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from daemon import control
from daemon.control import ControlServer, json_response, load_token
from daemon.control_client import (
    ControlError,
    add_kill_arguments,
    add_resume_arguments,
    cmd_kill,
    cmd_resume,
    send,
    send_sync,
)
from daemon.errors import ConfigError, LocalError

TOKEN = "s3cret-token-0123456789abcdef"
ENV = "DEPTHD_CONTROL_TOKEN"


class FakeHandler:
    """Records every call and answers with a small dict."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail = False

    def kill(self, flatten: bool, reason: str, operator: str) -> dict:
        self.calls.append(("kill", flatten, reason, operator))
        if self.fail:
            raise RuntimeError("journal is gone")
        return {"state": "HALTED", "flatten": flatten}

    def resume(self, operator: str, reason: str) -> dict:
        self.calls.append(("resume", operator, reason))
        return {"state": "ACTIVE"}

    def status(self) -> dict:
        self.calls.append(("status",))
        return {"state": "ACTIVE", "positions": {}}


class RecordingLog:
    """Stands in for the module's structlog logger (whose set-up other tests may have changed and cached)."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def _record(self, level: str, event: str, **kw: object) -> None:
        self.entries.append({"log_level": level, "event": event, **kw})

    def info(self, event: str, **kw: object) -> None:
        self._record("info", event, **kw)

    def warning(self, event: str, **kw: object) -> None:
        self._record("warning", event, **kw)

    def exception(self, event: str, **kw: object) -> None:
        self._record("error", event, **kw)


@pytest.fixture
def logs(monkeypatch) -> list[dict]:
    recorder = RecordingLog()
    monkeypatch.setattr(control, "log", recorder)
    return recorder.entries


@pytest.fixture
def handler() -> FakeHandler:
    return FakeHandler()


@pytest.fixture
async def server(handler: FakeHandler) -> AsyncIterator[ControlServer]:
    srv = ControlServer(handler, TOKEN)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- server: routes with the right token ---------------------------------------------------------------------

async def test_kill_calls_handler_with_parsed_body(server, handler, http):
    body = {"flatten": True, "reason": "runaway", "operator": "alice"}
    async with http.post(f"{server.url}/kill", json=body, headers=auth()) as resp:
        assert resp.status == 200
        assert await resp.json() == {"state": "HALTED", "flatten": True}
    assert handler.calls == [("kill", True, "runaway", "alice")]


async def test_kill_without_body_uses_defaults(server, handler, http):
    async with http.post(f"{server.url}/kill", headers=auth()) as resp:
        assert resp.status == 200
    assert handler.calls == [("kill", False, "manual", "unknown")]


async def test_resume_calls_handler(server, handler, http):
    async with http.post(f"{server.url}/resume", json={"operator": "bob", "reason": "fixed"}, headers=auth()) as resp:
        assert resp.status == 200
        assert await resp.json() == {"state": "ACTIVE"}
    assert handler.calls == [("resume", "bob", "fixed")]


async def test_status_answers_handler_dict(server, handler, http):
    async with http.get(f"{server.url}/status", headers=auth()) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == {"state": "ACTIVE", "positions": {}}


async def test_bound_port_is_real_when_configured_with_zero(server):
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


# --- server: auth --------------------------------------------------------------------------------------------

async def test_wrong_token_is_401_and_handler_not_called(server, handler, http, logs):
    async with http.post(f"{server.url}/kill", json={"flatten": True}, headers=auth("x" * 30)) as resp:
        assert resp.status == 401
        assert "wrong token" in (await resp.json())["error"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert handler.calls == []
    assert server.auth_failures == 1
    failures = [e for e in logs if e["event"] == "control_auth_failed"]
    assert len(failures) == 1 and failures[0]["log_level"] == "warning"
    assert "x" * 30 not in repr(logs) and TOKEN not in repr(logs)


async def test_missing_header_is_401(server, handler, http):
    async with http.get(f"{server.url}/status") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="depthd"'
        assert "missing" in (await resp.json())["error"]
    assert handler.calls == []
    assert server.auth_failures == 1


async def test_other_auth_scheme_is_401(server, handler, http):
    async with http.post(f"{server.url}/resume", headers={"Authorization": f"Basic {TOKEN}"}) as resp:
        assert resp.status == 401
    assert handler.calls == []
    assert server.auth_failures == 1


async def test_token_prefix_is_refused(server, handler, http):
    async with http.post(f"{server.url}/kill", headers=auth(TOKEN[:-1])) as resp:
        assert resp.status == 401
    assert handler.calls == []


def test_server_refuses_short_token(handler):
    with pytest.raises(ConfigError, match="too short"):
        ControlServer(handler, "short")


# --- server: bad requests and failures -----------------------------------------------------------------------

async def test_bad_json_is_400(server, handler, http):
    async with http.post(f"{server.url}/kill", data=b"{flatten: yes", headers=auth()) as resp:
        assert resp.status == 400
        assert "not valid JSON" in (await resp.json())["error"]
    assert handler.calls == []


@pytest.mark.parametrize(("body", "message"), [
    ([1, 2], "must be a JSON object"),
    ({"flatten": "yes"}, "'flatten' must be bool"),
    ({"flaten": True}, "unknown field 'flaten'"),
])
async def test_body_of_wrong_shape_is_400(server, handler, http, body, message):
    async with http.post(f"{server.url}/kill", json=body, headers=auth()) as resp:
        assert resp.status == 400
        assert message in (await resp.json())["error"]
    assert handler.calls == []


async def test_oversized_body_is_413(server, handler, http):
    big = orjson.dumps({"reason": "x" * 100_000})
    async with http.post(f"{server.url}/kill", data=big, headers=auth()) as resp:
        assert resp.status == 413
        assert "error" in await resp.json()
    assert handler.calls == []


async def test_handler_exception_is_500(server, handler, http, logs):
    handler.fail = True
    async with http.post(f"{server.url}/kill", headers=auth()) as resp:
        assert resp.status == 500
        assert "internal error" in (await resp.json())["error"]
    assert any(e["event"] == "control_request_failed" and e["log_level"] == "error" for e in logs)


async def test_unknown_route_and_method_answer_json(server, http):
    async with http.get(f"{server.url}/nope", headers=auth()) as resp:
        assert resp.status == 404
        assert "error" in await resp.json()
    async with http.get(f"{server.url}/kill", headers=auth()) as resp:
        assert resp.status == 405
        assert "error" in await resp.json()


async def test_added_public_route_needs_no_token(handler, http):
    srv = ControlServer(handler, TOKEN)

    async def health(request: web.Request) -> web.Response:
        return json_response({"ok": True})

    srv.add_route("GET", "/health", health, auth=False)
    await srv.start()
    try:
        async with http.get(f"{srv.url}/health") as resp:
            assert resp.status == 200
            assert await resp.json() == {"ok": True}
        with pytest.raises(LocalError, match="after start"):
            srv.add_route("GET", "/late", health)
    finally:
        await srv.stop()
    await srv.stop()  # twice is fine


async def test_port_in_use_is_config_error(server, handler):
    other = ControlServer(handler, TOKEN, port=server.port)
    with pytest.raises(ConfigError, match=re.escape(f"127.0.0.1:{server.port}")):
        await other.start()


# --- client --------------------------------------------------------------------------------------------------

async def test_send_kill(server, handler):
    answer = await send(server.url, "kill", TOKEN, {"flatten": True, "reason": "r", "operator": "o"})
    assert answer == {"state": "HALTED", "flatten": True}
    assert handler.calls == [("kill", True, "r", "o")]


async def test_send_sync_from_a_thread(server, handler):
    answer = await asyncio.to_thread(send_sync, server.url + "/", "status", TOKEN)
    assert answer["state"] == "ACTIVE"
    assert handler.calls == [("status",)]


async def test_send_with_wrong_token_says_token_refused(server):
    with pytest.raises(ControlError, match="token refused"):
        await send(server.url, "status", "y" * 20)


async def test_send_reports_http_error_with_server_message(server, handler):
    handler.fail = True
    with pytest.raises(ControlError, match="HTTP 500 to kill: internal error"):
        await send(server.url, "kill", TOKEN)


async def test_send_to_nothing_says_no_daemon_listening():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ControlError, match=re.escape(f"no daemon listening at {url}")):
        await send(url, "status", TOKEN)


async def test_send_times_out_on_a_silent_peer():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers
        writer.close()

    peer = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = peer.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ControlError, match=r"no answer .* within 0\.2 s"):
            await send(f"http://127.0.0.1:{port}", "status", TOKEN, timeout_s=0.2)
    finally:
        peer.close()


async def test_send_refuses_url_without_scheme():
    with pytest.raises(ControlError, match="http://HOST:PORT"):
        await send("127.0.0.1:8787", "status", TOKEN)


async def test_cmd_kill_prints_answer(server, handler, monkeypatch, capsys):
    monkeypatch.setenv(ENV, TOKEN)
    parser = argparse.ArgumentParser()
    add_kill_arguments(parser)
    args = parser.parse_args(["--url", server.url, "--flatten", "--reason", "test", "--operator", "alice"])
    assert await asyncio.to_thread(cmd_kill, args) == 0
    assert handler.calls == [("kill", True, "test", "alice")]
    # The server logs to stdout here too (same process, default structlog set-up): the answer is the last line.
    assert orjson.loads(capsys.readouterr().out.splitlines()[-1]) == {"state": "HALTED", "flatten": True}


async def test_cmd_resume_with_token_file(server, handler, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    parser = argparse.ArgumentParser()
    add_resume_arguments(parser)
    args = parser.parse_args(["--url", server.url, "--token-file", str(token_file)])
    assert await asyncio.to_thread(cmd_resume, args) == 0
    assert handler.calls[0][0] == "resume" and handler.calls[0][1] == args.operator
    assert capsys.readouterr().out.splitlines()[-1] == '{"state":"ACTIVE"}'


# --- load_token ----------------------------------------------------------------------------------------------

def write_token(path: Path, text: str, mode: int) -> str:
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_token_from_env_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, TOKEN)
    assert load_token(token_file=write_token(tmp_path / "t", "f" * 20, 0o600)) == TOKEN


def test_token_from_0600_file_is_stripped(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    assert load_token(token_file=write_token(tmp_path / "t", f"  {TOKEN}\n", 0o600)) == TOKEN


def test_empty_env_falls_back_to_file(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "")
    assert load_token(token_file=write_token(tmp_path / "t", TOKEN, 0o400)) == TOKEN


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o602])
def test_token_file_readable_by_others_is_refused(monkeypatch, tmp_path, mode):
    monkeypatch.delenv(ENV, raising=False)
    path = write_token(tmp_path / "t", TOKEN, mode)
    with pytest.raises(ConfigError, match="chmod 600") as err:
        load_token(token_file=path)
    assert path in str(err.value) and f"{mode:04o}" in str(err.value)
    assert TOKEN not in str(err.value)


def test_too_short_token_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "short")
    with pytest.raises(ConfigError, match="too short"):
        load_token()
    monkeypatch.delenv(ENV)
    with pytest.raises(ConfigError, match="too short"):
        load_token(token_file=write_token(tmp_path / "t", "short\n", 0o600))


def test_empty_token_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConfigError, match="empty"):
        load_token(token_file=write_token(tmp_path / "t", "\n", 0o600))


def test_no_token_source_says_how_to_provide_one(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConfigError, match=f"set the environment variable {ENV}"):
        load_token()


def test_missing_token_file_is_config_error(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_token(token_file=str(tmp_path / "absent"))
