"""The trading journal in PostgreSQL (table ``trading.journal``), through a psycopg 3 async pool.

One row per journal record of a shard: ``(shard, sequence, kind, payload)``
where payload is a serialized ``trading.v1.JournalRecord``. A batch of
records is appended with one binary COPY in one transaction, so a batch is
either wholly journaled or not at all. The COPY's binary stream is built here in
one buffer and handed to PostgreSQL in one write (psycopg's ``write_row`` would
adapt each row and cost an await per row, which dominated a large batch). Startup reads every row back in
sequence order to replay it; the outboxes read trades (for settlement) or
trades, releases, fences and instrument creations (for risk) after a sequence.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence

from psycopg_pool import AsyncConnectionPool

from backbone.trading.v1 import trading_pb2

SETTLEMENT_KINDS = ("trade",)
# Risk learns instruments from this stream too (it never asks trading for them); a fence
# (an order whose outcome was unknown, refused for good) releases that order's reservation.
RISK_KINDS = ("trade", "order_released", "instrument_created", "order_fenced", "risk_epoch_changed")

_COPY = "COPY trading.journal (shard, sequence, kind, payload) FROM STDIN (FORMAT BINARY)"
# PostgreSQL's binary COPY format: a signature, flags and header-extension length (both 0); per
# row the field count, then each field as its byte length and bytes (text: UTF-8, int8: 8 bytes
# big-endian, bytea: raw); -1 as the field count ends the stream.
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_SEQUENCE_AND_KIND = struct.Struct(">iqi")  # sequence's length (8), sequence, kind's length
_LENGTH = struct.Struct(">i")
_KINDS = {
    field.name: field.name.encode()
    for field in trading_pb2.JournalRecord.DESCRIPTOR.oneofs_by_name["record"].fields
}

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


def copy_data(shard: str, records: Sequence[trading_pb2.JournalRecord]) -> bytes:
    """The whole binary COPY stream of `records`' rows (shard, sequence, kind, payload)."""
    shard_bytes = shard.encode()
    shard_field = struct.pack(">hi", 4, len(shard_bytes)) + shard_bytes
    sequence_and_kind = _SEQUENCE_AND_KIND.pack
    length = _LENGTH.pack
    parts = [_SIGNATURE]
    append = parts.append
    for record in records:
        kind = _KINDS.get(record.WhichOneof("record") or "")
        if kind is None:
            raise ValueError(f"journal record {record.sequence} has no record set")
        payload = record.SerializeToString()
        append(shard_field)
        append(sequence_and_kind(8, record.sequence, len(kind)))
        append(kind)
        append(length(len(payload)))
        append(payload)
    append(_TRAILER)
    return b"".join(parts)


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
        data = copy_data(self.shard, records)
        async with self.pool.connection() as connection, connection.transaction():
            cursor = connection.cursor()
            async with cursor.copy(_COPY) as copy:
                await copy.write(data)

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
