"""A reservation whose order never reached trading is released by trading's reconciler.

The gateway reserves before trading sees an order; if the order is then lost with nobody left to
resolve it (a gateway that died right after its reserve), risk would hold the money forever. The
test makes exactly that: a reserve straight at risk for an order trading never receives. Within
the reconciler's grace and interval, trading fences the order (it can never be accepted later),
risk releases the reservation on the fence, and `backbone check` finds no orphan.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from tests.conftest import System
from tests.integration.gateway_calls import (
    Gateway,
    balances,
    funded_account,
    invariants_hold,
    key,
    setup_market,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_reservation_without_an_order_is_fenced_and_released(system_factory: Callable[..., System]) -> None:
    system = system_factory(BACKBONE_RECONCILE_INTERVAL_SECONDS="1", BACKBONE_RECONCILE_GRACE_SECONDS="2")
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "BTC-USD", "BTC")
        account, api_key = funded_account(gateway, {"USD": "1000"})
        lost = unique("lost")
        with grpc.insecure_channel(system.services.address("risk")) as risk_channel:
            risk = risk_pb2_grpc.RiskServiceStub(risk_channel)  # type: ignore[no-untyped-call]
            command = risk_pb2.ReservationCommand(
                reserve=risk_pb2.Reserve(
                    order_id=lost,
                    account_id=account,
                    symbol="BTC-USD",
                    side=common_pb2.SIDE_BUY,
                    price_ticks=10_000,  # 100.00
                    quantity_lots=10_000,  # 1 BTC
                )
            )
            responses = risk.StreamReservations(
                iter([risk_pb2.StreamReservationsRequest(sequence=1, commands=[command])])
            )
            (result,) = next(iter(responses)).results
            assert result.accepted
        held = balances(gateway, api_key)["USD"]
        assert held.reserved == "100.200000"  # 100 plus the larger fee rate, 20 bps
        # The order never reaches trading: the reconciler fences it and risk lets the money go.
        wait_for(
            lambda: balances(gateway, api_key)["USD"].reserved == "0.000000",
            timeout_seconds=20,
            what="the lost order's reservation released",
        )
        invariants_hold(system.database_url, system.redis_url)
        # Fenced: the order id can never be accepted later, and GetOrder says why it is not there.
        with pytest.raises(grpc.RpcError) as raised:
            gateway.public.GetOrder(gateway_pb2.GetOrderRequest(order_id=lost), metadata=key(api_key))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_replace_mark_nobody_resolves_is_fenced_and_its_grow_given_back(
    system_factory: Callable[..., System],
) -> None:
    """A gateway that died between its grow and trading's answer leaves the hold grown and marked;
    the reconciler, having seen the mark for its grace, settles it: fenced, the grow given back,
    and the order takes the next replace."""
    system = system_factory(BACKBONE_RECONCILE_INTERVAL_SECONDS="1", BACKBONE_RECONCILE_GRACE_SECONDS="2")
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "BTC-USD", "BTC")
        account, api_key = funded_account(gateway, {"USD": "1000"})
        submitted = gateway.public.SubmitOrder(
            gateway_pb2.SubmitOrderRequest(
                client_order_id=unique("c"),
                symbol="BTC-USD",
                side=common_pb2.SIDE_BUY,
                price="100.00",
                quantity="1",
            ),
            metadata=key(api_key),
        ).order
        assert balances(gateway, api_key)["USD"].reserved == "100.200000"
        with grpc.insecure_channel(system.services.address("risk")) as risk_channel:
            risk = risk_pb2_grpc.RiskServiceStub(risk_channel)  # type: ignore[no-untyped-call]
            grow = risk_pb2.ReservationCommand(
                grow_for_replace=risk_pb2.GrowForReplace(
                    order_id=submitted.order_id,
                    account_id=account,
                    symbol="BTC-USD",
                    side=common_pb2.SIDE_BUY,
                    price_ticks=12_000,  # 120.00
                    leaves_lots=10_000,  # 1 BTC
                    replace_id=unique("orphan"),
                )
            )
            responses = risk.StreamReservations(
                iter([risk_pb2.StreamReservationsRequest(sequence=1, commands=[grow])])
            )
            (result,) = next(iter(responses)).results
            assert result.accepted
        # The gateway that grew it is gone: nobody sends the replace or asks about it.
        assert balances(gateway, api_key)["USD"].reserved == "120.240000"
        wait_for(
            lambda: balances(gateway, api_key)["USD"].reserved == "100.200000",
            timeout_seconds=30,
            what="the orphan replace's grow given back",
        )
        replaced = gateway.public.ReplaceOrder(
            gateway_pb2.ReplaceOrderRequest(order_id=submitted.order_id, price="110.00"),
            metadata=key(api_key),
        )
        assert replaced.order.price == "110.00"
        invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))
