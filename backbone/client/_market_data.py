"""Market data in the SDK: the local books a StreamMarketData subscriber keeps, with gap detection.

Both clients' market data streams (``client.market_data(...)``) feed every
message into :class:`LocalBooks`, which checks each symbol's message numbers
(1, 2, 3... on one stream), applies snapshots and changes to a Decimal book
per symbol, and hands back a :class:`MarketDataEvent` per message. A number
that skips means a message was lost: :class:`MarketDataGap` is raised, and
the stream opens a new call (whose first messages are snapshots) by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from backbone.gateway.v1 import gateway_pb2
from backbone.ids import MARKET_DATA_MAX_DEPTH, MAX_MARKET_DATA_SYMBOLS
from backbone.reasons import RejectReason

from ._errors import BackboneError
from ._models import _SIDES, OrderBook, PriceLevel, Side, _datetime, _decimal


@dataclass(frozen=True)
class MarketTrade:
    """One trade print: price, quantity and the side of the order that took liquidity."""

    symbol: str
    trade_id: int
    price: Decimal
    quantity: Decimal
    aggressor_side: Side
    time: datetime | None


@dataclass(frozen=True)
class MarketDataEvent:
    """One message of a symbol, applied: the book as it is now (top levels) and the new trades.

    ``snapshot`` is true when the book was replaced whole (the stream's first
    message of the symbol, or a ``resync`` after the stream fell behind or
    reconnected); ``sequence`` numbers the symbol's messages on the current
    call.
    """

    symbol: str
    sequence: int
    book: OrderBook
    trades: tuple[MarketTrade, ...]
    snapshot: bool
    resync: bool
    time: datetime | None


class MarketDataGap(Exception):
    """A symbol's message numbers skipped: a message was lost."""


def market_data_request(symbols: Sequence[str], depth: int) -> gateway_pb2.StreamMarketDataRequest:
    """The request, refused locally (as the gateway would) when plainly wrong."""
    if isinstance(symbols, str):
        raise BackboneError.invalid_argument(
            "symbols", RejectReason.INVALID_SYMBOL, "give a list of symbols, not one string"
        )
    if not symbols or len(symbols) > MAX_MARKET_DATA_SYMBOLS:
        raise BackboneError.invalid_argument(
            "symbols", RejectReason.INVALID_SYMBOL, f"name 1 to {MAX_MARKET_DATA_SYMBOLS} symbols"
        )
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MARKET_DATA_MAX_DEPTH:
        raise BackboneError.invalid_argument(
            "depth",
            RejectReason.INVALID_DEPTH,
            f"{depth!r} is not a number of levels from 1 to {MARKET_DATA_MAX_DEPTH}",
        )
    return gateway_pb2.StreamMarketDataRequest(symbols=list(symbols), depth=depth)


class _Book:
    __slots__ = ("asks", "bids", "sequence")

    def __init__(self) -> None:
        self.sequence = 0
        self.bids: dict[Decimal, tuple[Decimal, int]] = {}
        self.asks: dict[Decimal, tuple[Decimal, int]] = {}


class LocalBooks:
    """Each followed symbol's book, rebuilt from the messages of one call at a time."""

    def __init__(self) -> None:
        self._books: dict[str, _Book] = {}

    def new_call(self) -> None:
        """A new call starts: its messages are numbered from 1 again and begin with snapshots."""
        for book in self._books.values():
            book.sequence = 0

    def book(self, symbol: str) -> OrderBook | None:
        """The book of `symbol` as last applied (None before its first snapshot)."""
        book = self._books.get(symbol)
        return None if book is None else _order_book(symbol, book)

    def take(self, response: gateway_pb2.StreamMarketDataResponse) -> tuple[list[MarketDataEvent], bool]:
        """The events of a message's updates, and whether a gap stopped it (the events before the
        gap stand; the call must be opened again)."""
        events = []
        try:
            for update in response.updates:
                events.append(self.apply(update))
        except MarketDataGap:
            return events, True
        return events, False

    def apply(self, update: gateway_pb2.MarketDataUpdate) -> MarketDataEvent:
        """Apply one message; raises MarketDataGap when its number is not the next one."""
        symbol = update.symbol
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book()
        if update.sequence != book.sequence + 1 or (book.sequence == 0 and not update.snapshot):
            raise MarketDataGap(f"{symbol}: expected message {book.sequence + 1}, got {update.sequence}")
        book.sequence = update.sequence
        if update.snapshot:
            book.bids, book.asks = {}, {}
        for levels, side in ((update.bids, book.bids), (update.asks, book.asks)):
            for level in levels:
                quantity = _decimal(level.quantity)
                if quantity:
                    side[_decimal(level.price)] = (quantity, level.order_count)
                else:
                    side.pop(_decimal(level.price), None)
        return MarketDataEvent(
            symbol=symbol,
            sequence=update.sequence,
            book=_order_book(symbol, book),
            trades=tuple(
                MarketTrade(
                    symbol=symbol,
                    trade_id=trade.trade_id,
                    price=_decimal(trade.price),
                    quantity=_decimal(trade.quantity),
                    aggressor_side=_SIDES.get(trade.aggressor_side, Side.UNSPECIFIED),
                    time=_datetime(trade.time) if trade.HasField("time") else None,
                )
                for trade in update.trades
            ),
            snapshot=update.snapshot,
            resync=update.resync,
            time=_datetime(update.time) if update.HasField("time") else None,
        )


def _order_book(symbol: str, book: _Book) -> OrderBook:
    return OrderBook(
        symbol=symbol,
        bids=tuple(PriceLevel(p, *book.bids[p]) for p in sorted(book.bids, reverse=True)),
        asks=tuple(PriceLevel(p, *book.asks[p]) for p in sorted(book.asks)),
    )
