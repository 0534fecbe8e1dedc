"""Snapshots of the engine: the state at a journal sequence, so a start replays only what follows.

A snapshot is the engine object serialized whole (pickle, compressed), with the journal
sequence it reflects and the engine's state digest at that point (``Engine.state_hash``). On
start, trading loads the newest snapshot of its shard written by the same engine code (``FORMAT``:
a digest of the modules that define the engine's state; after an upgrade the journal is replayed
whole, and the next snapshot is in the new format), checks that the loaded engine stands at the
snapshot's sequence with the same digest, and replays the journal after it. A snapshot that
cannot be read back to the same state stops the start with an error naming it: never an empty or
a wrong book (delete the row to start from the journal alone).

Taking one: the engine is serialized on the engine task between two commands (matching waits:
about 9 us per order in memory, measured on this machine; an order pickles as one tuple of its
fields, see OrderState.__reduce__, and loads in about 4 us), and the snapshot is
written once that point is journaled; compression and the write do not hold the engine. A
snapshot is taken every ``TRADING_SNAPSHOT_COMMANDS`` journal records or, when anything was
journaled, every ``TRADING_SNAPSHOT_SECONDS``; the newest ``KEEP`` are kept.

The payload is a pickle, read only from this service's own table: whoever can write that table
can rewrite the journal too, so it adds no way in.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import importlib.metadata
import pickle
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from psycopg_pool import AsyncConnectionPool

from backbone.ids import INT64_MAX
from backbone.runtime.server import StartRefused
from backbone.runtime.tasks import stop_task
from trading.engine import Engine

log = structlog.get_logger("backbone.trading")

# The newest snapshots kept per shard (older ones are deleted when a new one is written).
KEEP = 3


def _format() -> str:
    """The snapshot format: pickle's protocol and a digest of the engine's modules and of the
    version of abloom, whose filters (trading/seen_ids.py) are pickled as its own bytes."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for module in ("engine.py", "book.py", "seen_ids.py"):
        digest.update((here / module).read_bytes())
    digest.update(f"abloom {importlib.metadata.version('abloom')}".encode())
    return f"pickle{pickle.HIGHEST_PROTOCOL}-{digest.hexdigest()[:16]}"


FORMAT = _format()


class SnapshotUnreadable(StartRefused):
    """A snapshot that does not load back to the state it recorded."""

    def __init__(self, shard: str, sequence: int, why: str) -> None:
        super().__init__(
            f"the snapshot of shard {shard!r} at journal sequence {sequence} cannot be used: {why}; trading "
            "stops rather than serve a state it cannot vouch for (delete that row of trading.snapshots "
            "to start from the journal alone, or from an older snapshot)"
        )
        self.shard = shard
        self.sequence = sequence
        self.why = why


@dataclass(frozen=True)
class Snapshot:
    sequence: int
    state_hash: str
    payload: bytes


def freeze(engine: Engine) -> tuple[int, str, bytes]:
    """(sequence, digest, serialized engine): on the engine task, between two commands."""
    return engine.last_sequence, engine.state_hash(), pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)


def thaw(shard: str, snapshot: Snapshot) -> Engine:
    """The engine a snapshot holds, checked against its sequence and digest."""
    collecting = gc.isenabled()
    gc.disable()  # millions of new objects, none garbage: the collector would only walk them
    try:
        engine = pickle.loads(zlib.decompress(snapshot.payload))
    except Exception as error:  # any failure to decode is a snapshot that cannot be used
        raise SnapshotUnreadable(shard, snapshot.sequence, f"it does not decode ({error!r})") from None
    finally:
        gc.freeze()  # what was loaded lives on: later collections need not walk it again
        if collecting:
            gc.enable()
    if not isinstance(engine, Engine):
        raise SnapshotUnreadable(
            shard, snapshot.sequence, f"it holds a {type(engine).__name__}, not an engine"
        )
    if engine.last_sequence != snapshot.sequence:
        raise SnapshotUnreadable(shard, snapshot.sequence, f"it stands at sequence {engine.last_sequence}")
    try:  # the digest proves it is the state that was frozen: no walk of its books is needed
        digest = engine.state_hash()
    except Exception as error:
        raise SnapshotUnreadable(shard, snapshot.sequence, f"its state is inconsistent ({error!r})") from None
    if digest != snapshot.state_hash:
        raise SnapshotUnreadable(shard, snapshot.sequence, "its state's digest differs from the one recorded")
    return engine


