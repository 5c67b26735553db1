"""The report of a search, computed from its MLflow child runs (the single source of truth).

    deltanas report <search-id>

Per generation mode (delta vs full): candidates, valid rate, mean one-epoch accuracy of the valid ones,
best accuracy per dataset, mean output lines and tokens, novel architectures admitted, failure stages;
the output-length reduction of delta vs full; Spearman ρ between one-epoch and longer-run accuracy of the
candidates the search re-trained (metric `accuracy_long`, param `long_epochs`) next to the same ρ from
LEMUR's own records. `publish` makes the parent run the search's dashboard: per-cycle metrics (step = cycle),
the summary metrics, the table as text and JSON, the plots, the candidates as a table and a markdown note; the
search publishes after every cycle and at its end, `deltanas report` again (idempotent: what is already right
is not written twice).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Any

from client import lemur_fidelity
from client.figures import figures
from client.lemur_fidelity import Fidelity, spearman
from client.records import CandidateResult, modes_of
from client.tracking import Tracker
from deltanas.vocabulary import ROLE_TAG, SEARCH_TAG, SKIPPED_TAG

REPORT_DIR = "report"
REPORT_FILE = "report.json"
REPORT_TEXT_FILE = "report.txt"
TABLE_FILE = "candidates.json"  # MLflow's table format (pandas "split" orient), shown in the run's artifacts
NOTE_TAG = "mlflow.note.content"  # the run page's description (markdown)
LINEAGE_FILE = "lineage.json"  # the programs and which one each candidate changed
TABLE_COLUMNS = ("candidate_id", "cycle", "mode", "dataset", "baseline", "generation", "outcome", "accuracy",
                 "reference_accuracy", "reference_spread", "gain", "confirmed_gain", "failure_stage", "change",
                 "output_tokens", "output_lines", "novelty_jaccard", "accepted", "lemur_accuracy")
OUTCOMES = ("improved", "within_noise", "worse", "no_effect", "invalid", "duplicate")


@dataclass
class ModeSummary:
    """One column of the table: the candidates of one generation mode."""

    mode: str
    candidates: int
    valid: int
    valid_rate: float
    mean_accuracy: float | None
    best_accuracy: dict[str, float]
    mean_output_lines: float
    mean_output_tokens: float
    accepted: int
    failures: dict[str, int]
    outcomes: dict[str, int] = field(default_factory=dict)  # OUTCOMES -> count
    effective_rate: float | None = None  # share of the valid ones that changed the predictions
    best_gain: float | None = None  # points over the same-budget reference
    improved: list[str] = field(default_factory=list)  # "cid +4.3 points over parent", best first


@dataclass
class CycleSummary:
    mode: str
    cycle: int
    candidates: int
    valid_rate: float
    mean_accuracy: float | None
    improved: int = 0
    best_gain: float | None = None


@dataclass
class Report:
    search_id: str
    modes: list[ModeSummary]
    cycles: list[CycleSummary]
    reduction_pct: dict[str, float]
    proxy: list[Fidelity]
    reference: list[Fidelity] = field(default_factory=list)
    reference_note: str = ""
    skipped_baselines: list[str] = field(default_factory=list)  # "name: why", they do not learn under the budget


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def effective_rate(candidates: list[CandidateResult]) -> float | None:
    """Of the valid candidates judged against a reference, the share that changed the predictions."""
    judged = [c for c in candidates if c.valid and c.outcome]
    return sum(c.outcome != "no_effect" for c in judged) / len(judged) if judged else None


def best_gain(candidates: Iterable[CandidateResult]) -> float | None:
    return max((c.gain for c in candidates if c.valid and c.gain is not None), default=None)


def improvements(candidates: Iterable[CandidateResult]) -> list[str]:
    """The improved candidates in words, best first: "c1-delta-0-... +4.3 points over rag-5ade... (confirmed)"."""
    found = sorted((c for c in candidates if c.improved), key=lambda c: (-(c.gain or 0.0), c.candidate_id))
    return [f"{c.candidate_id} {c.gain:+.1f} points over {c.baseline}" + (
        "" if c.confirmed_gain is None else f" ({'confirmed' if c.confirmed else 'not confirmed'} over the seeds: "
        f"{c.confirmed_gain:+.1f})") for c in found]


def summarize_mode(mode: str, group: list[CandidateResult]) -> ModeSummary:
    valid = [c for c in group if c.valid]
    best: dict[str, float] = {}
    for c in valid:
        best[c.dataset] = max(best.get(c.dataset, -math.inf), c.accuracy)
    outcomes = Counter(c.outcome for c in group if c.outcome)
    return ModeSummary(
        mode=mode, candidates=len(group), valid=len(valid), valid_rate=len(valid) / len(group),
        mean_accuracy=_mean([c.accuracy for c in valid]), best_accuracy=dict(sorted(best.items())),
        mean_output_lines=fmean(c.output_lines for c in group),
        mean_output_tokens=fmean(c.output_tokens for c in group), accepted=sum(c.accepted for c in group),
        failures=dict(sorted(Counter(c.failure_stage for c in group if c.status == "invalid").items())),
        outcomes={o: outcomes[o] for o in OUTCOMES if outcomes[o]}, effective_rate=effective_rate(group),
        best_gain=best_gain(group), improved=improvements(group))


def _group(candidates: Iterable[CandidateResult],
           key: Callable[[CandidateResult], Any]) -> dict[Any, list[CandidateResult]]:
    groups: dict[Any, list[CandidateResult]] = defaultdict(list)
    for c in candidates:
        groups[key(c)].append(c)
    return groups


def summarize_cycles(candidates: list[CandidateResult]) -> list[CycleSummary]:
    groups = _group(candidates, lambda c: (c.mode, c.cycle))
    return [CycleSummary(mode, cycle, len(g), sum(c.valid for c in g) / len(g),
                         _mean([c.accuracy for c in g if c.valid]), sum(c.improved for c in g), best_gain(g))
            for mode in modes_of(candidates) for cycle in sorted({c.cycle for c in candidates})
            if (g := groups.get((mode, cycle)))]


def reduction_pct(modes: list[ModeSummary]) -> dict[str, float]:
    """How much shorter delta outputs are than full-model outputs, in percent (empty without both modes)."""
    by_mode = {m.mode: m for m in modes}
    if "delta" not in by_mode or "full" not in by_mode:
        return {}
    delta, full = by_mode["delta"], by_mode["full"]
    return {what: 100.0 * (1.0 - getattr(delta, f"mean_output_{what}") / f)
            for what in ("lines", "tokens") if (f := getattr(full, f"mean_output_{what}"))}


def proxy_fidelity(candidates: list[CandidateResult]) -> list[Fidelity]:
    """ρ(one-epoch accuracy, `accuracy_long`) of re-trained valid candidates: per long-run length, all
    datasets pooled ("all") and per dataset."""
    retrained = [c for c in candidates if c.valid and c.accuracy_long is not None]
    out = []
    for epochs, group in sorted(_group(retrained, lambda c: c.long_epochs or 0).items()):
        for dataset, rows in [("all", group), *sorted(_group(group, lambda c: c.dataset).items())]:
            out.append(Fidelity(dataset, epochs, len(rows), spearman([c.accuracy for c in rows],
                                                                     [c.accuracy_long for c in rows])))
    return out


def build_report(search_id: str, candidates: list[CandidateResult], reference: bool = True) -> Report:
    """The whole report; `reference` adds LEMUR's own ρ for the search's datasets."""
    groups = _group(candidates, lambda c: c.mode)
    modes = [summarize_mode(m, groups[m]) for m in modes_of(candidates)]
    report = Report(search_id, modes, summarize_cycles(candidates), reduction_pct(modes), proxy_fidelity(candidates))
    if reference and candidates:
        try:
            report.reference = lemur_fidelity.reference(sorted({c.dataset for c in candidates}))
        except FileNotFoundError as exc:
            report.reference_note = str(exc)
    return report


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def _mode_rows(modes: list[ModeSummary]) -> list[tuple[str, list[str]]]:
    rows = [("candidates", [str(m.candidates) for m in modes]),
            ("improved (beyond the seed spread)", [str(m.outcomes.get("improved", 0)) for m in modes]),
            ("best gain over reference (points)", [_fmt(m.best_gain, "+.2f") for m in modes]),
            *((f"  {o.replace('_', ' ')}", [str(m.outcomes.get(o, 0)) for m in modes])
              for o in OUTCOMES[1:] if any(o in m.outcomes for m in modes)),
            ("effective (of the valid)", [_fmt(None if m.effective_rate is None else 100 * m.effective_rate, ".1f")
                                          + ("%" if m.effective_rate is not None else "") for m in modes]),
            ("valid rate", [f"{100 * m.valid_rate:.1f}%" for m in modes]),
            ("mean accuracy (valid)", [_fmt(m.mean_accuracy) for m in modes])]
    for ds in sorted({ds for m in modes for ds in m.best_accuracy}):
        rows.append((f"best accuracy {ds}", [_fmt(m.best_accuracy.get(ds)) for m in modes]))
    rows += [("mean output lines", [f"{m.mean_output_lines:.1f}" for m in modes]),
             ("mean output tokens", [f"{m.mean_output_tokens:.1f}" for m in modes]),
             ("novel admitted", [str(m.accepted) for m in modes])]
    for stage in sorted({s for m in modes for s in m.failures}):
        rows.append((f"failed at {stage}", [str(m.failures.get(stage, 0)) for m in modes]))
    return rows


def _table(header: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    """Rows of a label column and right-aligned cells, under `header`."""
    width = max(len(label) for label in [header[0], *(label for label, _ in rows)])
    cols = [max([len(h), *(len(cells[i]) for _, cells in rows)]) for i, h in enumerate(header[1:])]

    def line(label: str, cells: list[str]) -> str:
        return "  ".join([label.ljust(width), *(c.rjust(w) for c, w in zip(cells, cols, strict=True))])

    return [line(header[0], header[1:]), *(line(label, cells) for label, cells in rows)]


def _fidelity_lines(title: str, rows: list[Fidelity], count: str) -> list[str]:
    if not rows:
        return []
    epochs = sorted({r.epoch for r in rows})
    by_key = {(r.dataset, r.epoch): r for r in rows}
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    cells = [(ds, [f"{_fmt(r.rho, '.3f')} ({r.models})" if (r := by_key.get((ds, e))) else "-" for e in epochs])
             for ds in datasets]
    return ["", f"{title} — Spearman ρ ({count})", *_table(["dataset", *(f"1 vs {e} ep" for e in epochs)], cells)]


def render(report: Report) -> str:
    if not report.modes:
        return "\n".join([f"search {report.search_id}: no candidates logged yet",
                          *(f"skipped, does not learn under this budget: {s}" for s in report.skipped_baselines)])
    total = sum(m.candidates for m in report.modes)
    lines = [f"search {report.search_id}: {total} candidates, {len({c.cycle for c in report.cycles})} cycle(s)", "",
             *_table(["", *(m.mode for m in report.modes)], _mode_rows(report.modes)), "",
             "per cycle: improved / best gain (points) / valid rate",
             *_table(["cycle", *(m.mode for m in report.modes)], _cycle_rows(report))]
    for m in report.modes:
        lines += ["", f"{m.mode}: " + (f"{len(m.improved)} improved: " + "; ".join(m.improved) if m.improved else
                                       "no candidate beat its same-budget reference beyond the seed spread")]
    lines += [f"skipped, does not learn under this budget: {s}" for s in report.skipped_baselines]
    if report.reduction_pct:
        lines += ["", "delta vs full: " + ", ".join(f"output {what} {pct:.1f}% shorter"
                                                   for what, pct in report.reduction_pct.items())]
    lines += _fidelity_lines("one-epoch proxy vs longer training of re-trained candidates", report.proxy,
                             "candidates")
    lines += _fidelity_lines("LEMUR reference, best trial per model", report.reference, "models")
    if report.reference_note:
        lines += ["", f"LEMUR reference unavailable: {report.reference_note}"]
    return "\n".join(lines)


def _cycle_rows(report: Report) -> list[tuple[str, list[str]]]:
    by_key = {(c.mode, c.cycle): c for c in report.cycles}
    return [(str(cycle), [f"{c.improved} / {_fmt(c.best_gain, '+.2f')} / {100 * c.valid_rate:.1f}%"
                          if (c := by_key.get((m.mode, cycle))) else "-" for m in report.modes])
            for cycle in sorted({c.cycle for c in report.cycles})]


def summary_metrics(report: Report) -> dict[str, float]:
    """The parent run's metrics (non-finite values left out)."""
    out: dict[str, float] = {}
    for m in report.modes:
        out |= {f"{m.mode}_candidates": m.candidates, f"{m.mode}_valid_rate": m.valid_rate,
                f"{m.mode}_improved": m.outcomes.get("improved", 0), f"{m.mode}_best_gain": m.best_gain,
                f"{m.mode}_effective_rate": m.effective_rate,
                **{f"{m.mode}_outcome_{o}": n for o, n in m.outcomes.items()},
                f"{m.mode}_mean_accuracy": m.mean_accuracy, f"{m.mode}_accepted": m.accepted,
                f"{m.mode}_mean_output_lines": m.mean_output_lines,
                f"{m.mode}_mean_output_tokens": m.mean_output_tokens,
                **{f"{m.mode}_best_accuracy_{ds}": v for ds, v in m.best_accuracy.items()},
                **{f"{m.mode}_failed_{stage}": n for stage, n in m.failures.items()}}
    out |= {f"output_{what}_reduction_pct": pct for what, pct in report.reduction_pct.items()}
    for r in report.proxy:
        suffix = f"e{r.epoch}" if r.dataset == "all" else f"e{r.epoch}_{r.dataset}"
        out |= {f"spearman_rho_{suffix}": r.rho, f"spearman_candidates_{suffix}": r.models}
    if pooled := [r for r in report.proxy if r.dataset == "all"]:
        out["spearman_rho"] = pooled[-1].rho
    for r in report.reference:
        out |= {f"lemur_spearman_rho_{r.dataset}_e{r.epoch}": r.rho,
                f"lemur_spearman_models_{r.dataset}_e{r.epoch}": r.models}
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


