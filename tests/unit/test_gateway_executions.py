"""StreamExecutions' resume (gateway/executions.py) against a real fan-out and a trading stand-in
whose history grows while it is read: every report once, in order, whatever arrives meanwhile.

The stand-in answers ListExecutions from a list of reports, as trading's does from its history
(the account's last number at the call; OUT_OF_RANGE beyond it + 1), and publishes new reports to
the fan-out while pages are read: enough to overflow the subscription's queue during the catch-up
(it is replaced and the history read again to the new end), and a live report that skips numbers
(the skipped ones are read from the history first); and a shard's feed that breaks and comes
back through the real fan-out (the stream rides through it). The end-to-end cases run on real
services in tests/integration/test_execution_resume.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, out_of_range
from backbone.runtime.reconnect import Attempt
from backbone.trading.v1 import trading_pb2
from gateway.executions import HISTORY_PAGE, AccountExecutions
from gateway.fanout import ExecutionFanout

ACCOUNT = "acct-1"


DEFAULT, OTHER = "trading-0", "trading-1"


def report(number: int, shard: str = DEFAULT) -> common_pb2.ExecutionReport:
    # Order ids name their shard, as the gateway makes them; the default shard's may be bare.
    order_id = f"o{number}" if shard == DEFAULT else f"{shard}.{number:032x}"
    return common_pb2.ExecutionReport(
        order=common_pb2.Order(order_id=order_id, account_id=ACCOUNT, symbol="BTC-USD"),
        execution_type=common_pb2.EXECUTION_TYPE_ACCEPTED,
        account_sequence=number,
    )


class StandInTrading:
    """The account's history; `on_page` runs after each page is read (new reports arrive)."""

    def __init__(self, fanout: ExecutionFanout, count: int, shard: str = DEFAULT) -> None:
        self.fanout = fanout
        self.shard = shard
        self.history = [report(n, shard) for n in range(1, count + 1)]
        self.on_page: Callable[[int], None] = lambda pages: None
        self.pages = 0

    def publish(self, count: int, *, live: bool = True) -> None:
        """`count` new reports, journaled (in the history) and, when `live`, sent to the fan-out."""
        fresh = [report(len(self.history) + n, self.shard) for n in range(1, count + 1)]
        self.history += fresh
        if live:
            self.fanout.dispatch(fresh)

    async def ListExecutions(self, request: trading_pb2.ListExecutionsRequest) -> Any:
        last = len(self.history)
        if request.last_only:
            return trading_pb2.ListExecutionsResponse(last_account_sequence=last)
        if request.from_sequence > last + 1:
            raise out_of_range(RejectReason.SEQUENCE_BEYOND_END, "beyond the end")
        through = min(request.through_sequence or last, last)
        chosen = self.history[request.from_sequence - 1 : through][: request.limit]
        self.pages += 1
        self.on_page(self.pages)
        return trading_pb2.ListExecutionsResponse(reports=chosen, last_account_sequence=last)


@dataclass
class StandInShard:
    name: str
    stub: StandInTrading


class StandInShards:
    def __init__(self, *shards: StandInShard) -> None:
        self.all = shards
        self.default = shards[0]


class StandInBackends:
    def __init__(self, count: int, other_count: int | None = None) -> None:
        self.fanout = ExecutionFanout(lambda: None, max_queued_per_subscriber=1024)
        self.fanout.connected.set()
        self.trading = StandInTrading(self.fanout, count)
        shards = [StandInShard(DEFAULT, self.trading)]
        if other_count is not None:
            self.other = StandInTrading(self.fanout, other_count, OTHER)
            shards.append(StandInShard(OTHER, self.other))
        self.trading_shards = StandInShards(*shards)

    async def call(self, method: Any, request: Any) -> Any:
        return await method(request)


async def read(executions: AccountExecutions, count: int) -> list[int]:
    await executions.start()
    numbers: list[int] = []
    async for item in executions.reports():
        numbers.append(item.account_sequence)
        if len(numbers) == count:
            break
    return numbers


async def test_a_catch_up_that_overflows_its_subscription_still_gives_every_report_once() -> None:
    backends = StandInBackends(3 * HISTORY_PAGE)
    trading = backends.trading
    # While the first pages are read, 700 reports arrive after each: the queue (1024) overflows.
    trading.on_page = lambda pages: trading.publish(700) if pages <= 3 else None
    executions = AccountExecutions(backends, ACCOUNT, {DEFAULT: 2})  # type: ignore[arg-type]
    overflowed = executions.subscription
    numbers = await asyncio.wait_for(read(executions, 3 * HISTORY_PAGE + 3 * 700 - 1), 30)
    assert overflowed.failed and executions.subscription is not overflowed  # replaced
    trading.publish(2)  # then live
    numbers += await asyncio.wait_for(read_more(executions, 2), 30)
    assert numbers == list(range(2, 3 * HISTORY_PAGE + 3 * 700 + 3))


