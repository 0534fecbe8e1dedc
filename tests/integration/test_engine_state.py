"""The engine's state digest: AdminService.GetEngineState equals the journal's replay at the same
sequence (what `backbone check` compares), and the same digest comes back after SIGKILL and
restart; a live state that differs from the replay is reported as a violation."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import psycopg
import pytest

from backbone.gateway.v1 import gateway_pb2
from ops import invariants
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    funded_account,
    invariants_hold,
    key,
    order,
    refused,
    setup_market,
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


def engine_state(gateway: Gateway) -> gateway_pb2.EngineState:
    response = gateway.admin.GetEngineState(
        gateway_pb2.GetEngineStateRequest(), metadata=gateway.admin_metadata()
    )
    (state,) = response.shards
    return state


def state_when_up(gateway: Gateway) -> gateway_pb2.EngineState | None:
    try:
        return engine_state(gateway)
    except grpc.RpcError:
        return None


def test_the_digest_matches_the_journal_and_survives_a_sigkill(gateway: Gateway, system: System) -> None:
    _, buyer = funded_account(gateway, {"USD": "100000"})
    _, seller = funded_account(gateway, {"BTC": "2"})
    place = gateway.public.SubmitOrder
    place(order(SYMBOL, SELL, "50000.00", "0.5"), metadata=key(seller))
    place(order(SYMBOL, BUY, "50000.00", "0.2"), metadata=key(buyer))  # a trade
    resting = place(order(SYMBOL, BUY, "49000.00", "0.1"), metadata=key(buyer))
    gateway.public.CancelOrder(
        gateway_pb2.CancelOrderRequest(order_id=resting.order.order_id), metadata=key(buyer)
    )
    # Refusals journal nothing and must not change the digest either.
    refused(
        lambda: gateway.public.CancelOrder(
            gateway_pb2.CancelOrderRequest(order_id=resting.order.order_id), metadata=key(buyer)
        )
    )
    refused(lambda: place(order(SYMBOL, BUY, "50000.00", "1000"), metadata=key(buyer)))

    before = engine_state(gateway)
    assert before.shard and len(before.state_hash) == 64 and before.journal_sequence > 0
    # Orders in memory: the open one, and the closed ones until the history holds them (their
    # leaving does not change the digest).
    assert (before.open_orders, before.instruments) == (1, 1) and 1 <= before.orders <= 3
    report = invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))
    live = report.finding("live engine matches journal")
    assert live.status == "ok" and f"sequence {before.journal_sequence}" in live.summary

    assert system.services.kill("trading") == -9
    system.services.start("trading")
    after = wait_for(lambda: state_when_up(gateway), timeout_seconds=30, what="trading back")
    assert (after.journal_sequence, after.state_hash) == (before.journal_sequence, before.state_hash)
    assert (after.open_orders, after.instruments) == (1, 1) and 1 <= after.orders <= 3


def test_a_live_state_unlike_the_journal_is_a_violation(gateway: Gateway, system: System) -> None:
    state = engine_state(gateway)
    with psycopg.connect(system.database_url) as db:
        _, problems, live_problems = invariants._read_shards(
            db, {}, {state.shard: (state.journal_sequence, "0" * 64)}
        )
        assert problems == [] and len(live_problems) == 1 and "differs" in live_problems[0]
        _, _, ahead = invariants._read_shards(
            db, {}, {state.shard: (state.journal_sequence + 5, state.state_hash)}
        )
        assert len(ahead) == 1 and "beyond the journal" in ahead[0]


def test_without_a_trading_service_the_live_comparison_is_unchecked(system: System) -> None:
    report = invariants.check_once(system.database_url, system.redis_url, trading_address="127.0.0.1:1")
    assert report.finding("live engine matches journal").status == "unchecked"
    assert report.status == "ok"


def test_the_admin_call_needs_the_admin_key(gateway: Gateway, system: System) -> None:
    error = refused(lambda: gateway.admin.GetEngineState(gateway_pb2.GetEngineStateRequest()))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
