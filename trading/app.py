"""Composition root of the trading service.

start(): open the pool, take this shard's lease (trading/lease.py: one process per shard; health
says NOT_SERVING, and why, while another process holds it), migrate the ``trading`` schema,
replay this shard's journal into a fresh engine (a journal that cannot be replayed stops the
start with JournalUnreadable naming the sequence), then start the engine task, appending on the
lease's connection, and two outboxes (trades to settlement, trades and releases to risk), each
resuming from what its receiver says it has applied. Losing the lease stops the engine for good
(the process exits; a restart takes the lease again and replays). stop(): refuse new commands,
let the engine finish the batch in hand, stop the outboxes, let go of the lease, close channels
and pool.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import structlog
from psycopg_pool import AsyncConnectionPool

from backbone.common.v1 import common_pb2
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.channels import open_channel
from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from backbone.runtime.outbox import OutboxSender
from backbone.runtime.server import HealthEntries
from backbone.runtime.tasks import stop_task
from backbone.settlement.v1 import settlement_pb2
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from trading.day_end import DayEnd, DayEndSchedule
from trading.engine import Engine, ReplayError
from trading.engine_loop import EngineLoop
from trading.execution_feed import ExecutionFeed
from trading.fills import FillProjection
from trading.history import ReportHistory
from trading.journal import RISK_KINDS, SETTLEMENT_KINDS, Journal, JournalUnreadable
from trading.lease import ShardLease
from trading.open_orders import OpenOrderIndex
from trading.reconciler import ReservationReconciler
from trading.retention import Retention
from trading.servicer import TradingServicer, expire_orders
from trading.snapshots import SnapshotStore, Snapshotter, SnapshotUnreadable, freeze, thaw

log = structlog.get_logger("backbone.trading")

# An order with these statuses and lots left is open on a book.
OPEN_STATUSES = (common_pb2.ORDER_STATUS_NEW, common_pb2.ORDER_STATUS_PARTIALLY_FILLED)

SERVICE_NAME = trading_pb2.DESCRIPTOR.services_by_name["TradingService"].full_name


def outbox_health_name(outbox: str) -> str:
    """An outbox's health entry: NOT_SERVING while its receiver refuses what it is sent."""
    return f"{SERVICE_NAME}/outbox/{outbox}"


RISK_OUTBOX = "risk-trading-events"  # the name of the outbox to risk (start())
# Of the caller's deadline, what CreateInstrument keeps to answer after waiting for risk
# (a loaded machine must still get the answer out before the caller gives up).
ANSWER_MARGIN_SECONDS = 0.5


# What the outboxes carry: a journal record's sequence, its kind, and its event serialized once (for
# both outboxes), so a request is put together from bytes instead of copying messages into messages.
Event = tuple[str, bytes]
Events = Sequence[tuple[int, Event]]


def event_of(record: trading_pb2.JournalRecord) -> Event:
    """(kind, the serialized event) of a journal record."""
    kind = record.WhichOneof("record")
    if kind is None:
        raise ValueError(f"journal record {record.sequence} has no record set")
    return kind, getattr(record, kind).SerializeToString()


def _varint(value: int) -> bytes:
    """A non-negative int as a protobuf varint (straight-line up to 3 bytes: lengths, sequences)."""
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0x200000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _tag(number: int) -> bytes:
    """The key of length-delimited field `number`."""
    return _varint(number << 3 | 2)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _tag(number) + _varint(len(payload)) + payload


def _sequenced_field(
    tag: bytes, inner_tag: bytes, sequence: int, payload: bytes
) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes]:
    """The parts of field `tag` holding a message of int64 field 1 = `sequence` and the
    length-delimited field `inner_tag` = `payload` (joined by the caller, copying nothing twice)."""
    sequence_bytes = _varint(sequence)
    length = _varint(len(payload))
    size = 1 + len(sequence_bytes) + len(inner_tag) + len(length) + len(payload)
    return tag, _varint(size), b"\x08", sequence_bytes, inner_tag, length, payload


