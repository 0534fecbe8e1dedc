"""Redis access shared by the services (redis-py's asyncio client)."""

from __future__ import annotations

import redis.asyncio as redis

from backbone.runtime.config import Settings


async def open_redis(settings: Settings) -> redis.Redis:
    """A client to BACKBONE_REDIS_URL, checked with a PING."""
    settings.require("redis_url")
    client: redis.Redis = redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=float(settings.call_timeout_seconds),
        socket_connect_timeout=float(settings.call_timeout_seconds),
        health_check_interval=30,
        max_connections=64,
    )
    await client.ping()
    return client
