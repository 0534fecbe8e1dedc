"""What the gateway's servicers call: the service locator and the unary-call helper.

:class:`Backends` holds every dependency the gateway opened at start (Redis,
the stubs of risk, trading and settlement, the batched streams, the report
fan-out, the reference-data caches, the authenticator). Servicers receive a
``GetBackends`` callable rather than the object, so a call that arrives while
the gateway is starting or stopping is answered UNAVAILABLE instead of
touching half-built dependencies.

A unary call to a service that is down fails within its deadline, never
hangs: when the service's channel is down and does not come back within
``REACH_WAIT_SECONDS`` (a restart takes about that), the call is not sent and
answers UNAVAILABLE with RISK_UNAVAILABLE, TRADING_UNAVAILABLE or
SETTLEMENT_UNAVAILABLE; so does a call the service could not be reached for
before the deadline, or that lost the service on the way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis.asyncio as redis

from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.batching import BatchingStream
from backbone.runtime.config import Settings
from backbone.runtime.context import outgoing_metadata
from backbone.runtime.errors import ServiceError, from_rpc_error, unavailable
from backbone.settlement.v1 import settlement_pb2_grpc
from backbone.trading.v1 import trading_pb2_grpc
from gateway.auth import ApiKeyAuthenticator
from gateway.fanout import ExecutionFanout
from gateway.instruments import AssetScales, InstrumentCache
from gateway.market_data import MarketDataFanout
from gateway.reported import ReportedSequences
from gateway.shards import OrderStream, TradingShards
from gateway.validation import OrderDefaults

# How long a command waits for a channel in reconnect backoff (longer than its largest backoff).
REACH_WAIT_SECONDS = 2.5
# Unary calls the gateway has under way to one service at a time; more wait for a slot. A burst
# (thousands of resent orders whose client order ids are held, each confirmed with a GetOrder)
# would otherwise open thousands of calls at once on the service (whose gRPC server, before its
# pending-call limit was raised, cancelled some past a thousand: see backbone.runtime.server).
MAX_CALLS_IN_FLIGHT = 256

# The reason a call to each service gets when that service cannot be reached.
UNAVAILABLE_REASONS = {
    "risk": RejectReason.RISK_UNAVAILABLE,
    "trading": RejectReason.TRADING_UNAVAILABLE,
    "settlement": RejectReason.SETTLEMENT_UNAVAILABLE,
}

ReservationStream = BatchingStream[risk_pb2.ReservationCommand, risk_pb2.ReservationResult]


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
    reported: ReportedSequences = field(default_factory=ReportedSequences)
    market_data: MarketDataFanout | None = None
    # What configuration decides for an order (post-only mode, default self-trade prevention).
    order_defaults: OrderDefaults = field(default_factory=OrderDefaults)
    risk_channel: grpc.aio.Channel | None = None
    trading_channel: grpc.aio.Channel | None = None
    settlement_channel: grpc.aio.Channel | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    # Every trading shard (gateway/shards.py); `trading`, `orders` and `trading_channel` are the
    # default shard's.
    shards: TradingShards | None = None
    _callees: dict[int, tuple[str, grpc.aio.Channel | None]] = field(
        default_factory=dict, init=False, repr=False
    )
    _slots: dict[str | None, asyncio.Semaphore] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        # Which service (and channel) each stub method calls, so a failure can name it.
        for name, stub, channel in (
            ("risk", self.risk, self.risk_channel),
            ("trading", self.trading, self.trading_channel),
            ("settlement", self.settlement, self.settlement_channel),
        ):
            for method in vars(stub).values():
                self._callees[id(method)] = (name, channel)
        for shard in self.shards.all if self.shards is not None else ():
            for method in vars(shard.stub).values():
                self._callees[id(method)] = ("trading", shard.channel)

    @property
    def trading_shards(self) -> TradingShards:
        """Every trading shard; opened at start with the rest."""
        if self.shards is None:
            raise unavailable(RejectReason.SERVICE_STARTING, "the gateway is starting; retry shortly")
        return self.shards

    async def call(self, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        """A unary call to another service with the deadline and request id; failures relayed.

        At most MAX_CALLS_IN_FLIGHT to one service at a time: a call waits for a slot, up to
        its deadline (then UNAVAILABLE with the service's reason: nothing was sent).
        """
        service, channel = self._callees.get(id(method), (None, None))
        slots = self._slots.get(service)
        if slots is None:
            slots = self._slots[service] = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
        timeout = float(self.settings.call_timeout_seconds)
        try:
            await asyncio.wait_for(slots.acquire(), timeout)
        except TimeoutError:
            raise _busy(service or "the service", timeout) from None
        try:
            return await call_unary(self.settings, method, request, service=service, channel=channel)
        finally:
            slots.release()


GetBackends = Callable[[], Backends]


async def call_unary(
    settings: Settings,
    method: Callable[..., Awaitable[Any]],
    request: Any,
    *,
    service: str | None = None,
    channel: grpc.aio.Channel | None = None,
) -> Any:
    """A unary call to another service with the deadline and request id; failures relayed.

    With `service` (and its `channel`) named, the service being unreachable is told apart:
    UNAVAILABLE with that service's reason (:data:`UNAVAILABLE_REASONS`).
    """
    if service is not None and await unreachable(channel, REACH_WAIT_SECONDS):
        raise _unreachable(service, "it is down; nothing was sent")
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
        failure = from_rpc_error(error)
        if service is None or failure.reason != RejectReason.UNSPECIFIED:
            raise failure from None
        if failure.code == grpc.StatusCode.UNAVAILABLE:
            # The connection broke under the call (the service died): it may have been applied.
            raise _unreachable(
                service, f"it went away during the call ({failure.message}); it may have been applied"
            ) from None
        if failure.code == grpc.StatusCode.DEADLINE_EXCEEDED and _not_connected(channel):
            raise _unreachable(
                service, "it could not be reached before the deadline; nothing was sent"
            ) from None
        raise failure from None


def _not_connected(channel: grpc.aio.Channel | None) -> bool:
    return channel is not None and channel.get_state() != grpc.ChannelConnectivity.READY


def _unreachable(service: str, why: str) -> ServiceError:
    return unavailable(UNAVAILABLE_REASONS[service], f"{service} cannot be reached: {why}; retry")


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


def _busy(service: str, timeout_seconds: float) -> ServiceError:
    return unavailable(
        UNAVAILABLE_REASONS.get(service, RejectReason.UNSPECIFIED),
        f"{service} is busy: {MAX_CALLS_IN_FLIGHT} calls to it were under way for {timeout_seconds:g}s; "
        "nothing was sent; retry",
    )
