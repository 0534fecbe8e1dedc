"""One order's whole path: gateway -> risk -> trading -> settlement, against real processes and storage."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
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
    refused,
    settles_to,
    setup_market,
    trade_entries,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USD"


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gw = Gateway(channel, system.admin_key)
        setup_market(gw, SYMBOL, "BTC")
        yield gw


def test_crossing_orders_trade_and_settle_exactly(gateway: Gateway, system: System) -> None:
    alice, alice_key = funded_account(gateway, {"USD": "100000"})
    bob, bob_key = funded_account(gateway, {"BTC": "2"})

    sell = gateway.public.SubmitOrder(order(SYMBOL, SELL, "50000.00", "0.5"), metadata=key(bob_key))
    assert sell.order.status == common_pb2.ORDER_STATUS_NEW
    assert [r.execution_type for r in sell.reports] == [common_pb2.EXECUTION_TYPE_ACCEPTED]
    assert balances(gateway, bob_key)["BTC"].reserved == "0.50000000"
    assert balances(gateway, bob_key)["BTC"].available == "1.50000000"

    buy = gateway.public.SubmitOrder(order(SYMBOL, BUY, "50100.00", "0.5"), metadata=key(alice_key))
    assert buy.order.status == common_pb2.ORDER_STATUS_FILLED
    assert buy.order.filled_quantity == "0.5000"
    assert buy.order.average_price == "50000.00"
    trade = [r for r in buy.reports if r.execution_type == common_pb2.EXECUTION_TYPE_TRADE]
    assert len(trade) == 1
    assert trade[0].last_price == "50000.00"
    assert trade[0].last_quantity == "0.5000"
    assert trade[0].liquidity_side == common_pb2.LIQUIDITY_SIDE_TAKER
    assert trade[0].last_fee == "50.000000"  # 20 bps of 25,000 USD

    seller_view = gateway.public.GetOrder(
        gateway_pb2.GetOrderRequest(order_id=sell.order.order_id), metadata=key(bob_key)
    )
    assert seller_view.order.status == common_pb2.ORDER_STATUS_FILLED

    # The ledger (settlement) and the reservations (risk) catch up asynchronously: poll the whole view.
    def view() -> tuple[tuple[str, str, str], ...]:
        a, b = balances(gateway, alice_key), balances(gateway, bob_key)
        return tuple(
            (owner[asset].total, owner[asset].reserved, owner[asset].available)
            for owner, asset in ((a, "USD"), (a, "BTC"), (b, "BTC"), (b, "USD"))
            if asset in owner
        )

    settles_to(
        view,
        (
            ("74950.000000", "0.000000", "74950.000000"),
            ("0.50000000", "0.00000000", "0.50000000"),
            ("1.50000000", "0.00000000", "1.50000000"),
            ("24975.000000", "0.000000", "24975.000000"),
        ),
        what="both accounts' balances after the trade",
    )

    rows = trade_entries(system.database_url, alice)
    entry_ids = {row[0] for row in rows}
    assert len(entry_ids) == 1, rows
    entry = entry_ids.pop()
    assert sorted((account, asset, amount) for _, account, asset, amount in rows) == sorted(
        [
            (alice, "BTC", 50_000_000),  # +0.5 BTC in satoshis
            (bob, "BTC", -50_000_000),
            (alice, "USD", -25_050_000_000),  # 25,000 + 50 fee, in micro-dollars
            (bob, "USD", 24_975_000_000),  # 25,000 - 25 fee
            ("system:fees", "USD", 75_000_000),
        ]
    ), f"entry {entry}"
    invariants_hold(system.database_url, system.redis_url)


def test_cancel_releases_the_reservation(gateway: Gateway) -> None:
    _, carol_key = funded_account(gateway, {"USD": "1000"})
    placed = gateway.public.SubmitOrder(order(SYMBOL, BUY, "100.00", "2"), metadata=key(carol_key))
    assert placed.order.status == common_pb2.ORDER_STATUS_NEW
    usd = balances(gateway, carol_key)["USD"]
    assert (usd.total, usd.reserved, usd.available) == ("1000.000000", "200.400000", "799.600000")

    cancelled = gateway.public.CancelOrder(
        gateway_pb2.CancelOrderRequest(order_id=placed.order.order_id), metadata=key(carol_key)
    )
    assert cancelled.order.status == common_pb2.ORDER_STATUS_CANCELLED
    assert cancelled.order.cancelled_quantity == "2.0000"

    def released() -> bool:
        return balances(gateway, carol_key)["USD"].reserved == "0.000000"

    wait_for(released, what="the reservation being released")
    assert balances(gateway, carol_key)["USD"].available == "1000.000000"

    again = refused(
        lambda: gateway.public.CancelOrder(
            gateway_pb2.CancelOrderRequest(order_id=placed.order.order_id), metadata=key(carol_key)
        )
    )
    assert (again.code, again.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ORDER_NOT_OPEN")


def test_insufficient_balance_is_refused_before_matching(gateway: Gateway) -> None:
    _, seller_key = funded_account(gateway, {"BTC": "1"})
    _, poor_key = funded_account(gateway, {"USD": "10"})
    resting = gateway.public.SubmitOrder(order(SYMBOL, SELL, "900.00", "1"), metadata=key(seller_key))
    book_before = gateway.public.GetOrderBook(
        gateway_pb2.GetOrderBookRequest(symbol=SYMBOL), metadata=key(poor_key)
    )

    error = refused(
        lambda: gateway.public.SubmitOrder(order(SYMBOL, BUY, "900.00", "1"), metadata=key(poor_key))
    )
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "INSUFFICIENT_BALANCE"

    book_after = gateway.public.GetOrderBook(
        gateway_pb2.GetOrderBookRequest(symbol=SYMBOL), metadata=key(poor_key)
    )
    assert book_after == book_before
    usd = balances(gateway, poor_key)["USD"]
    assert (usd.total, usd.reserved, usd.available) == ("10.000000", "0.000000", "10.000000")
    still = gateway.public.GetOrder(
        gateway_pb2.GetOrderRequest(order_id=resting.order.order_id), metadata=key(seller_key)
    )
    assert still.order.status == common_pb2.ORDER_STATUS_NEW


def test_reused_client_order_id_is_refused(gateway: Gateway) -> None:
    _, dave_key = funded_account(gateway, {"USD": "1000"})
    first = gateway.public.SubmitOrder(
        order(SYMBOL, BUY, "1.00", "1", client_order_id="same-id"), metadata=key(dave_key)
    )
    # The same order again is a retry: answered with the original order, nothing placed twice.
    again = gateway.public.SubmitOrder(
        order(SYMBOL, BUY, "1.00", "1", client_order_id="same-id"), metadata=key(dave_key)
    )
    assert again.order.order_id == first.order.order_id
    # A different order under the same id is refused, naming the order that holds it.
    error = refused(
        lambda: gateway.public.SubmitOrder(
            order(SYMBOL, BUY, "1.01", "1", client_order_id="same-id"), metadata=key(dave_key)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE_CLIENT_ORDER_ID")
    assert error.metadata.get("order_id") == first.order.order_id
    assert balances(gateway, dave_key)["USD"].reserved == "1.002000"  # one order held, not two


def test_unauthenticated_and_wrong_account_calls_are_refused(gateway: Gateway) -> None:
    erin, erin_key = funded_account(gateway, {"USD": "100"})
    _, frank_key = funded_account(gateway, {"USD": "100"})

    no_key = refused(lambda: gateway.public.GetBalances(gateway_pb2.GetBalancesRequest()))
    assert no_key.code == grpc.StatusCode.UNAUTHENTICATED
    bad_key = refused(
        lambda: gateway.public.GetBalances(
            gateway_pb2.GetBalancesRequest(), metadata=key("bbk_not-a-real-key")
        )
    )
    assert bad_key.code == grpc.StatusCode.UNAUTHENTICATED

    other = refused(
        lambda: gateway.public.SubmitOrder(
            order(SYMBOL, BUY, "1.00", "1", account_id=erin), metadata=key(frank_key)
        )
    )
    assert other.code == grpc.StatusCode.PERMISSION_DENIED
    peek = refused(
        lambda: gateway.public.GetBalances(
            gateway_pb2.GetBalancesRequest(account_id=erin), metadata=key(frank_key)
        )
    )
    assert peek.code == grpc.StatusCode.PERMISSION_DENIED

    erins_order = gateway.public.SubmitOrder(order(SYMBOL, BUY, "1.00", "1"), metadata=key(erin_key))
    for call in (
        lambda: gateway.public.CancelOrder(
            gateway_pb2.CancelOrderRequest(order_id=erins_order.order.order_id), metadata=key(frank_key)
        ),
        lambda: gateway.public.GetOrder(
            gateway_pb2.GetOrderRequest(order_id=erins_order.order.order_id), metadata=key(frank_key)
        ),
    ):
        assert refused(call).code == grpc.StatusCode.NOT_FOUND
    still = gateway.public.GetOrder(
        gateway_pb2.GetOrderRequest(order_id=erins_order.order.order_id), metadata=key(erin_key)
    )
    assert still.order.status == common_pb2.ORDER_STATUS_NEW

    admin = refused(
        lambda: gateway.admin.Deposit(
            gateway_pb2.DepositRequest(deposit_id=unique("d"), account_id=erin, asset="USD", amount="5"),
            metadata=(("x-admin-key", "wrong"),),
        )
    )
    assert admin.code == grpc.StatusCode.UNAUTHENTICATED
    assert balances(gateway, erin_key)["USD"].total == "100.000000"


MALFORMED = [
    ("quantity", {"quantity": "-1"}),
    ("quantity", {"quantity": "0"}),
    ("quantity", {"quantity": "0.00001"}),  # finer than the lot
    ("quantity", {"quantity": "5000"}),  # above max_quantity
    ("quantity", {"quantity": "abc"}),
    ("quantity", {"quantity": ""}),
    ("price", {"price": "100.001"}),  # off tick
    ("price", {"price": "0"}),
    ("price", {"price": "-5.00"}),
    ("price", {"price": "1e3"}),
    ("price", {"price": "NaN"}),
    ("price", {"price": "2000000"}),  # above max_price
    ("symbol", {"symbol": "NOPE-USD"}),
    ("symbol", {"symbol": ""}),
    ("side", {"side": 0}),
    ("side", {"side": 99}),
    ("client_order_id", {"client_order_id": ""}),
    ("client_order_id", {"client_order_id": "x" * 65}),
    ("client_order_id", {"client_order_id": "tab\there"}),
    ("type", {"type": 7}),
    ("time_in_force", {"time_in_force": 9}),
]


@pytest.mark.parametrize(("field", "change"), MALFORMED, ids=[f"{f}={c}" for f, c in MALFORMED])
def test_malformed_orders_are_invalid_argument_and_change_nothing(
    gateway: Gateway, field: str, change: dict[str, object]
) -> None:
    _, key_ = funded_account(gateway, {"USD": "1000"})
    book_before = gateway.public.GetOrderBook(
        gateway_pb2.GetOrderBookRequest(symbol=SYMBOL), metadata=key(key_)
    )
    fields: dict[str, object] = {
        "client_order_id": unique("c"),
        "symbol": SYMBOL,
        "side": BUY,
        "price": "100.00",
        "quantity": "1",
    }
    fields.update(change)
    error = refused(
        lambda: gateway.public.SubmitOrder(gateway_pb2.SubmitOrderRequest(**fields), metadata=key(key_))
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    assert [v.field for v in error.violations] == [field], error
    assert error.message, "a person-readable message"
    usd = balances(gateway, key_)["USD"]
    assert (usd.total, usd.reserved) == ("1000.000000", "0.000000")
    book_after = gateway.public.GetOrderBook(
        gateway_pb2.GetOrderBookRequest(symbol=SYMBOL), metadata=key(key_)
    )
    assert book_after == book_before
    # The gateway keeps serving.
    assert gateway.public.ListInstruments(
        gateway_pb2.ListInstrumentsRequest(), metadata=key(key_)
    ).instruments
