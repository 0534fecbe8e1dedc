"""Composition root of the settlement service."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import structlog
from psycopg_pool import AsyncConnectionPool

from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from backbone.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from settlement.servicer import SettlementServicer
from settlement.store import LedgerStore

log = structlog.get_logger("backbone.settlement")

SERVICE_NAME = settlement_pb2.DESCRIPTOR.services_by_name["SettlementService"].full_name


class SettlementApp:
    """The settlement service: a ledger store over a PostgreSQL pool, served over gRPC."""

    name = "settlement"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = LedgerStore()
        self.pool: AsyncConnectionPool | None = None

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        servicer = SettlementServicer(self.store)
        settlement_pb2_grpc.add_SettlementServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        return [SERVICE_NAME]

    async def start(self) -> None:
        pool = await open_pool(self.settings, self.name)
        try:
            applied = await migrate(pool, self.name)
        except BaseException:
            await pool.close()
            raise
        self.pool = pool
        self.store.pool = pool
        log.info("settlement ready", migrations_applied=applied)

    async def stop(self) -> None:
        self.store.pool = None
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()


def create_app(settings: Settings) -> SettlementApp:
    return SettlementApp(settings)
