"""The client order id is claimed in risk's reserve (one atomic Redis step with the balance check and
the hold), seen from the gateway against real processes and storage: a refused order leaves no claim,
so its id is free at once for an order the account can afford, and the placed order's claim names it."""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest
import redis
import redis.asyncio as aioredis

from backbone.claims import CLIENT_ORDER_ID_TTL_SECONDS, client_order_id_key
from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from backbone.runtime.errors import ServiceError, unavailable
from backbone.trading.v1 import trading_pb2
from gateway.order_saga import OrderSaga, _Held
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
    unique,
)

pytestmark = pytest.mark.integration

SYMBOL = "CLM-USD"
CLAIMED = risk_pb2.CLIENT_ORDER_ID_CLAIM_CLAIMED
FREE = risk_pb2.CLIENT_ORDER_ID_CLAIM_FREE
HELD = risk_pb2.CLIENT_ORDER_ID_CLAIM_HELD
_no = common_pb2.Instrument()  # the claims do not read the instrument


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


async def test_the_gateway_claims_what_risk_did_not_look_at(redis_url: str) -> None:
    """Where risk did not look at the claim (it could not be reached, refused before looking, or is
    an older risk that does not claim), the gateway claims the id itself in one round trip; risk's
    own answers (CLAIMED, FREE, HELD) are taken as they are, with no round trip."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    account = unique("fallback")
    saga = OrderSaga()
    backends = SimpleNamespace(redis=client)  # the only backend a claim uses: a real Redis
    try:
        await client.set(client_order_id_key(account, "held"), "earlier", ex=CLIENT_ORDER_ID_TTL_SECONDS)
        names = ["free", "held", "risk-claimed", "risk-free", "risk-held", "unsent"]
        entries = [
            (trading_pb2.NewOrder(order_id=f"o-{name}", account_id=account, client_order_id=name), _no, key)
            for name in names
            for key in [client_order_id_key(account, name)]
        ]
        unlooked = risk_pb2.ReservationResult(accepted=True)  # an older risk: no claim answer
        results: list[risk_pb2.ReservationResult | ServiceError] = [
            unlooked,
            unlooked,
            risk_pb2.ReservationResult(accepted=True, client_order_id_claim=CLAIMED),
            risk_pb2.ReservationResult(accepted=False, client_order_id_claim=FREE),
            risk_pb2.ReservationResult(
                client_order_id_claim=HELD, client_order_id_holder="other", client_order_id_ttl_ms=-1
            ),
            unavailable(RejectReason.RISK_UNAVAILABLE, "risk cannot be reached"),
        ]
        claims = await saga._claims_of(backends, entries, results, claimed=False)  # type: ignore[arg-type]
        held = claims[1]
        assert isinstance(held, _Held) and held.order_id == "earlier" and 0 <= held.age_seconds < 60
        assert [claims[0], *claims[2:]] == [True, True, False, _Held("other", float("inf")), True]
        stored = {name: await client.get(client_order_id_key(account, name)) for name in names}
        # Claimed here: the two risk did not look at; risk's answers left as they are.
        assert stored == {
            "free": "o-free",
            "held": "earlier",
            "risk-claimed": None,
            "risk-free": None,
            "risk-held": None,
            "unsent": "o-unsent",
        }
        # With every id claimed by the gateway before (its one-by-one path), nothing is looked up.
        again = await saga._claims_of(backends, entries[:1], [unlooked], claimed=True)  # type: ignore[arg-type]
        assert again == [True]
    finally:
        await client.aclose()
