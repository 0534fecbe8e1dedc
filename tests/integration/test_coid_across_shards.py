"""Client order ids stay unique per account across two trading shards when Redis loses the claims.

Two real trading shards (trading-0 owns AAA-USD, trading-1 owns BBB-USD), a real Redis: an id used
on one shard, then the claims flushed, is refused on the other shard naming its holder (open or
closed and forgotten into the report history), with the refused order's reservation released and
the balances as before; the holder's own retry is still answered with it. While the claims are
complete (the marker older than the claims' lifetime) no shard is asked, and while they may not be
each batch asks each other shard once (counted by FindClientOrders' calls_answered). A shard that
cannot be reached makes the orders needing it UNAVAILABLE (CLIENT_ORDER_ID_UNCHECKED), nothing
placed. Bad input to FindClientOrders is INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial

import grpc
import pytest
import redis

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.ids import shard_of_order_id
from backbone.reasons import RejectReason
from backbone.runtime.errors import from_rpc_error
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from gateway.client_order_ids import CLAIMS_COMPLETE_SINCE_KEY
from gateway.order_saga import CLIENT_ORDER_ID_TTL_SECONDS, client_order_id_key
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    Gateway,
    balances,
    funded_account,
    invariants_hold,
    key,
    order,
    refused,
    set_claims_marker,
    settles_to,
    setup_market,
    two_shard_settings,
    unique,
    wait_for,
)
from tests.integration.order_stream_calls import OK, OrderStream, submit
from tests.integration.test_client_order_ids import _submit_until_served

pytestmark = pytest.mark.integration

ON_ZERO, ON_ONE = "AAA-USD", "BBB-USD"
SHARDS = ("trading-0", "trading-1")
Stubs = dict[str, trading_pb2_grpc.TradingServiceStub]


@pytest.fixture(scope="module")
def system(system_factory: Callable[..., System]) -> System:
    return system_factory(**two_shard_settings([ON_ZERO], [ON_ONE]))


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        for symbol in (ON_ZERO, ON_ONE):
            setup_market(gateway, symbol, symbol.split("-")[0])
        yield gateway


@pytest.fixture(scope="module")
def shards(system: System) -> Iterator[Stubs]:
    channels = {name: grpc.insecure_channel(system.services.address(name)) for name in SHARDS}
    try:
        yield {
            name: trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
            for name, channel in channels.items()
        }
    finally:
        for channel in channels.values():
            channel.close()


def trader(gateway: Gateway) -> tuple[str, str]:
    return funded_account(gateway, {"USD": "1000"})


def calls_answered(stub: trading_pb2_grpc.TradingServiceStub) -> int:
    """How many FindClientOrders the shard has answered, this probe included."""
    probe = trading_pb2.FindClientOrdersRequest(
        keys=[trading_pb2.ClientOrderKey(account_id="probe", client_order_id="probe")]
    )
    return int(stub.FindClientOrders(probe, timeout=10).calls_answered)


def asked_since(stubs: Stubs, before: dict[str, int]) -> dict[str, int]:
    """The FindClientOrders each shard answered since `before` (its calls_answered then), other
    than the probes."""
    return {name: calls_answered(stub) - before[name] - 1 for name, stub in stubs.items()}


def holdings(gateway: Gateway, api_key: str) -> dict[str, tuple[str, str, str]]:
    """Each asset's (total, available, reserved)."""
    return {asset: (b.total, b.available, b.reserved) for asset, b in balances(gateway, api_key).items()}


def flush(system: System) -> None:
    with redis.Redis.from_url(system.redis_url) as cache:
        cache.flushdb()


def refusal_of(answer: object) -> tuple[grpc.StatusCode, str, str]:
    """(code, reason, the order id named) of a refused submission."""
    assert isinstance(answer, grpc.RpcError), answer
    error = from_rpc_error(answer)
    return error.code, error.reason, error.metadata.get("order_id", "")


def test_a_brand_new_system_needs_care_only_for_the_attempts_under_way(
    gateway: Gateway, system: System
) -> None:
    """No shard has an order yet: the first batch writes the marker so that only claims of the
    last attempts' time could be missing (the claims' lifetime minus that, in the past)."""
    with redis.Redis.from_url(system.redis_url) as cache:
        assert cache.get(CLAIMS_COMPLETE_SINCE_KEY) is None
        _, api_key = trader(gateway)
        before = time.time()
        gateway.public.SubmitOrder(order(ON_ZERO, BUY, "1.00", "1"), metadata=key(api_key))
        since = float(cache.get(CLAIMS_COMPLETE_SINCE_KEY))
    # The attempt bound is 2 x BACKBONE_CALL_TIMEOUT_SECONDS + 10 s: well under an hour.
    assert before - CLIENT_ORDER_ID_TTL_SECONDS < since < before - CLIENT_ORDER_ID_TTL_SECONDS + 3600


