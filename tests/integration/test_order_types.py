"""Order types through the public API, against real processes and storage.

IOC, FOK and DAY limit orders, market orders with a protection price, post-only (reject on the
default system, reprice on one configured for it) and self-trade prevention, sent through
SubmitOrder and StreamOrders. After every remainder, kill and self-trade cancel, what risk
reserved goes back (GetBalances) and `backbone check` finds every invariant holding. Each test
trades on its own instrument, so the books of one test never meet another's orders.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import redis

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
)
from tests.integration.grpcurl_stand_in import run_pasted, substitute
from tests.integration.order_stream_calls import OK, OrderStream, submit
from tests.integration.test_readme_walkthrough import readme_blocks

pytestmark = pytest.mark.integration

LIMIT, MARKET = common_pb2.ORDER_TYPE_LIMIT, common_pb2.ORDER_TYPE_MARKET
GTC, IOC, FOK, DAY = (
    common_pb2.TIME_IN_FORCE_GTC,
    common_pb2.TIME_IN_FORCE_IOC,
    common_pb2.TIME_IN_FORCE_FOK,
    common_pb2.TIME_IN_FORCE_DAY,
)
ACCEPTED, TRADE, CANCELLED, EXPIRED = (
    common_pb2.EXECUTION_TYPE_ACCEPTED,
    common_pb2.EXECUTION_TYPE_TRADE,
    common_pb2.EXECUTION_TYPE_CANCELLED,
    common_pb2.EXECUTION_TYPE_EXPIRED,
)
NEW, FILLED, GONE = (
    common_pb2.ORDER_STATUS_NEW,
    common_pb2.ORDER_STATUS_FILLED,
    common_pb2.ORDER_STATUS_CANCELLED,
)
FUNDS = {"USD": "10000"}


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        yield Gateway(channel, system.admin_key)


def market(gateway: Gateway, symbol: str) -> str:
    """A fresh instrument `symbol` over USD and a base asset of its own (tick 0.01, lot 0.0001)."""
    setup_market(gateway, symbol, symbol.split("-")[0])
    return symbol


def place(gateway: Gateway, api_key: str, request: gateway_pb2.SubmitOrderRequest) -> gateway_pb2.Order:
    return gateway.public.SubmitOrder(request, metadata=key(api_key)).order


def submit_order(
    gateway: Gateway, api_key: str, request: gateway_pb2.SubmitOrderRequest
) -> gateway_pb2.SubmitOrderResponse:
    return gateway.public.SubmitOrder(request, metadata=key(api_key))


def get_order(gateway: Gateway, api_key: str, order_id: str) -> gateway_pb2.Order:
    return gateway.public.GetOrder(
        gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key)
    ).order


def cancel(gateway: Gateway, api_key: str, order_id: str) -> None:
    gateway.public.CancelOrder(gateway_pb2.CancelOrderRequest(order_id=order_id), metadata=key(api_key))


def nothing_reserved(gateway: Gateway, api_key: str) -> None:
    """Every reservation of the account released (risk applies trading's releases shortly after)."""

    def reserved() -> dict[str, Decimal]:
        return {asset: Decimal(balance.reserved) for asset, balance in balances(gateway, api_key).items()}

    settles_to(lambda: sum(reserved().values(), Decimal(0)), Decimal(0), what="reservations released")


def book(gateway: Gateway, api_key: str, symbol: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    request = gateway_pb2.GetOrderBookRequest(symbol=symbol)
    response = gateway.public.GetOrderBook(request, metadata=key(api_key))
    return (
        [(level.price, level.quantity) for level in response.bids],
        [(level.price, level.quantity) for level in response.asks],
    )


def kinds(reports: object) -> list[int]:
    return [report.execution_type for report in reports]  # type: ignore[attr-defined]


def test_an_ioc_order_trades_what_it_can_and_its_remainder_expires(gateway: Gateway) -> None:
    symbol = market(gateway, "IOC-USD")
    _, seller = funded_account(gateway, {"IOC": "10"})
    _, buyer = funded_account(gateway, FUNDS)
    place(gateway, seller, order(symbol, SELL, "100.00", "0.3"))

    response = submit_order(gateway, buyer, order(symbol, BUY, "101.00", "0.5", time_in_force=IOC))
    assert kinds(response.reports) == [ACCEPTED, TRADE, EXPIRED]
    expired = response.reports[-1]
    assert expired.cancel_reason == common_pb2.CANCEL_REASON_IOC_REMAINDER
    assert [r.account_sequence for r in response.reports] == [1, 2, 3]  # a fresh account's first reports
    view = response.order
    assert (view.status, view.time_in_force, view.type) == (common_pb2.ORDER_STATUS_EXPIRED, IOC, LIMIT)
    assert (view.filled_quantity, view.leaves_quantity, view.expired_quantity) == (
        "0.3000",
        "0.0000",
        "0.2000",
    )
    assert get_order(gateway, buyer, view.order_id).status == common_pb2.ORDER_STATUS_EXPIRED
    assert book(gateway, buyer, symbol) == ([], [])
    nothing_reserved(gateway, buyer)


def test_a_fok_order_is_killed_whole_or_filled_whole(gateway: Gateway) -> None:
    symbol = market(gateway, "FOK-USD")
    _, seller = funded_account(gateway, {"FOK": "10"})
    _, buyer = funded_account(gateway, FUNDS)
    place(gateway, seller, order(symbol, SELL, "100.00", "0.3"))

    killed = submit_order(gateway, buyer, order(symbol, BUY, "100.00", "0.5", time_in_force=FOK))
    assert kinds(killed.reports) == [ACCEPTED, EXPIRED]
    assert killed.reports[-1].cancel_reason == common_pb2.CANCEL_REASON_FOK_UNFILLABLE
    assert (killed.order.status, killed.order.filled_quantity) == (common_pb2.ORDER_STATUS_EXPIRED, "0.0000")
    assert book(gateway, buyer, symbol) == ([], [("100.00", "0.3000")])  # nothing traded
    nothing_reserved(gateway, buyer)

    filled = submit_order(gateway, buyer, order(symbol, BUY, "100.00", "0.3", time_in_force=FOK))
    assert kinds(filled.reports) == [ACCEPTED, TRADE]
    assert filled.order.status == common_pb2.ORDER_STATUS_FILLED
    assert book(gateway, buyer, symbol) == ([], [])
    nothing_reserved(gateway, buyer)


def test_a_market_order_sweeps_levels_and_stops_at_its_protection_price(gateway: Gateway) -> None:
    symbol = market(gateway, "MKT-USD")
    _, seller = funded_account(gateway, {"MKT": "10"})
    _, buyer = funded_account(gateway, {"USD": "1000"})
    for price in ("100.00", "101.00", "103.00"):
        place(gateway, seller, order(symbol, SELL, price, "0.1"))

    response = submit_order(gateway, buyer, order(symbol, BUY, "102.00", "0.5", type=MARKET))
    assert kinds(response.reports) == [ACCEPTED, TRADE, TRADE, EXPIRED]
    assert [r.last_price for r in response.reports if r.execution_type == TRADE] == ["100.00", "101.00"]
    assert response.reports[-1].cancel_reason == common_pb2.CANCEL_REASON_MARKET_REMAINDER
    view = response.order
    assert (view.type, view.time_in_force, view.price) == (MARKET, IOC, "102.00")  # IOC when unset
    assert (view.status, view.filled_quantity, view.expired_quantity) == (
        common_pb2.ORDER_STATUS_EXPIRED,
        "0.2000",
        "0.3000",
    )
    assert book(gateway, buyer, symbol) == ([], [("103.00", "0.1000")])
    # 1000 - (10 + 10.1) USD paid - 20 bps taker fee on each (0.0402); reserved at 102 x 0.5, all of it back.
    nothing_reserved(gateway, buyer)
    settles_to(lambda: balances(gateway, buyer)["USD"].total, "979.859800", what="buyer's USD")


def test_post_only_rests_when_it_adds_liquidity_and_is_refused_when_it_would_take(gateway: Gateway) -> None:
    symbol = market(gateway, "PO-USD")
    _, seller = funded_account(gateway, {"PO": "10"})
    _, buyer = funded_account(gateway, FUNDS)
    place(gateway, seller, order(symbol, SELL, "100.00", "0.1"))

    taking = order(symbol, BUY, "100.00", "0.1", post_only=True)
    error = refused(lambda: place(gateway, buyer, taking))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "POST_ONLY_WOULD_TAKE")
    assert book(gateway, buyer, symbol) == ([], [("100.00", "0.1000")])
    nothing_reserved(gateway, buyer)

    resting = place(gateway, buyer, order(symbol, BUY, "99.99", "0.1", post_only=True, time_in_force=DAY))
    assert (resting.status, resting.post_only, resting.time_in_force) == (
        common_pb2.ORDER_STATUS_NEW,
        True,
        DAY,
    )
    assert book(gateway, buyer, symbol) == ([("99.99", "0.1000")], [("100.00", "0.1000")])
    cancel(gateway, buyer, resting.order_id)
    nothing_reserved(gateway, buyer)


def test_a_retry_is_the_same_order_only_with_the_same_terms(gateway: Gateway) -> None:
    symbol = market(gateway, "RTY-USD")
    _, trader = funded_account(gateway, FUNDS)
    first = order(symbol, BUY, "50.00", "0.1", post_only=True, time_in_force=DAY, client_order_id="rty-1")
    placed = place(gateway, trader, first)
    assert place(gateway, trader, first).order_id == placed.order_id

    changes: list[dict[str, object]] = [
        {"post_only": False},
        {"time_in_force": GTC},
        {"self_trade_prevention": gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH},
        {"price": "50.01"},
    ]
    for change in changes:
        other = gateway_pb2.SubmitOrderRequest()
        other.CopyFrom(first)
        for field, value in change.items():
            setattr(other, field, value)
        error = refused(lambda: place(gateway, trader, other))  # noqa: B023
        assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE_CLIENT_ORDER_ID"), (
            change
        )
    cancel(gateway, trader, placed.order_id)
    nothing_reserved(gateway, trader)


