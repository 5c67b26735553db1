"""Per-candidate cgroups: a pids and a memory limit that the kernel enforces on a worker and all it starts, counting
its tmpfs, shared memory and page cache too (RLIMIT_AS counts none of them).

    host = cgroup_host("auto")                           # cached per process; host.layer: "cgroup-v2", "cgroup-v1", ""
    with host.job(pids=64, memory_bytes=3 << 30) as job:  # a fresh cgroup (None when the host offers none)
        proc = subprocess.Popen(job.enter(argv), ...)     # the process joins it before it execs argv
        ...
        job.kill(); job.oom_kills(); job.peak_bytes()
    # on leaving: every process left in it is killed and the cgroup removed; failures are logged, never raised

What a host offers, tried in this order for `auto`:

* cgroup v2 with the memory and pids controllers delegated to this service's cgroup (systemd ``Delegate=yes``, a
  container with a writable cgroup namespace): the service's processes move into a leaf ``deltanas-service`` (a
  cgroup that hands controllers to children may hold no process), and each candidate gets a sibling.
* cgroup v1 with writable ``pids`` and ``memory`` hierarchies (``memory.memsw`` too where swap is accounted): each
  candidate gets a child of this service's cgroup in both.
* neither: ``layer`` is empty and `why` says what is missing; the sandbox then falls back to rlimits (see
  `evaluator_svc.sandbox`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHOICES = ("auto", "v2", "v1", "none")
SERVICE_LEAF = "deltanas-service"
# Joins the cgroups named by its arguments up to "--", then execs the rest: a process enters its cgroup before it
# runs anything, without a preexec_fn in this multi-threaded server.
JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
JOIN_FAILED = 125


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _mounts() -> dict[str, Path]:
    """Mount points by controller: "memory", "pids" (cgroup v1) and "unified" (cgroup v2)."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        kind, options = fields[separator + 1], fields[separator + 3].split(",")
        if kind == "cgroup2":
            found.setdefault("unified", Path(fields[4]))
        elif kind == "cgroup":
            for controller in ("memory", "pids"):
                if controller in options:
                    found.setdefault(controller, Path(fields[4]))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and "unified" for v2 (from /proc/self/cgroup)."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else ["unified"]:
            paths[controller] = path
    return paths


