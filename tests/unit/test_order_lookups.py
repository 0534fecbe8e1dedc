"""gateway/order_lookups.py: the lookups of one event-loop turn go to trading in one GetOrders call."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2
from gateway import order_lookups
from gateway.order_lookups import OrderLookups, order_of
from gateway.shards import TradingShard, TradingShards


class Trading:
    """GetOrders over a dict of known orders and a set of fenced ids; records each call."""

    def __init__(self, known: dict[str, common_pb2.Order], fenced: set[str], fail: bool = False) -> None:
        self.known, self.fenced, self.fail = known, fenced, fail
        self.calls: list[list[str]] = []

    async def GetOrders(self, request: trading_pb2.GetOrdersRequest) -> trading_pb2.GetOrdersResponse:
        self.calls.append(list(request.order_ids))
        await asyncio.sleep(0)
        if self.fail:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.TRADING_UNAVAILABLE, "down")
        response = trading_pb2.GetOrdersResponse()
        for order_id in request.order_ids:
            lookup = response.lookups.add(fenced=order_id in self.fenced)
            if order_id in self.known:
                lookup.order.CopyFrom(self.known[order_id])
        return response


def backends(trading: Trading, *others: tuple[str, Trading]) -> Any:
    """Backends whose default shard (trading-0) is `trading`, and the shards `others` (name, stub)."""

    async def call(method: Any, request: Any) -> Any:
        return await method(request)

    shards = TradingShards(
        [
            TradingShard(name, "127.0.0.1:1", cast(Any, stub), cast(Any, None))
            for name, stub in (("trading-0", trading), *others)
        ],
        cast(Any, None),
        cast(Any, None),
    )
    return SimpleNamespace(trading_shards=shards, call=call)


async def test_lookups_of_one_turn_share_one_call_and_each_gets_its_own_answer(monkeypatch: Any) -> None:
    monkeypatch.setattr(order_lookups, "MAX_ORDERS_PER_CALL", 3)
    trading = Trading({"a": common_pb2.Order(order_id="a", leaves_lots=5)}, fenced={"f"})
    lookups = OrderLookups(backends(trading))
    asked = ["a", "f", "x", "a", "y", "z", "w"]
    answers = await asyncio.gather(*(lookups.find(order_id) for order_id in asked))
    assert [(order.order_id if order else None, fenced) for order, fenced in answers] == [
        ("a", False), (None, True), (None, False), ("a", False), (None, False), (None, False), (None, False),
    ]  # fmt: skip
    # One turn: the distinct ids, 3 to a call (the same id asked twice is asked once).
    assert trading.calls == [["a", "f", "x"], ["y", "z", "w"]]
    await lookups.find("a")  # a later turn: a call of its own
    assert trading.calls[-1] == ["a"]


async def test_a_failed_call_fails_every_lookup_it_carried() -> None:
    lookups = OrderLookups(backends(Trading({}, set(), fail=True)))
    outcomes = await asyncio.gather(lookups.find("a"), lookups.find("b"), return_exceptions=True)
    assert all(isinstance(o, ServiceError) and o.reason == RejectReason.TRADING_UNAVAILABLE for o in outcomes)
    with pytest.raises(ServiceError):
        await lookups.find("c")


async def test_each_order_is_looked_up_on_the_shard_its_id_names() -> None:
    on_one = "trading-1." + "1" * 32
    on_nowhere = "trading-9." + "2" * 32
    default, other = Trading({"old": common_pb2.Order(order_id="old")}, set()), Trading({}, {on_one})
    lookups = OrderLookups(backends(default, ("trading-1", other)))
    answers = await asyncio.gather(*(lookups.find(order_id) for order_id in ("old", on_one, on_nowhere)))
    assert [(order.order_id if order else None, fenced) for order, fenced in answers] == [
        ("old", False),  # an id made before sharding: the default shard
        (None, True),  # fenced on trading-1
        (None, False),  # a shard there is not: no such order, nobody asked
    ]
    assert default.calls == [["old"]] and other.calls == [[on_one]]


async def test_order_of_answers_the_callers_own_order_and_not_found_for_the_rest() -> None:
    mine = common_pb2.Order(order_id="mine", account_id="acct-1", leaves_lots=5)
    theirs = common_pb2.Order(order_id="theirs", account_id="acct-2")
    trading = Trading({"mine": mine, "theirs": theirs}, fenced={"fenced"})
    lookups = OrderLookups(backends(trading))
    outcomes = await asyncio.gather(
        *(order_of(lookups, order_id, "acct-1") for order_id in ("mine", "theirs", "fenced", "none")),
        return_exceptions=True,
    )
    assert outcomes[0] == mine
    for outcome in outcomes[1:]:  # another account's, a fenced one, an unknown one: all the same answer
        assert isinstance(outcome, ServiceError)
        assert (outcome.code, outcome.reason) == (grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_ORDER)
    assert trading.calls == [["mine", "theirs", "fenced", "none"]]  # one turn: one call
