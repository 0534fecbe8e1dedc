"""ListOrders and ListFills on a running system: a client that reconnects rebuilds its state from them.

Pagination walks every open order and every fill exactly once, in a stable order; another
account's orders and fills never appear; the filters (symbol, time range, trade id range)
select what they say; a page token only works for the query that returned it. Orders are
rendered exactly as GetOrder renders them, fills as the execution reports described them.
The fills projection equals what the journal holds, row for row: after trading is killed with
SIGKILL and restarted mid-flow (nothing lost or doubled), and on a journal written before the
projection existed (the first start projects its history).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from backbone.client import AsyncClient, Client, LiquiditySide, Side
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    funded_account,
    key,
    order,
    refused,
    setup_market,
    wait_for,
)
from tests.integration.order_flow import OrderFlow
from trading import audit as journal_audit
from trading import fills

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
TRADE = common_pb2.EXECUTION_TYPE_TRADE


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gw = Gateway(channel, system.admin_key)
        setup_market(gw, "ETH-USD", "ETH")
        setup_market(gw, "SOL-USD", "SOL")
        setup_market(gw, "BTC-USD", "BTC")  # the market OrderFlow trades
        yield gw


def list_orders(gw: Gateway, api_key: str, **fields: object) -> gateway_pb2.ListOrdersResponse:
    return gw.public.ListOrders(gateway_pb2.ListOrdersRequest(**fields), metadata=key(api_key))  # type: ignore[arg-type]


def list_fills(gw: Gateway, api_key: str, **fields: object) -> gateway_pb2.ListFillsResponse:
    return gw.public.ListFills(gateway_pb2.ListFillsRequest(**fields), metadata=key(api_key))  # type: ignore[arg-type]


def walk(call: Any, request: Any, items: str, api_key: str, page_size: int, **fields: object) -> list[Any]:
    """Every item of every page of a list call (ListOrders or ListFills), in order; each page but
    the last is full."""
    walked: list[Any] = []
    token = ""
    while True:
        page = call(request(page_size=page_size, page_token=token, **fields), metadata=key(api_key))
        listed = getattr(page, items)
        walked += listed
        if not page.next_page_token:
            return walked
        assert len(listed) == page_size
        token = page.next_page_token


def walk_orders(gw: Gateway, api_key: str, page_size: int, **fields: object) -> list[gateway_pb2.Order]:
    return walk(gw.public.ListOrders, gateway_pb2.ListOrdersRequest, "orders", api_key, page_size, **fields)


def walk_fills(gw: Gateway, api_key: str, page_size: int, **fields: object) -> list[gateway_pb2.Fill]:
    return walk(gw.public.ListFills, gateway_pb2.ListFillsRequest, "fills", api_key, page_size, **fields)


def submit(
    gw: Gateway, api_key: str, request: gateway_pb2.SubmitOrderRequest
) -> gateway_pb2.SubmitOrderResponse:
    return gw.public.SubmitOrder(request, metadata=key(api_key))


def stamp(nanoseconds: int) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromNanoseconds(nanoseconds)
    return result


def nanos(value: timestamp_pb2.Timestamp) -> int:
    return value.ToNanoseconds()


# --- ListOrders ---------------------------------------------------------------------------------


def test_list_orders_walks_every_open_order_of_the_caller_once(gateway: Gateway) -> None:
    alice_id, alice = funded_account(gateway, {"USD": "100000", "ETH": "100", "SOL": "100"})
    bob_id, bob = funded_account(gateway, {"USD": "100000", "ETH": "100", "SOL": "100"})
    placed: list[str] = []
    for index in range(23):  # resting buys far below the market, two symbols
        symbol = "ETH-USD" if index % 3 else "SOL-USD"
        placed.append(submit(gateway, alice, order(symbol, BUY, f"{10 + index}.00", "0.5")).order.order_id)
    bobs = [submit(gateway, bob, order("ETH-USD", BUY, "5.00", "0.1")).order.order_id for _ in range(4)]
    # Some of alice's orders close: three cancelled, one filled by bob, one half filled.
    for order_id in placed[1:4]:
        gateway.public.CancelOrder(gateway_pb2.CancelOrderRequest(order_id=order_id), metadata=key(alice))
    submit(gateway, bob, order("ETH-USD", SELL, "32.00", "0.5"))  # fills alice's 32.00 buy (index 22)
    submit(gateway, bob, order("ETH-USD", SELL, "30.00", "0.25"))  # half of alice's 30.00 (index 20)
    open_ids = [order_id for index, order_id in enumerate(placed) if index not in (1, 2, 3, 22)]

    listed = walk_orders(gateway, alice, page_size=4)
    assert [o.order_id for o in listed] == open_ids  # each once, oldest first (the placing order)
    keys = [(nanos(o.created_at), o.order_id) for o in listed]
    assert keys == sorted(keys)
    # Rendered exactly as GetOrder renders them (decimal strings), the half-filled one included.
    for listed_order in listed:
        got = gateway.public.GetOrder(
            gateway_pb2.GetOrderRequest(order_id=listed_order.order_id), metadata=key(alice)
        )
        assert listed_order == got.order
    half = next(o for o in listed if o.order_id == placed[20])
    assert Decimal(half.filled_quantity) == Decimal(half.leaves_quantity) == Decimal("0.25")
    assert {o.account_id for o in listed} == {alice_id}

    # The default page holds them all; the symbol filter keeps its symbol.
    whole = list_orders(gateway, alice)
    assert [o.order_id for o in whole.orders] == open_ids and not whole.next_page_token
    sol = walk_orders(gateway, alice, page_size=2, symbol="SOL-USD")
    assert [o.order_id for o in sol] == [
        order_id for index, order_id in enumerate(placed) if order_id in open_ids and index % 3 == 0
    ]
    # Another account sees only its own; its account id with alice's key is refused.
    assert [o.order_id for o in walk_orders(gateway, bob, page_size=3)] == bobs
    denied = refused(lambda: list_orders(gateway, alice, account_id=bob_id))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    # An account with no open order gets an empty page.
    _, carol = funded_account(gateway, {"USD": "1"})
    assert list_orders(gateway, carol) == gateway_pb2.ListOrdersResponse()


def test_an_order_token_works_only_for_the_query_that_returned_it(gateway: Gateway) -> None:
    _, alice = funded_account(gateway, {"USD": "100000"})
    _, bob = funded_account(gateway, {"USD": "100000"})
    for api_key in (alice, bob):
        for index in range(3):
            submit(gateway, api_key, order("ETH-USD", BUY, f"{20 + index}.00", "0.1"))
    token = list_orders(gateway, alice, page_size=1).next_page_token
    assert token
    # The same token, another page size: fine. Another filter, another account, the other list: refused.
    assert len(list_orders(gateway, alice, page_size=2, page_token=token).orders) == 2
    for call in (
        lambda: list_orders(gateway, alice, page_token=token, symbol="ETH-USD"),
        lambda: list_orders(gateway, bob, page_token=token),
        lambda: list_fills(gateway, alice, page_token=token),
        lambda: list_orders(gateway, alice, page_token=token[:-2] + ("AA" if token[-2:] != "AA" else "BB")),
        lambda: list_orders(gateway, alice, page_token=token + "A"),
    ):
        error = refused(call)
        assert (error.code, error.reason) == (INVALID, RejectReason.INVALID_PAGE_TOKEN), error
        assert [v.field for v in error.violations] == ["page_token"]


def test_orders_placed_or_closed_between_pages_are_neither_doubled_nor_skipped(gateway: Gateway) -> None:
    _, alice = funded_account(gateway, {"USD": "100000"})
    first = [submit(gateway, alice, order("ETH-USD", BUY, "40.00", "0.1")).order.order_id for _ in range(4)]
    page = list_orders(gateway, alice, page_size=2)
    assert [o.order_id for o in page.orders] == first[:2]
    # Meanwhile: one listed and one not yet listed order close, a new one comes.
    for order_id in (first[0], first[2]):
        gateway.public.CancelOrder(gateway_pb2.CancelOrderRequest(order_id=order_id), metadata=key(alice))
    later = submit(gateway, alice, order("ETH-USD", BUY, "40.00", "0.1")).order.order_id
    rest = list_orders(gateway, alice, page_size=10, page_token=page.next_page_token)
    assert [o.order_id for o in rest.orders] == [first[3], later]


# --- ListFills ----------------------------------------------------------------------------------


def test_list_fills_walks_every_fill_of_the_caller_once_as_reported(gateway: Gateway) -> None:
    maker_id, maker = funded_account(gateway, {"USD": "100000", "ETH": "100", "SOL": "100"})
    taker_id, taker = funded_account(gateway, {"USD": "100000", "ETH": "100", "SOL": "100"})
    taker_reports: list[gateway_pb2.ExecutionReport] = []
    for index in range(6):
        symbol = "SOL-USD" if index == 4 else "ETH-USD"
        price = f"{50 + index}.00"
        maker_order = submit(gateway, maker, order(symbol, SELL, price, "0.3"))
        # Two trades per taker order at times: 0.2 then 0.1 of the same resting sell.
        for quantity in ("0.2", "0.1"):
            answer = submit(gateway, taker, order(symbol, BUY, price, quantity))
            taker_reports += [
                r for r in answer.reports if r.execution_type == common_pb2.EXECUTION_TYPE_TRADE
            ]
        assert maker_order.order.status == common_pb2.ORDER_STATUS_NEW
    # A trade between two orders of the same account is two fills of it: the buy, then the sell.
    submit(gateway, maker, order("ETH-USD", SELL, "60.00", "0.1"))
    self_trade = submit(gateway, maker, order("ETH-USD", BUY, "60.00", "0.1"))
    self_trade_id = next(r.trade_id for r in self_trade.reports if r.trade_id)
    assert len(taker_reports) == 12

    # Read your writes: the answer covers the last trade reported (the gateway waits for it).
    first = list_fills(gateway, taker, page_size=1)
    assert first.trading_sequence >= max(r.trading_sequence for r in taker_reports)

    fills = walk_fills(gateway, taker, page_size=5)
    assert [(f.trade_id, f.order_id) for f in fills] == [
        (r.trade_id, r.order.order_id) for r in taker_reports
    ]
    for fill, report in zip(fills, taker_reports, strict=True):
        assert fill.client_order_id == report.order.client_order_id
        assert fill.account_id == taker_id and fill.symbol == report.order.symbol
        assert fill.side == common_pb2.SIDE_BUY
        assert (fill.price, fill.quantity, fill.fee, fill.fee_asset) == (
            report.last_price,
            report.last_quantity,
            report.last_fee,
            report.fee_asset,
        )
        assert fill.liquidity_side == report.liquidity_side == common_pb2.LIQUIDITY_SIDE_TAKER
        assert fill.timestamp == report.timestamp
        assert 0 < fill.trading_sequence <= report.trading_sequence  # a report carries its command's last
    # The maker's side of the same trades (maker fee, 10 bps), then its self-trade as two fills.
    maker_fills = walk_fills(gateway, maker, page_size=4)
    assert [f.trade_id for f in maker_fills] == [r.trade_id for r in taker_reports] + [self_trade_id] * 2
    assert [f.side for f in maker_fills[-2:]] == [common_pb2.SIDE_BUY, common_pb2.SIDE_SELL]
    for fill in maker_fills[:-2]:
        assert fill.account_id == maker_id and fill.side == common_pb2.SIDE_SELL
        assert fill.liquidity_side == common_pb2.LIQUIDITY_SIDE_MAKER
        assert Decimal(fill.fee) == (Decimal(fill.price) * Decimal(fill.quantity) / 1000).quantize(
            Decimal("0.000001")
        )

    # Filters: symbol; trade ids [start, end); times [start, end).
    sol = walk_fills(gateway, taker, page_size=1, symbol="SOL-USD")
    assert [f.trade_id for f in sol] == [f.trade_id for f in fills if f.symbol == "SOL-USD"] and len(sol) == 2
    ids = [int(f.trade_id) for f in fills]
    ranged = walk_fills(gateway, taker, page_size=2, start_trade_id=str(ids[3]), end_trade_id=str(ids[8]))
    assert [int(f.trade_id) for f in ranged] == ids[3:8]
    tail = walk_fills(gateway, taker, page_size=3, start_trade_id=str(ids[9]))
    assert [int(f.trade_id) for f in tail] == ids[9:]
    times = [nanos(f.timestamp) for f in fills]
    start, end = times[2], times[9]
    timed = walk_fills(gateway, taker, page_size=2, start_time=stamp(start), end_time=stamp(end))
    assert [f.trade_id for f in timed] == [
        f.trade_id for f, t in zip(fills, times, strict=True) if start <= t < end
    ]
    assert timed and len(timed) < len(fills)
    both = walk_fills(
        gateway, taker, page_size=2, symbol="ETH-USD", start_time=stamp(start), end_trade_id=str(ids[9])
    )
    assert [f.trade_id for f in both] == [
        f.trade_id for f, t in zip(fills, times, strict=True)
        if f.symbol == "ETH-USD" and t >= start and int(f.trade_id) < ids[9]
    ]  # fmt: skip
    # Nothing of another account; an account with no trade has no fill.
    assert not {f.order_id for f in fills} & {f.order_id for f in maker_fills}
    _, carol = funded_account(gateway, {"USD": "1"})
    empty = list_fills(gateway, carol)
    assert not empty.fills and not empty.next_page_token and empty.trading_sequence > 0
    # A fills token is bound to its filters.
    token = list_fills(gateway, taker, page_size=1, symbol="ETH-USD").next_page_token
    error = refused(lambda: list_fills(gateway, taker, page_token=token))
    assert (error.code, error.reason) == (INVALID, RejectReason.INVALID_PAGE_TOKEN)


# --- the projection and the journal -------------------------------------------------------------


def projection_rows(database_url: str) -> tuple[int, int, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the journal's last sequence, the projection's mark, its rows up to the mark, the rows the
    journal says it should hold up to the mark), the expected rows computed here from the journal
    alone (client order ids from its new orders), all in one snapshot."""
    with psycopg.connect(database_url) as connection, connection.transaction():
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        (shard,) = journal_audit.shards(connection)
        projection = journal_audit.fills_projection(connection, shard)
        assert projection is not None
        mark, stored = projection
        client_order_ids: dict[str, str] = {}
        expected: list[tuple[Any, ...]] = []
        last = 0
        for record in journal_audit.records(connection, shard):
            last = record.sequence
            if record.HasField("new_order"):
                client_order_ids[record.new_order.order_id] = record.new_order.client_order_id
            if record.HasField("trade") and record.sequence <= mark:
                t = record.trade
                buy_maker = t.maker_side == common_pb2.SIDE_BUY
                for side, account, order_id, fee, maker in (
                    (BUY, t.buy_account_id, t.buy_order_id, t.buyer_fee, buy_maker),
                    (SELL, t.sell_account_id, t.sell_order_id, t.seller_fee, not buy_maker),
                ):
                    liquidity = common_pb2.LIQUIDITY_SIDE_MAKER if maker else common_pb2.LIQUIDITY_SIDE_TAKER
                    expected.append(
                        (account, t.trade_id, side, order_id, client_order_ids[order_id], t.symbol,
                         t.price_ticks, t.quantity_lots, fee, liquidity, t.timestamp_ns, record.sequence)
                    )  # fmt: skip
    return last, mark, sorted(stored), sorted(expected)


