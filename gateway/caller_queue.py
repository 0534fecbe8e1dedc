"""The queue between a feed the gateway reads and one caller's streaming call.

The feed's task puts items in (never waiting: a feed must not be slowed by a
caller; each kind of subscription bounds its queue its own way), the
caller's task takes them out. The caller going away ends the queue quietly
(``end``); the feed ending it for a reason (``fail``) lets the caller read what
was queued first, then raises the reason.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from backbone.runtime.errors import ServiceError

Item = TypeVar("Item")


class CallerQueue(Generic[Item]):
    """One caller's items, in order; `close` (unsubscribing it from its feed) is the subclass's."""

    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._error: ServiceError | None = None
        self._ended = False

    def _push(self, item: Item) -> None:
        self._items.append(item)
        self._wake.set()

    def fail(self, error: ServiceError) -> None:
        """End the caller's stream with `error` once it has read what is queued."""
        if self._error is None:
            self._error = error
            self._wake.set()

    def end(self) -> None:
        """The caller went away: stop quietly (get() and get_all() answer None from now on)."""
        self._ended = True
        self._wake.set()
        self.close()

    async def get(self) -> Item | None:
        """The next item; None once ended; raises the error that ended the queue."""
        while True:
            if self._ended:
                return None
            if self._items:
                return self._items.popleft()
            if self._error is not None:
                raise self._error
            self._wake.clear()
            await self._wake.wait()

    async def get_all(self) -> list[Item] | None:
        """Every item queued now, waiting for at least one (one wake-up for a burst, not one
        each); None once ended; raises the error that ended the queue."""
        while True:
            if self._ended:
                return None
            if self._items:
                items = list(self._items)
                self._items.clear()
                return items
            if self._error is not None:
                raise self._error
            self._wake.clear()
            await self._wake.wait()

    @property
    def failed(self) -> bool:
        """Whether the feed ended the queue for a reason (what was queued is still readable)."""
        return self._error is not None

    @property
    def queued(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Unsubscribe from the feed."""
        raise NotImplementedError


async def wait_set(event: asyncio.Event, timeout_seconds: float) -> bool:
    """Wait (bounded) until `event` is set; whether it is (a feed's "connected", say)."""
    if event.is_set():
        return True
    try:
        await asyncio.wait_for(event.wait(), timeout_seconds)
    except TimeoutError:
        return False
    return True
