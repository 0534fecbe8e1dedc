"""Engine.forget and Engine.recall (trading/engine.py): closed orders leave memory and come back
without changing the state digest; open orders never leave; a recalled order answers for its ids
as if it had never left."""

from __future__ import annotations

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from tests.instruments import btc_usd
from tests.orders import cancel_order, new_order
from tests.unit.test_trading_engine import BUY, SELL, T
from trading.engine import Engine
from trading.history import restored_order


def traded() -> Engine:
    """s1 filled, b1 filled, c1 cancelled, r1 resting."""
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    for command in (
        new_order("s1", SELL, 100, 2),
        new_order("b1", BUY, 100, 2, account="acct-2"),
        new_order("c1", BUY, 90, 1),
        cancel_order("c1"),
        new_order("r1", BUY, 80, 1),
    ):
        engine.apply(command, T)
    return engine


def test_closed_orders_leave_and_come_back_without_changing_the_digest() -> None:
    engine = traded()
    digest = engine.state_hash()
    kept = {order_id: engine.orders[order_id] for order_id in ("s1", "b1", "c1")}
    last = {order_id: order.message() for order_id, order in kept.items()}
    assert engine.forget(["s1", "b1", "c1", "r1", "unknown"]) == 3
    assert set(engine.orders) == {"r1"} and set(engine.client_orders) == {("acct-1", "c-r1")}
    assert engine.state_hash() == digest
    engine.validate()

    # Back from what the history keeps: the NewOrder as journaled and the last report's order.
    recalled = [
        restored_order(new_order("s1", SELL, 100, 2).new_order, last["s1"]),
        restored_order(new_order("c1", BUY, 90, 1).new_order, last["c1"]),
    ]
    assert [order.order_id for order in engine.recall(recalled)] == ["s1", "c1"]
    assert engine.order_message("s1") == last["s1"] and engine.order_message("c1") == last["c1"]
    assert engine.state_hash() == digest
    engine.validate()

    # It answers for its ids: a retry is ACCEPTED with it, a different order under its client order
    # id is refused naming it, its order id cannot be used again; nothing is journaled.
    sequence = engine.last_sequence
    retry = engine.apply(new_order("s1-again", SELL, 100, 2, client_order_id="c-s1"), T)
    different = engine.apply(new_order("c1-other", BUY, 95, 1, client_order_id="c-c1"), T)
    reused = engine.apply(new_order("s1", SELL, 100, 1, client_order_id="fresh"), T)
    assert retry.reports[0].execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED
    assert (retry.reports[0].order.order_id, retry.reports[0].order.status) == (
        "s1",
        common_pb2.ORDER_STATUS_FILLED,
    )
    assert different.reports[0].reject_reason == RejectReason.DUPLICATE_CLIENT_ORDER_ID.number
    assert reused.reports[0].reject_reason == RejectReason.DUPLICATE_ORDER_ID.number
    assert engine.last_sequence == sequence and not (retry.records or different.records or reused.records)


def test_an_order_in_memory_or_open_is_not_recalled_over() -> None:
    engine = traded()
    held = engine.orders["s1"]
    stale = restored_order(new_order("s1", SELL, 100, 2).new_order, held.message())
    assert engine.recall([stale]) == [] and engine.orders["s1"] is held
    open_copy = restored_order(new_order("x1", BUY, 80, 1).new_order, engine.orders["r1"].message())
    assert engine.recall([open_copy]) == []  # an open order is never taken from the history
