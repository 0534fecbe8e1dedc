"""A price-time priority limit order book for one instrument: pure, synchronous, integer-only.

Each side keeps its price levels in a dict (price -> level) and the level
prices in a list sorted so that the best price is at the end (bids by price,
asks by negated price), so the best level is found, and an emptied best level
removed, in constant time; a new level is inserted with bisect. A level is a
FIFO deque of orders. A cancel removes the order from the level's totals and
the order index at once and leaves a tombstone in the deque, skipped when
matching reaches it; a level whose tombstones outnumber its live orders is
compacted, so the deque stays within twice its live size (plus a small slack).

Trades execute at the resting (maker) order's price. The book only knows an
order's id, side, limit price and open quantity; the engine keeps everything
else (owner, fills, status) on a subclass of :class:`BookOrder`.

Two ways to match: :meth:`Book.match` walks the opposite side in one loop (a
plain limit order, the hot path); an order with conditions (self-trade
prevention, a quote budget, fill-or-kill) is planned by the engine over
:meth:`Book.makers` without changing anything, then executed maker by maker
with :meth:`Book.take` and :meth:`Book.cancel`.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator

BUY = 1
SELL = 2

_COMPACT_SLACK = 32


class BookError(ValueError):
    """An operation the book refuses (for example resting an order that would cross)."""


class InvariantViolation(AssertionError):
    """The book's internal state is inconsistent; continuing would corrupt it."""


class BookOrder:
    """What the book needs of an order. ``leaves_lots`` is the quantity still open."""

    __slots__ = ("leaves_lots", "order_id", "price_ticks", "resting", "side")

    def __init__(self, order_id: str, side: int, price_ticks: int, leaves_lots: int) -> None:
        self.order_id = order_id
        self.side = side
        self.price_ticks = price_ticks
        self.leaves_lots = leaves_lots
        self.resting = False

    def __repr__(self) -> str:
        side = "BUY" if self.side == BUY else "SELL"
        return f"BookOrder({self.order_id!r}, {side}, {self.price_ticks}, leaves={self.leaves_lots})"


class _Level:
    __slots__ = ("count", "dead", "orders", "price_ticks", "total_lots")

    def __init__(self, price_ticks: int) -> None:
        self.price_ticks = price_ticks
        self.orders: deque[BookOrder] = deque()
        self.total_lots = 0
        self.count = 0
        self.dead = 0


