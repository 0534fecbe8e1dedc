"""Open orders by account, for ListOpenOrders: which orders of an account may still be open.

The engine keeps every open order and the closed ones the report history has not written yet
(``Engine.orders``, in the order accepted; trading/retention.py), so finding one account's
open orders there means walking all of them. This index keeps, per account, the keys
(created_ns, order_id) of its orders that were open when it last looked, in that order (the
listing's), so a page starts with a bisection and costs about its own orders.

It follows the engine, not the journal records: after each committed batch
(:meth:`OpenOrderIndex.committed`, an ``EngineLoop.on_committed`` callback) it takes in the
orders the engine accepted since it last looked, newest first until the last one it took (a
dict walked backwards: no protobuf field is read, and an order filled on arrival, most takers,
never joins). Orders that close are not looked for: the index is only a list of candidates,
each checked against the engine's order when a page walks over it, and an account's list is
compacted (its closed orders dropped) when it has grown to twice what was open at its last
compaction, or when a page walked more closed candidates than it listed: amortized O(1) per
order, and a page walks at most about as many closed candidates as open ones.

A page runs on the engine task, so it sees the engine's state, which may be ahead of the
journal; its answer goes out once its own batch is journaled, after every batch before it, so
everything it saw is journaled by then.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

from backbone.common.v1 import common_pb2
from backbone.trading.v1 import trading_pb2
from trading.engine import OrderState

_OPEN_STATUSES = frozenset((common_pb2.ORDER_STATUS_NEW, common_pb2.ORDER_STATUS_PARTIALLY_FILLED))

# Where a page starts: after the order with this (created_ns, order_id); (0, "") is the start.
PageKey = tuple[int, str]

# Closed candidates an account's list may hold beyond twice its open ones before it is compacted.
_SLACK = 64


def is_open(order: OrderState) -> bool:
    """True while the order has quantity open on a book."""
    return order.status in _OPEN_STATUSES and order.leaves_lots > 0


class _AccountOrders:
    """One account's candidates, by (created_ns, order_id), and how many were open at the last
    compaction."""

    __slots__ = ("keys", "open_at_compaction")

    def __init__(self) -> None:
        self.keys: list[PageKey] = []
        self.open_at_compaction = 0

    def add(self, order: OrderState, orders: Mapping[str, OrderState]) -> None:
        key = (order.created_ns, order.order_id)
        if not self.keys or self.keys[-1] < key:
            self.keys.append(key)  # the usual case: the newest order
        else:  # orders of one batch share a time and go by id
            bisect.insort(self.keys, key)
        if len(self.keys) > 2 * self.open_at_compaction + _SLACK:
            self.compact(orders)

    def compact(self, orders: Mapping[str, OrderState]) -> None:
        """Drop the candidates that are no longer open."""
        self.keys = [key for key in self.keys if (order := orders.get(key[1])) is not None and is_open(order)]
        self.open_at_compaction = len(self.keys)


class OpenOrderIndex:
    """Account id -> its orders that may be open, ordered by (created_ns, order_id).

    `orders` is the engine's (every order it accepted, by id, in the order accepted)."""

    def __init__(self, orders: Mapping[str, OrderState]) -> None:
        self.follow(orders)

    def follow(self, orders: Mapping[str, OrderState]) -> None:
        """Follow `orders` from scratch (the engine's; another engine's when trading loaded one
        from a snapshot): the next catch-up takes in every one of them."""
        self._orders = orders
        self._accounts: dict[str, _AccountOrders] = {}
        self._last: OrderState | None = None  # the newest order taken in

    def newest(self) -> str | None:
        """The order id the next catch-up walks the engine's orders back to (the engine must
        hold it until a newer one is taken in: trading/retention.py keeps it)."""
        return None if self._last is None else self._last.order_id

    def __len__(self) -> int:
        """Candidates held (open, or closed and not yet dropped)."""
        return sum(len(account.keys) for account in self._accounts.values())

    def committed(self, records: Sequence[trading_pb2.JournalRecord]) -> None:
        """A batch was committed (an EngineLoop.on_committed callback): take in the new orders."""
        self.catch_up()

    def catch_up(self) -> None:
        """Take in every order the engine accepted since the last call that is open now (an order
        closed now is closed for good). The first call takes in every open order (after replay)."""
        fresh: list[OrderState] = []
        last = self._last
        for order in reversed(self._orders.values()):  # type: ignore[call-overload]
            if order is last:
                break
            fresh.append(order)
        if not fresh:
            return
        self._last = fresh[0]
        orders, accounts = self._orders, self._accounts
        for order in reversed(fresh):
            if is_open(order):
                account = accounts.get(order.account_id)
                if account is None:
                    account = accounts[order.account_id] = _AccountOrders()
                account.add(order, orders)

    def page(
        self, account_id: str, symbol: str, after: PageKey, limit: int
    ) -> tuple[list[common_pb2.Order], bool]:
        """Up to `limit` open orders of `account_id` (of `symbol` unless empty) after `after`, by
        (created_ns, order_id), and whether more follow. Run on the engine task."""
        self.catch_up()
        account = self._accounts.get(account_id)
        if account is None:
            return [], False
        orders, keys = self._orders, account.keys
        chosen: list[OrderState] = []
        closed = 0
        position = bisect.bisect_right(keys, after)
        while position < len(keys):
            order = orders.get(keys[position][1])
            if order is None or not is_open(order):
                closed += 1
            elif not symbol or order.symbol == symbol:
                if len(chosen) == limit:
                    break  # one more exists
                chosen.append(order)
            position += 1
        more = position < len(keys)
        if closed > len(chosen) + _SLACK:
            account.compact(orders)
            if not account.keys:
                del self._accounts[account_id]
        return [order.message() for order in chosen], more
