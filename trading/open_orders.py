"""Open orders by account, for ListOpenOrders: which orders of an account may still be open.

The engine keeps every order it ever accepted (``Engine.orders``), so finding one account's
open orders there means walking all of them. This index keeps, per account, the ids of its
orders that are open as far as the committed journal records say: a ``new_order`` record
adds its order, a ``trade`` that leaves a side with nothing open and an ``order_released``
remove theirs. It is filled once from the engine after replay (:meth:`OpenOrderIndex.rebuild`)
and then from each committed batch (:meth:`OpenOrderIndex.apply`, an ``EngineLoop.on_committed``
callback: outside the matching path's journal write, on records already in memory).

Each account's candidates are kept ordered by (created_ns, order_id), the listing's order, so a
page starts with a bisection and costs its own orders (plus candidates it skips), not the
account's whole list: it runs on the engine task, between batches of commands.

It is only a list of candidates: a page is read on the engine task (so it sees the engine's
state) and each candidate is checked against the engine's order there, so an order that
closed in a batch not yet committed is left out, and dropped from the index. An order is
listed once its batch is committed: the caller who was answered for it asks after that.
"""

from __future__ import annotations

import bisect
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


class _AccountOrders:
    """One account's candidates: their keys in order (bisect finds a page's start) and the live ids.

    An order leaving is only dropped from `live`; its key stays in `keys` until dead keys
    outnumber live ones, then the list is compacted (amortized O(1) per order, and a page walks
    at most as many dead keys as live ones)."""

    __slots__ = ("keys", "live")

    def __init__(self) -> None:
        self.keys: list[PageKey] = []
        self.live: set[str] = set()

    def add(self, created_ns: int, order_id: str) -> None:
        if order_id in self.live:
            return
        self.live.add(order_id)
        key = (created_ns, order_id)
        if not self.keys or self.keys[-1] < key:
            self.keys.append(key)  # the usual case: the newest order
        else:  # a batch's orders share a timestamp and are ordered by id
            bisect.insort(self.keys, key)

    def discard(self, order_id: str) -> None:
        if order_id in self.live:
            self.live.discard(order_id)
            if len(self.keys) > 2 * len(self.live) + _SLACK:
                self.keys = [key for key in self.keys if key[1] in self.live]


# Dead keys an account's list may hold beyond its live ones before it is compacted.
_SLACK = 64


class OpenOrderIndex:
    """Account id -> its orders that may be open, ordered by (created_ns, order_id).

    `orders` is the engine's (every order it accepted, by id): the index takes each order's
    created_ns and symbol from there, so its order is the one ListOpenOrders answers in."""

    def __init__(self, orders: Mapping[str, OrderState]) -> None:
        self._orders = orders
        self._accounts: dict[str, _AccountOrders] = {}

    def __len__(self) -> int:
        return sum(len(account.live) for account in self._accounts.values())

    def rebuild(self) -> None:
        """Start from the engine's orders (after replay): every open one."""
        self._accounts.clear()
        for order in self._orders.values():
            if is_open(order):
                self._add(order.account_id, order.created_ns, order.order_id)

    def apply(self, records: Iterable[trading_pb2.JournalRecord]) -> None:
        """Follow a committed batch: new orders join, orders left with nothing open leave."""
        for record in records:
            kind = record.WhichOneof("record")
            if kind == "new_order":
                order = self._orders.get(record.new_order.order_id)
                if order is not None:  # committed, so accepted: the engine has it
                    self._add(order.account_id, order.created_ns, order.order_id)
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
        self, account_id: str, symbol: str, after: PageKey, limit: int
    ) -> tuple[list[common_pb2.Order], bool]:
        """Up to `limit` open orders of `account_id` (of `symbol` unless empty) after `after`, by
        (created_ns, order_id), and whether more follow. Run on the engine task (the orders are
        the engine's). Candidates the engine says are closed leave the index."""
        orders = self._orders
        account = self._accounts.get(account_id)
        if account is None:
            return [], False
        keys, live = account.keys, account.live
        chosen: list[OrderState] = []
        closed: list[str] = []
        for position in range(bisect.bisect_right(keys, after), len(keys)):
            order_id = keys[position][1]
            if order_id not in live:
                continue
            order = orders.get(order_id)
            if order is None or not is_open(order):
                closed.append(order_id)
                continue
            if symbol and order.symbol != symbol:
                continue
            if len(chosen) == limit:
                break  # one more exists
            chosen.append(order)
        else:
            position = len(keys)
        for order_id in closed:
            self._discard(account_id, order_id)
        return [order.message() for order in chosen], position < len(keys)

    def _add(self, account_id: str, created_ns: int, order_id: str) -> None:
        account = self._accounts.get(account_id)
        if account is None:
            account = self._accounts[account_id] = _AccountOrders()
        account.add(created_ns, order_id)

    def _discard(self, account_id: str, order_id: str) -> None:
        account = self._accounts.get(account_id)
        if account is not None:
            account.discard(order_id)
            if not account.live:
                del self._accounts[account_id]
