"""The generator over real gRPC on loopback with the small LLM: streaming, token accounting, bad input."""

from __future__ import annotations

import grpc
import pytest

import deltadiff
from deltanas.testing.candidates import BASE, MODEL
from deltanas.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from deltanas.vocabulary import FINISH_LENGTH, FINISH_STOP, FINISH_UNKNOWN


@pytest.fixture(scope="module")
def stub(generator_server) -> generator_pb2_grpc.GeneratorServiceStub:
    channel = grpc.insecure_channel(generator_server.address)
    yield generator_pb2_grpc.GeneratorServiceStub(channel)
    channel.close()


def request(**overrides) -> generator_pb2.GenerateRequest:
    baseline = common_pb2.Baseline(name=MODEL, dataset="mnist", task="img-classification", metric="acc", epoch=1,
                                   accuracy=0.79, code=BASE, hyperparameters={"lr": 0.05, "momentum": 0.9},
                                   batch=32, transform="norm")
    fields = {"request_id": "g", "baseline": baseline, "mode": common_pb2.MODE_DELTA, "n": 2, "seed": 7,
              "sampling": generator_pb2.SamplingParams(max_new_tokens=24), **overrides}
    return generator_pb2.GenerateRequest(**fields)


def test_generate_streams_n_candidates_with_token_accounting(stub) -> None:
    replies = list(stub.Generate(request(), timeout=300))
    assert sorted(r.index for r in replies) == [0, 1]
    assert sorted(r.seed for r in replies) == [7, 8]
    for r in replies:
        assert r.raw_text and r.prompt_tokens > 500 and 0 < r.output_tokens <= 24
        assert r.output_lines == len(r.raw_text.splitlines())
        assert r.latency_s > 0 and r.tokens_per_second > 0
        assert r.model and r.adapter == ""
        assert r.finish_reason in (FINISH_STOP, FINISH_LENGTH) and r.forced_tokens == 0
    again = {r.index: r.raw_text for r in stub.Generate(request(), timeout=300)}
    assert again == {r.index: r.raw_text for r in replies}  # per-candidate seeds make it reproducible


def test_constrained_delta_answers_all_apply_to_their_baseline(stub) -> None:
    """The untuned SmolLM2 writes prose when free; under the baseline's grammar every answer is a diff that applies,
    also those that reach max_new_tokens (closed at a line end before the limit), and forced text is counted."""
    replies = list(stub.Generate(request(n=3, constrained=True, seed=3,
                                         sampling=generator_pb2.SamplingParams(max_new_tokens=64)), timeout=600))
    assert len(replies) == 3
    for r in replies:
        code = deltadiff.apply_diff(BASE, deltadiff.extract_diff(r.raw_text))
        assert code != BASE and r.raw_text.startswith("```diff\n--- a/model.py\n+++ b/model.py\n@@ -")
        assert r.raw_text.endswith("```")
        assert 0 < r.forced_tokens < r.output_tokens <= 64
        assert r.finish_reason in (FINISH_STOP, FINISH_LENGTH)


@pytest.mark.parametrize("constrained", [False, True])
def test_progress_messages_stream_the_tokens_so_far_before_each_answer(stub, constrained: bool) -> None:
    """Asked for progress, the stream also carries partial messages: per candidate, rising token counts and no
    text, all before its answer; the answers are those of a request without progress (same seeds)."""
    sampling = generator_pb2.SamplingParams(max_new_tokens=32)
    plain = {r.index: r for r in stub.Generate(request(constrained=constrained, sampling=sampling), timeout=600)}
    replies = list(stub.Generate(request(constrained=constrained, sampling=sampling, progress_interval_s=0.001),
                                 timeout=600))
    answers = {r.index: r for r in replies if not r.partial}
    assert {i: (r.raw_text, r.output_tokens) for i, r in answers.items()} == {
        i: (r.raw_text, r.output_tokens) for i, r in plain.items()}
    for index, answer in answers.items():
        position = replies.index(answer)
        partial = [r for r in replies if r.partial and r.index == index]
        assert partial and all(replies.index(r) < position for r in partial)
        counts = [r.output_tokens for r in partial]
        assert counts == sorted(counts) and 0 < counts[-1] < answer.output_tokens
        assert all(r.raw_text == "" and r.finish_reason == FINISH_UNKNOWN and r.seed == answer.seed for r in partial)


