"""TradingService: the engine loop that serialises every command, the report feed, and the RPCs.

All commands from all StreamOrders streams (and CreateInstrument, and the
reads, so they see only journaled state) go through ONE engine task: it
takes whatever is queued, up to ``batch_max_items`` commands, applies it in
memory, appends every resulting journal record in one transaction, and only
then answers each request (in order, one response per request), publishes
the reports to SubscribeExecutions subscribers (the reports of journaled commands; a
refusal is answered to its sender only) and wakes the outboxes. The
journal write of one batch overlaps the in-memory application of the next;
the writes themselves are one at a time, in sequence order, and a batch is
answered only once its own write has committed. If a journal write fails,
memory is ahead of the journal and can no longer be trusted: the process
logs a critical line and exits (code 70); a restart replays the journal.

Every queue is bounded: the engine queue (a full queue makes StreamOrders
readers wait, which pushes back on the caller through gRPC flow control),
each stream's answers in flight, and each subscriber's queue (a subscriber
that falls too far behind is ended with RESOURCE_EXHAUSTED rather than
slowing the engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import (
    FieldViolation,
    ServiceError,
    already_exists,
    invalid_field,
    not_found,
)
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from trading.engine import Engine, InstrumentRejected
from trading.journal import Journal

log = structlog.get_logger("backbone.trading")

T = TypeVar("T")
# A unit of work for the engine task: (timestamp_ns, records out, reports out) -> result.
Run = Callable[[int, list[trading_pb2.JournalRecord], list[common_pb2.ExecutionReport]], Any]

EXIT_JOURNAL_FAILED = 70
MAX_COMMANDS_PER_REQUEST = 10_000
_EVENT_FIELDS = ("trade", "order_released")


def exit_process(reason: str) -> NoReturn:
    """The default reaction to a state that can no longer be trusted: stop the process now."""
    log.critical("stopping the process; a restart replays the journal", why=reason)
    os._exit(EXIT_JOURNAL_FAILED)


def _stopping_error() -> ServiceError:
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING, "the trading service is shutting down"
    )


class _Work:
    __slots__ = ("future", "run", "size")

    def __init__(self, run: Run, size: int, future: asyncio.Future[Any]) -> None:
        self.run = run
        self.size = size
        self.future = future


class ExecutionFeed:
    """Hands every batch of reports to each subscriber's bounded queue."""

    def __init__(self, max_queued_batches: int = 1024) -> None:
        self._max_queued = max_queued_batches
        self._subscribers: set[Subscription] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, self._max_queued)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, reports: list[common_pb2.ExecutionReport]) -> None:
        if not self._subscribers or not reports:
            return
        response = trading_pb2.SubscribeExecutionsResponse(reports=reports)
        for subscription in list(self._subscribers):
            subscription.deliver(response)

    def close(self) -> None:
        for subscription in list(self._subscribers):
            subscription.end(_stopping_error())
        self._subscribers.clear()


class Subscription:
    """One subscriber's queue of report batches (shared, read-only messages)."""

    def __init__(self, feed: ExecutionFeed, max_queued: int) -> None:
        self._feed = feed
        self._max_queued = max_queued
        self._queue: asyncio.Queue[trading_pb2.SubscribeExecutionsResponse | ServiceError] = asyncio.Queue(
            max_queued + 1
        )
        self._ended = False

    def deliver(self, response: trading_pb2.SubscribeExecutionsResponse) -> None:
        if self._queue.qsize() >= self._max_queued:
            self.end(
                ServiceError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    RejectReason.SLOW_CONSUMER,
                    f"more than {self._max_queued} batches of execution reports were waiting for "
                    "this subscriber; read faster, then resubscribe and reconcile with GetOrder",
                )
            )
            return
        self._queue.put_nowait(response)

    def end(self, error: ServiceError) -> None:
        """End the subscription: what was queued is dropped and the reader gets `error`."""
        if self._ended:
            return
        self._ended = True
        self._feed.unsubscribe(self)
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(error)

    async def next(self) -> trading_pb2.SubscribeExecutionsResponse:
        item = await self._queue.get()
        if isinstance(item, ServiceError):
            raise item
        return item