STP = gateway_pb2.SelfTradePrevention


@pytest.mark.parametrize(
    ("mode", "resting_status", "incoming_status"),
    [
        (STP.SELF_TRADE_PREVENTION_NONE, common_pb2.ORDER_STATUS_FILLED, common_pb2.ORDER_STATUS_FILLED),
        (
            STP.SELF_TRADE_PREVENTION_CANCEL_RESTING,
            common_pb2.ORDER_STATUS_CANCELLED,
            common_pb2.ORDER_STATUS_NEW,
        ),
        (
            STP.SELF_TRADE_PREVENTION_CANCEL_INCOMING,
            common_pb2.ORDER_STATUS_NEW,
            common_pb2.ORDER_STATUS_CANCELLED,
        ),
        (
            STP.SELF_TRADE_PREVENTION_CANCEL_BOTH,
            common_pb2.ORDER_STATUS_CANCELLED,
            common_pb2.ORDER_STATUS_CANCELLED,
        ),
    ],
)
def test_self_trade_prevention_of_the_arriving_order(
    gateway: Gateway, mode: int, resting_status: int, incoming_status: int
) -> None:
    symbol = market(gateway, f"S{mode}-USD")
    _, trader = funded_account(gateway, {"USD": "10000", f"S{mode}": "10"})
    resting = place(gateway, trader, order(symbol, SELL, "100.00", "0.1"))
    assert resting.self_trade_prevention == STP.SELF_TRADE_PREVENTION_NONE  # the system default

    response = submit_order(gateway, trader, order(symbol, BUY, "100.00", "0.1", self_trade_prevention=mode))
    assert response.order.self_trade_prevention == mode
    assert response.order.status == incoming_status
    assert get_order(gateway, trader, resting.order_id).status == resting_status
    stp_cancels = [r for r in response.reports if r.execution_type == CANCELLED]
    assert all(r.cancel_reason == common_pb2.CANCEL_REASON_SELF_TRADE_PREVENTED for r in stp_cancels)
    assert len(stp_cancels) == (incoming_status == common_pb2.ORDER_STATUS_CANCELLED)
    for order_id, status in ((resting.order_id, resting_status), (response.order.order_id, incoming_status)):
        if status == common_pb2.ORDER_STATUS_NEW:
            cancel(gateway, trader, order_id)
    assert book(gateway, trader, symbol) == ([], [])
    nothing_reserved(gateway, trader)


