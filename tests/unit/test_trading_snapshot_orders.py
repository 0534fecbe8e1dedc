"""An order survives a snapshot's pickle exactly: every slot, in the order OrderState.__reduce__
packs them (a slot added to OrderState without its place in _restored_order fails here)."""

from __future__ import annotations

import pickle

from backbone.trading.v1 import trading_pb2
from trading.engine import ORDER_FIELDS, OrderState


def test_every_slot_of_an_order_survives_a_pickle_in_its_place() -> None:
    order = OrderState(trading_pb2.NewOrder(order_id="o1", symbol="BTC-USD", quantity_lots=5), 7)
    for number, name in enumerate(ORDER_FIELDS):
        setattr(order, name, f"value-{number}")  # a value of its own in every slot
    restored = pickle.loads(pickle.dumps(order, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(restored) is OrderState
    assert {name: getattr(restored, name) for name in ORDER_FIELDS} == {
        name: f"value-{number}" for number, name in enumerate(ORDER_FIELDS)
    }
    assert set(ORDER_FIELDS) == {slot for cls in OrderState.__mro__ for slot in getattr(cls, "__slots__", ())}
