"""The SDK's models and conversions: gateway views -> public protos -> SDK dataclasses, the
decimal strings the SDK sends, and BackboneError rebuilt from a real failed call."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import pytest

from backbone.client import (
    Account,
    AsyncClient,
    BackboneError,
    Balance,
    CancelReason,
    Client,
    ExecutionReport,
    ExecutionType,
    Instrument,
    LiquiditySide,
    Order,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from backbone.client._errors import backoff_seconds, is_duplicate_of_earlier_attempt, should_retry
from backbone.client._models import (
    balances_from_proto,
    decimal_text,
    instrument_from_proto,
    order_book_from_proto,
    order_from_proto,
    report_from_proto,
    side_value,
    submit_order_request,
    submitted_order_from_proto,
)
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, invalid_field
from backbone.runtime.interceptors import ServerInterceptor
from backbone.trading.v1 import trading_pb2
from gateway.views import (
    average_price_text,
    balance_view,
    book_view,
    instrument_view,
    order_view,
    report_view,
)
from tests.instruments import btc_usd

INSTRUMENT = btc_usd(min_quantity="0.001", max_quantity="100")
CREATED_NS = 1_700_000_000_123_456_789


def internal_order(**changes: Any) -> common_pb2.Order:
    fields: dict[str, Any] = {
        "order_id": "o-1",
        "client_order_id": "c-1",
        "account_id": "acc-1",
        "symbol": "BTC-USD",
        "side": common_pb2.SIDE_BUY,
        "type": common_pb2.ORDER_TYPE_LIMIT,
        "time_in_force": common_pb2.TIME_IN_FORCE_GTC,
        "price_ticks": 10025,
        "quantity_lots": 5000,
        "filled_lots": 2000,
        "leaves_lots": 3000,
        "cancelled_lots": 0,
        "status": common_pb2.ORDER_STATUS_PARTIALLY_FILLED,
        "filled_notional_ticks_lots": 1000 * 10020 + 1000 * 10025,
        "created_ns": CREATED_NS,
        "updated_ns": CREATED_NS + 1000,
    }
    fields.update(changes)
    return common_pb2.Order(**fields)


# --- gateway views and SDK models --------------------------------------------------------------


def test_an_order_keeps_every_amount_exact_through_both_conversions() -> None:
    view = order_view(internal_order(), INSTRUMENT)
    assert (view.price, view.quantity, view.filled_quantity, view.leaves_quantity) == (
        "100.25",
        "0.5000",
        "0.2000",
        "0.3000",
    )
    assert view.average_price == "100.225"
    order = order_from_proto(view)
    assert order.price == Decimal("100.25")
    assert order.quantity == Decimal("0.5")
    assert order.filled_quantity == Decimal("0.2")
    assert order.leaves_quantity == Decimal("0.3")
    assert order.cancelled_quantity == Decimal(0)
    assert order.average_price == Decimal("100.225")
    assert order.side is Side.BUY
    assert order.side.value == "buy"
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.is_open
    assert order.created_at == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert order.updated_at is not None and order.updated_at >= order.created_at
    assert order.reports == ()


def test_an_unfilled_order_has_no_average_price_and_unset_times_are_none() -> None:
    view = order_view(
        internal_order(filled_lots=0, filled_notional_ticks_lots=0, created_ns=0, updated_ns=0), INSTRUMENT
    )
    assert view.average_price == ""
    assert not view.HasField("created_at")
    order = order_from_proto(view)
    assert order.average_price is None
    assert order.created_at is None and order.updated_at is None


@pytest.mark.parametrize(
    ("notional", "lots", "tick", "expected"),
    [
        (10025 * 7, 7, "0.01", "100.25"),
        (10020 + 10025, 2, "0.01", "100.225"),
        (1 + 1 + 2, 3, "0.01", "0.0133333333"),  # 4/3 ticks, rounded at tick places + 8
        (2 + 2 + 2, 3, "0.01", "0.02"),
        (5, 2, "1", "2.5"),
        (6, 2, "1", "3"),
        (0, 0, "0.01", ""),
    ],
)
def test_average_price_text(notional: int, lots: int, tick: str, expected: str) -> None:
    assert average_price_text(notional, lots, Decimal(tick)) == expected


def test_a_trade_report_carries_the_fill_and_its_fee() -> None:
    report = common_pb2.ExecutionReport(
        order=internal_order(),
        execution_type=common_pb2.EXECUTION_TYPE_TRADE,
        trade_id=42,
        last_price_ticks=10020,
        last_quantity_lots=1000,
        last_fee=200_400,  # quote minor units at scale 6: 0.2004 USD
        liquidity_side=common_pb2.LIQUIDITY_SIDE_TAKER,
        timestamp_ns=CREATED_NS,
    )
    view = report_view(report, INSTRUMENT, "trading-0")
    assert (view.trade_id, view.last_price, view.last_quantity, view.last_fee, view.fee_asset) == (
        "42",
        "100.20",
        "0.1000",
        "0.200400",
        "USD",
    )
    sdk = report_from_proto(view)
    assert sdk.execution_type is ExecutionType.TRADE
    assert sdk.trade_id == 42
    assert sdk.last_price == Decimal("100.2")
    assert sdk.last_quantity == Decimal("0.1")
    assert sdk.last_fee == Decimal("0.2004")
    assert sdk.fee_asset == "USD"
    assert sdk.liquidity_side is LiquiditySide.TAKER
    assert sdk.reject_reason is None
    assert sdk.timestamp is not None and sdk.timestamp.tzinfo is UTC
    assert sdk.order.order_id == "o-1"


def test_non_trade_reports_leave_the_fill_fields_empty() -> None:
    report = common_pb2.ExecutionReport(
        order=internal_order(status=common_pb2.ORDER_STATUS_REJECTED),
        execution_type=common_pb2.EXECUTION_TYPE_REJECTED,
        reject_reason=RejectReason.UNKNOWN_ORDER.number,
    )
    view = report_view(report, INSTRUMENT, "trading-0")
    assert view.trade_id == view.last_price == view.last_fee == view.fee_asset == ""
    sdk = report_from_proto(view)
    assert sdk.execution_type is ExecutionType.REJECTED
    assert sdk.reject_reason is RejectReason.UNKNOWN_ORDER
    assert sdk.trade_id is None and sdk.last_price is None and sdk.liquidity_side is None
    assert sdk.order.status is OrderStatus.REJECTED
    assert not sdk.order.is_open


def test_a_submit_response_becomes_an_order_with_its_reports() -> None:
    accepted = common_pb2.ExecutionReport(
        order=internal_order(filled_lots=0, leaves_lots=5000, filled_notional_ticks_lots=0),
        execution_type=common_pb2.EXECUTION_TYPE_ACCEPTED,
    )
    traded = common_pb2.ExecutionReport(
        order=internal_order(), execution_type=common_pb2.EXECUTION_TYPE_TRADE, trade_id=1
    )
    views = [report_view(r, INSTRUMENT, "trading-0") for r in (accepted, traded)]
    response = gateway_pb2.SubmitOrderResponse(order=views[-1].order, reports=views)
    order = submitted_order_from_proto(response)
    assert [r.execution_type for r in order.reports] == [ExecutionType.ACCEPTED, ExecutionType.TRADE]
    assert order.filled_quantity == Decimal("0.2")
    assert all(isinstance(r, ExecutionReport) for r in order.reports)


def test_instruments_show_their_rules_as_decimals() -> None:
    view = instrument_view(INSTRUMENT)
    assert (view.min_quantity, view.max_quantity, view.max_price) == ("0.0010", "100.0000", "1000000.00")
    sdk = instrument_from_proto(view)
    assert sdk == Instrument(
        symbol="BTC-USD",
        base_asset="BTC",
        quote_asset="USD",
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.0001"),
        min_quantity=Decimal("0.001"),
        max_quantity=Decimal("100"),
        max_price=Decimal("1000000"),
        maker_fee_bps=10,
        taker_fee_bps=20,
    )


def test_order_books_and_balances() -> None:
    book = trading_pb2.GetOrderBookResponse(
        symbol="BTC-USD",
        bids=[trading_pb2.PriceLevel(price_ticks=10000, quantity_lots=15, order_count=2)],
        asks=[trading_pb2.PriceLevel(price_ticks=10001, quantity_lots=1, order_count=1)],
    )
    sdk_book = order_book_from_proto(book_view(book, INSTRUMENT))
    assert sdk_book.bids[0].price == Decimal("100")
    assert sdk_book.bids[0].quantity == Decimal("0.0015")
    assert sdk_book.bids[0].order_count == 2
    assert sdk_book.asks[0].price == Decimal("100.01")

    response = gateway_pb2.GetBalancesResponse(
        account_id="acc-1",
        balances=[balance_view("USD", 2, 150_000, 10_050, 139_950), balance_view("BTC", 8, -5, 0, 0)],
    )
    assert response.balances[0].total == "1500.00"
    assert response.balances[1].total == "-0.00000005"
    balances = balances_from_proto(response)
    assert balances["USD"] == Balance("USD", Decimal("1500"), Decimal("100.5"), Decimal("1399.5"))
    assert balances["BTC"].total == Decimal("-0.00000005")


def test_models_are_frozen_and_api_keys_stay_out_of_repr() -> None:
    account = Account("acc-1", "bbk_secret")
    assert "bbk_secret" not in repr(account)
    with pytest.raises(dataclasses.FrozenInstanceError):
        account.account_id = "other"  # type: ignore[misc]
    order = order_from_proto(order_view(internal_order(), INSTRUMENT))
    with pytest.raises(dataclasses.FrozenInstanceError):
        order.price = Decimal(1)  # type: ignore[misc]
    assert isinstance(order, Order)


# --- what the SDK sends --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("100.25"), "100.25"),
        (Decimal("1E+2"), "100"),
        (Decimal("1E-8"), "0.00000001"),
        (Decimal("100.500"), "100.5"),
        (Decimal("100.000"), "100"),
        (Decimal("0.10"), "0.1"),
        (7, "7"),
        ("12.30", "12.3"),
        (Decimal("123456789012345678901234567890"), "123456789012345678901234567890"),
    ],
)
def test_decimals_are_sent_as_plain_exact_strings(value: Decimal | int | str, text: str) -> None:
    assert decimal_text(value, "price") == text


@pytest.mark.parametrize(
    "value",
    [
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        Decimal("-1"),
        -3,
        "-0.5",
        "abc",
        "1.5\n",
        " 1.5",
        "1e5",
        "0012",
        Decimal(0),
        Decimal("-0"),
        "0.00",
    ],
)
def test_bad_decimals_are_refused_before_sending(value: Decimal | int | str) -> None:
    with pytest.raises(BackboneError) as caught:
        decimal_text(value, "price")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == "INVALID_PRICE"
    assert [v.field for v in caught.value.violations] == ["price"]


def test_zero_is_allowed_where_asked() -> None:
    assert decimal_text(Decimal("-0"), "amount", allow_zero=True) == "0"


@pytest.mark.parametrize("value", [1.5, True, None, [1]])
def test_floats_and_other_types_are_type_errors(value: object) -> None:
    with pytest.raises(TypeError):
        decimal_text(value, "price")  # type: ignore[arg-type]


def test_sides() -> None:
    assert side_value("buy") == common_pb2.SIDE_BUY
    assert side_value("SELL") == common_pb2.SIDE_SELL
    assert side_value(Side.BUY) == common_pb2.SIDE_BUY
    assert side_value(common_pb2.SIDE_SELL) == common_pb2.SIDE_SELL
    for bad in ("hold", "", Side.UNSPECIFIED, 0, 3, True):
        with pytest.raises(BackboneError) as caught:
            side_value(bad)
        assert caught.value.reason == "INVALID_SIDE"


def test_submit_order_request() -> None:
    request = submit_order_request("BTC-USD", "sell", Decimal("100.10"), Decimal("0.5"), "c-9")
    assert request.side == common_pb2.SIDE_SELL
    assert (request.price, request.quantity, request.client_order_id) == ("100.1", "0.5", "c-9")
    assert request.type == common_pb2.ORDER_TYPE_LIMIT
    # Unset terms are the gateway's to fill in (GTC for a limit order; its self-trade default).
    assert request.time_in_force == common_pb2.TIME_IN_FORCE_UNSPECIFIED
    assert request.self_trade_prevention == gateway_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED
    assert request.post_only is False


def test_submit_order_request_order_terms() -> None:
    request = submit_order_request(
        "BTC-USD", "buy", Decimal("100"), Decimal("1"), "c-1",
        order_type=OrderType.MARKET, time_in_force="FOK", self_trade_prevention="cancel_both",
    )  # fmt: skip
    assert (request.type, request.time_in_force) == (
        common_pb2.ORDER_TYPE_MARKET,
        common_pb2.TIME_IN_FORCE_FOK,
    )
    assert request.self_trade_prevention == gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH
    day = submit_order_request("BTC-USD", "buy", 1, 1, "c-2", time_in_force=TimeInForce.DAY, post_only=True)
    assert (day.time_in_force, day.post_only) == (common_pb2.TIME_IN_FORCE_DAY, True)
    for field, changes in (
        ("type", {"order_type": "stop"}),
        ("type", {"order_type": OrderType.UNSPECIFIED}),
        ("time_in_force", {"time_in_force": "gtd"}),
        ("self_trade_prevention", {"self_trade_prevention": "sometimes"}),
    ):
        with pytest.raises(BackboneError) as caught:
            submit_order_request("BTC-USD", "buy", 1, 1, "c-3", **changes)  # type: ignore[arg-type]
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in caught.value.violations] == [field]
    with pytest.raises(TypeError):
        submit_order_request("BTC-USD", "buy", 1, 1, "c-4", post_only=1)  # type: ignore[arg-type]


def test_new_order_terms_reach_the_report_models() -> None:
    view = gateway_pb2.Order(
        order_id="o", status=common_pb2.ORDER_STATUS_EXPIRED, type=common_pb2.ORDER_TYPE_MARKET,
        time_in_force=common_pb2.TIME_IN_FORCE_IOC, expired_quantity="0.3", post_only=False,
        self_trade_prevention=gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_RESTING,
    )  # fmt: skip
    report = report_from_proto(
        gateway_pb2.ExecutionReport(
            order=view, execution_type=common_pb2.EXECUTION_TYPE_EXPIRED,
            cancel_reason=common_pb2.CANCEL_REASON_MARKET_REMAINDER, account_sequence=7,
        )
    )  # fmt: skip
    assert (report.execution_type, report.cancel_reason) == (
        ExecutionType.EXPIRED,
        CancelReason.MARKET_REMAINDER,
    )
    assert report.account_sequence == 7
    order = report.order
    assert (order.status, order.type, order.time_in_force) == (
        OrderStatus.EXPIRED,
        OrderType.MARKET,
        TimeInForce.IOC,
    )
    assert not order.is_open
    assert (order.expired_quantity, order.self_trade_prevention) == (
        Decimal("0.3"),
        SelfTradePrevention.CANCEL_RESTING,
    )


# --- errors and retries ----------------------------------------------------------------------------


def test_retry_policy() -> None:
    def error(code: grpc.StatusCode, reason: RejectReason, **metadata: str) -> BackboneError:
        return BackboneError(code, reason, "m", (), metadata)

    R = RejectReason
    assert should_retry(error(grpc.StatusCode.UNAVAILABLE, R.OUTCOME_UNKNOWN))
    assert should_retry(error(grpc.StatusCode.UNAVAILABLE, R.RISK_UNAVAILABLE))
    assert should_retry(error(grpc.StatusCode.RESOURCE_EXHAUSTED, R.BACKPRESSURE))
    assert should_retry(error(grpc.StatusCode.DEADLINE_EXCEEDED, R.UNSPECIFIED))
    assert not should_retry(error(grpc.StatusCode.RESOURCE_EXHAUSTED, R.SLOW_CONSUMER))
    assert not should_retry(error(grpc.StatusCode.INVALID_ARGUMENT, R.INVALID_PRICE))
    assert not should_retry(error(grpc.StatusCode.FAILED_PRECONDITION, R.INSUFFICIENT_BALANCE))
    assert not should_retry(error(grpc.StatusCode.UNAVAILABLE, R.UNREACHABLE))
    assert is_duplicate_of_earlier_attempt(
        error(grpc.StatusCode.ALREADY_EXISTS, R.DUPLICATE_CLIENT_ORDER_ID, order_id="o-1")
    )
    assert not is_duplicate_of_earlier_attempt(
        error(grpc.StatusCode.ALREADY_EXISTS, R.DUPLICATE_CLIENT_ORDER_ID)
    )
    assert [backoff_seconds(n) for n in (1, 2, 3, 10)] == [0.1, 0.2, 0.4, 2.0]


class CannedGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """A gateway stand-in answering with fixed messages, to exercise the SDK over a real channel."""

    def __init__(self) -> None:
        self.submits: list[tuple[gateway_pb2.SubmitOrderRequest, str]] = []

    async def SubmitOrder(self, request: gateway_pb2.SubmitOrderRequest, context: Any) -> Any:
        key = dict(context.invocation_metadata()).get("x-api-key", "")
        self.submits.append((request, key))
        if request.symbol == "BAD":
            raise invalid_field("price", "INVALID_PRICE", "is not a multiple of the tick size 0.01")
        if request.symbol == "FLAKY" and len(self.submits) == 1:
            raise ServiceError(
                grpc.StatusCode.UNAVAILABLE, "OUTCOME_UNKNOWN", "try GetOrder", (), {"order_id": "o-1"}
            )
        if request.symbol == "FLAKY":
            raise ServiceError(
                grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE_CLIENT_ORDER_ID", "used", (), {"order_id": "o-1"}
            )
        view = order_view(internal_order(client_order_id=request.client_order_id), INSTRUMENT)
        report = gateway_pb2.ExecutionReport(order=view, execution_type=common_pb2.EXECUTION_TYPE_ACCEPTED)
        return gateway_pb2.SubmitOrderResponse(order=view, reports=[report])

    async def GetOrder(self, request: gateway_pb2.GetOrderRequest, context: Any) -> Any:
        return gateway_pb2.GetOrderResponse(
            order=order_view(internal_order(order_id=request.order_id), INSTRUMENT)
        )

    async def StreamExecutions(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await context.send_initial_metadata(())
        for trade_id in (1, 2):
            yield gateway_pb2.StreamExecutionsResponse(
                report=report_view(
                    common_pb2.ExecutionReport(
                        order=internal_order(),
                        execution_type=common_pb2.EXECUTION_TYPE_TRADE,
                        trade_id=trade_id,
                    ),
                    INSTRUMENT,
                    "trading-0",
                )
            )


async def start_canned_gateway() -> tuple[grpc.aio.Server, str, CannedGateway]:
    server = grpc.aio.server(interceptors=[ServerInterceptor()])
    servicer = CannedGateway()
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}", servicer


async def test_the_async_client_over_a_real_channel() -> None:
    server, target, servicer = await start_canned_gateway()
    try:
        async with await AsyncClient.connect(target, api_key="bbk_k", timeout_seconds=5) as client:
            order = await client.submit_order("BTC-USD", "buy", Decimal("100.25"), Decimal("0.5"))
            assert order.price == Decimal("100.25")
            assert len(order.client_order_id) == 32
            assert [r.execution_type for r in order.reports] == [ExecutionType.ACCEPTED]
            request, key = servicer.submits[-1]
            assert (request.price, request.quantity, key) == ("100.25", "0.5", "bbk_k")

            with pytest.raises(BackboneError) as caught:
                await client.submit_order("BAD", "buy", Decimal("1.001"), Decimal("1"))
            error = caught.value
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT
            assert error.reason == "INVALID_PRICE"
            assert [(v.field, v.description) for v in error.violations] == [
                ("price", "is not a multiple of the tick size 0.01")
            ]

            async with client.stream_executions() as reports:
                received = [report.trade_id async for report in reports]
            assert received == [1, 2]

            with pytest.raises(BackboneError) as caught:
                await client.create_account()
            assert caught.value.reason == "MISSING_ADMIN_KEY"
    finally:
        await server.stop(0)


async def test_a_retried_submit_returns_the_order_an_earlier_attempt_placed() -> None:
    server, target, servicer = await start_canned_gateway()
    try:
        async with await AsyncClient.connect(target, api_key="bbk_k") as client:
            order = await client.submit_order(
                "FLAKY", "sell", Decimal("1"), Decimal("1"), client_order_id="mine"
            )
            assert order.order_id == "o-1"
            assert [r.client_order_id for r, _ in servicer.submits] == ["mine", "mine"]
    finally:
        await server.stop(0)


async def test_the_blocking_client_over_a_real_channel() -> None:
    server, target, _ = await start_canned_gateway()

    def use() -> None:
        with Client.connect(target, api_key="bbk_k", timeout_seconds=5) as client:
            order = client.submit_order(
                "BTC-USD", Side.SELL, Decimal("100.25"), Decimal("0.5"), client_order_id="x"
            )
            assert order.client_order_id == "x"
            with pytest.raises(BackboneError) as caught:
                client.submit_order("BAD", "buy", Decimal("1.001"), Decimal("1"))
            assert caught.value.reason == "INVALID_PRICE"
            assert not isinstance(caught.value, grpc.RpcError)
            with client.stream_executions() as reports:
                assert [report.trade_id for report in reports] == [1, 2]
        with pytest.raises(BackboneError) as caught:
            Client.connect("127.0.0.1:1", timeout_seconds=0.2)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE

    try:
        await asyncio.to_thread(use)
    finally:
        await server.stop(0)


def test_replaces_and_budgets_go_on_the_wire_as_exact_texts() -> None:
    from backbone.client import NewOrder, ReplaceOrder
    from backbone.client._models import order_command_proto

    replace = order_command_proto(ReplaceOrder("o-1", price=Decimal("101.50"), tag="r"))
    assert (replace.tag, replace.replace.order_id, replace.replace.price, replace.replace.quantity) == (
        "r",
        "o-1",
        "101.5",
        "",
    )
    budget = order_command_proto(
        NewOrder(
            "BTC-USD", "buy", None, Decimal("5"), "c-1", order_type="market", quote_budget=Decimal("250")
        )
    )
    assert (budget.submit.price, budget.submit.quote_budget) == ("", "250")
    with pytest.raises(TypeError):
        order_command_proto(ReplaceOrder("o-1", quantity=1.5))  # type: ignore[arg-type]
    with pytest.raises(BackboneError) as refused:
        order_command_proto(
            NewOrder(
                "BTC-USD", "buy", None, Decimal("5"), "c-1", order_type="market", quote_budget=Decimal("-1")
            )
        )
    assert (refused.value.reason, refused.value.violations[0].field) == (
        RejectReason.INVALID_QUOTE_BUDGET,
        "quote_budget",
    )