def cycle_metrics(candidates: list[CandidateResult]) -> dict[int, dict[str, float]]:
    """The parent's per-cycle metrics (step = cycle) as `<mode>/<name>` (the UI charts each mode as a section):
    candidates, improved, best gain (this cycle's) and best so far (the best gain up to this cycle), the effective
    rate (valid ones that changed the predictions), valid rate, mean and best accuracy of the valid ones, mean
    output tokens and lines, failures."""
    out: dict[int, dict[str, float]] = defaultdict(dict)
    so_far: dict[str, float] = {}
    for (mode, cycle), group in sorted(_group(candidates, lambda c: (c.mode, c.cycle)).items()):
        valid = [c for c in group if c.valid]
        gain = best_gain(group)
        if gain is not None:
            so_far[mode] = max(so_far.get(mode, gain), gain)
        values = {"candidates": len(group), "improved": sum(c.improved for c in group), "best_gain": gain,
                  "best_so_far": so_far.get(mode), "effective_rate": effective_rate(group),
                  "valid_rate": len(valid) / len(group), "mean_accuracy": _mean([c.accuracy for c in valid]),
                  "best_accuracy": max((c.accuracy for c in valid), default=None),
                  "mean_output_tokens": fmean(c.output_tokens for c in group),
                  "mean_output_lines": fmean(c.output_lines for c in group),
                  **{f"outcome_{o}": n for o, n in Counter(c.outcome for c in group if c.outcome).items()},
                  **{f"failed_{stage}": n for stage, n in Counter(c.failure_stage for c in group
                                                                  if c.status == "invalid").items()}}
        out[cycle] |= {f"{mode}/{k}": float(v) for k, v in values.items() if v is not None}
    return dict(out)


