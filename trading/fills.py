"""The fills projection: table ``trading.fills``, written from the journal's trades, read by ListFills.

The journal (``trading.journal``) is the truth, but its rows are by shard and sequence,
with the accounts inside each payload: reading one account's fills there means reading every
trade. The projection keeps one row per side of each trade (migrations/007_fills.sql),
keyed by account and trade id.

Writing it (:class:`FillProjection`): a background task takes the trade records after the
projection's high-water mark (``trading.fills_projection``), a batch at a time, and writes their
rows with one binary COPY and the new mark in one transaction, the mark's row locked
(``FOR UPDATE``) for it. So a batch is projected whole or not at all, nothing is projected twice
(a crash before the commit leaves the old mark and no rows; rows are only ever taken after the
mark read under the lock), a restart catches up from the mark, and a journal written before the
projection existed is projected from its first trade on the first start.

Where the trades come from: the engine loop hands every committed batch to
:meth:`FillProjection.committed` (``EngineLoop.on_committed``), which queues its trade records in
memory (the records the journal holds, as they were written; the queue holds every trade of one
contiguous range of sequences, so a trade missing from it cannot go unnoticed) and wakes the task.
A pass whose mark lies in the queue's range takes the trades from the queue; any other pass reads
them back from the journal, up to the start of the queue's range (or, with no range, up to what
is known committed): at start (the catch-up from the mark to the replayed journal's end, the
queue's range starting after it), after the queue was full (``MAX_QUEUED_TRADES``: batches that
do not fit are left to the journal), and for a mark moved by another writer. The journal remains
the truth: the queue only saves reading back, and parsing, what this process just wrote. Under
load one pass carries many batches. It has its own small connection pool, so its writes and the
ListFills reads never make the matching path's journal writes wait for a connection (a burst of
reads can delay the projection, never the matching).

Reading it (:meth:`FillProjection.page`): one account's fills by (trade id, side) after a
position, along the primary key. A time range is turned into a trade id range first (the
account's first fill at or after each bound, through ``fills_by_time``), because the engine's
clock never goes back: trade ids and times rise together. The writer checks that as it goes
(``times_in_order``); a shard where it ever failed is read by time alone.

Why the queue is as safe as reading the journal back: a batch reaches ``committed`` only after
its journal write committed (trading/engine_loop.py), in commit order, its sequences following the
last batch's; the queue holds the records' own trade messages, those that were serialized into
the journal, so the rows are the same; a pass takes from the queue only when the queue holds every
trade from the mark on (the mark, read under the lock, lies in its range), and only trades after
the mark, so none is skipped and none written twice; a pass that fails takes nothing off the queue.

Lag: a fill is in the projection one pass after its batch was committed (one transaction;
milliseconds on an idle system, longer under load or while PostgreSQL is away, when the task
retries every second). ListFills says how far the
projection is complete (``projected_sequence``) and can wait for a sequence first.

The client order id of each side comes from the engine's orders (the journal's ``new_order``
records, replayed): a trade's orders are always journaled before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from backbone.common.v1 import common_pb2
from backbone.ids import INT64_MAX
from backbone.runtime.binary_copy import BinaryCopy
from backbone.runtime.config import Settings
from backbone.runtime.database import open_pool
from backbone.runtime.tasks import stop_task
from backbone.trading.v1 import trading_pb2
from trading.engine import OrderState
from trading.watermark import Watermark

log = structlog.get_logger("backbone.trading")

# Connections of the projection's own pool: the writer and a ListFills read at a time or two.
POOL_SIZE = 3
# Trade records projected in one transaction.
BATCH_TRADES = 5_000
# Trades of committed batches queued in memory, at most (more are read back from the journal).
MAX_QUEUED_TRADES = 4 * BATCH_TRADES
# When nothing wakes it, the task looks for trades this often anyway (another writer, a missed
# wake-up), and retries this long after PostgreSQL failed.
IDLE_SECONDS = 1.0

_BUY, _SELL = common_pb2.SIDE_BUY, common_pb2.SIDE_SELL
_MAKER, _TAKER = common_pb2.LIQUIDITY_SIDE_MAKER, common_pb2.LIQUIDITY_SIDE_TAKER

# Binary COPY (backbone/runtime/binary_copy.py says why), each column's type as in 007_fills.sql.
_COPY = BinaryCopy(
    "COPY trading.fills (shard, account_id, trade_id, side, order_id, client_order_id, symbol, "
    "price_ticks, quantity_lots, fee, liquidity_side, timestamp_ns, sequence) FROM STDIN (FORMAT BINARY)",
    ("text", "text", "int8", "int2", "text", "text", "text", "int8", "int8", "int8", "int2", "int8", "int8"),
)
_MARK = "SELECT sequence, last_timestamp_ns, times_in_order FROM trading.fills_projection WHERE shard = %s"
_LOCK_MARK = _MARK + " FOR UPDATE"
_NEW_MARK = "INSERT INTO trading.fills_projection (shard, sequence) VALUES (%s, 0) ON CONFLICT DO NOTHING"
_SET_MARK = (
    "UPDATE trading.fills_projection SET sequence = %s, last_timestamp_ns = %s, times_in_order = %s "
    "WHERE shard = %s"
)
# The first fill of an account at or after a time, by (time, trade id): fills_by_time serves it.
_FIRST_FROM = (
    "SELECT trade_id FROM trading.fills WHERE shard = %s AND account_id = %s AND timestamp_ns >= %s "
    "ORDER BY timestamp_ns, trade_id LIMIT 1"
)
# The settlement outbox's predicate (trading/journal.py): its partial index journal_trades serves it.
_TRADES_AFTER = (
    "SELECT sequence, payload FROM trading.journal WHERE shard = %s AND sequence > %s AND sequence <= %s "
    "AND kind = 'trade' ORDER BY sequence LIMIT %s"
)
_SELECT = (
    "SELECT trade_id, side, order_id, client_order_id, symbol, price_ticks, quantity_lots, fee, "
    "liquidity_side, timestamp_ns, sequence FROM trading.fills WHERE shard = %s AND account_id = %s "
    "AND (trade_id, side) > (%s, %s)"
)


@dataclasses.dataclass(frozen=True)
class FillQuery:
    """One page of ListFills, its fields checked (trading/servicer.py). A bound of 0 is none."""

    account_id: str
    symbol: str
    start_timestamp_ns: int
    end_timestamp_ns: int
    start_trade_id: int
    end_trade_id: int
    after_trade_id: int
    after_side: int
    limit: int


def client_order_ids(orders: Mapping[str, OrderState]) -> Callable[[str], str]:
    """The client order id of an order of `orders` (the engine's); "" for one it does not know,
    which cannot happen for an order that traded (it was journaled, so replayed, first)."""

    def client_order_id_of(order_id: str) -> str:
        order = orders.get(order_id)
        return "" if order is None else order.client_order_id

    return client_order_id_of


def fill_rows(
    shard: str, sequence: int, trade: common_pb2.Trade, client_order_id_of: Callable[[str], str]
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """The projection's two rows of a trade: the buy side's, then the sell side's."""
    buy_liquidity, sell_liquidity = (_MAKER, _TAKER) if trade.maker_side == _BUY else (_TAKER, _MAKER)
    common = (trade.symbol, trade.price_ticks, trade.quantity_lots)
    return (
        (shard, trade.buy_account_id, trade.trade_id, _BUY, trade.buy_order_id,
         client_order_id_of(trade.buy_order_id), *common, trade.buyer_fee, buy_liquidity,
         trade.timestamp_ns, sequence),
        (shard, trade.sell_account_id, trade.trade_id, _SELL, trade.sell_order_id,
         client_order_id_of(trade.sell_order_id), *common, trade.seller_fee, sell_liquidity,
         trade.timestamp_ns, sequence),
    )  # fmt: skip


class FillProjection(Watermark):
    """Writes one shard's fills projection in the background and reads pages of it."""

    def __init__(
        self,
        shard: str,
        client_order_id_of: Callable[[str], str],
        *,
        batch_trades: int = BATCH_TRADES,
        idle_seconds: float = IDLE_SECONDS,
        max_queued_trades: int = MAX_QUEUED_TRADES,
    ) -> None:
        self.shard = shard
        self._client_order_id_of = client_order_id_of
        self._batch_trades = batch_trades
        self._max_queued_trades = max_queued_trades
        # (sequence, trade) of every trade record journaled in (_after, _through], those at or below
        # the mark excepted (committed() says how the range moves); -1: no range yet.
        self._queued: deque[tuple[int, common_pb2.Trade]] = deque()
        self._after = self._through = -1
        self._idle_seconds = idle_seconds
        self.pool: AsyncConnectionPool | None = None
        # committed_sequence: the highest sequence known to be committed to the journal;
        # projected_sequence: the mark this process last wrote or read (every trade at or below it
        # is projected).
        super().__init__("fills projection")
        self._task: asyncio.Task[None] | None = None

    async def start(self, settings: Settings, committed_sequence: int) -> None:
        """Open the pool and start projecting; `committed_sequence` is the journal's last (replayed)."""
        self.committed_sequence = committed_sequence
        own = dataclasses.replace(settings, database_pool_size=POOL_SIZE)
        self.pool = await open_pool(own, "trading-fills")
        self._task = asyncio.create_task(self._run(), name="trading-fills-projection")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)  # its idle wait is an asyncio.wait_for: see backbone/runtime/tasks.py
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    def committed(self, records: Sequence[trading_pb2.JournalRecord]) -> None:
        """A batch was committed (an EngineLoop.on_committed callback): queue its trades and wake
        the task.

        The queue holds every trade of one contiguous range of journal sequences
        (``_after``, ``_through``]: a batch that continues the range is added to it; one that does
        not (the first after the start, or the first after the queue was full) starts a new range
        once the queue has no trade left, and is otherwise left to the journal, like a batch that
        finds the queue full (``MAX_QUEUED_TRADES``). What is not queued is read back from the
        journal, so the queue only saves reads and never decides what is projected."""
        after, through = records[0].sequence - 1, records[-1].sequence
        self.committed_sequence = max(self.committed_sequence, through)
        self._handed_in(self.committed_sequence - self.projected_sequence)
        queued = self._queued
        if after != self._through:
            if queued:
                return
            self._after = after
        elif len(queued) >= self._max_queued_trades:
            return
        queued.extend((record.sequence, record.trade) for record in records if record.HasField("trade"))
        self._through = through

    async def _run(self) -> None:
        catching_up, trades = True, 0  # until a pass finds no full batch: the start's catch-up
        while True:
            self._wake.clear()
            try:
                projected = await self.project_batch()
            except (psycopg.Error, PoolTimeout) as error:
                log.warning("fills projection: PostgreSQL failed; retrying", error=repr(error))
                await self._failed(f"PostgreSQL: {error!r}")
                await asyncio.sleep(self._idle_seconds)
                continue
            except Exception as error:  # a batch that cannot be projected: nothing of it was written
                log.exception("fills projection: a batch failed; retrying")
                await self._failed(repr(error))
                await asyncio.sleep(self._idle_seconds)
                continue
            await self._worked()
            if projected >= self._batch_trades:
                trades += projected
                continue  # more are waiting
            if catching_up:
                catching_up = False
                log.info(
                    "fills projection caught up",
                    shard=self.shard,
                    trades=trades + projected,
                    projected_sequence=self.projected_sequence,
                )
            # Unless some were committed while this pass ran (or queued beyond a range read from
            # the journal), wait for the next batch.
            if self.projected_sequence >= self.committed_sequence:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_seconds)
            await self._linger(self.committed_sequence - self.projected_sequence)

    async def project_batch(self) -> int:
        """Project the next trades after the mark (up to one batch); returns how many were projected.

        They come from the queue when it holds every trade right after the mark (the mark lies in
        its range), from the journal otherwise: up to the queue's range, or to what was committed."""
        assert self.pool is not None
        # Everything committed up to here is visible to the statements below (read committed).
        known = self.committed_sequence
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute(_NEW_MARK, (self.shard,))
            cursor = await connection.execute(_LOCK_MARK, (self.shard,))
            row = await cursor.fetchone()
            mark, last_timestamp_ns, in_order = (
                (int(row[0]), int(row[1]), bool(row[2])) if row else (0, 0, True)
            )
            # No await from here until the trades are taken: the queue does not move meanwhile.
            queued = self._queued
            while queued and queued[0][0] <= mark:
                queued.popleft()  # projected already (the mark is committed)
            trades: list[tuple[int, common_pb2.Trade]]
            if self._after <= mark < self._through:
                trades = list(itertools.islice(queued, self._batch_trades))
                new_mark = trades[-1][0] if len(queued) > len(trades) else self._through
            else:
                bound = self._after if self._after > mark else known
                trades = []
                new_mark = mark
                if bound > mark:
                    cursor = await connection.execute(
                        _TRADES_AFTER, (self.shard, mark, bound, self._batch_trades)
                    )
                    parse = trading_pb2.JournalRecord.FromString
                    read = await cursor.fetchall()
                    trades = [(int(sequence), parse(payload).trade) for sequence, payload in read]
                    new_mark = trades[-1][0] if len(trades) >= self._batch_trades else bound
            if trades:
                client_order_id_of = self._client_order_id_of
                rows: list[tuple[object, ...]] = []
                for sequence, trade in trades:
                    if trade.timestamp_ns < last_timestamp_ns:
                        in_order = False  # for good: time ranges are read by time from now on
                    last_timestamp_ns = max(last_timestamp_ns, trade.timestamp_ns)
                    rows += fill_rows(self.shard, sequence, trade, client_order_id_of)
                await _COPY.write(connection, rows)
            if new_mark != mark:
                await connection.execute(_SET_MARK, (new_mark, last_timestamp_ns, in_order, self.shard))
        while queued and queued[0][0] <= new_mark:
            queued.popleft()
        self._advance(new_mark)
        return len(trades)

    async def page(self, query: FillQuery) -> tuple[list[trading_pb2.Fill], bool, int]:
        """Up to `query.limit` fills by (trade id, side), whether more follow, and the mark: every
        fill at or below it is in the projection (read before the rows, so it never overstates)."""
        if self.pool is None:
            raise RuntimeError("the fills projection is not started")
        async with self.pool.connection() as connection:
            cursor = await connection.execute(_MARK, (self.shard,))
            row = await cursor.fetchone()
            mark, in_order = (int(row[0]), bool(row[2])) if row else (0, True)
            start_trade_id, end_trade_id = query.start_trade_id, query.end_trade_id
            if in_order:
                # Times never go back along trade ids: [start, end) in time is the trade ids from
                # the first fill at or after start to the first at or after end. The primary key
                # then reads the page, however long the account's history before start (the time
                # predicates stay in the query all the same).
                if query.start_timestamp_ns:
                    first = await _first_from(
                        connection, self.shard, query.account_id, query.start_timestamp_ns
                    )
                    # None: no fill at or after start yet (a later one would be past the mark).
                    start_trade_id = max(start_trade_id, INT64_MAX if first is None else first)
                if query.end_timestamp_ns:
                    first = await _first_from(
                        connection, self.shard, query.account_id, query.end_timestamp_ns
                    )
                    if first is not None:
                        end_trade_id = min(end_trade_id or INT64_MAX, first)
            sql = _SELECT
            arguments: list[object] = [self.shard, query.account_id, query.after_trade_id, query.after_side]
            for clause, value in (
                (" AND symbol = %s", query.symbol),
                (" AND timestamp_ns >= %s", query.start_timestamp_ns),
                (" AND timestamp_ns < %s", query.end_timestamp_ns),
                (" AND trade_id >= %s", start_trade_id),
                (" AND trade_id < %s", end_trade_id),
            ):
                if value:
                    sql += clause
                    arguments.append(value)
            sql += " ORDER BY trade_id, side LIMIT %s"
            arguments.append(query.limit + 1)
            cursor = await connection.execute(sql, arguments)
            rows = await cursor.fetchall()
        self._advance(mark)
        fills = [
            trading_pb2.Fill(
                trade_id=r[0], side=r[1], order_id=r[2], client_order_id=r[3], account_id=query.account_id,
                symbol=r[4], price_ticks=r[5], quantity_lots=r[6], fee=r[7], liquidity_side=r[8],
                timestamp_ns=r[9], sequence=r[10],
            )
            for r in rows[: query.limit]
        ]  # fmt: skip
        return fills, len(rows) > query.limit, mark


async def _first_from(
    connection: psycopg.AsyncConnection[Any], shard: str, account_id: str, timestamp_ns: int
) -> int | None:
    """The trade id of the account's first fill at or after `timestamp_ns` (None when none is)."""
    cursor = await connection.execute(_FIRST_FROM, (shard, account_id, timestamp_ns))
    row = await cursor.fetchone()
    return None if row is None else int(row[0])


def forget(connection: psycopg.Connection[Any], shard: str) -> None:
    """Drop `shard`'s projection (its rows and its mark) in one transaction, so the next start
    projects the whole journal again: the state of a journal written before the projection
    existed (migration 007 creates the tables empty, without a mark). For an operator who
    rebuilds the projection (with trading stopped), and for the tests."""
    with connection.transaction():
        connection.execute("DELETE FROM trading.fills WHERE shard = %s", (shard,))
        connection.execute("DELETE FROM trading.fills_projection WHERE shard = %s", (shard,))
