"""Each service image, built without a container engine: a fresh virtualenv per service runs the target's own
RUN lines of docker/Dockerfile (docker/install.py: core + the target's extra, constrained by the lock, + its data
packages; then the project's wheel with that extra only), then its CMD with the target's ENV, and the target's
HEALTHCHECK command must see SERVING over gRPC. A service that imports what its extra lacks fails here.
RUN lines that install Debian packages (the evaluator's bubblewrap and libseccomp2) are not run: their packages
must already be on this host (`APT_HOST_CHECKS` of test_deploy_files.py), or the test fails saying which.

The venvs (.venv-images/<service>) take PyPI's own torch (an empty TORCH_INDEX, as the Dockerfile allows) and are
deleted after each test (about 5 GB each with CUDA torch). Nothing here loads an LLM: the generator talks to a fake
OpenAI-compatible server, and only imports its other backends.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import IO

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deltanas.testing.processes import free_port
from tests.support.deploy import (
    APT_HOST_CHECKS,
    BUILD_DIR,
    GRPC_SERVICES,
    ROOT,
    apt_packages,
    build_wheel,
    lay_out_build_dir,
    ops,
    stage_arg,
)
from tests.support.llm_servers import FakeServer

pytestmark = pytest.mark.slow

# Not under /tmp: the evaluator's sandbox gives its worker a private /tmp, which would hide the interpreter.
VENVS = ROOT / ".venv-images"
START_TIMEOUT_S = 300.0  # the curator scans LEMUR's 10k model files before it serves
# Checks in the service's venv of what its start does not reach: the generator starts on the openai backend.
ALSO_IMPORTS = {"generator": "from generator_svc.backends import BACKENDS, backend_class\n"
                             "for name in BACKENDS: backend_class(name)"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel")).parent


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def image_env(target: str) -> dict[str, str]:
    """The ENV of `target` and its parent stages, in order."""
    return dict(kv.split("=", 1) for i in ops(target, "ENV") for kv in shlex.split(i.args))


def clean_environ(venv: Path) -> dict[str, str]:
    """This process's environment with `venv` active and nothing that would leak the repository into it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 1800) -> float:
    """Runs `argv`, fails the test with its output's tail unless it exits 0; returns its seconds."""
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return time.monotonic() - start


def install_image(target: str, venv: Path, work: Path, wheels: Path) -> None:
    """`target`'s own RUN lines (its ARGs as variables) in a fresh `venv`, for the files the base stage lays out."""
    build = lay_out_build_dir(work / "build", torch_index="")
    run([sys.executable, "-m", "venv", str(venv)], os.environ.copy(), work)
    env = clean_environ(venv)
    for i in ops(target, "ARG", inherited=False):
        name = i.args.partition("=")[0]
        env[name] = stage_arg(target, name) or ""
    for i in ops(target, "RUN", inherited=False):
        packages = apt_packages(i.args)
        if packages is not None:
            require_on_host(target, packages)
            print(f"{target}: RUN {i.args} not run: {', '.join(packages)} already on this host")
            continue
        command = re.sub(r"--mount=\S+\s+", "", i.args).replace(BUILD_DIR, f"{build}/").replace("/wheels", str(wheels))
        seconds = run(["bash", "-euc", command], env, work)
        print(f"{target}: {seconds:.0f} s for RUN {i.args}")


def require_on_host(target: str, packages: list[str]) -> None:
    """The Debian packages of a RUN line this test does not run (apt-get needs root and changes the host) must
    already be present, each by its check in APT_HOST_CHECKS; otherwise the test fails naming what is missing."""
    env = {**os.environ, "PATH": f"{os.environ['PATH']}{os.pathsep}/usr/sbin{os.pathsep}/sbin"}  # ldconfig
    missing = []
    for package in packages:
        check = APT_HOST_CHECKS.get(package)
        assert check, f"{target}: no host check for Debian package {package!r} in test_deploy_files.APT_HOST_CHECKS"
        if subprocess.run(["bash", "-c", check], env=env, capture_output=True).returncode != 0:
            missing.append(f"{package} (`{check}` failed)")
    assert not missing, (f"{target}: its image installs Debian packages this host lacks: {'; '.join(missing)}. "
                         f"Install them (apt-get install {' '.join(packages)}) to run this test.")


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        except grpc.RpcError:
            return health_pb2.HealthCheckResponse.UNKNOWN


@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_service_image_starts_with_only_its_own_extra(service: str, wheels: Path, llm_url: str,
                                                      tmp_path: Path) -> None:
    venv, work = VENVS / service, tmp_path / "work"
    shutil.rmtree(venv, ignore_errors=True)
    work.mkdir()
    try:
        start = time.monotonic()
        install_image(service, venv, tmp_path, wheels)
        print(f"{service}: virtualenv built in {time.monotonic() - start:.0f} s")
        port = free_port()
        settings = {"HOST": "127.0.0.1", "PORT": str(port)}
        if service == "generator":
            settings |= {"BACKEND": "openai", "OPENAI__URL": llm_url}  # [openai] model unset: the server's first
        if service == "evaluator":  # the image serves Prometheus metrics: on a free port here
            settings["METRICS_PORT"] = str(free_port())
        env = {**clean_environ(venv), **image_env(service), "DELTANAS_HOME": str(tmp_path / "home"),
               **{f"DELTANAS_{service.upper()}_{k}": v for k, v in settings.items()}}
        if service in ALSO_IMPORTS:
            run(["python", "-c", ALSO_IMPORTS[service]], env, work)
        with (tmp_path / "service.log").open("w+") as log:
            serve_until_healthy(service, port, env, work, log)
        print(f"{service}: built, served and stopped in {time.monotonic() - start:.0f} s")
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def serve_until_healthy(service: str, port: int, env: dict[str, str], work: Path, log: IO[str]) -> None:
    """The image's CMD until SERVING, then its HEALTHCHECK command, then SIGTERM: it must drain and exit 0."""
    proc = subprocess.Popen(ops(service, "CMD")[-1].exec_form(), env=env, cwd=work, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while health(f"127.0.0.1:{port}") != health_pb2.HealthCheckResponse.SERVING:
            log.seek(0)
            assert proc.poll() is None, f"{service} exited {proc.returncode}:\n{log.read()[-4000:]}"
            assert time.monotonic() < deadline, f"{service} not SERVING after {START_TIMEOUT_S} s"
            time.sleep(1)
        run(ops(service, "HEALTHCHECK")[-1].exec_form(), env, work, timeout=60)
        if metrics_port := env.get(f"DELTANAS_{service.upper()}_METRICS_PORT"):
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
                assert b"deltanas_evaluator_busy_slots 0.0" in reply.read()
        proc.terminate()
        assert proc.wait(timeout=90) == 0, f"{service} did not drain and exit 0 on SIGTERM"
    finally:
        proc.kill()
        proc.wait()
