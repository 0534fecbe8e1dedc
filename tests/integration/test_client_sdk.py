"""The Python SDK against a running system: Decimals in and out, typed errors, execution streams."""

from __future__ import annotations

import asyncio
import threading
import uuid
from decimal import Decimal

import grpc
import pytest

from backbone.client import (
    AsyncClient,
    BackboneError,
    CancelReason,
    Client,
    ExecutionReport,
    ExecutionType,
    LiquiditySide,
    OrderStatus,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    TimeInForce,
)
from tests.conftest import System
from tests.integration.gateway_calls import settles_to

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin(system: System) -> Client:
    client = Client.connect(system.gateway, admin_key=system.admin_key)
    client.create_asset("EUR", 4)
    client.create_asset("SOL", 6)
    client.create_instrument(
        "SOL-EUR", "SOL", "EUR", tick_size=Decimal("0.01"), lot_size=Decimal("0.01"),
        max_quantity=Decimal("10000"), max_price=Decimal("100000"), maker_fee_bps=0, taker_fee_bps=25,
    )  # fmt: skip
    return client


def account(admin: Client, system: System, deposits: dict[str, str]) -> Client:
    opened = admin.create_account(f"sdk-{uuid.uuid4().hex[:8]}")
    for asset, amount in deposits.items():
        admin.deposit(opened.account_id, asset, Decimal(amount))
    return Client.connect(system.gateway, api_key=opened.api_key)


def test_sync_client_trades_with_decimals_and_streams_the_makers_fill(admin: Client, system: System) -> None:
    maker = account(admin, system, {"SOL": "10"})
    taker = account(admin, system, {"EUR": "1000"})
    received: list[ExecutionReport] = []
    with maker.stream_executions() as reports:

        def read() -> None:
            for report in reports:
                received.append(report)
                if report.execution_type == ExecutionType.TRADE:
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        resting = maker.submit_order("SOL-EUR", "sell", Decimal("150.00"), Decimal("2"))
        assert resting.status == OrderStatus.NEW
        taken = taker.submit_order("SOL-EUR", "buy", Decimal("151.00"), Decimal("2"))
        reader.join(20)
    assert taken.status == OrderStatus.FILLED
    assert taken.average_price == Decimal("150.00")
    assert taken.filled_quantity == Decimal("2")
    fill = next(r for r in taken.reports if r.execution_type == ExecutionType.TRADE)
    assert (fill.last_fee, fill.fee_asset, fill.liquidity_side) == (
        Decimal("0.75"),
        "EUR",
        LiquiditySide.TAKER,
    )

    trades = [r for r in received if r.execution_type == ExecutionType.TRADE]
    assert trades, f"the maker's stream saw no fill: {received}"
    assert trades[0].order.order_id == resting.order_id
    assert trades[0].liquidity_side == LiquiditySide.MAKER
    assert all(r.order.account_id == resting.account_id for r in received), "only the caller's own reports"

    def eur() -> tuple[Decimal, Decimal, Decimal]:
        balance = taker.get_balances()["EUR"]
        return (balance.total, balance.reserved, balance.available)

    settles_to(eur, (Decimal("699.25"), Decimal("0"), Decimal("699.25")), what="the buyer's EUR balance")


def test_sync_client_raises_one_typed_error(admin: Client, system: System) -> None:
    trader = account(admin, system, {"EUR": "10"})
    with pytest.raises(BackboneError) as off_tick:
        trader.submit_order("SOL-EUR", "buy", Decimal("1.001"), Decimal("1"))
    assert off_tick.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in off_tick.value.violations] == ["price"]
    with pytest.raises(BackboneError) as too_poor:
        trader.submit_order("SOL-EUR", "buy", Decimal("100.00"), Decimal("1"))
    assert (too_poor.value.code, too_poor.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_BALANCE",
    )
    with pytest.raises(BackboneError) as unknown:
        trader.get_order("no-such-order")
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND


