"""Composition root of the trading service.

start(): open the pool, migrate the ``trading`` schema, replay this shard's
journal into a fresh engine, then start the engine task and two outboxes
(trades to settlement, trades and releases to risk), each resuming from
what its receiver says it has applied. stop(): refuse new commands, let the
engine finish the batch in hand, stop the outboxes, close channels and pool.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
import structlog
from psycopg_pool import AsyncConnectionPool

from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.channels import open_channel
from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from backbone.runtime.outbox import OutboxSender
from backbone.runtime.server import HealthEntries
from backbone.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from trading.engine import Engine
from trading.engine_loop import EngineLoop
from trading.execution_feed import ExecutionFeed
from trading.journal import RISK_KINDS, SETTLEMENT_KINDS, Journal
from trading.reconciler import ReservationReconciler
from trading.servicer import TradingServicer

log = structlog.get_logger("backbone.trading")

SERVICE_NAME = trading_pb2.DESCRIPTOR.services_by_name["TradingService"].full_name

Records = Sequence[tuple[int, trading_pb2.JournalRecord]]


def outbox_health_name(outbox: str) -> str:
    """An outbox's health entry: NOT_SERVING while its receiver refuses what it is sent."""
    return f"{SERVICE_NAME}/outbox/{outbox}"


RISK_OUTBOX = "risk-trading-events"  # the name of the outbox to risk (start())
# Of the caller's deadline, what CreateInstrument keeps to answer after waiting for risk
# (a loaded machine must still get the answer out before the caller gives up).
ANSWER_MARGIN_SECONDS = 0.5


def settlement_request(source: str, records: Records) -> settlement_pb2.StreamTradesRequest:
    return settlement_pb2.StreamTradesRequest(
        source=source,
        trades=[settlement_pb2.SequencedTrade(sequence=seq, trade=record.trade) for seq, record in records],
    )


def risk_request(source: str, records: Records) -> risk_pb2.StreamTradingEventsRequest:
    """Risk's events: trades, releases, fences and instrument creations (RISK_KINDS), in order."""
    events = []
    for sequence, record in records:
        kind = record.WhichOneof("record")
        if kind == "trade":
            events.append(risk_pb2.TradingEvent(sequence=sequence, trade=record.trade))
        elif kind == "order_released":
            events.append(risk_pb2.TradingEvent(sequence=sequence, order_released=record.order_released))
        elif kind == "order_fenced":
            events.append(risk_pb2.TradingEvent(sequence=sequence, order_fenced=record.order_fenced))
        elif kind == "instrument_created":
            events.append(
                risk_pb2.TradingEvent(sequence=sequence, instrument_created=record.instrument_created)
            )
        elif kind == "risk_epoch_changed":
            changed = risk_pb2.RiskEpochChanged(epoch=record.risk_epoch_changed.epoch)
            events.append(risk_pb2.TradingEvent(sequence=sequence, risk_epoch_changed=changed))
        else:
            raise ValueError(f"journal record {sequence} is a {kind!r}, which risk is not sent")
    return risk_pb2.StreamTradingEventsRequest(source=source, events=events)


# Open orders per snapshot page: a page stays far below the gRPC message limit.
SNAPSHOT_PAGE_ORDERS = 5_000


def risk_snapshot_pages(
    source: str, epoch: str, sequence: int, orders: Sequence[Any], instruments: Sequence[Any]
) -> list[risk_pb2.StreamTradingEventsRequest]:
    """The open orders at `sequence` as StreamTradingEvents snapshot pages (at least one)."""
    pages = [orders[i : i + SNAPSHOT_PAGE_ORDERS] for i in range(0, len(orders), SNAPSHOT_PAGE_ORDERS)]
    pages = pages or [[]]
    return [
        risk_pb2.StreamTradingEventsRequest(
            source=source,
            snapshot=risk_pb2.TradingSnapshot(
                sequence=sequence,
                epoch=epoch,
                orders=page,
                instruments=instruments if number == 0 else [],
                last=number == len(pages) - 1,
            ),
        )
        for number, page in enumerate(pages)
    ]


async def replay_journal(journal: Journal, engine: Engine) -> int:
    """Rebuild `engine` from the journal; returns how many records were read."""
    count = 0
    async for record in journal.records():
        engine.replay(record)
        count += 1
    engine.finish_replay()
    return count