def projection_caught_up(database_url: str) -> list[tuple[Any, ...]]:
    """Wait until the projection's mark reaches the journal's end, then compare them row for row;
    returns the rows."""

    def caught_up() -> bool:
        last, mark, _, _ = projection_rows(database_url)
        return mark >= last

    wait_for(caught_up, what="the fills projection catching up")
    _, _, stored, expected = projection_rows(database_url)
    assert len(stored) == len(set(stored)) == len(expected)
    assert stored == expected
    return stored


def test_fills_survive_sigkill_of_trading_mid_flow_none_lost_or_doubled(
    system: System, gateway: Gateway
) -> None:
    services = system.services
    accounts = [funded_account(gateway, {"USD": "1000000", "BTC": "1000"}) for _ in range(6)]
    keys = [api_key for _, api_key in accounts]
    with OrderFlow(gateway, keys, threads=6) as flow:
        flow.wait_more(30)
        for _ in range(3):
            assert services.kill("trading") == -9  # mid-batch: trades committed, projection behind
            time.sleep(0.2)
            services.start("trading")
            services.wait_healthy("trading")
            flow.wait_more(20)
    stored = projection_caught_up(system.database_url)
    # What ListFills shows each account is its part of the projection, each fill once.
    for account_id, api_key in accounts:
        listed = walk_fills(gateway, api_key, page_size=50)
        mine = [(int(f.trade_id), f.side) for f in listed]
        assert mine == sorted(set(mine))
        assert mine == [(r[1], r[2]) for r in stored if r[0] == account_id]


