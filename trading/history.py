"""The report history: tables ``trading.reports`` and ``trading.history_orders``, written from the
engine's execution reports, read by StreamExecutions' resume (ListExecutions) and GetOrder.

Every report of a journaled command has a per-account number (``account_sequence``: 1, 2, 3... per
account, trading/engine.py). The history keeps each such report by (account, number), serialized,
with the order id, client order id, symbol and the journal sequence of the command that produced it
(migrations/009_history.sql), and every journaled NewOrder as it was sent (so a retry of a closed
order can be compared with it, and a client order id looked up across history).

Where the reports come from: the journal holds commands and events, not reports, but the engine
makes every report deterministically from the commands, live and during replay alike. So the
history is written from what the engine produced: each committed batch of the engine loop
(``EngineLoop.on_reports`` calls :meth:`ReportHistory.committed`, which only queues the batch and
wakes the task) and, at start, the replay of every command after the history's mark
(:meth:`ReportHistory.replayed`; trading/app.py loads no snapshot newer than the mark, so every
command after it is replayed). A background task writes the queued batches, a batch of reports at
a time, with one binary COPY per table (backbone/runtime/binary_copy.py) and the new mark
(``trading.history_projection``) in one transaction, the mark's row locked (``FOR UPDATE``): a
batch is written whole or not at all, nothing twice (a crash before the commit leaves the old
mark and no rows, and the restart's replay makes the same reports again), and a start catches up
from the mark. It has its own small pool, like the
fills projection (trading/fills.py), so its writes and reads never make the journal's writes wait.

Memory: what is queued and not yet written stays in memory (the reports of the batches since the
mark); under load a pass carries many batches. While PostgreSQL is away the journal cannot be
written either, and the process exits (trading/engine_loop.py), so the queue does not grow for long.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from backbone.common.v1 import common_pb2
from backbone.runtime.binary_copy import BinaryCopy
from backbone.runtime.config import Settings
from backbone.runtime.database import open_pool
from backbone.runtime.tasks import stop_task
from backbone.trading.v1 import trading_pb2
from trading.engine import COMMAND_KINDS, OrderState
from trading.watermark import Watermark

log = structlog.get_logger("backbone.trading")

# Connections of the history's own pool: the writer, and a read or two (resumes, GetOrder, lookups).
POOL_SIZE = 3
# About this many reports are written in one transaction (whole batches: one may carry more).
BATCH_REPORTS = 5_000
# When nothing wakes it, the task looks for work this often anyway, and retries this long after
# PostgreSQL failed.
IDLE_SECONDS = 1.0

# Binary COPY (backbone/runtime/binary_copy.py says why), each column's type as in 009_history.sql.
_COPY_REPORTS = BinaryCopy(
    "COPY trading.reports (shard, account_id, account_sequence, order_id, client_order_id, symbol, "
    "sequence, report) FROM STDIN (FORMAT BINARY)",
    ("text", "text", "int8", "text", "text", "text", "int8", "bytea"),
)
_COPY_ORDERS = BinaryCopy(
    "COPY trading.history_orders (shard, order_id, account_id, client_order_id, sequence, new_order) "
    "FROM STDIN (FORMAT BINARY)",
    ("text", "text", "text", "text", "int8", "bytea"),
)
_MARK = "SELECT sequence FROM trading.history_projection WHERE shard = %s"
_LOCK_MARK = _MARK + " FOR UPDATE"
_NEW_MARK = "INSERT INTO trading.history_projection (shard, sequence) VALUES (%s, 0) ON CONFLICT DO NOTHING"
_SET_MARK = "UPDATE trading.history_projection SET sequence = %s WHERE shard = %s"
_PAGE = (
    "SELECT report FROM trading.reports WHERE shard = %s AND account_id = %s "
    "AND account_sequence >= %s AND account_sequence <= %s ORDER BY account_sequence LIMIT %s"
)
# Journaled orders by order id or by (account, client order id), each with its last report. Each key
# is its own index probe (LATERAL): a batch's look-up costs its keys, never a scan of the history.
_RECALL = (
    "WITH wanted AS ("
    " SELECT o.order_id, o.new_order FROM unnest(%(ids)s::text[]) AS k(order_id)"
    " CROSS JOIN LATERAL (SELECT order_id, new_order FROM trading.history_orders"
    " WHERE shard = %(shard)s AND order_id = k.order_id) o"
    " UNION SELECT o.order_id, o.new_order"
    " FROM unnest(%(accounts)s::text[], %(client_ids)s::text[]) AS k(account_id, client_order_id)"
    " CROSS JOIN LATERAL (SELECT order_id, new_order FROM trading.history_orders WHERE shard = %(shard)s"
    " AND account_id = k.account_id AND client_order_id = k.client_order_id) o)"
    " SELECT w.new_order, r.report FROM wanted w CROSS JOIN LATERAL (SELECT report FROM trading.reports"
    " WHERE shard = %(shard)s AND order_id = w.order_id ORDER BY account_sequence DESC LIMIT 1) r"
)
_LAST_REPORTS = (
    "SELECT DISTINCT ON (order_id) order_id, report FROM trading.reports WHERE shard = %s "
    "AND order_id = ANY(%s) ORDER BY order_id, account_sequence DESC"
)

# A batch the engine produced: its journal records (commands and their events, in sequence order)
# and the reports of its commands.
Batch = tuple[Sequence[trading_pb2.JournalRecord], Sequence[common_pb2.ExecutionReport]]


# A row of trading.reports: (shard, account id, account sequence, order id, client order id,
# symbol, command's journal sequence, serialized report).
ReportRow = tuple[str, str, int, str, str, str, int, bytes]
# A row of trading.history_orders: (shard, order id, account id, client order id, journal
# sequence, serialized NewOrder).
OrderRow = tuple[str, str, str, str, int, bytes]


@dataclasses.dataclass(frozen=True)
class HistoryRows:
    """What one or more batches add to the history: rows of ``trading.reports`` and of
    ``trading.history_orders``, and the journal sequence the mark moves to."""

    reports: list[ReportRow]
    orders: list[OrderRow]
    last_sequence: int


def history_rows(shard: str, batches: Sequence[Batch], after: int) -> HistoryRows:
    """The rows of `batches`' commands journaled after sequence `after` (the mark).

    A report's command is found by sequence: a report of a command with events carries the
    sequence of its last event (``journal_sequence``), which follows its command and precedes the
    next one; a report without (an order that only rested) is its new order's ACCEPTED, found by
    order id among the batch's new orders.
    """
    reports: list[ReportRow] = []
    orders: list[OrderRow] = []
    # Locals for what the loops call per row (this runs over every report under load).
    add_report, add_order, bisect_right = reports.append, orders.append, bisect.bisect_right
    last = after
    for records, batch_reports in batches:
        if not records or records[-1].sequence <= after:
            continue
        last_sequence = records[-1].sequence
        last = max(last, last_sequence)
        commands: list[int] = []
        new_orders: dict[str, int] = {}
        for record in records:
            kind = record.WhichOneof("record")
            if kind not in COMMAND_KINDS:
                continue
            sequence = record.sequence
            commands.append(sequence)
            if kind == "new_order" and sequence > after:
                new_order = record.new_order
                order_id = new_order.order_id
                new_orders[order_id] = sequence
                add_order(
                    (shard, order_id, new_order.account_id, new_order.client_order_id, sequence,
                     new_order.SerializeToString())
                )  # fmt: skip
        for report in batch_reports:
            number = report.account_sequence
            if number <= 0:
                continue  # a refusal or a retry's answer: nothing journaled, not numbered
            order = report.order
            order_id = order.order_id
            journal_sequence = report.journal_sequence
            if journal_sequence:
                position = bisect_right(commands, journal_sequence)
                if not position:  # its command is not in the batch: a bug, nothing of the batch is written
                    raise ValueError(
                        f"report {number} of account {order.account_id} names journal sequence "
                        f"{journal_sequence}, before its batch's first command"
                    )
                sequence = commands[position - 1]
            else:
                sequence = new_orders.get(order_id, last_sequence)
            if sequence <= after:
                continue
            add_report(
                (shard, order.account_id, number, order_id, order.client_order_id, order.symbol, sequence,
                 report.SerializeToString())
            )  # fmt: skip
    return HistoryRows(reports, orders, last)


class ReportHistory(Watermark):
    """Writes one shard's report history in the background and reads it."""

    def __init__(
        self, shard: str, *, batch_reports: int = BATCH_REPORTS, idle_seconds: float = IDLE_SECONDS
    ) -> None:
        self.shard = shard
        self.batch_reports = batch_reports
        self._idle_seconds = idle_seconds
        self.pool: AsyncConnectionPool | None = None
        # committed_sequence: the highest journal sequence whose reports were handed in;
        # projected_sequence: the mark (every command at or below it has its reports in the history).
        super().__init__("report history")
        # Batches handed in and not written yet, oldest first, and how many reports they hold.
        self._pending: deque[tuple[list[trading_pb2.JournalRecord], list[common_pb2.ExecutionReport]]] = (
            deque()
        )
        self.pending_reports = 0
        self._task: asyncio.Task[None] | None = None

    async def open(self, settings: Settings) -> int:
        """Open the pool and read the mark (creating it at 0); returns it."""
        own = dataclasses.replace(settings, database_pool_size=POOL_SIZE)
        self.pool = await open_pool(own, "trading-history")
        async with self.pool.connection() as connection:
            await connection.execute(_NEW_MARK, (self.shard,))
            cursor = await connection.execute(_MARK, (self.shard,))
            row = await cursor.fetchone()
        self.projected_sequence = self.committed_sequence = int(row[0]) if row else 0
        return self.projected_sequence

    def start(self) -> None:
        """Write what is handed in from now on (and what the start's replay left queued)."""
        self._task = asyncio.create_task(self._run(), name="trading-report-history")

    async def stop(self) -> None:
        """Stop the task and write what is still queued (a graceful stop leaves the history at the
        journal's end, so the next start can load the newest snapshot); a failure to write it only
        leaves it to the next start's replay."""
        task, self._task = self._task, None
        await stop_task(task)
        if self.pool is not None:
            try:
                while self._pending:
                    await self.write_pending()
            except (psycopg.Error, PoolTimeout) as error:
                log.warning(
                    "report history: not written at stop; the next start writes it", error=repr(error)
                )
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    # -- handing reports in ---------------------------------------------------------------

    def committed(
        self, records: list[trading_pb2.JournalRecord], reports: list[common_pb2.ExecutionReport]
    ) -> None:
        """A batch was committed (an EngineLoop.on_reports callback): queue it and wake the task."""
        if records[-1].sequence <= self.committed_sequence:
            return  # already handed in by the start's replay
        self._pending.append((records, reports))
        self.pending_reports += len(reports)
        self.committed_sequence = records[-1].sequence
        self._handed_in(self.pending_reports)

    def replayed(self, record: trading_pb2.JournalRecord, reports: list[common_pb2.ExecutionReport]) -> None:
        """A journal record replayed at start, with the reports it regenerated (a command's; none
        for an event): queued when it follows the mark."""
        if record.sequence <= self.committed_sequence:
            return
        if record.WhichOneof("record") in COMMAND_KINDS or not self._pending:
            self._pending.append(([record], list(reports)))
            self.pending_reports += len(reports)
        else:  # an event of the command queued last
            self._pending[-1][0].append(record)
        self.committed_sequence = record.sequence

    # -- writing ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                written = await self.write_pending()
            except (psycopg.Error, PoolTimeout) as error:
                log.warning("report history: PostgreSQL failed; retrying", error=repr(error))
                await self._failed(f"PostgreSQL: {error!r}")
                await asyncio.sleep(self._idle_seconds)
                continue
            except Exception as error:  # nothing of the batch was written; it is tried again
                log.exception("report history: a batch failed; retrying")
                await self._failed(repr(error))
                await asyncio.sleep(self._idle_seconds)
                continue
            await self._worked()
            if not (written and self._pending):  # else more are waiting already
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_seconds)
            await self._linger(self.pending_reports)

    async def write_pending(self, *, keep_last: bool = False) -> int:
        """Write the oldest queued batches (about one batch of reports) and move the mark past
        them, in one transaction; returns how many batches were written. `keep_last` leaves the
        newest batch queued (during replay its events may still come)."""
        if self.pool is None:
            raise RuntimeError("the report history is not open")
        taken: list[Batch] = []
        count = 0
        limit = len(self._pending) - (1 if keep_last else 0)
        for records, reports in self._pending:
            if len(taken) >= limit or (taken and count + len(reports) > self.batch_reports):
                break
            taken.append((records, reports))
            count += len(reports)
        if not taken:
            return 0
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute(_NEW_MARK, (self.shard,))
            cursor = await connection.execute(_LOCK_MARK, (self.shard,))
            row = await cursor.fetchone()
            mark = int(row[0]) if row else 0
            rows = history_rows(self.shard, taken, mark)
            if rows.reports:
                await _COPY_REPORTS.write(connection, rows.reports)
            if rows.orders:
                await _COPY_ORDERS.write(connection, rows.orders)
            if rows.last_sequence > mark:
                await connection.execute(_SET_MARK, (rows.last_sequence, self.shard))
        for _ in taken:
            _, reports = self._pending.popleft()
            self.pending_reports -= len(reports)
        self._advance(max(mark, rows.last_sequence))
        return len(taken)

    # -- reading ------------------------------------------------------------------------------

    async def page(
        self, account_id: str, from_sequence: int, through_sequence: int, limit: int
    ) -> list[common_pb2.ExecutionReport]:
        """Up to `limit` reports of `account_id` numbered `from_sequence` to `through_sequence`,
        in order."""
        async with self._connection() as connection:
            cursor = await connection.execute(
                _PAGE, (self.shard, account_id, from_sequence, through_sequence, limit)
            )
            rows = await cursor.fetchall()
        parse = common_pb2.ExecutionReport.FromString
        return [parse(report) for (report,) in rows]

    async def last_reports(self, order_ids: Sequence[str]) -> dict[str, common_pb2.ExecutionReport]:
        """The last report of each of `order_ids` the history holds (its order's state then)."""
        if not order_ids:
            return {}
        async with self._connection() as connection:
            cursor = await connection.execute(_LAST_REPORTS, (self.shard, list(order_ids)))
            rows = await cursor.fetchall()
        return {str(order_id): common_pb2.ExecutionReport.FromString(report) for order_id, report in rows}

    async def orders(
        self, order_ids: Sequence[str], client_keys: Sequence[tuple[str, str]]
    ) -> list[OrderState]:
        """The journaled orders with one of `order_ids` or one of `client_keys` ((account, client
        order id)), each as its last report left it (one query)."""
        arguments = {
            "shard": self.shard,
            "ids": list(order_ids),
            "accounts": [account for account, _ in client_keys],
            "client_ids": [client_order_id for _, client_order_id in client_keys],
        }
        async with self._connection() as connection:
            cursor = await connection.execute(_RECALL, arguments)
            rows = await cursor.fetchall()
        return [
            restored_order(
                trading_pb2.NewOrder.FromString(new_order),
                common_pb2.ExecutionReport.FromString(report).order,
            )
            for new_order, report in rows
        ]

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self.pool is None:
            raise RuntimeError("the report history is not open")
        async with self.pool.connection() as connection:
            yield connection


