"""Golden replay: the shipped sample, end to end with the shipped config, must give exactly the
committed report (orders, fills, PnL, books). A deliberate change of behaviour regenerates it:

    .venv/bin/python tests/test_golden_replay.py   # rewrites tests/golden/sample_report.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "sample_report.json"
SAMPLE = REPO / "replay_data" / "sample.rec.zst"


def sample_report() -> dict:
    """The report of the shipped sample under config.toml, without the machine-specific input path."""
    from daemon.config import load_settings
    from daemon.replay import replay_files
    from daemon.report import build_report

    settings = load_settings(REPO / "config.toml")
    report = build_report(replay_files(settings, [SAMPLE]), settings.report.top_levels)
    report["inputs"] = [SAMPLE.name]
    report["venues"] = {SAMPLE.name: next(iter(report["venues"].values()))}
    return json.loads(orjson.dumps(report))


def test_sample_replay_matches_the_golden_report() -> None:
    expected = json.loads(GOLDEN.read_text())

    actual = sample_report()

    assert actual["fills"] == expected["fills"]
    assert actual == expected


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    GOLDEN.write_bytes(orjson.dumps(sample_report(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    print(f"wrote {GOLDEN}")
