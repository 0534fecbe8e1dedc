"""The SDK's list calls, offline: a fill through the gateway's view and back, pages, and the
requests list_orders and list_fills send (bad arguments refused before sending)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from backbone.client import BackboneError, Fill, FillsPage, LiquiditySide, OrdersPage, RejectReason, Side
from backbone.client._models import (
    fills_page_from_proto,
    list_fills_request,
    list_orders_request,
    orders_page_from_proto,
)
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.trading.v1 import trading_pb2
from gateway.views import fill_view, order_view
from tests.instruments import btc_usd

NS = 1_714_000_000_123_456_789


def fills_request(**changes: object) -> gateway_pb2.ListFillsRequest:
    arguments: dict[str, object] = dict(
        start_time=None, end_time=None, start_trade_id=None, end_trade_id=None, page_size=100, page_token="",
        min_trading_sequence=0,
    )  # fmt: skip
    arguments.update(changes)
    return list_fills_request("BTC-USD", **arguments)  # type: ignore[arg-type]


def test_a_fill_keeps_every_amount_exact_from_trading_to_the_sdk() -> None:
    fill = trading_pb2.Fill(
        trade_id=42, order_id="o-1", client_order_id="c-1", account_id="acct-a", symbol="BTC-USD",
        side=common_pb2.SIDE_SELL, price_ticks=5_000_001, quantity_lots=3, fee=15,
        liquidity_side=common_pb2.LIQUIDITY_SIDE_MAKER, timestamp_ns=NS, sequence=77,
    )  # fmt: skip
    response = gateway_pb2.ListFillsResponse(
        fills=[fill_view(fill, btc_usd())], next_page_token="t", trading_sequence=80
    )
    page = fills_page_from_proto(gateway_pb2.ListFillsResponse.FromString(response.SerializeToString()))
    assert page == FillsPage(
        fills=(
            Fill(
                trade_id=42, order_id="o-1", client_order_id="c-1", account_id="acct-a", symbol="BTC-USD",
                side=Side.SELL, price=Decimal("50000.01"), quantity=Decimal("0.0003"),
                fee=Decimal("0.000015"), fee_asset="USD", liquidity_side=LiquiditySide.MAKER,
                timestamp=datetime(2024, 4, 24, 23, 6, 40, 123456, tzinfo=UTC), trading_sequence=77,
            ),
        ),
        next_page_token="t",
        trading_sequence=80,
    )  # fmt: skip


def test_an_orders_page_holds_the_orders_as_get_order_shows_them() -> None:
    order = common_pb2.Order(
        order_id="o-2", account_id="acct-a", symbol="BTC-USD", side=common_pb2.SIDE_BUY, price_ticks=100,
        quantity_lots=20_000, leaves_lots=20_000, status=common_pb2.ORDER_STATUS_NEW, created_ns=NS,
    )  # fmt: skip
    page = orders_page_from_proto(gateway_pb2.ListOrdersResponse(orders=[order_view(order, btc_usd())]))
    assert isinstance(page, OrdersPage) and page.next_page_token == ""
    (listed,) = page.orders
    assert (listed.price, listed.leaves_quantity, listed.side) == (Decimal("1.00"), Decimal("2"), Side.BUY)


def test_the_requests_carry_the_filters() -> None:
    assert list_orders_request(None, 5, "tok") == gateway_pb2.ListOrdersRequest(page_size=5, page_token="tok")
    start = datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))  # 10:00 UTC
    request = fills_request(start_time=start, start_trade_id=7, end_trade_id=9, min_trading_sequence=12)
    assert request.start_time.seconds == int(datetime(2024, 5, 1, 10, tzinfo=UTC).timestamp())
    assert not request.HasField("end_time")
    assert (request.start_trade_id, request.end_trade_id, request.min_trading_sequence) == ("7", "9", 12)


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"page_size": 0}, "page_size", RejectReason.INVALID_LIMIT),
        ({"page_size": 1001}, "page_size", RejectReason.INVALID_LIMIT),
        ({"page_size": True}, "page_size", RejectReason.INVALID_LIMIT),
        ({"start_time": datetime(2024, 5, 1)}, "start_time", RejectReason.INVALID_RANGE),  # naive
        ({"start_trade_id": 0}, "start_trade_id", RejectReason.INVALID_TRADE_ID),
        ({"end_trade_id": 2**63}, "end_trade_id", RejectReason.INVALID_TRADE_ID),
        ({"end_trade_id": "9"}, "end_trade_id", RejectReason.INVALID_TRADE_ID),
    ],
)
def test_bad_arguments_are_refused_before_sending(
    changes: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(BackboneError) as raised:
        fills_request(**changes)
    assert raised.value.reason == reason and [v.field for v in raised.value.violations] == [field]


def test_a_time_that_is_no_datetime_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        fills_request(end_time="2024-05-01")
