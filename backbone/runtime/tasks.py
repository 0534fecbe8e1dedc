"""Stopping a background task for sure.

A task is cancelled until it is done: Python 3.11's ``asyncio.wait_for`` can swallow a
cancellation that arrives just as the wait it guards ends, and a loop around such a wait then
goes on and waits again; a single ``cancel()`` followed by ``await task`` then waits forever
(seen in CI: trading's stop hung on its fills projection's idle wait).
"""

from __future__ import annotations

import asyncio
from typing import Any

# How long a stopped task gets to finish between two cancellations.
RECANCEL_SECONDS = 1.0


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` until it is done and wait for it; what it raised (other than its
    cancellation) is its own business: the caller is stopping it."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
    if not task.cancelled():
        task.exception()  # retrieved: a task that failed on its own was logged where it failed
