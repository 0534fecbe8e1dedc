"""stop_task stops a task that swallows a cancellation (as Python 3.11's asyncio.wait_for can)."""

from __future__ import annotations

import asyncio

from backbone.runtime.tasks import stop_task


async def test_a_task_that_swallows_the_first_cancellation_is_stopped_all_the_same() -> None:
    swallowed: list[int] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(1)  # what wait_for does when the cancel meets the wait's end

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task), 10)
    assert task.cancelled() and swallowed == [1]


async def test_a_finished_or_missing_task_is_nothing_to_stop() -> None:
    async def done() -> int:
        return 1

    task = asyncio.create_task(done())
    await task
    await stop_task(task)
    await stop_task(None)