def test_an_id_used_on_one_shard_is_refused_on_the_other_after_a_flush(
    gateway: Gateway, system: System, shards: Stubs
) -> None:
    account_id, api_key = trader(gateway)
    held = gateway.public.SubmitOrder(
        order(ON_ZERO, BUY, "10.00", "2", client_order_id="shared-id"), metadata=key(api_key)
    ).order
    assert shard_of_order_id(held.order_id) == "trading-0"
    # A second order, closed at once and forgotten by trading-0's engine (its history has it).
    closed = gateway.public.SubmitOrder(
        order(ON_ZERO, BUY, "5.00", "1", client_order_id="closed-id"), metadata=key(api_key)
    ).order
    gateway.public.CancelOrder(
        gateway_pb2.CancelOrderRequest(order_id=closed.order_id), metadata=key(api_key)
    )
    # An open order after it: the open-order index keeps the newest order it took in memory.
    gateway.public.SubmitOrder(order(ON_ZERO, BUY, "1.00", "1"), metadata=key(api_key))
    reserved = "21.042000"  # 2 x 10 + 1 x 1 USD and the 20 bps taker fee

    def engine_holds_open_orders_only() -> bool:
        state = shards["trading-0"].GetEngineState(trading_pb2.GetEngineStateRequest(), timeout=10)
        return bool(state.orders == state.open_orders)

    wait_for(engine_holds_open_orders_only, what="trading-0 forgot its closed orders")
    settles_to(lambda: balances(gateway, api_key)["USD"].reserved, reserved, what="the hold")
    before = holdings(gateway, api_key)
    asked = {name: calls_answered(stub) for name, stub in shards.items()}

    flushed = time.time()
    flush(system)
    for client_order_id, holder in (("shared-id", held), ("closed-id", closed)):
        # A different order on trading-1 under the id trading-0 holds: refused, naming the holder.
        answer = _submit_until_served(
            gateway, order(ON_ONE, BUY, "3.00", "1", client_order_id=client_order_id), api_key
        )
        assert refusal_of(answer) == (
            grpc.StatusCode.ALREADY_EXISTS,
            RejectReason.DUPLICATE_CLIENT_ORDER_ID,
            holder.order_id,
        )
    # trading-0 was asked once per batch (one order each); the first batch, finding the marker
    # gone, asked every shard (their order counts tell whether the system is brand-new).
    assert asked_since(shards, asked) == {"trading-0": 2, "trading-1": 1}
    # The shards have orders: the claims are complete only from the batch that found the marker gone.
    with redis.Redis.from_url(system.redis_url) as cache:
        assert flushed <= float(cache.get(CLAIMS_COMPLETE_SINCE_KEY)) <= time.time()
    book = gateway.public.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol=ON_ONE), metadata=key(api_key))
    assert list(book.bids) == []
    # The refused orders' reservations were released: the balances are as before the flush.
    settles_to(
        lambda: holdings(gateway, api_key),
        before,
        what="the balances",
    )
    # The holder's own retry, its claim gone again, is answered with it by its own shard (trading-1,
    # asked, holds nothing), and its reservation is not kept twice.
    with redis.Redis.from_url(system.redis_url) as cache:
        assert cache.delete(client_order_id_key(account_id, "shared-id")) == 1
    asked = {name: calls_answered(stub) for name, stub in shards.items()}
    retry = gateway.public.SubmitOrder(
        order(ON_ZERO, BUY, "10.00", "2", client_order_id="shared-id"), metadata=key(api_key)
    )
    assert (retry.order.order_id, retry.order.status) == (held.order_id, common_pb2.ORDER_STATUS_NEW)
    assert asked_since(shards, asked) == {"trading-0": 0, "trading-1": 1}
    settles_to(lambda: holdings(gateway, api_key), before, what="the balances after the retry")
    invariants_hold(system.database_url, system.redis_url, [system.services.address(n) for n in SHARDS])


def test_no_shard_is_asked_while_the_claims_are_complete(
    gateway: Gateway, system: System, shards: Stubs
) -> None:
    _, api_key = trader(gateway)
    set_claims_marker(system.redis_url)
    asked = {name: calls_answered(stub) for name, stub in shards.items()}
    for symbol in (ON_ZERO, ON_ONE, ON_ZERO):
        gateway.public.SubmitOrder(order(symbol, BUY, "1.00", "1"), metadata=key(api_key))
    assert asked_since(shards, asked) == {"trading-0": 0, "trading-1": 0}
    # Claims lost a moment ago: each order's batch asks the other shard once, never its own.
    set_claims_marker(system.redis_url, time.time())
    asked = {name: calls_answered(stub) for name, stub in shards.items()}
    for symbol in (ON_ZERO, ON_ONE, ON_ZERO):
        gateway.public.SubmitOrder(order(symbol, BUY, "1.00", "1"), metadata=key(api_key))
    assert asked_since(shards, asked) == {"trading-0": 1, "trading-1": 2}
    # One request of four orders, two on each shard: each shard is asked once, for the other's two.
    asked = {name: calls_answered(stub) for name, stub in shards.items()}
    with grpc.insecure_channel(system.gateway) as channel:
        stream = OrderStream(channel, api_key)
        stream.send(*(submit(order(symbol, BUY, "1.00", "1")) for symbol in (ON_ZERO, ON_ONE) * 2))
        stream.wait_results(4)
        stream.close()
        assert [stream.results[(1, index)].code for index in range(4)] == [OK] * 4
    assert asked_since(shards, asked) == {"trading-0": 1, "trading-1": 1}


