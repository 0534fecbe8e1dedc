"""The trade batch path's shortcuts hold on a real ledger (embedded PostgreSQL, in process).

A batch where every balance stays within its limits in any order posts in one statement (the
store's _POST_IF_CLEAR); one where only the trade-by-trade order keeps a balance from going below
zero posts too, and one that cannot posts what it can and parks the rest, as before. Random
batches end as parking.plan_batch says on the balances before them, whichever way they took,
and the one-statement way is taken exactly when parking.all_post holds (limits included). The store remembers
which balance rows exist so a batch does not make them again; a row it remembers that is gone
after all is made then, and the batch posts as if it had never been remembered. Id lists go to
PostgreSQL as one text: an id with a space (never valid) is refused before it could split.
"""

from __future__ import annotations

import random

import pytest

from backbone.reasons import RejectReason
from backbone.settlement.v1 import settlement_pb2 as pb
from settlement import ledger, parking
from settlement import store as store_module
from tests.integration.test_settlement_store import (
    BASE,
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

# trade(): 1000 BTC minor units for 500,000 USD; the buyer pays 1000 and the seller 500 in fees.
COST = 500_000 + 1000
PROCEEDS = 500_000 - 500


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


async def _cleared(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each batch from now on was posted in one statement (a spy on _post_if_clear)."""
    seen: list[bool] = []
    real = store_module._post_if_clear

    async def spy(*args: object, **kwargs: object) -> object:
        result = await real(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(result is not None)
        return result

    monkeypatch.setattr(store_module, "_post_if_clear", spy)
    return seen


async def test_random_batches_end_as_the_trade_by_trade_plan_says(
    settlement: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(20261130)
    source = unique("shard")
    # One trade first, so that the fees' balance row exists and the store knows it.
    buyer, seller = (
        await account(settlement.stub, **{QUOTE: COST}),
        await account(settlement.stub, **{BASE: 1000}),
    )
    assert (
        await settlement.store.post_trades(source, [to_post(source, 1, trade(1, buyer, seller))])
    ).posted == 1
    cleared = await _cleared(monkeypatch)
    sequence = trade_id = 1
    for _ in range(30):
        funds = {name: (rng.choice([0, 500, 1000, 3000]), rng.choice([0, COST, 3 * COST])) for name in "abc"}
        names = {}
        for name, (btc, usd) in funds.items():
            names[name] = await account(
                settlement.stub, **{k: v for k, v in ((BASE, btc), (QUOTE, usd)) if v}
            )
            # The rows the deposits made are known to the store (as if earlier batches had used them).
            settlement.store._balance_rows.update(
                pair
                for pair, amount in {(names[name], BASE): btc, (names[name], QUOTE): usd}.items()
                if amount
            )
        items = []
        for _ in range(rng.randint(1, 6)):
            buyer, seller = rng.sample(sorted(names), 2)
            sequence += 1
            trade_id += 1
            items.append(
                to_post(
                    source,
                    sequence,
                    trade(trade_id, names[buyer], names[seller], base=rng.choice([500, 1000])),
                )
            )
        before = {
            (names[n], asset): amount
            for n in names
            for asset, amount in (await balances(settlement.stub, names[n])).items()
        }
        expected = dict(before)
        entries = [item.entry for item in items]
        plan = parking.plan_batch(entries, expected, {})
        totals = ledger.pair_totals(entries)
        rows_known = all(pair in before or pair[0] == ledger.SYSTEM_FEES for pair in totals)
        result = await settlement.store.post_trades(source, items)
        # One statement exactly when every trade posts in any order (and no row is to be made).
        assert cleared[-1] == (rows_known and parking.all_post(totals, before))
        assert result.posted == sum(v.posts for v in plan.verdicts)
        assert [(p.reference, p.reason) for p in result.parked] == [
            (e.reference, v.reason) for e, v in zip(entries, plan.verdicts, strict=True) if not v.posts
        ]
        after = {
            (names[n], asset): amount
            for n in names
            for asset, amount in (await balances(settlement.stub, names[n])).items()
        }
        for pair in after.keys() | before.keys():
            assert after.get(pair, 0) == expected.get(pair, 0), pair
    assert True in cleared and False in cleared
    assert await settlement.store.audit() == []


async def test_a_halted_or_recorded_trade_is_never_cleared(
    settlement: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = unique("shard")
    erin = await account(settlement.stub, **{QUOTE: COST})
    carol = await account(settlement.stub, **{BASE: 5000})
    first = [to_post(source, 1, trade(1, erin, carol)), to_post(source, 2, trade(2, erin, carol))]
    result = await settlement.store.post_trades(source, first)
    assert [(p.sequence, p.reason) for p in result.parked] == [(2, RejectReason.NEGATIVE_BALANCE)]
    # erin is funded now, plenty: but halted, so erin's next trade parks behind the first.
    await settlement.stub.Deposit(
        pb.DepositRequest(deposit_id=unique("dep"), account_id=erin, asset=QUOTE, amount=10 * COST)
    )
    cleared = await _cleared(monkeypatch)
    later = await settlement.store.post_trades(source, [to_post(source, 3, trade(3, erin, carol))])
    assert [(p.sequence, p.reason) for p in later.parked] == [(3, RejectReason.ACCOUNT_HALTED)]
    again = await settlement.store.post_trades(source, [*first, to_post(source, 3, trade(3, erin, carol))])
    assert (again.posted, again.parked) == (0, ())
    assert cleared == [False, False]
    assert await balances(settlement.stub, erin) == {BASE: 1000, QUOTE: 10 * COST}
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
