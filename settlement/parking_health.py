"""The settlement service's health entry for parked trades.

``<SettlementService>/parked-trades`` is SERVING while no trade is parked and no account halted,
and NOT_SERVING otherwise, with a detail (the ``backbone-health-detail`` trailer) naming how
many trades are parked, the oldest and its reason, and the halted accounts. The service itself
keeps serving: the other accounts' trades post as usual. The entry is re-read from the ledger when
this process parks a trade or a retry posts some, and every few seconds besides (another replica,
or an operator, may have changed it).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from backbone.runtime.server import HealthEntries
from backbone.runtime.tasks import stop_task
from settlement.store import LedgerStore, ParkingSummary

log = structlog.get_logger("backbone.settlement")

REFRESH_SECONDS = 5.0


class ParkedTradesHealth:
    """Keeps one health entry in step with the ledger's parked trades and halted accounts."""

    def __init__(
        self, store: LedgerStore, entries: HealthEntries, name: str, refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self.store = store
        self.entries = entries
        self.name = name
        self.refresh_seconds = refresh_seconds
        self.summary = ParkingSummary()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="parked-trades-health")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def refresh(self) -> None:
        """Read the summary and publish it."""
        summary = await self.store.parking_summary()
        if summary != self.summary and (summary.parked or self.summary.parked):
            log.warning("parked trades", detail=summary.describe())
        self.summary = summary
        serving = not summary.parked and not summary.halted_count
        await self.entries.set(self.name, serving, lambda: self.summary.describe())

    async def _run(self) -> None:
        changed = self.store.parking_changed
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.refresh_seconds)
            changed.clear()
            try:
                await self.refresh()
            except Exception as error:  # the ledger unreachable for a moment: keep the last state
                log.warning("parked trades health not refreshed", error=repr(error))
