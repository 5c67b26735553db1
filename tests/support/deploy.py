"""The deployment files, read without a container engine: docker-compose.yml (+ docker/compose.*.yml overrides) with
PyYAML (compose's merge tags and ${VAR:-default}), docker/Dockerfile with a small instruction parser, the build
context by .dockerignore's rules, and the wheel built from it."""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from client.cli import build_parser
from deltanas.service_registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
OVERRIDES = {"vllm": ROOT / "docker" / "compose.vllm.yml", "cpu": ROOT / "docker" / "compose.cpu.yml"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
GRPC_SERVICES = tuple(SERVICES)  # curator, generator, evaluator: compose service name == deltanas service name
IMAGE_TARGETS = {"curator": "curator", "generator": "generator", "evaluator": "evaluator", "client": "client"}


# --- compose: YAML with the compose merge tags, ${VAR:-default} interpolation, override files -----------------


class Tagged:
    """A value carrying compose's !reset or !override tag: it replaces instead of merging."""

    def __init__(self, value: Any) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    pass


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(_tag, lambda loader, node: Tagged(
        loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)))


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, $$ for a literal $."""
    if isinstance(value, Tagged):
        return Tagged(interpolate(value.value, env))
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return re.sub(r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}", sub, value)


def merge(base: Any, over: Any) -> Any:
    if isinstance(over, Tagged):
        return over.value
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            if key in ("command", "entrypoint") or key not in out:
                out[key] = value.value if isinstance(value, Tagged) else value
            else:
                out[key] = merge(out[key], value)
        return out
    if isinstance(base, list) and isinstance(over, list):
        return base + [v for v in over if v not in base]
    return over


def load_compose(*overrides: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    doc = interpolate(yaml.load(COMPOSE.read_text(), Loader=ComposeLoader), env or {})
    for name in overrides:
        doc = merge(doc, interpolate(yaml.load(OVERRIDES[name].read_text(), Loader=ComposeLoader), env or {}))
    return doc


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {k: v for k, _, v in (e.partition("=") if "=" in e else (e, "", None) for e in env)}
    return {k: None if v is None else str(v) for k, v in env.items()}


def active(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that `docker compose up` starts (no profile)."""
    return {n: s for n, s in doc["services"].items() if not s.get("profiles")}


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return list(test)


def strict_parser() -> argparse.ArgumentParser:
    """client.cli's parser, refusing abbreviated flags (a typo like --evaluator must not pass as --evaluators)."""
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        p.allow_abbrev = False
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return parser


# --- Dockerfile: instructions per stage -------------------------------------------------------------------------


