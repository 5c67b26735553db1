"""Typed configuration: one dataclass per service, loaded from TOML, environment variables and flags.

Every field is declared with `option(default, help)`. A component's config is a field of the service's config
whose type is the component's dataclass (its defaults are declared once, in the component): a TOML table, an
environment variable with `__` between the levels, a flag with a dot. The curator's pairing limit is

    [pairing]                                    # curator.toml
    max_diff_lines = 60
    DELTANAS_CURATOR_PAIRING__MAX_DIFF_LINES=60  # environment
    --pairing.max-diff-lines 60                  # deltanas serve curator / python -m curator_svc

    cfg = load_config(CuratorConfig, path="curator.toml", env_prefix="DELTANAS_CURATOR_")

Unknown keys are errors; a key a config moved lists it in its `RENAMED` (old name -> new dotted name(s)), so an
old file, variable or flag fails with a message that names the new spelling. `with_overrides` merges the fields a
request sets into a config.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
NEST = "__"  # between the levels of an environment variable's name
_RENAMED_FLAG = "renamed:"  # argparse dest of a flag a config no longer has


class ConfigError(ValueError):
    """A configuration key is unknown or a value does not parse."""


REQUIRED: Any = dataclasses.MISSING  # option(REQUIRED, help): a field without a default


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with help text; mutable defaults (lists, dicts, sets, dataclass instances) are copied for
    each instance."""
    if isinstance(default, list | dict | set) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _is_config(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def fields(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(dotted name, field, type) of every leaf field of `cls`, a component config's fields under its name."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _is_config(hints[f.name]):
            yield from fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, hints[f.name]


def _mapping(name: str, raw: Any) -> dict[str, str]:
    """A mapping from a table, or from `key=value` items (a list, or `a=x,b=y` in a variable or flag)."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    items = [s.strip() for s in raw.split(",") if s.strip()] if isinstance(raw, str) else list(raw)
    bad = [item for item in items if "=" not in str(item) or not str(item).partition("=")[0]]
    if bad:
        raise ConfigError(f"{name}: {bad[0]!r} is not name=value")
    return dict(str(item).partition("=")[::2] for item in items)


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw in (None, "", "none", "None"):
            return None
        return _coerce(name, args[0], raw)
    if origin in (Mapping, dict):
        return _mapping(name, raw)
    if origin in (list, tuple):
        item = typing.get_args(kind)[0]
        items = [s for s in raw.split(",") if s.strip()] if isinstance(raw, str) else list(raw)
        return origin(_coerce(name, item, s.strip() if isinstance(s, str) else s) for s in items)
    try:
        return _scalar(kind, raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read {raw!r} as {getattr(kind, '__name__', kind)}") from exc


def _scalar(kind: Any, raw: Any) -> Any:
    if kind is bool and not isinstance(raw, bool):
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if kind is Path:
        return Path(raw).expanduser()
    return raw if kind is bool else kind(raw)


def renamed(cls: type) -> dict[str, tuple[str, ...]]:
    """Old key -> its new dotted name(s), of a config whose keys moved (its `RENAMED` class variable)."""
    return {old: (new,) if isinstance(new, str) else tuple(new) for old, new in getattr(cls, "RENAMED", {}).items()}


def upgraded(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` as written by an older version (a stored record, not a user's file): each key `cls` moved to one
    place is moved there."""
    moved = {old: new[0] for old, new in renamed(cls).items() if len(new) == 1}
    return nest({moved.get(key, key): value for key, value in values.items()})


def _moved(where: str, old: str, new: list[str]) -> ConfigError:
    return ConfigError(f"{where}: {old} was moved: use {' or '.join(new)}")


def _toml(dotted: str) -> str:
    table, _, key = dotted.rpartition(".")
    return f"[{table}] {key}" if table else dotted


def _values(cls: type, values: Mapping[str, Any], source: str, base: Any = None, prefix: str = "") -> dict[str, Any]:
    """Constructor arguments of `cls` from `values`; a component table is merged into `base`'s (or the field's
    default) component."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            if key in renamed(cls):
                raise _moved(source, prefix + key, [_toml(prefix + new) for new in renamed(cls)[key]])
            raise ConfigError(f"{source}: unknown key(s) {prefix}{key}; known: {', '.join(sorted(known))}")
    out = {}
    for key, raw in values.items():
        kind = hints[key]
        if _is_config(kind) and not isinstance(raw, kind):
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{source}: {prefix}{key} is a table ([{prefix}{key}]), got {raw!r}")
            current = getattr(base, key) if base is not None else _default(known[key])
            out[key] = dataclasses.replace(current, **_values(kind, raw, source, current, f"{prefix}{key}."))
        else:
            out[key] = raw if _is_config(kind) else _coerce(prefix + key, kind, raw)
    return out


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def build(cls: type[T], values: Mapping[str, Any], source: str = "config") -> T:
    """Instantiates `cls` from `values` (component configs as nested tables), rejecting unknown keys, naming the
    new spelling of a moved one, and coercing types."""
    return cls(**_values(cls, values, source))


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{'pairing.max_diff_lines': 60} -> {'pairing': {'max_diff_lines': 60}}; tables given twice are merged."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *tables, leaf = key.split(".")
        node = out
        for table in tables:
            node = node.setdefault(table, {})
        both = isinstance(value, Mapping) and isinstance(node.get(leaf), Mapping)
        node[leaf] = _merge(node[leaf], value) if both else value
    return out


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


def env_name(env_prefix: str, dotted: str) -> str:
    """The environment variable of a (dotted) field: DELTANAS_CURATOR_ + pairing.max_diff_lines ->
    DELTANAS_CURATOR_PAIRING__MAX_DIFF_LINES."""
    return env_prefix + dotted.upper().replace(".", NEST)


def env_values(cls: type, env_prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fields `environ` (default: os.environ) sets through `<env_prefix><FIELD>` variables, as nested tables;
    a variable of a moved key is a ConfigError that names the new variable."""
    environ = os.environ if environ is None else environ
    for old, new in renamed(cls).items():
        if env_name(env_prefix, old) in environ:
            raise _moved("environment", env_name(env_prefix, old), [env_name(env_prefix, n) for n in new])
    return nest({name: environ[env_name(env_prefix, name)] for name, _, _ in fields(cls)
                 if env_name(env_prefix, name) in environ})


def load_config(cls: type[T], path: str | Path | None = None, env_prefix: str = "",
                overrides: Mapping[str, Any] | None = None) -> T:
    """File values, then `<env_prefix><FIELD>` environment variables, then explicit overrides (nested tables or
    dotted keys; None values are ignored)."""
    values: dict[str, Any] = {}
    if path:
        values = tomllib.loads(Path(path).read_text())
    if env_prefix:
        values = _merge(values, env_values(cls, env_prefix))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return build(cls, _merge(values, nest(given)), str(path or "config"))


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--field-name` option per config field (`--table.field-name` for a component's), typed from its
    annotation, help from its metadata; a moved key's old flag fails with the new one's name."""
    for name, f, kind in fields(cls):
        flag = _flag(name)
        if kind in (bool, bool | None):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=f.metadata.get("help"))
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.rpartition(".")[2].upper(),
                                help=f.metadata.get("help"))
    for old in renamed(cls):
        with contextlib.suppress(argparse.ArgumentError):  # a flag the parser has for something else
            parser.add_argument(_flag(old), dest=_RENAMED_FLAG + old, default=None, help=argparse.SUPPRESS)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` given on the command line (see add_config_arguments), as nested tables."""
    for old, new in renamed(cls).items():
        if getattr(args, _RENAMED_FLAG + old, None) is not None:
            raise _moved("command line", _flag(old), [_flag(n) for n in new])
    return nest({name: getattr(args, name) for name, _, _ in fields(cls) if getattr(args, name, None) is not None})


def request_fields(request: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields among `names` that `request` (a proto message) sets: a scalar that is not zero or empty, a message
    field that is present. Proto3 has no presence for scalars, so 0 means "not set": the config's value."""
    given = {}
    for name in names:
        message = request.DESCRIPTOR.fields_by_name[name].message_type is not None
        if request.HasField(name) if message else bool(getattr(request, name)):
            given[name] = getattr(request, name)
    return given


def with_overrides(config: T, request: Any, names: tuple[str, ...]) -> T:
    """`config` with the fields `names` that `request` sets (request_fields): a request's fields carry the names of
    the config fields they override."""
    return dataclasses.replace(config, **request_fields(request, names))  # type: ignore[type-var]