class SnapshotStore:
    """A shard's snapshots in PostgreSQL (table ``trading.snapshots``)."""

    def __init__(self, pool: AsyncConnectionPool, shard: str) -> None:
        self._pool = pool
        self.shard = shard

    async def newest(self, at_most: int | None = None) -> Snapshot | None:
        """The newest snapshot in this code's format (older formats are skipped, and said so), at
        journal sequence `at_most` or before when given (trading/app.py: the report history's mark,
        so that every command after the snapshot is replayed and its reports reach the history)."""
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT sequence, state_hash, payload FROM trading.snapshots WHERE shard = %s AND format = %s"
                " AND sequence <= %s ORDER BY sequence DESC LIMIT 1",
                (self.shard, FORMAT, INT64_MAX if at_most is None else at_most),
            )
            row = await cursor.fetchone()
            if row is None:
                cursor = await connection.execute(
                    "SELECT count(*) FROM trading.snapshots WHERE shard = %s AND format <> %s",
                    (self.shard, FORMAT),
                )
                other = await cursor.fetchone()
                if other is not None and other[0]:
                    log.info(
                        "snapshots of another engine version are not loaded", shard=self.shard, count=other[0]
                    )
                return None
        return Snapshot(int(row[0]), str(row[1]), bytes(row[2]))

    async def save(self, sequence: int, state_hash: str, payload: bytes) -> None:
        """Write a snapshot (idempotent) and keep only the newest KEEP of this format."""
        async with self._pool.connection() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO trading.snapshots (shard, sequence, format, state_hash, payload)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (self.shard, sequence, FORMAT, state_hash, payload),
            )
            await connection.execute(
                "DELETE FROM trading.snapshots WHERE shard = %s AND (format <> %s OR sequence NOT IN"
                " (SELECT sequence FROM trading.snapshots WHERE shard = %s AND format = %s"
                "  ORDER BY sequence DESC LIMIT %s))",
                (self.shard, FORMAT, self.shard, FORMAT, KEEP),
            )


class Snapshotter:
    """Takes a snapshot every `every_records` journal records or `every_seconds` (0: never by time)."""

    def __init__(
        self,
        store: SnapshotStore,
        freeze_on_engine: Callable[[], Awaitable[tuple[int, str, bytes]]],
        last_sequence: Callable[[], int],
        *,
        every_records: int,
        every_seconds: float,
        since: int,
    ) -> None:
        self._store = store
        self._freeze = freeze_on_engine
        self._last_sequence = last_sequence
        self._every_records = every_records
        self._every_seconds = every_seconds
        self.taken_at = since  # the sequence of the newest snapshot
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and (self._every_records or self._every_seconds):
            self._task = asyncio.create_task(self._run(), name="trading-snapshots")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    def due(self, now: float, last_taken: float) -> bool:
        behind = self._last_sequence() - self.taken_at
        if behind <= 0:
            return False
        if self._every_records and behind >= self._every_records:
            return True
        return bool(self._every_seconds) and now - last_taken >= self._every_seconds

    async def _run(self) -> None:
        last_taken = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            if not self.due(time.monotonic(), last_taken):
                continue
            try:
                await self.take()
            except Exception as error:  # the journal is the truth: a failed snapshot is only slower starts
                log.error("snapshot failed; trying again later", shard=self._store.shard, error=repr(error))
            last_taken = time.monotonic()

    async def take(self) -> int:
        """Take a snapshot now; its sequence."""
        started = time.perf_counter()
        sequence, digest, raw = await self._freeze()
        frozen = time.perf_counter()
        payload = await asyncio.to_thread(zlib.compress, raw, 1)
        await self._store.save(sequence, digest, payload)
        self.taken_at = max(self.taken_at, sequence)
        log.info(
            "snapshot taken",
            shard=self._store.shard,
            sequence=sequence,
            bytes=len(payload),
            engine_held_s=round(frozen - started, 3),
            seconds=round(time.perf_counter() - started, 3),
        )
        return sequence
