"""The end-of-day schedule (trading/day_end.py) driven by a fake clock: when it expires DAY orders,
once per day, and the catch-up at start when trading was down at the day end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from backbone.runtime.config import ConfigError, Settings
from trading.day_end import NANOS_PER_DAY, NANOS_PER_SECOND, DayEnd, DayEndSchedule


def at(text: str) -> int:
    """Nanoseconds since the epoch of a UTC "YYYY-MM-DD HH:MM:SS"."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * NANOS_PER_SECOND


class FakeClock:
    """A clock that only moves when the schedule sleeps."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns
        self.slept: list[float] = []

    def __call__(self) -> int:
        return self.now_ns

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_ns += int(seconds * NANOS_PER_SECOND)


class Expiries:
    """The schedule's expire(): records the clock at each call; may fail the first `failures`."""

    def __init__(self, clock: FakeClock, failures: int = 0) -> None:
        self.clock = clock
        self.failures = failures
        self.times: list[int] = []

    async def __call__(self) -> int:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the engine is stopping")
        self.times.append(self.clock())
        return 3


def test_the_setting_is_hh_mm_utc_or_empty() -> None:
    assert DayEnd.parse("") is None
    assert DayEnd.parse("00:00") == DayEnd(0)
    assert DayEnd.parse("21:30") == DayEnd((21 * 60 + 30) * 60)
    assert DayEnd.parse("23:59") == DayEnd((23 * 60 + 59) * 60)
    assert DayEnd.parse("23:59:59") == DayEnd(24 * 3600 - 1)
    assert DayEnd.parse("07:30:05") == DayEnd((7 * 60 + 30) * 60 + 5)
    for bad in (
        "24:00",
        "7:30",
        "07:60",
        "07:30:60",
        "07:30:5",
        "07:30:00:00",
        " 07:30",
        "07:30\n",
        "0730",
        "ab:cd",
        "\u0660\u0667:30",
    ):
        with pytest.raises(ValueError, match="HH:MM"):
            DayEnd.parse(bad)
        if bad.strip() != "07:30":  # the environment's surrounding whitespace is stripped
            with pytest.raises(ConfigError, match="BACKBONE_TRADING_DAY_END"):
                Settings.from_env({"BACKBONE_TRADING_DAY_END": bad})
    assert Settings.from_env({"BACKBONE_TRADING_DAY_END": "21:30"}).trading_day_end == "21:30"
    assert Settings.from_env({}).trading_day_end == ""


def test_the_last_and_next_day_end_around_a_moment() -> None:
    day_end = DayEnd.parse("21:30")
    assert day_end is not None
    assert day_end.last_at_or_before(at("2026-11-30 22:00:00")) == at("2026-11-30 21:30:00")
    assert day_end.last_at_or_before(at("2026-11-30 21:30:00")) == at("2026-11-30 21:30:00")
    assert day_end.last_at_or_before(at("2026-11-30 08:00:00")) == at("2026-11-29 21:30:00")
    assert day_end.next_after(at("2026-11-30 21:30:00")) == at("2026-12-01 21:30:00")
    assert day_end.next_after(at("2026-11-30 21:29:59")) == at("2026-11-30 21:30:00")
    midnight = DayEnd.parse("00:00")
    assert midnight is not None
    assert midnight.next_after(at("2026-12-31 23:59:59")) == at("2027-01-01 00:00:00")


def test_it_expires_at_each_day_end_once_per_day() -> None:
    clock = FakeClock(at("2026-11-30 12:00:00"))
    expiries = Expiries(clock)
    day_end = DayEnd.parse("21:30")
    assert day_end is not None

    async def no_open_orders() -> int | None:
        return None

    schedule = DayEndSchedule(day_end, expiries, no_open_orders, clock_ns=clock, sleep=clock.sleep)

    async def three_days() -> None:
        assert not await schedule.catch_up()  # nothing open: nothing was missed
        for _ in range(3):
            assert await schedule.run_once() == 3

    asyncio.run(three_days())
    assert expiries.times == [at("2026-11-30 21:30:00"), at("2026-12-01 21:30:00"), at("2026-12-02 21:30:00")]
    assert clock.slept[0] == 9.5 * 3600 and clock.slept[1:] == [24 * 3600.0, 24 * 3600.0]


def test_a_clock_that_wakes_early_sleeps_again_and_a_failed_expiry_is_retried() -> None:
    clock = FakeClock(at("2026-11-30 21:00:00"))
    expiries = Expiries(clock, failures=2)
    day_end = DayEnd.parse("21:30")
    assert day_end is not None

    async def early_sleep(seconds: float) -> None:  # the first sleep wakes after half the time asked
        await clock.sleep(seconds / 2 if not clock.slept else seconds)

    async def none_open() -> int | None:
        return None

    schedule = DayEndSchedule(day_end, expiries, none_open, clock_ns=clock, sleep=early_sleep)
    asyncio.run(schedule.run_once())
    (expired_at,) = expiries.times
    assert at("2026-11-30 21:30:00") <= expired_at < at("2026-11-30 21:30:03")
    assert clock.slept[:2] == [900.0, 900.0]  # woke at 21:15, slept the rest
    assert expiries.failures == 0


def test_at_start_a_missed_day_end_with_day_orders_open_expires_them_at_once() -> None:
    day_end = DayEnd.parse("21:30")
    assert day_end is not None
    # Trading was down from 20:00 to 23:00; a DAY order accepted at 19:00 is still open.
    now = at("2026-11-30 23:00:00")
    assert day_end.missed(now, at("2026-11-30 19:00:00"))
    # Accepted after the last day end (trading was up then), or none open: nothing was missed.
    assert not day_end.missed(now, at("2026-11-30 21:45:00"))
    assert not day_end.missed(now, None)
    # The next morning the 21:30 end still counts; a day later a two-day-old order too.
    assert day_end.missed(at("2026-12-01 08:00:00"), at("2026-11-30 19:00:00"))
    assert day_end.missed(now + 2 * NANOS_PER_DAY, at("2026-11-30 19:00:00"))

    clock = FakeClock(now)
    expiries = Expiries(clock)

    async def oldest() -> int | None:
        return at("2026-11-30 19:00:00")

    schedule = DayEndSchedule(day_end, expiries, oldest, clock_ns=clock, sleep=clock.sleep)
    assert asyncio.run(schedule.catch_up())
    assert expiries.times == [now] and clock.slept == []
