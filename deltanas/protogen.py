"""Regenerates the Python stubs in deltanas/v1 from protos/ (the one command for it).

    python -m deltanas.protogen            # write deltanas/v1/*_pb2*.py
    python -m deltanas.protogen --check    # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE = Path("deltanas") / "v1"


def generate(out_dir: Path) -> list[Path]:
    """Runs protoc over every proto of the package into `out_dir`; returns the generated files."""
    protos = sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))
    (out_dir / PACKAGE).mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}", *(str(p.relative_to(PROTO_ROOT)) for p in protos)]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    init = out_dir / PACKAGE / "__init__.py"
    init.write_text('"""Generated from protos/deltanas/v1 by `python -m deltanas.protogen`; do not edit."""\n')
    return sorted((out_dir / PACKAGE).iterdir())


def stale_files() -> list[str]:
    """Names of generated files that differ from a fresh generation (missing or extra ones included)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p for p in generate(Path(tmp)) if p.is_file()}
        current = {p.name: p for p in (ROOT / PACKAGE).iterdir() if p.is_file() and p.suffix in (".py", ".pyi")}
        names = set(fresh) | set(current)
        return sorted(n for n in names if n not in fresh or n not in current
                      or not filecmp.cmp(fresh[n], current[n], shallow=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale stubs")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated stubs: " + ", ".join(stale) + " (run python -m deltanas.protogen)")
            return 1
        return 0
    for path in generate(ROOT):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
