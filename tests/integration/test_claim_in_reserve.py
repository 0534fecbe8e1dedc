"""The client order id is claimed in risk's reserve (one atomic Redis step with the balance check and
the hold), seen from the gateway against real processes and storage: a refused order leaves no claim,
so its id is free at once for an order the account can afford, and the placed order's claim names it."""

from __future__ import annotations

import grpc
import pytest
import redis

from backbone.claims import CLIENT_ORDER_ID_TTL_SECONDS, client_order_id_key
from backbone.common.v1 import common_pb2
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
    setup_market,
)

pytestmark = pytest.mark.integration

SYMBOL = "CLM-USD"


def test_a_refused_order_leaves_no_claim_and_its_id_is_free_at_once(system: System) -> None:
    with grpc.insecure_channel(system.gateway) as channel, redis.Redis.from_url(system.redis_url) as client:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, SYMBOL, "CLM")
        account, api_key = funded_account(gateway, {"USD": "50"})
        claim = client_order_id_key(account, "first-try")

        error = refused(
            lambda: gateway.public.SubmitOrder(
                order(SYMBOL, BUY, "10.00", "100", client_order_id="first-try"), metadata=key(api_key)
            )
        )
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_BALANCE")
        assert client.get(claim) is None
        assert balances(gateway, api_key)["USD"].reserved == "0.000000"

        # The same id for an order the account can afford: placed, and the claim names it.
        placed = gateway.public.SubmitOrder(
            order(SYMBOL, BUY, "10.00", "1", client_order_id="first-try"), metadata=key(api_key)
        )
        assert placed.order.status == common_pb2.ORDER_STATUS_NEW
        assert client.get(claim) == placed.order.order_id.encode()
        assert 0 < client.ttl(claim) <= CLIENT_ORDER_ID_TTL_SECONDS
        held = balances(gateway, api_key)["USD"].reserved
        assert held != "0.000000"
        # Its retry is answered with it; nothing more is held.
        again = gateway.public.SubmitOrder(
            order(SYMBOL, BUY, "10.00", "1", client_order_id="first-try"), metadata=key(api_key)
        )
        assert again.order.order_id == placed.order.order_id
        assert balances(gateway, api_key)["USD"].reserved == held
    invariants_hold(system.database_url, system.redis_url)
