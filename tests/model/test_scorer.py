"""Scorer: equals the native model, refuses models that do not fit, counts and survives failures."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

import daemon.model.scorer as scorer_mod
from daemon.errors import ModelError
from daemon.features import schema
from daemon.model.scorer import Scorer
from tests.model.conftest import FEATURES, LgbmCase, make_meta, ratio_model, save, schema_rows


def sample_rows(seed: int = 3, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


class Recorder:
    """Stands in for the module's structlog logger: keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.lines.append((level, event, kw))


# --- scores ----------------------------------------------------------------------------------------


def test_regressor_scores_equal_lightgbm(lgbm_regressor: LgbmCase) -> None:
    sc = Scorer.load(lgbm_regressor.path)
    X = sample_rows()
    native = lgbm_regressor.model.predict(X)
    full = schema_rows(X)
    got = np.array([sc.score(row) for row in full])
    assert np.abs(got - native).max() < 1e-5
    assert np.abs(sc.score_batch(full) - native).max() < 1e-5
    assert np.abs(sc.score_batch(X, model_order=True) - native).max() < 1e-5
    assert sc.errors == 0 and sc.healthy and sc.calls == len(X)


def test_nan_features_pass_through(lgbm_regressor: LgbmCase) -> None:
    sc = Scorer.load(lgbm_regressor.path)
    row = np.full(len(schema.NAMES), np.nan)
    y = sc.score(row)
    assert math.isfinite(y) and sc.healthy
    assert abs(y - lgbm_regressor.model.predict(np.full((1, len(FEATURES)), np.nan, np.float32))[0]) < 1e-5


def test_binary_score_is_class_1_probability(lgbm_classifier: LgbmCase) -> None:
    sc = Scorer.load(lgbm_classifier.path)
    X = sample_rows(4, 100)
    native = lgbm_classifier.model.predict_proba(X)[:, 1]
    full = schema_rows(X)
    assert np.abs(np.array([sc.score(r) for r in full]) - native).max() < 1e-5
    assert np.abs(sc.score_batch(full) - native).max() < 1e-5


def test_identity_for_reports(lgbm_regressor: LgbmCase) -> None:
    sc = Scorer.load(str(lgbm_regressor.path))
    assert sc.path == lgbm_regressor.path
    assert sc.model_hash == hashlib.sha256(lgbm_regressor.path.read_bytes()).hexdigest()
    assert sc.meta == lgbm_regressor.meta
    assert sc.feature_names == FEATURES
    assert sc.stats()["model_hash"] == sc.model_hash


def test_input_buffer_is_preallocated_and_reused(lgbm_regressor: LgbmCase) -> None:
    sc = Scorer.load(lgbm_regressor.path)
    buf = sc.input_row
    full = schema_rows(sample_rows(5, 3))
    for row in full:
        sc.score(row)
        assert sc.input_row is buf
        assert buf.dtype == np.float32 and buf.shape == (1, len(FEATURES))
        np.testing.assert_array_equal(buf[0], row[[schema.index_of(n) for n in FEATURES]].astype(np.float32))


def test_flat_double_output(tmp_path: Path) -> None:
    sc = Scorer.load(save(ratio_model(flat_double=True), tmp_path / "flat.onnx", make_meta()))
    assert sc.score(ratio_row(3.0, 4.0)) == 0.75
    assert math.isnan(sc.score(ratio_row(0.0, 0.0))) and sc.nan_scores == 1
    rows = np.stack([ratio_row(1.0, 2.0), ratio_row(1.0, 0.0)])
    np.testing.assert_array_equal(sc.score_batch(rows), [0.5, np.nan])


def test_batch_shape_checked(ratio_path: Path) -> None:
    sc = Scorer.load(ratio_path)
    with pytest.raises(ModelError, match="rows of 8 features"):
        sc.score_batch(np.zeros((3, 9)), model_order=True)
    assert sc.score_batch(np.zeros((0, len(schema.NAMES)))).shape == (0,)


# --- refusals --------------------------------------------------------------------------------------


def test_wrong_schema_version_and_unknown_feature_listed(tmp_path: Path) -> None:
    feats = ("imb_l1", "not_a_feature", "mid", "spread_bps", "ofi_10s", "tfi_1s", "ret_1s_bps", "imb_5")
    path = save(ratio_model(), tmp_path / "m.onnx", make_meta(feats, schema_version=schema.SCHEMA_VERSION + 1))
    with pytest.raises(ModelError) as err:
        Scorer.load(path)
    msg = str(err.value)
    assert str(path) in msg
    assert f"schema version {schema.SCHEMA_VERSION + 1}" in msg
    assert "not_a_feature" in msg


def test_other_schema_refused(ratio_path: Path) -> None:
    with pytest.raises(ModelError, match="schema version"):
        Scorer.load(ratio_path, schema_version=schema.SCHEMA_VERSION + 1)
    with pytest.raises(ModelError, match="does not compute: ofi_10s"):
        Scorer.load(ratio_path, names=[n for n in schema.NAMES if n != "ofi_10s"])


def test_model_without_depthd_metadata_refused(tmp_path: Path) -> None:
    path = save(ratio_model(), tmp_path / "plain.onnx", None)
    with pytest.raises(ModelError, match=r"plain\.onnx.*no 'depthd' metadata"):
        Scorer.load(path)


