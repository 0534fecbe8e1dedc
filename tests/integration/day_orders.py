"""DAY orders placed as the gateway would place them, for tests on a branch whose public SubmitOrder
takes GTC orders only: reserved at risk, then sent on trading's internal StreamOrders with the
reservation's epoch (so risk's reservations and trading's orders agree, and the invariants hold)."""

from __future__ import annotations

import uuid

import grpc

from backbone.common.v1 import common_pb2
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from tests.conftest import System

BUY = common_pb2.SIDE_BUY


def place_day_order(system: System, account: str, symbol: str, price_ticks: int, lots: int) -> str:
    """A DAY buy as the gateway would place it (reserved at risk, then sent to trading with the
    reservation's epoch): the public SubmitOrder does not take DAY orders on this branch."""
    order_id = uuid.uuid4().hex
    with grpc.insecure_channel(system.services.address("risk")) as channel:
        risk = risk_pb2_grpc.RiskServiceStub(channel)  # type: ignore[no-untyped-call]
        reserve = risk_pb2.ReservationCommand(
            reserve=risk_pb2.Reserve(
                order_id=order_id, account_id=account, symbol=symbol, side=BUY,
                price_ticks=price_ticks, quantity_lots=lots,
            )
        )  # fmt: skip
        responses = risk.StreamReservations(
            iter([risk_pb2.StreamReservationsRequest(sequence=1, commands=[reserve])])
        )
        (result,) = next(iter(responses)).results
        assert result.accepted
    with grpc.insecure_channel(system.services.address("trading")) as channel:
        trading = trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
        new_order = trading_pb2.NewOrder(
            order_id=order_id, client_order_id=f"day-{order_id[:8]}", account_id=account, symbol=symbol,
            side=BUY, type=common_pb2.ORDER_TYPE_LIMIT, time_in_force=common_pb2.TIME_IN_FORCE_DAY,
            price_ticks=price_ticks, quantity_lots=lots, risk_epoch=result.epoch,
        )  # fmt: skip
        request = trading_pb2.StreamOrdersRequest(
            sequence=1, commands=[trading_pb2.OrderCommand(new_order=new_order)]
        )
        (answer,) = next(iter(trading.StreamOrders(iter([request])))).results
        assert [r.execution_type for r in answer.reports] == [common_pb2.EXECUTION_TYPE_ACCEPTED]
    return order_id
