"""The local backend on SmolLM2: n candidates, seeds, LoRA adapters hot-loaded, request errors.

.venv/bin/python -m pytest tests/test_generator_backend_local.py
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from deltanas import model_sources
from deltanas.vocabulary import FINISH_LENGTH, FINISH_STOP
from generator_svc.backends import (
    BACKENDS,
    BackendError,
    PromptTooLong,
    Sampling,
    UnknownAdapter,
    create_backend,
)
from generator_svc.backends.local import LocalBackend, resolve_dtype

MODEL = "smollm2-135m"
MESSAGES = [
    {"role": "system", "content": "You are a Python expert."},
    {"role": "user", "content": "Write a function that adds two numbers."},
]
SHORT = Sampling(max_new_tokens=12)
GREEDY = Sampling(temperature=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def backend(deltanas_home: Path):
    """One thread: with other jobs on the 2 cores, two OpenMP threads spin against each other (10x slower)."""
    threads = torch.get_num_threads()
    backend = create_backend("local", model=MODEL, max_batch=2, threads=1)
    assert isinstance(backend, LocalBackend)
    yield backend
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def adapter_dir(backend: LocalBackend, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised LoRA on SmolLM2, saved the way the fine-tuning job saves adapters."""
    from peft import LoraConfig, get_peft_model

    path = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(0)  # the same adapter in every run, whatever ran before
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model_sources.load_model(MODEL), config).save_pretrained(path)
    return path


def _texts(backend: LocalBackend, sampling: Sampling, adapter: str | None, seeds: list[int]) -> list[str]:
    gens = sorted(
        backend.generate(MESSAGES, n=len(seeds), sampling=sampling, adapter=adapter, seeds=seeds), key=lambda g: g.index
    )
    return [g.text for g in gens]


def test_n_candidates_with_token_counts(backend: LocalBackend) -> None:
    gens = list(backend.generate(MESSAGES, n=3, sampling=SHORT, adapter=None, seeds=[5, 6, 7]))
    assert sorted(g.index for g in gens) == [0, 1, 2]
    assert {g.index: g.seed for g in gens} == {0: 5, 1: 6, 2: 7}
    prompt_tokens = backend.count_tokens(MESSAGES)
    for g in gens:
        assert g.prompt_tokens == prompt_tokens > 10
        assert 0 < g.output_tokens <= SHORT.max_new_tokens
        assert g.text and g.latency_s > 0 and g.finish_reason in (FINISH_STOP, FINISH_LENGTH)
    assert backend.info().context_length == 8192


def test_same_seed_same_text(backend: LocalBackend) -> None:
    assert _texts(backend, SHORT, None, [11, 12]) == _texts(backend, SHORT, None, [11, 12])


def test_top_k_one_is_greedy(backend: LocalBackend) -> None:
    greedy = _texts(backend, GREEDY, None, [0])
    assert _texts(backend, Sampling(temperature=1.0, top_k=1, max_new_tokens=12), None, [3]) == greedy


def test_adapter_loaded_listed_used_and_disabled(backend: LocalBackend, adapter_dir: Path) -> None:
    base = _texts(backend, GREEDY, None, [0])
    backend.load_adapter("random", str(adapter_dir))
    assert backend.list_adapters() == ["random"]
    tuned = _texts(backend, GREEDY, "random", [0])
    assert tuned != base
    assert _texts(backend, GREEDY, None, [0]) == base  # adapter=None is the bare base model
    backend.load_adapter("random", str(adapter_dir))  # reloading a name replaces it, no restart
    assert backend.list_adapters() == ["random"]
    assert _texts(backend, GREEDY, "random", [0]) == tuned


def test_concurrent_requests_are_serialised(backend: LocalBackend) -> None:
    expected = _texts(backend, GREEDY, None, [0])
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _texts(backend, GREEDY, None, [0]), range(2)))
    assert results == [expected, expected]