@pytest.mark.parametrize("data", [b"", b"not an onnx model at all \x00\xff" * 10])
def test_corrupt_file_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match=r"bad\.onnx: not a loadable ONNX model"):
        Scorer.load(path)


def test_truncated_file_refused(lgbm_regressor: LgbmCase, tmp_path: Path) -> None:
    path = tmp_path / "cut.onnx"
    path.write_bytes(lgbm_regressor.path.read_bytes()[:500])
    with pytest.raises(ModelError, match=r"cut\.onnx"):
        Scorer.load(path)


def test_missing_file_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope\.onnx: cannot read"):
        Scorer.load(tmp_path / "nope.onnx")


def test_wrong_input_width_refused(tmp_path: Path) -> None:
    path = save(ratio_model(width=len(FEATURES) + 1), tmp_path / "wide.onnx", make_meta())
    with pytest.raises(ModelError, match=r"wide\.onnx: input 'features' is tensor\(float\) of shape \[None, 9\]"):
        Scorer.load(path)


def test_double_input_refused(tmp_path: Path) -> None:
    path = save(ratio_model(dtype=TensorProto.DOUBLE), tmp_path / "dbl.onnx", make_meta())
    with pytest.raises(ModelError, match=r"tensor\(double\)"):
        Scorer.load(path)


def test_missing_output_refused(tmp_path: Path) -> None:
    path = save(ratio_model(), tmp_path / "out.onnx", make_meta(output_name="score"))
    with pytest.raises(ModelError, match="names output 'score' but the model's outputs are variable"):
        Scorer.load(path)


def test_output_column_out_of_range_refused(tmp_path: Path) -> None:
    path = save(ratio_model(), tmp_path / "col.onnx", make_meta(output_column=1))
    with pytest.raises(ModelError, match="output_column 1 is out of range"):
        Scorer.load(path)


def test_zipmap_output_refused(lgbm_classifier: LgbmCase, tmp_path: Path) -> None:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    onx = onnxmltools.convert_lightgbm(lgbm_classifier.model, zipmap=True,
                                       initial_types=[("features", FloatTensorType([None, len(FEATURES)]))])
    path = save(onx, tmp_path / "zip.onnx", lgbm_classifier.meta)
    with pytest.raises(ModelError, match="zipmap=False"):
        Scorer.load(path)


# --- failures ----------------------------------------------------------------------------------------


def ratio_row(num: float, den: float) -> np.ndarray:
    x = np.zeros((1, len(FEATURES)))
    x[0, 0], x[0, 1] = num, den
    return schema_rows(x)[0]


def test_non_finite_output_is_counted_nan_and_recovers(ratio_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(scorer_mod, "log", rec)
    sc = Scorer.load(ratio_path)
    assert sc.healthy
    assert sc.score(ratio_row(3.0, 2.0)) == 1.5
    assert math.isnan(sc.score(ratio_row(0.0, 0.0)))
    assert not sc.healthy and sc.consecutive_errors == 1
    assert math.isnan(sc.score(ratio_row(1.0, 0.0)))  # inf counts too
    assert (sc.errors, sc.nan_scores, sc.failures, sc.consecutive_errors) == (2, 2, 0, 2)
    assert sc.score(ratio_row(1.0, 4.0)) == 0.25
    assert sc.healthy and sc.consecutive_errors == 0 and sc.errors == 2
    assert [(lvl, ev) for lvl, ev, _ in rec.lines] == [
        ("warning", "model_score_failed"), ("debug", "model_score_failed"), ("info", "model_score_recovered")]
    assert rec.lines[0][2]["reason"] == "non-finite output"
    # A new run of failures is logged at warning again.
    sc.score(ratio_row(0.0, 0.0))
    assert rec.lines[-1][0] == "warning"


def test_nan_input_giving_nan_output_is_an_error(ratio_path: Path) -> None:
    sc = Scorer.load(ratio_path)
    assert math.isnan(sc.score(ratio_row(np.nan, 1.0)))
    assert sc.nan_scores == 1 and not sc.healthy


def test_raising_session_is_counted_and_recovers(lgbm_regressor: LgbmCase, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(scorer_mod, "log", rec)
    sc = Scorer.load(lgbm_regressor.path)
    row = schema_rows(sample_rows(6, 1))[0]
    good = sc.score(row)

    def boom(binding: object) -> None:
        raise RuntimeError("onnxruntime exploded\nsecond line")

    real = sc._run
    sc._run = boom
    assert math.isnan(sc.score(row)) and math.isnan(sc.score(row))
    assert (sc.errors, sc.failures, sc.nan_scores, sc.consecutive_errors, sc.healthy) == (2, 2, 0, 2, False)
    level, event, fields = rec.lines[0]
    assert (level, event, fields["reason"]) == ("warning", "model_score_failed", "onnxruntime exploded")
    assert isinstance(fields["exc_info"], RuntimeError)
    assert rec.lines[1][0] == "debug"
    sc._run = real
    assert sc.score(row) == good and sc.healthy


def test_short_vector_is_a_failure_not_a_crash(ratio_path: Path) -> None:
    sc = Scorer.load(ratio_path)
    assert math.isnan(sc.score(np.zeros(3)))
    assert sc.failures == 1
