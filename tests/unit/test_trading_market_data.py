"""Trading's market data feed: per-batch level changes and trade prints, snapshots consistent with
what is journaled, bounded subscribers; a model book rebuilt from the updates equals the engine's."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.levels import changed_levels
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2
from tests.instruments import btc_usd
from tests.unit.test_trading_engine import BUY, SELL, T, cancel, new
from trading.book import BUY as BOOK_BUY
from trading.book import SELL as BOOK_SELL
from trading.engine import Engine
from trading.market_data import MarketDataFeed


def applied(engine: Engine, feed: MarketDataFeed, *commands: trading_pb2.OrderCommand, at: int = T + 1):
    """Apply `commands` as one batch; the batch's captured market data (not yet published)."""
    records: list[trading_pb2.JournalRecord] = []
    for command in commands:
        records.extend(engine.apply(command, at).records)
    return feed.capture(records, at)


def levels(update: trading_pb2.BookUpdate) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    def rows(items: object) -> list[tuple[int, int, int]]:
        return [(level.price_ticks, level.quantity_lots, level.order_count) for level in items]  # type: ignore[attr-defined]

    return rows(update.bids), rows(update.asks)


@pytest.fixture
def engine() -> Engine:
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    return engine


@pytest.fixture
def feed(engine: Engine) -> MarketDataFeed:
    feed = MarketDataFeed(engine, depth=3)
    feed.start()
    return feed


def test_a_batch_gives_one_update_per_book_with_the_changed_levels_and_its_trades(
    engine: Engine, feed: MarketDataFeed
) -> None:
    captured = applied(
        engine,
        feed,
        new("s1", SELL, 5_000_100, 10, account="bob"),
        new("s2", SELL, 5_000_100, 5, account="bob"),
        new("b1", BUY, 4_999_900, 7, account="alice"),
    )
    (update,) = captured.updates
    assert (update.symbol, update.sequence, update.snapshot, update.timestamp_ns) == (
        "BTC-USD",
        1,
        False,
        T + 1,
    )
    assert levels(update) == ([(4_999_900, 7, 1)], [(5_000_100, 15, 2)])
    assert not update.trades
    feed.publish(captured)

    # A buy that takes 12 of the 15 lots at 50,001.00: the ask level shrinks; one print per fill.
    (update,) = applied(engine, feed, new("b2", BUY, 5_000_100, 12, account="carol"), at=T + 2).updates
    assert update.sequence == 2
    assert levels(update) == ([], [(5_000_100, 3, 1)])
    assert [(t.price_ticks, t.quantity_lots, t.aggressor_side) for t in update.trades] == [
        (5_000_100, 10, common_pb2.SIDE_BUY),
        (5_000_100, 2, common_pb2.SIDE_BUY),
    ]
    assert [t.trade_id for t in update.trades] == [1, 2]

    # A cancel empties the bid level: quantity 0 says it is gone.
    (update,) = applied(engine, feed, cancel("b1", account="alice"), at=T + 3).updates
    assert levels(update) == ([(4_999_900, 0, 0)], [])


def test_a_batch_that_changes_no_level_and_trades_nothing_sends_nothing(
    engine: Engine, feed: MarketDataFeed
) -> None:
    feed.publish(applied(engine, feed, *(new(f"b{i}", BUY, 4_000_000 - i, 1) for i in range(4))))
    # The fifth bid is below the top three levels (depth 3): nothing visible changed.
    assert applied(engine, feed, new("deep", BUY, 3_000_000, 1)).updates == []
    # A refused command (unknown order) journals nothing and touches no book.
    assert applied(engine, feed, cancel("nope")).updates == []


def test_a_level_pushed_out_of_the_top_levels_is_reported_gone(engine: Engine, feed: MarketDataFeed) -> None:
    feed.publish(applied(engine, feed, *(new(f"b{i}", BUY, 4_000_000 - i, 1) for i in range(3))))
    (update,) = applied(engine, feed, new("best", BUY, 4_000_005, 2)).updates
    assert levels(update) == ([(4_000_005, 2, 1), (3_999_998, 0, 0)], [])


def test_a_new_instrument_starts_with_a_snapshot(engine: Engine, feed: MarketDataFeed) -> None:
    instrument = btc_usd()
    instrument.symbol = "ETH-USD"
    outcome = engine.create_instrument(instrument, T + 5)
    (update,) = feed.capture(outcome.records, T + 5).updates
    assert (update.symbol, update.sequence, update.snapshot) == ("ETH-USD", 1, True)
    assert levels(update) == ([], [])


