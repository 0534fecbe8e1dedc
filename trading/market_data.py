"""Market data from the books: each journaled batch's changed price levels and trade prints.

The engine loop calls :meth:`MarketDataFeed.capture` on the engine task right
after it applies a batch: for each book the batch touched (a record of the
batch names its symbol: new orders, trades, releases, instrument creations),
the book's top ``MARKET_DATA_MAX_DEPTH`` levels per side are compared with
those of the previous capture, and a ``BookUpdate`` lists the levels that
changed (quantity 0: gone from the top levels) and the batch's trades of that
book. The work is per batch and per touched book, never per order. Once the
batch is journaled the loop calls :meth:`publish`, which hands the updates to
every StreamMarketData subscriber (a bounded queue each, see
trading/execution_feed.py) and records them as the published state: a new
subscriber's snapshot is that state, taken in the same event-loop step as its
registration, so it neither misses an update nor shows one that is not
journaled yet (the capture runs ahead of the journal by at most one batch).

Each book's updates are numbered from 1 since this process started; a
snapshot carries the book's current number. The gateway (gateway/market_data.py)
holds one subscription and fans it out.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.ids import MARKET_DATA_MAX_DEPTH
from backbone.levels import Level, changed_levels
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2
from trading.book import BUY, SELL
from trading.engine import Engine
from trading.execution_feed import Feed, Subscription

log = structlog.get_logger("backbone.trading")

Levels = list[Level]

_MAKER_TO_AGGRESSOR = {common_pb2.SIDE_BUY: common_pb2.SIDE_SELL, common_pb2.SIDE_SELL: common_pb2.SIDE_BUY}


class _BookState:
    """A book's top levels as of an update, and that update's number."""

    __slots__ = ("asks", "bids", "sequence")

    def __init__(self, sequence: int, bids: Levels, asks: Levels) -> None:
        self.sequence = sequence
        self.bids = bids
        self.asks = asks


class Captured:
    """One batch's updates, waiting for the batch to be journaled."""

    __slots__ = ("states", "updates")

    def __init__(self) -> None:
        self.updates: list[trading_pb2.BookUpdate] = []
        self.states: list[tuple[str, _BookState]] = []


def _kinds_with_symbol() -> frozenset[str]:
    """The journal record kinds whose message names a book (a ``symbol`` field)."""
    record = trading_pb2.JournalRecord.DESCRIPTOR
    return frozenset(
        field.name
        for field in record.oneofs_by_name["record"].fields
        if field.message_type is not None and "symbol" in field.message_type.fields_by_name
    )


_BOOK_KINDS = _kinds_with_symbol()


def _levels(levels: Iterable[tuple[int, int, int]]) -> list[trading_pb2.PriceLevel]:
    return [
        trading_pb2.PriceLevel(price_ticks=price, quantity_lots=lots, order_count=count)
        for price, lots, count in levels
    ]


