"""Risk's re-sizing of holds for replaces and budget-only market buys, against a real Redis.

The races of a replace are played here in the order risk can see them: the gateway's grow
(GrowForReplace) first, then trading's events in journal order (trades journaled before the
replace, the OrderReplaced, trades after it), or the gateway's EndReplace when trading refused.
"""

from __future__ import annotations

import uuid

from backbone.common.v1 import common_pb2
from backbone.risk.v1 import risk_pb2
from risk import exposure
from risk.exposure import EndReplaceOp, GrowOp, ReleaseOp
from tests.integration.conftest import ReadyStore
from tests.integration.test_risk_store import MATH, figures, reserve_op, trade

BUY, SELL = common_pb2.SIDE_BUY, common_pb2.SIDE_SELL


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def grow_op(account: str, order: str, side: int, price: int, leaves: int, replace_id: str) -> GrowOp:
    op = exposure.plan_grow(
        risk_pb2.GrowForReplace(
            order_id=order,
            account_id=account,
            symbol="BTC-USD",
            side=side,  # type: ignore[arg-type]
            price_ticks=price,
            leaves_lots=leaves,
            replace_id=replace_id,
        ),
        MATH,
    )
    assert isinstance(op, GrowOp)
    return op


def replaced(sequence: int, account: str, order: str, side: int, price: int, leaves: int) -> exposure.LegOp:
    event = common_pb2.OrderReplaced(
        order_id=order,
        account_id=account,
        symbol="BTC-USD",
        side=side,  # type: ignore[arg-type]
        old_price_ticks=100,
        new_price_ticks=price,
        new_leaves_lots=leaves,
    )
    return exposure.replaced_leg(sequence, event, MATH)


async def funded_buy(store: ReadyStore, usd: int, price: int = 100, lots: int = 10) -> tuple[str, str, str]:
    """An account with `usd` holding a buy of `lots` at `price`; (account, order, seller)."""
    account, order, seller = unique("buyer"), unique("b"), unique("seller")
    await store.deposit(account, "USD", usd)
    await store.deposit(seller, "BTC", 10**12)
    (outcome,) = await store.run_reservations([reserve_op(account, order, BUY, price, lots)])
    assert outcome.accepted
    return account, order, seller


def old_price_fill(sequence: int, account: str, order: str, seller: str, lots: int, leaves: int) -> list:
    """A fill at 100 of a buy reserved at 100, journaled before the replace."""
    fill = trade(
        sequence,
        buyer=account,
        seller=seller,
        buy_order=order,
        sell_order=unique("s"),
        price=100,
        lots=lots,
        limit=100,
        buy_leaves=leaves,
        sell_leaves=0,
    )
    return list(exposure.trade_legs(sequence, fill, MATH))


async def test_a_replace_up_holds_the_difference_first_and_the_exact_amount_after(store: ReadyStore) -> None:
    account, order, _ = await funded_buy(store, 10**6)
    before = MATH.buy_reservation(100, 10)
    wanted = MATH.buy_reservation(120, 10)
    (grown,) = await store.run_reservations([grow_op(account, order, BUY, 120, 10, "r1")])
    assert (grown.accepted, grown.asset, grown.amount) == (True, "USD", wanted - before)
    assert await figures(store, account) == {"USD": (10**6, wanted, 10**6 - wanted)}
    assert (await store.order(account, order))["replacing"] == "r1"
    # Trading journals the replace; risk applies it: the hold is what 10 lots at 120 cost, unmarked.
    await store.apply_legs(unique("shard"), [replaced(5, account, order, BUY, 120, 10)])
    record = await store.order(account, order)
    assert record["amount"] == str(wanted) and "replacing" not in record
    assert await figures(store, account) == {"USD": (10**6, wanted, 10**6 - wanted)}


async def test_a_replace_the_account_cannot_afford_is_refused_with_nothing_changed(store: ReadyStore) -> None:
    held = MATH.buy_reservation(100, 10)
    account, order, _ = await funded_buy(store, held + 5)
    record = await store.order(account, order)
    (grown,) = await store.run_reservations([grow_op(account, order, BUY, 101, 10, "r1")])
    assert (grown.accepted, grown.reason) == (False, "INSUFFICIENT_BALANCE")
    assert await store.order(account, order) == record
    assert await figures(store, account) == {"USD": (held + 5, held, 5)}


