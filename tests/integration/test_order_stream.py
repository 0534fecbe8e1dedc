"""GatewayService.StreamOrders end to end, against real processes and storage.

Each command of a batch is answered on its own (a bad one does not fail the others or the
stream); a whole batch sent again after a dropped stream is answered with the original orders;
a client that does not read is held back by flow control (the gateway stops reading; the orders
placed stay bounded) and gets every answer once it reads; concurrent batches for one account
get exactly the affordable number of orders; SIGTERM ends the stream after answering every
command read, and every order acknowledged is in the book after the restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import from_rpc_error
from gateway.order_stream import MAX_IN_FLIGHT
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    balances,
    funded_account,
    invariants_hold,
    key,
    order,
    setup_market,
    unique,
    wait_for,
)
from tests.integration.order_stream_calls import OK, OrderStream, cancel, submit

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def market(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "SOL-USD", "SOL")
        yield gateway


def test_each_command_of_a_batch_is_answered_on_its_own(system: System, market: Gateway) -> None:
    _, buyer = funded_account(market, {"USD": "1000"})
    _, seller = funded_account(market, {"SOL": "10"})
    stream = OrderStream(market.channel, buyer)
    seller_stream = OrderStream(market.channel, seller)
    try:
        commands = [
            submit(order("SOL-USD", BUY, "10.00", "2", client_order_id="rest-1"), tag="t0"),
            submit(order("SOL-USD", BUY, "10.001", "1")),  # off the tick grid
            submit(order("NOPE-USD", BUY, "10.00", "1")),  # no such instrument
            submit(order("SOL-USD", BUY, "10.00", "1"), tag="has space"),
            gateway_pb2.OrderCommand(),  # no command at all
            submit(order("SOL-USD", BUY, "10.00", "900")),  # more than the account holds
            cancel("no-such-order"),
            submit(order("SOL-USD", BUY, "9.00", "1", client_order_id="rest-1")),  # id of command 0
            submit(order("SOL-USD", BUY, "1.00", "1", client_order_id="rest-2\n")),  # control character
        ]
        stream.send(*commands)
        stream.wait_results(len(commands))
        assert stream.first is not None and stream.first.max_in_flight == MAX_IN_FLIGHT
        results = [stream.results[(1, index)] for index in range(len(commands))]

        placed = results[0]
        assert (placed.code, placed.tag, placed.client_order_id) == (OK, "t0", "rest-1")
        assert placed.order.status == common_pb2.ORDER_STATUS_NEW and placed.order.leaves_quantity == "2.0000"
        assert [r.execution_type for r in placed.reports] == [common_pb2.EXECUTION_TYPE_ACCEPTED]

        def refusal(result: gateway_pb2.OrderCommandResult) -> tuple[str, str, str]:
            return (status_name(result.code), RejectReason.from_number(result.reason), result.field)

        assert refusal(results[1]) == ("INVALID_ARGUMENT", "INVALID_PRICE", "price")
        assert refusal(results[2]) == ("INVALID_ARGUMENT", "UNKNOWN_SYMBOL", "symbol")
        assert refusal(results[3]) == ("INVALID_ARGUMENT", "INVALID_TAG", "tag")
        assert refusal(results[4]) == ("INVALID_ARGUMENT", "REQUIRED", "command")
        assert refusal(results[5]) == ("FAILED_PRECONDITION", "INSUFFICIENT_BALANCE", "")
        assert refusal(results[6]) == ("NOT_FOUND", "UNKNOWN_ORDER", "")
        assert refusal(results[7]) == ("ALREADY_EXISTS", "DUPLICATE_CLIENT_ORDER_ID", "")
        assert results[7].order.order_id == placed.order.order_id
        assert refusal(results[8]) == ("INVALID_ARGUMENT", "INVALID_CLIENT_ORDER_ID", "client_order_id")
        assert all(result.message for result in results[1:])

        # The stream keeps serving: someone else's sell fills the resting buy, and the fill comes
        # to the buyer's stream as a later report, once.
        seller_stream.send(submit(order("SOL-USD", SELL, "10.00", "0.5")))
        seller_stream.wait_results(1)
        sold = seller_stream.results[(1, 0)]
        assert sold.code == OK and sold.order.status == common_pb2.ORDER_STATUS_FILLED
        assert [r.execution_type for r in sold.reports][-1] == common_pb2.EXECUTION_TYPE_TRADE
        stream.wait_reports(lambda reports: len(reports) >= 1)
        (fill,) = stream.reports
        assert fill.execution_type == common_pb2.EXECUTION_TYPE_TRADE
        assert (fill.order.order_id, fill.last_quantity, fill.last_price) == (
            placed.order.order_id,
            "0.5000",
            "10.00",
        )
        assert fill.order.leaves_quantity == "1.5000"

        # A cancel on the stream, then the stream closes cleanly once everything is answered.
        stream.send(cancel(placed.order.order_id, tag="c"))
        stream.wait_results(len(commands) + 1)
        cancelled = stream.results[(2, 0)]
        assert (cancelled.code, cancelled.tag, cancelled.client_order_id) == (OK, "c", placed.order.order_id)
        assert cancelled.order.status == common_pb2.ORDER_STATUS_CANCELLED
        stream.close()
        assert stream.ended.wait(10) and stream.error is None
        assert len(stream.reports) == 1  # each later report once: the cancel's is in its result
    finally:
        stream.cut()
        seller_stream.cut()
    invariants_hold(system.database_url, system.redis_url)


def status_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    raise AssertionError(f"unknown status code {code}")


def test_a_batch_sent_again_after_a_dropped_stream_is_answered_with_the_original_orders(
    system: System, market: Gateway
) -> None:
    _, api_key = funded_account(market, {"USD": "10000"})
    batch = [submit(order("SOL-USD", BUY, "2.00", "1", client_order_id=unique("again"))) for _ in range(50)]
    first = OrderStream(market.channel, api_key, read=False)
    first.send(*batch)
    # The gateway read the batch (its orders reach the book), but the caller never saw a result.
    wait_for(lambda: resting(market, api_key, "2.00") >= Decimal(50), what="the first batch on the book")
    first.cut()

    second = OrderStream(market.channel, api_key)
    try:
        second.send(*batch)
        second.wait_results(len(batch))
    finally:
        second.cut()
    answers = [second.results[(1, index)] for index in range(len(batch))]
    assert all(answer.code == OK for answer in answers), [a.message for a in answers if a.code != OK]
    assert len({answer.order.order_id for answer in answers}) == len(batch)
    assert resting(market, api_key, "2.00") == Decimal(50)  # each order once
    reserved = Decimal(balances(market, api_key)["USD"].reserved)
    assert reserved == Decimal(50) * Decimal("2.00") * Decimal("1.002")
    invariants_hold(system.database_url, system.redis_url)


def test_thousands_of_orders_sent_again_at_once_are_each_answered_with_the_original(
    system: System, market: Gateway
) -> None:
    """A client resends its whole window after a dropped stream: every client order id is held,
    and each is confirmed with trading at once (beyond a thousand concurrent calls, gRPC cancels
    some: the gateway bounds its calls instead of failing those orders)."""
    _, api_key = funded_account(market, {"USD": "100000"})
    orders = [order("SOL-USD", BUY, "2.50", "1", client_order_id=unique("storm")) for _ in range(3000)]
    first = OrderStream(market.channel, api_key)
    for start in range(0, len(orders), 1000):
        first.send(*[submit(request) for request in orders[start : start + 1000]])
    first.wait_results(len(orders), 120)
    first.cut()
    placed = {result.client_order_id: result.order.order_id for result in first.results.values()}
    assert len(placed) == len(orders)

    second = OrderStream(market.channel, api_key)
    try:
        for start in range(0, len(orders), 1000):
            second.send(*[submit(request) for request in orders[start : start + 1000]])
        second.wait_results(len(orders), 120)
    finally:
        second.cut()
    refused = [r.message for r in second.results.values() if r.code != OK]
    assert not refused, (len(refused), refused[:3])
    assert {r.client_order_id: r.order.order_id for r in second.results.values()} == placed
    assert resting(market, api_key, "2.50") == Decimal(len(orders))  # each order once


def resting(gateway: Gateway, api_key: str, price: str) -> Decimal:
    book = gateway.public.GetOrderBook(
        gateway_pb2.GetOrderBookRequest(symbol="SOL-USD", depth=1000), metadata=key(api_key)
    )
    return sum((Decimal(level.quantity) for level in book.bids if level.price == price), Decimal(0))


def test_a_client_that_does_not_read_is_held_back_then_gets_every_answer(system: System) -> None:
    # A small receive window (no BDP growth) so the answers the client leaves unread fill it fast.
    with grpc.insecure_channel(system.gateway, options=[("grpc.http2.bdp_probe", 0)]) as channel:
        gateway = Gateway(channel, system.admin_key)
        _, api_key = funded_account(gateway, {"USD": "100000"})
        total = 4 * MAX_IN_FLIGHT
        stream = OrderStream(channel, api_key, read=False)
        try:
            for start in range(0, total, 1000):
                stream.send(
                    *[
                        submit(order("SOL-USD", BUY, "3.00", "1"))
                        for _ in range(start, min(total, start + 1000))
                    ]
                )

            def placed() -> Decimal:
                return resting(gateway, api_key, "3.00")

            # The gateway stops reading at MAX_IN_FLIGHT unanswered commands plus what the unread
            # window holds: the orders placed stop growing well short of the total.
            previous = Decimal(-1)
            while placed() != previous:
                previous = placed()
                time.sleep(1.0)
            assert 0 < previous < total // 2, previous
            stream.start_reading()
            stream.wait_results(total, timeout_seconds=120)
        finally:
            stream.cut()
        assert all(result.code == OK for result in stream.results.values())
        assert resting(gateway, api_key, "3.00") == Decimal(total)
    invariants_hold(system.database_url, system.redis_url)


def test_concurrent_batches_for_one_account_get_exactly_the_affordable_orders(
    system: System, market: Gateway
) -> None:
    # 100 orders of 1 x 5.00 (+ 20 bps headroom) cost 501.00: the account can afford 99 of 500.
    _, api_key = funded_account(market, {"USD": "500"})
    streams = [OrderStream(market.channel, api_key) for _ in range(5)]
    try:
        for stream in streams:
            stream.send(*[submit(order("SOL-USD", BUY, "5.00", "1")) for _ in range(100)])
        for stream in streams:
            stream.wait_results(100)
    finally:
        for stream in streams:
            stream.cut()
    outcomes = [result for stream in streams for result in stream.results.values()]
    accepted = [result for result in outcomes if result.code == OK]
    refused = {RejectReason.from_number(result.reason) for result in outcomes if result.code != OK}
    assert len(accepted) == 99
    assert refused == {RejectReason.INSUFFICIENT_BALANCE}
    usd = balances(market, api_key)["USD"]
    assert Decimal(usd.reserved) == Decimal(99) * Decimal("5.01")
    assert Decimal(usd.available) == Decimal("500") - Decimal(99) * Decimal("5.01")
    invariants_hold(system.database_url, system.redis_url)


def test_sigterm_ends_the_stream_after_answering_every_command_read(
    system_factory: Callable[..., System],
) -> None:
    system = system_factory()
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "SOL-USD", "SOL")
        _, api_key = funded_account(gateway, {"USD": "1000000"})
        stream = OrderStream(channel, api_key)
        stop = threading.Event()

        def keep_sending() -> None:
            while not stop.is_set() and not stream.ended.is_set():
                stream.send(*[submit(order("SOL-USD", BUY, "4.00", "1")) for _ in range(100)])
                time.sleep(0.01)

        sender = threading.Thread(target=keep_sending, daemon=True)
        sender.start()
        stream.wait_results(500)
        exit_code = system.services.stop("gateway")
        stop.set()
        sender.join()
        assert stream.ended.wait(30)
    assert exit_code == 0
    assert stream.error is not None
    failure = from_rpc_error(stream.error)
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING)
    acknowledged = [r.order.order_id for r in stream.results.values() if r.code == OK]
    assert len(acknowledged) >= 500
    # Every command the gateway read was answered: results come per request in full.
    by_request: dict[int, int] = {}
    for number, _ in stream.results:
        by_request[number] = by_request.get(number, 0) + 1
    assert set(by_request.values()) == {100}

    system.services.start("gateway")
    system.services.wait_healthy("gateway")
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        for order_id in acknowledged[:: max(1, len(acknowledged) // 50)]:
            found = gateway.public.GetOrder(
                gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key)
            )
            assert found.order.status == common_pb2.ORDER_STATUS_NEW
        assert resting(gateway, api_key, "4.00") >= Decimal(len(acknowledged))
    invariants_hold(system.database_url, system.redis_url)


def test_a_fill_racing_a_cancel_reaches_the_resting_orders_stream_once(
    system: System, market: Gateway
) -> None:
    # The fill comes from the feed, the cancel's answer from trading: either may reach the gateway
    # first. Whatever the order, a fill of the resting order is reported on its stream, once.
    _, maker_key = funded_account(market, {"SOL": "1000"})
    _, taker_key = funded_account(market, {"USD": "100000"})
    maker = OrderStream(market.channel, maker_key)
    taker = OrderStream(market.channel, taker_key)
    try:
        cancels = 0  # of the taker's resting buys
        for round_ in range(1, 31):
            maker.send(submit(order("SOL-USD", SELL, "7.00", "1")))
            maker.wait_results(2 * round_ - 1)
            resting = maker.results[(2 * round_ - 1, 0)]
            assert resting.code == OK, resting.message
            taker.send(submit(order("SOL-USD", BUY, "7.00", "0.5")))
            maker.send(cancel(resting.order.order_id))
            taker.wait_results(round_ + cancels)
            maker.wait_results(2 * round_)
            bought = taker.results[(round_ + cancels, 0)]
            cancelled = maker.results[(2 * round_, 0)]
            assert cancelled.code == OK and cancelled.order.status == common_pb2.ORDER_STATUS_CANCELLED
            trades = [r for r in bought.reports if r.execution_type == common_pb2.EXECUTION_TYPE_TRADE]
            if trades:  # the buy met the resting sell before the cancel: the maker hears of it once
                assert cancelled.order.filled_quantity == "0.5000"
                maker.wait_reports(
                    lambda reports, order_id=resting.order.order_id: any(
                        r.order.order_id == order_id for r in reports
                    )
                )
            else:  # the cancel came first: the buy rests; take it away before the next round
                assert cancelled.order.filled_quantity == "0.0000"
                taker.send(cancel(bought.order.order_id))
                taker.wait_results(round_ + cancels + 1)
                cancels += 1
        fills = [r for r in maker.reports if r.execution_type == common_pb2.EXECUTION_TYPE_TRADE]
        assert len({r.trade_id for r in fills}) == len(fills)  # each once
        assert all(r.execution_type == common_pb2.EXECUTION_TYPE_TRADE for r in maker.reports)
    finally:
        maker.cut()
        taker.cut()
    invariants_hold(system.database_url, system.redis_url)
