"""The evaluator's Prometheus endpoint on a real server: slots, busy slots, candidates by status and stage."""

from __future__ import annotations

import threading
import time
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

from deltanas.testing.candidates import ANSWER, request
from deltanas.testing.processes import free_port
from deltanas.v1 import evaluator_pb2_grpc
from evaluator_svc.config import EvaluatorConfig
from evaluator_svc.isolation import missing_layers
from evaluator_svc.service import build_server


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_candidates_and_show_busy_slots() -> None:
    port = free_port()
    server = build_server(EvaluatorConfig(port=0, slots=2, metrics_port=port, default_timeout_s=120,
                                          allow_weak_sandbox=bool(missing_layers()))).start()
    try:
        before = scrape(port)
        assert before[("deltanas_evaluator_slots", ())] == 2
        assert before[("deltanas_evaluator_busy_slots", ())] == 0
        with grpc.insecure_channel(server.address) as channel:
            stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
            stub.Evaluate(request(request_id="m1", delta_answer="no diff here"), timeout=60)
            stub.Evaluate(request(request_id="m2", delta_answer="no diff either"), timeout=60)
            busy = []
            training = threading.Thread(target=lambda: stub.Evaluate(
                request(request_id="m3", delta_answer=ANSWER), timeout=300))
            training.start()
            while training.is_alive():
                busy.append(scrape(port)[("deltanas_evaluator_busy_slots", ())])
                time.sleep(0.2)
            training.join()
        after = scrape(port)
        assert max(busy) == 1 and after[("deltanas_evaluator_busy_slots", ())] == 0
        assert after[("deltanas_evaluator_candidates_total", (("stage", "extract"), ("status", "invalid")))] == 2
        assert after[("deltanas_evaluator_candidates_total", (("stage", "none"), ("status", "valid")))] == 1
        assert after[("deltanas_evaluator_evaluation_seconds_count", ())] == 3
    finally:
        server.stop(0)
    try:
        scrape(port)
    except OSError:
        pass  # the endpoint stops with the server
    else:
        raise AssertionError("/metrics still answers after the server stopped")