def test_order_types_on_the_order_stream(gateway: Gateway) -> None:
    symbol = market(gateway, "STR-USD")
    _, seller = funded_account(gateway, {"STR": "10"})
    _, buyer = funded_account(gateway, FUNDS)
    place(gateway, seller, order(symbol, SELL, "100.00", "0.3"))
    stream = OrderStream(gateway.channel, buyer)
    try:
        stream.send(
            submit(order(symbol, BUY, "100.00", "0.5", time_in_force=FOK), tag="fok"),
            submit(order(symbol, BUY, "100.00", "0.2", time_in_force=IOC), tag="ioc"),
            submit(order(symbol, BUY, "100.00", "0.5", type=MARKET, time_in_force=FOK), tag="mkt"),
            submit(order(symbol, BUY, "100.00", "0.1", post_only=True), tag="po"),
            submit(order(symbol, BUY, "90.00", "0.1", time_in_force=DAY), tag="day"),
            submit(order(symbol, BUY, "90.00", "0.1", type=MARKET, time_in_force=DAY), tag="bad"),
        )
        stream.wait_results(6)
        results = {result.tag: result for result in stream.results.values()}
        assert results["fok"].code == OK and results["fok"].order.status == common_pb2.ORDER_STATUS_EXPIRED
        assert results["ioc"].order.status == common_pb2.ORDER_STATUS_FILLED
        assert kinds(results["ioc"].reports) == [ACCEPTED, TRADE]
        # After the IOC took 0.2, the market FOK for 0.5 cannot fill and is killed whole.
        mkt = results["mkt"]
        assert (mkt.order.status, mkt.order.expired_quantity) == (common_pb2.ORDER_STATUS_EXPIRED, "0.5000")
        assert mkt.reports[-1].cancel_reason == common_pb2.CANCEL_REASON_FOK_UNFILLABLE
        assert (results["po"].code, results["po"].field) == (grpc.StatusCode.FAILED_PRECONDITION.value[0], "")
        assert results["day"].order.status == common_pb2.ORDER_STATUS_NEW
        assert (results["bad"].code, results["bad"].field) == (
            grpc.StatusCode.INVALID_ARGUMENT.value[0],
            "time_in_force",
        )
        # An expired order gets no later report on the stream: only results carried its reports.
        assert not [r for r in stream.reports if r.order.status == common_pb2.ORDER_STATUS_EXPIRED]
        cancel(gateway, buyer, results["day"].order.order_id)
    finally:
        stream.close()
    nothing_reserved(gateway, buyer)


