"""Composition root of the settlement service."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

import grpc
import structlog
from psycopg_pool import AsyncConnectionPool

from backbone.risk.v1 import risk_pb2_grpc
from backbone.runtime.channels import open_channel
from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from backbone.runtime.outbox import OutboxSender
from backbone.runtime.server import HealthEntries
from backbone.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from settlement import risk_feed
from settlement.parking_health import ParkedTradesHealth
from settlement.servicer import SettlementServicer
from settlement.store import LedgerStore

log = structlog.get_logger("backbone.settlement")

SERVICE_NAME = settlement_pb2.DESCRIPTOR.services_by_name["SettlementService"].full_name
RISK_OUTBOX = "risk-ledger-events"
# Time a Deposit keeps for its own answer after waiting for risk.
ANSWER_MARGIN_SECONDS = 0.5
# NOT_SERVING while a trade is parked or an account halted (settlement/parking_health.py).
PARKED_TRADES_HEALTH = f"{SERVICE_NAME}/parked-trades"


class SettlementApp:
    """The settlement service: a ledger store over a PostgreSQL pool, served over gRPC."""

    name = "settlement"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = LedgerStore()
        self.pool: AsyncConnectionPool | None = None
        self.risk_outbox: OutboxSender[Any] | None = None
        self._channels: list[grpc.aio.Channel] = []
        self.health: HealthEntries | None = None
        self.parked_health: ParkedTradesHealth | None = None

    def use_health(self, entries: HealthEntries) -> None:
        self.health = entries

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        servicer = SettlementServicer(self.store, self.wait_risk_learned)
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
        if self.health is not None:
            self.parked_health = ParkedTradesHealth(self.store, self.health, PARKED_TRADES_HEALTH)
            await self.parked_health.start()
        risk_channel = open_channel(self.settings.risk_address, self.settings)
        self._channels = [risk_channel]
        risk = risk_pb2_grpc.RiskServiceStub(risk_channel)  # type: ignore[no-untyped-call]

        async def events_after(sequence: int, limit: int) -> Sequence[tuple[int, Any]]:
            return await risk_feed.events_after(pool, sequence, limit)

        async def snapshot(hello: Any) -> Sequence[Any]:
            return await risk_feed.snapshot(pool) if hello.snapshot_wanted else []

        self.risk_outbox = OutboxSender(
            RISK_OUTBOX,
            risk_feed.SOURCE,
            lambda: risk.StreamLedgerEvents(),
            events_after,
            risk_feed.events_request,
            lambda response: int(response.applied_sequence),
            max_items=self.settings.batch_max_items,
            snapshot=snapshot,
        )
        await self.risk_outbox.start()
        # What start-up made stays for the life of the process (modules, protobuf descriptors, the
        # pool): frozen, the cycle collector no longer walks it on each full collection, which the
        # short-lived tuples of trade batches (thousands each) set off often.
        gc.collect()
        gc.freeze()
        log.info("settlement ready", migrations_applied=applied, risk=self.settings.risk_address)

    async def wait_risk_learned(self, sequence: int, caller_seconds_left: float | None) -> bool:
        """Wait until risk has applied ledger risk event `sequence`, within the caller's deadline."""
        outbox = self.risk_outbox
        if outbox is None:
            return False
        budget = float(self.settings.call_timeout_seconds)
        if caller_seconds_left is not None:
            budget = min(budget, caller_seconds_left - ANSWER_MARGIN_SECONDS)
        outbox.notify()
        if budget > 0 and await outbox.wait_acknowledged(sequence, budget):
            return True
        log.warning(
            "risk has not applied the deposit in time; answering anyway, risk applies it when "
            "its ledger stream catches up",
            risk_sequence=sequence,
            risk_acknowledged=outbox.acknowledged,
        )
        return False

    async def stop(self) -> None:
        if self.parked_health is not None:
            await self.parked_health.stop()
            self.parked_health = None
        if self.risk_outbox is not None:
            await self.risk_outbox.stop()
            self.risk_outbox = None
        for channel in self._channels:
            await channel.close()
        self._channels = []
        self.store.pool = None
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()


def create_app(settings: Settings) -> SettlementApp:
    return SettlementApp(settings)
