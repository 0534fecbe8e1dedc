"""Open orders by account, for ListOpenOrders: which orders of an account may still be open.

The engine keeps every order it ever accepted (``Engine.orders``), so finding one account's
open orders there means walking all of them. This index keeps, per account, the ids of its
orders that are open as far as the committed journal records say: a ``new_order`` record
adds its order, a ``trade`` that leaves a side with nothing open and an ``order_released``
remove theirs. It is filled once from the engine after replay (:meth:`OpenOrderIndex.rebuild`)
and then from each committed batch (:meth:`OpenOrderIndex.apply`, an ``EngineLoop.on_committed``
callback: outside the matching path's journal write, on records already in memory).

It is only a list of candidates: a page is read on the engine task (so it sees the engine's
state) and each candidate is checked against the engine's order there, so an order that
closed in a batch not yet committed is left out, and dropped from the index. An order is
listed once its batch is committed: the caller who was answered for it asks after that.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from backbone.common.v1 import common_pb2
from backbone.trading.v1 import trading_pb2
from trading.engine import OrderState

_OPEN_STATUSES = frozenset((common_pb2.ORDER_STATUS_NEW, common_pb2.ORDER_STATUS_PARTIALLY_FILLED))

# Where a page starts: after the order with this (created_ns, order_id); (0, "") is the start.
PageKey = tuple[int, str]


def is_open(order: OrderState) -> bool:
    """True while the order has quantity open on a book."""
    return order.status in _OPEN_STATUSES and order.leaves_lots > 0


class OpenOrderIndex:
    """Account id -> the ids of its orders that may be open."""

    def __init__(self) -> None:
        self._accounts: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return sum(len(orders) for orders in self._accounts.values())

    def rebuild(self, orders: Mapping[str, OrderState]) -> None:
        """Start from the engine's orders (after replay): every open one."""
        self._accounts.clear()
        for order in orders.values():
            if is_open(order):
                self._add(order.account_id, order.order_id)

    def apply(self, records: Iterable[trading_pb2.JournalRecord]) -> None:
        """Follow a committed batch: new orders join, orders left with nothing open leave."""
        for record in records:
            kind = record.WhichOneof("record")
            if kind == "new_order":
                command = record.new_order
                self._add(command.account_id, command.order_id)
            elif kind == "trade":
                trade = record.trade
                if trade.buy_leaves_lots == 0:
                    self._discard(trade.buy_account_id, trade.buy_order_id)
                if trade.sell_leaves_lots == 0:
                    self._discard(trade.sell_account_id, trade.sell_order_id)
            elif kind == "order_released":
                released = record.order_released
                self._discard(released.account_id, released.order_id)

    def page(
        self, orders: Mapping[str, OrderState], account_id: str, symbol: str, after: PageKey, limit: int
    ) -> tuple[list[common_pb2.Order], bool]:
        """Up to `limit` open orders of `account_id` (of `symbol` unless empty) after `after`, by
        (created_ns, order_id), and whether more follow. Run on the engine task: `orders` is the
        engine's. Candidates the engine says are closed leave the index."""
        candidates = self._accounts.get(account_id)
        if not candidates:
            return [], False
        keys: list[PageKey] = []
        closed: list[str] = []
        for order_id in candidates:
            order = orders.get(order_id)
            if order is None or not is_open(order):
                closed.append(order_id)
                continue
            if symbol and order.symbol != symbol:
                continue
            key = (order.created_ns, order_id)
            if key > after:
                keys.append(key)
        for order_id in closed:
            candidates.discard(order_id)
        if not candidates:
            del self._accounts[account_id]
        chosen = heapq.nsmallest(limit + 1, keys)
        return [orders[order_id].message() for _, order_id in chosen[:limit]], len(chosen) > limit

    def _add(self, account_id: str, order_id: str) -> None:
        candidates = self._accounts.get(account_id)
        if candidates is None:
            candidates = self._accounts[account_id] = set()
        candidates.add(order_id)

    def _discard(self, account_id: str, order_id: str) -> None:
        candidates = self._accounts.get(account_id)
        if candidates is not None:
            candidates.discard(order_id)
            if not candidates:
                del self._accounts[account_id]
