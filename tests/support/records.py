"""A search's candidates as the report and the CLI read them back: twelve rows over two modes, cycles and datasets,
logged the way a search logs them."""

from __future__ import annotations

from client.records import CandidateRecord, CandidateResult
from client.search import candidate_id
from deltanas.vocabulary import CODE_FILE, DIFF_FILE, FAILURE_FILE, RAW_OUTPUT_FILE

SEARCH = "s-report"
EXPERIMENT = "deltanas"
# mode, cycle, dataset, valid, accuracy, output lines, output tokens, jaccard, accepted, failure stage, 5-epoch acc
ROWS = [
    ("delta", 0, "mnist", True, 0.90, 30, 300, 0.40, True, "", 0.95),
    ("delta", 0, "mnist", False, 0.0, 40, 380, 0.0, False, "apply", None),
    ("delta", 0, "cifar-10", True, 0.50, 34, 320, 0.60, False, "", 0.70),
    ("delta", 1, "mnist", True, 0.92, 36, 330, 0.30, True, "", 0.96),
    ("delta", 1, "cifar-10", True, 0.55, 30, 290, 0.20, True, "", 0.60),
    ("delta", 1, "cifar-10", False, 0.0, 40, 400, 0.0, False, "train", None),
    ("full", 0, "mnist", True, 0.80, 210, 2000, 0.90, False, "", 0.85),
    ("full", 0, "mnist", False, 0.0, 220, 2100, 0.0, False, "static", None),
    ("full", 0, "cifar-10", False, 0.0, 200, 2000, 0.0, False, "static", None),
    ("full", 1, "mnist", False, 0.0, 200, 2000, 0.0, False, "train", None),
    ("full", 1, "cifar-10", True, 0.45, 190, 1900, 0.50, True, "", 0.40),
    ("full", 1, "cifar-10", False, 0.0, 200, 2000, 0.0, False, "apply", None),
]


def candidate_record(i: int, row: tuple) -> CandidateRecord:
    """One candidate logged the way `client.search.Search._finish` logs it (plus a re-trained accuracy)."""
    mode, cycle, dataset, valid, acc, lines, tokens, jaccard, accepted, stage, acc_long = row
    baseline = f"Base-{dataset}"
    # Every parent's same-budget reference: 0.6 ± 0.01, so the improved threshold is max(2 x 1, 1) = 2 points.
    gain = 100 * (acc - 0.6) if valid else None
    outcome = "invalid" if not valid else "improved" if gain > 2 else "worse" if gain < -2 else "within_noise"
    result = CandidateResult(
        candidate_id=candidate_id(SEARCH, cycle, baseline, mode, i), cycle=cycle, baseline=baseline, dataset=dataset,
        mode=mode, index=i, status="valid" if valid else "invalid", failure_stage=stage,
        failure_reason="" if valid else "boom", accuracy=acc, lemur_accuracy=0.8, diff_lines=lines - 4,
        outcome=outcome, gain=gain, threshold=2.0 if valid else None, reference_accuracy=0.6, reference_spread=0.01,
        root=baseline, change=f"-a | +b{i}", code_key=f"k{i}", predictions_digest=f"d{i}" if valid else "",
        output_tokens=tokens, output_lines=lines, generation_s=2.5, evaluation_s=4.0, novelty_jaccard=jaccard,
        accepted=accepted, model="smollm2-135m", seed=7, batch=64, transform="norm_32", worker="w0",
        hyperparameters={"lr": 0.01}, prompt_tokens=900, tokens_per_second=8.0, nearest_model="Base" if valid else "",
        eval_metrics={"train_loss": 1.2}, accuracy_long=acc_long, long_epochs=5 if acc_long is not None else None)
    artifacts = {RAW_OUTPUT_FILE: "raw", DIFF_FILE: "diff", CODE_FILE: "code",
                 FAILURE_FILE: "" if valid else f"{stage}: boom"}
    return result.to_record(artifacts)