async def test_a_refused_replace_gives_the_extra_back(store: ReadyStore) -> None:
    account, order, _ = await funded_buy(store, 10**6)
    record = await store.order(account, order)
    await store.run_reservations([grow_op(account, order, BUY, 150, 12, "r1")])
    (ended,) = await store.run_reservations([EndReplaceOp(account, order, "r1")])
    assert (ended.accepted, ended.amount) == (
        True,
        MATH.buy_reservation(150, 12) - MATH.buy_reservation(100, 10),
    )
    assert await store.order(account, order) == record
    held = MATH.buy_reservation(100, 10)
    assert await figures(store, account) == {"USD": (10**6, held, 10**6 - held)}
    # An end naming another replace (or sent again) changes nothing.
    (again,) = await store.run_reservations([EndReplaceOp(account, order, "r1")])
    assert (again.accepted, again.amount) == (True, 0)
    assert await store.order(account, order) == record


async def test_a_fill_racing_a_replace_up_never_lowers_the_hold_below_the_new_cost(store: ReadyStore) -> None:
    account, order, seller = await funded_buy(store, 10**6)
    source = unique("shard")
    # The replace to 10 lots at 120 is grown; a fill of 2 lots at 100, journaled before the
    # replace, reaches risk after the grow: it caps at the old price, which would be below
    # what 8 lots at 120 cost. The hold stays until the replace is applied.
    await store.run_reservations([grow_op(account, order, BUY, 120, 10, "r1")])
    grown = MATH.buy_reservation(120, 10)
    spent = MATH.quote_amount(100, 2) + MATH.fee(MATH.quote_amount(100, 2), 25)
    await store.apply_legs(source, old_price_fill(1, account, order, seller, 2, 8))
    assert (await store.order(account, order))["amount"] == str(grown)
    assert (await figures(store, account))["USD"][1] == grown
    await store.apply_legs(source, [replaced(2, account, order, BUY, 120, 8)])
    needed = MATH.buy_reservation(120, 8)
    assert (await store.order(account, order))["amount"] == str(needed)
    assert await figures(store, account) == {
        "USD": (10**6 - spent, needed, 10**6 - spent - needed),
        "BTC": (MATH.base_amount(2), 0, MATH.base_amount(2)),
    }


async def test_a_fill_during_a_refused_replace_leaves_the_hold_the_old_order_needs(store: ReadyStore) -> None:
    account, order, seller = await funded_buy(store, 10**6)
    await store.run_reservations([grow_op(account, order, BUY, 120, 10, "r1")])
    await store.apply_legs(unique("shard"), old_price_fill(1, account, order, seller, 3, 7))
    await store.run_reservations([EndReplaceOp(account, order, "r1")])
    needed = MATH.buy_reservation(100, 7)
    record = await store.order(account, order)
    assert record["amount"] == str(needed) and "replacing" not in record and "skipped" not in record
    assert (await figures(store, account))["USD"][1] == needed


async def test_an_order_that_fills_completely_before_its_replace_leaks_nothing(store: ReadyStore) -> None:
    account, order, seller = await funded_buy(store, 10**6)
    await store.run_reservations([grow_op(account, order, BUY, 120, 10, "r1")])
    await store.apply_legs(unique("shard"), old_price_fill(1, account, order, seller, 10, 0))
    assert await store.order(account, order) == {}
    (ended,) = await store.run_reservations([EndReplaceOp(account, order, "r1")])
    assert (ended.accepted, ended.amount) == (True, 0)
    assert (await figures(store, account))["USD"][1] == 0
    # A replace of an order that holds nothing (closed) is refused at once.
    (grown,) = await store.run_reservations([grow_op(account, order, BUY, 120, 10, "r2")])
    assert (grown.accepted, grown.reason) == (False, "ORDER_NOT_OPEN")


