"""Typed configuration: unknown keys are errors, env variables override files, values are coerced; component
configs are tables (TOML), `__` levels (environment) and dotted flags; a moved key names its new spelling."""

import argparse
import tomllib
from dataclasses import fields as dataclass_fields
from pathlib import Path

import pytest

from client.cli import PRESET_DIR
from client.config import SearchConfig
from curator_svc.config import CuratorConfig
from curator_svc.options import PairingConfig
from deltanas.config import (
    ConfigError,
    add_config_arguments,
    build,
    config_overrides,
    fields,
    load_config,
    with_overrides,
)
from deltanas.service_registry import SERVICES
from deltanas.v1 import curator_pb2
from evaluator_svc.config import ENV_PREFIX, EvaluatorConfig
from generator_svc.backends import BACKENDS
from generator_svc.backends.options import LocalOptions
from generator_svc.config import ENV_PREFIX as GENERATOR
from generator_svc.config import GeneratorConfig


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "evaluator.toml"
    path.write_text("port = 1\nslot = 2\n[sandbox]\nmemory = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) slot"):
        load_config(EvaluatorConfig, path, ENV_PREFIX)
    path.write_text("[sandbox]\nmemory = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) sandbox\.memory; known: .*memory_mb"):
        load_config(EvaluatorConfig, path, ENV_PREFIX)


def test_env_overrides_file_and_is_coerced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "evaluator.toml"
    path.write_text("port = 1\nslots = 2\n[sandbox]\nmemory_mb = 100\nfile_mb = 7\n")
    monkeypatch.setenv("DELTANAS_EVALUATOR_SLOTS", "3")
    monkeypatch.setenv("DELTANAS_EVALUATOR_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("DELTANAS_EVALUATOR_SANDBOX__MEMORY_MB", "200")
    cfg = load_config(EvaluatorConfig, path, ENV_PREFIX, {"ray.cpus": 2})
    assert (cfg.port, cfg.slots, cfg.data_root) == (1, 3, tmp_path)
    assert (cfg.sandbox.memory_mb, cfg.sandbox.file_mb, cfg.sandbox.max_processes, cfg.ray.cpus) == (200, 7, 64, 2.0)


def test_bad_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTANAS_EVALUATOR_SLOTS", "many")
    with pytest.raises(ConfigError, match="slots"):
        load_config(EvaluatorConfig, None, ENV_PREFIX)
    monkeypatch.setenv("DELTANAS_EVALUATOR_SLOTS", "1")
    monkeypatch.setenv("DELTANAS_EVALUATOR_RAY__GPUS", "a few")
    with pytest.raises(ConfigError, match=r"^ray\.gpus: cannot read 'a few' as float"):
        load_config(EvaluatorConfig, None, ENV_PREFIX)


@pytest.mark.parametrize("cls", [*(spec.config_type() for spec in SERVICES.values()), SearchConfig])
def test_every_field_has_help(cls: type) -> None:
    assert all(f.metadata.get("help") for _, f, _ in fields(cls))


def test_curator_components_are_tables_with_their_own_defaults(tmp_path: Path) -> None:
    """A component's defaults are declared once, in the component: the curator's config nests it."""
    path = tmp_path / "curator.toml"
    path.write_text("[pairing]\nmax_diff_lines = 60\n[dataset.novelty]\nthreshold = 0.8\n")
    cfg = load_config(CuratorConfig, path)
    assert cfg.pairing == PairingConfig(max_diff_lines=60) and cfg.dataset.novelty.threshold == 0.8
    assert cfg.novelty.threshold == 0.9 and cfg.dataset.max_tokens == 4096


@pytest.mark.parametrize(("old", "new"), [
    ("max_diff_lines = 60", "[pairing] max_diff_lines"),
    ("novelty_threshold = 0.8", "[novelty] threshold or [dataset.novelty] threshold"),
])
def test_an_old_curator_file_names_the_new_keys(tmp_path: Path, old: str, new: str) -> None:
    path = tmp_path / "curator.toml"
    path.write_text(f"port = 1\n{old}\n")
    expected = f"{path}: {old.split()[0]} was moved: use {new}"
    with pytest.raises(ConfigError) as error:
        load_config(CuratorConfig, path)
    assert str(error.value) == expected


def test_old_environment_variables_and_flags_name_the_new_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTANAS_EVALUATOR_RAY_ADDRESS", "head:6379")
    with pytest.raises(ConfigError, match=r"^environment: DELTANAS_EVALUATOR_RAY_ADDRESS was moved: use "
                                          r"DELTANAS_EVALUATOR_RAY__ADDRESS$"):
        load_config(EvaluatorConfig, None, ENV_PREFIX)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, EvaluatorConfig)
    with pytest.raises(ConfigError, match=r"^command line: --memory-limit-mb was moved: use --sandbox\.memory-mb$"):
        config_overrides(parser.parse_args(["--memory-limit-mb", "10"]), EvaluatorConfig)
    args = parser.parse_args(["--sandbox.memory-mb", "10", "--no-sandbox.python-guards", "--ray.address", "h:1"])
    cfg = load_config(EvaluatorConfig, overrides=config_overrides(args, EvaluatorConfig))
    assert (cfg.sandbox.memory_mb, cfg.sandbox.python_guards, cfg.ray.address) == (10, False, "h:1")