class _Side:
    """One side of the book; ``keys`` ascending with the best price last."""

    __slots__ = ("keys", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # +1 for bids (best = highest), -1 for asks (best = lowest)
        self.keys: list[int] = []
        self.levels: dict[int, _Level] = {}

    def best_price(self) -> int | None:
        return self.keys[-1] * self.sign if self.keys else None

    def levels_best_first(self) -> list[_Level]:
        sign = self.sign
        levels = self.levels
        return [levels[key * sign] for key in reversed(self.keys)]


# A fill: the resting order that traded and the lots it traded; the price is the maker's.
Fill = tuple[BookOrder, int]


class Book:
    """The order book of one symbol."""

    __slots__ = ("_asks", "_bids", "_index", "cancelled_lots", "entered_lots", "symbol", "traded_lots")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids = _Side(1)
        self._asks = _Side(-1)
        self._index: dict[str, BookOrder] = {}
        # Conservation counters: open lots at rest == entered - 2 * traded - cancelled, where
        # "cancelled" is every lot that left the book (or an arrival) without trading.
        self.entered_lots = 0
        self.traded_lots = 0
        self.cancelled_lots = 0

    # -- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._index

    def get(self, order_id: str) -> BookOrder | None:
        return self._index.get(order_id)

    def best_bid(self) -> int | None:
        return self._bids.best_price()

    def best_ask(self) -> int | None:
        return self._asks.best_price()

    def depth(self, side: int, levels: int = 0) -> list[tuple[int, int, int]]:
        """(price_ticks, open lots, order count) per level, best first; ``levels`` 0 means all."""
        book_side = self._bids if side == BUY else self._asks
        sign = book_side.sign
        keys = book_side.keys
        chosen = keys if levels <= 0 else keys[-levels:]
        by_price = book_side.levels
        result = []
        for key in reversed(chosen):
            level = by_price[key * sign]
            result.append((level.price_ticks, level.total_lots, level.count))
        return result

    def snapshot(self, levels: int = 0) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """The L2 book: (bids highest first, asks lowest first)."""
        return self.depth(BUY, levels), self.depth(SELL, levels)

    def makers(self, taker_side: int) -> Iterator[BookOrder]:
        """The resting orders a taker of `taker_side` meets, in priority order (lazily).

        The book must not change while the iterator is in use.
        """
        book_side = self._asks if taker_side == BUY else self._bids
        sign = book_side.sign
        levels = book_side.levels
        for key in reversed(book_side.keys):
            for order in levels[key * sign].orders:
                if order.resting:
                    yield order

    def orders_in_priority(self, side: int) -> list[BookOrder]:
        """Every resting order of a side, best price first, oldest first within a price."""
        book_side = self._bids if side == BUY else self._asks
        return [order for level in book_side.levels_best_first() for order in level.orders if order.resting]

    # -- commands ------------------------------------------------------------------------

    def match(self, taker: BookOrder) -> list[Fill]:
        """Trade `taker` against the opposite side as far as its limit allows.

        Decrements the taker's and the makers' ``leaves_lots``; makers that are
        filled leave the book. Returns the fills in execution order. Does not
        rest the taker's remainder (see :meth:`add`, :meth:`submit`).
        """
        fills: list[Fill] = []
        remaining = taker.leaves_lots
        if remaining <= 0:
            return fills
        limit = taker.price_ticks
        if taker.side == BUY:
            opposite = self._asks
        elif taker.side == SELL:
            opposite = self._bids
        else:
            raise BookError(f"side {taker.side} is neither buy nor sell")
        sign = opposite.sign
        keys = opposite.keys
        levels = opposite.levels
        index = self._index
        traded = 0
        while remaining and keys:
            price = keys[-1] * sign
            # A buy trades with asks at or below its limit, a sell with bids at or above.
            if (price > limit) if sign < 0 else (price < limit):
                break
            level = levels[price]
            queue = level.orders
            while remaining and level.count:
                maker = queue[0]
                if not maker.resting:
                    queue.popleft()
                    level.dead -= 1
                    continue
                available = maker.leaves_lots
                quantity = remaining if remaining < available else available
                remaining -= quantity
                traded += quantity
                level.total_lots -= quantity
                if quantity == available:
                    maker.leaves_lots = 0
                    maker.resting = False
                    queue.popleft()
                    level.count -= 1
                    del index[maker.order_id]
                else:
                    maker.leaves_lots = available - quantity
                fills.append((maker, quantity))
            if not level.count:
                del levels[price]
                keys.pop()
        taker.leaves_lots = remaining
        self.traded_lots += traded
        return fills

    def take(self, maker: BookOrder, lots: int) -> None:
        """Trade `lots` of `maker`, which must be first in priority on its side.

        Like one step of :meth:`match`: the maker leaves the book when filled.
        The taker's lots are counted as entered and traded here (its remainder,
        if it does not rest, is counted by :meth:`discard`).
        """
        side = self._bids if maker.side == BUY else self._asks
        price = maker.price_ticks
        if not maker.resting or side.keys[-1] != price * side.sign or not 0 < lots <= maker.leaves_lots:
            raise BookError(f"{maker!r} is not first in priority with {lots} lots to take")
        level = side.levels[price]
        queue = level.orders
        while not queue[0].resting:
            queue.popleft()
            level.dead -= 1
        if queue[0] is not maker:
            raise BookError(f"{maker!r} is not first in priority at its price")
        level.total_lots -= lots
        self.entered_lots += lots
        self.traded_lots += lots
        if lots == maker.leaves_lots:
            maker.leaves_lots = 0
            maker.resting = False
            queue.popleft()
            level.count -= 1
            del self._index[maker.order_id]
            if not level.count:
                del side.levels[price]
                side.keys.pop()
        else:
            maker.leaves_lots -= lots

    def enter(self, order: BookOrder) -> None:
        """Rest `order`, counting its open quantity as entered (an arrival that did not trade)."""
        self.add(order)
        self.entered_lots += order.leaves_lots

    def discard(self, lots: int) -> None:
        """Count `lots` of an arriving order that neither traded nor rested (they expired)."""
        self.entered_lots += lots
        self.cancelled_lots += lots

    def reduce(self, order_id: str, lots: int) -> None:
        """Take `lots` off a resting order's open quantity, keeping its place in the queue."""
        order = self._index.get(order_id)
        if order is None or not 0 <= lots < order.leaves_lots:
            raise BookError(f"cannot reduce {order_id!r} by {lots} lots")
        side = self._bids if order.side == BUY else self._asks
        side.levels[order.price_ticks].total_lots -= lots
        order.leaves_lots -= lots
        self.cancelled_lots += lots

    def add(self, order: BookOrder) -> None:
        """Rest `order` at the back of its price level. Refuses an order that would cross."""
        if order.leaves_lots <= 0:
            raise BookError(f"order {order.order_id!r} has no open quantity to rest")
        if order.order_id in self._index:
            raise BookError(f"order {order.order_id!r} is already on the book")
        price = order.price_ticks
        if order.side == BUY:
            side = self._bids
            best_ask = self._asks.best_price()
            if best_ask is not None and price >= best_ask:
                raise BookError(f"buy at {price} would cross the best ask {best_ask}")
        elif order.side == SELL:
            side = self._asks
            best_bid = self._bids.best_price()
            if best_bid is not None and price <= best_bid:
                raise BookError(f"sell at {price} would cross the best bid {best_bid}")
        else:
            raise BookError(f"side {order.side} is neither buy nor sell")
        level = side.levels.get(price)
        if level is None:
            level = side.levels[price] = _Level(price)
            key = price * side.sign
            keys = side.keys
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        level.orders.append(order)
        level.total_lots += order.leaves_lots
        level.count += 1
        order.resting = True
        self._index[order.order_id] = order

    def submit(self, order: BookOrder) -> list[Fill]:
        """Match `order` and rest what is left of it; returns the fills."""
        self.entered_lots += order.leaves_lots
        fills = self.match(order)
        if order.leaves_lots:
            self.add(order)
        return fills

    def cancel(self, order_id: str, *, to_rest_again: bool = False) -> BookOrder | None:
        """Take a resting order off the book; returns it with its open quantity, or None.

        The order's ``leaves_lots`` is left as it was, so the caller knows what
        was released; the caller sets it to zero when it records the cancel.
        An order that will rest again (a replace that loses its priority) is
        taken out of its queue at once (a scan of its level) instead of being
        left as a tombstone: once resting again, the tombstone would look live.
        """
        order = self._index.pop(order_id, None)
        if order is None:
            return None
        side = self._bids if order.side == BUY else self._asks
        price = order.price_ticks
        level = side.levels[price]
        order.resting = False
        level.total_lots -= order.leaves_lots
        level.count -= 1
        self.cancelled_lots += order.leaves_lots
        if not level.count:
            del side.levels[price]
            keys = side.keys
            key = price * side.sign
            if keys[-1] == key:
                keys.pop()
            else:
                keys.pop(bisect_left(keys, key))
        elif to_rest_again:
            level.orders.remove(order)
        else:
            level.dead += 1
            if level.dead > _COMPACT_SLACK and level.dead > level.count:
                level.orders = deque(o for o in level.orders if o.resting)
                level.dead = 0
        return order

    # -- checks --------------------------------------------------------------------------

    def validate(self) -> None:
        """Check every invariant; raises InvariantViolation naming the first one broken."""
        seen: dict[str, BookOrder] = {}
        open_lots = 0
        for side_code, side in ((BUY, self._bids), (SELL, self._asks)):
            keys = side.keys
            if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
                raise InvariantViolation(f"{self.symbol}: price keys not strictly sorted: {keys}")
            if {key * side.sign for key in keys} != set(side.levels):
                raise InvariantViolation(f"{self.symbol}: sorted prices and levels disagree")
            for price, level in side.levels.items():
                if level.price_ticks != price:
                    raise InvariantViolation(f"{self.symbol}: level {price} labelled {level.price_ticks}")
                live = [order for order in level.orders if order.resting]
                if level.count != len(live) or level.count <= 0:
                    raise InvariantViolation(
                        f"{self.symbol}: level {price} counts {level.count}, holds {len(live)} orders"
                    )
                if level.dead != len(level.orders) - len(live):
                    raise InvariantViolation(f"{self.symbol}: level {price} tombstone count is wrong")
                if level.total_lots != sum(order.leaves_lots for order in live):
                    raise InvariantViolation(f"{self.symbol}: level {price} total is wrong")
                for order in live:
                    if order.leaves_lots <= 0:
                        raise InvariantViolation(f"{self.symbol}: {order!r} rests with nothing open")
                    if order.side != side_code or order.price_ticks != price:
                        raise InvariantViolation(f"{self.symbol}: {order!r} is on the wrong level")
                    if order.order_id in seen:
                        raise InvariantViolation(f"{self.symbol}: {order.order_id!r} rests twice")
                    seen[order.order_id] = order
                    open_lots += order.leaves_lots
        if seen.keys() != self._index.keys() or any(
            self._index[order_id] is not order for order_id, order in seen.items()
        ):
            raise InvariantViolation(f"{self.symbol}: order index and levels disagree")
        best_bid, best_ask = self.best_bid(), self.best_ask()
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            raise InvariantViolation(f"{self.symbol}: crossed at rest (bid {best_bid} >= ask {best_ask})")
        expected = self.entered_lots - 2 * self.traded_lots - self.cancelled_lots
        if open_lots != expected:
            raise InvariantViolation(
                f"{self.symbol}: {open_lots} lots open, but entered {self.entered_lots} - "
                f"2 x traded {self.traded_lots} - cancelled {self.cancelled_lots} = {expected}"
            )

    def state_hash(self) -> str:
        """A digest of the resting orders in priority order and the counters (replay equality)."""
        digest = hashlib.sha256()
        digest.update(
            f"{self.symbol}|{self.entered_lots}|{self.traded_lots}|{self.cancelled_lots}\n".encode()
        )
        for side in (BUY, SELL):
            for order in self.orders_in_priority(side):
                digest.update(f"{side}|{order.price_ticks}|{order.order_id}|{order.leaves_lots}\n".encode())
        return digest.hexdigest()
