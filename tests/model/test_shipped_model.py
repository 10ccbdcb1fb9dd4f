"""The shipped model: trained by the documented command through the replay path, schema-checked at load,
and driving strategies/onnx_signal.py in a replay of the sample session."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from daemon.cli import main
from daemon.config import load_settings
from daemon.features import NAMES, SCHEMA_VERSION
from daemon.model.dataset import collect_features, inputs_hash
from daemon.model.scorer import Scorer
from daemon.model.train import model_inputs, predict, train_table
from daemon.replay import replay_files
from daemon.report import build_report

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "replay_data" / "sample.rec.zst"
MODEL = REPO / "strategies" / "models" / "sample.onnx"
# The documented command (README, "Models"), run from the repo root.
COMMAND = ["train", str(SAMPLE), "--config", str(REPO / "config.toml"), "--label", "mid_ret_bps@10s"]


def test_shipped_model_loads_with_its_schema_checked() -> None:
    scorer = Scorer.load(MODEL)

    meta = scorer.meta
    assert meta.schema_version == SCHEMA_VERSION
    assert set(meta.feature_names) <= set(NAMES)
    assert meta.label == "mid_ret_bps@10s" and meta.horizon_ms == 10_000 and meta.task == "regression"
    assert set(meta.histograms) == set(meta.feature_names)
    assert {"folds", "mean", "holdout"} <= set(meta.metrics)
    assert meta.data_hash == inputs_hash([SAMPLE], load_settings(REPO / "config.toml"))


def test_the_documented_command_rebuilds_the_shipped_model_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "sample.onnx"

    assert main([*COMMAND, "--out", str(out), "--quiet"]) == 0

    assert out.read_bytes() == MODEL.read_bytes(), (
        "strategies/models/sample.onnx is stale: rebuild it with `depthd train ...` (README, Models)")


def test_shipped_model_drives_onnx_signal_in_a_replay() -> None:
    settings = load_settings(REPO / "config.onnx.toml")

    result = replay_files(settings, [SAMPLE])

    eng = result.path.engine
    assert eng.model is not None and eng.strategy is not None
    assert type(eng.strategy).__name__ == "OnnxSignalStrategy"
    assert eng.model.scored > 10_000 and eng.model.score_errors == 0
    assert eng.counts["orders"] > 0 and eng.counts["fills"] > 0
    report = build_report(result, 5)
    assert report["model"]["sha256"] == eng.model.scorer.model_hash
    assert report["model"]["scored"] == eng.model.scored


def test_train_then_score_parity_on_the_live_scoring_path(tmp_path: Path) -> None:
    table, _ = collect_features(load_settings(REPO / "config.toml"), [SAMPLE])
    result = train_table(table, "mid_ret_bps@1s", folds=2, bench_rows=1000)
    path = tmp_path / "m.onnx"
    path.write_bytes(result.onnx_bytes)
    scorer = Scorer.load(path)
    rows = np.flatnonzero(table.live)[-500:]

    live = np.array([scorer.score(table.values[i]) for i in rows])
    native = predict(result.model, model_inputs(table, result.meta.feature_names)[rows], "regression")

    assert not any(math.isnan(x) for x in live)
    np.testing.assert_allclose(live, native, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bad", ["mid_ret_bps", "mid_ret_bps@", "mid_ret_bps@7ms", "price@1s"])
def test_train_refuses_a_bad_label(tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(SAMPLE), "--label", bad, "--out", str(tmp_path / "m.onnx")])

    assert code == 3
    assert "label" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
