"""The trading journal in PostgreSQL (table ``trading.journal``), through a psycopg 3 async pool.

One row per journal record of a shard: ``(shard, sequence, kind, payload)``
where payload is a serialized ``trading.v1.JournalRecord``. A batch of
records is appended with one binary COPY in one transaction, so a batch is
either wholly journaled or not at all. Startup reads every row back in
sequence order to replay it; the outboxes read trades (for settlement) or
trades, releases, fences and instrument creations (for risk) after a sequence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from psycopg_pool import AsyncConnectionPool

from backbone.trading.v1 import trading_pb2

SETTLEMENT_KINDS = ("trade",)
# Risk learns instruments from this stream too (it never asks trading for them); a fence
# (an order whose outcome was unknown, refused for good) releases that order's reservation.
RISK_KINDS = ("trade", "order_released", "instrument_created", "order_fenced", "risk_epoch_changed")

_COPY = "COPY trading.journal (shard, sequence, kind, payload) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["text", "int8", "text", "bytea"]

_PAGE = "SELECT sequence, payload FROM trading.journal WHERE shard = %s AND sequence > %s"
# Each predicate is spelled as its partial index's (journal_trades in 001_journal.sql,
# journal_risk_kinds_epoch in 005_risk_epoch_index.sql) so the planner can use it even for a
# prepared, generic plan.
_AFTER = {
    SETTLEMENT_KINDS: _PAGE + " AND kind = 'trade' ORDER BY sequence LIMIT %s",
    RISK_KINDS: _PAGE
    + " AND kind IN ('trade', 'order_released', 'instrument_created', 'order_fenced', 'risk_epoch_changed')"
    + " ORDER BY sequence LIMIT %s",
    (): _PAGE + " ORDER BY sequence LIMIT %s",
}


class Journal:
    """Append and read one shard's journal."""

    def __init__(self, pool: AsyncConnectionPool, shard: str, *, page_size: int = 10_000) -> None:
        self.pool = pool
        self.shard = shard
        self.page_size = page_size

    async def append(self, records: Sequence[trading_pb2.JournalRecord]) -> None:
        """Write `records` (in sequence order) in one transaction; raises if any cannot be written."""
        if not records:
            return
        shard = self.shard
        async with self.pool.connection() as connection, connection.transaction():
            cursor = connection.cursor()
            async with cursor.copy(_COPY) as copy:
                copy.set_types(_COPY_TYPES)
                for record in records:
                    kind = record.WhichOneof("record")
                    await copy.write_row((shard, record.sequence, kind, record.SerializeToString()))

    async def load_after(
        self, sequence: int, limit: int, kinds: tuple[str, ...] = ()
    ) -> list[tuple[int, trading_pb2.JournalRecord]]:
        """Up to `limit` (sequence, record) after `sequence`, of `kinds` (empty: every kind)."""
        query = _AFTER.get(kinds)
        if query is None:
            raise ValueError(f"no journal query for kinds {kinds!r}")
        async with self.pool.connection() as connection:
            cursor = await connection.execute(query, (self.shard, sequence, limit))
            rows = await cursor.fetchall()
        parse = trading_pb2.JournalRecord.FromString
        return [(row[0], parse(row[1])) for row in rows]

    async def records(self, after: int = 0) -> AsyncIterator[trading_pb2.JournalRecord]:
        """Every record after `after`, in sequence order, read a page at a time (for replay)."""
        cursor_sequence = after
        while True:
            page = await self.load_after(cursor_sequence, self.page_size)
            for _, record in page:
                yield record
            if len(page) < self.page_size:
                return
            cursor_sequence = page[-1][0]

    async def load_all(self) -> list[trading_pb2.JournalRecord]:
        return [record async for record in self.records()]

    async def last_sequence(self) -> int:
        """The highest journaled sequence of this shard (0 when empty)."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT coalesce(max(sequence), 0) FROM trading.journal WHERE shard = %s", (self.shard,)
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
