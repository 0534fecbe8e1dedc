"""Composition root of the gateway: Redis, channels, batched streams, fan-out, servicers.

The gateway's standard health (the "" entry and its two services) says NOT_SERVING while risk,
trading or settlement is missing: a :class:`DependencyWatch` asks each one for its own standard
health over the gateway's channel to it, twice a second, and the gateway republishes its entries
whenever that changes (and every ``HEALTH_REFRESH_SECONDS``). The entries'
``backbone-health-detail`` trailer names what is missing and since when. Polling Check (rather
than one Watch stream per dependency) keeps a dependency that hangs from looking alive. With
several trading shards (gateway/shards.py) each is watched, and one serving is enough: a shard
that is down stops only its own symbols.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import redis.asyncio as redis
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.batching import BatchingStream
from backbone.runtime.cache import open_redis
from backbone.runtime.channels import open_channel
from backbone.runtime.config import Settings
from backbone.runtime.context import outgoing_metadata
from backbone.runtime.errors import ServiceError, unavailable
from backbone.runtime.reconnect import describe_break
from backbone.runtime.server import HealthEntries
from backbone.runtime.tasks import stop_task
from backbone.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from gateway.admin import AdminServicer
from gateway.auth import ApiKeyAuthenticator
from gateway.backends import Backends, call_unary, unreachable
from gateway.client_order_ids import ClientOrderIdCheck
from gateway.fanout import ExecutionFanout
from gateway.instruments import AssetScales, InstrumentCache
from gateway.market_data import MarketDataFanout
from gateway.order_saga import ATTEMPT_SLACK_SECONDS
from gateway.servicer import GatewayServicer
from gateway.shards import OrderStream, TradingShard, TradingShards
from gateway.validation import OrderDefaults

log = structlog.get_logger("backbone.gateway")

_SERVICES = gateway_pb2.DESCRIPTOR.services_by_name

# How often the gateway sets its health entries again from what it knows of its dependencies.
HEALTH_REFRESH_SECONDS = 0.25
# How often the gateway asks risk, trading and settlement for their health, and how long it waits.
DEPENDENCY_POLL_SECONDS = 0.5
DEPENDENCY_CHECK_TIMEOUT_SECONDS = 1.0
# A dependency that refuses the connection or answers NOT_SERVING is missing at once; one that
# only answers too slowly (a loaded machine) is missing after this many slow answers in a row.
SLOW_ANSWERS_MISSING = 3
_SERVING = health_pb2.HealthCheckResponse.SERVING


class DependencyWatch:
    """Risk, trading and settlement as the gateway sees them: each one's standard health, watched."""

    def __init__(
        self,
        channels: Mapping[str, grpc.aio.Channel],
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        any_of: frozenset[str] = frozenset(),
    ) -> None:
        self._channels = dict(channels)
        # Dependencies of which one serving is enough (the trading shards: each owns other symbols).
        self._any_of = any_of
        self._on_change = on_change
        self._clock = clock
        now = clock()
        self.serving = dict.fromkeys(self._channels, False)
        self.why = dict.fromkeys(self._channels, "not watched yet")
        self.since = dict.fromkeys(self._channels, now)

    @property
    def all_serving(self) -> bool:
        needed = all(serving for name, serving in self.serving.items() if name not in self._any_of)
        return needed and (not self._any_of or any(self.serving[name] for name in self._any_of))

    def describe(self) -> str:
        """One line: each dependency that is missing, why and for how long; or that all serve."""
        now = self._clock()
        missing = [
            f"{name} missing for {now - self.since[name]:.1f}s ({self.why[name]})"
            for name, serving in self.serving.items()
            if not serving
        ]
        return "; ".join(missing) if missing else "risk, trading and settlement serving"

    def _set(self, name: str, serving: bool, why: str) -> None:
        if serving != self.serving[name]:
            self.since[name] = self._clock()
            if serving:
                log.info("dependency serving", dependency=name)
            else:
                log.warning("dependency missing", dependency=name, why=why)
            self.serving[name] = serving
            self.why[name] = why
            self._on_change()
        elif not serving:
            self.why[name] = why

    async def watch(self, name: str) -> None:
        """Ask `name` for its health every ``DEPENDENCY_POLL_SECONDS`` until cancelled."""
        stub: Any = health_pb2_grpc.HealthStub(self._channels[name])  # its stubs declare no methods
        request = health_pb2.HealthCheckRequest(service="")
        slow = 0
        while True:
            try:
                answer = await stub.Check(request, timeout=DEPENDENCY_CHECK_TIMEOUT_SECONDS)
            except grpc.RpcError as error:
                slow = slow + 1 if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED else SLOW_ANSWERS_MISSING
                if slow >= SLOW_ANSWERS_MISSING:
                    self._set(name, False, describe_break(error))
            else:
                slow = 0
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                self._set(name, answer.status == _SERVING, f"its health says {status}")
            await asyncio.sleep(DEPENDENCY_POLL_SECONDS)