def lineage(candidates: list[CandidateResult]) -> dict[str, Any]:
    """The search's lineage graph: every program (LEMUR roots and candidates) with its outcome, and an edge from
    each candidate's parent (the program its change applies to) to it."""
    nodes: dict[str, dict[str, Any]] = {}
    for c in sorted(candidates, key=lambda c: (c.cycle, c.candidate_id)):
        nodes.setdefault(c.baseline, {"id": c.baseline, "kind": "root" if c.generation <= 1 else "candidate",
                                      "accuracy": c.reference_accuracy, "spread": c.reference_spread})
        nodes[c.candidate_id] = {"id": c.candidate_id, "kind": "candidate", "cycle": c.cycle, "outcome": c.outcome,
                                 "accuracy": c.accuracy if c.valid else None, "gain": c.gain,
                                 "confirmed_gain": c.confirmed_gain, "generation": c.generation, "root": c.root,
                                 "change": c.change}
    edges = [[c.baseline, c.candidate_id] for c in sorted(candidates, key=lambda c: (c.cycle, c.candidate_id))]
    return {"nodes": list(nodes.values()), "edges": edges}


def candidate_table(candidates: list[CandidateResult]) -> str:
    """The candidates as MLflow's table JSON ({"columns", "data"}), one row each, in candidate-id order."""
    rows = [[getattr(c, col) for col in TABLE_COLUMNS] for c in sorted(candidates, key=lambda c: c.candidate_id)]
    return json.dumps({"columns": list(TABLE_COLUMNS), "data": rows})