def test_unknown_adapter_is_refused_before_generating(backend: LocalBackend, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot load adapter"):
        backend.load_adapter("never-loaded", str(tmp_path / "missing"))
    with pytest.raises(UnknownAdapter, match="never-loaded"):
        backend.generate(MESSAGES, n=1, sampling=SHORT, adapter="never-loaded", seeds=[0])


def test_prompt_too_long(backend: LocalBackend) -> None:
    tokens = backend.count_tokens(MESSAGES)
    too_many = Sampling(max_new_tokens=backend.info().context_length - tokens + 1)
    with pytest.raises(PromptTooLong) as err:
        backend.generate(MESSAGES, n=1, sampling=too_many, adapter=None, seeds=[0])
    assert (err.value.tokens, err.value.limit) == (tokens, tokens - 1)


def test_request_validation() -> None:
    assert {"local", "tgi", "openai"} <= set(BACKENDS)
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("nope")
    with pytest.raises(ValueError):
        Sampling(top_p=0)


def test_dtype_defaults_to_bfloat16_on_cuda_and_names_the_field() -> None:
    assert resolve_dtype("auto", "cuda") is torch.bfloat16 and resolve_dtype("auto", "cuda:1") is torch.bfloat16
    assert resolve_dtype("auto", "cpu") is None and resolve_dtype("float16", "cpu") is torch.float16
    with pytest.raises(ValueError, match=r"^dtype: 'float33'"):
        create_backend("local", model=MODEL, dtype="float33")


def test_dtype_is_applied(deltanas_home: Path) -> None:
    threads = torch.get_num_threads()
    try:
        backend = create_backend("local", model=MODEL, device="cpu", dtype="bfloat16", threads=1)
        assert backend.base.dtype is torch.bfloat16
        (gen,) = backend.generate(MESSAGES, n=1, sampling=GREEDY, adapter=None, seeds=[0])
        assert 0 < gen.output_tokens <= GREEDY.max_new_tokens and gen.text
    finally:
        torch.set_num_threads(threads)


def test_no_op_edit_guard_forbids_restoring_the_removed_line() -> None:
    """A `+` line may not end equal to the `-` line it replaces; any other line, or another content, may."""
    import torch

    from deltanas import model_sources
    from generator_svc.backends.logits import NoOpEditGuard

    tokenizer = model_sources.load_tokenizer("smollm2-135m")
    prompt = tokenizer("Answer:", add_special_tokens=False)["input_ids"]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    guard = NoOpEditGuard(tokenizer, len(prompt), {eos})

    def scores_after(text: str) -> torch.Tensor:
        ids = torch.tensor([prompt + tokenizer(text, add_special_tokens=False)["input_ids"]])
        scores = torch.zeros(1, len(tokenizer))
        scores[0, newline] = 10.0  # the model wants to end the line here
        return guard(ids, scores.clone())[0]

    hunk = "```diff\n@@ -1,2 +1,2 @@\n-    x = conv(32, 64)\n-    y = 2\n"
    assert scores_after(hunk + "+    x = conv(32, 64)")[newline] == float("-inf")  # the k=0 pair
    assert scores_after(hunk + "+    x = conv(32, 64)")[eos] == float("-inf")
    assert scores_after(hunk + "+    x = conv(32, 64)\n+    y = 2")[newline] == float("-inf")  # the k=1 pair
    assert scores_after(hunk + "+    x = conv(32, 48)")[newline] == 10.0  # a real change
    comment_ids = tokenizer(" # wider", add_special_tokens=False)["input_ids"]
    comment = next(t for t in comment_ids if "#" in tokenizer.decode([t]))
    ids = torch.tensor([prompt + tokenizer(hunk + "+    x = conv(32, 64)", add_special_tokens=False)["input_ids"]])
    scores = torch.zeros(1, len(tokenizer))
    scores[0, comment] = 10.0
    assert guard(ids, scores)[0, comment] == float("-inf")  # a comment does not make it a change
    assert scores_after(hunk + "+    x = conv(32, 64)\n+    y = 2\n+    z = 3")[newline] == 10.0  # an addition
    assert scores_after("```diff\n@@ -1 +1 @@\n     x = conv(32, 64)")[newline] == 10.0  # context
    assert scores_after("```diff\n--- a/model.py\n+++ b/model.py")[newline] == 10.0  # file headers


def test_grammar_decoding_scores_each_row_at_its_own_last_token(backend: LocalBackend) -> None:
    """Under a grammar, rows advance by different numbers of tokens per step (jump-forward), right-padded into one
    cached forward pass whose head runs only at each row's last token, and a finished row leaves the batch (its KV
    cache entries dropped): the scores a row samples from must be the model's next-token logits for exactly that
    row's text so far (a fresh forward pass of prompt + tokens so far, compared where the grammar allows a token)."""
    import threading

    from transformers import LogitsProcessor, LogitsProcessorList

    from deltadiff.grammar import FENCE_CLOSE, diff_grammar
    from generator_svc.backends import Constraint
    from generator_svc.backends.grammar_decoding import DecodeHooks
    from generator_svc.backends.logits import SeededSampler

    code = "".join(f"def f{i}(x):\n    y = x + {i}\n    return y * {i}\n\n\n" for i in range(8))
    seeds, hot = [3, 4, 5], Sampling(temperature=1.5, top_k=0, top_p=1.0)  # rows that part ways early
    scores_seen: list[torch.Tensor] = []
    lengths_seen: list[dict[int, int]] = [{}]  # row -> tokens so far before each scoring; unknown for the first
    finished: dict[int, list[int]] = {}

    class Record(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            scores_seen.append(scores.clone())
            return scores

    with backend._use_adapter(None):  # the base model, whatever adapter an earlier test loaded
        decoder = backend.grammar_decoder()
        prompt = backend._encode(MESSAGES)
        hooks = DecodeHooks(lambda row, ids, reason, forced: finished.__setitem__(row, ids), threading.Event(),
                            lambda tokens: lengths_seen.append(dict(tokens)))
        decoder.decode(prompt, Constraint(diff_grammar(code), FENCE_CLOSE), len(seeds), 40,
                       LogitsProcessorList([Record(), SeededSampler(hot, seeds)]), hooks, "cpu")
        checked, ragged = 0, False
        for step, (scores, lengths) in enumerate(zip(scores_seen, lengths_seen, strict=False)):
            widths = {row: n - lengths_seen[step - 1].get(row, n) for row, n in lengths.items()} if step > 1 else {}
            ragged |= len(set(widths.values())) > 1  # rows appended different numbers of tokens in the last pass
            if step:  # finished rows have left the batch: the scores hold the rows still going, in their order
                assert scores.shape[0] == len(lengths)
            for k, (row, n) in enumerate(sorted(lengths.items())):
                sequence = torch.cat([prompt[0], torch.tensor(finished[row][:n])])[None]
                with torch.inference_mode():
                    expected = decoder.model(input_ids=sequence).logits[0, -1].float()
                allowed = torch.isfinite(scores[k])
                assert allowed.any()
                torch.testing.assert_close(scores[k][allowed], expected[allowed], rtol=1e-3, atol=2e-3)
                checked += 1
    assert checked >= 10 and ragged and len(finished) == len(seeds)
    assert min(s.shape[0] for s in scores_seen) < len(seeds)  # a row that finished early left the batch