def test_every_invariant_holds_after_the_order_types(gateway: Gateway, system: System) -> None:
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


# --- a gateway configured to reprice post-only orders and prevent self-trades by default ----------


@pytest.fixture(scope="module")
def configured(system_factory: Callable[..., System]) -> Iterator[tuple[Gateway, System]]:
    system = system_factory(BACKBONE_POST_ONLY_MODE="reprice", BACKBONE_SELF_TRADE_PREVENTION="cancel_both")
    with grpc.insecure_channel(system.gateway) as channel:
        yield Gateway(channel, system.admin_key), system


def test_the_configured_post_only_mode_and_self_trade_prevention_apply(
    configured: tuple[Gateway, System],
) -> None:
    gateway, system = configured
    symbol = market(gateway, "CFG-USD")
    _, trader = funded_account(gateway, {"USD": "10000", "CFG": "10"})
    resting = place(gateway, trader, order(symbol, SELL, "100.00", "0.1"))
    assert resting.self_trade_prevention == STP.SELF_TRADE_PREVENTION_CANCEL_BOTH

    # Reprice: a post-only buy at the best ask rests one tick behind it instead of taking.
    request = order(
        symbol, BUY, "100.00", "0.1", post_only=True, self_trade_prevention=STP.SELF_TRADE_PREVENTION_NONE
    )
    repriced = place(gateway, trader, request)
    assert (repriced.status, repriced.price, repriced.post_only) == (
        common_pb2.ORDER_STATUS_NEW,
        "99.99",
        True,
    )
    assert place(gateway, trader, request).order_id == repriced.order_id  # a retry, at the price sent

    # The default (cancel both): a crossing buy of the same account cancels itself and the ask.
    crossing = submit_order(gateway, trader, order(symbol, BUY, "100.00", "0.1"))
    assert crossing.order.status == common_pb2.ORDER_STATUS_CANCELLED
    assert get_order(gateway, trader, resting.order_id).status == common_pb2.ORDER_STATUS_CANCELLED
    cancel(gateway, trader, repriced.order_id)
    nothing_reserved(gateway, trader)
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_a_repriced_order_holds_what_its_sent_price_needs_even_after_risk_rebuilds(
    configured: tuple[Gateway, System],
) -> None:
    """A post-only buy repriced below the price it was sent (and reserved) at keeps that
    reservation, which `backbone check` expects of it; after a Redis flush risk rebuilds it from
    trading's open orders at the same price, and a fill at the resting price releases exactly it."""
    gateway, system = configured
    symbol = market(gateway, "RPR-USD")
    _, seller = funded_account(gateway, {"RPR": "10"})
    _, buyer = funded_account(gateway, {"USD": "10000"})
    place(gateway, seller, order(symbol, SELL, "100.00", "0.1"))
    repriced = place(gateway, buyer, order(symbol, BUY, "100.00", "0.1", post_only=True))
    assert (repriced.status, repriced.price) == (common_pb2.ORDER_STATUS_NEW, "99.99")
    # 100.00 x 0.1 plus the larger fee rate (20 bps): the sent price's, not the resting price's.
    settles_to(lambda: balances(gateway, buyer)["USD"].reserved, "10.020000", what="the sent price's hold")
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))

    with redis.Redis.from_url(system.redis_url) as cache:
        cache.flushdb()  # risk rebuilds its reservations from trading's open orders
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))
    settles_to(lambda: balances(gateway, buyer)["USD"].reserved, "10.020000", what="the rebuilt hold")

    taker = submit_order(
        gateway,
        seller,
        order(symbol, SELL, "99.99", "0.1", self_trade_prevention=STP.SELF_TRADE_PREVENTION_NONE),
    )
    assert taker.order.status == common_pb2.ORDER_STATUS_FILLED
    nothing_reserved(gateway, buyer)
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_the_readme_order_types_section_runs_as_written(
    gateway: Gateway, system: System, tmp_path: Path
) -> None:
    """Its grpcurl block (played by buf curl) as Bob and Alice on a fresh BTC-USD, then its SDK
    snippet as Alice: the answers are those its comments promise."""
    setup_market(gateway, "BTC-USD", "BTC")
    _, alice = funded_account(gateway, {"USD": "100000"})
    _, bob = funded_account(gateway, {"BTC": "2"})
    (commands,) = readme_blocks("Order types", "sh")
    variables = f'GW={system.gateway}\nALICE="x-api-key: {alice}"\nBOB="x-api-key: {bob}"\n'
    answers = run_pasted(variables + commands, tmp_path)
    submitted = answers.of("SubmitOrder")
    statuses = [s["order"]["status"].removeprefix("ORDER_STATUS_") for s in submitted]
    assert statuses == ["NEW", "NEW", "EXPIRED", "EXPIRED", "NEW"]
    ioc, swept, rests = submitted[2], submitted[3], submitted[4]
    assert (ioc["order"]["filledQuantity"], ioc["order"]["expiredQuantity"]) == ("0.1000", "0.2000")
    assert ioc["reports"][-1]["cancelReason"] == "CANCEL_REASON_IOC_REMAINDER"
    assert [r["lastPrice"] for r in swept["reports"] if "lastPrice" in r] == ["50050.00"]
    assert swept["reports"][-1]["cancelReason"] == "CANCEL_REASON_MARKET_REMAINDER"
    assert (swept["order"]["type"], swept["order"]["timeInForce"]) == (
        "ORDER_TYPE_MARKET",
        "TIME_IN_FORCE_IOC",
    )
    assert (rests["order"]["postOnly"], rests["order"]["selfTradePrevention"]) == (
        True,
        "SELF_TRADE_PREVENTION_CANCEL_RESTING",
    )

    (snippet,) = readme_blocks("Order types", "python")
    snippet = substitute(snippet, '"127.0.0.1:50051"', repr(system.gateway))
    snippet = substitute(snippet, '"bbk_..."', repr(alice))
    ran = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["expired 0.1000 fok_unfillable", "new day True cancel_both"]
