"""Trading keeps several trade batches in flight: settlement posts what waits together, answers each.

Settlement runs in process on the real embedded PostgreSQL (the fixture of test_settlement_store).
Batches written back to back, before any answer is read, are each answered in order with a cursor
at or past their last sequence; a malformed batch among them is refused (INVALID_ARGUMENT) after the
ones before it are posted and answered, and the ones after it are not posted; sending again from
the cursor on a new stream posts every trade exactly once.
"""

from __future__ import annotations

import grpc
import pytest

from backbone.reasons import RejectReason
from backbone.runtime.errors import from_rpc_error
from backbone.settlement.v1 import settlement_pb2 as pb
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
