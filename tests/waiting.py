"""Bounded waits for a condition and a health entry, shared by the async tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backbone.runtime.server import HEALTH_DETAIL_KEY


async def eventually(
    condition: Callable[[], Any], what: str, timeout_seconds: float = 20.0, poll_seconds: float = 0.02
) -> Any:
    """The first truthy value of `condition` (a function or a coroutine function), polled; fails after
    `timeout_seconds` naming `what`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout_seconds:g}s")
        await asyncio.sleep(poll_seconds)


async def health_of(channel: grpc.aio.Channel, service: str) -> tuple[int, str]:
    """A health entry's status and its ``backbone-health-detail`` trailer."""
    stub: Any = health_pb2_grpc.HealthStub(channel)  # the type stubs do not declare its methods
    call = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    answer = await call
    trailers = dict(await call.trailing_metadata() or ())
    return answer.status, str(trailers.get(HEALTH_DETAIL_KEY, ""))
