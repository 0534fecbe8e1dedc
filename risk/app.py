"""Composition root of the risk service."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import redis.asyncio as redis
import structlog

from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.cache import open_redis
from backbone.runtime.channels import open_channel
from backbone.runtime.config import Settings
from risk.instruments import InstrumentCache, trading_lister
from risk.servicer import RiskServicer
from risk.store import RiskStore

log = structlog.get_logger("backbone.risk")

SERVICE_NAME = risk_pb2.DESCRIPTOR.services_by_name["RiskService"].full_name


class RiskApp:
    """The risk service: a Redis store and an instrument cache, served over gRPC."""

    name = "risk"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.servicer = RiskServicer()
        self.redis: redis.Redis | None = None
        self.channel: grpc.aio.Channel | None = None
        self.store: RiskStore | None = None
        self.instruments: InstrumentCache | None = None

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        risk_pb2_grpc.add_RiskServiceServicer_to_server(self.servicer, server)  # type: ignore[no-untyped-call]
        return [SERVICE_NAME]

    async def start(self) -> None:
        client = await open_redis(self.settings)
        try:
            store = RiskStore(client)
            await store.load_scripts()
        except BaseException:
            await client.aclose()
            raise
        self.redis = client
        self.store = store
        self.channel = open_channel(self.settings.trading_address, self.settings)
        self.instruments = InstrumentCache(trading_lister(self.channel, self.settings))
        self.servicer.attach(store, self.instruments)
        log.info("risk ready", trading=self.settings.trading_address)

    async def stop(self) -> None:
        self.servicer.detach()
        self.store = None
        self.instruments = None
        if self.channel is not None:
            channel, self.channel = self.channel, None
            await channel.close()
        if self.redis is not None:
            client, self.redis = self.redis, None
            await client.aclose()


def create_app(settings: Settings) -> RiskApp:
    return RiskApp(settings)
