"""Cancel on disconnect for StreamOrders: a stream that asked for it has its open orders cancelled
and their reservations released when it ends, however it ends (the call cancelled under it, the
client closing its side, the gateway stopping); one that did not ask keeps them."""

from __future__ import annotations

import time
from decimal import Decimal

import grpc
import pytest

from backbone.client import Client, OrderStatus
from tests.conftest import System
from tests.integration.gateway_calls import BUY, invariants_hold, order
from tests.integration.order_stream_calls import OK, OrderStream, submit

pytestmark = pytest.mark.integration

SYMBOL = "ADA-CHF"
# How long a test waits for the gateway to have cancelled (or for it to be clear it has not).
WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def trader(system: System) -> tuple[Client, str]:
    admin = Client.connect(system.gateway, admin_key=system.admin_key)
    admin.create_asset("ADA", 6)
    admin.create_asset("CHF", 4)
    admin.create_instrument(
        SYMBOL, "ADA", "CHF", tick_size=Decimal("0.01"), lot_size=Decimal("1"),
        max_quantity=Decimal("100000"), max_price=Decimal("1000"), maker_fee_bps=0, taker_fee_bps=10,
    )  # fmt: skip
    account = admin.create_account()
    admin.deposit(account.account_id, "CHF", Decimal("100000"))
    return Client.connect(system.gateway, api_key=account.api_key), account.api_key


def place_resting(system: System, api_key: str, *, cancel_on_disconnect: bool, close: str) -> list[str]:
    """Three bids far below any ask on a stream of its own; then the stream ends: "drop" cancels
    the call under it (what a dead client's connection does), "close" closes the client's side
    first (the SDK's stream.close())."""
    with grpc.insecure_channel(system.gateway) as channel:
        stream = OrderStream(channel, api_key, cancel_on_disconnect=cancel_on_disconnect)
        stream.send(
            *(submit(order(SYMBOL, BUY, f"{Decimal('1.00') + Decimal(i) / 100}", "10")) for i in range(3))
        )
        stream.wait_results(3, WAIT_SECONDS)
        order_ids = [result.order.order_id for _, result in sorted(stream.results.items())]
        assert all(result.code == OK for result in stream.results.values()), stream.results
        if close == "close":
            stream.close()
            assert stream.ended.wait(WAIT_SECONDS) and stream.error is None
        else:
            stream.cut()
            assert stream.ended.wait(WAIT_SECONDS)
    return order_ids


def statuses(client: Client, order_ids: list[str]) -> list[OrderStatus]:
    return [client.get_order(order_id).status for order_id in order_ids]


def until_statuses(client: Client, order_ids: list[str], wanted: OrderStatus) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while statuses(client, order_ids) != [wanted] * len(order_ids):
        assert time.monotonic() < deadline, f"orders not all {wanted}: {statuses(client, order_ids)}"
        time.sleep(0.05)


def reserved_chf(client: Client) -> Decimal:
    balance = client.get_balances().get("CHF")
    return balance.reserved if balance is not None else Decimal(0)


@pytest.mark.parametrize("close", ["drop", "close"])
def test_a_stream_that_asked_has_its_open_orders_cancelled_when_it_ends(
    system: System, trader: tuple[Client, str], close: str
) -> None:
    client, api_key = trader
    before = reserved_chf(client)
    order_ids = place_resting(system, api_key, cancel_on_disconnect=True, close=close)
    until_statuses(client, order_ids, OrderStatus.CANCELLED)
    deadline = time.monotonic() + WAIT_SECONDS
    while reserved_chf(client) != before:  # the releases reach risk after the cancels
        assert time.monotonic() < deadline, "the cancelled orders' reservations were not released"
        time.sleep(0.05)
    invariants_hold(system.database_url, system.redis_url)


@pytest.mark.parametrize("close", ["drop", "close"])
def test_orders_stay_when_the_stream_did_not_ask(
    system: System, trader: tuple[Client, str], close: str
) -> None:
    client, api_key = trader
    order_ids = place_resting(system, api_key, cancel_on_disconnect=False, close=close)
    # A stream that asked for it is cancelled within moments of its end: watch for a while.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert statuses(client, order_ids) == [OrderStatus.NEW] * 3
        time.sleep(0.1)
    for order_id in order_ids:
        client.cancel_order(order_id)


def test_a_gateway_that_stops_cancels_the_open_orders_of_streams_that_asked(
    system: System, trader: tuple[Client, str]
) -> None:
    _, api_key = trader
    client = Client.connect(system.gateway, api_key=api_key)
    stream = client.order_stream(events="none", cancel_on_disconnect=True).__enter__()
    order_ids = [stream.submit(SYMBOL, "buy", Decimal("2.00"), Decimal("5")).result(WAIT_SECONDS).order_id]
    assert system.services.stop("gateway") == 0  # SIGTERM: the stream ends within the grace period
    system.services.start("gateway")
    client.close()
    after = Client.connect(system.gateway, api_key=api_key)
    until_statuses(after, order_ids, OrderStatus.CANCELLED)
    invariants_hold(system.database_url, system.redis_url)
