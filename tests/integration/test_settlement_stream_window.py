"""Trading keeps several trade batches in flight: settlement posts what waits together, answers each.

Settlement runs in process on the real embedded PostgreSQL (the fixture of test_settlement_store).
Batches written back to back, before any answer is read, are each answered in order with a cursor
at or past their last sequence; a malformed batch among them is refused (INVALID_ARGUMENT) after the
ones before it are posted and answered, and the ones after it are not posted; sending again from
the cursor on a new stream posts every trade exactly once. Small batches wait for each other (the
group commit) and post together, without holding an answer once the group is full or the stream ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from backbone.reasons import RejectReason
from backbone.runtime.errors import from_rpc_error
from backbone.settlement.v1 import settlement_pb2 as pb
from settlement import servicer as servicer_module
from settlement.store import TradeToPost
from tests.integration.test_settlement_store import (
    BASE,
    COST,
    QUOTE,
    Ledger,
    account,
    balances,
    batch,
    exchange,
    risk_address,
    settlement,
    trade,
    unique,
)

pytestmark = pytest.mark.integration

__all__ = ["risk_address", "settlement"]  # the module's fixtures, shared


async def test_batches_in_flight_are_answered_in_order_and_a_bad_one_stops_the_rest(
    settlement: Ledger,
) -> None:
    stub = settlement.stub
    source = unique("shard")
    buyer = await account(stub, USD=100 * COST)
    seller = await account(stub, BTC=100 * 1000)
    good = [batch(source, [(2 * n + 1, trade(2 * n + 1, buyer, seller))]) for n in range(5)]  # 1, 3, .. 9
    malformed = batch(source, [(12, trade(11, buyer, seller)), (11, trade(12, buyer, seller))])
    after = batch(source, [(13, trade(13, buyer, seller))])

    call = stub.StreamTrades()
    for request in [pb.StreamTradesRequest(source=source), *good, malformed, after]:
        await call.write(request)  # nothing read yet: every batch is in flight
    answers = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        while (answer := await call.read()) is not grpc.aio.EOF:
            answers.append(answer.applied_sequence)
    refusal = from_rpc_error(raised.value)
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.reason == RejectReason.INVALID_SEQUENCE
    assert answers[0] == 0  # the hello
    assert len(answers) == 1 + len(good)
    for answer, request in zip(answers[1:], good, strict=True):
        assert answer >= request.trades[-1].sequence
    assert await balances(stub, buyer) == {BASE: 5 * 1000, QUOTE: 95 * COST}

    # The sender resends from the cursor (9) on a new stream: 9 is skipped, the rest post once.
    resent = [
        good[-1],
        batch(source, [(11, trade(11, buyer, seller)), (12, trade(12, buyer, seller))]),
        after,
    ]
    assert await exchange(stub, [pb.StreamTradesRequest(source=source), *resent]) == [9, 9, 12, 13]
    assert await exchange(stub, [pb.StreamTradesRequest(source=source), *resent]) == [13, 13, 13, 13]
    assert await balances(stub, buyer) == {BASE: 8 * 1000, QUOTE: 92 * COST}
    assert await balances(stub, seller) == {BASE: 92 * 1000, QUOTE: 8 * (500_000 - 500)}


async def test_small_batches_wait_for_each_other_and_post_in_one_transaction(
    settlement: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group of fewer than GROUP_COMMIT_TRADES trades waits (here up to 60 s) for more batches; it
    posts as soon as it holds enough, or the stream ends, never holding an answer for the window."""
    monkeypatch.setattr(servicer_module, "GROUP_COMMIT_WAIT_SECONDS", 60.0)
    monkeypatch.setattr(servicer_module, "GROUP_COMMIT_TRADES", 3)
    posted: list[list[int]] = []
    post_trades = settlement.store.post_trades

    async def counted(source: str, trades: Sequence[TradeToPost]) -> Any:
        posted.append([item.sequence for item in trades])
        return await post_trades(source, trades)

    monkeypatch.setattr(settlement.store, "post_trades", counted)
    stub = settlement.stub
    source = unique("shard")
    buyer = await account(stub, USD=100 * COST)
    seller = await account(stub, BTC=100 * 1000)

    call = stub.StreamTrades()
    await call.write(pb.StreamTradesRequest(source=source))
    assert (await call.read()).applied_sequence == 0
    # One trade, then two more in one batch: together they reach 3 and post at once, in one go.
    await call.write(batch(source, [(1, trade(1, buyer, seller))]))
    await call.write(batch(source, [(2, trade(2, buyer, seller)), (3, trade(3, buyer, seller))]))
    answers = [(await asyncio.wait_for(call.read(), 20)).applied_sequence for _ in range(2)]
    assert answers == [3, 3]
    assert posted == [[1, 2, 3]]
    # A lone small batch waits for company; the end of the stream posts it without waiting longer.
    await call.write(batch(source, [(4, trade(4, buyer, seller))]))
    await call.done_writing()
    assert (await asyncio.wait_for(call.read(), 20)).applied_sequence == 4
    assert await asyncio.wait_for(call.read(), 20) is grpc.aio.EOF
    assert posted == [[1, 2, 3], [4]]
    assert await balances(stub, buyer) == {BASE: 4 * 1000, QUOTE: 96 * COST}