_SOURCE = settlement_pb2.StreamTradesRequest.DESCRIPTOR.fields_by_name["source"].number
_TRADES = settlement_pb2.StreamTradesRequest.DESCRIPTOR.fields_by_name["trades"].number
_SEQUENCED_TRADE = settlement_pb2.SequencedTrade.DESCRIPTOR.fields_by_name["trade"].number
_RISK_SOURCE = risk_pb2.StreamTradingEventsRequest.DESCRIPTOR.fields_by_name["source"].number
_RISK_EVENTS = risk_pb2.StreamTradingEventsRequest.DESCRIPTOR.fields_by_name["events"].number
# A TradingEvent's field for each journal record kind risk is sent (same names; the payloads have
# the same wire format: common.v1 messages, and RiskEpochChanged is {string epoch = 1} in both).
_RISK_EVENT_TAGS = {
    kind: _tag(risk_pb2.TradingEvent.DESCRIPTOR.fields_by_name[kind].number) for kind in RISK_KINDS
}


def settlement_request(source: str, records: Events) -> bytes:
    """A serialized StreamTradesRequest: the trades of `records` with their sequences."""
    parts = [_field(_SOURCE, source.encode())]
    extend = parts.extend
    tag, inner_tag = _tag(_TRADES), _tag(_SEQUENCED_TRADE)
    for sequence, (kind, payload) in records:
        if kind != "trade":
            raise ValueError(f"journal record {sequence} is a {kind!r}, which settlement is not sent")
        extend(_sequenced_field(tag, inner_tag, sequence, payload))
    return b"".join(parts)


def risk_request(source: str, records: Events) -> bytes:
    """A serialized StreamTradingEventsRequest: trades, releases, fences, instrument creations and
    risk epochs (RISK_KINDS), in order."""
    parts = [_field(_RISK_SOURCE, source.encode())]
    extend = parts.extend
    tag, inner_tags = _tag(_RISK_EVENTS), _RISK_EVENT_TAGS
    for sequence, (kind, payload) in records:
        inner_tag = inner_tags.get(kind)
        if inner_tag is None:
            raise ValueError(f"journal record {sequence} is a {kind!r}, which risk is not sent")
        extend(_sequenced_field(tag, inner_tag, sequence, payload))
    return b"".join(parts)


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


def _offer_to(
    outboxes: Sequence[tuple[OutboxSender[Event], frozenset[str]]],
) -> Callable[[list[trading_pb2.JournalRecord]], None]:
    """Hand each committed batch to the outboxes: each its records of its kinds (serialized once for
    all), and the sequences the batch covers."""

    carried = frozenset().union(*(kinds for _, kinds in outboxes))

    def offer(records: list[trading_pb2.JournalRecord]) -> None:
        events: list[tuple[int, Event]] = []
        append = events.append
        for record in records:
            kind = record.WhichOneof("record")
            if kind in carried:
                append((record.sequence, (kind, getattr(record, kind).SerializeToString())))
        after, through = records[0].sequence - 1, records[-1].sequence
        for outbox, kinds in outboxes:
            chosen = events if kinds >= carried else [event for event in events if event[1][0] in kinds]
            outbox.offer(after, through, chosen)

    return offer


