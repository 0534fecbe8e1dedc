"""One trading process per shard: the shard's lease, a PostgreSQL advisory lock held for the process's life.

Two processes appending to one shard's journal would interleave two histories (or the second
would die on a duplicate sequence), so a trading process takes its shard's lease before it
replays the journal, and keeps it until it stops: a session-level advisory lock, keyed on the
shard's name, held by a connection of its own (not the pool's). A second process for the same
shard waits for it up to BACKBONE_TRADING_LEASE_WAIT_SECONDS, logging which process holds it
(PostgreSQL's pg_locks and pg_stat_activity: the holder's backend pid, address and application
name, which carries its host and process id), then gives up with StartRefused naming the shard.
A process that dies, even by SIGKILL, drops its connection, and PostgreSQL frees the lock with it.

The lease fences the journal's writes: the service appends every batch on the lease's own
connection (Journal(lease=...)). A session-level advisory lock lasts exactly as long as its
session, so an append that commits was made by the session holding the lease; once the lease is
lost (the backend terminated, PostgreSQL restarted, the network gone) that session is gone too,
and no further append of this process can commit. That costs nothing per batch, measured by
scripts/bench_journal_append.py (4,000 batches, each way's median of 10 interleaved rounds, on a
loaded 2-core machine): an append on the lease's session took 0.85-1.4x the time of the same COPY
on a pooled connection, around 1x (1-record batches without fsync: 259 vs 307 us; with fsync: 515
vs 549 us), while checking the lease inside each append's transaction instead (BEGIN, a pg_locks
lookup, COPY, COMMIT) took 1.6-2.7x (688 and 1,018 us for those 1-record batches: the extra round
trips), and would be no safer: the lease can still be lost between the check and the commit. A
watch also probes the connection every LEASE_PROBE_SECONDS so an idle process notices the loss
too: it then stops (trading/app.py: the engine stops, the process exits and its supervisor starts
it again, taking the lease anew and replaying what the journal holds), rather than go on answering
reads from a book another process may since have moved on.

The lease needs a real session: through a pooler in transaction mode (PgBouncer's default) an
advisory lock does not stay with the process; point BACKBONE_DATABASE_URL at PostgreSQL, or at
a pooler in session mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from backbone.runtime.server import StartRefused

log = structlog.get_logger("backbone.trading")

# How often an idle process checks that its lease connection is still there.
LEASE_PROBE_SECONDS = 1.0
# While waiting for the lease, a line naming its holder this often.
WAIT_REPORT_SECONDS = 5.0
# TCP keepalive of the lease connection (libpq's keepalives_idle, _interval, _count): a peer gone
# silent (a host or network lost) breaks it in about 10 + 3 * 5 = 25 s.
_KEEPALIVE_IDLE_SECONDS, _KEEPALIVE_INTERVAL_SECONDS, _KEEPALIVE_COUNT = 10, 5, 3
_CONNECT_TIMEOUT_SECONDS = 10
# PostgreSQL keeps at most 63 bytes of an application name.
_APPLICATION_NAME_BYTES = 63

_HOLDER = """
SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = %s::oid AND l.objid = %s::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def lease_key(shard: str) -> int:
    """The advisory lock key of `shard`: 64 bits of a hash of its name (signed, as PostgreSQL's bigint)."""
    digest = hashlib.sha256(b"backbone-trading-shard:" + shard.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lease_application_name(pid: int | None = None, host: str | None = None) -> str:
    """The application name of a lease connection: which process, on which host, holds it."""
    name = f"backbone-trading-lease pid={pid or os.getpid()} host={host or socket.gethostname()}"
    return name.encode()[:_APPLICATION_NAME_BYTES].decode(errors="ignore")


@dataclass(frozen=True)
class LeaseHolder:
    """The PostgreSQL session holding a shard's lease, as pg_stat_activity shows it."""

    backend_pid: int
    application_name: str
    client_address: str | None
    backend_start: datetime | None

    def describe(self) -> str:
        where = f" from {self.client_address}" if self.client_address else ""
        since = f" since {self.backend_start.isoformat(timespec='seconds')}" if self.backend_start else ""
        who = self.application_name or "an unnamed session"
        return f"{who} (PostgreSQL backend {self.backend_pid}{where}{since})"


class LeaseUnavailable(StartRefused):
    """Another process held the shard's lease for all the time this one would wait."""


async def lease_holder(connection: AsyncConnection[TupleRow], shard: str) -> LeaseHolder | None:
    """Who holds `shard`'s lease in this database, or None when nobody does."""
    unsigned = lease_key(shard) & 0xFFFF_FFFF_FFFF_FFFF
    cursor = await connection.execute(_HOLDER, (unsigned >> 32, unsigned & 0xFFFF_FFFF))
    row = await cursor.fetchone()
    if row is None:
        return None
    return LeaseHolder(int(row[0]), str(row[1] or ""), row[2], row[3])


class ShardLease:
    """A shard's lease, held by its own connection until close(); appends go through `connection`."""

    def __init__(self, connection: AsyncConnection[TupleRow], shard: str) -> None:
        self.connection = connection
        self.shard = shard
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    async def acquire(
        cls,
        database_url: str,
        shard: str,
        *,
        wait_seconds: float,
        on_waiting: Callable[[str], Awaitable[None]] | None = None,
    ) -> ShardLease:
        """Take `shard`'s lease, waiting up to `wait_seconds` for its holder to let go.

        While waiting, a warning names the holder every WAIT_REPORT_SECONDS and `on_waiting` is
        called with the same sentence (for the health detail). Raises LeaseUnavailable when the
        wait is over, psycopg.Error when PostgreSQL cannot be reached.
        """
        connection = await AsyncConnection.connect(
            database_url,
            autocommit=True,
            application_name=lease_application_name(),
            connect_timeout=_CONNECT_TIMEOUT_SECONDS,
            keepalives=1,
            keepalives_idle=_KEEPALIVE_IDLE_SECONDS,
            keepalives_interval=_KEEPALIVE_INTERVAL_SECONDS,
            keepalives_count=_KEEPALIVE_COUNT,
        )
        try:
            await _take(connection, shard, wait_seconds, on_waiting)
        except BaseException:
            await connection.close()
            raise
        log.info(
            "shard lease taken",
            shard=shard,
            lease_backend_pid=connection.info.backend_pid,
            application_name=lease_application_name(),
        )
        return cls(connection, shard)

    def watch(self, on_lost: Callable[[str], None], probe_seconds: float = LEASE_PROBE_SECONDS) -> None:
        """Probe the lease connection every `probe_seconds`; call `on_lost(why)` once it is gone.

        The session alive means the lock held: nothing else releases a session-level lock of this
        session. A probe that finds the connection broken is the lease lost.
        """
        if self._watch is None:
            self._watch = asyncio.create_task(self._probe(on_lost, probe_seconds), name="trading-lease")

    async def _probe(self, on_lost: Callable[[str], None], probe_seconds: float) -> None:
        while True:
            await asyncio.sleep(probe_seconds)
            try:
                await self.connection.execute("SELECT 1")
            except psycopg.Error as error:
                why = f"the lease of shard {self.shard!r} is lost: its PostgreSQL session ended ({error})"
                log.critical("shard lease lost", shard=self.shard, error=str(error))
                on_lost(why)
                return

    async def close(self) -> None:
        """Stop watching and let go of the lease (closing its session releases the lock)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        await self.connection.close()


async def _take(
    connection: AsyncConnection[TupleRow],
    shard: str,
    wait_seconds: float,
    on_waiting: Callable[[str], Awaitable[None]] | None,
) -> None:
    """Lock `shard`'s key on `connection`, waiting in WAIT_REPORT_SECONDS steps (lock_timeout) so
    each step can say who holds it; the lock is taken the moment its holder lets go."""
    key = lease_key(shard)
    started = time.monotonic()
    while True:
        cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        row = await cursor.fetchone()
        if row is not None and row[0]:
            return
        waited = time.monotonic() - started
        holder = await lease_holder(connection, shard)
        held_by = holder.describe() if holder is not None else "a session that has just let go"
        if waited >= wait_seconds:
            raise LeaseUnavailable(
                f"shard {shard!r} is owned by another trading process: {held_by} held its lease for "
                f"the {wait_seconds:g} s this one waited (BACKBONE_TRADING_LEASE_WAIT_SECONDS); "
                "stop that process first, or give this one another BACKBONE_TRADING_SHARD"
            )
        sentence = f"waiting for the lease of shard {shard!r}, held by {held_by}"
        log.warning(
            "another trading process holds this shard; waiting for it to stop",
            shard=shard,
            holder=held_by,
            waited_s=round(waited, 1),
            wait_max_s=wait_seconds,
        )
        if on_waiting is not None:
            await on_waiting(sentence)
        step_ms = max(1, int(min(WAIT_REPORT_SECONDS, wait_seconds - waited) * 1000))
        await connection.execute("SELECT set_config('lock_timeout', %s, false)", (f"{step_ms}ms",))
        try:
            await connection.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            continue
        else:
            return
        finally:
            await connection.execute("SELECT set_config('lock_timeout', '0', false)")
