"""StreamMarketData end to end: snapshots, then level changes and trade prints of the chosen books,
numbered without a gap; a client that applies them holds the book GetOrderBook shows, across a
SIGKILL of trading; refusals of wrong requests."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from decimal import Decimal

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    funded_account,
    invariants_hold,
    key,
    order,
    refused,
    setup_market,
)

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USD"
OTHER = "ETH-USD"
DEPTH = 2
# How long a test waits for the market data it expects before it fails.
WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gw = Gateway(channel, system.admin_key)
        setup_market(gw, SYMBOL, "BTC")
        setup_market(gw, OTHER, "ETH")
        yield gw


@pytest.fixture(scope="module")
def traders(gateway: Gateway) -> tuple[str, str]:
    _, buyer = funded_account(gateway, {"USD": "1000000"})
    _, seller = funded_account(gateway, {"BTC": "10", "ETH": "10"})
    return buyer, seller


class LocalBook:
    """What a client holds: each symbol's levels from its snapshot and updates, checked for gaps."""

    def __init__(self) -> None:
        self.bids: dict[str, dict[str, tuple[str, int]]] = {}
        self.asks: dict[str, dict[str, tuple[str, int]]] = {}
        self.sequence: dict[str, int] = {}
        self.trades: list[tuple[str, gateway_pb2.MarketTrade]] = []
        self.resyncs = 0

    def apply(self, update: gateway_pb2.MarketDataUpdate) -> None:
        symbol = update.symbol
        assert update.sequence == self.sequence.get(symbol, 0) + 1, f"gap in {symbol}'s messages"
        self.sequence[symbol] = update.sequence
        if update.snapshot:
            self.resyncs += update.resync
            self.bids[symbol], self.asks[symbol] = {}, {}
        else:
            assert not update.resync
        for levels, side in ((update.bids, self.bids[symbol]), (update.asks, self.asks[symbol])):
            for level in levels:
                if Decimal(level.quantity):
                    side[level.price] = (level.quantity, level.order_count)
                else:
                    side.pop(level.price, None)
        self.trades.extend((symbol, trade) for trade in update.trades)

    def view(self, symbol: str) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
        bids = sorted(self.bids[symbol].items(), key=lambda item: Decimal(item[0]), reverse=True)
        asks = sorted(self.asks[symbol].items(), key=lambda item: Decimal(item[0]))
        return [(p, q, c) for p, (q, c) in bids], [(p, q, c) for p, (q, c) in asks]


