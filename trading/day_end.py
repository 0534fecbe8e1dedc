"""The end of the trading day: when DAY orders expire (BACKBONE_TRADING_DAY_END, UTC "HH:MM[:SS]").

Trading runs :class:`DayEndSchedule` as a task: it sleeps until the next day end and then has
the engine expire every open DAY order (an ExpireOrders command, journaled like any other),
once per day.

Trading down at the day end: at start, before the schedule's first sleep, the task looks at the
open DAY orders the replay rebuilt; if one of them was accepted before the most recent day end,
that day end was missed and the expiry runs at once (``missed``). The test is on the orders, not
on a journaled "last expiry" time: a DAY order accepted before the last day end and still open
is exactly what must not survive it, whatever the journal holds (an expiry that found nothing
open journals nothing). The catch-up expiry expires every open DAY order, those accepted since
the restart included: they can only be there if the start's own catch-up raced them, which is
the moments after a restart; the trade-off keeps one rule (ExpireOrders takes no time bound, so
replay stays the journaled command and nothing else).

Nothing here reads the wall clock or sleeps by itself: both are handed in, so tests drive the
schedule with a fake clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from backbone.runtime.config import day_end_problem

log = structlog.get_logger("backbone.trading")

NANOS_PER_SECOND = 1_000_000_000
NANOS_PER_MINUTE = 60 * NANOS_PER_SECOND
NANOS_PER_DAY = 24 * 60 * NANOS_PER_MINUTE
# How long after a failed expiry (trading stopping, the journal unavailable) the schedule retries.
RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class DayEnd:
    """A time of day, UTC, at which the trading day ends."""

    second_of_day: int

    @classmethod
    def parse(cls, text: str) -> DayEnd | None:
        """The day end of a setting; None when it is empty (off). Raises ValueError when malformed."""
        problem = day_end_problem(text)
        if problem:
            raise ValueError(problem)
        if not text:
            return None
        hours, minutes, *seconds = text.split(":")
        return cls((int(hours) * 60 + int(minutes)) * 60 + sum(int(part) for part in seconds))

    @property
    def offset_ns(self) -> int:
        """Nanoseconds from midnight UTC."""
        return self.second_of_day * NANOS_PER_SECOND

    def last_at_or_before(self, now_ns: int) -> int:
        """The most recent day end at or before `now_ns` (nanoseconds since the Unix epoch)."""
        today = now_ns - now_ns % NANOS_PER_DAY + self.offset_ns
        return today if today <= now_ns else today - NANOS_PER_DAY

    def next_after(self, now_ns: int) -> int:
        """The first day end strictly after `now_ns`."""
        return self.last_at_or_before(now_ns) + NANOS_PER_DAY

    def missed(self, now_ns: int, oldest_open_day_order_ns: int | None) -> bool:
        """Whether a day end passed while a DAY order still open was already there."""
        return oldest_open_day_order_ns is not None and oldest_open_day_order_ns < self.last_at_or_before(
            now_ns
        )


class DayEndSchedule:
    """Expire DAY orders at each day end (and at start when the last one was missed)."""

    def __init__(
        self,
        day_end: DayEnd,
        expire: Callable[[], Awaitable[int]],
        oldest_open_day_order_ns: Callable[[], Awaitable[int | None]],
        *,
        clock_ns: Callable[[], int],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        # `expire` journals one ExpireOrders of every symbol and returns how many orders expired.
        self._day_end = day_end
        self._expire = expire
        self._oldest = oldest_open_day_order_ns
        self._clock_ns = clock_ns
        self._sleep = sleep

    async def catch_up(self) -> bool:
        """At start: expire now when the last day end passed with DAY orders open; whether it did."""
        now = self._clock_ns()
        if not self._day_end.missed(now, await self._oldest()):
            return False
        expired = await self._expire()
        log.info("day end missed while trading was down: DAY orders expired", orders=expired)
        return True

    async def run_once(self) -> int:
        """Sleep until the next day end (waking again if the clock was early), then expire."""
        due = self._day_end.next_after(self._clock_ns())
        while (now := self._clock_ns()) < due:
            await self._sleep((due - now) / NANOS_PER_SECOND)
        while True:
            try:
                expired = await self._expire()
                break
            except Exception as error:  # journaled or not at all: trying again is safe
                log.warning("end-of-day expiry failed; retrying", error=repr(error))
                await self._sleep(RETRY_SECONDS)
        log.info("end of the trading day: DAY orders expired", orders=expired)
        return expired

    async def run(self) -> None:
        """Catch up, then expire at every day end until cancelled."""
        await self.catch_up()
        while True:
            await self.run_once()
