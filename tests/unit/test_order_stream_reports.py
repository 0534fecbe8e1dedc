"""A StreamOrders session relays each later report of its orders once, whichever path is first.

An order's reports reach the session twice: in the results of the stream's own commands (its
submit, a cancel) and from the execution feed, which runs on its own. These tests play both in
every order that matters, through the session's own code, with the feed as a plain list. And
when the feed breaks, the stream answers every command of every request it read before it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from gateway import order_stream
from gateway.order_stream import OrderStreamSession, _Tracked
from gateway.reported import ReportedSequences
from gateway.shards import TradingShard, TradingShards
from gateway.validation import OrderDefaults
from tests.instruments import btc_usd

NEW = common_pb2.ORDER_STATUS_NEW
PARTIAL = common_pb2.ORDER_STATUS_PARTIALLY_FILLED
CANCELLED = common_pb2.ORDER_STATUS_CANCELLED
FILLED = common_pb2.ORDER_STATUS_FILLED


def report(kind: int, status: int, sequence: int, trade_id: int = 0) -> common_pb2.ExecutionReport:
    return common_pb2.ExecutionReport(
        order=common_pb2.Order(
            order_id="R",
            account_id="acct",
            symbol="BTC-USD",
            status=status,
            price_ticks=100,
            quantity_lots=10,
        ),
        execution_type=kind,
        trade_id=trade_id,
        journal_sequence=sequence,
    )


ACCEPTED = report(common_pb2.EXECUTION_TYPE_ACCEPTED, NEW, 0)
FILL = report(common_pb2.EXECUTION_TYPE_TRADE, PARTIAL, 5, trade_id=1)
CANCEL = report(common_pb2.EXECUTION_TYPE_CANCELLED, CANCELLED, 9)


class Feed:
    """The execution feed's subscription, as a list of reports; None ends it."""

    def __init__(self, reports: Sequence[common_pb2.ExecutionReport]) -> None:
        # One report per wake-up, as the feed may deliver them; then the end.
        self._batches: list[list[common_pb2.ExecutionReport] | None] = [[r] for r in reports]
        self._batches.append(None)

    async def get_all(self) -> list[common_pb2.ExecutionReport] | None:
        return self._batches.pop(0)


def one_shard() -> TradingShards:
    return TradingShards(
        [TradingShard("trading-0", "127.0.0.1:1", cast(Any, None), cast(Any, None))],
        cast(Any, None),
        cast(Any, None),
    )


def session() -> OrderStreamSession:
    backends: Any = SimpleNamespace(reported=ReportedSequences(), trading_shards=one_shard())
    stream = OrderStreamSession(backends, saga=None, account_id="acct")  # type: ignore[arg-type]
    stream._instruments["BTC-USD"] = btc_usd()
    stream._tracked["R"] = _Tracked()  # its submit is under way
    return stream


def relayed(stream: OrderStreamSession) -> list[tuple[int, int]]:
    """The reports relayed, in the responses not yet written."""
    return [(r.execution_type, r.trading_sequence) for response in stream._out for r in response.reports]


async def test_a_fill_before_a_cancel_answered_first_is_relayed() -> None:
    stream = session()
    await stream._carried("R", [ACCEPTED])  # the submit's result: R rests
    stream._tracked["R"].waiting += 1  # a cancel of R is sent
    await stream._carried("R", [CANCEL])  # ...and answered before the feed brings the fill
    await stream._forward(Feed([ACCEPTED, FILL, CANCEL]))  # type: ignore[arg-type]
    assert relayed(stream) == [(common_pb2.EXECUTION_TYPE_TRADE, 5)]
    assert "R" not in stream._tracked  # the feed brought its final report


async def test_a_fill_that_arrives_while_the_cancel_is_awaited_is_relayed_after_it() -> None:
    stream = session()
    await stream._carried("R", [ACCEPTED])
    stream._tracked["R"].waiting += 1
    await stream._forward(Feed([ACCEPTED, FILL, CANCEL]))  # type: ignore[arg-type]
    assert relayed(stream) == []  # held while the cancel is awaited
    await stream._carried("R", [CANCEL])
    assert relayed(stream) == [(common_pb2.EXECUTION_TYPE_TRADE, 5)]
    assert "R" not in stream._tracked


async def test_reports_a_result_carried_are_not_relayed_again() -> None:
    stream = session()
    filled = report(common_pb2.EXECUTION_TYPE_TRADE, FILLED, 3, trade_id=7)
    await stream._forward(Feed([ACCEPTED]))  # type: ignore[arg-type]  (before the submit's result)
    await stream._carried("R", [ACCEPTED, filled])  # filled at once, as the taker
    await stream._forward(Feed([filled]))  # type: ignore[arg-type]
    assert relayed(stream) == []
    assert "R" not in stream._tracked


