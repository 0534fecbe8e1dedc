"""Fixtures of the integration tests that talk to risk's store directly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from risk.store import RiskStore


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A client of the session's real Redis (decoded strings)."""
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    await connection.aclose()


@pytest.fixture
async def store(client: redis.Redis) -> RiskStore:
    """Risk's store over that Redis, its scripts loaded."""
    risk_store = RiskStore(client)
    await risk_store.load_scripts()
    return risk_store
