"""Typed configuration: unknown keys are errors, env variables override files, values are coerced."""

from pathlib import Path

import pytest

from client.config import SearchConfig
from deltanas.config import ConfigError, build, describe, load_config
from evaluator_svc.config import ENV_PREFIX, EvaluatorConfig


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "evaluator.toml"
    path.write_text("port = 1\nslot = 2\n")
    with pytest.raises(ConfigError, match=r"unknown key.*slot"):
        load_config(EvaluatorConfig, path, ENV_PREFIX)


def test_env_overrides_file_and_is_coerced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "evaluator.toml"
    path.write_text("port = 1\nslots = 2\n")
    monkeypatch.setenv("DELTANAS_EVALUATOR_SLOTS", "3")
    monkeypatch.setenv("DELTANAS_EVALUATOR_DATA_ROOT", str(tmp_path))
    cfg = load_config(EvaluatorConfig, path, ENV_PREFIX)
    assert (cfg.port, cfg.slots, cfg.data_root) == (1, 3, tmp_path)


def test_bad_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTANAS_EVALUATOR_SLOTS", "many")
    with pytest.raises(ConfigError, match="slots"):
        load_config(EvaluatorConfig, None, ENV_PREFIX)


def test_every_field_has_help() -> None:
    assert all(help_text for _, _, help_text in describe(EvaluatorConfig))
    assert all(help_text for _, _, help_text in describe(SearchConfig))


@pytest.mark.parametrize(
    ("key", "value"),
    [("candidates", 0), ("cycles", 0), ("accept_accuracy", 1.5), ("modes", ["diff"]), ("datasets", []),
     ("decoding", "greedy")],
)
def test_search_config_rejects_bad_values_before_work(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        build(SearchConfig, {key: value})


def test_presets_load() -> None:
    for preset in Path("client/presets").glob("*.toml"):
        import tomllib

        cfg = build(SearchConfig, tomllib.loads(preset.read_text()), str(preset))
        assert cfg.candidates >= 1 and cfg.search_id
