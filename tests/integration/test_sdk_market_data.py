"""The SDK's market data streams against a running system, blocking and async: local books equal to
GetOrderBook, trade prints as Decimals, a lost message detected and healed with fresh snapshots,
and refusals raised where the stream is opened."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import grpc
import pytest

from backbone.client import (
    AsyncClient,
    AsyncMarketDataStream,
    BackboneError,
    Client,
    MarketDataEvent,
    MarketDataStream,
    OrderBook,
    Side,
)
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from tests.conftest import System

pytestmark = pytest.mark.integration

SYMBOL = "SOL-EUR"


Clients = tuple[Client, Client, Client, str]  # admin, buyer, seller, the seller's API key


@pytest.fixture(scope="module")
def clients(system: System) -> Clients:
    admin = Client.connect(system.gateway, admin_key=system.admin_key)
    admin.create_asset("SOL", 6)
    admin.create_asset("EUR", 4)
    admin.create_instrument(
        SYMBOL, "SOL", "EUR", tick_size=Decimal("0.01"), lot_size=Decimal("0.1"),
        max_quantity=Decimal("10000"), max_price=Decimal("10000"), maker_fee_bps=0, taker_fee_bps=10,
    )  # fmt: skip
    keys = []
    for deposits in ({"EUR": Decimal("100000")}, {"SOL": Decimal("1000")}):
        account = admin.create_account()
        for asset, amount in deposits.items():
            admin.deposit(account.account_id, asset, amount)
        keys.append(account.api_key)
    buyer, seller = (Client.connect(system.gateway, api_key=api_key) for api_key in keys)
    return admin, buyer, seller, keys[1]


def until(events: MarketDataStream, done: Callable[[MarketDataEvent], bool]) -> MarketDataEvent:
    for event in events:
        if done(event):
            return event
    raise AssertionError("the stream ended")


def levels(book: OrderBook) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    return [(lv.price, lv.quantity) for lv in book.bids], [(lv.price, lv.quantity) for lv in book.asks]


def test_a_blocking_follower_keeps_the_real_book_and_heals_a_lost_message(
    clients: Clients,
) -> None:
    _, buyer, seller, _ = clients
    with buyer.market_data([SYMBOL], depth=3) as events:
        first = next(events)
        assert first.snapshot and first.sequence == 1 and not first.resync
        seller.submit_order(SYMBOL, "sell", Decimal("150.00"), Decimal("2.0"))
        seller.submit_order(SYMBOL, "sell", Decimal("151.00"), Decimal("1.0"))
        want = ([], [(Decimal("150.00"), Decimal("2.0")), (Decimal("151.00"), Decimal("1.0"))])
        until(events, lambda e: levels(e.book) == want)
        assert levels(buyer.get_order_book(SYMBOL, 3)) == want

        buyer.submit_order(SYMBOL, "buy", Decimal("150.00"), Decimal("0.5"))
        event = until(events, lambda e: bool(e.trades))
        (trade,) = event.trades
        assert (trade.price, trade.quantity, trade.aggressor_side) == (
            Decimal("150.00"),
            Decimal("0.5"),
            Side.BUY,
        )
        assert trade.time is not None and trade.trade_id > 0

        # Lose the next message on purpose: the follower sees the gap, opens a new call and
        # holds the real book again from its snapshot.
        receive = events._receive
        dropped: list[object] = []

        def lossy() -> gateway_pb2.StreamMarketDataResponse:
            response = receive()
            if not dropped:
                dropped.append(response)
                return receive()
            return response

        events._receive = lossy  # type: ignore[method-assign]
        seller.submit_order(SYMBOL, "sell", Decimal("152.00"), Decimal("3.0"))  # its message is lost
        seller.submit_order(SYMBOL, "sell", Decimal("150.50"), Decimal("4.0"))  # the next one shows the gap
        want = (
            [],
            [
                (Decimal("150.00"), Decimal("1.5")),
                (Decimal("150.50"), Decimal("4.0")),
                (Decimal("151.00"), Decimal("1.0")),
            ],
        )
        until(events, lambda e: levels(e.book) == want)
        assert dropped and events.gaps == 1 and events.reconnects == 1
        book = events.book(SYMBOL)
        assert book is not None and levels(book) == levels(buyer.get_order_book(SYMBOL, 3)) == want


def test_an_async_follower_gets_snapshots_then_changes(system: System, clients: Clients) -> None:
    _, _, _, seller_key = clients

    async def scenario() -> None:
        client = await AsyncClient.connect(system.gateway, api_key=seller_key)
        async with client, client.market_data([SYMBOL], depth=1) as events:
            assert isinstance(events, AsyncMarketDataStream)
            first = await anext(events)
            assert first.snapshot and len(first.book.asks) == 1
            best = first.book.asks[0].price
            await client.submit_order(SYMBOL, "sell", best - Decimal("0.01"), Decimal("0.1"))
            async for event in events:
                if event.book.asks and event.book.asks[0].price == best - Decimal("0.01"):
                    break

    asyncio.run(scenario())


def test_refusals_are_raised_when_the_stream_is_opened(clients: Clients) -> None:
    _, buyer, _, _ = clients
    with pytest.raises(BackboneError) as refused:
        buyer.market_data(["NOPE-EUR"])
    assert (refused.value.code, refused.value.reason) == (
        grpc.StatusCode.NOT_FOUND,
        RejectReason.UNKNOWN_SYMBOL,
    )
    with pytest.raises(BackboneError) as refused:
        buyer.market_data([SYMBOL], depth=51)
    assert refused.value.reason == RejectReason.INVALID_DEPTH
    with pytest.raises(BackboneError) as refused:
        buyer.market_data(SYMBOL)
    assert refused.value.reason == RejectReason.INVALID_SYMBOL