class MarketDataFeed:
    """Captures every batch's book changes on the engine task and publishes them once journaled."""

    def __init__(
        self, engine: Engine, *, depth: int = MARKET_DATA_MAX_DEPTH, max_queued_batches: int = 1024
    ) -> None:
        self._engine = engine
        self._depth = depth
        self._feed: Feed[trading_pb2.StreamMarketDataResponse] = Feed(
            max_queued_batches, "batches of market data"
        )
        self._captured: dict[str, _BookState] = {}  # as of the last applied batch
        self._published: dict[str, _BookState] = {}  # as of the last journaled batch

    @property
    def subscriber_count(self) -> int:
        return self._feed.subscriber_count

    def start(self) -> None:
        """Take every book as it is now (after the journal's replay) as update number 0."""
        self._captured = {symbol: self._state_of(symbol, 0) for symbol in self._engine.books}
        self._published = dict(self._captured)

    def _state_of(self, symbol: str, sequence: int) -> _BookState:
        book = self._engine.books[symbol]
        return _BookState(sequence, book.depth(BUY, self._depth), book.depth(SELL, self._depth))

    def capture(self, records: list[trading_pb2.JournalRecord], timestamp_ns: int) -> Captured:
        """The updates of the books `records` touched (on the engine task, after the batch)."""
        captured = Captured()
        touched: dict[str, None] = {}
        trades: dict[str, list[trading_pb2.TradePrint]] = {}
        for record in records:
            kind = record.WhichOneof("record")
            if kind == "trade":
                trade = record.trade
                trades.setdefault(trade.symbol, []).append(
                    trading_pb2.TradePrint(
                        trade_id=trade.trade_id,
                        price_ticks=trade.price_ticks,
                        quantity_lots=trade.quantity_lots,
                        aggressor_side=_MAKER_TO_AGGRESSOR.get(trade.maker_side, common_pb2.SIDE_UNSPECIFIED),
                        timestamp_ns=trade.timestamp_ns,
                    )
                )
                touched[trade.symbol] = None
            elif kind in _BOOK_KINDS:
                touched[getattr(record, kind).symbol] = None
        books = self._engine.books
        for symbol in touched:
            book = books.get(symbol)
            if book is None:
                continue
            bids = book.depth(BUY, self._depth)
            asks = book.depth(SELL, self._depth)
            before = self._captured.get(symbol)
            prints = trades.get(symbol, ())
            if before is None:  # a new book: its first update is a snapshot
                update = trading_pb2.BookUpdate(
                    symbol=symbol, sequence=1, snapshot=True, bids=_levels(bids), asks=_levels(asks)
                )
            else:
                changed_bids = _levels(changed_levels(before.bids, bids))
                changed_asks = _levels(changed_levels(before.asks, asks))
                if not (changed_bids or changed_asks or prints):
                    continue
                update = trading_pb2.BookUpdate(
                    symbol=symbol, sequence=before.sequence + 1, bids=changed_bids, asks=changed_asks
                )
            update.trades.extend(prints)
            update.timestamp_ns = timestamp_ns
            state = _BookState(update.sequence, bids, asks)
            self._captured[symbol] = state
            captured.updates.append(update)
            captured.states.append((symbol, state))
        return captured

    def publish(self, captured: Captured) -> None:
        """The batch of `captured` is journaled: its updates go out and become the published state."""
        if not captured.updates:
            return
        for symbol, state in captured.states:
            self._published[symbol] = state
        if self._feed.subscriber_count:
            self._feed.deliver(trading_pb2.StreamMarketDataResponse(updates=captured.updates))

    def recapture(self, why: str) -> None:
        """A capture failed (a bug): end every subscriber and take the books as they are now.

        The subscribers resubscribe and get snapshots of the new state; matching goes on.
        """
        log.error("market data recaptured from the books; subscribers must resubscribe", why=why)
        self.close(
            ServiceError(
                grpc.StatusCode.UNAVAILABLE,
                RejectReason.MARKET_DATA_INTERRUPTED,
                "market data was interrupted; subscribe again for fresh snapshots",
            )
        )
        self._captured = {
            symbol: self._state_of(symbol, state.sequence + 1) for symbol, state in self._captured.items()
        }
        for symbol in self._engine.books:
            if symbol not in self._captured:
                self._captured[symbol] = self._state_of(symbol, 1)
        self._published = dict(self._captured)

    def subscribe(
        self,
    ) -> tuple[trading_pb2.StreamMarketDataResponse, Subscription[trading_pb2.StreamMarketDataResponse]]:
        """A snapshot of every book as journaled, and the subscription to every later update."""
        snapshot = trading_pb2.StreamMarketDataResponse(
            updates=[
                trading_pb2.BookUpdate(
                    symbol=symbol,
                    sequence=state.sequence,
                    snapshot=True,
                    bids=_levels(state.bids),
                    asks=_levels(state.asks),
                )
                for symbol, state in sorted(self._published.items())
            ]
        )
        return snapshot, self._feed.subscribe()

    def unsubscribe(self, subscription: Subscription[trading_pb2.StreamMarketDataResponse]) -> None:
        self._feed.unsubscribe(subscription)

    def close(self, error: ServiceError | None = None) -> None:
        """End every subscription (UNAVAILABLE, SERVICE_STOPPING unless `error` says otherwise)."""
        self._feed.close(error)
