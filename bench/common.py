"""What the generation benchmarks share (bench_validity, bench_constrained): their command line, the held-out
baselines, an evaluator on loopback with the requests they send it, and the JSON they write."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from client.channels import open_channel
from curator_svc.lemur import LemurIndex
from deltanas.baseline import Baseline
from deltanas.model_sources import load_tokenizer
from deltanas.testing.baselines import pick
from deltanas.testing.candidates import MODEL as EMBEDDED_BASELINE
from deltanas.v1 import evaluator_pb2, evaluator_pb2_grpc
from deltanas.vocabulary import DEFAULT_MODEL, FINISH_UNKNOWN
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.service import build_server

VALID = evaluator_pb2.CANDIDATE_STATUS_VALID


def evaluation_arguments(description: str, configs: tuple[str, ...], *, baselines: int, train_limit: int,
                         test_limit: int) -> argparse.ArgumentParser:
    """The flags every generation benchmark takes; the defaults that differ are the caller's."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--baselines", type=int, default=baselines)
    parser.add_argument("--candidates", type=int, default=3, help="K candidates per baseline and configuration")
    parser.add_argument("--configs", default=",".join(configs), help=f"comma-separated subset of {configs}")
    parser.add_argument("--max-size", type=int, default=64, help="largest transform resolution (CPU budget)")
    parser.add_argument("--max-prompt-tokens", type=int, default=1100)
    parser.add_argument("--train-limit", type=int, default=train_limit)
    parser.add_argument("--test-limit", type=int, default=test_limit)
    parser.add_argument("--eval-timeout-s", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first", default=EMBEDDED_BASELINE,
                        help="comma-separated baselines to take first (default: the embedded preset's)")
    parser.add_argument("--json", type=Path, help="write every outcome and the summary here")
    return parser


def chosen_configs(parser: argparse.ArgumentParser, args: argparse.Namespace, known: tuple[str, ...]) -> list[str]:
    """--configs, each one of `known` (else a usage error)."""
    configs = [c for c in args.configs.split(",") if c]
    if unknown := sorted(set(configs) - set(known)):
        parser.error(f"--configs: unknown {unknown}; known: {known}")
    return configs


def held_out_baselines(args: argparse.Namespace) -> list[Baseline]:
    """--baselines held-out MNIST baselines (deltanas.testing.baselines.pick), announced."""
    baselines = pick(LemurIndex.load(datasets=("mnist",)).baselines("mnist"), args.baselines, args.max_size,
                     args.max_prompt_tokens, load_tokenizer(args.model), tuple(args.first.split(",")))
    print(f"{len(baselines)} held-out MNIST baselines: {', '.join(b.name for b in baselines)}", flush=True)
    return baselines


@contextmanager
def loopback_evaluator() -> Iterator[evaluator_pb2_grpc.EvaluatorServiceStub]:
    """A real evaluator service on loopback (one slot, CPU) and a stub on it."""
    server = build_server(EvaluatorConfig(port=0, slots=1, device="cpu")).start()
    channel = open_channel(server.address)
    try:
        yield evaluator_pb2_grpc.EvaluatorServiceStub(channel)
    finally:
        channel.close()
        server.stop(0)


def evaluate(stub: evaluator_pb2_grpc.EvaluatorServiceStub, baseline: Baseline, mode: str, answer: str,
             args: argparse.Namespace, cid: str, reference: bool = False,
             finish_reason: int = FINISH_UNKNOWN) -> evaluator_pb2.EvaluateResponse:
    """One candidate through the evaluator, trained like its baseline under the --train/--test limits;
    `reference` trains the baseline itself (no baseline to compare it with)."""
    change = {"delta_answer": answer} if mode == "delta" else {"code": answer}
    return stub.Evaluate(evaluator_pb2.EvaluateRequest(
        request_id=uuid.uuid4().hex, candidate_id=cid, baseline_code="" if reference else baseline.code,
        dataset=baseline.dataset, hyperparameters=baseline.hyperparameters, batch=baseline.batch,
        transform=baseline.transform, epochs=1, train_limit=args.train_limit, test_limit=args.test_limit,
        timeout_s=args.eval_timeout_s, finish_reason=finish_reason, **change), timeout=args.eval_timeout_s + 120)


def reference_accuracies(stub: evaluator_pb2_grpc.EvaluatorServiceStub, baselines: list[Baseline],
                         args: argparse.Namespace) -> dict[str, float]:
    """Each baseline trained itself under the same limits (in this run, not LEMUR's record); 0 when it fails."""
    reference = {}
    for b in baselines:
        reply = evaluate(stub, b, "full", b.code, args, f"{b.name}-reference", reference=True)
        reference[b.name] = reply.accuracy if reply.status == VALID else 0.0
        print(f"reference {b.name}: {reference[b.name]:.4f} "
              f"({'valid' if reply.status == VALID else reply.failure_reason[:120]})", flush=True)
    return reference


def write_json(path: Path | None, args: argparse.Namespace, **results: Any) -> None:
    """The run's arguments and `results`, when --json names a file."""
    if path:
        path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **results}, indent=2))


def fmt(x: object, pattern: str = "{:.3f}") -> str:
    return "-" if x is None else pattern.format(x)
