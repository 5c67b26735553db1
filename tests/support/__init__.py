"""What several test modules share (no test module imports another): the evaluator without its gRPC layer
(evaluation), the deployment files' parsers (deploy), fake and real LLM servers (llm_servers), a store of
candidate runs (records), a word-counting tokenizer (tokenizer), a small network to diff (diffs). The harness the
benchmarks share too is deltanas.testing; the fixtures are conftest.py's.
"""

TEST_MODEL = "smollm2-135m"  # the small LLM of the tests (deltanas.model_sources)
