"""Client order ids are unique per account in trading's journal, not only in the gateway's Redis claim.

Against real processes and storage: a retry with the same client order id gets the original order
(the same order) or ALREADY_EXISTS naming it (a different one), and GetOrder finds the order named;
after the system's Redis is flushed (the claims are gone) a reused client order id still gets the
original order, never a second one, and the retry's reservation is released.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import redis

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from gateway.order_saga import client_order_id_key
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

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USD"  # each test has a market of its own on the module's system
RETRY_SYMBOL = "ETH-USD"


def book(gateway: Gateway, api_key: str, symbol: str = SYMBOL) -> list[tuple[str, str, int]]:
    response = gateway.public.GetOrderBook(
        gateway_pb2.GetOrderBookRequest(symbol=symbol), metadata=key(api_key)
    )
    return [(level.price, level.quantity, level.order_count) for level in response.bids]


def test_a_retry_gets_the_original_order_and_a_different_order_is_refused_naming_it(system: System) -> None:
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, RETRY_SYMBOL, "ETH")
        _, api_key = funded_account(gateway, {"USD": "1000"})
        first = gateway.public.SubmitOrder(
            order(RETRY_SYMBOL, BUY, "1.00", "1", client_order_id="same-id"), metadata=key(api_key)
        )
        original = first.order.order_id

        retry = gateway.public.SubmitOrder(
            order(RETRY_SYMBOL, BUY, "1.00", "1", client_order_id="same-id"), metadata=key(api_key)
        )
        assert retry.order.order_id == original
        assert retry.order.status == common_pb2.ORDER_STATUS_NEW
        assert retry.order == first.order

        different = refused(
            lambda: gateway.public.SubmitOrder(
                order(RETRY_SYMBOL, BUY, "1.01", "1", client_order_id="same-id"), metadata=key(api_key)
            )
        )
        assert (different.code, different.reason) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "DUPLICATE_CLIENT_ORDER_ID",
        )
        assert different.metadata.get("order_id") == original
        named = gateway.public.GetOrder(gateway_pb2.GetOrderRequest(order_id=original), metadata=key(api_key))
        assert named.order.client_order_id == "same-id"

        assert book(gateway, api_key, RETRY_SYMBOL) == [("1.00", "1.0000", 1)]  # one order, not two
        assert balances(gateway, api_key)["USD"].reserved == "1.002000"

        # A closed order keeps its client order id: the retry gets it as it is now.
        gateway.public.CancelOrder(gateway_pb2.CancelOrderRequest(order_id=original), metadata=key(api_key))
        after = gateway.public.SubmitOrder(
            order(RETRY_SYMBOL, BUY, "1.00", "1", client_order_id="same-id"), metadata=key(api_key)
        )
        assert (after.order.order_id, after.order.status) == (original, common_pb2.ORDER_STATUS_CANCELLED)
        assert book(gateway, api_key, RETRY_SYMBOL) == []
    invariants_hold(system.database_url, system.redis_url)


def _submit_until_served(gateway: Gateway, request: gateway_pb2.SubmitOrderRequest, api_key: str) -> object:
    """Submit `request` until risk serves again after the flush; the response, or the refusal."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return gateway.public.SubmitOrder(request, metadata=key(api_key), timeout=10)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                return error
            time.sleep(0.2)  # risk rebuilds its state after the flush (RISK_REBUILDING)


@pytest.mark.parametrize("flush", ["claims", "everything"])
def test_a_client_order_id_reused_after_a_redis_flush_gets_the_original_order(
    system: System, system_factory: Callable[..., System], flush: str
) -> None:
    """`claims`: only the buyer's claims are lost (on the module's system); `everything`: FLUSHDB of a
    system of its own (risk rebuilds too)."""
    if flush == "everything":
        system = system_factory()
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, SYMBOL, "BTC")
        buyer, buyer_key = funded_account(gateway, {"USD": "1000"})
        _, seller_key = funded_account(gateway, {"BTC": "1"})
        resting = gateway.public.SubmitOrder(
            order(SYMBOL, BUY, "10.00", "2", client_order_id="flushed-id"), metadata=key(buyer_key)
        )
        # A second order, partly filled, so the original's current state differs from its first.
        filled = gateway.public.SubmitOrder(
            order(SYMBOL, BUY, "20.00", "1", client_order_id="filled-id"), metadata=key(buyer_key)
        )
        gateway.public.SubmitOrder(order(SYMBOL, SELL, "20.00", "0.5"), metadata=key(seller_key))
        settles_to(
            lambda: balances(gateway, buyer_key)["USD"].reserved, "30.060000", what="the buyer's reservations"
        )

        with redis.Redis.from_url(system.redis_url) as client:
            if flush == "everything":
                client.flushdb()  # every claim, and all of risk's state, is gone
            else:
                claims = list(client.scan_iter(match=client_order_id_key(buyer, "*")))
                assert len(claims) == 2
                client.delete(*claims)

        again = _submit_until_served(
            gateway, order(SYMBOL, BUY, "10.00", "2", client_order_id="flushed-id"), buyer_key
        )
        assert isinstance(again, gateway_pb2.SubmitOrderResponse), again
        assert again.order.order_id == resting.order.order_id
        assert again.order.status == common_pb2.ORDER_STATUS_NEW

        partly = _submit_until_served(
            gateway, order(SYMBOL, BUY, "20.00", "1", client_order_id="filled-id"), buyer_key
        )
        assert isinstance(partly, gateway_pb2.SubmitOrderResponse), partly
        assert partly.order.order_id == filled.order.order_id
        assert (partly.order.status, partly.order.filled_quantity) == (
            common_pb2.ORDER_STATUS_PARTIALLY_FILLED,
            "0.5000",
        )

        # A different order under a used id is refused naming the original, which GetOrder finds.
        error = refused(
            lambda: gateway.public.SubmitOrder(
                order(SYMBOL, BUY, "10.00", "3", client_order_id="flushed-id"), metadata=key(buyer_key)
            )
        )
        assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE_CLIENT_ORDER_ID")
        assert error.metadata.get("order_id") == resting.order.order_id
        gateway.public.GetOrder(
            gateway_pb2.GetOrderRequest(order_id=resting.order.order_id), metadata=key(buyer_key)
        )
        # The claim names the original again: the next retry is answered without risk or a new id.
        third = gateway.public.SubmitOrder(
            order(SYMBOL, BUY, "10.00", "2", client_order_id="flushed-id"), metadata=key(buyer_key)
        )
        assert third.order.order_id == resting.order.order_id

        # Never a second order: one bid of each, and only their reservations are held.
        assert book(gateway, buyer_key) == [("20.00", "0.5000", 1), ("10.00", "2.0000", 1)]
        settles_to(
            lambda: balances(gateway, buyer_key)["USD"].reserved, "30.060000", what="the buyer's reservations"
        )
    invariants_hold(system.database_url, system.redis_url)


def test_concurrent_submissions_of_one_client_order_id_place_one_order(system: System) -> None:
    symbol = "SOL-USD"
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, symbol, "SOL")
        _, api_key = funded_account(gateway, {"USD": "1000"})
        request = order(symbol, BUY, "2.00", "1", client_order_id="racing-id")
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: gateway.public.SubmitOrder(request, metadata=key(api_key)), range(8))
            )
        # The later ones wait for the first attempt and are answered with its order.
        assert len({answer.order.order_id for answer in answers}) == 1
        assert book(gateway, api_key, symbol) == [("2.00", "1.0000", 1)]
    invariants_hold(system.database_url, system.redis_url)
