"""The shared Redis and PostgreSQL pools wait for a free connection when all are busy.

More concurrent commands than the pool has connections are all answered (they queue), and a wait
is bounded by the call timeout (BACKBONE_CALL_TIMEOUT_SECONDS): a connection held longer than that
fails the waiter instead of hanging it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as redis
from psycopg_pool import PoolTimeout
from redis.exceptions import ConnectionError as RedisConnectionError

from backbone.runtime.cache import open_redis
from backbone.runtime.config import Settings
from backbone.runtime.database import open_pool

pytestmark = pytest.mark.integration


def settings(**values: str) -> Settings:
    return Settings.from_env({f"BACKBONE_{name.upper()}": value for name, value in values.items()})


async def test_redis_commands_beyond_the_pool_wait_for_a_connection(redis_url: str) -> None:
    client = await open_redis(settings(redis_url=redis_url, redis_pool_size="4", call_timeout_seconds="5"))
    prefix = f"pool-test:{uuid.uuid4().hex}"
    try:
        # 300 commands on 4 connections: each waits its turn, none is refused.
        results = await asyncio.gather(*(client.set(f"{prefix}:{i}", i, ex=60) for i in range(300)))
        assert results == [True] * 300
        pool = client.connection_pool
        assert isinstance(pool, redis.BlockingConnectionPool)
        assert pool.max_connections == 4
    finally:
        await client.aclose()


async def test_a_redis_wait_is_bounded_by_the_call_timeout(redis_url: str) -> None:
    client = await open_redis(settings(redis_url=redis_url, redis_pool_size="1", call_timeout_seconds="1"))
    try:
        held = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            started = time.monotonic()
            with pytest.raises(RedisConnectionError):
                await client.ping()
            assert 0.8 <= time.monotonic() - started < 3
        finally:
            await client.connection_pool.release(held)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_postgres_queries_beyond_the_pool_wait_and_a_wait_is_bounded(
    new_database: Callable[[], str],
) -> None:
    url = new_database()
    pool = await open_pool(settings(database_url=url, database_pool_size="2", call_timeout_seconds="1"), "t")
    try:

        async def query(i: int) -> int:
            async with pool.connection() as conn:
                cursor = await conn.execute("SELECT %s::int, pg_sleep(0.005)", (i,))
                row = await cursor.fetchone()
                assert row is not None
                return int(row[0])

        assert await asyncio.gather(*(query(i) for i in range(60))) == list(range(60))

        async with pool.connection(), pool.connection():  # both connections busy
            started = time.monotonic()
            with pytest.raises(PoolTimeout):
                async with pool.connection():
                    pass
            assert 0.8 <= time.monotonic() - started < 3
    finally:
        await pool.close()