def test_a_snapshot_shows_what_is_published_not_what_is_only_applied(
    engine: Engine, feed: MarketDataFeed
) -> None:
    async def scenario() -> None:
        first = applied(engine, feed, new("s1", SELL, 5_000_000, 4, account="bob"))
        feed.publish(first)
        # Applied, not journaled yet: a subscriber joining now must not see it in its snapshot...
        second = applied(engine, feed, new("s2", SELL, 5_000_500, 6, account="bob"))
        snapshot, subscription = feed.subscribe()
        (book,) = snapshot.updates
        assert (book.symbol, book.sequence, book.snapshot) == ("BTC-USD", 1, True)
        assert levels(book) == ([], [(5_000_000, 4, 1)])
        # ...and gets it as the next update once it is.
        feed.publish(second)
        (update,) = (await subscription.next()).updates
        assert update.sequence == 2 and levels(update) == ([], [(5_000_500, 6, 1)])
        feed.unsubscribe(subscription)

    asyncio.run(scenario())


def test_a_subscriber_that_falls_behind_is_ended_and_matching_goes_on(engine: Engine) -> None:
    async def scenario() -> None:
        feed = MarketDataFeed(engine, max_queued_batches=2)
        feed.start()
        _, slow = feed.subscribe()
        for i in range(3):
            feed.publish(applied(engine, feed, new(f"b{i}", BUY, 4_000_000 + i, 1)))
        with pytest.raises(ServiceError) as ended:
            await slow.next()
        assert (ended.value.code, ended.value.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOW_CONSUMER")
        assert feed.subscriber_count == 0

    asyncio.run(scenario())


def test_recapture_ends_subscribers_and_restarts_from_the_books(engine: Engine, feed: MarketDataFeed) -> None:
    async def scenario() -> None:
        feed.publish(applied(engine, feed, new("b1", BUY, 4_000_000, 3)))
        _, subscription = feed.subscribe()
        feed.recapture("a test")
        with pytest.raises(ServiceError) as ended:
            await subscription.next()
        assert ended.value.reason == "MARKET_DATA_INTERRUPTED"
        snapshot, _ = feed.subscribe()
        (book,) = snapshot.updates
        assert book.sequence == 2 and levels(book) == ([(4_000_000, 3, 1)], [])

    asyncio.run(scenario())


def test_changed_levels_lists_changes_then_removals() -> None:
    before = [(10, 5, 1), (9, 3, 2), (8, 1, 1)]
    after = [(11, 2, 1), (10, 5, 1), (9, 4, 2)]
    assert changed_levels(before, after) == [(11, 2, 1), (9, 4, 2), (8, 0, 0)]
    assert changed_levels([], after) == after and changed_levels(before, []) == [
        (p, 0, 0) for p, _, _ in before
    ]
    assert changed_levels(after, after) == []


def test_a_book_rebuilt_from_snapshot_and_updates_equals_the_engines_top_levels(engine: Engine) -> None:
    """Random batches of orders and cancels: a client applying every update holds the engine's book."""
    feed = MarketDataFeed(engine, depth=5)
    feed.start()
    snapshot, _ = feed.subscribe()
    (first,) = snapshot.updates
    bids: dict[int, tuple[int, int]] = {}
    asks: dict[int, tuple[int, int]] = {}
    sequence = first.sequence
    rng = random.Random(7)
    open_orders: list[tuple[str, str]] = []
    for batch in range(300):
        commands = []
        for i in range(rng.randint(1, 8)):
            if open_orders and rng.random() < 0.3:
                order_id, account = open_orders.pop(rng.randrange(len(open_orders)))
                commands.append(cancel(order_id, account=account))
            else:
                order_id, account = f"o{batch}-{i}", f"acct-{rng.randint(1, 4)}"
                side = rng.choice((BUY, SELL))
                price = 5_000_000 + rng.randint(-8, 8) * 100
                commands.append(new(order_id, side, price, rng.randint(1, 9), account=account))
                open_orders.append((order_id, account))
        captured = applied(engine, feed, *commands, at=T + batch + 1)
        feed.publish(captured)
        for update in captured.updates:
            assert update.sequence == sequence + 1
            sequence = update.sequence
            for side, book in ((update.bids, bids), (update.asks, asks)):
                for level in side:
                    if level.quantity_lots:
                        book[level.price_ticks] = (level.quantity_lots, level.order_count)
                    else:
                        book.pop(level.price_ticks, None)
        real = engine.books["BTC-USD"]
        assert sorted(((p, *v) for p, v in bids.items()), reverse=True) == real.depth(BOOK_BUY, 5)
        assert sorted((p, *v) for p, v in asks.items()) == real.depth(BOOK_SELL, 5)
