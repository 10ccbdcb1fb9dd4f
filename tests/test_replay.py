"""`depthd replay` end to end: reports, determinism, and every kind of bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from daemon.cli import EXIT_CONFIG, EXIT_INPUT, EXIT_OK, main
from tests.conftest import CONFIG, delta, snapshot, trade, write_ndjson

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def config_file(tmp_path: Path, extra: str = "") -> Path:
    """A small config for the synthetic symbol X (tick 0.01, lot 0.001) that trades it."""
    path = tmp_path / "config.toml"
    path.write_text(f"""
[daemon]
log_level = "error"
[instruments.X]
tick_size = 0.01
lot_size = 0.001
[strategy.params]
threshold = 0.3
persistence_ms = 200
full_persistence_ms = 400
max_position = 1.0
position_step = 0.5
[risk]
max_position = 1.0
max_order_qty = 1.0
max_notional = 1000.0
[paper]
latency_us = 100
taker_fee_bps = 10.0
{extra}
""")
    return path


def bid_heavy_session(n: int = 40) -> list[dict]:
    """A book whose bids outweigh its asks, then a rally through the asks: the strategy buys."""
    lines = [snapshot(T0, [[100.00, 5.0], [99.99, 5.0]], [[100.01, 1.0], [100.02, 1.0]])]
    for i in range(1, n):
        lines.append(delta(T0 + i * 50 * MS, bids=[[99.98, 1.0 + i % 3]]))
    lines.append(trade(T0 + n * 50 * MS, 100.01, 1.0, "buy"))
    lines.append(delta(T0 + n * 50 * MS, asks=[[100.01, 0], [100.02, 0], [100.10, 3.0]],
                       bids=[[100.05, 2.0]]))
    lines.append(delta(T0 + (n + 20) * 50 * MS, bids=[[99.97, 1.0]]))
    return lines


def replay(tmp_path: Path, inputs: list[Path], *args: str, config: Path | None = None) -> tuple[int, dict | None]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "report"
    code = main(["replay", *map(str, inputs), "--config", str(config or config_file(tmp_path)),
                 "--report", str(out), "--quiet", *args])
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return code, report


def test_replay_writes_a_report_with_book_orders_fills_and_pnl(tmp_path: Path) -> None:
    data = write_ndjson(tmp_path / "X.ndjson", bid_heavy_session())

    code, report = replay(tmp_path, [data])

    assert code == EXIT_OK
    assert report["inputs"] == [str(data)]
    assert report["events"] == {"messages": 43, "snapshot": 1, "delta": 41, "trade": 1,
                                "level_updates": 4 + 39 + 4 + 1, "quote": 0, "reset": 0, "bad_lines": 0,
                                "samples": report["events"]["samples"]}
    book = report["book"]["X"]
    assert book["state"] == "LIVE" and book["crossed"] == 0
    assert book["final"]["bids"][0] == [100.05, 2.0]
    assert book["final"]["asks"] == [[100.1, 3.0]]
    assert report["orders"] >= 1 and report["fills"], "the bid-heavy book should make the strategy buy"
    assert report["fills"][0]["side"] == "buy" and report["fills"][0]["liquidity"] == "taker"
    assert report["position"]["X"]["qty"] > 0
    assert report["pnl"]["fees"] > 0
    assert set(report) >= {"inputs", "events", "book", "orders", "fills", "rejects", "position", "pnl",
                           "max_drawdown"}
    run = json.loads((tmp_path / "report" / "run.json").read_text())
    assert run["messages"] == 43 and run["messages_per_second"] > 0
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<polyline" in html and "depthd backtest report" in html


def test_two_runs_write_byte_identical_reports(tmp_path: Path) -> None:
    data = write_ndjson(tmp_path / "X.ndjson", bid_heavy_session())
    cfg = config_file(tmp_path)
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["replay", str(data), "--config", str(cfg), "--report", str(out), "--quiet"]) == EXIT_OK
        outs.append((out / "report.json").read_bytes() + (out / "report.html").read_bytes())

    assert outs[0] == outs[1]


def test_malformed_json_stops_the_replay_naming_file_and_line(tmp_path: Path, capsys) -> None:
    lines = bid_heavy_session()
    lines.insert(5, b'{"ts": 1700000000250000000, "kind": "delta", "bids": [[1')
    data = write_ndjson(tmp_path / "X.ndjson", lines)

    code, report = replay(tmp_path, [data])

    assert code == EXIT_INPUT
    assert report is None
    err = capsys.readouterr().err
    assert f"{data}:6" in err and "invalid JSON" in err


def test_skip_bad_counts_and_skips_malformed_lines(tmp_path: Path) -> None:
    lines = bid_heavy_session()
    lines.insert(5, b"not json")
    lines.insert(9, {"ts": T0 + 400 * MS, "kind": "delta", "bids": [[100.001, 1]], "asks": []})
    data = write_ndjson(tmp_path / "X.ndjson", lines)

    code, report = replay(tmp_path, [data], "--skip-bad")

    assert code == EXIT_OK
    assert report["events"]["bad_lines"] == 2
    assert report["events"]["messages"] == 43


def test_truncated_gzip_is_reported_not_a_traceback(tmp_path: Path, capsys) -> None:
    whole = gzip.compress(write_ndjson(tmp_path / "X.ndjson", bid_heavy_session()).read_bytes())
    data = tmp_path / "X.ndjson.gz"
    data.write_bytes(whole[: len(whole) // 2])

    code, _ = replay(tmp_path, [data])

    assert code == EXIT_INPUT
    err = capsys.readouterr().err
    assert "truncated gzip stream" in err and str(data) in err
    assert "Traceback" not in err


def test_delta_before_snapshot_leaves_the_book_invalid_and_untraded(tmp_path: Path) -> None:
    lines = [delta(T0 + i * 50 * MS, bids=[[100.0, 5.0]], asks=[[100.01, 0.1]]) for i in range(40)]
    data = write_ndjson(tmp_path / "X.ndjson", lines)

    code, report = replay(tmp_path, [data])

    assert code == EXIT_OK
    book = report["book"]["X"]
    assert book["state"] == "INVALID"
    assert book["states"]["INVALID"] == 40 and book["states"]["LIVE"] == 0
    assert book["final"] == {"bids": [], "asks": []}
    assert report["orders"] == 0 and report["fills"] == []


def test_crossed_delta_invalidates_until_the_next_snapshot(tmp_path: Path) -> None:
    lines = bid_heavy_session(10)[:10]
    lines.append(delta(T0 + 600 * MS, bids=[[100.02, 1.0]]))
    lines.append(delta(T0 + 650 * MS, bids=[[99.90, 1.0]]))
    lines.append(snapshot(T0 + 700 * MS, [[100.00, 1.0]], [[100.01, 1.0]]))
    data = write_ndjson(tmp_path / "X.ndjson", lines)

    code, report = replay(tmp_path, [data])

    assert code == EXIT_OK
    book = report["book"]["X"]
    assert book["crossed"] == 1
    assert book["states"]["INVALID"] == 2
    assert book["state"] == "LIVE"
    assert book["final"] == {"bids": [[100.0, 1.0]], "asks": [[100.01, 1.0]]}


def test_broken_config_exits_with_the_config_error(tmp_path: Path, capsys) -> None:
    data = write_ndjson(tmp_path / "X.ndjson", bid_heavy_session())
    cfg = config_file(tmp_path, extra="[paper.extra]\nfoo = 1\n")

    code, _ = replay(tmp_path, [data], config=cfg)

    assert code == EXIT_CONFIG
    assert "paper.extra: unknown key" in capsys.readouterr().err


def test_missing_input_is_an_input_error(tmp_path: Path, capsys) -> None:
    code, _ = replay(tmp_path, [tmp_path / "nope.ndjson"])

    assert code == EXIT_INPUT
    assert "no such file" in capsys.readouterr().err


def test_several_files_merge_by_receive_time_into_one_session(tmp_path: Path) -> None:
    lines = bid_heavy_session()
    first = write_ndjson(tmp_path / "X-1.ndjson", lines[:20])
    second = write_ndjson(tmp_path / "X-2.ndjson", lines[20:])
    whole = write_ndjson(tmp_path / "X.ndjson", lines)
    cfg = config_file(tmp_path, extra='[replay]\nsymbol = "X"\n')

    _, split = replay(tmp_path / "s", [second, first], config=cfg)
    _, joined = replay(tmp_path / "j", [whole], config=cfg)

    assert split["book"] == joined["book"]
    assert split["fills"] == joined["fills"]


def test_paced_replay_follows_recorded_time(tmp_path: Path) -> None:
    lines = [snapshot(T0, [[100.0, 1.0]], [[100.01, 1.0]])]
    lines += [delta(T0 + i * 100 * MS, bids=[[99.99, float(i)]]) for i in range(1, 5)]
    data = write_ndjson(tmp_path / "X.ndjson", lines)

    import time

    t = time.monotonic()
    code, report = replay(tmp_path, [data], "--speed", "2")
    elapsed = time.monotonic() - t

    assert code == EXIT_OK
    assert report["events"]["delta"] == 4
    assert elapsed >= 0.2 - 0.02, "400 ms of recorded time at 2x takes at least 200 ms"


@pytest.mark.skipif(not (Path(__file__).parent.parent / "replay_data" / "sample.rec.zst").exists(),
                    reason="the shipped sample has not been generated")
def test_the_shipped_sample_replays_with_the_shipped_config(tmp_path: Path) -> None:
    from tests.conftest import SAMPLE

    code, report = replay(tmp_path, [SAMPLE], config=CONFIG)

    assert code == EXIT_OK
    assert report["events"]["bad_lines"] == 0
    assert report["book"]["SIMUSD"]["crossed"] == 0
    assert report["orders"] > 0 and report["fills_total"] > 0


def test_a_recording_of_a_venue_without_adapter_is_an_input_error(tmp_path: Path, capsys) -> None:
    from daemon.sources import RecordingWriter

    path = tmp_path / "s.rec.zst"
    with RecordingWriter(path, venue="nasdaq-itch", symbols=["X"]) as w:
        w.write(T0, "book", "X", {"anything": 1})

    code, _ = replay(tmp_path, [path])

    assert code == EXIT_INPUT
    assert "no adapter for venue 'nasdaq-itch'" in capsys.readouterr().err


def test_a_recording_replays_like_the_normalized_file_it_was_made_from(tmp_path: Path) -> None:
    from daemon.sources import RecordingWriter

    lines = bid_heavy_session()
    ndjson = write_ndjson(tmp_path / "X.ndjson", lines)
    rec = tmp_path / "X.rec.zst"
    with RecordingWriter(rec, venue="generic", symbols=["X"]) as w:
        for line in lines:
            w.write(line["ts"], "trade" if line["kind"] == "trade" else "book", "X", line)

    _, from_ndjson = replay(tmp_path / "a", [ndjson])
    _, from_recording = replay(tmp_path / "b", [rec])

    for key in ("events", "book", "fills", "orders", "pnl", "position"):
        assert from_recording[key] == from_ndjson[key], key


def test_progress_bar_on_a_terminal_and_summary_on_stdout(tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    data = write_ndjson(tmp_path / "X.ndjson", bid_heavy_session())
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)

    code = main(["replay", str(data), "--config", str(config_file(tmp_path))])

    out, err = capsys.readouterr()
    assert code == EXIT_OK
    assert "replay" in err and "msg" in err, "tqdm draws its bar on stderr"
    assert out.startswith("replayed 43 messages")


def test_quiet_prints_nothing(tmp_path: Path, capsys) -> None:
    data = write_ndjson(tmp_path / "X.ndjson", bid_heavy_session())

    assert main(["replay", str(data), "--config", str(config_file(tmp_path)), "--quiet"]) == EXIT_OK

    assert capsys.readouterr().out == ""


def test_python_dash_m_daemon_runs_the_cli() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "daemon", "--version"], capture_output=True, text=True, check=False)

    assert done.returncode == 0 and done.stdout.startswith("depthd ")


def test_a_gap_of_years_between_files_costs_no_samples(tmp_path: Path) -> None:
    import time

    early = write_ndjson(tmp_path / "A.ndjson", bid_heavy_session(10))
    late_lines = [dict(x, ts=x["ts"] + 3 * 365 * 86_400 * 10**9) for x in bid_heavy_session(10)]
    late = write_ndjson(tmp_path / "B.ndjson", late_lines)
    cfg = config_file(tmp_path, extra='[features]\npause_after_ms = 1000\n')

    t = time.monotonic()
    code, report = replay(tmp_path, [early, late], config=cfg)

    assert code == EXIT_OK
    assert time.monotonic() - t < 10
    assert report["events"]["samples"] < 200, "samples only near the data, none across three empty years"
    assert set(report["book"]) == {"A", "B"}


def test_a_paced_replay_shortens_feed_gaps_to_pause_after(tmp_path: Path) -> None:
    import time

    lines = [snapshot(T0, [[100.0, 1.0]], [[100.01, 1.0]]), delta(T0 + 3600 * 1000 * MS, bids=[[99.99, 1.0]])]
    data = write_ndjson(tmp_path / "X.ndjson", lines)
    cfg = config_file(tmp_path, extra='[features]\npause_after_ms = 100\n')

    t = time.monotonic()
    code, report = replay(tmp_path, [data], "--speed", "1", config=cfg)

    assert code == EXIT_OK and report["events"]["delta"] == 1
    assert 0.09 <= time.monotonic() - t < 5, "an hour's gap takes pause_after (100 ms), not an hour"


def test_skipped_lines_are_grouped_by_kind_of_problem(tmp_path: Path) -> None:
    lines = bid_heavy_session()
    lines.insert(3, {"ts": T0 + 100 * MS, "kind": "delta", "bids": [[100.001, 1]], "asks": []})
    lines.insert(4, {"ts": T0 + 100 * MS, "kind": "delta", "bids": [[100.003, 1]], "asks": []})
    lines.insert(5, {"ts": 7, "kind": "delta", "bids": [], "asks": []})
    data = write_ndjson(tmp_path / "X.ndjson", lines)

    _, report = replay(tmp_path, [data], "--skip-bad")

    assert report["bad_lines_by_problem"] == {"'bids' has a price off the tick grid N": 2,
                                              "ts N goes backwards (previous line's ts is N)": 1}