# --- the stream's end when the feed breaks ----------------------------------------------------------


class _BlockedSaga:
    """Places nothing until released; then refuses every order as trading-unavailable."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.placed = 0

    async def place(self, backends: Any, orders: Sequence[Any]) -> list[ServiceError]:
        await self.release.wait()
        self.placed += len(orders)
        return [
            ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.TRADING_UNAVAILABLE, "trading went away")
            for _ in orders
        ]


class _BreakingFeed:
    """A subscription whose feed breaks when told to."""

    def __init__(self) -> None:
        self.broken = asyncio.Event()

    async def get_all(self) -> list[common_pb2.ExecutionReport] | None:
        await self.broken.wait()
        raise ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.EXECUTIONS_INTERRUPTED, "feed broke")


class _Fanout:
    def __init__(self, feed: _BreakingFeed) -> None:
        self.feed = feed

    @contextlib.contextmanager
    def subscribe(self, account_id: str, max_queued: int) -> Iterator[_BreakingFeed]:
        yield self.feed

    async def wait_connected(self, seconds: float) -> None:
        return None


def _submits(count: int) -> gateway_pb2.StreamOrdersRequest:
    return gateway_pb2.StreamOrdersRequest(
        commands=[
            gateway_pb2.OrderCommand(
                submit=gateway_pb2.SubmitOrderRequest(
                    client_order_id=f"c{index}", symbol="BTC-USD", side=common_pb2.SIDE_BUY,
                    price="100.00", quantity="0.01",
                )
            )
            for index in range(count)
        ]
    )  # fmt: skip


async def test_a_request_read_when_the_feed_breaks_is_answered_in_full(monkeypatch: Any) -> None:
    """The feed breaks while the reader waits for room in the middle of a request: the stream
    still answers every command of every request it read before it ends with the failure."""
    monkeypatch.setattr(order_stream, "MAX_IN_FLIGHT", 6)
    feed, saga = _BreakingFeed(), _BlockedSaga()
    backends: Any = SimpleNamespace(
        reported=ReportedSequences(),
        fanout=_Fanout(feed),
        order_defaults=OrderDefaults(),
        trading_shards=one_shard(),
    )
    stream = OrderStreamSession(backends, saga=saga, account_id="acct")  # type: ignore[arg-type]
    stream._instruments["BTC-USD"] = btc_usd()

    async def requests() -> AsyncIterator[gateway_pb2.StreamOrdersRequest]:
        yield _submits(4)  # handed to the saga, which holds them
        yield _submits(4)  # two commands fit in the window; the reader waits for room
        await asyncio.Event().wait()  # the client keeps its stream open

    context = SimpleNamespace(add_done_callback=lambda callback: None)
    responses = stream.responses(requests(), context)
    first = await anext(responses)
    assert first.max_in_flight == 6
    results: list[gateway_pb2.OrderCommandResult] = []

    async def collect() -> None:
        async for response in responses:
            results.extend(response.results)

    collector = asyncio.create_task(collect())
    for _ in range(5000):
        if stream._free == 0:
            break  # the reader waits for room inside the second request
        await asyncio.sleep(0.001)
    assert stream._free == 0
    feed.broken.set()
    await asyncio.sleep(0.01)
    saga.release.set()
    with pytest.raises(ServiceError) as ended:
        await asyncio.wait_for(collector, 5)
    assert ended.value.reason == RejectReason.EXECUTIONS_INTERRUPTED
    answered = sorted((result.request_number, result.index) for result in results)
    assert answered == [(number, index) for number in (1, 2) for index in range(4)]
    assert saga.placed == 8


async def test_results_fill_responses_in_turn_and_a_later_report_goes_with_the_next_written(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(order_stream, "RESULTS_PER_RESPONSE", 2)
    stream = session()
    refused = ServiceError(grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_PRICE, "price: bad")
    for index in range(3):
        command = gateway_pb2.OrderCommand(
            submit=gateway_pb2.SubmitOrderRequest(client_order_id=f"c-{index}")
        )
        stream._refuse(7, index, command, refused)
    await stream._relay([FILL])
    stream._refuse(7, 3, gateway_pb2.OrderCommand(), refused)
    assert [[(r.index, r.client_order_id) for r in response.results] for response in stream._out] == [
        [(0, "c-0"), (1, "c-1")],
        [(2, "c-2"), (3, "")],
    ]
    assert relayed(stream) == [(common_pb2.EXECUTION_TYPE_TRADE, 5)]
    assert len(stream._out[0].reports) == 1  # the next response written carries it
    first = stream._out[0].results[0]
    assert (first.request_number, first.code, first.reason, first.message) == (
        7,
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        RejectReason.INVALID_PRICE.number,
        "price: bad",
    )
