"""PostgreSQL access shared by the services: one pool per process, migrations per service.

Each service keeps its schema in ``<service>/migrations/NNN_name.sql``.
``migrate()`` applies the files not yet applied, in order, each in its own
transaction, under an advisory lock so concurrent starters do not race.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from backbone.runtime.config import Settings

log = structlog.get_logger("backbone.database")

_MIGRATION_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


async def open_pool(settings: Settings, name: str) -> AsyncConnectionPool:
    """An open pool to BACKBONE_DATABASE_URL, checked with one round trip.

    It keeps two connections open and grows to BACKBONE_DATABASE_POOL_SIZE under load. When
    every connection is busy, a caller queues for the next free one (no limit on the queue) for
    up to BACKBONE_CALL_TIMEOUT_SECONDS, the deadline its own caller gives it anyway; only a
    longer wait fails (psycopg_pool.PoolTimeout).
    """
    settings.require("database_url")
    pool = AsyncConnectionPool(
        settings.database_url,
        min_size=min(2, settings.database_pool_size),
        max_size=settings.database_pool_size,
        kwargs={"autocommit": False, "application_name": f"backbone-{name}"},
        name=f"backbone-{name}",
        open=False,
        timeout=float(settings.call_timeout_seconds),  # the longest a caller waits for a connection
        max_waiting=0,  # callers queue without limit; each waits at most `timeout`
    )
    await pool.open(wait=True, timeout=30.0)
    return pool


def _migration_files(package: str) -> list[tuple[int, str, str]]:
    folder = resources.files(package) / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"{package}: two migrations share a version number")
    return found


async def migrate(pool: AsyncConnectionPool, service: str, package: str | None = None) -> int:
    """Apply `service`'s pending migrations; return how many were applied."""
    files = _migration_files(package or service)
    lock_key = int.from_bytes(hashlib.sha256(b"backbone-migrations").digest()[:8], "big", signed=True)
    applied = 0
    async with pool.connection() as connection:
        await connection.set_autocommit(True)
        try:
            await connection.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
            await connection.execute(
                """CREATE TABLE IF NOT EXISTS backbone_migrations (
                       service text NOT NULL,
                       version integer NOT NULL,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now(),
                       PRIMARY KEY (service, version))"""
            )
            cursor = await connection.execute(
                "SELECT version FROM backbone_migrations WHERE service = %s", (service,)
            )
            done = {row[0] for row in await cursor.fetchall()}
            for version, name, sql in files:
                if version in done:
                    continue
                async with connection.transaction():
                    await connection.execute(sql.encode())
                    await connection.execute(
                        "INSERT INTO backbone_migrations (service, version, name) VALUES (%s, %s, %s)",
                        (service, version, name),
                    )
                applied += 1
                log.info("migration applied", service=service, migration=name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
            await connection.set_autocommit(False)
    return applied


__all__ = ["migrate", "open_pool", "psycopg"]
