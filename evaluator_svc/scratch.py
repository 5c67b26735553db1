"""Per-job scratch directories: removed so that nothing a worker left there can stop it or leave it behind.

    remove_tree(path)    # however deep, without following links; never raises (logs what it had to leave)

`shutil.rmtree` recurses (RecursionError on a 3000-deep tree) and ``os.fwalk`` too; this walks one directory
descriptor at a time, going back up through ".." only after checking that it is the directory it came from.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(name: str, parent: int | None) -> int:
    try:
        return os.open(name, DIRECTORY, dir_fd=parent)
    except PermissionError:  # a worker made it unreadable (chmod 000): it is ours to remove anyway
        os.chmod(name, 0o700, dir_fd=parent)
        return os.open(name, DIRECTORY, dir_fd=parent)


def _clear(fd: int) -> list[str]:
    """Unlinks every non-directory in the directory `fd`; the names of its subdirectories."""
    subdirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    return subdirs


def remove_tree(path: str | Path) -> None:
    """Deletes `path` and everything below it; logs a warning, never raises, when something stays."""
    path = Path(path)
    try:
        fd = _open_dir(str(path), None)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("scratch dir %s left behind: %s", path, exc)
        return
    above: list[tuple[str, list[str], os.stat_result]] = []  # (name, its parent's other subdirs, parent's stat)
    try:
        pending = _clear(fd)
        while pending or above:
            if pending:
                name = pending.pop()
                child = _open_dir(name, fd)
                above.append((name, pending, os.fstat(fd)))
                os.close(fd)
                fd, pending = child, _clear(child)
                continue
            name, pending, expected = above.pop()
            parent = os.open("..", DIRECTORY, dir_fd=fd)
            actual = os.fstat(parent)
            os.close(fd)
            fd = parent
            if (actual.st_dev, actual.st_ino) != (expected.st_dev, expected.st_ino):
                raise OSError(f"{name}: its parent changed while it was being removed")
            os.rmdir(name, dir_fd=fd)
        os.close(fd)
        fd = -1
        path.rmdir()
    except OSError as exc:
        log.warning("scratch dir %s left behind: %s", path, exc)
    finally:
        if fd >= 0:
            os.close(fd)