async def test_one_replace_of_an_order_at_a_time(store: ReadyStore) -> None:
    account, order, _ = await funded_buy(store, 10**6)
    first, second, again = await store.run_reservations(
        [
            grow_op(account, order, BUY, 110, 10, "r1"),
            grow_op(account, order, BUY, 130, 10, "r2"),
            grow_op(account, order, BUY, 110, 10, "r1"),
        ]
    )
    assert first.accepted and again.accepted and again.amount == first.amount
    assert (second.accepted, second.reason) == (False, "REPLACE_IN_FLIGHT")
    assert (await figures(store, account))["USD"][1] == MATH.buy_reservation(110, 10)


async def test_a_replace_down_shrinks_the_hold_only_when_applied(store: ReadyStore) -> None:
    account, order, _ = await funded_buy(store, 10**6)
    held = MATH.buy_reservation(100, 10)
    (grown,) = await store.run_reservations([grow_op(account, order, BUY, 90, 6, "r1")])
    assert (grown.accepted, grown.amount) == (True, 0)
    assert (await figures(store, account))["USD"][1] == held
    await store.apply_legs(unique("shard"), [replaced(1, account, order, BUY, 90, 6)])
    assert (await figures(store, account))["USD"][1] == MATH.buy_reservation(90, 6)


async def test_a_sell_replaced_to_more_quantity_holds_more_base(store: ReadyStore) -> None:
    account, order = unique("seller"), unique("s")
    await store.deposit(account, "BTC", MATH.base_amount(15))
    assert (await store.run_reservations([reserve_op(account, order, SELL, 100, 10)]))[0].accepted
    ok, refused = await store.run_reservations(
        [grow_op(account, order, SELL, 100, 15, "r1"), grow_op(account, unique("none"), SELL, 100, 1, "r2")]
    )
    assert (ok.accepted, ok.asset, ok.amount) == (True, "BTC", MATH.base_amount(5))
    assert (refused.accepted, refused.reason) == (False, "ORDER_NOT_OPEN")
    (too_much,) = await store.run_reservations([EndReplaceOp(account, order, "r1")])
    assert too_much.amount == MATH.base_amount(5)
    (short,) = await store.run_reservations([grow_op(account, order, SELL, 100, 16, "r3")])
    assert (short.accepted, short.reason) == (False, "INSUFFICIENT_BALANCE")


async def test_a_budget_buy_holds_its_budget_and_fee_and_trades_use_it(store: ReadyStore) -> None:
    account, order, seller = unique("buyer"), unique("b"), unique("seller")
    budget = 250_000
    await store.deposit(account, "USD", 10**6)
    await store.deposit(seller, "BTC", 10**12)
    op = exposure.plan_reserve(
        risk_pb2.Reserve(
            order_id=order,
            account_id=account,
            symbol="BTC-USD",
            side=BUY,
            price_ticks=0,
            quantity_lots=100,
            quote_budget=budget,
        ),
        MATH,
    )
    assert isinstance(op, exposure.ReserveOp)
    hold = budget + -(-budget * 25 // 10_000)
    assert op.amount == hold
    assert (await store.run_reservations([op]))[0].accepted
    source = unique("shard")
    fills = []
    for sequence, (price, lots, leaves) in enumerate(((1000, 100, 90), (1100, 100, 80)), start=1):
        fill = trade(
            sequence,
            buyer=account,
            seller=seller,
            buy_order=order,
            sell_order=unique("s"),
            price=price,
            lots=lots // 10,
            limit=0,
            buy_leaves=leaves,
            sell_leaves=0,
        )
        fill.buy_quote_budget = budget
        fills.append(fill)
        await store.apply_legs(source, list(exposure.trade_legs(sequence, fill, MATH)))
    spent = sum(f.quote_amount + f.buyer_fee for f in fills)
    assert (await store.order(account, order))["amount"] == str(hold - spent)
    assert (await figures(store, account))["USD"] == (10**6 - spent, hold - spent, 10**6 - hold)
    # The order ends (its remainder released by trading's OrderReleased): nothing stays held.
    released = common_pb2.OrderReleased(order_id=order, account_id=account)
    await store.apply_legs(source, [exposure.release_leg(3, released)])
    assert (await figures(store, account))["USD"] == (10**6 - spent, 0, 10**6 - spent)
    assert (await store.run_reservations([ReleaseOp(account, order)]))[0].amount == 0
