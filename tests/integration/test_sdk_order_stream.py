"""The SDK's order stream against a running system, async and blocking: a batch of good and bad
orders each answered on its own (the refusals those of the unary calls), a crossing pair filling
(the maker's fill comes later on its own stream), a cancel, read-your-writes; and a gateway stopped
under a stream: the stream fails, every unanswered command is failed as such, and sending every
command again with the same client_order_ids after the restart places each order exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

import grpc
import pytest

from backbone.client import (
    AsyncClient,
    AsyncOrderTicket,
    BackboneError,
    Client,
    ExecutionReport,
    ExecutionType,
    LiquiditySide,
    NewOrder,
    Order,
    OrderCommand,
    OrderResult,
    OrderStatus,
    OrderStream,
    OrderStreamEvent,
)
from backbone.reasons import RejectReason
from tests.conftest import System
from tests.integration.gateway_calls import invariants_hold, settles_to

pytestmark = pytest.mark.integration

T = TypeVar("T")

SYMBOL = "XRP-GBP"


def create_market(admin: Client, symbol: str = SYMBOL, base: str = "XRP", quote: str = "GBP") -> None:
    admin.create_asset(base, 6)
    admin.create_asset(quote, 4)
    admin.create_instrument(
        symbol, base, quote, tick_size=Decimal("0.01"), lot_size=Decimal("0.1"),
        max_quantity=Decimal("10000"), max_price=Decimal("1000"), maker_fee_bps=0, taker_fee_bps=10,
    )  # fmt: skip


@pytest.fixture(scope="module")
def admin(system: System) -> Client:
    client = Client.connect(system.gateway, admin_key=system.admin_key)
    create_market(client)
    return client


def account(admin: Client, deposits: dict[str, str]) -> str:
    """A new funded account; returns its API key."""
    opened = admin.create_account(f"stream-{uuid.uuid4().hex[:8]}")
    for asset, amount in deposits.items():
        admin.deposit(opened.account_id, asset, Decimal(amount))
    return opened.api_key


async def settles(
    read: Callable[[], Awaitable[T]], expected: T, what: str, timeout_seconds: float = 20.0
) -> None:
    """Poll `read()` until it equals `expected` (the ledger and risk catch up on their own)."""
    deadline = time.monotonic() + timeout_seconds
    while (value := await read()) != expected and time.monotonic() <= deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert value == expected, f"{what} did not settle in {timeout_seconds:g}s"


def refusal(error: BackboneError | None) -> tuple[grpc.StatusCode, RejectReason, list[str]]:
    assert error is not None
    return (error.code, error.reason, [v.field for v in error.violations])


async def unary_refusal(
    client: AsyncClient, command: NewOrder
) -> tuple[grpc.StatusCode, RejectReason, list[str]]:
    """What the unary SubmitOrder answers the same order (under a fresh client_order_id)."""
    with pytest.raises(BackboneError) as caught:
        await client.submit_order(command.symbol, command.side, command.price, command.quantity)
    return refusal(caught.value)


async def test_async_stream_answers_each_command_fills_a_crossing_pair_and_cancels(
    admin: Client, system: System
) -> None:
    maker_key = account(admin, {"XRP": "100"})
    taker_key = account(admin, {"GBP": "1000"})
    async with (
        await AsyncClient.connect(system.gateway, api_key=maker_key) as maker,
        await AsyncClient.connect(system.gateway, api_key=taker_key) as taker,
    ):
        async with maker.order_stream() as stream:
            resting = NewOrder(SYMBOL, "sell", Decimal("2.00"), Decimal("10"), tag="rest")
            spare = NewOrder(SYMBOL, "sell", Decimal("3.00"), Decimal("5"), tag="spare")
            bad = [
                NewOrder(SYMBOL, "sell", Decimal("2.001"), Decimal("1"), tag="off-tick"),
                NewOrder(SYMBOL, "sell", Decimal("2.00"), Decimal("1000"), tag="too-much"),
                NewOrder("NOPE-GBP", "sell", Decimal("2.00"), Decimal("1"), tag="no-market"),
                NewOrder(SYMBOL, "sell", Decimal("2.00"), Decimal("0.05"), tag="off-lot"),
            ]
            tickets = await stream.submit_many([resting, bad[0], spare, bad[1], bad[2], bad[3]])
            unknown_cancel = await stream.cancel("no-such-order", tag="ghost")
            outcomes = {ticket.tag: await ticket.outcome() for ticket in tickets}
            assert outcomes["rest"].ok and outcomes["spare"].ok
            rest_order = outcomes["rest"].order_or_raise()
            assert (rest_order.status, rest_order.leaves_quantity) == (OrderStatus.NEW, Decimal("10"))
            assert rest_order.client_order_id == resting.client_order_id
            # Each refusal is the one the unary call gives, on the command's own result.
            for command in bad:
                assert refusal(outcomes[command.tag].error) == await unary_refusal(maker, command)
            assert refusal(outcomes["off-tick"].error)[2] == ["price"]
            assert refusal(outcomes["too-much"].error)[:2] == (
                grpc.StatusCode.FAILED_PRECONDITION,
                RejectReason.INSUFFICIENT_BALANCE,
            )
            ghost = await unknown_cancel.outcome()
            with pytest.raises(BackboneError) as unary_ghost:
                await maker.cancel_order("no-such-order")
            assert refusal(ghost.error) == refusal(unary_ghost.value)
            # A different order under a client_order_id in use is refused, naming the holder.
            taken = NewOrder(SYMBOL, "sell", Decimal("2.50"), Decimal("1"), resting.client_order_id)
            duplicate = await (await stream.send(taken)).outcome()
            assert refusal(duplicate.error)[:2] == (
                grpc.StatusCode.ALREADY_EXISTS,
                RejectReason.DUPLICATE_CLIENT_ORDER_ID,
            )
            assert duplicate.order_id == rest_order.order_id

            # A cancel on the stream.
            spare_id = outcomes["spare"].order_or_raise().order_id
            cancelled = await (await stream.cancel(spare_id)).result()
            assert (cancelled.status, cancelled.cancelled_quantity) == (OrderStatus.CANCELLED, Decimal("5"))

            # The crossing order, on the taker's own stream.
            async with taker.order_stream() as taker_stream:
                crossing = await taker_stream.submit(SYMBOL, "buy", Decimal("2.05"), Decimal("10"))
                filled = await crossing.result()
            assert (filled.status, filled.average_price) == (OrderStatus.FILLED, Decimal("2.00"))
            fill = next(r for r in filled.reports if r.execution_type == ExecutionType.TRADE)
            assert (fill.last_quantity, fill.last_fee, fill.liquidity_side) == (
                Decimal("10"),
                Decimal("0.02"),
                LiquiditySide.TAKER,
            )

            # The maker learns of its fill later, on its stream, as a typed report.
            answered: list[OrderResult] = []
            maker_fill: ExecutionReport | None = None
            async for event in stream:
                if isinstance(event, OrderResult):
                    answered.append(event)
                elif event.execution_type == ExecutionType.TRADE:
                    maker_fill = event
                    break
            assert maker_fill is not None
            assert maker_fill.order.order_id == rest_order.order_id
            assert (maker_fill.order.status, maker_fill.liquidity_side) == (
                OrderStatus.FILLED,
                LiquiditySide.MAKER,
            )
            # Every command had its one result on the iterator too, before the fill.
            assert len(answered) == len(tickets) + 3
            assert maker.seen_trading_sequence >= maker_fill.trading_sequence > 0

        async def maker_books() -> tuple[Decimal, Decimal, Decimal]:
            balances = await maker.get_balances()
            return (balances["GBP"].total, balances["XRP"].total, balances["XRP"].reserved)

        await settles(maker_books, (Decimal("20"), Decimal("90"), Decimal("0")), "the maker's balances")
    invariants_hold(system.database_url, system.redis_url)


def test_blocking_stream_answers_each_command_fills_a_crossing_pair_and_cancels(
    admin: Client, system: System
) -> None:
    maker_key = account(admin, {"XRP": "50"})
    taker_key = account(admin, {"GBP": "500"})
    with (
        Client.connect(system.gateway, api_key=maker_key) as maker,
        Client.connect(system.gateway, api_key=taker_key) as taker,
        maker.order_stream() as stream,
    ):
        resting = stream.submit(SYMBOL, "sell", Decimal("4.00"), Decimal("3"), tag="rest")
        spare = stream.submit(SYMBOL, "sell", Decimal("5.00"), Decimal("2"))
        off_tick = stream.submit(SYMBOL, "sell", Decimal("4.001"), Decimal("1"))
        rest_order = resting.result(timeout=30)
        with pytest.raises(BackboneError) as caught:
            off_tick.result(timeout=30)
        assert (caught.value.code, caught.value.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            RejectReason.INVALID_PRICE,
        )
        cancelled = stream.cancel(spare.result(timeout=30).order_id).result(timeout=30)
        assert cancelled.status == OrderStatus.CANCELLED

        events: list[OrderStreamEvent] = []
        reader = threading.Thread(target=lambda: events.extend(_until_trade(stream)), daemon=True)
        reader.start()
        with taker.order_stream(events="none") as taker_stream:
            filled = taker_stream.submit(SYMBOL, "buy", Decimal("4.00"), Decimal("3")).result(timeout=30)
        assert (filled.status, filled.filled_quantity) == (OrderStatus.FILLED, Decimal("3"))
        reader.join(30)
        trade = events[-1]
        assert isinstance(trade, ExecutionReport) and trade.order.order_id == rest_order.order_id
        assert trade.liquidity_side == LiquiditySide.MAKER and trade.last_price == Decimal("4.00")
        assert sum(isinstance(e, OrderResult) for e in events) == 4

        def maker_gbp() -> Decimal:
            return maker.get_balances()["GBP"].total

        settles_to(maker_gbp, Decimal("12"), what="the maker's GBP")

    # The same command again on a new stream is answered with the order it placed.
    with Client.connect(system.gateway, api_key=maker_key) as maker, maker.order_stream() as again:
        repeat = again.send(resting.command).result(timeout=30)
        assert repeat.order_id == rest_order.order_id and repeat.status == OrderStatus.FILLED


def _until_trade(stream: OrderStream) -> list[OrderStreamEvent]:
    taken: list[OrderStreamEvent] = []
    for event in stream:
        taken.append(event)
        if isinstance(event, ExecutionReport) and event.execution_type == ExecutionType.TRADE:
            break
    return taken


async def test_a_stopped_gateway_fails_the_stream_and_resending_with_the_same_ids_places_each_order_once(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory()
    with Client.connect(system.gateway, admin_key=system.admin_key) as admin:
        create_market(admin)
        api_key = account(admin, {"GBP": "100000"})
    tickets: list[AsyncOrderTicket] = []
    async with await AsyncClient.connect(system.gateway, api_key=api_key) as client:
        stream = await client.order_stream(events="none").open()

        async def produce() -> None:
            # Orders keep coming, 100 per loop turn, until the stream refuses more.
            while len(tickets) < 200_000:
                for _ in range(100):
                    tickets.append(await stream.submit(SYMBOL, "buy", Decimal("1.00"), Decimal("1")))
                await asyncio.sleep(0.005)

        producer = asyncio.create_task(produce())
        while sum(ticket.done() for ticket in tickets) < 300:  # noqa: ASYNC110 (the gateway answers)
            await asyncio.sleep(0.01)
        exit_code = await asyncio.to_thread(system.services.stop, "gateway")
        with pytest.raises(BackboneError) as stopped:
            await producer
        assert stopped.value.reason == RejectReason.NOT_SENT
        outcomes = [await ticket.outcome() for ticket in tickets]
        await stream.close()
    assert exit_code == 0
    assert stream.error is not None
    assert stream.error.code == grpc.StatusCode.UNAVAILABLE, repr(stream.error)
    # SERVICE_STOPPING, unless a request was still being written when the gateway ended the call:
    # grpc.aio then keeps no status from the gateway, and the SDK says so.
    if stream.error.reason != RejectReason.SERVICE_STOPPING:
        assert "kept no status from the gateway" in stream.error.message, repr(stream.error)
    placed = {o.client_order_id: o.order_id for o in outcomes if o.ok}
    failed = [o.error for o in outcomes if o.error is not None]
    assert len(placed) >= 300 and len(placed) + len(failed) == len(tickets)
    # Whatever was not answered is failed as worth sending again.
    assert all(e.code == grpc.StatusCode.UNAVAILABLE for e in failed), {(e.code, e.reason) for e in failed}

    await asyncio.to_thread(system.services.start, "gateway")
    await asyncio.to_thread(system.services.wait_healthy, "gateway")
    async with (
        await AsyncClient.connect(system.gateway, api_key=api_key) as client,
        client.order_stream(events="none") as again,
    ):
        # As a client does: send every command again, and again those refused as retryable.
        answered: dict[str, Order] = {}
        pending: list[OrderCommand] = [ticket.command for ticket in tickets]
        for _ in range(10):
            resent = await again.submit_many(pending)
            pending = []
            for ticket in resent:
                outcome = await ticket.outcome()
                if outcome.error is None:
                    answered[ticket.client_order_id] = outcome.order_or_raise()
                elif outcome.error.retryable:
                    pending.append(ticket.command)
                else:
                    raise outcome.error
            if not pending:
                break
            await asyncio.sleep(0.2)
        assert not pending, "resent commands still refused as retryable"
        for ticket in tickets:
            order = answered[ticket.client_order_id]
            if ticket.client_order_id in placed:
                assert order.order_id == placed[ticket.client_order_id]
        book = await client.get_order_book(SYMBOL)
    # Each order rests once: nothing lost, nothing placed twice.
    assert [(level.price, level.quantity) for level in book.bids] == [
        (Decimal("1.00"), Decimal(len(tickets)))
    ]
    invariants_hold(system.database_url, system.redis_url)