async def replay_journal(journal: Journal, engine: Engine, history: ReportHistory | None = None) -> int:
    """Rebuild `engine` from the journal after the sequence it stands at (0 when new, a snapshot's
    otherwise); returns how many records were read. JournalUnreadable when a row cannot be read,
    a sequence is missing, or the engine refuses a record.

    The reports the replay makes again go to `history` (those after its mark), which is written
    as the replay goes whenever a batch of them is queued: a history far behind the journal (the
    first start after the history existed) is caught up without holding every report."""
    count = 0
    sequence = engine.last_sequence
    try:
        async for record in journal.records(after=engine.last_sequence):
            sequence = record.sequence
            # Reports are made again only for what the history has not written (after its mark).
            wanted = history is not None and record.sequence > history.committed_sequence
            reports = engine.replay(record, reports=wanted)
            count += 1
            if history is not None:
                history.replayed(record, reports)
                if history.pending_reports >= history.batch_reports:
                    await history.write_pending(keep_last=True)
        engine.finish_replay()
    except ReplayError as error:
        raise JournalUnreadable(journal.shard, sequence, str(error)) from None
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
        self.lease: ShardLease | None = None
        self.journal: Journal | None = None
        self.outboxes: list[OutboxSender[Any]] = []
        self._channels: list[grpc.aio.Channel] = []
        self.health: HealthEntries | None = None
        self.reconciler: ReservationReconciler | None = None
        self.snapshotter: Snapshotter | None = None
        # The end-of-day expiry of DAY orders (BACKBONE_TRADING_DAY_END; None when off).
        self.day_end_task: asyncio.Task[None] | None = None
        # The journal sequence of the snapshot this start loaded (None: the whole journal replayed).
        self.recovered_from: int | None = None
        # ListOpenOrders' index and ListFills' projection, both kept from committed batches (they
        # follow the engine loaded at start: a snapshot's, or this one).
        self.open_orders = OpenOrderIndex(self.engine.orders)
        self.fills = FillProjection(settings.trading_shard, self._client_order_id_of)
        # Every report of a journaled command, by account and number (trading/history.py), and the
        # closed orders waiting for it before they leave memory (trading/retention.py). A request
        # queued while the process starts has its ids looked up too (refused, UNAVAILABLE, when the
        # history is not open yet).
        self.history = ReportHistory(settings.trading_shard)
        self.retention = Retention(self.history, [self.fills], self.open_orders.newest)
        self.loop.retention = self.retention

    def _client_order_id_of(self, order_id: str) -> str:
        """For the fills projection: the client order id of an order of the engine loaded ("" for
        one it does not know, which cannot happen for an order that traded: it was journaled first)."""
        order = self.engine.orders.get(order_id)
        return "" if order is None else order.client_order_id

    def use_health(self, entries: HealthEntries) -> None:
        self.health = entries

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        servicer = TradingServicer(
            self.loop,
            instrument_journaled=self.wait_risk_learned,
            open_orders=self.open_orders,
            fills=self.fills,
            history=self.history,
            shard=self.settings.trading_shard,
            symbols=self.settings.trading_symbols,
        )
        trading_pb2_grpc.add_TradingServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        return [SERVICE_NAME]

    async def start(self) -> None:
        settings = self.settings
        shard = settings.trading_shard
        pool = await open_pool(settings, self.name)
        self.pool = pool
        self.lease = lease = await self._take_lease()
        applied = await migrate(pool, self.name)
        journal = Journal(pool, shard, lease=lease)
        self.journal = journal
        started = time.perf_counter()
        # The history's mark first: a snapshot after it would skip commands whose reports the
        # history has not written yet, so none is loaded (their replay writes them).
        history_mark = await self.history.open(settings)
        snapshots = SnapshotStore(pool, shard)
        snapshot = await snapshots.newest(at_most=history_mark)
        if snapshot is not None:
            try:
                loaded = await asyncio.to_thread(thaw, shard, snapshot)
            except SnapshotUnreadable as error:
                log.critical("snapshot cannot be loaded", shard=shard, sequence=error.sequence, why=error.why)
                raise
            # The same engine object takes the loaded state: calls that arrived while this process
            # started (queued for the engine loop) and every holder of the engine see it.
            self.engine.become(loaded)
            self.open_orders.follow(self.engine.orders)
            self.recovered_from = snapshot.sequence
        try:
            replayed = await replay_journal(journal, self.engine, self.history)
        except JournalUnreadable as error:
            log.critical("journal cannot be replayed", shard=shard, sequence=error.sequence, why=error.why)
            raise
        # What replay built lives on (most of it for the process's life): the cycle collector stops
        # walking it on every full collection, which the engine's steady allocation would trigger.
        gc.collect()
        gc.freeze()
        log.info(
            "journal replayed",
            shard=shard,
            snapshot_sequence=snapshot.sequence if snapshot is not None else None,
            records=replayed,
            last_sequence=self.engine.last_sequence,
            orders=len(self.engine.orders),
            seconds=round(time.perf_counter() - started, 3),
            migrations_applied=applied,
        )

        settlement_channel = open_channel(settings.settlement_address, settings)
        risk_channel = open_channel(settings.risk_address, settings)
        self._channels = [settlement_channel, risk_channel]
        risk = risk_pb2_grpc.RiskServiceStub(risk_channel)  # type: ignore[no-untyped-call]

        async def trades_after(sequence: int, limit: int) -> Events:
            records = await journal.load_after(sequence, limit, SETTLEMENT_KINDS)
            return [(seq, event_of(record)) for seq, record in records]

        async def events_after(sequence: int, limit: int) -> Events:
            records = await journal.load_after(sequence, limit, RISK_KINDS)
            return [(seq, event_of(record)) for seq, record in records]

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
            pages = risk_snapshot_pages(shard, hello.epoch, sequence, orders, instruments)
            return [page.SerializeToString() for page in pages]  # the stream carries bytes

        # The outboxes' requests are put together as bytes (settlement_request, risk_request).
        trades_stream: Callable[[], Any] = settlement_channel.stream_stream(
            "/backbone.settlement.v1.SettlementService/StreamTrades",
            request_serializer=None,
            response_deserializer=settlement_pb2.StreamTradesResponse.FromString,
        )
        events_stream: Callable[[], Any] = risk_channel.stream_stream(
            "/backbone.risk.v1.RiskService/StreamTradingEvents",
            request_serializer=None,
            response_deserializer=risk_pb2.StreamTradingEventsResponse.FromString,
        )
        to_settlement: OutboxSender[Event] = OutboxSender(
            "settlement-trades",
            shard,
            trades_stream,
            trades_after,
            settlement_request,
            lambda response: int(response.applied_sequence),
            max_items=settings.batch_max_items,
        )
        to_risk: OutboxSender[Event] = OutboxSender(
            "risk-trading-events",
            shard,
            events_stream,
            events_after,
            risk_request,
            lambda response: int(response.applied_sequence),
            max_items=settings.batch_max_items,
            snapshot=risk_snapshot,
        )
        self.outboxes = [to_settlement, to_risk]
        # Each committed batch goes to the outboxes in memory; they read the journal only to catch up.
        self.loop.on_committed = [
            _offer_to([(to_settlement, frozenset(SETTLEMENT_KINDS)), (to_risk, frozenset(RISK_KINDS))]),
            self.open_orders.committed,
            self.fills.committed,
        ]
        self.loop.on_reports = [self.history.committed, self.retention.note]
        self.retention.note_closed(self.engine)  # what the snapshot and the replay left
        self.open_orders.catch_up()  # every open order the replay rebuilt
        if self.health is not None:
            await self.fills.publish_health(self.health, f"{SERVICE_NAME}/fills-projection")
            await self.history.publish_health(self.health, f"{SERVICE_NAME}/report-history")
        self.history.start()
        await self.fills.start(settings, self.engine.last_sequence)
        for outbox in self.outboxes:  # the lag is counted up to the journal's newest sequence
            outbox.newest_sequence = lambda: self.engine.last_sequence
            if self.health is not None:
                await outbox.publish_health(self.health, outbox_health_name(outbox.name))
        await self.loop.start(journal)
        lease.watch(self.loop.stop_for_good)
        self.snapshotter = Snapshotter(
            snapshots,
            lambda: self.loop.call(lambda *_: freeze(self.loop.engine)),
            lambda: self.engine.last_sequence,
            every_records=settings.trading_snapshot_commands,
            every_seconds=float(settings.trading_snapshot_seconds),
            since=snapshot.sequence if snapshot is not None else 0,
        )
        self.snapshotter.start()
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
        day_end = DayEnd.parse(settings.trading_day_end)
        if day_end is not None:
            schedule = DayEndSchedule(
                day_end,
                self.expire_day_orders,
                self.oldest_open_day_order_ns,
                clock_ns=time.time_ns,
                sleep=asyncio.sleep,
            )
            self.day_end_task = asyncio.create_task(schedule.run(), name="trading-day-end")
        if self.health is not None and SERVICE_NAME in self.health.claimed:  # it waited for the lease
            for name in ("", SERVICE_NAME):
                await self.health.set(name, True)
        owned = settings.trading_symbols
        foreign = sorted(symbol for symbol in self.engine.instruments if owned and symbol not in owned)
        if foreign:  # its journal has them: their open orders can be cancelled, no new one is taken
            log.warning(
                "the journal has instruments this shard no longer owns (BACKBONE_TRADING_SYMBOLS); "
                "their new orders are refused (SYMBOL_NOT_OWNED)",
                shard=shard,
                symbols=foreign[:20],
            )
        log.info(
            "trading ready",
            shard=shard,
            instruments=len(self.engine.instruments),
            owns=", ".join(owned) or "every symbol",
        )

    async def _take_lease(self) -> ShardLease:
        """This shard's lease; while another process holds it, health is NOT_SERVING saying which."""
        waiting_for = ""

        async def waiting(sentence: str) -> None:
            nonlocal waiting_for
            waiting_for = sentence
            if self.health is not None:
                for name in ("", SERVICE_NAME):
                    await self.health.set(name, False, detail=lambda: waiting_for)

        lease = await ShardLease.acquire(
            self.settings.database_url,
            self.settings.trading_shard,
            wait_seconds=float(self.settings.trading_lease_wait_seconds),
            on_waiting=waiting,
        )
        waiting_for = ""
        return lease

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

    async def expire_day_orders(self) -> int:
        """Journal one ExpireOrders of every symbol's DAY orders; how many expired."""
        command = trading_pb2.ExpireOrders(time_in_force=common_pb2.TIME_IN_FORCE_DAY)
        return len((await expire_orders(self.loop, command)).reports)

    async def oldest_open_day_order_ns(self) -> int | None:
        """When the oldest open DAY order was accepted (engine time); None when there is none."""
        engine = self.engine

        def run(*_: object) -> int | None:
            return min(
                (
                    order.created_ns
                    for order in engine.orders.values()
                    if order.time_in_force == common_pb2.TIME_IN_FORCE_DAY
                    and order.leaves_lots > 0
                    and order.status in OPEN_STATUSES
                ),
                default=None,
            )

        oldest: int | None = await self.loop.call(run)
        return oldest

    async def stop(self) -> None:
        if self.day_end_task is not None:
            task, self.day_end_task = self.day_end_task, None
            await stop_task(task)
        if self.snapshotter is not None:
            await self.snapshotter.stop()
            self.snapshotter = None
        if self.reconciler is not None:
            await self.reconciler.stop()
            self.reconciler = None
        await self.loop.stop()
        await self.retention.stop()
        await self.fills.stop()
        await self.history.stop()
        self.feed.close()
        for outbox in self.outboxes:
            await outbox.stop()
        self.outboxes = []
        if self.lease is not None:  # after the engine's last append
            lease, self.lease = self.lease, None
            await lease.close()
        for channel in self._channels:
            await channel.close()
        self._channels = []
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()


def create_app(settings: Settings) -> TradingApp:
    return TradingApp(settings)
