"""The engine loop: the one task that applies every command, journals it, then answers.

All commands from all StreamOrders streams (and CreateInstrument, and the
reads, so they see only journaled state) go through ONE engine task: it
takes whatever is queued, up to ``batch_max_items`` commands, applies it in
memory, appends every resulting journal record in one transaction, and only
then answers each request (in order, one response per request), publishes
the reports to the execution feed (the reports of journaled commands; a
refusal is answered to its sender only) and the batch's book changes to the
market data feed (captured right after the batch was applied:
trading/market_data.py), and hands the committed records to
the outboxes (``on_committed``: they send from memory what they would
otherwise read back from the journal). The
journal write of one batch overlaps the in-memory application of the next;
the writes themselves are one at a time, in sequence order, and a batch is
answered only once its own write has committed. If a journal write fails,
memory is ahead of the journal and can no longer be trusted: the process
logs a critical line and exits (code 70); a restart replays the journal.

The engine queue is bounded: a full queue makes StreamOrders readers wait,
which pushes back on the caller through gRPC flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NoReturn

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2
from trading.engine import Engine
from trading.execution_feed import ExecutionFeed, stopping_error
from trading.journal import Journal
from trading.market_data import Captured, MarketDataFeed
from trading.retention import Lookup, Retention

log = structlog.get_logger("backbone.trading")

# A unit of work for the engine task: (timestamp_ns, records out, reports out) -> result.
Run = Callable[[int, list[trading_pb2.JournalRecord], list[common_pb2.ExecutionReport]], Any]

EXIT_JOURNAL_FAILED = 70


def exit_process(reason: str) -> NoReturn:
    """The default reaction to a state that can no longer be trusted: stop the process now."""
    log.critical("stopping the process; a restart replays the journal", why=reason)
    os._exit(EXIT_JOURNAL_FAILED)


class _Work:
    __slots__ = ("future", "lookup", "run", "size")

    def __init__(self, run: Run, size: int, future: asyncio.Future[Any], lookup: Lookup | None) -> None:
        self.run = run
        self.size = size
        self.future = future
        self.lookup = lookup


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
        self.market_data = MarketDataFeed(engine)
        self.journal: Journal | None = None
        # Called with every committed batch's records (contiguous sequences, in commit order).
        self.on_committed: list[Callable[[list[trading_pb2.JournalRecord]], None]] = []
        # Called with every committed batch's records and the reports of its commands (the report
        # history, trading/history.py, writes them; the retention notes the orders they closed).
        self.on_reports: list[
            Callable[[list[trading_pb2.JournalRecord], list[common_pb2.ExecutionReport]], None]
        ] = []
        self._batch_max_items = batch_max_items
        self._queue: asyncio.Queue[_Work] = asyncio.Queue(max_queued)
        # Closed orders leave memory at the start of a batch, and a batch's new orders meet the
        # ids the engine forgot (trading/retention.py); None: every order is kept.
        self.retention: Retention | None = None
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
            self.market_data.start()
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
        self.market_data.close()

    async def submit(
        self, run: Run, size: int = 1, new_orders: Sequence[trading_pb2.NewOrder] = ()
    ) -> asyncio.Future[Any]:
        """Queue work (waiting for room); returns the future of its result. `new_orders` are the
        NewOrders `run` applies: their ids the engine does not hold are looked up in the report
        history while the work waits (Retention.look_up), and what is found is taken back into
        memory before its batch is applied."""
        if self._stopping or self._failed:
            raise stopping_error()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        retention = self.retention
        lookup = retention.look_up(self.engine, new_orders) if retention is not None and new_orders else None
        try:
            await self._queue.put(_Work(run, size, future, lookup))
        except BaseException:
            if lookup is not None and retention is not None:
                retention.release(lookup)
            raise
        if self._stopping and self._task is None:
            self._fail_queued()
        return future

    async def call(self, run: Run, new_orders: Sequence[trading_pb2.NewOrder] = ()) -> Any:
        """Run `run` on the engine task; its answer comes once the batch it was in is journaled.
        `new_orders`: as for submit (an order to resolve or fence comes with its order id and
        account only, so an order the engine forgot is taken back in first, never fenced)."""
        return await (await self.submit(run, 1, new_orders))

    def _fail_queued(self) -> None:
        while not self._queue.empty():
            work = self._queue.get_nowait()
            if work.lookup is not None and self.retention is not None:
                self.retention.release(work.lookup)
            if not work.future.done():
                work.future.set_exception(stopping_error())

    async def _run(self) -> None:
        try:
            await self._take_batches()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug: callers would wait for answers that never come
            log.exception("the engine task failed")
            self._fatal(f"engine task failed: {error!r}")

    async def _take_batches(self) -> None:
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
                if self.retention is not None:
                    batch = await self._retain(self.retention, batch)
                    if not batch:
                        continue
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

    async def _retain(self, retention: Retention, batch: list[_Work]) -> list[_Work]:
        """Forget the closed orders the history holds, then take back the forgotten ones the
        batch's new orders name (their look-ups ran while they waited). Returns the works to
        apply: one whose look-up failed is refused (UNAVAILABLE, nothing done), the rest go on."""
        try:
            retention.forget_written(self.engine)
        except Exception:  # a bug in forgetting: memory is kept, matching goes on
            log.exception("closed orders could not be forgotten")
        kept: list[_Work] = []
        for work in batch:
            if work.lookup is not None:
                try:
                    await retention.recall(self.engine, work.lookup)
                except Exception as error:
                    log.warning(
                        "the report history could not be read; the work is refused", error=repr(error)
                    )
                    _fail(
                        [(work.future, None, None)],
                        ServiceError(
                            grpc.StatusCode.UNAVAILABLE,
                            RejectReason.DATABASE_UNAVAILABLE,
                            "trading could not check the order ids against its history; "
                            "nothing was done, retry",
                        ),
                    )
                    continue
            kept.append(work)
        return kept

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
        try:
            applied.market = self.market_data.capture(records, timestamp_ns)
        except Exception as error:  # a bug in market data: it must not stop matching
            log.exception("market data capture failed")
            self.market_data.recapture(repr(error))
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
        # What follows the answers only informs others (subscribers, outboxes, indexes): a bug
        # there is logged and must not stop the engine, whose next batch awaits this task.
        followers: list[Callable[[], None]] = [lambda: self.feed.publish(applied.reports)]
        if applied.market is not None:
            market = applied.market
            followers.append(lambda: self.market_data.publish(market))
        if records:
            followers += [partial(committed, records) for committed in self.on_committed]
            followers += [partial(reported, records, applied.reports) for reported in self.on_reports]
        for follow in followers:
            try:
                follow()
            except Exception:
                log.exception("a follower of the journal failed on a committed batch", records=len(records))

    def stop_for_good(self, why: str) -> None:
        """Stop because the journal can no longer be written by this process (its shard's lease
        is lost): fail what is queued, end the feed, and call `on_fatal` (by default: exit)."""
        self._fatal(why)

    def _fatal(self, why: str) -> None:
        self._failed = True
        self._stopping = True
        self._fail_queued()
        self.feed.close()
        self.market_data.close()
        self._on_fatal(why)


class _Applied:
    """A batch applied in memory and not yet journaled."""

    __slots__ = ("answers", "market", "records", "reports", "timestamp_ns")

    def __init__(self, timestamp_ns: int) -> None:
        self.timestamp_ns = timestamp_ns
        self.market: Captured | None = None
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
