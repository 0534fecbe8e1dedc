"""One StreamMarketData stream from trading, fanned out to the public StreamMarketData callers.

The gateway holds a single subscription to trading's market data (every book's
top ``MARKET_DATA_MAX_DEPTH`` levels, see trading/market_data.py) and keeps
each book as trading published it. A caller follows chosen symbols at a depth
of its own: for every trading update of such a symbol the caller's top
``depth`` levels are compared with what it was last sent, and only a change
(or a trade) becomes a message. Messages are numbered per symbol and per
stream without a gap, so a client that numbers them can tell it lost one.

Slow callers never slow anyone: each has a bounded queue, and one that
overflows loses what waited and gets fresh snapshots (marked ``resync``) in
its place, so its memory stays bounded and it converges to the live book. The
queue holds scaled integers; each caller's own task turns them into decimal
strings when it sends them. When the subscription to trading breaks it
reconnects with backoff (:mod:`backbone.runtime.reconnect`); its first
message is a snapshot of every book, which every caller of a symbol gets as a
``resync`` snapshot (trading's books survive its restarts: replay rebuilds
them, so the book a caller held meanwhile was the journaled one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.levels import Level, changed_levels
from backbone.money import InstrumentMath
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, not_found
from backbone.runtime.reconnect import Attempt, Reconnector, describe_break
from backbone.trading.v1 import trading_pb2
from gateway.caller_queue import CallerQueue, wait_set
from gateway.fanout import run_upstreams, upstreams
from gateway.instruments import InstrumentCache
from gateway.validation import validate_market_data_request
from gateway.views import timestamp_of

log = structlog.get_logger("backbone.gateway")

OpenSubscription = Callable[[], Any]  # returns a grpc.aio.UnaryStreamCall

# How long a new caller waits for the feed from trading before it is refused.
FEED_WAIT_SECONDS = 2.0
# Messages waiting for one caller before it is resynchronised instead.
MAX_QUEUED_PER_CALLER = 2048


class _Book:
    """One book as trading last published it: price -> (lots, count) per side, and its number."""

    __slots__ = ("asks", "bids", "sequence", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.sequence = 0
        self.bids: dict[int, tuple[int, int]] = {}
        self.asks: dict[int, tuple[int, int]] = {}

    def replace(self, update: trading_pb2.BookUpdate) -> None:
        self.bids = {level.price_ticks: (level.quantity_lots, level.order_count) for level in update.bids}
        self.asks = {level.price_ticks: (level.quantity_lots, level.order_count) for level in update.asks}
        self.sequence = update.sequence

    def apply(self, update: trading_pb2.BookUpdate) -> None:
        for levels, side in ((update.bids, self.bids), (update.asks, self.asks)):
            for level in levels:
                if level.quantity_lots:
                    side[level.price_ticks] = (level.quantity_lots, level.order_count)
                else:
                    side.pop(level.price_ticks, None)
        self.sequence = update.sequence

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """The best `depth` levels per side: bids highest first, asks lowest first."""
        bids = sorted(self.bids, reverse=True)[:depth]
        asks = sorted(self.asks)[:depth]
        return (
            [(price, *self.bids[price]) for price in bids],
            [(price, *self.asks[price]) for price in asks],
        )


class _Message:
    """One message for one caller, in scaled integers (made public by the caller's own task)."""

    __slots__ = ("asks", "bids", "resync", "sequence", "snapshot", "symbol", "timestamp_ns", "trades")

    def __init__(
        self,
        symbol: str,
        sequence: int,
        bids: list[Level],
        asks: list[Level],
        *,
        snapshot: bool = False,
        resync: bool = False,
        trades: Sequence[trading_pb2.TradePrint] = (),
        timestamp_ns: int = 0,
    ) -> None:
        self.symbol = symbol
        self.sequence = sequence
        self.bids = bids
        self.asks = asks
        self.snapshot = snapshot
        self.resync = resync
        self.trades = trades
        self.timestamp_ns = timestamp_ns


class MarketDataSubscription(CallerQueue[_Message]):
    """One caller: its symbols, its depth, what it was last sent and its bounded queue."""

    def __init__(self, fanout: MarketDataFanout, symbols: Sequence[str], depth: int, max_queued: int) -> None:
        super().__init__()
        self.symbols = tuple(symbols)
        self.depth = depth
        self.resyncs = 0
        self._fanout = fanout
        self._max_queued = max_queued
        self._sent: dict[str, tuple[list[Level], list[Level]]] = {}
        self._numbers = dict.fromkeys(self.symbols, 0)

    def snapshot(self, book: _Book, *, resync: bool, timestamp_ns: int = 0) -> None:
        """Queue the whole top of `book` (replacing what the caller holds)."""
        bids, asks = self._sent[book.symbol] = book.top(self.depth)
        self._push(
            _Message(
                book.symbol,
                self._next_number(book.symbol),
                bids,
                asks,
                snapshot=True,
                resync=resync,
                timestamp_ns=timestamp_ns,
            )
        )

    def update(
        self,
        book: _Book,
        tops: dict[int, tuple[list[Level], list[Level]]],
        trades: Sequence[trading_pb2.TradePrint],
        timestamp_ns: int,
    ) -> None:
        """`book` changed: queue what changed in this caller's top levels, and the trades."""
        top = tops.get(self.depth)
        if top is None:
            top = tops[self.depth] = book.top(self.depth)
        before = self._sent.get(book.symbol)
        if before is None:  # not sent a snapshot yet (cannot happen once subscribed): send one
            self.snapshot(book, resync=False, timestamp_ns=timestamp_ns)
            return
        bids = changed_levels(before[0], top[0])
        asks = changed_levels(before[1], top[1])
        if not (bids or asks or trades):
            return
        self._sent[book.symbol] = top
        if len(self._items) >= self._max_queued:
            self._resync()
            return
        self._push(
            _Message(
                book.symbol,
                self._next_number(book.symbol),
                bids,
                asks,
                trades=trades,
                timestamp_ns=timestamp_ns,
            )
        )

    def _resync(self) -> None:
        """The caller fell behind: drop what waits and queue fresh snapshots of its symbols."""
        self._items.clear()
        self.resyncs += 1
        log.info("market data caller resynchronised", symbols=len(self.symbols), resyncs=self.resyncs)
        for symbol in self.symbols:
            book = self._fanout.book(symbol)
            if book is not None:
                self.snapshot(book, resync=True)

    def _next_number(self, symbol: str) -> int:
        number = self._numbers[symbol] + 1
        self._numbers[symbol] = number
        return number

    def close(self) -> None:
        self._fanout.unsubscribe(self)


class MarketDataFanout:
    """Reads trading's market data and hands each book's changes to the callers of its symbol."""

    def __init__(
        self,
        open_subscription: OpenSubscription | Sequence[OpenSubscription],
        *,
        max_queued_per_caller: int = MAX_QUEUED_PER_CALLER,
        reconnector: Reconnector | None = None,
    ) -> None:
        # One upstream per trading shard (each owns its books), each reconnecting on its own; the
        # feed counts as connected while any one is (a book of a shard not connected yet is not
        # there, and a caller of it is refused as for an unknown book).
        self._opens = upstreams(open_subscription)
        first = reconnector or Reconnector()
        self._reconnectors = [first] + [Reconnector(first.policy) for _ in self._opens[1:]]
        self._live: set[int] = set()
        # Which upstream each book comes from, and the books of an upstream that broke (stale until
        # its next subscription's snapshot): a new caller of a stale book is refused, not misled.
        self._source: dict[str, int] = {}
        self._stale: set[str] = set()
        self._max_queued = max_queued_per_caller
        self._books: dict[str, _Book] = {}
        self._callers: dict[str, set[MarketDataSubscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    @property
    def caller_count(self) -> int:
        return len({caller for callers in self._callers.values() for caller in callers})

    def book(self, symbol: str) -> _Book | None:
        """The book as its shard last published it; None when there is none or it is stale."""
        return None if symbol in self._stale else self._books.get(symbol)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gateway-market-data-fanout")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        error = ServiceError(
            grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING, "the gateway is shutting down"
        )
        for callers in list(self._callers.values()):
            for caller in list(callers):
                caller.fail(error)
        self._callers.clear()

    async def wait_connected(self, timeout_seconds: float) -> bool:
        """Wait (bounded) until the books have come from trading."""
        return await wait_set(self.connected, timeout_seconds)

    def subscribe(self, symbols: Sequence[str], depth: int) -> MarketDataSubscription:
        """A caller of `symbols` (each a book trading published) at `depth`; its snapshots queued."""
        caller = MarketDataSubscription(self, symbols, depth, self._max_queued)
        for symbol in caller.symbols:
            self._callers.setdefault(symbol, set()).add(caller)
            caller.snapshot(self._books[symbol], resync=False)
        return caller

    def unsubscribe(self, caller: MarketDataSubscription) -> None:
        for symbol in caller.symbols:
            callers = self._callers.get(symbol)
            if callers is not None:
                callers.discard(caller)
                if not callers:
                    del self._callers[symbol]

    def dispatch(self, response: trading_pb2.StreamMarketDataResponse, upstream: int = 0) -> None:
        """Apply one message from trading (from upstream number `upstream`) to the books and hand
        each change to its callers."""
        for update in response.updates:
            symbol = update.symbol
            book = self._books.get(symbol)
            if update.snapshot or book is None:
                if book is None:
                    book = self._books[symbol] = _Book(symbol)
                book.replace(update)
                self._source[symbol] = upstream
                self._stale.discard(symbol)
                for caller in tuple(self._callers.get(symbol, ())):
                    caller.snapshot(book, resync=True, timestamp_ns=update.timestamp_ns)
                continue
            if update.sequence != book.sequence + 1:
                raise _Gap(symbol, book.sequence, update.sequence)
            book.apply(update)
            callers = self._callers.get(symbol)
            if callers:
                tops: dict[int, tuple[list[Level], list[Level]]] = {}
                for caller in tuple(callers):
                    caller.update(book, tops, update.trades, update.timestamp_ns)

    async def _run(self) -> None:
        await run_upstreams(
            self._reconnectors, self._subscribe_once, "market data subscription broken, reconnecting"
        )

    async def _subscribe_once(self, index: int, attempt: Attempt) -> str:
        """One subscription: apply and dispatch until it ends (the next one starts with snapshots)."""
        call = self._opens[index]()
        try:
            async for response in call:
                self.dispatch(response, index)
                if index not in self._live:
                    self._live.add(index)
                    self.connected.set()
                    attempt.established()
            why = "closed by trading"
        except asyncio.CancelledError:
            call.cancel()
            raise
        except _Gap as gap:
            log.error("market data from trading skipped an update; subscribing again", gap=str(gap))
            why = str(gap)
        except Exception as error:  # any failure: reconnect
            why = describe_break(error)
        call.cancel()
        self._live.discard(index)
        self._stale.update(symbol for symbol, source in self._source.items() if source == index)
        if not self._live:
            self.connected.clear()
        return why


class _Gap(Exception):
    def __init__(self, symbol: str, held: int, got: int) -> None:
        super().__init__(f"{symbol}: held update {held}, got {got}")


async def stream_market_data(
    fanout: MarketDataFanout,
    instruments: InstrumentCache,
    request: gateway_pb2.StreamMarketDataRequest,
    context: Any,
) -> AsyncIterator[gateway_pb2.StreamMarketDataResponse]:
    """The public StreamMarketData: snapshots of the chosen books, then their changes."""
    symbols, depth = validate_market_data_request(request)
    maths: dict[str, InstrumentMath] = {}
    for symbol in symbols:
        instrument = await instruments.get(symbol)
        if instrument is None:
            raise not_found(RejectReason.UNKNOWN_SYMBOL, f"there is no instrument {symbol!r}", symbol=symbol)
        maths[symbol] = InstrumentMath.of(instrument)
    if not await fanout.wait_connected(FEED_WAIT_SECONDS) or any(fanout.book(s) is None for s in symbols):
        raise ServiceError(
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.MARKET_DATA_INTERRUPTED,
            "market data from the matching engine is not available right now; retry shortly",
        )
    # grpc.aio runs each step of a streaming handler in a task of its own and does not cancel
    # it when the caller goes away: cancel the waiting step ourselves.
    waiting: list[asyncio.Task[Any] | None] = [None]

    def caller_gone(_: object) -> None:
        caller.end()
        task = waiting[0]
        if task is not None and not task.done():
            task.cancel()

    caller = fanout.subscribe(symbols, depth)
    try:
        context.add_done_callback(caller_gone)
        while True:
            waiting[0] = asyncio.current_task()
            messages = await caller.get_all()
            waiting[0] = None
            if messages is None:
                return
            yield gateway_pb2.StreamMarketDataResponse(
                updates=[_public(m, maths[m.symbol]) for m in messages]
            )
    finally:
        caller.close()


def _public(message: _Message, math: InstrumentMath) -> gateway_pb2.MarketDataUpdate:
    def levels(items: list[Level]) -> list[gateway_pb2.PriceLevel]:
        return [
            gateway_pb2.PriceLevel(
                price=math.price_text(price), quantity=math.quantity_text(lots), order_count=count
            )
            for price, lots, count in items
        ]

    return gateway_pb2.MarketDataUpdate(
        symbol=message.symbol,
        sequence=message.sequence,
        snapshot=message.snapshot,
        resync=message.resync,
        bids=levels(message.bids),
        asks=levels(message.asks),
        trades=[
            gateway_pb2.MarketTrade(
                trade_id=trade.trade_id,
                price=math.price_text(trade.price_ticks),
                quantity=math.quantity_text(trade.quantity_lots),
                aggressor_side=trade.aggressor_side or common_pb2.SIDE_UNSPECIFIED,
                time=timestamp_of(trade.timestamp_ns),
            )
            for trade in message.trades
        ],
        time=timestamp_of(message.timestamp_ns),
    )
