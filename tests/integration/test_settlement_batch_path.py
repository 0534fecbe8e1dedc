"""The trade batch path's shortcuts hold on a real ledger (embedded PostgreSQL, in process).

A batch where every balance stays within its limits in any order posts through the pair-totals
shortcut; one where only the trade-by-trade order keeps a balance from going below zero posts
too, and one that cannot posts what it can and parks the rest, as before. The store remembers
which balance rows exist so a batch does not make them again; a row it remembers that is gone
after all is made then, and the batch posts as if it had never been remembered. Id lists go to
PostgreSQL as one text: an id with a space (never valid) is refused before it could split.
"""

from __future__ import annotations

import pytest

from backbone.reasons import RejectReason
from backbone.settlement.v1 import settlement_pb2 as pb
from settlement import store as store_module
from tests.integration.test_settlement_store import (
    BASE,
    COST,
    PROCEEDS,
    QUOTE,
    Ledger,
    account,
    balances,
    batch,
    risk_address,
    settlement,
    snapshot,
    stream_refused,
    to_post,
    trade,
    unique,
)

pytestmark = pytest.mark.integration

__all__ = ["risk_address", "settlement"]  # the module's fixtures, shared


async def test_batches_post_by_the_shortcut_or_trade_by_trade_with_the_same_result(
    settlement: Ledger,
) -> None:
    source = unique("shard")
    alice = await account(settlement.stub, **{BASE: 1000, QUOTE: COST})
    bob = await account(settlement.stub, **{QUOTE: COST})
    # bob buys alice's 1000 BTC, then sells them back to her: bob has no BTC to start with, so
    # only this order works (the shortcut's bound fails; the trade-by-trade judgement posts both).
    result = await settlement.store.post_trades(
        source, [to_post(source, 1, trade(1, bob, alice)), to_post(source, 2, trade(2, alice, bob))]
    )
    assert (result.posted, result.parked) == (2, ())
    assert await balances(settlement.stub, alice) == {BASE: 1000, QUOTE: COST - COST + PROCEEDS}
    assert await balances(settlement.stub, bob) == {BASE: 0, QUOTE: COST - COST + PROCEEDS}
    # Plenty everywhere: the shortcut posts.
    carol = await account(settlement.stub, **{BASE: 5000, QUOTE: 5 * COST})
    dave = await account(settlement.stub, **{BASE: 5000, QUOTE: 5 * COST})
    result = await settlement.store.post_trades(
        source,
        [
            to_post(source, 3 + n, trade(3 + n, carol if n % 2 else dave, dave if n % 2 else carol))
            for n in range(4)
        ],
    )
    assert (result.posted, result.parked) == (4, ())
    assert await balances(settlement.stub, carol) == {BASE: 5000, QUOTE: 5 * COST - 2 * COST + 2 * PROCEEDS}
    # Not enough in any order: what can post posts, the rest is parked (and halts its accounts).
    erin = await account(settlement.stub, **{QUOTE: COST})
    result = await settlement.store.post_trades(
        source, [to_post(source, 7, trade(7, erin, carol)), to_post(source, 8, trade(8, erin, dave))]
    )
    assert result.posted == 1
    assert [(p.sequence, p.reason) for p in result.parked] == [(8, RejectReason.NEGATIVE_BALANCE)]
    assert await settlement.store.audit() == []


async def test_a_remembered_balance_row_that_is_gone_is_made_again(settlement: Ledger) -> None:
    source = unique("shard")
    seller = await account(settlement.stub, **{BASE: 1000})  # no USD row yet
    buyer = await account(settlement.stub, **{QUOTE: COST})
    store = settlement.store
    store._balance_rows.add((seller, QUOTE))  # as if a batch had seen it
    result = await store.post_trades(source, [to_post(source, 1, trade(1, buyer, seller))])
    assert (result.posted, result.parked) == (1, ())
    assert await balances(settlement.stub, seller) == {BASE: 0, QUOTE: PROCEEDS}
    assert (seller, QUOTE) in store._balance_rows
    assert await store.audit() == []


async def test_a_malformed_trade_is_refused_naming_its_place_in_the_batch(settlement: Ledger) -> None:
    source = unique("shard")
    alice = await account(settlement.stub, **{QUOTE: 10 * COST})
    bob = await account(settlement.stub, **{BASE: 10_000})
    hello = pb.StreamTradesRequest(source=source)
    good = [(1, trade(1, alice, bob)), (2, trade(2, alice, bob))]
    no_fee = trade(4, alice, bob, buyer_fee=0, seller_fee=0)  # well-formed, four lines
    cases = [
        (trade(3, alice, bob, base=0), "trades[2].trade.base_amount", "INVALID_TRADE"),
        (trade(3, alice, "bad id"), "trades[2].trade.sell_account_id", "INVALID_ACCOUNT_ID"),
        (trade(3, alice, bob, seller_fee=500_001), "trades[2].trade.seller_fee", "INVALID_TRADE"),
    ]
    before = await snapshot(settlement.url)
    for bad, field, reason in cases:
        error = await stream_refused(settlement.stub, [hello, batch(source, [*good, (3, bad), (4, no_fee)])])
        assert (error.reason, [v.field for v in error.violations]) == (reason, [field])
        assert await snapshot(settlement.url) == before
    error = await stream_refused(settlement.stub, [hello, batch(source, [*good, (2, no_fee)])])
    assert (error.reason, [v.field for v in error.violations]) == ("INVALID_SEQUENCE", ["trades[2].sequence"])
    result = await settlement.store.post_trades(source, [to_post(source, 4, no_fee)])
    assert (result.posted, result.parked) == (1, ())
    assert await settlement.store.audit() == []


def test_an_id_list_with_a_space_is_refused() -> None:
    assert store_module._words(["a", "b:c"]) == "a b:c"
    assert store_module._words([]) == ""
    for bad in (["a b"], ["a", "b c"], [""]):
        with pytest.raises(ValueError):
            store_module._words(bad)
