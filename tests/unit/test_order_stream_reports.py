"""A StreamOrders session relays each later report of its orders once, whichever path is first.

An order's reports reach the session twice: in the results of the stream's own commands (its
submit, a cancel) and from the execution feed, which runs on its own. These tests play both in
every order that matters, through the session's own code, with the feed as a plain list. A feed
break does not end the stream: what the shard journaled meanwhile comes from its history, each
report once even when the new feed brings it too (a real fan-out, a stand-in trading). When the
stream does end (it fell behind its feed), it answers every command of every request it read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from gateway import order_stream
from gateway.executions import AccountExecutions
from gateway.fanout import ExecutionFanout
from gateway.order_stream import OrderStreamSession, _Tracked
from gateway.reported import ReportedSequences
from gateway.shards import TradingShard, TradingShards
from gateway.validation import OrderDefaults
from tests.instruments import btc_usd
from tests.unit.test_gateway_executions import ACCOUNT, FeedOfShard, StandInTrading, shard_backends
from tests.unit.test_gateway_executions import report as history_report

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


async def feed(
    reports: Sequence[common_pb2.ExecutionReport],
) -> AsyncIterator[list[common_pb2.ExecutionReport]]:
    """The account's reports as the session reads them, from a list: one per batch, as they may
    come; then the end."""
    for item in reports:
        yield [item]


def one_shard(stub: Any = None) -> TradingShards:
    return TradingShards(
        [TradingShard("trading-0", "127.0.0.1:1", stub, cast(Any, None))],
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
    await stream._forward(feed([ACCEPTED, FILL, CANCEL]))
    assert relayed(stream) == [(common_pb2.EXECUTION_TYPE_TRADE, 5)]
    assert "R" not in stream._tracked  # the feed brought its final report


async def test_a_fill_that_arrives_while_the_cancel_is_awaited_is_relayed_after_it() -> None:
    stream = session()
    await stream._carried("R", [ACCEPTED])
    stream._tracked["R"].waiting += 1
    await stream._forward(feed([ACCEPTED, FILL, CANCEL]))
    assert relayed(stream) == []  # held while the cancel is awaited
    await stream._carried("R", [CANCEL])
    assert relayed(stream) == [(common_pb2.EXECUTION_TYPE_TRADE, 5)]
    assert "R" not in stream._tracked


async def test_reports_a_result_carried_are_not_relayed_again() -> None:
    stream = session()
    filled = report(common_pb2.EXECUTION_TYPE_TRADE, FILLED, 3, trade_id=7)
    await stream._forward(feed([ACCEPTED]))  # before the submit's result
    await stream._carried("R", [ACCEPTED, filled])  # filled at once, as the taker
    await stream._forward(feed([filled]))
    assert relayed(stream) == []
    assert "R" not in stream._tracked


# --- what still ends the stream ----------------------------------------------------------


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


def stand_in_backends() -> Any:
    """A real fan-out (its feed connected, reports put in with dispatch) and one trading shard
    whose report history is a list (tests/unit/test_gateway_executions.py's stand-in)."""
    fanout = ExecutionFanout(lambda: None, max_queued_per_subscriber=1024)
    fanout.connected.set()
    trading = StandInTrading(fanout, 0)

    async def call(method: Any, request: Any) -> Any:
        return await method(request)

    return SimpleNamespace(
        reported=ReportedSequences(),
        fanout=fanout,
        trading=trading,
        order_defaults=OrderDefaults(),
        trading_shards=one_shard(trading),
        call=call,
    )


async def test_a_request_read_when_the_feed_ends_the_stream_is_answered_in_full(monkeypatch: Any) -> None:
    """The session falls behind its feed (SLOW_CONSUMER) while the reader waits for room in the
    middle of a request: the stream still answers every command of every request it read before
    it ends with the failure."""
    monkeypatch.setattr(order_stream, "MAX_IN_FLIGHT", 6)
    monkeypatch.setattr(order_stream, "REPORTS_QUEUED", 2)
    saga = _BlockedSaga()
    backends = stand_in_backends()
    stream = OrderStreamSession(backends, saga=saga, account_id=ACCOUNT)  # type: ignore[arg-type]
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
    backends.fanout.dispatch([history_report(n) for n in range(1, 4)])  # one more than it queues
    await asyncio.sleep(0.01)
    saga.release.set()
    with pytest.raises(ServiceError) as ended:
        await asyncio.wait_for(collector, 5)
    assert (ended.value.code, ended.value.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        RejectReason.SLOW_CONSUMER,
    )
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


# --- a feed break: the stream stays open -----------------------------------------------------------


def numbered(base: common_pb2.ExecutionReport, number: int) -> common_pb2.ExecutionReport:
    """`base` as the account's report number `number` (of ACCOUNT, as the stand-in trading's)."""
    made = common_pb2.ExecutionReport()
    made.CopyFrom(base)
    made.order.account_id = ACCOUNT
    made.account_sequence = number
    return made


FILLED_REPORT = report(common_pb2.EXECUTION_TYPE_TRADE, FILLED, 5, trade_id=1)


@dataclass
class AcrossABreak:
    """A session following R, which rests (its submit's result carried its ACCEPTED, the
    account's report 1), over a real fan-out whose feed of trading-0 is cut; trading-0's history
    is the stand-in's list. `connect` brings the feed back."""

    stream: OrderStreamSession
    executions: AccountExecutions
    forwarding: asyncio.Task[None]
    feed: FeedOfShard
    trading: StandInTrading

    @classmethod
    async def cut(cls) -> AcrossABreak:
        backends, (shard_feed,) = shard_backends()
        backends.reported = ReportedSequences()  # type: ignore[attr-defined]
        await shard_feed.connect()
        stream = OrderStreamSession(backends, saga=None, account_id=ACCOUNT)  # type: ignore[arg-type]
        stream._instruments["BTC-USD"] = btc_usd()
        stream._tracked["R"] = _Tracked()
        stream._live["R"] = ACCOUNT
        executions = stream._executions = AccountExecutions(backends, ACCOUNT, {})  # type: ignore[arg-type]
        assert await executions.start() == {"trading-0": 0}
        forwarding = asyncio.create_task(stream._forward(executions.batches()))
        accepted = numbered(ACCEPTED, 1)
        backends.trading.history.append(accepted)
        shard_feed.feed.send([accepted])
        await stream._carried("R", [accepted])
        await shard_feed.cut()
        return cls(stream, executions, forwarding, shard_feed, backends.trading)

    async def relayed(self, count: int) -> list[tuple[int, int]]:
        """The reports relayed once `count` are (or the forwarding ended, or a bounded wait)."""
        for _ in range(1000):
            if len(relayed(self.stream)) >= count or self.forwarding.done():
                break
            await asyncio.sleep(0.001)
        return relayed(self.stream)

    async def end(self) -> None:
        self.executions.end()
        await asyncio.wait_for(self.forwarding, 5)


async def test_a_fill_journaled_during_a_feed_break_is_relayed_once_though_the_new_feed_brings_it_too() -> (
    None
):
    """R's fill is journaled while the feed is down. Once the feed is back the session reads the
    fill from the history, and the new feed bringing it too (journaled as the feed came back)
    relays nothing twice; a later fill follows, once; the stream never failed."""
    broken = await AcrossABreak.cut()
    fill = numbered(FILL, 2)
    later = numbered(report(common_pb2.EXECUTION_TYPE_TRADE, PARTIAL, 7, trade_id=2), 3)
    broken.trading.history.append(fill)  # journaled while the feed is down
    await broken.feed.connect()
    broken.feed.feed.send([fill])  # ...and on the new feed as well
    broken.trading.history.append(later)
    broken.feed.feed.send([later])
    assert await broken.relayed(2) == [
        (common_pb2.EXECUTION_TYPE_TRADE, 5),
        (common_pb2.EXECUTION_TYPE_TRADE, 7),
    ]
    assert broken.stream._failure is None and not broken.forwarding.done()
    await broken.end()


async def test_an_order_filled_during_a_feed_break_is_no_longer_cancelled_on_disconnect() -> None:
    """The final fill of R, journaled while the feed is down, comes from the history alone: cancel
    on disconnect's tracking drops R as it does for a live final report."""
    broken = await AcrossABreak.cut()
    broken.trading.history.append(numbered(FILLED_REPORT, 2))
    await broken.feed.connect()
    assert await broken.relayed(1) == [(common_pb2.EXECUTION_TYPE_TRADE, 5)]
    assert "R" not in broken.stream._live and "R" not in broken.stream._tracked
    await broken.end()


async def test_a_history_read_refused_for_now_is_sent_again_and_the_stream_goes_on() -> None:
    """Right after trading's restart its history may be behind its journal (HISTORY_BEHIND): the
    catch-up reads again and relays the fill; the stream never failed."""
    broken = await AcrossABreak.cut()
    broken.trading.history.append(numbered(FILL, 2))
    answer, refusals = broken.trading.ListExecutions, []

    async def behind_once(request: Any) -> Any:
        if not refusals:
            refusals.append(request)
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.HISTORY_BEHIND, "behind; retry")
        return await answer(request)

    broken.trading.ListExecutions = behind_once  # type: ignore[method-assign]
    await broken.feed.connect()
    assert await broken.relayed(1) == [(common_pb2.EXECUTION_TYPE_TRADE, 5)]
    assert len(refusals) == 1 and broken.stream._failure is None and not broken.forwarding.done()
    await broken.end()


async def test_a_catch_up_whose_history_read_fails_ends_the_stream_as_an_interrupted_feed(
    monkeypatch: Any,
) -> None:
    """The feed is back but the history read stays refused past the patience (the shard went away
    again): the reports missed cannot be promised, so the stream is to end with UNAVAILABLE,
    EXECUTIONS_INTERRUPTED."""
    monkeypatch.setattr("gateway.executions.HISTORY_PATIENCE_SECONDS", 0.3)
    broken = await AcrossABreak.cut()

    async def gone_again(request: Any) -> Any:
        raise ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.TRADING_UNAVAILABLE, "trading-0 is down")

    broken.trading.ListExecutions = gone_again  # type: ignore[method-assign]
    await broken.feed.connect()
    await asyncio.wait_for(broken.forwarding, 5)
    failure = broken.stream._failure
    assert failure is not None
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        RejectReason.EXECUTIONS_INTERRUPTED,
    )
    assert "trading-0 is down" in failure.message
