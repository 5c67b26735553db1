"""Typed configuration: one dataclass per service, loaded from TOML and environment variables.

Every field carries its help text in `metadata["help"]`. Unknown keys are errors. A field `port` of the
evaluator's config is overridden by `DELTANAS_EVALUATOR_PORT=50063`:

    cfg = load_config(EvaluatorConfig, path="evaluator.toml", env_prefix="DELTANAS_EVALUATOR_")
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key is unknown or a value does not parse."""


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with help text; mutable defaults are wrapped in a factory."""
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw in (None, "", "none", "None"):
            return None
        return _coerce(name, args[0], raw)
    if origin in (list, tuple):
        item = typing.get_args(kind)[0]
        items = [s for s in raw.split(",") if s.strip()] if isinstance(raw, str) else list(raw)
        return origin(_coerce(name, item, s.strip() if isinstance(s, str) else s) for s in items)
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is Path:
            return Path(raw).expanduser()
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read {raw!r} as {getattr(kind, '__name__', kind)}") from exc


def build(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Instantiates `cls` from `values`, rejecting unknown keys and coercing types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    return cls(**{k: _coerce(k, hints[k], v) for k, v in values.items()})


def load_config(cls: type[T], path: str | Path | None = None, env_prefix: str = "",
                overrides: dict[str, Any] | None = None) -> T:
    """File values, then `<env_prefix><FIELD>` environment variables, then explicit overrides."""
    values: dict[str, Any] = {}
    if path:
        values.update(tomllib.loads(Path(path).read_text()))
    if env_prefix:
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            env = os.environ.get(env_prefix + f.name.upper())
            if env is not None:
                values[f.name] = env
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build(cls, values, str(path or "config"))


def describe(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) of every field, for `--help` and the README."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--field-name` option per config field, typed from its annotation, help from its metadata."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if hints[f.name] in (bool, bool | None):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=f.metadata.get("help"))
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=f.metadata.get("help"))


def config_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` that were given on the command line (see add_config_arguments)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
