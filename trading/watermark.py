"""The high-water mark of a projection of the journal written in the background (the fills
projection, trading/fills.py; the report history, trading/history.py), and the bounded wait for it."""

from __future__ import annotations

import asyncio
import contextlib


class Watermark:
    """How far a projection is written (``projected_sequence``: every journal sequence at or below
    it is in), how far the journal it follows is committed (``committed_sequence``), and a wait."""

    def __init__(self) -> None:
        self.committed_sequence = 0
        self.projected_sequence = 0
        # Set to make the writer look now; set (then replaced) each time the mark moves.
        self._wake = asyncio.Event()
        self._advanced = asyncio.Event()

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
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), remaining)
        return True

    def _advance(self, mark: int) -> None:
        if mark > self.projected_sequence:
            self.projected_sequence = mark
            self._advanced.set()
            self._advanced = asyncio.Event()