def note(report: Report) -> str:
    """The parent run's markdown description: the report as the CLI prints it."""
    return (f"### deltanas search `{report.search_id}`\n\nWritten by the search after every cycle and by "
            f"`deltanas report {report.search_id}`; the plots and `{TABLE_FILE}` are under `{REPORT_DIR}/` in "
            f"Artifacts, one child run per candidate.\n\n```\n{render(report)}\n```\n")


def parent_run(tracker: Tracker, search_id: str) -> Any:
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`{SEARCH_TAG}` = '{search_id}' and "
                                      f"tags.`{ROLE_TAG}` = 'search'", max_results=1)
    if not runs:
        raise ValueError(f"search_id: no search {search_id!r} in this experiment at {tracker.tracking_uri}")
    return runs[0]


def publish(tracker: Tracker, run_id: str, search_id: str, reference: bool = True, final: bool = True) -> Report:
    """Computes the report from the child runs and writes the dashboard onto the parent run `run_id`.

    `final=False` (after a cycle): only the per-cycle metrics. Nothing that is already there is written again.
    """
    candidates = [CandidateResult.from_run(run) for run in tracker.children(run_id)]
    report = build_report(search_id, candidates, reference and final)
    report.skipped_baselines = json.loads(tracker.run_tags(run_id).get(SKIPPED_TAG, "[]"))
    if not final:
        tracker.log_summary(run_id, {}, {}, steps=cycle_metrics(candidates))
        return report
    table = f"{REPORT_DIR}/{TABLE_FILE}"
    tracker.log_summary(run_id, summary_metrics(report), {
        f"{REPORT_DIR}/{REPORT_TEXT_FILE}": render(report),
        f"{REPORT_DIR}/{REPORT_FILE}": json.dumps(asdict(report), indent=2),
        f"{REPORT_DIR}/{LINEAGE_FILE}": json.dumps(lineage(candidates), indent=1),
        **({table: candidate_table(candidates)} if candidates else {})},
        steps=cycle_metrics(candidates), tags={NOTE_TAG: note(report)},
        tables=[table] if candidates else [])
    if candidates:
        tracker.log_figures(run_id, {f"{REPORT_DIR}/{name}": fig
                                     for name, fig in figures(report.search_id, report.cycles, candidates).items()})
    return report


def make_report(tracking_uri: str, experiment: str, search_id: str, reference: bool = True) -> Report:
    """`publish` for the search `search_id` of `experiment` in the store at `tracking_uri`."""
    tracker = Tracker(tracking_uri, experiment)
    return publish(tracker, parent_run(tracker, search_id).info.run_id, search_id, reference)
