"""The trading journal in PostgreSQL (table ``trading.journal``), through a psycopg 3 async pool.

One row per journal record of a shard: ``(shard, sequence, kind, payload)``
where payload is a serialized ``trading.v1.JournalRecord``. A batch of
records is appended with one binary COPY, alone in its transaction (autocommit), so a batch
is either wholly journaled or not at all. The COPY's binary stream is built here in
one buffer and handed to PostgreSQL in one write (psycopg's ``write_row`` would
adapt each row and cost an await per row, which dominated a large batch). Startup reads every row back in
sequence order to replay it; the outboxes read trades (for settlement) or
trades, releases, fences, instrument creations and risk epochs (for risk) after a sequence,
only to catch up (they send what was just committed from memory). Indexes and checks cost
every append: the table keeps its primary key, a length check on the kind and settlement's
trades-only partial index (migrations/006_cheaper_rows.sql says why not more).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence

from psycopg.pq import TransactionStatus
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


class _RowHead:
    """Packs a row of one shard and one kind up to its payload, from (sequence, payload length):
    the field count (4), the shard, the sequence, the kind and the payload's byte length."""

    __slots__ = ("before", "kind", "pack")

    def __init__(self, shard: bytes, kind: bytes) -> None:
        self.before = struct.pack(">hi", 4, len(shard)) + shard + struct.pack(">i", 8)
        self.kind = struct.pack(">i", len(kind)) + kind
        self.pack = struct.Struct(f">{len(self.before)}sq{len(self.kind)}si").pack


_PAGE = "SELECT sequence, payload FROM trading.journal WHERE shard = %s AND sequence > %s"
# Settlement's predicate is spelled as its partial index's (journal_trades in 001_journal.sql) so
# the planner can use it even for a prepared, generic plan; risk's kinds are read along the
# primary key (006_cheaper_rows.sql says why).
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
    heads: dict[str | None, _RowHead] = {}
    parts = [_SIGNATURE]
    append = parts.append
    for record in records:
        kind = record.WhichOneof("record")
        head = heads.get(kind)
        if head is None:
            if kind is None:
                raise ValueError(f"journal record {record.sequence} has no record set")
            head = heads[kind] = _RowHead(shard_bytes, kind.encode())
        payload = record.SerializeToString()
        append(head.pack(head.before, record.sequence, head.kind, len(payload)))
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
        async with self.pool.connection() as connection:
            # One COPY on its own (autocommit) is one transaction: every row or none, committed
            # when it returns; no BEGIN and COMMIT round trips around it.
            await connection.set_autocommit(True)
            try:
                async with connection.cursor().copy(_COPY) as copy:
                    await copy.write(data)
            finally:
                # The pool's other users expect transactions. A connection left mid-COPY or broken
                # is not idle: the pool discards it when it comes back.
                if connection.info.transaction_status == TransactionStatus.IDLE:
                    await connection.set_autocommit(False)

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
