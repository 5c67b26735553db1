"""What the CLI prints of a search: one row per candidate, and the line that says what it found.

    print_candidates(result.results)
    print(verdict(result.results))      # "1 improved: ... +13.1 points over ..." or "no improvement: ..."
"""

from __future__ import annotations

from client.records import CandidateResult
from client.report import best_gain, effective_rate, improvements


def print_candidates(results: list[CandidateResult]) -> None:
    """One row per candidate: what it changed, its outcome against its parent's same-budget reference, the gain."""
    rows = [("candidate", "parent", "outcome", "accuracy", "reference", "gain", "change")]
    for r in sorted(results, key=lambda r: (r.cycle, r.baseline, r.mode, r.index, r.attempt)):
        outcome = r.outcome.replace("_", " ") + (f" ({r.failure_stage})" if r.failure_stage else "")
        reference = f"{r.reference_accuracy:.4f} ± {r.reference_spread:.4f}" if r.reference_accuracy is not None \
            else "-"
        rows.append((r.candidate_id, r.baseline[:28], outcome, f"{r.accuracy:.4f}" if r.valid else "-", reference,
                     f"{r.gain:+.2f}" if r.gain is not None else "-", (r.change or "-")[:60]))
    print_rows(rows)


def verdict(results: list[CandidateResult]) -> str:
    """The search's last line: what it found against the same-budget references, and nothing else."""
    found = improvements(results)
    if found:
        return f"{len(found)} improved: " + "; ".join(found)
    valid = [r for r in results if r.valid]
    effective, gain = effective_rate(results), best_gain(results)
    details = [f"{len(valid)} valid"]
    if effective is not None:
        details.append(f"{100 * effective:.0f}% of them effective")
    if gain is not None:
        details.append(f"best gain {gain:+.2f} points")
    return (f"no improvement: none of {len(results)} candidate(s) beat its same-budget reference beyond the "
            f"seed spread ({', '.join(details)})")


def print_rows(rows: list[tuple[str, ...]]) -> None:
    """An aligned text table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