class Follower:
    """A StreamMarketData call read on a thread of its own into a LocalBook."""

    def __init__(self, gateway: Gateway, api_key: str, symbols: list[str], depth: int) -> None:
        self.book = LocalBook()
        self._updates: queue.Queue[gateway_pb2.MarketDataUpdate | BaseException] = queue.Queue()
        self._call = gateway.public.StreamMarketData(
            gateway_pb2.StreamMarketDataRequest(symbols=symbols, depth=depth), metadata=key(api_key)
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self._call:
                for update in response.updates:
                    self._updates.put(update)
        except BaseException as error:  # the call's end, or its failure: the test sees it
            self._updates.put(error)

    def until(self, done: object, what: str) -> None:
        """Apply updates until `done()` holds (failing after WAIT_SECONDS without it)."""
        check = done  # a callable
        while not check():  # type: ignore[operator]
            try:
                item = self._updates.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                raise AssertionError(f"no market data showed {what} within {WAIT_SECONDS} s") from None
            if isinstance(item, BaseException):
                raise AssertionError(f"the market data stream ended before {what}: {item!r}")
            self.book.apply(item)

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(5)


def public_book(gateway: Gateway, api_key: str, symbol: str) -> tuple[list[tuple[str, str, int]], ...]:
    book = gateway.public.GetOrderBook(
        gateway_pb2.GetOrderBookRequest(symbol=symbol, depth=DEPTH), metadata=key(api_key)
    )
    return (
        [(level.price, level.quantity, level.order_count) for level in book.bids],
        [(level.price, level.quantity, level.order_count) for level in book.asks],
    )


def test_snapshot_then_changes_and_trade_prints_keep_a_local_book_equal_to_the_real_one(
    gateway: Gateway, traders: tuple[str, str]
) -> None:
    buyer, seller = traders
    follower = Follower(gateway, buyer, [SYMBOL, OTHER], DEPTH)
    try:
        follower.until(lambda: set(follower.book.sequence) == {SYMBOL, OTHER}, "a snapshot of each symbol")
        assert follower.book.sequence == {SYMBOL: 1, OTHER: 1}
        assert follower.book.view(SYMBOL) == ([], [])

        place = gateway.public.SubmitOrder
        place(order(SYMBOL, SELL, "50000.00", "0.5000"), metadata=key(seller))
        place(order(SYMBOL, SELL, "50000.00", "0.2500"), metadata=key(seller))
        place(order(SYMBOL, SELL, "50010.00", "0.1000"), metadata=key(seller))
        place(order(SYMBOL, SELL, "50020.00", "0.3000"), metadata=key(seller))  # third level: beyond depth 2
        place(order(SYMBOL, BUY, "49990.00", "0.2000"), metadata=key(buyer))
        expected = (
            [("49990.00", "0.2000", 1)],
            [("50000.00", "0.7500", 2), ("50010.00", "0.1000", 1)],
        )
        follower.until(lambda: follower.book.view(SYMBOL) == expected, "the resting orders")
        assert public_book(gateway, buyer, SYMBOL) == expected

        # A buy that sweeps the best ask and part of the next: two prints at the makers' prices,
        # then the level beyond depth 2 comes into view.
        taken = place(order(SYMBOL, BUY, "50010.00", "0.8000"), metadata=key(buyer))
        assert taken.order.status == common_pb2.ORDER_STATUS_FILLED
        expected = ([("49990.00", "0.2000", 1)], [("50010.00", "0.0500", 1), ("50020.00", "0.3000", 1)])
        follower.until(lambda: follower.book.view(SYMBOL) == expected, "the book after the sweep")
        assert public_book(gateway, buyer, SYMBOL) == expected
        prints = [
            (t.price, t.quantity, t.aggressor_side) for symbol, t in follower.book.trades if symbol == SYMBOL
        ]
        assert prints == [
            ("50000.00", "0.5000", BUY),
            ("50000.00", "0.2500", BUY),
            ("50010.00", "0.0500", BUY),
        ]
        assert all(t.time.seconds > 0 and t.trade_id > 0 for _, t in follower.book.trades)
        # Nothing happened in the other book: it got no message after its snapshot.
        assert follower.book.sequence[OTHER] == 1 and follower.book.view(OTHER) == ([], [])
    finally:
        follower.close()


def test_after_trading_is_killed_a_follower_gets_a_resync_snapshot_of_the_same_book(
    gateway: Gateway, traders: tuple[str, str], system: System
) -> None:
    buyer, seller = traders
    gateway.public.SubmitOrder(order(OTHER, SELL, "3000.00", "1.0000"), metadata=key(seller))
    follower = Follower(gateway, buyer, [OTHER], DEPTH)
    try:
        # The order's answer and its market data travel on different streams: the snapshot may come
        # just before the update that shows it.
        before = ([], [("3000.00", "1.0000", 1)])
        follower.until(
            lambda: OTHER in follower.book.sequence and follower.book.view(OTHER) == before, "the order"
        )
        assert system.services.kill("trading") == -9
        system.services.start("trading")
        # The gateway subscribes again and hands every follower a fresh snapshot (numbered on).
        follower.until(lambda: follower.book.resyncs >= 1, "a resync snapshot after the restart")
        assert follower.book.view(OTHER) == before
        gateway.public.SubmitOrder(order(OTHER, SELL, "3001.00", "0.5000"), metadata=key(seller))
        expected = ([], [("3000.00", "1.0000", 1), ("3001.00", "0.5000", 1)])
        follower.until(lambda: follower.book.view(OTHER) == expected, "an order placed after the restart")
    finally:
        follower.close()
    invariants_hold(system.database_url, system.redis_url)


def test_wrong_requests_are_refused_naming_the_field_and_the_stream_serves_on(
    gateway: Gateway, traders: tuple[str, str]
) -> None:
    buyer, _ = traders
    md = key(buyer)

    def first(request: gateway_pb2.StreamMarketDataRequest, metadata: object = md) -> object:
        return next(iter(gateway.public.StreamMarketData(request, metadata=metadata)))

    cases = [
        (gateway_pb2.StreamMarketDataRequest(), grpc.StatusCode.INVALID_ARGUMENT, "REQUIRED", "symbols"),
        (
            gateway_pb2.StreamMarketDataRequest(symbols=[f"S{i}-USD" for i in range(101)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SYMBOL",
            "symbols",
        ),
        (
            gateway_pb2.StreamMarketDataRequest(symbols=[SYMBOL, SYMBOL]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SYMBOL",
            "symbols[1]",
        ),
        (
            gateway_pb2.StreamMarketDataRequest(symbols=[SYMBOL + "\n"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SYMBOL",
            "symbols[0]",
        ),
        (
            gateway_pb2.StreamMarketDataRequest(symbols=[SYMBOL], depth=51),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_DEPTH",
            "depth",
        ),
        (
            gateway_pb2.StreamMarketDataRequest(symbols=["ZZZ-USD"]),
            grpc.StatusCode.NOT_FOUND,
            "UNKNOWN_SYMBOL",
            "",
        ),
    ]
    for request, code, reason, field in cases:
        error = refused(lambda request=request: first(request))  # type: ignore[misc]
        assert (error.code, error.reason) == (code, reason), request
        assert field in [v.field for v in error.violations] if field else error.message
    error = refused(lambda: first(gateway_pb2.StreamMarketDataRequest(symbols=[SYMBOL]), metadata=()))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    # Depth 0 means the default, and the stream still serves.
    response = first(gateway_pb2.StreamMarketDataRequest(symbols=[SYMBOL]))
    (update,) = response.updates  # type: ignore[attr-defined]
    assert update.snapshot and update.sequence == 1 and update.symbol == SYMBOL
