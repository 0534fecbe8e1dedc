"""The high-water mark of a projection of the journal written in the background (the fills
projection, trading/fills.py; the report history, trading/history.py), the bounded wait for it,
the linger that groups its passes under a light flow, and the health entry that says when its
passes fail."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from backbone.runtime.server import HealthEntries

log = structlog.get_logger("backbone.trading")

# A pass is a transaction of several statements whatever it carries, on trading's event loop and on
# PostgreSQL: under a light flow, where each batch of the engine holds an order or two, a pass per
# batch cost more CPU than the orders themselves (at 200 orders/s, trading 2.2-2.4 ms of CPU per
# order, its history and fills passes 38% of it). So while fewer than LINGER_ITEMS wait (reports
# for the history, journal records for the fills), a pass waits up to LINGER_SECONDS for more. The
# hand-in cuts the wait short once LINGER_ITEMS wait (so under load, passes stay as small and as
# frequent as before: a larger pass blocks the loop longer and makes a longer commit), and so does
# a reader waiting for the mark (ListFills, a history read): nobody who asks waits for it.
LINGER_SECONDS = 0.05
LINGER_ITEMS = 64


class Watermark:
    """How far a projection is written (``projected_sequence``: every journal sequence at or below
    it is in), how far the journal it follows is committed (``committed_sequence``), and a wait."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.committed_sequence = 0
        self.projected_sequence = 0
        # Set to make the writer look now; set (then replaced) each time the mark moves.
        self._wake = asyncio.Event()
        self._advanced = asyncio.Event()
        # Set to end a pass's linger: enough items wait, or a reader waits for the mark.
        self._hurry = asyncio.Event()
        # Why the last pass failed ("" after a pass that worked), and the health entry that says so.
        self.failure = ""
        self._health: tuple[HealthEntries, str] | None = None

    async def publish_health(self, health: HealthEntries, entry: str) -> None:
        """Keep health entry `entry` SERVING, NOT_SERVING while passes fail (its detail says why
        and how far the projection is)."""
        self._health = (health, entry)
        await health.set(entry, True, self.describe)

    def describe(self) -> str:
        """How far the projection is, and why its last pass failed if it did."""
        where = f"projected through {self.projected_sequence} of {self.committed_sequence} committed"
        return f"{where}; failing: {self.failure}" if self.failure else where

    async def _failed(self, failure: str) -> None:
        """A pass failed: say so (NOT_SERVING on the first failure in a row)."""
        first = not self.failure
        self.failure = failure
        if first and self._health is not None:
            health, entry = self._health
            await health.set(entry, False, self.describe)

    async def _worked(self) -> None:
        """A pass worked: SERVING again if passes had failed."""
        if self.failure:
            self.failure = ""
            log.info(f"{self.name}: passes work again", projected_sequence=self.projected_sequence)
            if self._health is not None:
                health, entry = self._health
                await health.set(entry, True, self.describe)

    async def wait_projected(self, sequence: int, timeout_seconds: float) -> bool:
        """Wait until the projection is complete through `sequence` (at most the committed journal's
        last sequence: nothing later can be waited for), within `timeout_seconds`."""
        wanted = min(sequence, self.committed_sequence)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        while self.projected_sequence < wanted:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._hurry.set()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), remaining)
        return True

    def _handed_in(self, waiting: int) -> None:
        """A batch was handed in and `waiting` items now wait: wake the task, and end its linger
        once LINGER_ITEMS wait."""
        self._wake.set()
        if waiting >= LINGER_ITEMS:
            self._hurry.set()

    async def _linger(self, waiting: int) -> None:
        """Before a pass with `waiting` items: while some but fewer than LINGER_ITEMS wait, wait up
        to LINGER_SECONDS for the hand-in or a reader to hurry it."""
        if 0 < waiting < LINGER_ITEMS and not self._hurry.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), LINGER_SECONDS)
        self._hurry.clear()

    def _advance(self, mark: int) -> None:
        if mark > self.projected_sequence:
            self.projected_sequence = mark
            self._advanced.set()
            self._advanced = asyncio.Event()
