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

The service appends on its shard lease's own connection (trading/lease.py says why that fences
the writes of a process that lost its lease); a Journal without a lease (tests and tools that
write a journal of their own) borrows a pooled connection for each append.

Every row read back is checked before it is used: its payload parses, it is the record its row
says (sequence and kind), and replay sees the sequences 1, 2, 3... with none missing. A row that
fails raises JournalUnreadable naming the shard and the sequence: trading stops rather than
serve a book rebuilt from part of its journal.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence

from google.protobuf.message import DecodeError
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from backbone.runtime.server import StartRefused
from backbone.trading.v1 import trading_pb2
from trading.lease import ShardLease

SETTLEMENT_KINDS = ("trade",)
# Risk learns instruments from this stream too (it never asks trading for them); a fence
# (an order whose outcome was unknown, refused for good) releases that order's reservation; a
# replace re-sizes it (risk/exposure.py replaced_leg), and a replace fence gives back its grow.
RISK_KINDS = (
    "trade",
    "order_released",
    "instrument_created",
    "order_fenced",
    "risk_epoch_changed",
    "order_replaced",
    "replace_fenced",
)

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


_PAGE = "SELECT sequence, kind, payload FROM trading.journal WHERE shard = %s AND sequence > %s"
# Settlement's predicate is spelled as its partial index's (journal_trades in 001_journal.sql) so
# the planner can use it even for a prepared, generic plan; risk's kinds are read along the
# primary key (006_cheaper_rows.sql says why).
_AFTER = {
    SETTLEMENT_KINDS: _PAGE + " AND kind = 'trade' ORDER BY sequence LIMIT %s",
    RISK_KINDS: _PAGE
    + " AND kind IN ('trade', 'order_released', 'instrument_created', 'order_fenced', 'risk_epoch_changed',"
    + " 'order_replaced', 'replace_fenced')"
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


class JournalUnreadable(StartRefused):
    """A shard's journal cannot be read back as written: the state it records cannot be rebuilt."""

    def __init__(self, shard: str, sequence: int, why: str) -> None:
        super().__init__(
            f"the journal of shard {shard!r} cannot be replayed at sequence {sequence}: {why}; trading "
            "stops rather than serve a book rebuilt from part of it (repair or restore the rows of "
            f"trading.journal with shard = {shard!r}, then start it again)"
        )
        self.shard = shard
        self.sequence = sequence
        self.why = why


def record_of(shard: str, sequence: int, kind: str, payload: bytes) -> trading_pb2.JournalRecord:
    """The record a journal row holds; JournalUnreadable when its payload does not parse or is not
    the record its row says (another sequence, another kind)."""
    try:
        record = trading_pb2.JournalRecord.FromString(payload)
    except DecodeError as error:
        raise JournalUnreadable(shard, sequence, f"its payload does not parse ({error})") from None
    found = record.WhichOneof("record")
    if record.sequence != sequence or found != kind:
        raise JournalUnreadable(
            shard,
            sequence,
            f"its payload is record {record.sequence} of kind {found!r}, "
            f"its row says {sequence} of kind {kind!r}",
        )
    return record


class Journal:
    """Append and read one shard's journal."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        shard: str,
        *,
        page_size: int = 10_000,
        lease: ShardLease | None = None,
    ) -> None:
        if lease is not None and lease.shard != shard:
            raise ValueError(f"the lease of shard {lease.shard!r} cannot write the journal of {shard!r}")
        self.pool = pool
        self.shard = shard
        self.page_size = page_size
        self.lease = lease

    async def append(self, records: Sequence[trading_pb2.JournalRecord]) -> None:
        """Write `records` (in sequence order) in one transaction; raises if any cannot be written
        (a lost lease included: its session, which the COPY runs in, is gone)."""
        if not records:
            return
        data = copy_data(self.shard, records)
        if self.lease is not None:
            # Autocommit, as the lease's connection always is: the COPY alone is the transaction.
            async with self.lease.connection.cursor().copy(_COPY) as copy:
                await copy.write(data)
            return
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
        shard = self.shard
        return [(row[0], record_of(shard, row[0], row[1], row[2])) for row in rows]

    async def records(self, after: int = 0) -> AsyncIterator[trading_pb2.JournalRecord]:
        """Every record after `after`, in sequence order, read a page at a time (for replay);
        JournalUnreadable at a row that cannot be read or a sequence that is missing."""
        expected = after + 1
        while True:
            page = await self.load_after(expected - 1, self.page_size)
            for sequence, record in page:
                if sequence != expected:
                    raise JournalUnreadable(
                        self.shard, expected, f"that sequence is missing (the next row is {sequence})"
                    )
                expected += 1
                yield record
            if len(page) < self.page_size:
                return

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
