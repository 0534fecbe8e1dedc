"""The order book: price-time priority, cancels, L2 snapshots, invariants, against a naive reference."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.book import BUY, SELL, Book, BookError, BookOrder, InvariantViolation


def order(order_id: str, side: int, price: int, lots: int) -> BookOrder:
    return BookOrder(order_id, side, price, lots)


def fills_of(fills: list[tuple[BookOrder, int]]) -> list[tuple[str, int, int]]:
    return [(maker.order_id, maker.price_ticks, lots) for maker, lots in fills]


def test_resting_orders_do_not_trade_and_show_in_the_snapshot() -> None:
    book = Book("BTC-USD")
    assert book.submit(order("b1", BUY, 100, 5)) == []
    assert book.submit(order("b2", BUY, 101, 1)) == []
    assert book.submit(order("b3", BUY, 100, 2)) == []
    assert book.submit(order("a1", SELL, 103, 4)) == []
    assert book.submit(order("a2", SELL, 102, 3)) == []
    assert book.best_bid() == 101 and book.best_ask() == 102
    assert book.snapshot() == ([(101, 1, 1), (100, 7, 2)], [(102, 3, 1), (103, 4, 1)])
    assert book.snapshot(1) == ([(101, 1, 1)], [(102, 3, 1)])
    assert len(book) == 5
    book.validate()


def test_price_then_time_priority_at_the_makers_price() -> None:
    book = Book("X")
    book.submit(order("a1", SELL, 102, 2))
    book.submit(order("a2", SELL, 101, 2))
    book.submit(order("a3", SELL, 101, 2))
    taker = order("b1", BUY, 105, 5)
    fills = book.submit(taker)
    # Best price first (101), oldest first within it (a2 before a3), then 102; all at the makers' prices.
    assert fills_of(fills) == [("a2", 101, 2), ("a3", 101, 2), ("a1", 102, 1)]
    assert taker.leaves_lots == 0 and "b1" not in book
    assert book.snapshot() == ([], [(102, 1, 1)])
    book.validate()


def test_a_taker_stops_at_its_limit_and_rests_the_remainder() -> None:
    book = Book("X")
    book.submit(order("a1", SELL, 100, 3))
    book.submit(order("a2", SELL, 110, 3))
    taker = order("b1", BUY, 105, 10)
    assert fills_of(book.submit(taker)) == [("a1", 100, 3)]
    assert taker.leaves_lots == 7 and taker.resting
    assert book.best_bid() == 105 and book.best_ask() == 110
    book.validate()


def test_a_sell_taker_walks_the_bids_down() -> None:
    book = Book("X")
    book.submit(order("b1", BUY, 99, 1))
    book.submit(order("b2", BUY, 100, 1))
    taker = order("s1", SELL, 99, 3)
    assert fills_of(book.submit(taker)) == [("b2", 100, 1), ("b1", 99, 1)]
    assert taker.leaves_lots == 1
    assert book.snapshot() == ([], [(99, 1, 1)])
    book.validate()


def test_cancel_removes_the_open_quantity_and_keeps_the_queue_order() -> None:
    book = Book("X")
    for i in range(4):
        book.submit(order(f"a{i}", SELL, 100, 1))
    removed = book.cancel("a1")
    assert removed is not None and removed.order_id == "a1" and removed.leaves_lots == 1
    assert not removed.resting
    assert book.cancel("a1") is None
    assert book.cancel("nope") is None
    assert book.snapshot() == ([], [(100, 3, 3)])
    fills = book.submit(order("b", BUY, 100, 3))
    assert fills_of(fills) == [("a0", 100, 1), ("a2", 100, 1), ("a3", 100, 1)]
    assert book.snapshot() == ([], [])
    book.validate()


def test_cancelling_the_last_order_of_a_level_removes_the_level() -> None:
    book = Book("X")
    book.submit(order("b1", BUY, 90, 1))
    book.submit(order("b2", BUY, 95, 1))
    book.submit(order("b3", BUY, 100, 1))
    book.cancel("b2")
    assert book.depth(BUY) == [(100, 1, 1), (90, 1, 1)]
    book.cancel("b3")
    assert book.best_bid() == 90
    book.validate()


def test_many_cancels_in_one_level_compact_it() -> None:
    book = Book("X")
    for i in range(200):
        book.submit(order(f"a{i}", SELL, 100, 1))
    for i in range(0, 200):
        if i % 5:
            book.cancel(f"a{i}")
        book.validate()
    level = book._asks.levels[100]
    assert level.count == 40
    assert len(level.orders) <= 2 * level.count + 33
    fills = book.submit(order("b", BUY, 100, 40))
    assert [maker.order_id for maker, _ in fills] == [f"a{i}" for i in range(0, 200, 5)]
    book.validate()


def test_add_refuses_a_crossing_or_duplicate_order() -> None:
    book = Book("X")
    book.add(order("a", SELL, 100, 1))
    with pytest.raises(BookError):
        book.add(order("b", BUY, 100, 1))
    with pytest.raises(BookError):
        book.add(order("a", SELL, 101, 1))
    with pytest.raises(BookError):
        book.add(order("z", SELL, 101, 0))
    with pytest.raises(BookError):
        book.submit(order("s", 0, 101, 1))


def test_validate_catches_a_corrupted_book() -> None:
    book = Book("X")
    book.submit(order("a", SELL, 100, 2))
    book.validate()
    resting = book.get("a")
    assert resting is not None
    resting.leaves_lots = 5  # behind the book's back
    with pytest.raises(InvariantViolation):
        book.validate()


def test_state_hash_depends_on_priority_and_quantities() -> None:
    def build(ids: list[str]) -> Book:
        book = Book("X")
        for order_id in ids:
            book.submit(order(order_id, SELL, 100, 1))
        return book

    assert build(["a", "b"]).state_hash() == build(["a", "b"]).state_hash()
    assert build(["a", "b"]).state_hash() != build(["b", "a"]).state_hash()
    one, two = build(["a"]), build(["a"])
    two.submit(order("b", BUY, 99, 1))
    assert one.state_hash() != two.state_hash()


def test_makers_lists_what_a_taker_meets_in_priority_skipping_cancelled_orders() -> None:
    book = Book("X")
    for order_id, price in (("a1", 102), ("a2", 101), ("a3", 101), ("a4", 103)):
        book.submit(order(order_id, SELL, price, 1))
    book.cancel("a2")
    assert [maker.order_id for maker in book.makers(BUY)] == ["a3", "a1", "a4"]
    assert list(book.makers(SELL)) == []


def test_take_trades_the_first_order_in_priority_only() -> None:
    book = Book("X")
    for order_id, price, lots in (("a1", 101, 2), ("a2", 101, 3), ("a3", 102, 1)):
        book.submit(order(order_id, SELL, price, lots))
    first, second = book.get("a1"), book.get("a2")
    assert first is not None and second is not None
    with pytest.raises(BookError):
        book.take(second, 1)  # a1 is ahead of it
    with pytest.raises(BookError):
        book.take(first, 3)  # more than it has
    book.take(first, 1)
    book.take(first, 1)
    assert "a1" not in book and book.depth(SELL) == [(101, 3, 1), (102, 1, 1)]
    book.take(second, 3)
    assert book.depth(SELL) == [(102, 1, 1)]
    book.discard(1)  # a taker of 6 lots: 5 traded (counted by take), 1 expired
    book.validate()


def test_reduce_keeps_the_place_in_the_queue() -> None:
    book = Book("X")
    book.submit(order("b1", BUY, 100, 5))
    book.submit(order("b2", BUY, 100, 5))
    book.reduce("b1", 3)
    assert book.depth(BUY) == [(100, 7, 2)]
    assert fills_of(book.submit(order("s", SELL, 100, 1))) == [("b1", 100, 1)]
    with pytest.raises(BookError):
        book.reduce("b1", 1)  # to nothing: that is a cancel
    with pytest.raises(BookError):
        book.reduce("gone", 1)
    book.validate()


def test_an_order_taken_out_to_rest_again_goes_to_the_back_once() -> None:
    book = Book("X")
    for order_id in ("b1", "b2", "b3"):
        book.submit(order(order_id, BUY, 100, 1))
    moved = book.cancel("b1", to_rest_again=True)
    assert moved is not None
    book.enter(moved)  # same price, now behind b2 and b3
    assert [o.order_id for o in book.orders_in_priority(BUY)] == ["b2", "b3", "b1"]
    book.validate()  # no tombstone of b1 left to look live again


# -- the same operations against a naive reference book ------------------------------------


@dataclass
class _Ref:
    order_id: str
    side: int
    price: int
    leaves: int
    arrival: int


class ReferenceBook:
    """Obviously correct and slow: a flat list scanned for the best maker each time."""

    def __init__(self) -> None:
        self.orders: list[_Ref] = []
        self.arrivals = 0

    def submit(self, order_id: str, side: int, price: int, lots: int) -> list[tuple[str, int, int]]:
        fills = []
        while lots:
            if side == BUY:
                candidates = [o for o in self.orders if o.side == SELL and o.price <= price]
                key = lambda o: (o.price, o.arrival)  # noqa: E731
            else:
                candidates = [o for o in self.orders if o.side == BUY and o.price >= price]
                key = lambda o: (-o.price, o.arrival)  # noqa: E731
            if not candidates:
                break
            maker = min(candidates, key=key)
            quantity = min(lots, maker.leaves)
            maker.leaves -= quantity
            lots -= quantity
            fills.append((maker.order_id, maker.price, quantity))
            if not maker.leaves:
                self.orders.remove(maker)
        if lots:
            self.arrivals += 1
            self.orders.append(_Ref(order_id, side, price, lots, self.arrivals))
        return fills

    def cancel(self, order_id: str) -> int | None:
        for o in self.orders:
            if o.order_id == order_id:
                self.orders.remove(o)
                return o.leaves
        return None

    def depth(self, side: int) -> list[tuple[int, int, int]]:
        levels: dict[int, list[int]] = {}
        for o in self.orders:
            if o.side == side:
                level = levels.setdefault(o.price, [0, 0])
                level[0] += o.leaves
                level[1] += 1
        prices = sorted(levels, reverse=side == BUY)
        return [(p, levels[p][0], levels[p][1]) for p in prices]


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.sampled_from([BUY, SELL]),
            st.integers(min_value=95, max_value=105),
            st.integers(min_value=1, max_value=8),
        ),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=200)),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_book_matches_the_reference_model_after_every_step(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    book, reference = Book("X"), ReferenceBook()
    submitted: list[str] = []
    for step, op in enumerate(ops):
        if op[0] == "submit":
            _, side, price, lots = op
            order_id = f"o{step}"
            submitted.append(order_id)
            taker = order(order_id, side, price, lots)
            assert fills_of(book.submit(taker)) == reference.submit(order_id, side, price, lots)
        else:
            target = submitted[op[1] % len(submitted)] if submitted else "none"
            removed = book.cancel(target)
            expected = reference.cancel(target)
            assert (removed.leaves_lots if removed else None) == expected
        book.validate()
        assert book.depth(BUY) == reference.depth(BUY)
        assert book.depth(SELL) == reference.depth(SELL)
        for levels in (1, 2):
            assert book.depth(BUY, levels) == reference.depth(BUY)[:levels]
        assert len(book) == len(reference.orders)
