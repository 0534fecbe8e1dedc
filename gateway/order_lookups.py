"""Trading's word on orders, asked for together: one GetOrders call per event-loop turn.

A client that resends a whole window after a dropped stream finds every client order id held,
and the saga confirms each holder with trading; every replace (unary or a StreamOrders command)
and every GetOrder reads the order it names. Asked one by one, that is a unary call per order on
both sides (thousands of them for one resend); here the lookups made in one turn of the event
loop go in one GetOrders call per shard (at most MAX_ORDERS_PER_CALL ids each), and each caller
gets its own order's answer, or the call's failure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import unavailable
from backbone.trading.v1 import trading_pb2
from gateway import refusals
from gateway.backends import Backends

# Order ids in one GetOrders call (trading takes up to 10,000).
MAX_ORDERS_PER_CALL = 1_000

# What trading knows of an order: its state (None when it has no such order) and whether it is fenced.
Lookup = tuple[common_pb2.Order | None, bool]


def _retrieved(future: asyncio.Future[Lookup]) -> None:
    if not future.cancelled():
        future.exception()


class OrderLookups:
    """Looks orders up in trading, the lookups of one event-loop turn in one call."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self._waiting: dict[str, list[asyncio.Future[Lookup]]] = {}
        self._calls: set[asyncio.Task[Any]] = set()

    async def find(self, order_id: str) -> Lookup:
        """What trading knows of `order_id`; raises the call's ServiceError when it failed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Lookup] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send)
        self._waiting.setdefault(order_id, []).append(future)
        return await future

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, {}
        # Each order is asked of the shard its id names; an id naming no shard is an unknown order.
        for shard, order_ids in self.backends.trading_shards.group_orders(waiting).items():
            if not shard:
                for order_id in order_ids:
                    for future in waiting[order_id]:
                        if not future.done():
                            future.set_result((None, False))
                continue
            for start in range(0, len(order_ids), MAX_ORDERS_PER_CALL):
                part = order_ids[start : start + MAX_ORDERS_PER_CALL]
                task = asyncio.create_task(self._ask(shard, part, waiting), name="gateway-order-lookups")
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)

    async def _ask(
        self, shard: str, order_ids: list[str], waiting: dict[str, list[asyncio.Future[Lookup]]]
    ) -> None:
        backends = self.backends
        try:
            stub = backends.trading_shards.named(shard).stub
            response = await backends.call(stub.GetOrders, trading_pb2.GetOrdersRequest(order_ids=order_ids))
            if len(response.lookups) != len(order_ids):
                raise unavailable(
                    RejectReason.PROTOCOL_ERROR,
                    f"trading answered {len(response.lookups)} lookups for {len(order_ids)} orders",
                )
        except Exception as error:  # the call failed: every order it carried gets the failure
            for order_id in order_ids:
                for future in waiting[order_id]:
                    if not future.done():
                        future.add_done_callback(_retrieved)  # its caller may be gone
                        future.set_exception(error)
            return
        for order_id, lookup in zip(order_ids, response.lookups, strict=True):
            answer: Lookup = (lookup.order if lookup.HasField("order") else None, lookup.fenced)
            for future in waiting[order_id]:
                if not future.done():
                    future.set_result(answer)


async def order_of(lookups: OrderLookups, order_id: str, account_id: str) -> common_pb2.Order:
    """Trading's order `order_id` of `account_id`; NOT_FOUND when it has none (or another account's,
    or a fenced one). Asked with the other lookups of the same event-loop turn (GetOrder and
    ReplaceOrder, unary and on StreamOrders): no call of its own per order."""
    order, _ = await lookups.find(order_id)
    if order is None or order.account_id != account_id:
        raise refusals.order_not_found(order_id)
    return order
