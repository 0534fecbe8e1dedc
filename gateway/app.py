"""Composition root of the gateway: Redis, channels, batched streams, fan-out, servicers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import grpc
import redis.asyncio as redis
import structlog

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.batching import BatchingStream
from backbone.runtime.cache import open_redis
from backbone.runtime.channels import open_channel
from backbone.runtime.config import Settings
from backbone.runtime.context import outgoing_metadata
from backbone.runtime.errors import ServiceError, unavailable
from backbone.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from gateway.admin import AdminServicer
from gateway.auth import ApiKeyAuthenticator
from gateway.backends import Backends, call_unary
from gateway.fanout import ExecutionFanout
from gateway.instruments import AssetScales, InstrumentCache
from gateway.servicer import GatewayServicer

log = structlog.get_logger("backbone.gateway")

_SERVICES = gateway_pb2.DESCRIPTOR.services_by_name


class GatewayApp:
    """The gateway service: stateless apart from Redis idempotency keys."""

    name = "gateway"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backends: Backends | None = None
        self._redis: redis.Redis | None = None
        self._channels: list[grpc.aio.Channel] = []

    def _require_backends(self) -> Backends:
        if self.backends is None:
            raise unavailable(RejectReason.SERVICE_STARTING, "the gateway is starting; retry shortly")
        return self.backends

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        gateway = GatewayServicer(self._require_backends)
        admin = AdminServicer(self._require_backends)
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server(gateway, server)  # type: ignore[no-untyped-call]
        gateway_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)  # type: ignore[no-untyped-call]
        return [
            _SERVICES["GatewayService"].full_name,
            _SERVICES["AdminService"].full_name,
        ]

    async def start(self) -> None:
        settings = self.settings
        self._redis = await open_redis(settings)
        risk_channel = open_channel(settings.risk_address, settings)
        trading_channel = open_channel(settings.trading_address, settings)
        settlement_channel = open_channel(settings.settlement_address, settings)
        self._channels = [risk_channel, trading_channel, settlement_channel]
        risk = risk_pb2_grpc.RiskServiceStub(risk_channel)  # type: ignore[no-untyped-call]
        trading = trading_pb2_grpc.TradingServiceStub(trading_channel)  # type: ignore[no-untyped-call]
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
        orders: BatchingStream[trading_pb2.OrderCommand, trading_pb2.CommandResult] = BatchingStream(
            "trading-orders",
            lambda: trading.StreamOrders(metadata=outgoing_metadata()),
            lambda sequence, commands: trading_pb2.StreamOrdersRequest(sequence=sequence, commands=commands),
            lambda response: (response.sequence, response.results),
            max_items=settings.batch_max_items,
            result_timeout_seconds=timeout,
        )
        fanout = ExecutionFanout(
            lambda: trading.SubscribeExecutions(
                trading_pb2.SubscribeExecutionsRequest(), metadata=outgoing_metadata()
            )
        )

        async def load_instruments() -> list[common_pb2.Instrument]:
            response = await call_unary(
                settings, trading.ListInstruments, trading_pb2.ListInstrumentsRequest()
            )
            return list(response.instruments)

        async def load_assets() -> list[tuple[str, int]]:
            response = await call_unary(settings, settlement.ListAssets, settlement_pb2.ListAssetsRequest())
            return [(asset.code, asset.scale) for asset in response.assets]

        async def authenticate(digest: bytes) -> str | None:
            try:
                response = await call_unary(
                    settings,
                    settlement.AuthenticateApiKey,
                    settlement_pb2.AuthenticateApiKeyRequest(api_key_sha256=digest),
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
            trading=trading,
            settlement=settlement,
            reservations=reservations,
            orders=orders,
            fanout=fanout,
            instruments=InstrumentCache(load_instruments),
            assets=AssetScales(load_assets),
            auth=ApiKeyAuthenticator(authenticate),
            risk_channel=risk_channel,
            trading_channel=trading_channel,
        )
        await reservations.start()
        await orders.start()
        await fanout.start()
        log.info(
            "gateway started",
            risk=settings.risk_address,
            trading=settings.trading_address,
            settlement=settings.settlement_address,
        )

    async def stop(self) -> None:
        backends, self.backends = self.backends, None
        if backends is not None:
            await backends.fanout.close()
            await backends.reservations.close()
            await backends.orders.close()
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