async def read_more(executions: AccountExecutions, count: int) -> list[int]:
    numbers: list[int] = []
    async for item in executions.reports():
        numbers.append(item.account_sequence)
        if len(numbers) == count:
            break
    return numbers


async def test_live_reports_already_read_are_dropped_and_skipped_numbers_read_from_the_history() -> None:
    backends = StandInBackends(10)
    trading = backends.trading
    executions = AccountExecutions(backends, ACCOUNT, {DEFAULT: 4})  # type: ignore[arg-type]
    # Reports 11 and 12 arrive live just after the first page was read (the next page would have
    # them too); then 13..15 are journaled but their live delivery is lost, and 16 arrives live.
    trading.on_page = lambda pages: trading.publish(2) if pages == 1 else None
    assert await executions.start() == {DEFAULT: 10}
    trading.on_page = lambda pages: None
    trading.publish(3, live=False)
    trading.publish(1)
    numbers: list[int] = []
    async for item in executions.reports():
        numbers.append(item.account_sequence)
        if item.account_sequence == 16:
            break
    assert numbers == list(range(4, 17))


async def test_a_resume_beyond_the_end_is_refused_and_live_only_announces_the_last_number() -> None:
    backends = StandInBackends(5)
    beyond = AccountExecutions(backends, ACCOUNT, {DEFAULT: 7})  # type: ignore[arg-type]
    try:
        await beyond.start()
    except Exception as error:  # ServiceError
        assert getattr(error, "code", None) == grpc.StatusCode.OUT_OF_RANGE
    else:
        raise AssertionError("a resume beyond the end was not refused")
    live = AccountExecutions(backends, ACCOUNT, {})  # type: ignore[arg-type]
    assert await live.start() == {DEFAULT: 5}


async def test_each_shard_resumes_from_its_own_number_and_an_unnamed_one_comes_live() -> None:
    """Two shards number the account's reports each on their own: trading-0 resumed from 3,
    trading-1 from 2; while the past is read, each gets new reports live (some of which the history
    also gives); every report of each shard comes once, in its shard's order."""
    backends = StandInBackends(5, other_count=4)
    zero, one = backends.trading, backends.other
    zero.on_page = lambda pages: zero.publish(1) if pages == 1 else None
    one.on_page = lambda pages: one.publish(2) if pages == 1 else None
    executions = AccountExecutions(backends, ACCOUNT, {DEFAULT: 3, OTHER: 2})  # type: ignore[arg-type]
    assert await executions.start() == {DEFAULT: 5, OTHER: 4}
    zero.on_page = one.on_page = lambda pages: None
    one.publish(1, live=False)  # journaled, its live delivery lost: read from trading-1's history
    zero.publish(1)
    one.publish(1)
    seen: dict[str, list[int]] = {DEFAULT: [], OTHER: []}
    async for item in executions.reports():
        seen[executions.shard_of(item)].append(item.account_sequence)
        if seen[DEFAULT][-1:] == [7] and seen[OTHER][-1:] == [8]:
            break
    assert seen == {DEFAULT: list(range(3, 8)), OTHER: list(range(2, 9))}
    # A shard not resumed comes live only, its numbers not followed.
    live_one = AccountExecutions(backends, ACCOUNT, {DEFAULT: 8})  # type: ignore[arg-type]
    assert await live_one.start() == {DEFAULT: 7, OTHER: 8}
    one.publish(1)
    zero.publish(1)
    got = []
    async for item in live_one.reports():
        got.append((executions.shard_of(item), item.account_sequence))
        if len(got) == 2:
            break
    assert sorted(got) == [(DEFAULT, 8), (OTHER, 9)]


class StandInFeed:
    """Trading's SubscribeExecutions call as the fan-out reads it: headers at once, then the
    responses put in, until `cut` (a dropped connection)."""

    def __init__(self) -> None:
        self._responses: asyncio.Queue[trading_pb2.SubscribeExecutionsResponse | None] = asyncio.Queue()

    async def initial_metadata(self) -> tuple[()]:
        return ()

    def done(self) -> bool:
        return False

    def cancel(self) -> None:
        pass

    def send(self, reports: list[common_pb2.ExecutionReport]) -> None:
        self._responses.put_nowait(trading_pb2.SubscribeExecutionsResponse(reports=reports))

    def cut(self) -> None:
        self._responses.put_nowait(None)

    def __aiter__(self) -> StandInFeed:
        return self

    async def __anext__(self) -> trading_pb2.SubscribeExecutionsResponse:
        response = await self._responses.get()
        if response is None:
            raise ConnectionResetError("the feed's connection dropped")
        return response


class FeedOfShard:
    """One shard's feed through the real fan-out: each `connect` is one upstream subscription."""

    def __init__(self, fanout: ExecutionFanout, index: int) -> None:
        self.fanout, self.index = fanout, index
        self.feed = StandInFeed()
        self.running: asyncio.Task[str] | None = None

    async def connect(self) -> None:
        self.feed = StandInFeed()
        self.running = asyncio.create_task(self.fanout._subscribe_once(self.index, Attempt(lambda: 0.0)))
        await asyncio.sleep(0)  # the subscription is established (headers) before anything is sent
        await asyncio.sleep(0)

    async def cut(self) -> None:
        assert self.running is not None
        self.feed.cut()
        await self.running


