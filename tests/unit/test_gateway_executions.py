"""StreamExecutions' resume (gateway/executions.py) against a real fan-out and a trading stand-in
whose history grows while it is read: every report once, in order, whatever arrives meanwhile.

The stand-in answers ListExecutions from a list of reports, as trading's does from its history
(the account's last number at the call; OUT_OF_RANGE beyond it + 1), and publishes new reports to
the fan-out while pages are read: enough to overflow the subscription's queue during the catch-up
(it is replaced and the history read again to the new end), and a live report that skips numbers
(the skipped ones are read from the history first). The end-to-end case runs on real services in
tests/integration/test_execution_resume.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import out_of_range
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
