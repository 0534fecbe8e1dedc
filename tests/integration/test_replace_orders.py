"""Cancel-replace and quote-budget market buys through the public API, against real processes.

ReplaceOrder (unary and as a StreamOrders command) with risk re-sizing the order's hold: a replace
down keeps time priority and gives the difference back once trading has journaled it; a replace
up holds the difference first, and is refused with nothing changed when the account cannot
afford it; a replace trading refuses gives the extra back. Budget-only market buys sweep levels,
stop at the budget and give back what they did not use. After each, `backbone check` finds every
invariant holding ("reservations match open orders" sizes replaced orders at their new price and
quantity), and after a Redis flush risk rebuilds the same holds from trading's open orders.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import grpc
import pytest
import redis

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
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
    unique,
    wait_for,
)
from tests.integration.grpcurl_stand_in import run_pasted, substitute
from tests.integration.order_stream_calls import OK
from tests.integration.test_readme_walkthrough import readme_blocks

pytestmark = pytest.mark.integration

MARKET = common_pb2.ORDER_TYPE_MARKET
REPLACED, TRADE, REJECTED = (
    common_pb2.EXECUTION_TYPE_REPLACED,
    common_pb2.EXECUTION_TYPE_TRADE,
    common_pb2.EXECUTION_TYPE_REJECTED,
)
FAILED, NOT_FOUND, INVALID = (
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
)
TAKER_FEE = Decimal("0.002")  # setup_market: 10/20 bps maker/taker: a buy holds 20 bps on top
MICRO = Decimal("0.000001")  # USD's minor unit (scale 6)
SECTION = "Replacing orders, and buying for a budget"  # of the README


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        yield Gateway(channel, system.admin_key)


def market(gateway: Gateway, symbol: str) -> str:
    setup_market(gateway, symbol, symbol.split("-")[0])
    return symbol


def hold(price: str, quantity: str) -> Decimal:
    """What a buy of `quantity` at `price` holds: notional plus the larger fee rate, rounded up."""
    notional = Decimal(price) * Decimal(quantity)
    return notional + (notional * TAKER_FEE).quantize(MICRO, rounding="ROUND_CEILING")


def reserved(gateway: Gateway, api_key: str, asset: str = "USD") -> Decimal:
    found = balances(gateway, api_key).get(asset)
    return Decimal(found.reserved) if found else Decimal(0)


def holds_settle(gateway: Gateway, api_key: str, expected: Decimal, asset: str = "USD") -> None:
    settles_to(lambda: reserved(gateway, api_key, asset), expected, what=f"{asset} reserved")


def replace(
    gateway: Gateway, api_key: str, order_id: str, price: str = "", quantity: str = ""
) -> gateway_pb2.ReplaceOrderResponse:
    request = gateway_pb2.ReplaceOrderRequest(order_id=order_id, price=price, quantity=quantity)
    return gateway.public.ReplaceOrder(request, metadata=key(api_key))


def get(gateway: Gateway, api_key: str, order_id: str) -> gateway_pb2.Order:
    return gateway.public.GetOrder(
        gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key)
    ).order


def place(gateway: Gateway, api_key: str, request: gateway_pb2.SubmitOrderRequest) -> gateway_pb2.Order:
    return gateway.public.SubmitOrder(request, metadata=key(api_key)).order


def test_a_replace_down_keeps_priority_and_gives_the_difference_back(
    gateway: Gateway, system: System
) -> None:
    symbol = market(gateway, "RDN-USD")
    _, first = funded_account(gateway, {"USD": "1000"})
    _, second = funded_account(gateway, {"USD": "1000"})
    _, seller = funded_account(gateway, {"RDN": "10"})
    early = place(gateway, first, order(symbol, BUY, "100.00", "2"))
    late = place(gateway, second, order(symbol, BUY, "100.00", "1"))
    holds_settle(gateway, first, hold("100.00", "2"))
    answer = replace(gateway, first, early.order_id, quantity="1")
    assert [r.execution_type for r in answer.reports] == [REPLACED]
    assert (answer.order.price, answer.order.quantity, answer.order.leaves_quantity) == (
        "100.00",
        "1.0000",
        "1.0000",
    )
    # The difference goes back once risk has applied trading's OrderReplaced.
    holds_settle(gateway, first, hold("100.00", "1"))
    # Still first in line: a sell of 1 fills the replaced order, not the later one.
    place(gateway, seller, order(symbol, SELL, "100.00", "1"))
    assert get(gateway, first, early.order_id).status == common_pb2.ORDER_STATUS_FILLED
    assert get(gateway, second, late.order_id).status == common_pb2.ORDER_STATUS_NEW
    holds_settle(gateway, first, Decimal(0))
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_a_replace_up_holds_the_difference_or_is_refused_with_nothing_changed(
    gateway: Gateway, system: System
) -> None:
    symbol = market(gateway, "RUP-USD")
    _, trader = funded_account(gateway, {"USD": "250"})
    resting = place(gateway, trader, order(symbol, BUY, "100.00", "2"))
    holds_settle(gateway, trader, hold("100.00", "2"))
    answer = replace(gateway, trader, resting.order_id, price="120.00")
    assert [r.execution_type for r in answer.reports] == [REPLACED]
    assert reserved(gateway, trader) == hold("120.00", "2")  # held before trading replaced it
    # 3 at 120 would need 360.72: the account has 250.
    error = refused(lambda: replace(gateway, trader, resting.order_id, quantity="3"))
    assert (error.code, error.reason) == (FAILED, RejectReason.INSUFFICIENT_BALANCE)
    now = get(gateway, trader, resting.order_id)
    assert (now.price, now.quantity) == ("120.00", "2.0000")
    assert reserved(gateway, trader) == hold("120.00", "2")
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_a_replace_trading_refuses_gives_the_extra_back(gateway: Gateway, system: System) -> None:
    symbol = market(gateway, "RPO-USD")
    _, trader = funded_account(gateway, {"USD": "1000"})
    _, seller = funded_account(gateway, {"RPO": "10"})
    place(gateway, seller, order(symbol, SELL, "101.00", "1"))
    resting = place(gateway, trader, order(symbol, BUY, "99.00", "1", post_only=True))
    holds_settle(gateway, trader, hold("99.00", "1"))
    # At 101 the post-only buy would take: the engine refuses the replace (the system rejects).
    error = refused(lambda: replace(gateway, trader, resting.order_id, price="101.00"))
    assert (error.code, error.reason) == (FAILED, RejectReason.POST_ONLY_WOULD_TAKE)
    holds_settle(gateway, trader, hold("99.00", "1"))  # the give-back is acknowledged within 2 s
    assert get(gateway, trader, resting.order_id).price == "99.00"
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_a_replace_that_crosses_trades_at_once(gateway: Gateway, system: System) -> None:
    symbol = market(gateway, "RCX-USD")
    _, trader = funded_account(gateway, {"USD": "1000"})
    _, seller = funded_account(gateway, {"RCX": "10"})
    place(gateway, seller, order(symbol, SELL, "101.00", "1"))
    resting = place(gateway, trader, order(symbol, BUY, "99.00", "2"))
    answer = replace(gateway, trader, resting.order_id, price="102.00")
    assert [r.execution_type for r in answer.reports] == [REPLACED, TRADE]
    assert (answer.order.filled_quantity, answer.order.leaves_quantity) == ("1.0000", "1.0000")
    holds_settle(gateway, trader, hold("102.00", "1"))
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_replaces_of_orders_that_cannot_be_replaced(gateway: Gateway, system: System) -> None:
    symbol = market(gateway, "RNO-USD")
    _, trader = funded_account(gateway, {"USD": "1000"})
    _, other = funded_account(gateway, {"USD": "1000"})
    _, seller = funded_account(gateway, {"RNO": "10"})
    filled = place(gateway, trader, order(symbol, BUY, "100.00", "1"))
    place(gateway, seller, order(symbol, SELL, "100.00", "1"))
    cancelled = place(gateway, trader, order(symbol, BUY, "90.00", "1"))
    gateway.public.CancelOrder(
        gateway_pb2.CancelOrderRequest(order_id=cancelled.order_id), metadata=key(trader)
    )
    partial = place(gateway, trader, order(symbol, BUY, "95.00", "2"))
    place(gateway, seller, order(symbol, SELL, "95.00", "1"))
    holds_settle(gateway, trader, hold("95.00", "1"))
    settles_to(lambda: balances(gateway, trader)["RNO"].total, "2.00000000", what="both fills settled")
    before = balances(gateway, trader)
    cases = [
        (filled.order_id, trader, "101.00", "", FAILED, RejectReason.ORDER_NOT_OPEN),
        (cancelled.order_id, trader, "91.00", "", FAILED, RejectReason.ORDER_NOT_OPEN),
        (partial.order_id, other, "96.00", "", NOT_FOUND, RejectReason.UNKNOWN_ORDER),
        (unique("nope").replace("-", ""), trader, "96.00", "", NOT_FOUND, RejectReason.UNKNOWN_ORDER),
        (partial.order_id, trader, "", "1", FAILED, RejectReason.REPLACE_QUANTITY_TOO_SMALL),
        (partial.order_id, trader, "", "", INVALID, RejectReason.REQUIRED),
        (partial.order_id, trader, "95.001", "", INVALID, RejectReason.INVALID_PRICE),
        (partial.order_id, trader, "", "0.00001", INVALID, RejectReason.INVALID_QUANTITY),
        (partial.order_id, trader, "2000000.00", "", INVALID, RejectReason.INVALID_PRICE),
    ]
    for order_id, api_key, price, quantity, code, reason in cases:
        error = refused(lambda: replace(gateway, api_key, order_id, price, quantity))  # noqa: B023
        assert (error.code, error.reason) == (code, reason), (order_id, price, quantity, error)
    assert balances(gateway, trader) == before
    now = get(gateway, trader, partial.order_id)
    assert (now.price, now.quantity, now.filled_quantity) == ("95.00", "2.0000", "1.0000")
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_a_retried_replace_is_answered_with_the_order_as_it_is(gateway: Gateway, system: System) -> None:
    symbol = market(gateway, "RRT-USD")
    _, trader = funded_account(gateway, {"USD": "1000"})
    resting = place(gateway, trader, order(symbol, BUY, "100.00", "2"))
    first = replace(gateway, trader, resting.order_id, price="101.00", quantity="3")
    again = replace(gateway, trader, resting.order_id, price="101.00", quantity="3")
    assert [r.execution_type for r in first.reports] == [REPLACED]
    assert list(again.reports) == []
    assert again.order == get(gateway, trader, resting.order_id)
    assert again.order.updated_at == first.order.updated_at  # nothing journaled the second time
    holds_settle(gateway, trader, hold("101.00", "3"))


def test_replace_on_the_order_stream(gateway: Gateway, system: System) -> None:
    symbol = market(gateway, "RST-USD")
    _, trader = funded_account(gateway, {"USD": "300"})
    resting = place(gateway, trader, order(symbol, BUY, "100.00", "1"))
    commands = [
        gateway_pb2.OrderCommand(
            tag="up", replace=gateway_pb2.ReplaceOrderRequest(order_id=resting.order_id, price="110.00")
        ),
        gateway_pb2.OrderCommand(
            tag="bad", replace=gateway_pb2.ReplaceOrderRequest(order_id=resting.order_id, price="1.001")
        ),
    ]
    results = {}
    for response in gateway.public.StreamOrders(
        iter([gateway_pb2.StreamOrdersRequest(commands=commands)]), metadata=key(trader), timeout=30
    ):
        for result in response.results:
            results[result.tag] = result
        if len(results) == 2:
            break
    assert results["up"].code == OK and results["up"].client_order_id == resting.order_id
    assert results["up"].order.price == "110.00"
    assert [r.execution_type for r in results["up"].reports] == [REPLACED]
    assert (results["bad"].code, results["bad"].field) == (INVALID.value[0], "price")
    assert results["bad"].reason == RejectReason.INVALID_PRICE.number
    holds_settle(gateway, trader, hold("110.00", "1"))
    # Unaffordable on the stream too: refused, nothing changed.
    more = gateway_pb2.OrderCommand(
        replace=gateway_pb2.ReplaceOrderRequest(order_id=resting.order_id, quantity="5")
    )
    responses = gateway.public.StreamOrders(
        iter([gateway_pb2.StreamOrdersRequest(commands=[more])]), metadata=key(trader), timeout=30
    )
    (result,) = [result for response in responses for result in response.results]
    assert (result.code, result.reason) == (FAILED.value[0], RejectReason.INSUFFICIENT_BALANCE.number)
    assert reserved(gateway, trader) == hold("110.00", "1")


def test_fills_racing_replaces_leave_every_hold_exact(gateway: Gateway, system: System) -> None:
    """Replaces up and down while sellers fill the same orders, some completely: whatever the
    interleaving, once all is applied risk holds exactly what the open orders need."""
    symbol = market(gateway, "RRC-USD")
    _, trader = funded_account(gateway, {"USD": "100000"})
    _, seller = funded_account(gateway, {"RRC": "1000"})
    buys = [place(gateway, trader, order(symbol, BUY, "100.00", "3")).order_id for _ in range(8)]

    def replaces() -> None:
        for round_ in range(3):
            for order_id in buys:
                price = ("101.00", "99.00", "102.00")[round_]
                # Filled meanwhile (ORDER_NOT_OPEN) or too small: a fair refusal.
                with contextlib.suppress(grpc.RpcError):
                    replace(gateway, trader, order_id, price=price, quantity=str(4 + round_))

    def sells() -> None:
        for _ in range(12):
            place(gateway, seller, order(symbol, SELL, "99.00", "2", type=MARKET))

    workers = [threading.Thread(target=replaces), threading.Thread(target=sells)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_a_budget_buy_sweeps_levels_stops_at_its_budget_and_gives_the_rest_back(
    gateway: Gateway, system: System
) -> None:
    symbol = market(gateway, "RBG-USD")
    _, buyer = funded_account(gateway, {"USD": "1000"})
    _, seller = funded_account(gateway, {"RBG": "10"})
    for price in ("100.00", "101.00", "102.00"):
        place(gateway, seller, order(symbol, SELL, price, "1"))
    request = order(symbol, BUY, "", "10", type=MARKET, quote_budget="250.00")
    response = gateway.public.SubmitOrder(request, metadata=key(buyer))
    fills = [r for r in response.reports if r.execution_type == TRADE]
    assert [(f.last_price, f.last_quantity) for f in fills] == [
        ("100.00", "1.0000"),
        ("101.00", "1.0000"),
        ("102.00", "0.4803"),  # the whole lots (0.0001) the remaining 49.00 buys at 102
    ]
    spent = sum((Decimal(f.last_price) * Decimal(f.last_quantity) for f in fills), Decimal(0))
    fees = sum(
        (
            (Decimal(f.last_price) * Decimal(f.last_quantity) * TAKER_FEE).quantize(MICRO, ROUND_DOWN)
            for f in fills
        ),
        Decimal(0),
    )
    assert spent <= Decimal("250.00")
    assert response.order.status == common_pb2.ORDER_STATUS_EXPIRED  # the unbought rest
    assert response.order.quote_budget == "250.000000"
    # The budget and its fee headroom were held; what the fills did not use is given back.
    holds_settle(gateway, buyer, Decimal(0))
    settles_to(
        lambda: Decimal(balances(gateway, buyer)["USD"].total), Decimal(1000) - spent - fees, what="USD total"
    )
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_a_budget_buy_the_account_cannot_afford_is_refused(gateway: Gateway, system: System) -> None:
    symbol = market(gateway, "RBX-USD")
    _, buyer = funded_account(gateway, {"USD": "100"})
    # 100 USD covers a budget of 99.80 plus its 0.1996 fee headroom, not a budget of 100.
    request = order(symbol, BUY, "", "10", type=MARKET, quote_budget="100.00")
    error = refused(lambda: gateway.public.SubmitOrder(request, metadata=key(buyer)))
    assert (error.code, error.reason) == (FAILED, RejectReason.INSUFFICIENT_BALANCE)
    fits = order(symbol, BUY, "", "10", type=MARKET, quote_budget="99.80")
    answer = gateway.public.SubmitOrder(fits, metadata=key(buyer))
    assert answer.order.status == common_pb2.ORDER_STATUS_EXPIRED  # nothing to buy: all back
    holds_settle(gateway, buyer, Decimal(0))


def test_risk_rebuilds_replaced_holds_after_a_redis_flush(gateway: Gateway, system: System) -> None:
    symbol = market(gateway, "RFL-USD")
    _, trader = funded_account(gateway, {"USD": "1000"})
    _, seller = funded_account(gateway, {"RFL": "10"})
    up = place(gateway, trader, order(symbol, BUY, "100.00", "2"))
    down = place(gateway, trader, order(symbol, BUY, "90.00", "3"))
    replace(gateway, trader, up.order_id, price="110.00", quantity="3")
    replace(gateway, trader, down.order_id, price="80.00", quantity="2")
    place(gateway, seller, order(symbol, SELL, "110.00", "1"))  # up: 1 filled at its new price
    expected = hold("110.00", "2") + hold("80.00", "2")
    holds_settle(gateway, trader, expected)
    redis.Redis.from_url(system.redis_url).flushdb()

    def rebuilt() -> Decimal | None:
        try:
            return reserved(gateway, trader)
        except grpc.RpcError:
            return None  # risk is rebuilding

    wait_for(lambda: rebuilt() == expected, timeout_seconds=60, what="risk's rebuilt holds")
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))
    # And the rebuilt holds keep working: a replace down after the rebuild gives back exactly.
    wait_for(
        lambda: _replaced_after_rebuild(gateway, trader, up.order_id),
        timeout_seconds=60,
        what="a replace accepted after the rebuild",
    )
    holds_settle(gateway, trader, hold("105.00", "1") + hold("80.00", "2"))
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def _replaced_after_rebuild(gateway: Gateway, api_key: str, order_id: str) -> bool:
    try:
        replace(gateway, api_key, order_id, price="105.00", quantity="2")
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            return False  # still rebuilding
        raise
    return True


def test_the_readme_replace_section_runs_as_written(gateway: Gateway, system: System, tmp_path: Path) -> None:
    """Its grpcurl block (played by buf curl) as Alice and Bob on a fresh BTC-USD, the order id
    pasted in where it says, then its SDK snippet as Alice: the answers its comments promise."""
    setup_market(gateway, "BTC-USD", "BTC")
    _, alice = funded_account(gateway, {"USD": "100000"})
    _, bob = funded_account(gateway, {"BTC": "2"})
    (commands,) = readme_blocks(SECTION, "sh")
    variables = f'GW={system.gateway}\nALICE="x-api-key: {alice}"\nBOB="x-api-key: {bob}"\n'
    first, rest = substitute(commands, "ORDER=paste-the-order-id\n", "\0").split("\0")
    placed = run_pasted(variables + first, tmp_path / "first").of("SubmitOrder")
    order_id = placed[0]["order"]["orderId"]
    answers = run_pasted(f"{variables}ORDER={order_id}\n{rest}", tmp_path / "rest")
    up, down = answers.of("ReplaceOrder")
    assert (up["order"]["price"], up["order"]["quantity"]) == ("49500.00", "0.3000")
    assert [r["executionType"] for r in up["reports"]] == ["EXECUTION_TYPE_REPLACED"]
    assert (down["order"]["price"], down["order"]["quantity"]) == ("49500.00", "0.1000")
    budget = answers.of("SubmitOrder")[-1]
    assert [(r["lastPrice"], r["lastQuantity"]) for r in budget["reports"] if "lastPrice" in r] == [
        ("50000.00", "0.1000"),
        ("50100.00", "0.0499"),
    ]
    assert budget["order"]["status"] == "ORDER_STATUS_EXPIRED"
    holds_settle(gateway, alice, hold("49500.00", "0.1"))

    (snippet,) = readme_blocks(SECTION, "python")
    snippet = substitute(snippet, '"127.0.0.1:50051"', repr(system.gateway))
    snippet = substitute(snippet, '"bbk_..."', repr(alice))
    ran = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["48500.00 replaced", "expired 0.0019"]
    holds_settle(gateway, alice, hold("49500.00", "0.1"))
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_a_replace_racing_the_fill_that_closes_its_order_leaks_no_hold(
    gateway: Gateway, system: System
) -> None:
    """On one stream, a sell that fills the account's own resting buy completely and a replace of
    that buy: the replace either finds the order filled, or grows its hold and then trading refuses
    it (ORDER_NOT_OPEN), and the extra is given back. Either way nothing stays held."""
    symbol = market(gateway, "RFF-USD")
    _, trader = funded_account(gateway, {"USD": "10000", "RFF": "100"})
    for _ in range(6):
        resting = place(gateway, trader, order(symbol, BUY, "100.00", "1"))
        commands = [
            gateway_pb2.OrderCommand(tag="sell", submit=order(symbol, SELL, "100.00", "1")),
            gateway_pb2.OrderCommand(
                tag="replace",
                replace=gateway_pb2.ReplaceOrderRequest(
                    order_id=resting.order_id, price="105.00", quantity="2"
                ),
            ),
        ]
        results = {}
        for response in gateway.public.StreamOrders(
            iter([gateway_pb2.StreamOrdersRequest(commands=commands)]), metadata=key(trader), timeout=30
        ):
            results.update({result.tag: result for result in response.results})
            if len(results) == 2:
                break
        assert results["sell"].code == OK
        replaced = results["replace"]
        if replaced.code == OK:  # the replace got there first: the sell then filled 1 of its 2
            assert get(gateway, trader, resting.order_id).filled_quantity == "1.0000"
            gateway.public.CancelOrder(
                gateway_pb2.CancelOrderRequest(order_id=resting.order_id), metadata=key(trader)
            )
        else:
            assert (replaced.code, replaced.reason) == (FAILED.value[0], RejectReason.ORDER_NOT_OPEN.number)
        holds_settle(gateway, trader, Decimal(0))
        holds_settle(gateway, trader, Decimal(0), asset="RFF")
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_replaces_in_quick_succession_each_go_through(gateway: Gateway, system: System) -> None:
    """A replace answered REPLACED is done as far as its caller is concerned: the next replace of
    the order, sent at once, is not refused because risk has not applied the first one yet."""
    symbol = market(gateway, "RQS-USD")
    _, trader = funded_account(gateway, {"USD": "100000"})
    resting = place(gateway, trader, order(symbol, BUY, "100.00", "1"))
    for step in range(1, 21):
        answer = replace(gateway, trader, resting.order_id, price=f"{100 + step}.00")
        assert [r.execution_type for r in answer.reports] == [REPLACED]
    holds_settle(gateway, trader, hold("120.00", "1"))
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))