def test_a_journal_written_before_the_projection_is_projected_on_the_first_start(
    system: System, gateway: Gateway
) -> None:
    _, maker = funded_account(gateway, {"ETH": "10"})
    _, taker = funded_account(gateway, {"USD": "100000"})
    for _ in range(3):
        submit(gateway, maker, order("ETH-USD", SELL, "70.00", "0.1"))
        submit(gateway, taker, order("ETH-USD", BUY, "70.00", "0.1"))
    services = system.services
    services.stop("trading")
    # As before the projection existed: no rows, no mark (what migration 007 creates).
    with psycopg.connect(system.database_url) as connection:
        (shard,) = journal_audit.shards(connection)
        fills.forget(connection, shard)
        assert journal_audit.fills_projection(connection, shard) == (0, [])  # as migration 007 leaves it
    services.start("trading")
    services.wait_healthy("trading")
    projection_caught_up(system.database_url)
    assert len(walk_fills(gateway, taker, page_size=2)) == 3


# --- the SDK ------------------------------------------------------------------------------------


def test_the_sdk_lists_orders_and_fills_with_decimals_sync_and_async(
    system: System, gateway: Gateway
) -> None:
    maker_id, maker_key = funded_account(gateway, {"ETH": "10"})
    _, taker_key = funded_account(gateway, {"USD": "100000"})
    with (
        Client.connect(system.gateway, api_key=maker_key) as maker,
        Client.connect(system.gateway, api_key=taker_key) as taker,
    ):
        resting = [maker.submit_order("ETH-USD", "sell", Decimal("80.5"), Decimal("0.2")) for _ in range(5)]
        bought = taker.submit_order("ETH-USD", "buy", Decimal("80.5"), Decimal("0.3"))
        assert bought.status.value == "filled"

        page = maker.list_orders(page_size=2)
        assert [o.order_id for o in page.orders] == [o.order_id for o in resting[1:3]]
        assert page.next_page_token
        walked = list(maker.iter_orders(symbol="ETH-USD", page_size=2))
        assert [o.order_id for o in walked] == [o.order_id for o in resting[1:]]
        assert walked[0].leaves_quantity == Decimal("0.1") and walked[0].price == Decimal("80.5")

        fills = list(maker.iter_fills(page_size=1))
        assert [(f.order_id, f.quantity) for f in fills] == [
            (resting[0].order_id, Decimal("0.2")), (resting[1].order_id, Decimal("0.1"))
        ]  # fmt: skip
        assert all(f.side == Side.SELL and f.liquidity_side == LiquiditySide.MAKER for f in fills)
        assert all(f.account_id == maker_id and f.fee_asset == "USD" for f in fills)
        assert fills[0].fee == Decimal("80.5") * Decimal("0.2") / 1000
        taker_fills = taker.list_fills(start_trade_id=fills[1].trade_id)
        assert [f.trade_id for f in taker_fills.fills] == [fills[1].trade_id]
        assert taker_fills.trading_sequence >= bought.reports[-1].trading_sequence

        async def async_reads() -> None:
            async with await AsyncClient.connect(system.gateway, api_key=maker_key) as client:
                orders = [o async for o in client.iter_orders(page_size=3)]
                assert [o.order_id for o in orders] == [o.order_id for o in walked]
                async_fills = [f async for f in client.iter_fills(page_size=1, symbol="ETH-USD")]
                assert async_fills == fills
                first = await client.list_fills(page_size=1)
                assert list(first.fills) == fills[:1] and first.next_page_token

        asyncio.run(async_reads())