class TradingApp:
    """The trading service: engine, journal, outboxes, served over gRPC."""

    name = "trading"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine()
        self.feed = ExecutionFeed()
        self.loop = EngineLoop(self.engine, self.feed, batch_max_items=settings.batch_max_items)
        self.pool: AsyncConnectionPool | None = None
        self.journal: Journal | None = None
        self.outboxes: list[OutboxSender[Any]] = []
        self._channels: list[grpc.aio.Channel] = []
        self.health: HealthEntries | None = None
        self.reconciler: ReservationReconciler | None = None

    def use_health(self, entries: HealthEntries) -> None:
        self.health = entries

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        servicer = TradingServicer(self.loop, instrument_journaled=self.wait_risk_learned)
        trading_pb2_grpc.add_TradingServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        return [SERVICE_NAME]

    async def start(self) -> None:
        settings = self.settings
        shard = settings.trading_shard
        pool = await open_pool(settings, self.name)
        self.pool = pool
        applied = await migrate(pool, self.name)
        journal = Journal(pool, shard)
        self.journal = journal
        started = time.perf_counter()
        replayed = await replay_journal(journal, self.engine)
        log.info(
            "journal replayed",
            shard=shard,
            records=replayed,
            last_sequence=self.engine.last_sequence,
            orders=len(self.engine.orders),
            seconds=round(time.perf_counter() - started, 3),
            migrations_applied=applied,
        )

        settlement_channel = open_channel(settings.settlement_address, settings)
        risk_channel = open_channel(settings.risk_address, settings)
        self._channels = [settlement_channel, risk_channel]
        settlement = settlement_pb2_grpc.SettlementServiceStub(settlement_channel)  # type: ignore[no-untyped-call]
        risk = risk_pb2_grpc.RiskServiceStub(risk_channel)  # type: ignore[no-untyped-call]

        async def trades_after(sequence: int, limit: int) -> Records:
            return await journal.load_after(sequence, limit, SETTLEMENT_KINDS)

        async def events_after(sequence: int, limit: int) -> Records:
            return await journal.load_after(sequence, limit, RISK_KINDS)

        async def risk_snapshot(hello: Any) -> Sequence[Any]:
            """Risk rebuilt: journal its new epoch and hand it the open orders at that point."""
            if not hello.snapshot_wanted:
                return []
            engine = self.engine

            def run(
                timestamp_ns: int,
                records: list[trading_pb2.JournalRecord],
                reports: list[Any],
            ) -> tuple[int, list[Any], list[Any]]:
                outcome = engine.change_risk_epoch(hello.epoch, timestamp_ns)
                records += outcome.records
                return engine.last_sequence, engine.open_orders(), engine.instrument_list()

            sequence, orders, instruments = await self.loop.call(run)
            log.info(
                "risk rebuilds: open orders handed over",
                epoch=hello.epoch,
                sequence=sequence,
                orders=len(orders),
            )
            return risk_snapshot_pages(shard, hello.epoch, sequence, orders, instruments)

        self.outboxes = [
            OutboxSender(
                "settlement-trades",
                shard,
                lambda: settlement.StreamTrades(),
                trades_after,
                settlement_request,
                lambda response: int(response.applied_sequence),
                max_items=settings.batch_max_items,
            ),
            OutboxSender(
                "risk-trading-events",
                shard,
                lambda: risk.StreamTradingEvents(),
                events_after,
                risk_request,
                lambda response: int(response.applied_sequence),
                max_items=settings.batch_max_items,
                snapshot=risk_snapshot,
            ),
        ]
        self.loop.on_committed = [outbox.notify for outbox in self.outboxes]
        for outbox in self.outboxes:  # the lag is counted up to the journal's newest sequence
            outbox.newest_sequence = lambda: self.engine.last_sequence
            if self.health is not None:
                await outbox.publish_health(self.health, outbox_health_name(outbox.name))
        await self.loop.start(journal)
        for outbox in self.outboxes:
            await outbox.start()
        risk_outbox = next(outbox for outbox in self.outboxes if outbox.name == RISK_OUTBOX)
        self.reconciler = ReservationReconciler(
            self.loop,
            risk,
            interval_seconds=float(settings.reconcile_interval_seconds),
            grace_seconds=float(settings.reconcile_grace_seconds),
            call_timeout_seconds=float(settings.call_timeout_seconds),
            on_fenced=risk_outbox.notify,
        )
        await self.reconciler.start()
        log.info("trading ready", shard=shard, instruments=len(self.engine.instruments))

    async def wait_risk_learned(self, sequence: int, caller_seconds_left: float | None) -> None:
        """Wait until risk has applied journal record `sequence` (a new instrument), within the deadline.

        So an admin who creates an instrument and at once submits an order finds risk
        knowing it. Risk not answering in time changes nothing: the instrument is created
        (journaled) and risk learns it when its stream is back; a warning says so.
        """
        outbox = next((o for o in self.outboxes if o.name == RISK_OUTBOX), None)
        if outbox is None:  # not started: nothing to wait for
            return
        budget = float(self.settings.call_timeout_seconds)
        if caller_seconds_left is not None:
            budget = min(budget, caller_seconds_left - ANSWER_MARGIN_SECONDS)
        outbox.notify()  # the engine wakes the outboxes for trades and releases only
        if budget <= 0 or not await outbox.wait_acknowledged(sequence, budget):
            log.warning(
                "risk has not acknowledged the new instrument in time; answering anyway, "
                "risk learns it when its event stream catches up",
                sequence=sequence,
                risk_acknowledged=outbox.acknowledged,
                waited_s=round(max(budget, 0.0), 3),
            )

    async def stop(self) -> None:
        if self.reconciler is not None:
            await self.reconciler.stop()
            self.reconciler = None
        await self.loop.stop()
        self.feed.close()
        for outbox in self.outboxes:
            await outbox.stop()
        self.outboxes = []
        for channel in self._channels:
            await channel.close()
        self._channels = []
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()


def create_app(settings: Settings) -> TradingApp:
    return TradingApp(settings)
