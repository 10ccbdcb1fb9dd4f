"""`depthd train` on synthetic feature tables: signal is found, ONNX matches, metadata round-trips."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from daemon.errors import ConfigError, ModelError
from daemon.features import schema
from daemon.features.table import FeatureTable
from daemon.model import export, train
from daemon.model.histograms import bin_counts, reference_histograms
from daemon.model.metadata import ModelMeta

STEP_NS = 100_000_000  # 100 ms cadence
REPO = Path(__file__).resolve().parents[2]


def synthetic_table(steps: int = 1600, symbols: tuple[str, ...] = ("AAA", "BBB"), seed: int = 1) -> FeatureTable:
    """Two symbols sampled every 100 ms; imb_l1 carries the forward 1 s return, other features are noise."""
    rng = np.random.default_rng(seed)
    ts_all, sym_all, vals_all = [], [], []
    for k, sym in enumerate(symbols):
        ts = 1_700_000_000_000_000_000 + np.arange(steps, dtype=np.int64) * STEP_NS
        mid = 100.0 * (1 + k) * np.exp(np.cumsum(rng.normal(0, 2e-4, steps)))
        fwd = np.full(steps, np.nan)
        fwd[:-10] = (mid[10:] - mid[:-10]) / mid[:-10] * 1e4
        v = rng.normal(size=(steps, len(schema.NAMES)))
        v[:, schema.INDEX["mid"]] = mid
        v[:, schema.INDEX["microprice"]] = mid * (1 + rng.normal(0, 1e-5, steps))
        v[:, schema.INDEX["wmid_5"]] = mid * (1 + rng.normal(0, 1e-5, steps))
        v[:, schema.INDEX["imb_l1"]] = np.tanh(np.nan_to_num(fwd) / 10 + rng.normal(0, 0.5, steps))
        # large, finely spaced values: float32 rounding of tree thresholds would bite here
        v[:, schema.INDEX["bid_notional_10bp"]] = 1e7 + np.round(rng.normal(0, 3, steps))
        v[:, schema.INDEX["ask_notional_10bp"]] = 1e7 + rng.normal(0, 3, steps) + np.nan_to_num(fwd)
        v[rng.random(v.shape) < 0.03] = np.nan
        v[:, schema.INDEX["mid"]] = mid
        keep = np.ones(steps, bool)
        keep[700:730] = False  # a feed gap: sampling paused
        ts_all.append(ts[keep])
        sym_all.append(np.full(keep.sum(), sym, dtype=object))
        vals_all.append(v[keep])
    ts, sym, vals = np.concatenate(ts_all), np.concatenate(sym_all), np.concatenate(vals_all)
    order = np.lexsort((sym.astype(str), ts))
    return FeatureTable(schema.NAMES, schema.SCHEMA_VERSION, ts[order], sym[order], np.ones(len(ts), bool),
                        vals[order], {"depthd.sample_interval_ms": "100"})


def write_table(tmp_path: Path, table: FeatureTable | None = None) -> Path:
    path = tmp_path / "features.parquet"
    (table or synthetic_table()).write(path)
    return path


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def table() -> FeatureTable:
    return synthetic_table()


@pytest.fixture(scope="module")
def lgbm(table: FeatureTable) -> train.TrainResult:
    return train.train_table(table, "mid_ret_bps@1s", bench_rows=2000)


def test_lightgbm_finds_the_predictive_feature_out_of_sample(lgbm: train.TrainResult) -> None:
    assert len(lgbm.folds) == 5
    assert all(f["ic"] > 0.3 for f in lgbm.folds)
    assert lgbm.mean["ic"] > 0.3 and lgbm.holdout["ic"] > 0.3
    assert lgbm.holdout["hit_rate"] > 0.6
    assert lgbm.meta.trainer.startswith("lightgbm ")
    assert lgbm.throughput_rows_s > 0


def test_default_features_leave_out_absolute_prices(lgbm: train.TrainResult) -> None:
    prices = {f.name for f in schema.FEATURES if f.unit == "price"}

    assert prices == {"mid", "microprice", "wmid_5"}
    assert lgbm.meta.feature_names == tuple(n for n in schema.NAMES if n not in prices)


def test_onnx_matches_native_model_on_the_holdout(lgbm: train.TrainResult, table: FeatureTable) -> None:
    # large, finely spaced features (1e7 +/- a few) are in the table: float32 tree thresholds would flip rows
    assert lgbm.parity_max_abs_diff < 1e-5
    sess = ort.InferenceSession(lgbm.onnx_bytes, providers=["CPUExecutionProvider"])
    x = train.model_inputs(table, lgbm.meta.feature_names)[-300:]
    out = sess.run([lgbm.meta.output_name], {"features": x.astype(np.float32)})[0]
    assert out.shape == (300, 1)
    np.testing.assert_allclose(out[:, 0], lgbm.model.predict(x), atol=1e-5)


def test_same_inputs_give_byte_identical_onnx(lgbm: train.TrainResult, table: FeatureTable) -> None:
    again = train.train_table(table, "mid_ret_bps@1s", bench_rows=2000)

    assert again.onnx_bytes == lgbm.onnx_bytes


def test_binary_label_scores_the_probability_of_an_up_move(table: FeatureTable) -> None:
    result = train.train_table(table, "mid_up@1s", bench_rows=2000)

    assert (result.meta.task, result.meta.output_name, result.meta.output_column) == ("binary", "probabilities", 1)
    assert result.holdout["ic"] > 0.3 and result.holdout["accuracy"] > 0.6
    assert {"logloss", "accuracy"} <= set(result.holdout) and "rmse" not in result.holdout
    assert result.parity_max_abs_diff < 1e-5
    sess = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])
    x = train.model_inputs(table, result.meta.feature_names)[:50].astype(np.float32)
    proba = sess.run(["probabilities"], {"features": x})[0]
    assert proba.shape == (50, 2) and np.allclose(proba.sum(axis=1), 1, atol=1e-6)


@pytest.mark.parametrize("label", ["mid_ret_bps@1s", "mid_up@500ms"])
def test_sklearn_trainer_converts_and_matches(table: FeatureTable, label: str) -> None:
    result = train.train_table(table, label, trainer="sklearn", bench_rows=2000)

    assert result.meta.trainer.startswith("sklearn ")
    assert result.holdout["ic"] > 0.3
    assert result.parity_max_abs_diff < 1e-5


def test_features_and_exclude_choose_the_inputs(table: FeatureTable) -> None:
    result = train.train_table(table, "mid_ret_bps@1s", trainer="sklearn", features=["imb_l1", "spread_bps", "mid"],
                               exclude=["spread_bps"], bench_rows=100)

    assert result.meta.feature_names == ("imb_l1", "mid")
    assert set(result.meta.histograms) == {"imb_l1", "mid"}


def test_unknown_feature_and_bad_trainer_are_config_errors(table: FeatureTable) -> None:
    with pytest.raises(ConfigError, match=r"unknown feature.*nope"):
        train.train_table(table, "mid_ret_bps@1s", features=["imb_l1", "nope"])
    with pytest.raises(ConfigError, match="unknown trainer"):
        train.train_table(table, "mid_ret_bps@1s", trainer="xgboost")
    with pytest.raises(ConfigError, match="bad label"):
        train.train_table(table, "ret@1s")


def test_too_few_rows_is_a_model_error() -> None:
    small = synthetic_table(steps=300)

    with pytest.raises(ModelError, match="training rows"):
        train.train_table(small, "mid_ret_bps@1s", trainer="sklearn")


def test_metadata_round_trips_through_the_written_file(lgbm: train.TrainResult, table: FeatureTable,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    export.write_model(lgbm.onnx_bytes, path)

    props = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    meta = ModelMeta.from_props(props, str(path))

    assert meta == lgbm.meta
    assert (meta.label, meta.horizon_ms, meta.task, meta.schema_version) == ("mid_ret_bps@1s", 1000, "regression",
                                                                             schema.SCHEMA_VERSION)
    assert (meta.output_name, meta.output_column) == ("variable", -1)
    assert meta.data_hash == train.table_hash(table)
    assert set(meta.metrics) == {"folds", "mean", "holdout"} and len(meta.metrics["folds"]) == 5
    assert set(meta.histograms) == set(meta.feature_names)
    assert not list(tmp_path.glob("*.tmp"))


def test_cmd_train_on_a_feature_table_writes_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_table(tmp_path)
    out = tmp_path / "model.onnx"

    code = train.cmd_train(cli_args(str(src), "--label", "mid_ret_bps@1s", "--out", str(out), "--trainer", "sklearn"))

    assert code == 0 and out.exists()
    text = capsys.readouterr().out
    assert "holdout" in text and "mean" in text and f"model: {out}" in text and "rows/s" in text
    meta = ModelMeta.from_props(ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map)
    assert meta.data_hash == train.table_hash(FeatureTable.read(src))


def test_parity_failure_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_table(tmp_path)
    out = tmp_path / "model.onnx"
    real = export.ort_predict
    monkeypatch.setattr(export, "ort_predict", lambda *a, **k: real(*a, **k) + 1e-3)

    with pytest.raises(ModelError, match="parity check failed"):
        train.cmd_train(cli_args(str(src), "--label", "mid_ret_bps@1s", "--out", str(out), "--quiet"))

    assert list(tmp_path.iterdir()) == [src]


def test_cmd_train_refuses_bad_arguments_before_training(tmp_path: Path) -> None:
    src = write_table(tmp_path)

    with pytest.raises(ConfigError, match=r"\.onnx"):
        train.cmd_train(cli_args(str(src), "--label", "mid_up@1s", "--out", str(tmp_path / "m.bin")))
    with pytest.raises(ConfigError, match="not both"):
        train.cmd_train(cli_args(str(src), "x.ndjson", "--label", "mid_up@1s", "--out", str(tmp_path / "m.onnx")))
    with pytest.raises(ConfigError, match="bad label"):
        train.cmd_train(cli_args(str(src), "--label", "up@1s", "--out", str(tmp_path / "m.onnx")))


def test_reference_histograms_follow_the_metadata_format() -> None:
    x = np.column_stack([np.arange(100.0), np.full(100, 7.0), np.r_[np.full(80, np.nan), np.arange(20.0)],
                         np.full(100, np.nan)])

    hists = reference_histograms(x, ["ramp", "const", "sparse", "empty"])

    assert len(hists["ramp"].edges) == 9 and hists["ramp"].fractions[:10] == pytest.approx([0.1] * 10)
    assert hists["ramp"].fractions[10] == 0
    assert hists["const"].edges == (7.0,) and hists["const"].fractions == (0.0, 1.0, 0.0)
    assert hists["sparse"].fractions[-1] == pytest.approx(0.8)
    assert hists["empty"].edges == () and hists["empty"].fractions == (0.0, 1.0)
    counts = bin_counts(x, [np.array(h.edges) for h in hists.values()])
    for c, h in zip(counts, hists.values(), strict=True):
        assert c.sum() == 100 and np.allclose(c / 100, h.fractions)


_TRAIN_IN_SUBPROCESS = """
import sys
from tests.model.test_train import synthetic_table
from daemon.model import train
result = train.train_table(synthetic_table(steps=900), "mid_ret_bps@1s", folds=1, bench_rows=100)
sys.stdout.buffer.write(result.onnx_bytes)
"""


def test_onnx_bytes_do_not_depend_on_the_interpreter_hash_seed() -> None:
    # converters iterate sets of strings: their order changes with PYTHONHASHSEED from one process to the next
    runs = [subprocess.Popen([sys.executable, "-c", _TRAIN_IN_SUBPROCESS], stdout=subprocess.PIPE, cwd=REPO,
                             env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)})
            for seed in ("0", "20")]  # these two seeds order onnxmltools' opsets differently
    outputs = [run.communicate(timeout=120)[0] for run in runs]

    assert all(run.returncode == 0 for run in runs)
    assert len(outputs[0]) > 1000 and outputs[0] == outputs[1]


def test_a_tight_cluster_gets_one_bin_not_deciles_split_by_noise() -> None:
    from daemon.model.histograms import histogram

    rng = np.random.default_rng(5)
    # 90% of values a hair apart around 1.0 (a one-tick spread in bps at slowly moving prices), 10% spread out
    values = np.r_[1.0 + rng.uniform(0, 0.003, 9000), rng.uniform(1.5, 5.0, 1000)]

    h = histogram(values)

    inside = [e for e in h.edges if 1.0 <= e <= 1.003]
    assert len(inside) <= 1
    assert any(1.003 < e <= 1.5 for e in h.edges)  # the tail still has a bin of its own