class GatewayApp:
    """The gateway service: stateless apart from Redis idempotency keys."""

    name = "gateway"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backends: Backends | None = None
        self._redis: redis.Redis | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._health: HealthEntries | None = None
        self._health_names: list[str] = [""]
        self._health_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.dependencies: DependencyWatch | None = None

    def use_health(self, entries: HealthEntries) -> None:
        self._health = entries

    def _require_backends(self) -> Backends:
        if self.backends is None:
            raise unavailable(RejectReason.SERVICE_STARTING, "the gateway is starting; retry shortly")
        return self.backends

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        gateway = GatewayServicer(self._require_backends)
        admin = AdminServicer(self._require_backends)
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server(gateway, server)  # type: ignore[no-untyped-call]
        gateway_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)  # type: ignore[no-untyped-call]
        names = [
            _SERVICES["GatewayService"].full_name,
            _SERVICES["AdminService"].full_name,
        ]
        self._health_names = ["", *names]
        return names

    async def start(self) -> None:
        settings = self.settings
        self._redis = await open_redis(settings)
        risk_channel = open_channel(settings.risk_address, settings)
        settlement_channel = open_channel(settings.settlement_address, settings)
        shard_channels = {name: open_channel(address, settings) for name, address in settings.trading_shards}
        self._channels = [risk_channel, settlement_channel, *shard_channels.values()]
        # One shard keeps its dependency's old name; several are watched one by one (any one
        # serving keeps the gateway serving: one shard down must not stop the others' trading).
        trading_names = {
            name: ("trading" if len(shard_channels) == 1 else f"trading shard {name}")
            for name in shard_channels
        }
        self.dependencies = DependencyWatch(
            {
                "risk": risk_channel,
                **{trading_names[name]: channel for name, channel in shard_channels.items()},
                "settlement": settlement_channel,
            },
            self._health_changed.set,
            any_of=frozenset(trading_names.values()),
        )
        self._tasks = [
            asyncio.create_task(self.dependencies.watch(name), name=f"watch-{name}")
            for name in self.dependencies.serving
        ]
        self._tasks.append(
            asyncio.create_task(self._publish_health(self.dependencies), name="gateway-health")
        )
        risk = risk_pb2_grpc.RiskServiceStub(risk_channel)  # type: ignore[no-untyped-call]
        settlement = settlement_pb2_grpc.SettlementServiceStub(settlement_channel)  # type: ignore[no-untyped-call]
        timeout = float(settings.call_timeout_seconds)

        reservations: BatchingStream[risk_pb2.ReservationCommand, risk_pb2.ReservationResult] = (
            BatchingStream(
                "risk-reservations",
                lambda: risk.StreamReservations(metadata=outgoing_metadata()),
                lambda sequence, commands: risk_pb2.StreamReservationsRequest(
                    sequence=sequence, commands=commands
                ),
                lambda response: (response.sequence, response.results),
                max_items=settings.batch_max_items,
                result_timeout_seconds=timeout,
            )
        )
        shards = TradingShards(
            [
                self._trading_shard(name, address, shard_channels[name], len(shard_channels) == 1)
                for name, address in settings.trading_shards
            ],
            lambda shard, method, request: call_unary(
                settings, method, request, service="trading", channel=shard.channel
            ),
            unreachable,
            # The longest attempt is the saga's bound (OrderSaga._attempt_seconds): reserve, then place.
            ClientOrderIdCheck(self._redis, attempt_seconds=2 * timeout + ATTEMPT_SLACK_SECONDS),
        )
        default = shards.default
        fanout = ExecutionFanout(
            [shard.subscribe_executions for shard in shards.all],
            shard_names=[shard.name for shard in shards.all],
        )
        market_data = MarketDataFanout([shard.stream_market_data for shard in shards.all])

        async def load_assets() -> list[tuple[str, int]]:
            response = await call_unary(
                settings,
                settlement.ListAssets,
                settlement_pb2.ListAssetsRequest(),
                service="settlement",
                channel=settlement_channel,
            )
            return [(asset.code, asset.scale) for asset in response.assets]

        async def authenticate(digest: bytes) -> str | None:
            try:
                response = await call_unary(
                    settings,
                    settlement.AuthenticateApiKey,
                    settlement_pb2.AuthenticateApiKeyRequest(api_key_sha256=digest),
                    service="settlement",
                    channel=settlement_channel,
                )
            except ServiceError as error:
                if error.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED):
                    return None
                raise
            return str(response.account_id) or None

        self.backends = Backends(
            settings=settings,
            redis=self._redis,
            risk=risk,
            trading=default.stub,
            settlement=settlement,
            reservations=reservations,
            orders=default.orders,
            fanout=fanout,
            market_data=market_data,
            order_defaults=OrderDefaults.of(settings),
            instruments=InstrumentCache(shards.list_instruments, unlisted=shards.unlisted),
            assets=AssetScales(load_assets),
            auth=ApiKeyAuthenticator(authenticate),
            risk_channel=risk_channel,
            trading_channel=default.channel,
            settlement_channel=settlement_channel,
            shards=shards,
        )
        await reservations.start()
        for shard in shards.all:
            await shard.orders.start()
        await fanout.start()
        await market_data.start()
        log.info(
            "gateway started",
            risk=settings.risk_address,
            trading=dict(settings.trading_shards),
            settlement=settings.settlement_address,
        )

    def _trading_shard(self, name: str, address: str, channel: grpc.aio.Channel, only: bool) -> TradingShard:
        """One trading shard's stub and batched order stream over its channel."""
        settings = self.settings
        stub = trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
        orders: OrderStream = BatchingStream(
            "trading-orders" if only else f"trading-orders-{name}",
            lambda: stub.StreamOrders(metadata=outgoing_metadata()),
            lambda sequence, commands: trading_pb2.StreamOrdersRequest(sequence=sequence, commands=commands),
            lambda response: (response.sequence, response.results),
            max_items=settings.batch_max_items,
            result_timeout_seconds=float(settings.call_timeout_seconds),
        )
        return TradingShard(name, address, stub, orders, channel)

    async def _publish_health(self, dependencies: DependencyWatch) -> None:
        """Keep the gateway's entries SERVING exactly while every dependency serves."""
        if self._health is None:
            return
        while True:
            self._health_changed.clear()
            serving = dependencies.all_serving
            for name in self._health_names:
                await self._health.set(name, serving, dependencies.describe)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._health_changed.wait(), HEALTH_REFRESH_SECONDS)

    async def stop(self) -> None:
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []
        backends, self.backends = self.backends, None
        if backends is not None:
            await backends.fanout.close()
            if backends.market_data is not None:
                await backends.market_data.close()
            await backends.reservations.close()
            for shard in backends.trading_shards.all:
                await shard.orders.close()
            for task in list(backends.background):
                task.cancel()
            if backends.background:
                await asyncio.gather(*backends.background, return_exceptions=True)
        for channel in self._channels:
            with contextlib.suppress(Exception):
                await channel.close()
        self._channels = []
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None


def create_app(settings: Settings) -> GatewayApp:
    return GatewayApp(settings)
