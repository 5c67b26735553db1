"""Where files are: deltanas's own under $DELTANAS_HOME (default ~/.cache/deltanas), and files inside installed
packages (the data packages: LEMUR, MNIST, the LLM weights)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

HOME_ENV = "DELTANAS_HOME"
DEFAULT_HOME = Path("~/.cache/deltanas")


def deltanas_home() -> Path:
    """Root of deltanas' caches and state: ``$DELTANAS_HOME`` or ``~/.cache/deltanas``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def package_path(package: str, relpath: str, install_hint: str = "") -> Path:
    """`relpath` (a file or folder) inside the installed top-level `package`, found without importing it (the
    data packages do work on import, or need what is not installed); of a namespace package, the first location
    that has it. FileNotFoundError names the package and `install_hint` (e.g. the pip command) when it is missing.
    """
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise FileNotFoundError(f"package {package!r} is not installed{f' ({install_hint})' if install_hint else ''}")
    for location in locations:
        if (path := Path(location) / relpath).exists():
            return path
    raise FileNotFoundError(f"{relpath} is missing from package {package!r} (looked in {', '.join(locations)})")
