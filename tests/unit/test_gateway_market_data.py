"""The gateway's market data fan-out: per-caller depth, numbering without gaps, bounded queues that
turn into resync snapshots, and a gap from trading that makes it subscribe again."""

from __future__ import annotations

import pytest

from backbone.trading.v1 import trading_pb2
from gateway.market_data import MarketDataFanout, MarketDataSubscription

Level = tuple[int, int, int]


def update(
    symbol: str,
    sequence: int,
    bids: tuple[Level, ...] | list[Level] = (),
    asks: tuple[Level, ...] | list[Level] = (),
    *,
    snapshot: bool = False,
    trades: int = 0,
) -> trading_pb2.StreamMarketDataResponse:
    def levels(items: tuple[Level, ...] | list[Level]) -> list[trading_pb2.PriceLevel]:
        return [trading_pb2.PriceLevel(price_ticks=p, quantity_lots=q, order_count=c) for p, q, c in items]

    return trading_pb2.StreamMarketDataResponse(
        updates=[
            trading_pb2.BookUpdate(
                symbol=symbol,
                sequence=sequence,
                snapshot=snapshot,
                bids=levels(bids),
                asks=levels(asks),
                trades=[
                    trading_pb2.TradePrint(trade_id=i + 1, price_ticks=100, quantity_lots=1)
                    for i in range(trades)
                ],
            )
        ]
    )


def fanout(max_queued: int = 100) -> MarketDataFanout:
    feed = MarketDataFanout(lambda: None, max_queued_per_caller=max_queued)
    feed.dispatch(update("A", 0, [(100, 5, 1), (99, 3, 1), (98, 1, 1)], [(101, 2, 1)], snapshot=True))
    return feed


async def drain(
    caller: MarketDataSubscription,
) -> list[tuple[int, bool, bool, list[Level], list[Level], int]]:
    """What is queued for `caller` now (nothing when nothing is)."""
    messages = (await caller.get_all() or []) if caller.queued else []
    return [(m.sequence, m.snapshot, m.resync, m.bids, m.asks, len(m.trades)) for m in messages]


async def test_each_caller_gets_its_depth_and_only_changes_within_it() -> None:
    feed = fanout()
    top = feed.subscribe(["A"], 1)
    deep = feed.subscribe(["A"], 3)
    assert await drain(top) == [(1, True, False, [(100, 5, 1)], [(101, 2, 1)], 0)]
    assert await drain(deep) == [(1, True, False, [(100, 5, 1), (99, 3, 1), (98, 1, 1)], [(101, 2, 1)], 0)]

    feed.dispatch(update("A", 1, [(98, 4, 2)]))  # below the top level
    assert await drain(top) == []
    assert await drain(deep) == [(2, False, False, [(98, 4, 2)], [], 0)]

    feed.dispatch(update("A", 2, [(100, 0, 0)], trades=2))  # the best bid traded away
    assert await drain(top) == [(2, False, False, [(99, 3, 1), (100, 0, 0)], [], 2)]
    assert await drain(deep) == [(3, False, False, [(100, 0, 0)], [], 2)]


async def test_a_caller_that_falls_behind_gets_a_resync_snapshot_instead_of_what_waited() -> None:
    feed = fanout(max_queued=3)
    caller = feed.subscribe(["A"], 2)
    for sequence in range(1, 8):  # a new best bid each time
        feed.dispatch(update("A", sequence, [(100 + sequence, sequence, 1)]))
    messages = await drain(caller)
    # The queue overflowed: what waited was dropped and a resync snapshot of the book as it was
    # then took its place; later changes follow it, numbered on without a gap.
    assert len(messages) <= 3 and caller.resyncs >= 1
    numbers = [m[0] for m in messages]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and numbers[0] > 1
    assert messages[0][1:3] == (True, True)
    # Applying what came leaves the caller holding the real top two levels.
    bids: dict[int, tuple[int, int]] = {}
    for _, snapshot, _, changed, _, _ in messages:
        if snapshot:
            bids = {}
        for price, lots, count in changed:
            if lots:
                bids[price] = (lots, count)
            else:
                bids.pop(price, None)
    book = feed.book("A")
    assert book is not None
    assert (
        sorted(((p, *v) for p, v in bids.items()), reverse=True)
        == book.top(2)[0]
        == [(107, 7, 1), (106, 6, 1)]
    )


async def test_an_upstream_snapshot_resyncs_every_caller_of_the_symbol() -> None:
    feed = fanout()
    caller = feed.subscribe(["A"], 2)
    await drain(caller)
    feed.dispatch(update("A", 9, [(50, 1, 1)], [], snapshot=True))
    assert await drain(caller) == [(2, True, True, [(50, 1, 1)], [], 0)]


async def test_a_gap_in_trading_s_numbers_is_refused_so_the_feed_subscribes_again() -> None:
    feed = fanout()
    with pytest.raises(Exception, match="held update 0, got 2"):
        feed.dispatch(update("A", 2, [(97, 1, 1)]))


async def test_a_caller_that_went_away_is_dropped_from_the_fanout() -> None:
    feed = fanout()
    caller = feed.subscribe(["A"], 2)
    assert feed.caller_count == 1
    caller.end()
    assert feed.caller_count == 0
    assert await caller.get_all() is None
