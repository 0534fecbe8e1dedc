"""The access log: a line per failed or slow call, successful calls summed up per method and second."""

from __future__ import annotations

import grpc
from structlog.testing import capture_logs

from backbone.runtime import interceptors
from backbone.runtime.interceptors import SLOW_CALL_MS, SUMMARY_SECONDS, _access_log

OK = grpc.StatusCode.OK


def test_a_busy_method_writes_one_line_per_period_and_every_failure() -> None:
    interceptors._summaries.clear()
    method = "/backbone.gateway.v1.GatewayService/SubmitOrder"
    with capture_logs() as lines:
        for index in range(1000):  # 1,000 calls in 0.999 s: the first on its own, the rest summed
            _access_log(method, OK, 2.0, 100.0 + index / 1000)
        _access_log(method, grpc.StatusCode.FAILED_PRECONDITION, 1.0, 100.5)
        _access_log(method, OK, SLOW_CALL_MS + 1, 100.6)
        _access_log(method, OK, 4.0, 100.0 + SUMMARY_SECONDS + 0.5)  # a new period
    events = [(line["event"], line.get("code"), line.get("calls")) for line in lines]
    assert events == [
        ("call", "OK", None),
        ("call", "FAILED_PRECONDITION", None),
        ("call", "OK", None),
        ("calls", "OK", 999),
        ("call", "OK", None),
    ]
    assert lines[3]["mean_ms"] == 2.0 and lines[3]["longest_ms"] == 2.0


def test_a_quiet_method_writes_every_call() -> None:
    interceptors._summaries.clear()
    with capture_logs() as lines:
        for second in range(3):
            _access_log("/backbone.gateway.v1.GatewayService/GetOrder", OK, 1.0, 200.0 + 2 * second)
    assert [line["event"] for line in lines] == ["call", "call", "call"]
