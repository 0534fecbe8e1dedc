"""A burst at a just-started system is answered on its merits, not with UNAVAILABLE from a pool.

Five hundred affordable orders arrive at once at a freshly started gateway while Redis stalls for a
moment (CLIENT PAUSE, as while it forks for a snapshot), so every order's client-order-id claim
finds all of the gateway's Redis connections busy. The pools wait for a free connection (bounded by
the call timeout) instead of failing with "Too many connections" (which, before, answered 436 of
the 500 UNAVAILABLE REDIS_UNAVAILABLE), so every order is accepted and holds its reservation.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal

import grpc
import pytest
import redis

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.runtime.embedded import EmbeddedRedis, free_port
from backbone.runtime.errors import from_rpc_error
from ops.supervisor import ServiceProcesses
from tests.conftest import System
from tests.integration.gateway_calls import BUY, Gateway, funded_account, key, order, setup_market
from tests.waiting import eventually

pytestmark = pytest.mark.integration

ORDERS = 500
ACCOUNTS = 10
STALL_MS = 1000
# A buy of 0.01 at 10.00 with the 20 bps taker fee reserves 0.1 + ceil(0.1 x 0.002) = 0.100200 USD.
RESERVED_PER_ORDER = Decimal("0.100200")


@pytest.fixture(scope="module")
def system(new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A freshly started system with a Redis server of its own (as tests/conftest.py builds them).

    Its own Redis because the burst pauses it (CLIENT PAUSE stops a whole server, which must not
    stall other systems), and because the session's Redis has no database number to spare.
    """
    cache = EmbeddedRedis(tmp_path_factory.mktemp("burst-redis"), durable=False)
    cache.start()
    admin_key = "test-admin-" + secrets.token_hex(8)
    environment = {
        "BACKBONE_DATABASE_URL": new_database(),
        "BACKBONE_REDIS_URL": cache.url,
        "BACKBONE_ADMIN_KEY": admin_key,
        "BACKBONE_LOG_FORMAT": "json",
        "BACKBONE_LOG_LEVEL": "info",
        "BACKBONE_GRACE_PERIOD_SECONDS": "5",
        **{
            f"BACKBONE_{name.upper()}_ADDRESS": f"127.0.0.1:{free_port()}"
            for name in ("gateway", "risk", "trading", "settlement")
        },
    }
    log_dir = tmp_path_factory.mktemp("burst-logs")
    services = ServiceProcesses(environment, log_dir)
    try:
        services.start_all()
        yield System(services, admin_key, environment["BACKBONE_DATABASE_URL"], cache.url, log_dir)
    finally:
        services.stop_all()
        cache.stop()


async def test_a_burst_of_affordable_orders_at_a_fresh_system_is_all_accepted(system: System) -> None:
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "BRS-USD", "BRS")
        keys = [funded_account(gateway, {"USD": "1000"})[1] for _ in range(ACCOUNTS)]
    # A just-started gateway: no API key, instrument or Redis connection is cached yet.
    system.services.stop("gateway")
    system.services.start("gateway")
    system.services.wait_healthy("gateway")

    channels = [grpc.aio.insecure_channel(system.gateway) for _ in range(4)]
    stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in channels]  # type: ignore[no-untyped-call]

    async def usd(api_key: str) -> gateway_pb2.Balance | None:
        request = gateway_pb2.GetBalancesRequest()
        answer = await stubs[0].GetBalances(request, metadata=key(api_key), timeout=10)
        return next((b for b in answer.balances if b.asset == "USD"), None)

    async def funded(api_key: str) -> bool:
        balance = await usd(api_key)
        return balance is not None and Decimal(balance.available) == 1000

    outcomes: Counter[str] = Counter()

    async def submit(index: int) -> None:
        request = order("BRS-USD", BUY, "10.00", "0.01")
        try:
            answer: gateway_pb2.SubmitOrderResponse = await stubs[index % len(stubs)].SubmitOrder(
                request, metadata=key(keys[index % ACCOUNTS]), timeout=30
            )
        except grpc.aio.AioRpcError as error:
            failure = from_rpc_error(error)
            outcomes[f"{failure.code.name} {failure.reason}: {failure.message}"] += 1
            return
        outcomes[common_pb2.OrderStatus.Name(answer.order.status)] += 1

    try:
        # Each client signs in first (its balance, which also shows the deposit reached risk) ...
        for api_key in keys:
            await eventually(functools.partial(funded, api_key), "the deposit reaching risk")
        # ... then Redis stalls and all of them order at once.
        stall = redis.Redis.from_url(system.redis_url)
        try:
            stall.client_pause(STALL_MS, all=False)  # CLIENT PAUSE <ms> WRITE
        finally:
            stall.close()
        await asyncio.gather(*(submit(i) for i in range(ORDERS)))
        assert outcomes == Counter({"ORDER_STATUS_NEW": ORDERS}), outcomes
        # Each order holds its reservation (one account read: each read waits for risk to catch up).
        balance = await usd(keys[0])
        assert balance is not None
        assert Decimal(balance.reserved) == RESERVED_PER_ORDER * (ORDERS // ACCOUNTS)
    finally:
        for c in channels:
            await c.close()