def shard_backends(other_count: int | None = None) -> tuple[StandInBackends, list[FeedOfShard]]:
    """Stand-in backends whose fan-out reads one named upstream per shard (as the gateway's does)."""
    backends = StandInBackends(0, other_count)
    names = [shard.name for shard in backends.trading_shards.all]
    feeds: list[FeedOfShard] = []
    backends.fanout = ExecutionFanout(
        [lambda i=i: feeds[i].feed for i in range(len(names))],
        shard_names=names,
        max_queued_per_subscriber=1024,
    )
    for shard in backends.trading_shards.all:
        shard.stub.fanout = backends.fanout
    feeds += [FeedOfShard(backends.fanout, index) for index in range(len(names))]
    return backends, feeds


def journal(trading: StandInTrading, feed: FeedOfShard | None, count: int) -> None:
    """`count` new reports in the shard's history, sent on `feed` unless it is None (down)."""
    fresh = [report(len(trading.history) + n, trading.shard) for n in range(1, count + 1)]
    trading.history += fresh
    if feed is not None:
        feed.feed.send(fresh)


async def take(executions: AccountExecutions, reports: Any, count: int) -> list[tuple[str, int]]:
    taken = []
    while len(taken) < count:
        item = await asyncio.wait_for(anext(reports), 10)
        taken.append((executions.shard_of(item), item.account_sequence))
    return taken


async def test_a_live_stream_rides_through_a_feed_break_and_gets_what_was_journaled_meanwhile() -> None:
    """The feed of the stream's shard drops; reports journaled while it is down (a restarted
    trading's first ones, say) come from the history once the feed is back, then the new feed's,
    each once."""
    backends, (feed,) = shard_backends()
    trading = backends.trading
    await feed.connect()
    journal(trading, feed, 2)  # before the stream: not promised to a live-only stream
    await asyncio.sleep(0)
    executions = AccountExecutions(backends, ACCOUNT, {})  # type: ignore[arg-type]
    assert await executions.start() == {DEFAULT: 2}
    reports = executions.reports()
    journal(trading, feed, 2)
    assert await take(executions, reports, 2) == [(DEFAULT, 3), (DEFAULT, 4)]
    await feed.cut()
    journal(trading, None, 3)  # 5..7 journaled while the feed is down
    await feed.connect()
    journal(trading, feed, 2)  # 8, 9 on the new feed (queued behind the marker)
    assert await take(executions, reports, 5) == [(DEFAULT, n) for n in range(5, 10)]
    journal(trading, feed, 1)
    assert await take(executions, reports, 1) == [(DEFAULT, 10)]
    executions.end()


async def test_a_break_of_one_shards_feed_leaves_the_others_reports_flowing() -> None:
    backends, (zero, one) = shard_backends(other_count=0)
    await zero.connect()
    await one.connect()
    executions = AccountExecutions(backends, ACCOUNT, {DEFAULT: 1})  # type: ignore[arg-type]
    assert await executions.start() == {DEFAULT: 0, OTHER: 0}
    reports = executions.reports()
    journal(backends.other, one, 1)
    assert await take(executions, reports, 1) == [(OTHER, 1)]
    await one.cut()
    journal(backends.trading, zero, 2)  # trading-0 goes on while trading-1 is down
    assert await take(executions, reports, 2) == [(DEFAULT, 1), (DEFAULT, 2)]
    journal(backends.other, None, 2)
    await one.connect()
    assert await take(executions, reports, 2) == [(OTHER, 2), (OTHER, 3)]
    executions.end()


async def test_a_shard_whose_position_the_stream_never_learned_ends_it_when_its_feed_breaks() -> None:
    """trading-1 did not answer when the stream started and sent it nothing: after its feed breaks
    the stream cannot know which of its reports it missed, so it ends (the client resumes)."""
    backends, (zero, one) = shard_backends(other_count=0)
    await zero.connect()
    await one.connect()

    async def down(request: trading_pb2.ListExecutionsRequest) -> Any:
        raise ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.TRADING_UNAVAILABLE, "down")

    answer = backends.other.ListExecutions
    backends.other.ListExecutions = down  # type: ignore[method-assign]
    executions = AccountExecutions(backends, ACCOUNT, {})  # type: ignore[arg-type]
    assert await executions.start() == {DEFAULT: 0}
    backends.other.ListExecutions = answer  # type: ignore[method-assign]
    reports = executions.reports()
    await one.cut()
    await one.connect()
    with pytest.raises(ServiceError) as ended:
        await asyncio.wait_for(anext(reports), 10)
    assert ended.value.reason == RejectReason.EXECUTIONS_INTERRUPTED
    assert OTHER in ended.value.message