@dataclass
class JobGroup:
    """One candidate's cgroup (one directory per hierarchy: two under v1, one under v2)."""

    dirs: tuple[Path, ...]
    version: int

    def enter(self, argv: list[str]) -> list[str]:
        """`argv` behind a shell that joins this cgroup and then execs it (exit status 125 when joining fails)."""
        return ["/bin/sh", "-c", JOIN, "deltanas-cgroup", *(str(d / "cgroup.procs") for d in self.dirs), "--", *argv]

    def _file(self, v1: str, v2: str) -> Path | None:
        name = v2 if self.version == 2 else v1
        return next((d / name for d in self.dirs if (d / name).exists()), None)

    def _pids(self) -> list[int]:
        pids: set[int] = set()
        for directory in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        return sorted(pids)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (cgroup.kill where v2 has it)."""
        kill_file = self.dirs[0] / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def oom_kills(self) -> int:
        """Processes the kernel killed for exceeding the memory limit."""
        path = self._file("memory.oom_control", "memory.events")
        with contextlib.suppress(OSError, ValueError, TypeError):
            for line in Path(path).read_text().splitlines():  # type: ignore[arg-type]
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def peak_bytes(self) -> int | None:
        """The most memory the cgroup held (None where the kernel does not say)."""
        path = self._file("memory.max_usage_in_bytes", "memory.peak")
        with contextlib.suppress(OSError, ValueError, TypeError):
            return int(Path(path).read_text())  # type: ignore[arg-type]
        return None

    def remove(self) -> None:
        """Kills what is left and removes the directories; logs, never raises, when one stays."""
        for _ in range(100):
            self.kill()
            for directory in self.dirs:
                with contextlib.suppress(FileNotFoundError, OSError):
                    directory.rmdir()
            if not any(d.exists() for d in self.dirs):
                return
            time.sleep(0.05)  # killed processes are still exiting
        log.warning("cgroup %s left behind: processes %s will not exit", ", ".join(map(str, self.dirs)), self._pids())


@dataclass(frozen=True)
class CgroupHost:
    """Where this host lets the service make per-candidate cgroups; `layer` is empty when nowhere (`why`)."""

    layer: str
    parents: tuple[Path, ...] = ()
    why: str = ""

    @contextlib.contextmanager
    def job(self, *, pids: int, memory_bytes: int) -> Iterator[JobGroup | None]:
        """A fresh cgroup with these limits for one candidate, removed on leaving; None without cgroups."""
        if not self.layer:
            yield None
            return
        version = 2 if self.layer == "cgroup-v2" else 1
        name = f"deltanas-job-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        group = JobGroup(tuple(parent / name for parent in self.parents), version)
        try:
            for directory in group.dirs:
                directory.mkdir()
            _limit(group, version, pids, memory_bytes)
            yield group
        finally:
            group.remove()


def _limit(group: JobGroup, version: int, pids: int, memory_bytes: int) -> None:
    for directory in group.dirs:
        if version == 2:
            _write(directory / "pids.max", str(pids))
            _write(directory / "memory.max", str(memory_bytes))
            if (directory / "memory.swap.max").exists():
                _write(directory / "memory.swap.max", "0")
        elif (directory / "pids.max").exists():
            _write(directory / "pids.max", str(pids))
        else:
            _write(directory / "memory.limit_in_bytes", str(memory_bytes))
            if (directory / "memory.memsw.limit_in_bytes").exists():
                _write(directory / "memory.memsw.limit_in_bytes", str(memory_bytes))


def _v2(mounts: dict[str, Path], own: dict[str, str]) -> CgroupHost:
    if "unified" not in mounts or "unified" not in own:
        return CgroupHost("", why="no cgroup v2 mount")
    here = mounts["unified"] / own["unified"].lstrip("/")
    if here.name == SERVICE_LEAF:  # moved there by an earlier start in this process tree
        here = here.parent
    wanted = {"memory", "pids"}
    available = set((here / "cgroup.controllers").read_text().split()) if (here / "cgroup.controllers").exists() \
        else set()
    if not wanted <= available:
        return CgroupHost("", why=f"cgroup v2 at {here} has no {' and '.join(sorted(wanted - available))} "
                                  "controller delegated")
    if not os.access(here / "cgroup.subtree_control", os.W_OK):
        return CgroupHost("", why=f"cgroup v2 at {here} is not writable (not delegated to this service)")
    if not wanted <= set((here / "cgroup.subtree_control").read_text().split()):
        leaf = here / SERVICE_LEAF
        leaf.mkdir(exist_ok=True)
        for pid in (here / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                _write(leaf / "cgroup.procs", pid)
        _write(here / "cgroup.subtree_control", "+memory +pids")
    return CgroupHost("cgroup-v2", (here,))


def _v1(mounts: dict[str, Path], own: dict[str, str]) -> CgroupHost:
    parents = []
    for controller in ("pids", "memory"):
        if controller not in mounts or controller not in own:
            return CgroupHost("", why=f"no cgroup v1 {controller} hierarchy")
        parent = mounts[controller] / own[controller].lstrip("/")
        if not os.access(parent, os.W_OK):
            return CgroupHost("", why=f"cgroup v1 {parent} is not writable")
        parents.append(parent)
    return CgroupHost("cgroup-v1", tuple(parents))


def _try(make, mounts: dict[str, Path], own: dict[str, str]) -> CgroupHost:
    try:
        host = make(mounts, own)
    except OSError as exc:
        return CgroupHost("", why=f"{type(exc).__name__}: {exc}")
    if host.layer:  # prove it: make and limit one cgroup, run a process in it, remove it
        try:
            with host.job(pids=8, memory_bytes=64 << 20) as group:
                joined = subprocess.run(group.enter(["true"]), capture_output=True, timeout=30, check=False)  # type: ignore[union-attr]
        except (OSError, subprocess.SubprocessError) as exc:
            return CgroupHost("", why=f"{host.layer} cannot make a limited cgroup: {exc}")
        if joined.returncode != 0:
            return CgroupHost("", why=f"{host.layer}: a process cannot join a new cgroup "
                                      f"({joined.stderr.decode(errors='replace').strip()[:200]})")
    return host


@functools.cache
def cgroup_host(choice: str = "auto") -> CgroupHost:
    """The per-candidate cgroups this host offers for `choice` (one of CHOICES); cached per process."""
    if choice not in CHOICES:
        raise ValueError(f"cgroup: must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "none":
        return CgroupHost("", why="cgroup = none")
    try:
        mounts, own = _mounts(), _own_paths()
    except (OSError, ValueError) as exc:
        return CgroupHost("", why=f"cannot read this process's cgroups: {exc}")
    tried = []
    for version, make in (("v2", _v2), ("v1", _v1)):
        if choice in ("auto", version):
            host = _try(make, mounts, own)
            if host.layer:
                return host
            tried.append(host.why)
    return CgroupHost("", why="; ".join(tried))
