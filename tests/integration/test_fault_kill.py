"""SIGKILL mid-flow: services killed while orders stream in, restarted; nothing lost, nothing doubled.

Orders keep arriving from many accounts while settlement, risk and trading
are each killed with SIGKILL and started again. Afterwards every order the
gateway confirmed is known to trading, and `backbone check` finds every
invariant holding: entries balanced, assets netting to zero, the journal
replaying, every journaled trade posted exactly once as computed, risk's
totals equal to the ledger's, and every open order holding exactly what it
needs in risk, with no reservation left behind by an order whose outcome was
unknown (the gateway resolves each by itself: found in the journal, or fenced
and its reservation released). Each such order ends in one definite state:
GetOrder and a retry with its client order id agree.
"""

from __future__ import annotations

import random
import time

import grpc
import pytest

from backbone.gateway.v1 import gateway_pb2
from tests.conftest import System
from tests.integration.gateway_calls import (
    Gateway,
    funded_account,
    invariants_hold,
    key,
    setup_market,
)
from tests.integration.order_flow import OrderFlow

pytestmark = pytest.mark.integration

ACCOUNTS = 8
TRADING_KILLS = 20


# Both tests run on the module's system (its services are restarted, never replaced), each with
# accounts of its own: a session has 15 Redis databases for systems.


def test_sigkill_mid_flow_loses_and_doubles_nothing(system: System) -> None:
    services = system.services
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "BTC-USD", "BTC")
        accounts = [funded_account(gateway, {"USD": "100000", "BTC": "100"}) for _ in range(ACCOUNTS)]
        keys = [api_key for _, api_key in accounts]

        with OrderFlow(gateway, keys) as flow:
            flow.wait_more(40)
            for victim in ("settlement", "risk", "trading"):
                assert services.kill(victim) == -9
                time.sleep(0.3)  # orders keep arriving while it is down
                services.start(victim)
                services.wait_healthy(victim)
                flow.wait_more(40)
        assert flow.outcomes.get("OK", 0) >= 160, flow.outcomes

        # Nothing accepted is lost: trading knows every order the gateway confirmed.
        for order_id, api_key in flow.accepted.items():
            found = gateway.public.GetOrder(
                gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key)
            )
            assert found.order.order_id == order_id

    # Every invariant holds once the consumers catch up (`backbone check`): no reservation is left
    # without its open order, not even by an order whose outcome was unknown.
    invariants_hold(system.database_url, system.redis_url)


def test_sigkill_of_trading_leaves_no_outcome_unknown_and_no_orphaned_reservation(system: System) -> None:
    services = system.services
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "BTC-USD", "BTC")
        accounts = [funded_account(gateway, {"USD": "1000000", "BTC": "1000"}) for _ in range(ACCOUNTS)]
        keys = [api_key for _, api_key in accounts]

        with OrderFlow(gateway, keys, threads=8) as flow:
            flow.wait_more(40)
            moments = random.Random(7)
            for _ in range(TRADING_KILLS):
                time.sleep(moments.uniform(0.0, 0.3))  # a random moment of the flow
                assert services.kill("trading") == -9  # mid-batch: orders are in flight
                time.sleep(0.2)
                services.start("trading")
                services.wait_healthy("trading")
                flow.wait_more(10)
        unknown = dict(flow.unknown)
        print(f"outcomes {flow.outcomes}; {len(unknown)} answered OUTCOME_UNKNOWN")
        assert unknown, f"no kill caught an order in flight: {flow.outcomes}"

        # The gateway resolves each by itself: nothing stays reserved for an order that is not open.
        invariants_hold(system.database_url, system.redis_url)

        # Each ends in one definite state, on which GetOrder and a retry with its client order id agree.
        found = fenced = 0
        for order_id, (api_key, request) in unknown.items():
            asked = gateway_pb2.GetOrderRequest(order_id=order_id)
            try:
                state = gateway.public.GetOrder(asked, metadata=key(api_key)).order
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND, error
                state = None
            retry = gateway.public.SubmitOrder(request, metadata=key(api_key), timeout=10)
            if state is not None:
                found += 1
                assert retry.order.order_id == order_id  # the retry is answered with the order
                assert retry.order.client_order_id == state.client_order_id == request.client_order_id
            else:
                fenced += 1
                assert retry.order.order_id != order_id  # never placed: the retry places it now
                with pytest.raises(grpc.RpcError) as again:  # and it never will be placed
                    gateway.public.GetOrder(asked, metadata=key(api_key))
                assert again.value.code() == grpc.StatusCode.NOT_FOUND
            placed = gateway.public.GetOrder(
                gateway_pb2.GetOrderRequest(order_id=retry.order.order_id), metadata=key(api_key)
            )
            assert placed.order.client_order_id == request.client_order_id
        print(f"of those, {found} were journaled and {fenced} were fenced")

        # Nothing accepted is lost.
        for order_id, api_key in flow.accepted.items():
            gateway.public.GetOrder(gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key))
    invariants_hold(system.database_url, system.redis_url)