def restored_order(command: trading_pb2.NewOrder, last: common_pb2.Order) -> OrderState:
    """An order as the engine held it, from its NewOrder as journaled and the order as its last
    report shows it (a closed order: off the book)."""
    order = OrderState(command, last.created_ns)
    order.price_ticks = last.price_ticks
    order.quantity_lots = last.quantity_lots
    order.reserve_price_ticks = last.reserve_price_ticks or last.price_ticks
    order.filled_lots = last.filled_lots
    order.leaves_lots = last.leaves_lots
    order.cancelled_lots = last.cancelled_lots
    order.expired_lots = last.expired_lots
    order.filled_notional = last.filled_notional_ticks_lots
    order.status = last.status
    order.updated_ns = last.updated_ns
    return order


def forget(connection: psycopg.Connection[Any], shard: str) -> None:
    """Drop `shard`'s history (its rows and its mark) in one transaction, so the next start
    writes it again from the whole journal (for an operator, with trading stopped, and tests)."""
    with connection.transaction():
        connection.execute("DELETE FROM trading.reports WHERE shard = %s", (shard,))
        connection.execute("DELETE FROM trading.history_orders WHERE shard = %s", (shard,))
        connection.execute("DELETE FROM trading.history_projection WHERE shard = %s", (shard,))
