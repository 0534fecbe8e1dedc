"""The SDK execution stream's resume point (backbone/client/_executions.py): where a new call starts
after a break, and which breaks are worth one."""

from __future__ import annotations

import grpc

from backbone.client import BackboneError, ExecutionReport
from backbone.client._executions import (
    LAST_SEQUENCE_HEADER,
    LAST_SEQUENCES_HEADER,
    ResumePoint,
    resume_request,
)
from backbone.client._models import report_from_proto
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason


def numbered(number: int) -> ExecutionReport:
    return report_from_proto(
        gateway_pb2.ExecutionReport(
            order=gateway_pb2.Order(order_id="o1"), execution_type=common_pb2.EXECUTION_TYPE_ACCEPTED,
            account_sequence=number,
        )
    )  # fmt: skip


def error(code: grpc.StatusCode, reason: RejectReason) -> BackboneError:
    return BackboneError(code, reason, "broken")


def test_a_live_stream_resumes_after_the_announced_number_then_after_the_last_report() -> None:
    point = ResumePoint(0)
    assert point.from_sequence == 0 and not point.known  # nothing known: live only
    point.announced(((LAST_SEQUENCE_HEADER, "41"), ("other", "x")))
    assert point.from_sequence == 42
    point.saw(numbered(42))
    point.saw(numbered(0))  # a report of nothing journaled moves nothing
    assert point.from_sequence == 43 and point.last_sequence == 42


def test_a_resumed_stream_starts_where_it_was_asked_and_ignores_the_header() -> None:
    point = ResumePoint(7)
    point.announced(((LAST_SEQUENCE_HEADER, "100"),))
    assert point.from_sequence == 7


def test_only_breaks_worth_it_resume_and_only_so_many_in_a_row() -> None:
    point = ResumePoint(1, max_attempts=3)
    assert not point.resumes_after(error(grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_RANGE))
    assert point.resumes_after(error(grpc.StatusCode.UNAVAILABLE, RejectReason.EXECUTIONS_INTERRUPTED))
    assert not point.resumes_after(error(grpc.StatusCode.RESOURCE_EXHAUSTED, RejectReason.SLOW_CONSUMER))
    point.saw(numbered(1))  # a report resets the count
    assert point.resumes_after(error(grpc.StatusCode.RESOURCE_EXHAUSTED, RejectReason.SLOW_CONSUMER))
    assert not point.resumes_after(error(grpc.StatusCode.RESOURCE_EXHAUSTED, RejectReason.BACKPRESSURE))
    live = ResumePoint(0)
    assert not live.resumes_after(error(grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING))


def on(shard: str, number: int) -> ExecutionReport:
    return report_from_proto(
        gateway_pb2.ExecutionReport(
            order=gateway_pb2.Order(order_id=f"{shard}.{number:032x}"),
            execution_type=common_pb2.EXECUTION_TYPE_ACCEPTED, account_sequence=number, shard=shard,
        )
    )  # fmt: skip


def test_each_shard_resumes_after_its_own_last_report() -> None:
    point = ResumePoint(0)
    point.announced(((LAST_SEQUENCES_HEADER, "trading-0=5,trading-1=9"), (LAST_SEQUENCE_HEADER, "5")))
    assert point.positions() == {"trading-0": 6, "trading-1": 10}
    point.saw(on("trading-1", 10))
    point.saw(on("trading-1", 11))
    point.saw(on("trading-0", 6))
    request = resume_request(point.positions())
    assert (request.from_sequence, dict(request.from_shard_sequences)) == (
        0,
        {"trading-0": 7, "trading-1": 12},
    )
    assert (point.last_sequence, point.from_sequence) == (6, 7)  # the default shard's (listed first)


def test_a_from_sequence_is_the_default_shards_until_its_name_is_announced() -> None:
    point = ResumePoint(4)
    first = resume_request(point.positions())
    assert (first.from_sequence, dict(first.from_shard_sequences)) == (4, {})
    point.announced(((LAST_SEQUENCES_HEADER, "trading-0=9,trading-1=2"),))
    assert point.positions() == {"trading-0": 4, "trading-1": 3}  # the asked number kept