def test_async_client_places_and_cancels(admin: Client, system: System) -> None:
    opened = admin.create_account()
    admin.deposit(opened.account_id, "EUR", Decimal("500"))

    async def scenario() -> None:
        async with await AsyncClient.connect(system.gateway, api_key=opened.api_key) as client:
            placed = await client.submit_order("SOL-EUR", "buy", Decimal("10.00"), Decimal("3"))
            assert placed.status == OrderStatus.NEW
            balances = await client.get_balances()
            assert balances["EUR"].reserved == Decimal("30.075")  # 30.00 + 25 bps headroom
            cancelled = await client.cancel_order(placed.order_id)
            assert cancelled.status == OrderStatus.CANCELLED
            for _ in range(200):
                if (await client.get_balances())["EUR"].reserved == 0:
                    break
                await asyncio.sleep(0.05)
            assert (await client.get_balances())["EUR"].available == Decimal("500")

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def terms_market(admin: Client) -> str:
    """An instrument of its own for the order-term tests, so no other test's orders meet them."""
    admin.create_instrument(
        "SOLT-EUR", "SOL", "EUR", tick_size=Decimal("0.01"), lot_size=Decimal("0.01"),
        max_quantity=Decimal("10000"), max_price=Decimal("100000"), maker_fee_bps=0, taker_fee_bps=25,
    )  # fmt: skip
    return "SOLT-EUR"


def test_sync_client_sends_ioc_and_market_orders_and_reads_expiries(
    admin: Client, system: System, terms_market: str
) -> None:
    maker = account(admin, system, {"SOL": "10"})
    taker = account(admin, system, {"EUR": "1000"})
    maker.submit_order(terms_market, "sell", Decimal("10.00"), Decimal("2"))
    ioc = taker.submit_order(
        terms_market, "buy", Decimal("10.00"), Decimal("3"), time_in_force=TimeInForce.IOC
    )
    assert (ioc.status, ioc.time_in_force, ioc.is_open) == (OrderStatus.EXPIRED, TimeInForce.IOC, False)
    assert (ioc.filled_quantity, ioc.expired_quantity) == (Decimal("2"), Decimal("1"))
    expired = ioc.reports[-1]
    assert (expired.execution_type, expired.cancel_reason) == (
        ExecutionType.EXPIRED,
        CancelReason.IOC_REMAINDER,
    )
    assert [r.account_sequence for r in ioc.reports] == [1, 2, 3]

    maker.submit_order(terms_market, "sell", Decimal("11.00"), Decimal("1"))
    killed = taker.submit_order(
        terms_market, "buy", Decimal("11.00"), Decimal("2"), order_type="market", time_in_force="fok"
    )
    assert (killed.type, killed.status, killed.filled_quantity) == (OrderType.MARKET, OrderStatus.EXPIRED, 0)
    assert killed.reports[-1].cancel_reason == CancelReason.FOK_UNFILLABLE
    swept = taker.submit_order(
        terms_market, "buy", Decimal("11.00"), Decimal("2"), order_type=OrderType.MARKET
    )
    assert (swept.time_in_force, swept.filled_quantity, swept.expired_quantity) == (
        TimeInForce.IOC,
        Decimal("1"),
        Decimal("1"),
    )
    assert swept.reports[-1].cancel_reason == CancelReason.MARKET_REMAINDER
    settles_to(lambda: taker.get_balances()["EUR"].reserved, Decimal(0), what="taker's reservations")
    with pytest.raises(BackboneError) as wrong:
        taker.submit_order(
            terms_market, "buy", Decimal("11.00"), Decimal("1"), order_type="market", post_only=True
        )
    assert (wrong.value.code, wrong.value.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        RejectReason.MARKET_ORDER_CANNOT_REST,
    )


def test_async_client_and_stream_send_post_only_day_and_self_trade_prevention(
    admin: Client, system: System, terms_market: str
) -> None:
    opened = admin.create_account()
    admin.deposit(opened.account_id, "EUR", Decimal("500"))
    admin.deposit(opened.account_id, "SOL", Decimal("5"))

    async def scenario() -> None:
        async with await AsyncClient.connect(system.gateway, api_key=opened.api_key) as client:
            resting = await client.submit_order(
                terms_market, "sell", Decimal("20.00"), Decimal("1"), time_in_force="day", post_only=True
            )
            assert (resting.status, resting.time_in_force, resting.post_only) == (
                OrderStatus.NEW,
                TimeInForce.DAY,
                True,
            )
            assert resting.self_trade_prevention == SelfTradePrevention.NONE  # the gateway's default
            async with client.order_stream() as stream:
                ticket = await stream.submit(
                    terms_market, "buy", Decimal("20.00"), Decimal("1"),
                    self_trade_prevention=SelfTradePrevention.CANCEL_RESTING,
                )  # fmt: skip
                incoming = (await ticket.outcome()).order_or_raise()
            assert (incoming.status, incoming.self_trade_prevention) == (
                OrderStatus.NEW,
                SelfTradePrevention.CANCEL_RESTING,
            )
            gone = await client.get_order(resting.order_id)
            assert gone.status == OrderStatus.CANCELLED
            await client.cancel_order(incoming.order_id)
            for _ in range(200):
                held = await client.get_balances()
                if held["EUR"].reserved == 0 and held["SOL"].reserved == 0:
                    break
                await asyncio.sleep(0.05)
            held = await client.get_balances()
            assert (held["EUR"].reserved, held["SOL"].reserved) == (0, 0)

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def replace_market(admin: Client) -> str:
    """An instrument of its own for the replace and budget tests."""
    admin.create_instrument(
        "SOLR-EUR", "SOL", "EUR", tick_size=Decimal("0.01"), lot_size=Decimal("0.01"),
        max_quantity=Decimal("10000"), max_price=Decimal("100000"), maker_fee_bps=0, taker_fee_bps=25,
    )  # fmt: skip
    return "SOLR-EUR"