def test_budget_facts_and_history_reach_the_prompt(stub) -> None:
    """The prompt states the measured facts instead of LEMUR's record, and what was tried: it is longer by them."""
    plain = list(stub.Generate(request(n=1, sampling=generator_pb2.SamplingParams(max_new_tokens=4)), timeout=300))
    budget = common_pb2.BudgetFacts(accuracy=0.3125, spread=0.02, seeds=3, train_images=4000, num_params=10234,
                                    train_seconds=2.5)
    tried = [generator_pb2.TriedChange(change="-loss.backward() | +loss.backward(retain_graph=True)",
                                       outcome="no effect (the same predictions)")]
    told = list(stub.Generate(request(n=1, budget=budget, tried=tried,
                                      sampling=generator_pb2.SamplingParams(max_new_tokens=4)), timeout=300))
    assert told[0].prompt_tokens > plain[0].prompt_tokens + 40


def test_full_mode_uses_its_own_template(stub) -> None:
    (reply,) = stub.Generate(request(mode=common_pb2.MODE_FULL, n=1), timeout=300)
    assert reply.output_tokens > 0


@pytest.mark.parametrize(("overrides", "field"), [
    ({"mode": common_pb2.MODE_UNSPECIFIED}, "mode"),
    ({"n": 0}, "n"),
    ({"n": 1000}, "n"),
    ({"sampling": generator_pb2.SamplingParams(max_new_tokens=60_000)}, "sampling.max_new_tokens"),
    ({"sampling": generator_pb2.SamplingParams(top_p=1.5)}, "sampling.top_p"),
    ({"sampling": generator_pb2.SamplingParams(max_new_tokens=40_000)}, "baseline.code"),  # prompt + 40k > context
    ({"mode": common_pb2.MODE_FULL, "constrained": True}, "constrained"),  # only delta mode has a grammar
    ({"progress_interval_s": -1.0}, "progress_interval_s"),
    ({"budget": common_pb2.BudgetFacts(accuracy=1.5, seeds=3, train_images=10)}, "budget.accuracy"),
    ({"budget": common_pb2.BudgetFacts(accuracy=0.5, seeds=0, train_images=10)}, "budget.seeds"),
    ({"tried": [generator_pb2.TriedChange(change="-a | +b", outcome="no effect")] * 17}, "tried"),
    ({"tried": [generator_pb2.TriedChange(change="x" * 401, outcome="no effect")]}, "tried.change"),
    ({"tried": [generator_pb2.TriedChange(change="-a | +b", outcome="line\nbreak")]}, "tried.outcome"),
])
def test_bad_input_is_invalid_argument_naming_the_field(stub, overrides: dict, field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(request(**overrides), timeout=60))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}:"), err.value.details()


def test_empty_baseline_code_is_invalid_argument(stub) -> None:
    req = request()
    req.baseline.code = "  \n"
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(req, timeout=60))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("baseline.code:")


def test_unknown_adapter_is_not_found(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(request(adapter="no-such-adapter"), timeout=60))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-adapter" in err.value.details()


def test_model_info_and_adapters(stub) -> None:
    info = stub.GetModelInfo(generator_pb2.GetModelInfoRequest(), timeout=10)
    assert info.backend == "local" and "smollm2" in info.model.lower() and info.context_length >= 2048
    assert info.constrained_decoding
    assert list(stub.ListAdapters(generator_pb2.ListAdaptersRequest(), timeout=10).adapters) == []
    with pytest.raises(grpc.RpcError) as err:
        stub.LoadAdapter(generator_pb2.LoadAdapterRequest(name="x", path="/nonexistent/adapter"), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("path:")