class EngineLoop:
    """The one task that applies commands, journals them and answers."""

    def __init__(
        self,
        engine: Engine,
        feed: ExecutionFeed,
        *,
        batch_max_items: int,
        max_queued: int = 1024,
        on_fatal: Callable[[str], None] = exit_process,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.engine = engine
        self.feed = feed
        self.journal: Journal | None = None
        self.on_committed: list[Callable[[], None]] = []
        self._batch_max_items = batch_max_items
        self._queue: asyncio.Queue[_Work] = asyncio.Queue(max_queued)
        self._on_fatal = on_fatal
        self._clock_ns = clock_ns
        self._task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._busy = False
        self._stopping = False
        self._failed = False

    async def start(self, journal: Journal) -> None:
        self.journal = journal
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="trading-engine")

    async def stop(self) -> None:
        """Refuse new work, let the batch in hand finish, fail what is still queued."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            if not self._busy:
                task.cancel()  # idle: waiting for work, nothing in hand
            with contextlib.suppress(asyncio.CancelledError):
                await task
        commit, self._commit_task = self._commit_task, None
        if commit is not None:
            await asyncio.shield(commit)
        self._fail_queued()

    async def submit(self, run: Run, size: int = 1) -> asyncio.Future[Any]:
        """Queue work (waiting for room); returns the future of its result."""
        if self._stopping or self._failed:
            raise _stopping_error()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Work(run, size, future))
        if self._stopping and self._task is None:
            self._fail_queued()
        return future

    async def call(self, run: Run) -> Any:
        """Run `run` on the engine task; its answer comes once the batch it was in is journaled."""
        return await (await self.submit(run))

    def _fail_queued(self) -> None:
        while not self._queue.empty():
            work = self._queue.get_nowait()
            if not work.future.done():
                work.future.set_exception(_stopping_error())

    async def _run(self) -> None:
        while not self._stopping:
            first = await self._queue.get()
            self._busy = True
            try:
                batch = [first]
                size = first.size
                while size < self._batch_max_items and not self._queue.empty():
                    work = self._queue.get_nowait()
                    batch.append(work)
                    size += work.size
                applied = self._apply(batch)
                if applied is None:
                    return
                # The previous batch's journal write ran while this batch was applied; the
                # writes themselves stay one at a time and in sequence order.
                previous = self._commit_task
                if previous is not None:
                    await previous
                if self._failed:
                    _fail(applied.answers, _outcome_unknown())
                    return
                self._commit_task = asyncio.create_task(self._commit(applied), name="trading-journal")
            finally:
                self._busy = False

    def _apply(self, batch: list[_Work]) -> _Applied | None:
        """Apply a batch in memory; None when the engine failed (the process is stopping)."""
        applied = _Applied(self._clock_ns())
        records, reports, answers = applied.records, applied.reports, applied.answers
        timestamp_ns = applied.timestamp_ns
        for work in batch:
            try:
                answers.append((work.future, work.run(timestamp_ns, records, reports), None))
            except ServiceError as error:
                answers.append((work.future, None, error))
            except Exception as error:  # a bug in the engine: its state is now unknown
                log.exception("the engine failed while applying a command")
                _fail([(w.future, None, None) for w in batch], _outcome_unknown())
                self._fatal(f"engine error: {error!r}")
                return None
        return applied

    async def _commit(self, applied: _Applied) -> None:
        """Journal a batch, then answer it, publish its reports and wake the outboxes."""
        records = applied.records
        if records:
            assert self.journal is not None
            try:
                await self.journal.append(records)
            except BaseException as error:
                log.critical(
                    "journal write failed; memory is ahead of the journal",
                    records=len(records),
                    first_sequence=records[0].sequence,
                    error=repr(error),
                )
                _fail(applied.answers, _outcome_unknown())
                self._fatal(f"journal write failed: {error!r}")
                if isinstance(error, asyncio.CancelledError):
                    raise
                return
        for future, result, refusal in applied.answers:
            if future.done():
                continue
            if refusal is not None:
                future.set_exception(refusal)
            else:
                future.set_result(result)
        self.feed.publish(applied.reports)
        if any(record.WhichOneof("record") in _EVENT_FIELDS for record in records):
            for notify in self.on_committed:
                notify()

    def _fatal(self, why: str) -> None:
        self._failed = True
        self._stopping = True
        self._fail_queued()
        self.feed.close()
        self._on_fatal(why)


class _Applied:
    """A batch applied in memory and not yet journaled."""

    __slots__ = ("answers", "records", "reports", "timestamp_ns")

    def __init__(self, timestamp_ns: int) -> None:
        self.timestamp_ns = timestamp_ns
        self.records: list[trading_pb2.JournalRecord] = []
        self.reports: list[common_pb2.ExecutionReport] = []
        self.answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []


def _outcome_unknown() -> ServiceError:
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE,
        RejectReason.OUTCOME_UNKNOWN,
        "the trading engine stopped before confirming this command; call GetOrder after it restarts",
    )


def _fail(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]], error: ServiceError) -> None:
    for future, _, _ in answers:
        if not future.done():
            future.set_exception(error)


class TradingServicer(trading_pb2_grpc.TradingServiceServicer):
    """TradingService over the engine loop: translates requests and answers, nothing more."""

    def __init__(
        self,
        loop: EngineLoop,
        *,
        max_in_flight_per_stream: int = 64,
        instrument_journaled: Callable[[int, float | None], Awaitable[None]] | None = None,
    ) -> None:
        self._loop = loop
        self._max_in_flight = max_in_flight_per_stream
        # Awaited with a new instrument's journal sequence and the caller's seconds left before
        # CreateInstrument answers (TradingApp waits there for risk to have learned it).
        self._instrument_journaled = instrument_journaled

    @property
    def _engine(self) -> Engine:
        return self._loop.engine

    async def StreamOrders(
        self, request_iterator: AsyncIterator[trading_pb2.StreamOrdersRequest], context: Any
    ) -> AsyncIterator[trading_pb2.StreamOrdersResponse]:
        answers: asyncio.Queue[asyncio.Future[Any] | BaseException | None] = asyncio.Queue(
            self._max_in_flight
        )

        async def read() -> None:
            try:
                async for request in request_iterator:
                    if len(request.commands) > MAX_COMMANDS_PER_REQUEST:
                        raise invalid_field(
                            "commands",
                            RejectReason.TOO_MANY_COMMANDS,
                            f"has {len(request.commands)} commands; at most "
                            f"{MAX_COMMANDS_PER_REQUEST} fit in one request",
                        )
                    future = await self._loop.submit(self._orders_run(request), len(request.commands))
                    await answers.put(future)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a broken or refused request: end the stream with it
                await answers.put(error)
                return
            await answers.put(None)

        reader = asyncio.create_task(read(), name="trading-stream-orders-reader")
        try:
            while True:
                item = await answers.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield await item
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    def _orders_run(self, request: trading_pb2.StreamOrdersRequest) -> Run:
        engine = self._engine

        def run(
            timestamp_ns: int,
            records: list[trading_pb2.JournalRecord],
            reports: list[common_pb2.ExecutionReport],
        ) -> trading_pb2.StreamOrdersResponse:
            response = trading_pb2.StreamOrdersResponse(sequence=request.sequence)
            results = response.results
            apply = engine.apply
            for command in request.commands:
                outcome = apply(command, timestamp_ns)
                if outcome.records:  # subscribers get what is journaled; refusals only go back
                    records += outcome.records
                    reports += outcome.reports
                results.add().reports.extend(outcome.reports)
            return response

        return run

    async def SubscribeExecutions(
        self, request: trading_pb2.SubscribeExecutionsRequest, context: Any
    ) -> AsyncIterator[trading_pb2.SubscribeExecutionsResponse]:
        subscription = self._loop.feed.subscribe()
        log.info("execution subscriber joined", subscribers=self._loop.feed.subscriber_count)
        # Headers now tell the subscriber the subscription is registered: no later report is missed.
        await context.send_initial_metadata(())
        try:
            while True:
                yield await subscription.next()
        finally:
            self._loop.feed.unsubscribe(subscription)

    async def GetOrder(
        self, request: trading_pb2.GetOrderRequest, context: Any
    ) -> trading_pb2.GetOrderResponse:
        order_id = request.order_id
        if not order_id:
            raise invalid_field("order_id", RejectReason.REQUIRED, "is required")
        engine = self._engine

        def run(*_: object) -> common_pb2.Order | None:
            return engine.order_message(order_id)

        order = await self._loop.call(run)
        if order is None:
            raise not_found(
                RejectReason.UNKNOWN_ORDER, f"there is no order {order_id[:80]!r}", order_id=order_id[:80]
            )
        return trading_pb2.GetOrderResponse(order=order)

    async def CreateInstrument(
        self, request: trading_pb2.CreateInstrumentRequest, context: Any
    ) -> trading_pb2.CreateInstrumentResponse:
        if not request.HasField("instrument"):
            raise invalid_field("instrument", RejectReason.REQUIRED, "is required")
        instrument = request.instrument
        engine = self._engine

        def run(
            timestamp_ns: int,
            records: list[trading_pb2.JournalRecord],
            reports: list[common_pb2.ExecutionReport],
        ) -> tuple[common_pb2.Instrument, int]:
            try:
                outcome = engine.create_instrument(instrument, timestamp_ns)
            except InstrumentRejected as error:
                raise _instrument_error(error, instrument.symbol) from None
            records += outcome.records
            assert outcome.instrument is not None
            # The record's sequence; 0 when the same definition existed (nothing new was journaled).
            return outcome.instrument, outcome.records[-1].sequence if outcome.records else 0

        stored, sequence = await self._loop.call(run)
        if stored is not None:
            log.info("instrument ready", symbol=stored.symbol)
        if sequence and self._instrument_journaled is not None:
            await self._instrument_journaled(sequence, context.time_remaining())
        return trading_pb2.CreateInstrumentResponse(instrument=stored)

    async def ListInstruments(
        self, request: trading_pb2.ListInstrumentsRequest, context: Any
    ) -> trading_pb2.ListInstrumentsResponse:
        engine = self._engine
        instruments = await self._loop.call(lambda *_: engine.instrument_list())
        return trading_pb2.ListInstrumentsResponse(instruments=instruments)

    async def GetOrderBook(
        self, request: trading_pb2.GetOrderBookRequest, context: Any
    ) -> trading_pb2.GetOrderBookResponse:
        symbol = request.symbol
        if not symbol:
            raise invalid_field("symbol", RejectReason.REQUIRED, "is required")
        depth = request.depth
        engine = self._engine

        def run(*_: object) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]] | None:
            book = engine.books.get(symbol)
            return None if book is None else book.snapshot(depth)

        levels = await self._loop.call(run)
        if levels is None:
            raise not_found(
                RejectReason.UNKNOWN_SYMBOL, f"there is no instrument {symbol[:40]!r}", symbol=symbol[:40]
            )
        bids, asks = levels
        return trading_pb2.GetOrderBookResponse(
            symbol=symbol,
            bids=[trading_pb2.PriceLevel(price_ticks=p, quantity_lots=q, order_count=n) for p, q, n in bids],
            asks=[trading_pb2.PriceLevel(price_ticks=p, quantity_lots=q, order_count=n) for p, q, n in asks],
        )


def _instrument_error(error: InstrumentRejected, symbol: str) -> ServiceError:
    if error.reason == RejectReason.INSTRUMENT_EXISTS:
        return already_exists(error.reason, error.message, symbol=symbol[:40])
    violations = [
        FieldViolation(name if name == "instrument" else f"instrument.{name}", description)
        for name, description in error.violations
    ]
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, error.reason, error.message, violations)