def test_a_marker_that_is_not_a_time_counts_as_missing(
    gateway: Gateway, system: System, shards: Stubs
) -> None:
    """Checked as after a loss (every shard asked), then written again as a time."""
    _, api_key = trader(gateway)
    with redis.Redis.from_url(system.redis_url) as cache:
        cache.set(CLAIMS_COMPLETE_SINCE_KEY, "not a time")
        asked = {name: calls_answered(stub) for name, stub in shards.items()}
        before = time.time()
        placed = gateway.public.SubmitOrder(order(ON_ZERO, BUY, "1.00", "1"), metadata=key(api_key))
        assert placed.order.status == common_pb2.ORDER_STATUS_NEW
        assert asked_since(shards, asked) == {"trading-0": 1, "trading-1": 1}
        assert before <= float(cache.get(CLAIMS_COMPLETE_SINCE_KEY)) <= time.time()


def test_a_shard_that_cannot_confirm_refuses_the_orders_needing_it(gateway: Gateway, system: System) -> None:
    _, api_key = trader(gateway)
    set_claims_marker(system.redis_url, time.time())  # the claims may be incomplete
    settles_to(lambda: balances(gateway, api_key)["USD"].reserved, "0.000000", what="no hold")
    request = order(ON_ZERO, BUY, "4.00", "1", client_order_id=unique("unchecked"))
    services = system.services
    services.kill("trading-1")
    try:
        error = refused(lambda: gateway.public.SubmitOrder(request, metadata=key(api_key), timeout=30))
        assert (error.code, error.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.CLIENT_ORDER_ID_UNCHECKED,
        )
        assert "trading-1" in error.message
        # Nothing placed, the reservation given back.
        book = gateway.public.GetOrderBook(
            gateway_pb2.GetOrderBookRequest(symbol=ON_ZERO), metadata=key(api_key)
        )
        assert ("4.00", "1.0000") not in [(level.price, level.quantity) for level in book.bids]
        settles_to(lambda: balances(gateway, api_key)["USD"].reserved, "0.000000", what="the hold released")
    finally:
        services.start("trading-1")
        services.wait_healthy("trading-1")
    # With the shard back, the same order (same client order id) is placed.
    placed = wait_for(lambda: _placed(gateway, request, api_key), timeout_seconds=30, what="the order placed")
    assert placed is not None and placed.order.status == common_pb2.ORDER_STATUS_NEW
    invariants_hold(system.database_url, system.redis_url, [system.services.address(n) for n in SHARDS])


def _placed(
    gateway: Gateway, request: gateway_pb2.SubmitOrderRequest, api_key: str
) -> gateway_pb2.SubmitOrderResponse | None:
    try:
        answer: gateway_pb2.SubmitOrderResponse = gateway.public.SubmitOrder(
            request, metadata=key(api_key), timeout=10
        )
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return None
    return answer


def test_find_client_orders_refuses_bad_input(
    shards: Stubs,
) -> None:
    stub = shards["trading-0"]
    good = trading_pb2.ClientOrderKey(account_id="acct-1", client_order_id="c-1")
    cases: tuple[tuple[list[trading_pb2.ClientOrderKey], str, RejectReason], ...] = (
        ([], "keys", RejectReason.REQUIRED),
        ([good] * 10_001, "keys", RejectReason.TOO_MANY_COMMANDS),
        (
            [good, trading_pb2.ClientOrderKey(account_id="bad id", client_order_id="c-1")],
            "keys[1].account_id",
            RejectReason.INVALID_ACCOUNT_ID,
        ),
        (
            [trading_pb2.ClientOrderKey(client_order_id="c-1")],
            "keys[0].account_id",
            RejectReason.INVALID_ACCOUNT_ID,
        ),
        (
            [trading_pb2.ClientOrderKey(account_id="acct-1", client_order_id="c 1")],
            "keys[0].client_order_id",
            RejectReason.INVALID_CLIENT_ORDER_ID,
        ),
        (
            [trading_pb2.ClientOrderKey(account_id="acct-1", client_order_id="c" * 65)],
            "keys[0].client_order_id",
            RejectReason.INVALID_CLIENT_ORDER_ID,
        ),
    )
    before = calls_answered(stub)
    for keys, field, reason in cases:
        request = trading_pb2.FindClientOrdersRequest(keys=keys)
        error = refused(partial(stub.FindClientOrders, request, timeout=10))
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason), field
        assert [violation.field for violation in error.violations] == [field]
    # None of them was answered (none counted); a key nobody holds is answered unset.
    answer = stub.FindClientOrders(trading_pb2.FindClientOrdersRequest(keys=[good]), timeout=10)
    assert answer.calls_answered == before + 1
    assert [holder.HasField("order") for holder in answer.holders] == [False]
