"""Risk applies trading's ReplaceFenced event as EndReplace, against a real Redis.

A replace whose outcome was unknown and that trading fenced was never applied: when the order is
still marked with that replace id, the grow's extra goes back, the hold drops to the lowest cap a
trade left while it was marked, and the mark goes; for any other replace id, an unmarked order or
a closed one, nothing changes; and applied twice (a redelivery) it changes nothing more.
"""

from __future__ import annotations

from backbone.common.v1 import common_pb2
from risk import exposure
from tests.integration.conftest import ReadyStore
from tests.integration.test_risk_replace import BUY, funded_buy, grow_op, old_price_fill, replaced, unique
from tests.integration.test_risk_store import MATH, figures


def fenced(sequence: int, account: str, order: str, replace_id: str) -> exposure.LegOp:
    event = common_pb2.ReplaceFenced(order_id=order, account_id=account, replace_id=replace_id)
    return exposure.replace_fence_leg(sequence, event)


async def test_a_fenced_replace_gives_the_grow_back_once_and_only_for_its_id(store: ReadyStore) -> None:
    account, order, _ = await funded_buy(store, 10**6)
    record = await store.order(account, order)
    held = MATH.buy_reservation(100, 10)
    await store.run_reservations([grow_op(account, order, BUY, 150, 12, "r1")])
    source = unique("shard")
    # A fence of another replace id leaves the grow and the mark alone.
    assert await store.apply_legs(source, [fenced(1, account, order, "r0")]) == 1
    assert (await store.order(account, order))["replacing"] == "r1"
    assert (await figures(store, account))["USD"][1] == MATH.buy_reservation(150, 12)
    # Its own fence gives the extra back and unmarks: the order as it was before the grow.
    assert await store.apply_legs(source, [fenced(2, account, order, "r1")]) == 1
    assert await store.order(account, order) == record
    assert await figures(store, account) == {"USD": (10**6, held, 10**6 - held)}
    # Delivered again: applied before, skipped.
    assert await store.apply_legs(source, [fenced(2, account, order, "r1")]) == 0
    assert await store.order(account, order) == record
    # The order takes a next replace.
    (grown,) = await store.run_reservations([grow_op(account, order, BUY, 110, 10, "r2")])
    assert grown.accepted


async def test_a_fence_after_fills_leaves_what_the_old_order_needs(store: ReadyStore) -> None:
    account, order, seller = await funded_buy(store, 10**6)
    source = unique("shard")
    await store.run_reservations([grow_op(account, order, BUY, 120, 10, "r1")])
    await store.apply_legs(source, old_price_fill(1, account, order, seller, 3, 7))
    await store.apply_legs(source, [fenced(2, account, order, "r1")])
    needed = MATH.buy_reservation(100, 7)
    record = await store.order(account, order)
    assert record["amount"] == str(needed)
    assert not {"replacing", "replace_extra", "skipped"} & record.keys()
    assert (await figures(store, account))["USD"][1] == needed


async def test_a_fence_of_an_applied_or_closed_order_changes_nothing(store: ReadyStore) -> None:
    account, order, seller = await funded_buy(store, 10**6)
    source = unique("shard")
    await store.run_reservations([grow_op(account, order, BUY, 120, 10, "r1")])
    await store.apply_legs(source, [replaced(1, account, order, BUY, 120, 10)])
    applied = await store.order(account, order)
    await store.apply_legs(source, [fenced(2, account, order, "r1")])  # a fence racing nothing left
    assert await store.order(account, order) == applied
    await store.apply_legs(source, old_price_fill(3, account, order, seller, 10, 0))
    assert await store.order(account, order) == {}
    await store.apply_legs(source, [fenced(4, account, order, "r9")])
    assert await store.order(account, order) == {}
    assert (await figures(store, account))["USD"][1] == 0
