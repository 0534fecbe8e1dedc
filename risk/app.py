"""Composition root of the risk service."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import redis.asyncio as redis
import structlog

from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.cache import open_redis
from backbone.runtime.config import Settings
from backbone.runtime.server import HealthEntries
from risk.instruments import InstrumentCache
from risk.rebuild import RiskState
from risk.servicer import RiskServicer
from risk.store import RiskStore

log = structlog.get_logger("backbone.risk")

SERVICE_NAME = risk_pb2.DESCRIPTOR.services_by_name["RiskService"].full_name


class RiskApp:
    """The risk service: a Redis store and an instrument cache over it, served over gRPC.

    Risk calls no other service: it learns instruments, like fills, from
    trading's event stream (StreamTradingEvents), and keeps them in Redis.
    """

    name = "risk"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.servicer = RiskServicer()
        self.redis: redis.Redis | None = None
        self.store: RiskStore | None = None
        self.instruments: InstrumentCache | None = None
        self.state: RiskState | None = None
        self.health: HealthEntries | None = None

    def use_health(self, entries: HealthEntries) -> None:
        self.health = entries

    async def _set_health(self, serving: bool, detail: str) -> None:
        """NOT_SERVING (the whole server and RiskService) while risk's state is being rebuilt."""
        if self.health is None:
            return
        state = self.state

        def describe() -> str:
            return "ready" if state is None else state.detail

        for name in ("", SERVICE_NAME):
            await self.health.set(name, serving, describe)

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        risk_pb2_grpc.add_RiskServiceServicer_to_server(self.servicer, server)  # type: ignore[no-untyped-call]
        return [SERVICE_NAME]

    async def start(self) -> None:
        client = await open_redis(self.settings)
        try:
            store = RiskStore(client)
            await store.load_scripts()
            instruments = InstrumentCache(store.instruments)
            await instruments.refresh()
            state = RiskState(store, self.settings.trading_shard_names, on_health=self._set_health)
            self.state = state
            await state.start()
        except BaseException:
            await client.aclose()
            raise
        self.redis = client
        self.store = store
        self.instruments = instruments
        self.servicer.attach(store, instruments, state)
        log.info("risk ready", instruments=len(instruments), state=state.detail)

    async def stop(self) -> None:
        if self.state is not None:
            await self.state.stop()
            self.state = None
        self.servicer.detach()
        self.store = None
        self.instruments = None
        if self.redis is not None:
            client, self.redis = self.redis, None
            await client.aclose()


def create_app(settings: Settings) -> RiskApp:
    return RiskApp(settings)
