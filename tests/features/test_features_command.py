"""`depthd features`: the rows it writes are the features the strategy sees in a replay of the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.cli import EXIT_CONFIG, EXIT_OK, main
from daemon.config import load_settings
from daemon.features import NAMES, SCHEMA_VERSION, FeatureSample
from daemon.features.table import FeatureTable
from daemon.replay import Replay

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "replay_data" / "sample.rec.zst"
CONFIG = REPO / "config.toml"


@pytest.fixture(scope="module")
def strategy_seen() -> list[FeatureSample]:
    """Every sample the configured strategy was handed in a full replay (orders, fills and all)."""
    replay = Replay(load_settings(CONFIG), [str(SAMPLE)])
    strategy = replay.path.engine.strategy
    seen: list[FeatureSample] = []
    inner = strategy.on_sample

    def record(sample: FeatureSample):
        seen.append(FeatureSample(sample.symbol, sample.ts, sample.values.copy(), sample.live))
        return inner(sample)

    strategy.on_sample = record
    result = replay.run()
    assert result.path.engine.counts["fills"] > 0  # the replay traded: orders did not change the features
    return seen


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_features_rows_equal_the_features_the_strategy_saw(tmp_path: Path, suffix: str,
                                                           strategy_seen: list[FeatureSample]) -> None:
    out = tmp_path / f"features{suffix}"

    assert main(["features", str(SAMPLE), "--config", str(CONFIG), "--out", str(out), "--quiet"]) == EXIT_OK

    table = FeatureTable.read(out)
    assert table.names == NAMES and table.schema_version == SCHEMA_VERSION
    assert len(table) == len(strategy_seen) > 10_000
    assert np.array_equal(table.ts, [s.ts for s in strategy_seen])
    assert list(table.symbol) == [s.symbol for s in strategy_seen]
    assert np.array_equal(table.live, [s.live for s in strategy_seen])
    expected = np.stack([s.values for s in strategy_seen])
    # Parquet keeps float64 bits; CSV goes through decimal text and back
    if suffix == ".parquet":
        assert np.array_equal(table.values, expected, equal_nan=True)
    else:
        np.testing.assert_allclose(table.values, expected, rtol=1e-15, atol=0)
        assert np.array_equal(np.isnan(table.values), np.isnan(expected))


def test_features_says_which_values_are_missing(tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    main(["features", str(SAMPLE), "--config", str(CONFIG), "--out", str(out), "--quiet"])
    table = FeatureTable.read(out)

    first = table.values[0]
    # the first sample comes before any window has filled: flow features are NaN, not 0
    assert np.isnan(first[NAMES.index("ofi_60s")]) and np.isnan(first[NAMES.index("ret_60s_bps")])
    assert table.complete_rows().sum() > 0.9 * len(table)


def test_features_refuses_an_output_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["features", str(SAMPLE), "--config", str(CONFIG), "--out", str(tmp_path / "f.xlsx")])

    assert code == EXIT_CONFIG
    assert ".parquet or .csv" in capsys.readouterr().err