# --- trading's own checks (internal calls) ------------------------------------------------------


def test_trading_refuses_bad_list_requests_naming_the_field(system: System) -> None:
    good_orders = {"account_id": "acct-a", "limit": 10}
    good_fills = {"account_id": "acct-a", "limit": 10}
    cases = [
        ("ListOpenOrders", {**good_orders, "account_id": ""}, "account_id"),
        ("ListOpenOrders", {**good_orders, "account_id": "not an id"}, "account_id"),
        ("ListOpenOrders", {**good_orders, "symbol": "btc-usd"}, "symbol"),
        ("ListOpenOrders", {**good_orders, "limit": 0}, "limit"),
        ("ListOpenOrders", {**good_orders, "limit": 1001}, "limit"),
        ("ListOpenOrders", {**good_orders, "after_created_ns": -1}, "after_created_ns"),
        ("ListOpenOrders", {**good_orders, "after_order_id": "a b"}, "after_order_id"),
        ("ListFills", {**good_fills, "account_id": ""}, "account_id"),
        ("ListFills", {**good_fills, "limit": 5000}, "limit"),
        ("ListFills", {**good_fills, "start_timestamp_ns": 9, "end_timestamp_ns": 9}, "end_timestamp_ns"),
        ("ListFills", {**good_fills, "start_trade_id": 5, "end_trade_id": 2}, "end_trade_id"),
        ("ListFills", {**good_fills, "after_trade_id": -3}, "after_trade_id"),
        ("ListFills", {**good_fills, "min_sequence": -1}, "min_sequence"),
        ("ListFills", {**good_fills, "after_side": 7}, "after_side"),
    ]
    with grpc.insecure_channel(system.services.address("trading")) as channel:
        trading = trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
        requests = {
            "ListOpenOrders": trading_pb2.ListOpenOrdersRequest,
            "ListFills": trading_pb2.ListFillsRequest,
        }
        failures = []
        for method, fields, field in cases:
            error = refused(lambda: getattr(trading, method)(requests[method](**fields), timeout=10))  # noqa: B023
            if error.code != INVALID or [v.field for v in error.violations] != [field]:
                failures.append(f"{method} {fields}: {error}")
        assert failures == []
        # The good requests answer: nothing for an account that never traded.
        assert (
            trading.ListOpenOrders(trading_pb2.ListOpenOrdersRequest(**good_orders), timeout=10).orders == []
        )
        assert trading.ListFills(trading_pb2.ListFillsRequest(**good_fills), timeout=10).fills == []
