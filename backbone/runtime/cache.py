"""Redis access shared by the services (redis-py's asyncio client).

The client's connections come from a blocking pool: when every connection is busy (a burst of
calls, or Redis slow for a moment), a command waits for one to come free, up to the call timeout
(BACKBONE_CALL_TIMEOUT_SECONDS, the deadline a caller gives such a call anyway), instead of
failing at once with "Too many connections". Only a wait that outlasts that deadline fails, as a
redis ConnectionError the callers already answer UNAVAILABLE.
"""

from __future__ import annotations

import redis.asyncio as redis

from backbone.runtime.config import Settings


def redis_pool(settings: Settings) -> redis.BlockingConnectionPool:
    """At most BACKBONE_REDIS_POOL_SIZE connections to BACKBONE_REDIS_URL; waits when all are busy."""
    settings.require("redis_url")
    timeout = float(settings.call_timeout_seconds)
    pool: redis.BlockingConnectionPool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        timeout=timeout,  # the longest a command waits for a free connection
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    return pool


async def open_redis(settings: Settings) -> redis.Redis:
    """A client to BACKBONE_REDIS_URL over a blocking pool (see the module docstring), checked with a PING."""
    client: redis.Redis = redis.Redis.from_pool(redis_pool(settings))
    try:
        await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client
