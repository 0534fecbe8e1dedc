"""BACKBONE_TRADING_DAY_END on a running system: trading is down (SIGKILL) when the day ends, and
as it starts again it expires the DAY order that was open before that day end, releasing its
reservation; a GTC order stays. (The schedule itself, one expiry per day at the set time, is
tested with a fake clock in tests/unit/test_day_end.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from tests.conftest import System
from tests.integration.day_orders import place_day_order
from tests.integration.gateway_calls import (
    BUY,
    Gateway,
    balances,
    funded_account,
    invariants_hold,
    key,
    order,
    setup_market,
    wait_for,
)

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USD"
# The day end is this far ahead of the module's start: time to start a system and place orders.
SETUP_SECONDS = 20


@pytest.fixture(scope="module")
def day_end() -> int:
    """The Unix time (a whole second) of the day end the module's system is given."""
    return int(time.time()) + SETUP_SECONDS


@pytest.fixture(scope="module")
def system(system_factory: Callable[..., System], day_end: int) -> System:
    """This module's one system, its day end set to `day_end`'s UTC "HH:MM"."""
    return system_factory(BACKBONE_TRADING_DAY_END=datetime.fromtimestamp(day_end, UTC).strftime("%H:%M:%S"))


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gw = Gateway(channel, system.admin_key)
        setup_market(gw, SYMBOL, "BTC")
        yield gw


def test_a_day_end_missed_while_trading_was_down_expires_at_start(
    gateway: Gateway, system: System, day_end: int
) -> None:
    account_id, api_key = funded_account(gateway, {"USD": "10000"})
    day_order = place_day_order(system, account_id, SYMBOL, 9_000, 100)  # 90.00 x 0.01
    gtc = gateway.public.SubmitOrder(order(SYMBOL, BUY, "80.00", "0.01"), metadata=key(api_key)).order
    # Trading is killed before the day end (with a margin), so only the start can expire the order.
    assert time.time() < day_end - 2, "the setup took longer than SETUP_SECONDS; the day end is too close"

    assert system.services.kill("trading") == -9
    wait_for(lambda: time.time() > day_end + 1, timeout_seconds=SETUP_SECONDS + 10, what="the day end passed")
    system.services.start("trading")

    def status_of(order_id: str) -> int | None:
        try:
            found = gateway.public.GetOrder(
                gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key)
            )
        except grpc.RpcError:
            return None  # trading still starting
        return found.order.status

    wait_for(
        lambda: status_of(day_order) == common_pb2.ORDER_STATUS_EXPIRED,
        timeout_seconds=30,
        what="the DAY order expired at start",
    )
    assert status_of(gtc.order_id) == common_pb2.ORDER_STATUS_NEW
    # Only the GTC order's reservation is left: 80.00 x 0.01 plus the larger fee rate (20 bps).
    wait_for(lambda: balances(gateway, api_key)["USD"].reserved == "0.801600", what="the DAY order released")
    gateway.public.CancelAllOrders(gateway_pb2.CancelAllOrdersRequest(), metadata=key(api_key))
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))
