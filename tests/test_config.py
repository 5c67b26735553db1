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


def test_generator_backend_fields_come_from_the_backends_options() -> None:
    """Each backend option is declared once, in its Options dataclass; the generator's config derives a field
    (None: the backend's default) whose help names every backend that takes it."""
    from dataclasses import fields

    from generator_svc.backends import BACKENDS
    from generator_svc.config import BACKEND_FIELDS, GeneratorConfig

    options = {f.name for entry in BACKENDS.values() for f in fields(entry.options)}
    assert set(BACKEND_FIELDS) == options and options <= {f.name for f in fields(GeneratorConfig)}
    helps = {name: text for name, _, text in describe(GeneratorConfig)}
    assert all(helps[name] for name in helps)
    assert helps["url"].startswith("tgi: TGI base URL (default 'http://127.0.0.1:8080'); openai: ")
    defaults = GeneratorConfig()
    assert all(getattr(defaults, name) is None for name in BACKEND_FIELDS) and defaults.backend_options() == {}


def test_generator_options_load_from_env_and_are_checked_against_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from generator_svc.config import ENV_PREFIX as GENERATOR
    from generator_svc.config import GeneratorConfig

    monkeypatch.setenv("DELTANAS_GENERATOR_BACKEND", "openai")
    monkeypatch.setenv("DELTANAS_GENERATOR_URL", "http://vllm:8000")
    monkeypatch.setenv("DELTANAS_GENERATOR_CONCURRENCY", "4")
    cfg = load_config(GeneratorConfig, None, GENERATOR)
    assert cfg.backend_options() == {"url": "http://vllm:8000", "concurrency": 4}
    monkeypatch.setenv("DELTANAS_GENERATOR_BACKEND", "local")  # the local backend reads no URL: refused at load
    with pytest.raises(ConfigError, match=r"^url: the local backend takes no url \(it takes model, "):
        load_config(GeneratorConfig, None, GENERATOR)
    monkeypatch.delenv("DELTANAS_GENERATOR_URL")
    monkeypatch.delenv("DELTANAS_GENERATOR_CONCURRENCY")
    monkeypatch.setenv("DELTANAS_GENERATOR_ADAPTERS", "delta=/a/delta,full=/a/full")
    monkeypatch.setenv("DELTANAS_GENERATOR_FORBID_NOOP_EDITS", "false")
    assert load_config(GeneratorConfig, None, GENERATOR).backend_options() == {
        "adapters": {"delta": "/a/delta", "full": "/a/full"}, "forbid_noop_edits": False}
    monkeypatch.setenv("DELTANAS_GENERATOR_ADAPTERS", "delta")
    with pytest.raises(ConfigError, match=r"^adapters: 'delta' is not name=value"):
        load_config(GeneratorConfig, None, GENERATOR)
