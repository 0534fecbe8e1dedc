"""What the gateway's servicers call: the service locator and the unary-call helper.

:class:`Backends` holds every dependency the gateway opened at start (Redis,
the stubs of risk, trading and settlement, the batched streams, the report
fan-out, the reference-data caches, the authenticator). Servicers receive a
``GetBackends`` callable rather than the object, so a call that arrives while
the gateway is starting or stopping is answered UNAVAILABLE instead of
touching half-built dependencies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis.asyncio as redis

from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.batching import BatchingStream
from backbone.runtime.config import Settings
from backbone.runtime.context import outgoing_metadata
from backbone.runtime.errors import from_rpc_error
from backbone.settlement.v1 import settlement_pb2_grpc
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from gateway.auth import ApiKeyAuthenticator
from gateway.fanout import ExecutionFanout
from gateway.instruments import AssetScales, InstrumentCache

# How long a command waits for a channel in reconnect backoff (longer than its largest backoff).
REACH_WAIT_SECONDS = 2.5

ReservationStream = BatchingStream[risk_pb2.ReservationCommand, risk_pb2.ReservationResult]
OrderStream = BatchingStream[trading_pb2.OrderCommand, trading_pb2.CommandResult]


@dataclass
class Backends:
    """What the servicers use, opened by GatewayApp.start()."""

    settings: Settings
    redis: redis.Redis
    risk: risk_pb2_grpc.RiskServiceStub
    trading: trading_pb2_grpc.TradingServiceStub
    settlement: settlement_pb2_grpc.SettlementServiceStub
    reservations: ReservationStream
    orders: OrderStream
    fanout: ExecutionFanout
    instruments: InstrumentCache
    assets: AssetScales
    auth: ApiKeyAuthenticator
    risk_channel: grpc.aio.Channel | None = None
    trading_channel: grpc.aio.Channel | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    async def call(self, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        """A unary call to another service with the deadline and request id; failures relayed."""
        return await call_unary(self.settings, method, request)


GetBackends = Callable[[], Backends]


async def call_unary(settings: Settings, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
    """A unary call to another service with the deadline and request id; failures relayed."""
    try:
        # wait_for_ready: a channel in reconnect backoff (a service restarting) waits for it,
        # within the deadline, instead of failing at once.
        return await method(
            request,
            timeout=float(settings.call_timeout_seconds),
            metadata=outgoing_metadata(),
            wait_for_ready=True,
        )
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None


async def unreachable(channel: grpc.aio.Channel | None, wait_seconds: float = REACH_WAIT_SECONDS) -> bool:
    """True when the channel is down and does not come back within `wait_seconds`.

    A command queued on a stream whose channel is down would not be sent, so the
    caller can be told at once (and for sure) that nothing happened; a service
    that is merely restarting gets the reconnect backoff's time to come back.
    """
    if channel is None:
        return False
    state = channel.get_state(try_to_connect=True)
    if state == grpc.ChannelConnectivity.SHUTDOWN:
        return True
    if state != grpc.ChannelConnectivity.TRANSIENT_FAILURE:
        return False
    try:
        await asyncio.wait_for(channel.channel_ready(), wait_seconds)
    except TimeoutError:
        return True
    return False
