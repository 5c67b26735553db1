"""The search: cycles of parents -> LLM candidates -> sandboxed evaluation -> outcomes against same-budget
references -> an archive the next cycle draws from; everything tracked in MLflow.

    from client.config import SearchConfig
    from client.search import Search
    result = Search(SearchConfig(datasets=["mnist"], candidates=3, selection="evolve"), services, tracker).run()

One module per job, each read in one sitting:
    loop.py        the cycle: parents, generation, dedup, evaluation, judging, logging, repair, re-training
    archive.py     evaluated programs with lineage (what a policy draws parents from)
    selection.py   selection policies (registry): paging, evolve
    references.py  same-budget references of programs (cached in the tracking store)
    outcomes.py    what a candidate's evaluation means against its reference
    settings.py    how a program trains, and the one EvaluateRequest builder
    adapters.py    which LoRA adapter each mode generates with, per cycle (and the closed loop's fine-tunes)
    ids.py         deterministic candidate ids and seeds
"""

from __future__ import annotations

from typing import Any

from client.records import CandidateResult, SearchProgress, SearchResult
from client.search.ids import candidate_id, repair_id

__all__ = ["CandidateResult", "Search", "SearchProgress", "SearchResult", "candidate_id", "repair_id"]


def __getattr__(name: str) -> Any:
    """`Search` is imported on first use: the loop pulls in gRPC stubs, the scheduler and MLflow, which the
    policies, outcomes and records (imported by the config and the progress display) do not need."""
    if name == "Search":
        from client.search.loop import Search

        return Search
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
