"""Every real dataset in ../shared/data replays to the independent reference's final book.

The reference (`expected_final_book.txt` beside each dataset) was made by a plain dict book that
shares no code with depthd. Skipped, with the reason, when ../shared is absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.config import settings_from_dict
from daemon.replay import replay_files
from daemon.report import build_report
from tests.conftest import SHARED_DATA

DATASETS = sorted(p.name for p in SHARED_DATA.glob("*/")) if SHARED_DATA.is_dir() else []


def parse_reference(path: Path) -> dict:
    """The figures of an expected_final_book.txt: line counts, level updates, crossings, top 5."""
    text = path.read_text()
    ref: dict = {"lines": {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text.split("\n")[1])}}
    for key in ("level_updates_applied", "deletes_of_absent_levels", "crossed_book_occurrences",
                "locked_book_occurrences"):
        ref[key] = int(re.search(rf"^{key}[^:]*: (\d+)", text, re.M).group(1))
    for side in ("asks", "bids"):
        block = re.search(rf"final top 5 {side} \(price qty\), best first:\n((?:  .+\n?)*)", text).group(1)
        ref[side] = [[float(p), float(q)] for p, q in (row.split() for row in block.strip().splitlines())]
    return ref


@pytest.mark.parametrize("dataset", DATASETS or ["<none>"])
def test_replay_reproduces_the_reference_final_book(shared_data: Path, dataset: str) -> None:
    folder = shared_data / dataset
    (data,) = sorted(folder.glob("normalized.ndjson*"))
    ref = parse_reference(folder / "expected_final_book.txt")
    settings = settings_from_dict({"daemon": {"log_level": "error"}, "replay": {"symbol": dataset}})

    report = build_report(replay_files(settings, [data]))

    book = report["book"][dataset]
    assert book["final"]["bids"] == ref["bids"]
    assert book["final"]["asks"] == ref["asks"]
    assert book["crossed"] == ref["crossed_book_occurrences"] + ref["locked_book_occurrences"] == 0
    assert book["state"] == "LIVE" and book["states"]["INVALID"] == 0
    assert book["absent_deletes"] == ref["deletes_of_absent_levels"]
    events = report["events"]
    assert events["level_updates"] == ref["level_updates_applied"]
    assert {k: events[k] for k in ref["lines"]} == ref["lines"]
    assert events["bad_lines"] == 0