@dataclasses.dataclass
class Instruction:
    op: str
    args: str
    stage: str

    def flags(self) -> dict[str, str]:
        return dict(f[2:].split("=", 1) for f in shlex.split(self.args) if f.startswith("--") and "=" in f)

    def exec_form(self) -> list[str] | None:
        text = re.sub(r"^(--\S+\s+)*", "", self.args)  # HEALTHCHECK options
        if text.startswith("CMD "):
            text = text[4:]
        return yaml.safe_load(text) if text.lstrip().startswith("[") else None


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Instruction], dict[str, str | None]]:
    """(global ARG defaults, instructions, stage -> parent stage or None for an image)."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if pending and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    global_args: dict[str, str] = {}
    instructions: list[Instruction] = []
    parents: dict[str, str | None] = {}
    stage = ""
    for line in lines:
        op, _, args = line.strip().partition(" ")
        op, args = op.upper(), args.strip()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args, re.IGNORECASE)
            assert m, f"every stage is named: FROM {args}"
            image, stage = m.groups()
            parents[stage] = image if image in parents else None
            instructions.append(Instruction(op, image, stage))
        elif op == "ARG" and not stage:
            name, _, default = args.partition("=")
            global_args[name] = default.strip('"')
        else:
            instructions.append(Instruction(op, args, stage))
    return global_args, instructions, parents


GLOBAL_ARGS, INSTRUCTIONS, PARENTS = parse_dockerfile(DOCKERFILE)


def chain(stage: str) -> list[str]:
    """The stage and its ancestors, base first."""
    out = [stage]
    while PARENTS[out[-1]] is not None:
        out.append(PARENTS[out[-1]])  # type: ignore[arg-type]
    return out[::-1]


def ops(stage: str, op: str, inherited: bool = True) -> list[Instruction]:
    stages = chain(stage) if inherited else [stage]
    return [i for s in stages for i in INSTRUCTIONS if i.stage == s and i.op == op]


def stage_arg(stage: str, name: str) -> str | None:
    for i in ops(stage, "ARG"):
        key, _, default = i.args.partition("=")
        if key == name:
            return default.strip('"')
    return None


BUILD_DIR = "/opt/deltanas-build/"  # where the base stage puts docker/install.py and the files it reads


def lay_out_build_dir(dest: Path, torch_index: str) -> Path:
    """`dest` as the base stage lays out BUILD_DIR: the files its COPY names, and the TORCH_INDEX it writes."""
    (copy,) = [i for i in ops("base", "COPY") if shlex.split(i.args)[-1] == BUILD_DIR]
    dest.mkdir(parents=True, exist_ok=True)
    for src in shlex.split(copy.args)[:-1]:
        (dest / Path(src).name).write_bytes((ROOT / src).read_bytes())
    (dest / "torch-index").write_text(torch_index + "\n")
    return dest


# A RUN line that installs Debian packages, in the one form the Dockerfile uses (no recommends, lists removed).
APT_RUN = re.compile(r"apt-get update && apt-get install -y --no-install-recommends ([a-z0-9][a-z0-9.+\- ]*?) "
                     r"&& rm -rf /var/lib/apt/lists/\*")
# How a host shows that a Debian package an image installs is already there: tests/test_service_images.py does not
# run apt-get lines, it requires their packages on the host by these checks (bash, with /usr/sbin on PATH).
APT_HOST_CHECKS = {"bubblewrap": "command -v bwrap", "libseccomp2": r"ldconfig -p | grep -q 'libseccomp\.so\.2 '"}


def apt_packages(command: str) -> list[str] | None:
    """The packages of a RUN line that only installs Debian packages; None for a line without apt-get. Any other
    apt-get line fails: the image test skips these lines, so they must not do anything else."""
    if "apt-get" not in command:
        return None
    m = APT_RUN.fullmatch(" ".join(command.split()))
    assert m, ("an apt-get RUN line must read `apt-get update && apt-get install -y --no-install-recommends PKG... "
               f"&& rm -rf /var/lib/apt/lists/*` and nothing else: {command}")
    return m.group(1).split()


def load_install_module(path: Path = ROOT / "docker" / "install.py") -> Any:
    spec = importlib.util.spec_from_file_location("docker_install", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


INSTALL = load_install_module()


# --- .dockerignore: which files are in the build context -------------------------------------------------------


@functools.cache
def context_files() -> list[Path]:
    """Files of the repository that the build context holds, by Docker's rules (last matching pattern wins)."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def matches(rel: str, pattern: str) -> bool:
        pattern = pattern.rstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        if pattern.startswith("**/"):
            return any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
        return any(fnmatch.fnmatch(p, pattern) for p in prefixes)

    out = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__") and not d.startswith(".venv")]
        for file in files:
            path = Path(top, file)
            rel = path.relative_to(ROOT).as_posix()
            included = True
            for pattern in patterns:
                if matches(rel, pattern.lstrip("!")):
                    included = pattern.startswith("!")
            if included:
                out.append(path)
    return out


def build_wheel(work: Path) -> Path:
    """The `wheel` stage's `pip wheel --no-deps /src` on exactly the files the context holds; the wheel's path."""
    src = work / "src"
    for path in context_files():
        dest = src / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "--wheel-dir", str(work / "wheels"), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (work / "wheels").glob("deltanas-*.whl")
    return wheel