@pytest.mark.parametrize(
    ("key", "value"),
    [("candidates", 0), ("cycles", 0), ("accept_accuracy", 1.5), ("modes", ["diff"]), ("datasets", []),
     ("decoding", "greedy"), ("resample_heat", -0.1), ("resample_heat", 4.0)],
)
def test_search_config_rejects_bad_values_before_work(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        build(SearchConfig, {key: value})


def test_presets_load() -> None:
    """Every shipped preset builds (unknown keys and bad values are errors), found wherever pytest runs."""
    presets = sorted(PRESET_DIR.glob("*.toml"))
    assert len(presets) >= 2, f"presets not found in {PRESET_DIR}"
    for preset in presets:
        build(SearchConfig, tomllib.loads(preset.read_text()), str(preset))


def test_generator_has_one_table_per_built_in_backend() -> None:
    """Each backend option is declared once, in its Options dataclass; the generator's config holds it as a table
    and hands the chosen backend its table."""
    assert {f.name for f in dataclass_fields(GeneratorConfig) if f.name in BACKENDS} == set(BACKENDS)
    local = LocalOptions()
    assert GeneratorConfig().backend_options() == {f.name: getattr(local, f.name) for f in dataclass_fields(local)}
    assert GeneratorConfig(backend="tgi").backend_options()["url"] == "http://127.0.0.1:8080"


def test_generator_options_load_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTANAS_GENERATOR_BACKEND", "openai")
    monkeypatch.setenv("DELTANAS_GENERATOR_OPENAI__URL", "http://vllm:8000")
    monkeypatch.setenv("DELTANAS_GENERATOR_OPENAI__CONCURRENCY", "4")
    monkeypatch.setenv("DELTANAS_GENERATOR_TGI__URL", "http://tgi:80")  # another backend's table: read, unused
    options = load_config(GeneratorConfig, None, GENERATOR).backend_options()
    assert (options["url"], options["concurrency"], options["model"]) == ("http://vllm:8000", 4, None)
    monkeypatch.setenv("DELTANAS_GENERATOR_BACKEND", "local")
    monkeypatch.setenv("DELTANAS_GENERATOR_LOCAL__ADAPTERS", "delta=/a/delta,full=/a/full")
    monkeypatch.setenv("DELTANAS_GENERATOR_LOCAL__FORBID_NOOP_EDITS", "false")
    options = load_config(GeneratorConfig, None, GENERATOR).backend_options()
    assert options["adapters"] == {"delta": "/a/delta", "full": "/a/full"} and options["forbid_noop_edits"] is False
    monkeypatch.setenv("DELTANAS_GENERATOR_LOCAL__ADAPTERS", "delta")
    with pytest.raises(ConfigError, match=r"^local\.adapters: 'delta' is not name=value"):
        load_config(GeneratorConfig, None, GENERATOR)


def test_an_old_generator_variable_names_every_table_that_has_it(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("DELTANAS_GENERATOR_URL", "http://vllm:8000")
    with pytest.raises(ConfigError, match=r"DELTANAS_GENERATOR_URL was moved: use DELTANAS_GENERATOR_TGI__URL or "
                                          r"DELTANAS_GENERATOR_OPENAI__URL$"):
        load_config(GeneratorConfig, None, GENERATOR)
    (tmp_path / "g.toml").write_text('[local]\nmodel = "smollm2-135m"\n[local.adapters]\ndelta = "/a"\n')
    cfg = load_config(GeneratorConfig, tmp_path / "g.toml")
    assert cfg.local.model == "smollm2-135m" and cfg.local.adapters == {"delta": "/a"}


def test_request_fields_override_a_config_by_name() -> None:
    """Unset (zero) request fields keep the config's value: the servicers' one merge."""
    request = curator_pb2.BuildDatasetRequest(max_diff_lines=30, min_gain=0.0)
    merged = with_overrides(PairingConfig(min_gain=0.02), request, ("min_gain", "max_diff_lines"))
    assert merged == PairingConfig(min_gain=0.02, max_diff_lines=30)
