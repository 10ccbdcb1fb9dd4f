"""config.toml -> Settings: the shipped file loads; every bad file is a ConfigError naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cli import EXIT_CONFIG, EXIT_OK, main
from daemon.config import Settings, load_settings, settings_from_dict
from daemon.errors import ConfigError
from daemon.instruments import Instrument

SHIPPED = Path(__file__).resolve().parents[1] / "config.toml"


def write(tmp_path: Path, text: str, name: str = "depthd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    """Load `text` as a config file; the ConfigError message it must raise."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    return path, str(exc.value)


# --- the shipped file ------------------------------------------------------------------------------


def test_shipped_config_loads() -> None:
    settings = load_settings(SHIPPED)

    assert isinstance(settings, Settings)
    assert settings.strategy.name == "imbalance"
    assert settings.instrument("SIMUSD") == Instrument("SIMUSD", 0.01, 0.0001)
    assert settings.risk.limits_for("SIMUSD").max_order_qty == 0.5


def test_empty_config_gives_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))

    assert settings == Settings()
    assert settings.features.sample_interval_ms == 100


# --- unknown keys ------------------------------------------------------------------------------------


def test_unknown_top_level_key_names_file_and_key(tmp_path: Path) -> None:
    path, message = config_error(tmp_path, "[riks]\nmax_position = 1.0\n")

    assert str(path) in message
    assert "riks: unknown key" in message


def test_unknown_nested_key_names_file_and_dotted_key(tmp_path: Path) -> None:
    path, message = config_error(tmp_path, "[risk]\nmax_positon = 1.0\n")

    assert message.startswith(f"{path}: ")
    assert "risk.max_positon: unknown key" in message


def test_unknown_key_in_symbol_table_names_dotted_key(tmp_path: Path) -> None:
    _, message = config_error(tmp_path, "[risk.symbols.BTC]\nmax_position = 1.0\nmax_order_qty = 0.1\n"
                                        "max_notional = 10.0\nmax_ordr = 1\n")

    assert "risk.symbols.BTC.max_ordr: unknown key" in message


def test_every_problem_is_reported(tmp_path: Path) -> None:
    _, message = config_error(tmp_path, "[risk]\nmax_positon = 1.0\n[paper]\nlatency = 5\n")

    assert "risk.max_positon" in message
    assert "paper.latency" in message


# --- types and ranges ----------------------------------------------------------------------------------


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path, message = config_error(tmp_path, '[risk]\nmax_position = "lots"\n')

    assert str(path) in message
    assert "risk.max_position" in message
    assert "'lots'" in message


def test_wrong_choice_names_key(tmp_path: Path) -> None:
    _, message = config_error(tmp_path, '[daemon]\nmode = "yolo"\n')

    assert "daemon.mode" in message
    assert "'yolo'" in message


def test_out_of_range_value_names_key_and_value(tmp_path: Path) -> None:
    path, message = config_error(tmp_path, "[features]\nsample_interval_ms = 0\n")

    assert str(path) in message
    assert "features.sample_interval_ms" in message
    assert "(got 0)" in message


@pytest.mark.parametrize(("section", "key", "value"), [
    ("risk", "max_notional", "-1.0"),
    ("paper", "latency_us", "-1"),
    ("report", "top_levels", "0"),
    ("replay", "default_lot_size", "0.0"),
    ("daemon", "instance", '"has space"'),
])
def test_out_of_range_values_are_refused(tmp_path: Path, section: str, key: str, value: str) -> None:
    _, message = config_error(tmp_path, f"[{section}]\n{key} = {value}\n")

    assert f"{section}.{key}" in message


def test_symbol_limits_left_out_take_the_defaults_and_unknown_ones_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text("[risk]\nmax_notional = 500.0\n[risk.symbols.BTC]\nmax_position = 1.0\nmax_order_qty = 0.1\n")
    lim = load_settings(path).risk.limits_for("BTC")
    assert (lim.max_position, lim.max_order_qty, lim.max_notional) == (1.0, 0.1, 500.0)

    _, message = config_error(tmp_path, "[risk.symbols.BTC]\nmax_positon = 1.0\n")
    assert "risk.symbols.BTC.max_positon" in message


# --- unreadable files -----------------------------------------------------------------------------------


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path, message = config_error(tmp_path, "[risk\nmax_position = 1.0\n")

    assert str(path) in message
    assert "not valid TOML" in message


