"""Mass cancel and the admin controls through the public API, on one running system: CancelAllOrders
(by account, by symbol) and the StreamOrders mass_cancel command release what was reserved and
leave other accounts' orders alone; a halted or closed instrument refuses new orders, keeps its
book and takes cancels, and its status survives SIGKILL of trading; ExpireDayOrders expires the
DAY orders (placed on trading's internal order stream, reserved at risk first, as the gateway
would) and nothing else; trading unreachable is UNAVAILABLE with nothing done."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import grpc
import pytest

from backbone.client import AsyncClient, BackboneError, Client, InstrumentStatus, OrderStatus
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from tests.conftest import System
from tests.integration.day_orders import place_day_order
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    balances,
    funded_account,
    invariants_hold,
    key,
    order,
    refused,
    setup_market,
    wait_for,
)

pytestmark = pytest.mark.integration

BTC, ETH = "BTC-USD", "ETH-USD"
HALTED = common_pb2.INSTRUMENT_STATUS_HALTED
CLOSED = common_pb2.INSTRUMENT_STATUS_CLOSED
TRADING = common_pb2.INSTRUMENT_STATUS_TRADING
CANCELLED = common_pb2.ORDER_STATUS_CANCELLED


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gw = Gateway(channel, system.admin_key)
        setup_market(gw, BTC, "BTC")
        setup_market(gw, ETH, "ETH")
        yield gw


def cancel_all(gateway: Gateway, api_key: str, symbol: str = "") -> gateway_pb2.CancelAllOrdersResponse:
    request = gateway_pb2.CancelAllOrdersRequest(symbol=symbol)
    response: gateway_pb2.CancelAllOrdersResponse = gateway.public.CancelAllOrders(
        request, metadata=key(api_key)
    )
    return response


def reserved_after(gateway: Gateway, api_key: str, sequence: int, asset: str = "USD") -> str:
    request = gateway_pb2.GetBalancesRequest(min_trading_sequence=sequence)
    response = gateway.public.GetBalances(request, metadata=key(api_key))
    return next(balance.reserved for balance in response.balances if balance.asset == asset)


def set_status(gateway: Gateway, symbol: str, status: int) -> gateway_pb2.SetInstrumentStatusResponse:
    request = gateway_pb2.SetInstrumentStatusRequest(symbol=symbol, status=status)  # type: ignore[arg-type]
    response: gateway_pb2.SetInstrumentStatusResponse = gateway.admin.SetInstrumentStatus(
        request, metadata=gateway.admin_metadata()
    )
    return response


def status_listed(gateway: Gateway, api_key: str, symbol: str) -> int:
    listed = gateway.public.ListInstruments(gateway_pb2.ListInstrumentsRequest(), metadata=key(api_key))
    return next(instrument.status for instrument in listed.instruments if instrument.symbol == symbol)


def order_status(gateway: Gateway, api_key: str, order_id: str) -> int:
    found = gateway.public.GetOrder(gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key))
    return found.order.status


def test_cancel_all_orders_by_symbol_then_by_account_releases_and_spares_other_accounts(
    gateway: Gateway, system: System
) -> None:
    _, trader = funded_account(gateway, {"USD": "10000"})
    _, other = funded_account(gateway, {"USD": "10000"})
    place = gateway.public.SubmitOrder
    btc = [
        place(order(BTC, BUY, price, "0.01"), metadata=key(trader)).order for price in ("100.00", "101.00")
    ]
    eth = place(order(ETH, BUY, "50.00", "0.1"), metadata=key(trader)).order
    others = place(order(BTC, BUY, "100.00", "0.01"), metadata=key(other)).order
    assert balances(gateway, trader)["USD"].reserved != "0.000000"

    by_symbol = cancel_all(gateway, trader, ETH)
    assert by_symbol.cancelled_count == 1
    assert [(o.order_id, o.status, o.symbol) for o in by_symbol.orders] == [(eth.order_id, CANCELLED, ETH)]
    assert all(order_status(gateway, trader, o.order_id) == common_pb2.ORDER_STATUS_NEW for o in btc)

    everything = cancel_all(gateway, trader)
    assert everything.cancelled_count == 2
    # Book order: bids by priority, the better price first.
    assert [o.order_id for o in everything.orders] == [btc[1].order_id, btc[0].order_id]
    assert all(o.status == CANCELLED and o.leaves_quantity == "0.0000" for o in everything.orders)
    assert reserved_after(gateway, trader, everything.trading_sequence) == "0.000000"
    # The other account's order is untouched, its reservation held.
    assert order_status(gateway, other, others.order_id) == common_pb2.ORDER_STATUS_NEW
    assert balances(gateway, other)["USD"].reserved != "0.000000"
    # Nothing left: 0, not an error, and nothing journaled.
    again = cancel_all(gateway, trader)
    assert (again.cancelled_count, list(again.orders), again.trading_sequence) == (0, [], 0)
    cancel_all(gateway, other)
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_cancel_all_orders_refuses_another_account_and_unknown_or_bad_symbols(gateway: Gateway) -> None:
    account, trader = funded_account(gateway, {"USD": "1000"})
    other_account, _ = funded_account(gateway, {"USD": "1000"})
    resting = gateway.public.SubmitOrder(order(BTC, BUY, "100.00", "0.01"), metadata=key(trader)).order
    cases = [
        (gateway_pb2.CancelAllOrdersRequest(account_id=other_account), grpc.StatusCode.PERMISSION_DENIED,
         RejectReason.ACCOUNT_NOT_PERMITTED, None),
        (gateway_pb2.CancelAllOrdersRequest(symbol="NOPE-USD"), grpc.StatusCode.NOT_FOUND,
         RejectReason.UNKNOWN_SYMBOL, None),
        (gateway_pb2.CancelAllOrdersRequest(symbol="btc usd"), grpc.StatusCode.INVALID_ARGUMENT,
         RejectReason.INVALID_SYMBOL, "symbol"),
        (gateway_pb2.CancelAllOrdersRequest(account_id="bad id"), grpc.StatusCode.INVALID_ARGUMENT,
         RejectReason.INVALID_ACCOUNT_ID, "account_id"),
    ]  # fmt: skip
    for request, code, reason, field in cases:
        error = refused(lambda request=request: gateway.public.CancelAllOrders(request, metadata=key(trader)))
        assert (error.code, error.reason) == (code, reason), request
        if field is not None:
            assert [v.field for v in error.violations] == [field]
    assert order_status(gateway, trader, resting.order_id) == common_pb2.ORDER_STATUS_NEW
    own = gateway.public.CancelAllOrders(
        gateway_pb2.CancelAllOrdersRequest(account_id=account), metadata=key(trader)
    )
    assert own.cancelled_count == 1


def test_the_stream_mass_cancel_command_answers_with_the_count_and_the_reports_once(gateway: Gateway) -> None:
    _, trader = funded_account(gateway, {"USD": "10000", "BTC": "1"})
    _, buyer = funded_account(gateway, {"USD": "10000"})
    submits = [
        gateway_pb2.OrderCommand(submit=order(BTC, BUY, price, "0.01"), tag=f"s{i}")
        for i, price in enumerate(("90.00", "91.00"))
    ]
    mass = gateway_pb2.OrderCommand(mass_cancel=gateway_pb2.CancelAllOrdersRequest(symbol=BTC), tag="mass")
    bad = gateway_pb2.OrderCommand(
        mass_cancel=gateway_pb2.CancelAllOrdersRequest(symbol="NOPE-USD"), tag="bad"
    )
    # A sell far above the market, placed after the mass cancel and then filled by another account:
    # its fill reaches the stream only as a later report, after (in journal order) the cancels.
    later = gateway_pb2.OrderCommand(submit=order(BTC, SELL, "5000.00", "0.01"), tag="later")
    results: dict[str, gateway_pb2.OrderCommandResult] = {}
    later_reports: list[gateway_pb2.ExecutionReport] = []

    def filled_later() -> bool:
        order_id = results["later"].order.order_id
        return any(r.order.order_id == order_id and r.last_quantity for r in later_reports)

    def requests() -> Iterator[gateway_pb2.StreamOrdersRequest]:
        yield gateway_pb2.StreamOrdersRequest(commands=submits)
        wait_for(lambda: {"s0", "s1"} <= results.keys(), what="both orders placed")
        yield gateway_pb2.StreamOrdersRequest(commands=[mass, bad])
        wait_for(lambda: {"mass", "bad"} <= results.keys(), what="the mass cancel answered")
        yield gateway_pb2.StreamOrdersRequest(commands=[later])
        wait_for(lambda: "later" in results, what="the later sell placed")
        gateway.public.SubmitOrder(order(BTC, BUY, "5000.00", "0.01"), metadata=key(buyer))
        wait_for(filled_later, what="the later sell's fill on the stream")

    for response in gateway.public.StreamOrders(requests(), metadata=key(trader)):
        for result in response.results:
            results[result.tag] = result
        later_reports.extend(response.reports)
    placed = {results[f"s{i}"].order.order_id for i in range(2)}
    answer = results["mass"]
    assert (answer.code, answer.cancelled_count, answer.client_order_id) == (0, 2, BTC)
    assert {r.order.order_id for r in answer.reports} == placed
    assert all(r.execution_type == common_pb2.EXECUTION_TYPE_CANCELLED for r in answer.reports)
    assert all(r.order.status == CANCELLED for r in answer.reports)
    # The result carried the cancels: the stream did not send them again as later reports.
    assert [r for r in later_reports if r.order.order_id in placed] == []
    refusal = results["bad"]
    assert refusal.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert refusal.reason == common_pb2.REJECT_REASON_UNKNOWN_SYMBOL and refusal.client_order_id == "NOPE-USD"
    sequence = max(r.trading_sequence for r in answer.reports)
    assert reserved_after(gateway, trader, sequence) == "0.000000"


def test_a_halted_or_closed_instrument_refuses_orders_keeps_its_book_and_takes_cancels(
    gateway: Gateway, system: System
) -> None:
    _, trader = funded_account(gateway, {"USD": "10000", "ETH": "10"})
    resting = gateway.public.SubmitOrder(order(ETH, BUY, "40.00", "0.1"), metadata=key(trader)).order
    other = gateway.public.SubmitOrder(order(ETH, SELL, "60.00", "0.1"), metadata=key(trader)).order
    before = balances(gateway, trader)

    halted = set_status(gateway, ETH, HALTED)
    assert (halted.changed, halted.instrument.status, halted.instrument.symbol) == (True, HALTED, ETH)
    assert not set_status(gateway, ETH, HALTED).changed  # the status it has: a no-op
    assert status_listed(gateway, trader, ETH) == HALTED
    error = refused(lambda: gateway.public.SubmitOrder(order(ETH, BUY, "41.00", "0.1"), metadata=key(trader)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, RejectReason.INSTRUMENT_HALTED)
    assert "halted" in error.message
    # The refused order's reservation was given back; the book is kept and readable.
    assert balances(gateway, trader) == before
    book = gateway.public.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol=ETH), metadata=key(trader))
    assert [(level.price, level.quantity) for level in book.bids] == [("40.00", "0.1000")]
    # Another instrument still trades.
    assert status_listed(gateway, trader, BTC) == TRADING

    closed = set_status(gateway, ETH, CLOSED)
    assert (closed.changed, closed.instrument.status) == (True, CLOSED)
    error = refused(
        lambda: gateway.public.SubmitOrder(order(ETH, SELL, "61.00", "0.1"), metadata=key(trader))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, RejectReason.INSTRUMENT_CLOSED)
    cancelled = gateway.public.CancelOrder(
        gateway_pb2.CancelOrderRequest(order_id=resting.order_id), metadata=key(trader)
    ).order
    assert cancelled.status == CANCELLED
    assert cancel_all(gateway, trader, ETH).cancelled_count == 1  # mass cancels work too

    resumed = set_status(gateway, ETH, TRADING)
    assert (resumed.changed, resumed.instrument.status) == (True, TRADING)
    accepted = gateway.public.SubmitOrder(order(ETH, BUY, "41.00", "0.1"), metadata=key(trader)).order
    assert accepted.status == common_pb2.ORDER_STATUS_NEW
    cancel_all(gateway, trader)
    assert order_status(gateway, trader, other.order_id) == CANCELLED
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_set_instrument_status_refuses_bad_input_and_needs_the_admin_key(gateway: Gateway) -> None:
    admin = gateway.admin
    md = gateway.admin_metadata()
    cases = [
        (gateway_pb2.SetInstrumentStatusRequest(symbol=BTC), grpc.StatusCode.INVALID_ARGUMENT,
         RejectReason.INVALID_INSTRUMENT_STATUS, "status"),
        (gateway_pb2.SetInstrumentStatusRequest(symbol=BTC, status=99),
        grpc.StatusCode.INVALID_ARGUMENT,  # type: ignore[arg-type]
         RejectReason.INVALID_INSTRUMENT_STATUS, "status"),
        (gateway_pb2.SetInstrumentStatusRequest(status=HALTED), grpc.StatusCode.INVALID_ARGUMENT,
         RejectReason.INVALID_SYMBOL, "symbol"),
        (gateway_pb2.SetInstrumentStatusRequest(symbol="NOPE-USD", status=HALTED), grpc.StatusCode.NOT_FOUND,
         RejectReason.UNKNOWN_SYMBOL, None),
    ]  # fmt: skip
    for request, code, reason, field in cases:
        error = refused(lambda request=request: admin.SetInstrumentStatus(request, metadata=md))
        assert (error.code, error.reason) == (code, reason), request
        if field is not None:
            assert [v.field for v in error.violations] == [field]
    halt = gateway_pb2.SetInstrumentStatusRequest(symbol=BTC, status=HALTED)
    expire = gateway_pb2.ExpireDayOrdersRequest()
    wrong = (("x-admin-key", "wrong"),)
    for call, reason in (
        (lambda: admin.SetInstrumentStatus(halt), RejectReason.MISSING_ADMIN_KEY),
        (lambda: admin.ExpireDayOrders(expire), RejectReason.MISSING_ADMIN_KEY),
        (lambda: admin.SetInstrumentStatus(halt, metadata=wrong), RejectReason.INVALID_ADMIN_KEY),
        (lambda: admin.ExpireDayOrders(expire, metadata=wrong), RejectReason.INVALID_ADMIN_KEY),
    ):
        error = refused(call)
        assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)
    error = refused(
        lambda: admin.ExpireDayOrders(gateway_pb2.ExpireDayOrdersRequest(symbol="NOPE-USD"), metadata=md)
    )
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_SYMBOL)
    _, api_key = funded_account(gateway, {})
    assert status_listed(gateway, api_key, BTC) == TRADING  # nothing changed


def test_expire_day_orders_expires_day_orders_only_and_releases_them(
    gateway: Gateway, system: System
) -> None:
    account, trader = funded_account(gateway, {"USD": "10000"})
    day_btc = place_day_order(system, account, BTC, 9_000, 100)  # 90.00 x 0.01
    day_eth = place_day_order(system, account, ETH, 3_000, 1_000)  # 30.00 x 0.1
    gtc = gateway.public.SubmitOrder(order(BTC, BUY, "80.00", "0.01"), metadata=key(trader)).order
    md = gateway.admin_metadata()

    one = gateway.admin.ExpireDayOrders(gateway_pb2.ExpireDayOrdersRequest(symbol=ETH), metadata=md)
    assert one.expired_count == 1 and [o.order_id for o in one.orders] == [day_eth]
    assert one.orders[0].status == common_pb2.ORDER_STATUS_EXPIRED
    every = gateway.admin.ExpireDayOrders(gateway_pb2.ExpireDayOrdersRequest(), metadata=md)
    assert every.expired_count == 1 and [o.order_id for o in every.orders] == [day_btc]
    assert order_status(gateway, trader, day_btc) == common_pb2.ORDER_STATUS_EXPIRED
    assert order_status(gateway, trader, gtc.order_id) == common_pb2.ORDER_STATUS_NEW  # GTC stays
    assert gateway.admin.ExpireDayOrders(gateway_pb2.ExpireDayOrdersRequest(), metadata=md).expired_count == 0
    # Only the GTC order's reservation is left: 80.00 x 0.01 plus the larger fee rate (20 bps).
    wait_for(lambda: balances(gateway, trader)["USD"].reserved == "0.801600", what="the DAY orders released")
    cancel_all(gateway, trader)
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_the_status_survives_a_sigkill_and_trading_unreachable_cancels_nothing(
    gateway: Gateway, system: System
) -> None:
    _, trader = funded_account(gateway, {"USD": "10000"})
    resting = gateway.public.SubmitOrder(order(BTC, BUY, "70.00", "0.01"), metadata=key(trader)).order
    set_status(gateway, BTC, HALTED)

    assert system.services.kill("trading") == -9
    reasons: list[RejectReason] = []

    def known_unreachable() -> bool:
        # The first call may find the gateway's stream to trading breaking (OUTCOME_UNKNOWN: a mass
        # cancel may have been under way); once the gateway sees trading down, nothing is sent.
        error = refused(lambda: cancel_all(gateway, trader))
        assert error.code == grpc.StatusCode.UNAVAILABLE, error
        reasons.append(error.reason)
        return error.reason == RejectReason.TRADING_UNAVAILABLE

    wait_for(known_unreachable, what="the gateway to see trading down")
    assert set(reasons) <= {
        RejectReason.OUTCOME_UNKNOWN,
        RejectReason.NOT_SENT,
        RejectReason.TRADING_UNAVAILABLE,
    }
    system.services.start("trading")

    def refused_as_halted() -> bool:
        try:
            gateway.public.SubmitOrder(order(BTC, BUY, "71.00", "0.01"), metadata=key(trader))
        except grpc.RpcError as failure:
            return failure.code() == grpc.StatusCode.FAILED_PRECONDITION and "halted" in (
                failure.details() or ""
            )
        raise AssertionError("a halted instrument accepted an order after the restart")

    wait_for(refused_as_halted, timeout_seconds=30, what="trading back, the instrument still halted")
    assert status_listed(gateway, trader, BTC) == HALTED
    assert order_status(gateway, trader, resting.order_id) == common_pb2.ORDER_STATUS_NEW  # nothing cancelled
    assert set_status(gateway, BTC, TRADING).changed
    assert cancel_all(gateway, trader).cancelled_count == 1
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_the_sdk_cancels_all_halts_resumes_and_expires_sync_and_async(
    gateway: Gateway, system: System
) -> None:
    account_id, api_key = funded_account(gateway, {"USD": "10000"})
    place_day_order(system, account_id, ETH, 2_000, 100)  # 20.00 x 0.01
    with (
        Client.connect(system.gateway, admin_key=system.admin_key) as admin,
        Client.connect(system.gateway, api_key=api_key) as client,
    ):
        resting = client.submit_order(BTC, "buy", Decimal("60.00"), Decimal("0.01"))
        halted = admin.set_instrument_status(BTC, "halted")
        assert (halted.symbol, halted.status) == (BTC, InstrumentStatus.HALTED)
        assert next(i for i in client.list_instruments() if i.symbol == BTC).status == InstrumentStatus.HALTED
        with pytest.raises(BackboneError) as raised:
            client.submit_order(BTC, "buy", Decimal("61.00"), Decimal("0.01"))
        assert (raised.value.code, raised.value.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            RejectReason.INSTRUMENT_HALTED,
        )
        with pytest.raises(BackboneError) as raised:  # refused before it is sent
            admin.set_instrument_status(BTC, "paused")
        assert raised.value.reason == RejectReason.INVALID_INSTRUMENT_STATUS
        assert [v.field for v in raised.value.violations] == ["status"]
        assert admin.set_instrument_status(BTC, InstrumentStatus.TRADING).status == InstrumentStatus.TRADING
        cancelled = client.cancel_all_orders(BTC)
        assert [(o.order_id, o.status) for o in cancelled] == [(resting.order_id, OrderStatus.CANCELLED)]
        # Only the DAY order's reservation is left: 20.00 x 0.01 plus 20 bps.
        assert client.get_balances()["USD"].reserved == Decimal("0.200400")
        assert client.cancel_all_orders() != []  # the DAY order is open too: a mass cancel takes it

    async def scenario() -> None:
        async with (
            await AsyncClient.connect(system.gateway, admin_key=system.admin_key) as admin,
            await AsyncClient.connect(system.gateway, api_key=api_key) as client,
        ):
            second_day = place_day_order(system, account_id, ETH, 2_000, 100)
            expired = await admin.expire_day_orders(ETH)
            assert [o.order_id for o in expired] == [second_day]
            assert await admin.expire_day_orders() == []
            closed = await admin.set_instrument_status(ETH, "closed")
            assert closed.status == InstrumentStatus.CLOSED
            assert (await admin.set_instrument_status(ETH, "trading")).status == InstrumentStatus.TRADING
            placed = await client.submit_order(ETH, "buy", Decimal("20.00"), Decimal("0.01"))
            assert [o.order_id for o in await client.cancel_all_orders()] == [placed.order_id]
            assert (await client.get_balances())["USD"].reserved == 0

    asyncio.run(scenario())
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_trading_refuses_bad_control_commands_changing_nothing(system: System, gateway: Gateway) -> None:
    with grpc.insecure_channel(system.services.address("trading")) as channel:
        trading = trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
        before = trading.GetEngineState(trading_pb2.GetEngineStateRequest())
        status, expire = trading_pb2.SetInstrumentStatus, trading_pb2.ExpireOrders
        day = common_pb2.TIME_IN_FORCE_DAY
        cases = [
            (trading.SetInstrumentStatus, trading_pb2.SetInstrumentStatusRequest(command=status(symbol=BTC)),
             grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_COMMAND, "command.status"),
            (trading.SetInstrumentStatus,
             trading_pb2.SetInstrumentStatusRequest(command=status(status=HALTED)),
             grpc.StatusCode.INVALID_ARGUMENT, RejectReason.REQUIRED, "command.symbol"),
            (trading.SetInstrumentStatus,
             trading_pb2.SetInstrumentStatusRequest(command=status(symbol="NOPE-USD", status=HALTED)),
             grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_SYMBOL, None),
            (trading.SetInstrumentStatus,
             trading_pb2.SetInstrumentStatusRequest(command=status(symbol="x" * 5000, status=HALTED)),
             grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_SYMBOL, "command.symbol"),
            (trading.ExpireOrders, trading_pb2.ExpireOrdersRequest(command=expire()),
             grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_COMMAND, "command.time_in_force"),
            (trading.ExpireOrders,
             trading_pb2.ExpireOrdersRequest(command=expire(time_in_force=common_pb2.TIME_IN_FORCE_GTC)),
             grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_COMMAND, "command.time_in_force"),
            (trading.ExpireOrders,
             trading_pb2.ExpireOrdersRequest(command=expire(symbol="NOPE-USD", time_in_force=day)),
             grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_SYMBOL, None),
        ]  # fmt: skip
        for method, request, code, reason, field in cases:
            error = refused(lambda method=method, request=request: method(request))
            assert (error.code, error.reason) == (code, reason), request
            if field is not None:
                assert [v.field for v in error.violations] == [field]
        after = trading.GetEngineState(trading_pb2.GetEngineStateRequest())
        assert (after.journal_sequence, after.state_hash) == (before.journal_sequence, before.state_hash)