def test_sync_client_replaces_and_buys_for_a_budget(
    admin: Client, system: System, replace_market: str
) -> None:
    trader = account(admin, system, {"EUR": "100"})
    seller = account(admin, system, {"SOL": "10"})
    placed = trader.submit_order(replace_market, "buy", Decimal("10.00"), Decimal("3"))
    replaced = trader.replace_order(placed.order_id, price=Decimal("11.00"))
    assert (replaced.price, replaced.quantity, replaced.status) == (
        Decimal("11.00"),
        Decimal("3"),
        OrderStatus.NEW,
    )
    assert [r.execution_type for r in replaced.reports] == [ExecutionType.REPLACED]
    assert trader.get_balances()["EUR"].reserved == Decimal("33.0825")  # 33.00 + 25 bps, held at once
    again = trader.replace_order(placed.order_id, price=Decimal("11.00"))  # a retry changes nothing
    assert again.reports == () and again.price == Decimal("11.00")
    with pytest.raises(BackboneError) as refused:
        trader.replace_order(placed.order_id, quantity=Decimal("10"))  # 110.275 > 100
    assert (refused.value.code, refused.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        RejectReason.INSUFFICIENT_BALANCE,
    )
    trader.cancel_order(placed.order_id)
    seller.submit_order(replace_market, "sell", Decimal("12.00"), Decimal("5"))
    bought = trader.submit_order(
        replace_market,
        "buy",
        None,
        Decimal("100"),
        order_type=OrderType.MARKET,
        quote_budget=Decimal("30.00"),
    )
    assert (bought.filled_quantity, bought.status) == (Decimal("2.5"), OrderStatus.EXPIRED)
    assert bought.quote_budget == Decimal("30.00") and placed.quote_budget is None
    settles_to(lambda: trader.get_balances()["EUR"].reserved, Decimal(0), what="budget released")
    settles_to(lambda: trader.get_balances()["EUR"].total, Decimal("69.925"), what="EUR spent")  # 30 + 0.075


def test_async_client_and_stream_replace(admin: Client, system: System, replace_market: str) -> None:
    opened = admin.create_account()
    admin.deposit(opened.account_id, "EUR", Decimal("500"))

    async def scenario() -> None:
        async with await AsyncClient.connect(system.gateway, api_key=opened.api_key) as client:
            placed = await client.submit_order(replace_market, "buy", Decimal("5.00"), Decimal("4"))
            smaller = await client.replace_order(placed.order_id, quantity=Decimal("2"))
            assert (smaller.quantity, smaller.leaves_quantity) == (Decimal("2"), Decimal("2"))
            async with client.order_stream() as stream:
                ticket = await stream.replace(placed.order_id, price=Decimal("6.00"), quantity=Decimal("3"))
                moved = (await ticket.outcome()).order_or_raise()
                bad = await (await stream.replace(placed.order_id, price=Decimal("6.001"))).outcome()
            assert (moved.price, moved.quantity) == (Decimal("6.00"), Decimal("3"))
            assert bad.error is not None and bad.error.reason == RejectReason.INVALID_PRICE
            for _ in range(200):
                if (await client.get_balances())["EUR"].reserved == Decimal("18.045"):
                    break
                await asyncio.sleep(0.05)
            assert (await client.get_balances())["EUR"].reserved == Decimal("18.045")  # 18.00 + 25 bps
            await client.cancel_order(placed.order_id)

    asyncio.run(scenario())