def test_missing_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"

    with pytest.raises(ConfigError, match="no such config file") as exc:
        load_settings(path)

    assert str(path) in str(exc.value)


def test_undecodable_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[daemon]\ninstance = "caf\xe9"\n')

    with pytest.raises(ConfigError, match="cannot read config file") as exc:
        load_settings(path)

    assert str(path) in str(exc.value)


# --- strategy ----------------------------------------------------------------------------------------------


def test_unknown_strategy_name_is_refused(tmp_path: Path) -> None:
    path, message = config_error(tmp_path, '[strategy]\nname = "no_such_strategy"\n')

    assert str(path) in message
    assert "strategy" in message and "no_such_strategy" in message


def test_malformed_strategy_name_names_key(tmp_path: Path) -> None:
    _, message = config_error(tmp_path, '[strategy]\nname = "../evil"\n')

    assert "strategy.name" in message


def test_bad_strategy_param_names_dotted_key(tmp_path: Path) -> None:
    path, message = config_error(tmp_path, "[strategy.params]\nthreshold = 2\n")

    assert message.startswith(f"{path}: strategy.params.threshold: ")
    assert "(got 2)" in message


def test_unknown_strategy_param_names_dotted_key(tmp_path: Path) -> None:
    _, message = config_error(tmp_path, "[strategy.params]\ntreshold = 0.3\n")

    assert "strategy.params.treshold: unknown key" in message


def test_unknown_feature_param_is_a_config_error(tmp_path: Path) -> None:
    _, message = config_error(tmp_path, '[strategy.params]\nfeature = "imb_7"\n')

    assert "strategy.params" in message and "imb_7" in message


# --- cross-field rules ------------------------------------------------------------------------------------


def test_max_order_qty_above_max_position_is_refused(tmp_path: Path) -> None:
    path, message = config_error(tmp_path, "[risk]\nmax_position = 1.0\nmax_order_qty = 2.0\n")

    assert str(path) in message
    assert "max_order_qty exceeds max_position" in message


def test_symbol_max_order_qty_above_its_max_position_is_refused(tmp_path: Path) -> None:
    _, message = config_error(tmp_path, "[risk.symbols.BTC]\nmax_position = 0.1\nmax_order_qty = 0.2\n"
                                        "max_notional = 10.0\n")

    assert "risk.symbols.BTC: max_order_qty exceeds max_position" in message


# --- settings_from_dict and instruments ----------------------------------------------------------------------


def test_settings_from_dict_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^inline: risk.max_positon: unknown key"):
        settings_from_dict({"risk": {"max_positon": 1}}, source="inline")


def test_instrument_uses_its_table() -> None:
    settings = settings_from_dict({"instruments": {"BTC": {"tick_size": 0.5, "lot_size": 0.001}}})

    assert settings.instrument("BTC") == Instrument("BTC", 0.5, 0.001)


def test_instrument_without_table_falls_back_to_replay_defaults() -> None:
    settings = settings_from_dict({"instruments": {"BTC": {"tick_size": 0.5, "lot_size": 0.001}},
                                   "replay": {"default_tick_size": 0.25, "default_lot_size": 0.01}})

    assert settings.instrument("ETH") == Instrument("ETH", 0.25, 0.01)


def test_settings_are_frozen() -> None:
    settings = settings_from_dict({})

    with pytest.raises(ValueError, match="frozen"):
        settings.features.sample_interval_ms = 5  # type: ignore[misc]


# --- check-config ---------------------------------------------------------------------------------------------


def test_check_config_accepts_shipped_file(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check-config", "--config", str(SHIPPED)])

    out, err = capsys.readouterr()
    assert code == EXIT_OK == 0
    assert "OK" in out
    assert err == ""


def test_check_config_refuses_bad_file_with_message_on_stderr(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[risk]\nmax_positon = 1.0\n")

    code = main(["check-config", "--config", str(path)])

    out, err = capsys.readouterr()
    assert code == EXIT_CONFIG == 3
    assert out == ""
    assert f"{path}: risk.max_positon: unknown key" in err


def test_check_config_refuses_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check-config", "--config", str(tmp_path / "absent.toml")])

    assert code == 3
    assert "no such config file" in capsys.readouterr().err


def test_check_config_refuses_unknown_feature_with_exit_code_3(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[strategy.params]\nfeature = "imb_7"\n')

    code = main(["check-config", "--config", str(path)])

    assert code == 3
    assert "imb_7" in capsys.readouterr().err
