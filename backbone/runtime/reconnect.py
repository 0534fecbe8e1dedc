"""Reconnect with backoff, written once for every long-lived stream between services.

A :class:`Reconnector` runs one connection after another: it calls the
caller's ``connect_once(attempt)``, which opens a stream, marks the attempt
``established()`` once the stream works, and returns (or raises) when the
stream ends; then the reconnector logs what broke (``why``) and waits before
the next attempt. The caller does its own clean-up (cancelling the call,
failing pending work) inside ``connect_once``.

The wait follows a :class:`Backoff` policy (defaults: 50 ms initial, factor 2,
2 s maximum, reset after 1 s up):

* Jitter: "full jitter above a floor". After the n-th consecutive failure
  the wait is drawn uniformly between the initial delay and a ceiling of
  ``min(max, initial * factor**n)`` (so 50-100 ms, then 50-200 ms, ... up to
  50 ms-2 s). Replicas that lost the same peer at the same moment spread out
  instead of reconnecting in step; the floor keeps a dead peer from being
  called faster than twenty times a second.
* Reset: the count of consecutive failures goes back to zero only after an
  attempt that was established and stayed up for at least
  ``reset_after_seconds``. An attempt that never got established, broke
  within that time, or was marked ``refused()`` (the peer answered, and will
  answer the same way again) keeps the backoff growing, so a peer that
  accepts the connection and then refuses at once is not hammered.

Clock, sleep and randomness are injected so the loop can be driven
deterministically in tests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

_MAX_EXPONENT = 64  # factor**n beyond this is past any sane maximum (and would overflow a float)


@dataclass(frozen=True)
class Backoff:
    """How long to wait between connection attempts (all in seconds)."""

    initial_seconds: float = 0.05
    factor: float = 2.0
    max_seconds: float = 2.0
    reset_after_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_seconds <= self.max_seconds:
            raise ValueError("backoff needs 0 < initial_seconds <= max_seconds")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")
        if self.reset_after_seconds < 0:
            raise ValueError("reset_after_seconds must not be negative")

    def ceiling(self, failures: int) -> float:
        """The longest wait after `failures` consecutive failures (1 or more)."""
        exponent = min(max(failures, 0), _MAX_EXPONENT)
        return min(self.max_seconds, self.initial_seconds * self.factor**exponent)

    def delay(self, failures: int, unit_random: float) -> float:
        """The wait after `failures` consecutive failures, `unit_random` drawn from [0, 1)."""
        return self.initial_seconds + (self.ceiling(failures) - self.initial_seconds) * unit_random


class Attempt:
    """One connection attempt, as seen by ``connect_once``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.established_at: float | None = None
        self.was_refused = False

    def established(self) -> None:
        """The connection works: from now on, staying up long enough resets the backoff."""
        if self.established_at is None:
            self.established_at = self._clock()

    def refused(self) -> None:
        """The peer refused in a way retrying will not change: never reset the backoff for this attempt."""
        self.was_refused = True

    def stayed_up(self, now: float, reset_after_seconds: float) -> bool:
        if self.was_refused or self.established_at is None:
            return False
        return now - self.established_at >= reset_after_seconds


ConnectOnce = Callable[[Attempt], Awaitable[str | None]]


def describe_break(error: BaseException) -> str:
    """What broke a connection, for the log: ``CODE: details`` of a gRPC error, else its repr."""
    if isinstance(error, grpc.RpcError):
        code = getattr(error, "code", None)
        details = getattr(error, "details", None)
        if callable(code) and callable(details):
            return f"{code().name}: {details()}"
    return repr(error)


class Reconnector:
    """Runs ``connect_once`` again and again, with backoff, until cancelled."""

    def __init__(
        self,
        policy: Backoff | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        random_unit: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy or Backoff()
        self.clock = clock
        self._sleep = sleep
        self._random = random_unit
        self.failures = 0
        self.attempts = 0

    def next_delay(self, attempt: Attempt) -> float:
        """Account for the attempt that just ended; return how long to wait before the next one."""
        if attempt.stayed_up(self.clock(), self.policy.reset_after_seconds):
            self.failures = 0
        self.failures += 1
        return self.policy.delay(self.failures, self._random())

    async def run(
        self,
        connect_once: ConnectOnce,
        logger: Any,
        message: str = "connection broken, reconnecting",
    ) -> NoReturn:
        """Connect, and after every break log ``message`` with ``why`` and ``backoff_s``, wait, retry.

        ``connect_once`` returns why the connection ended (for the log), or None
        when it has reported the end itself; an exception it raises is the break.
        Cancellation is not caught: it ends the loop (``connect_once`` cleans up).
        """
        while True:
            attempt = Attempt(self.clock)
            self.attempts += 1
            why: str | None
            try:
                why = await connect_once(attempt)
            except Exception as error:  # any failure of the connection: reconnect
                why = describe_break(error)
            delay = self.next_delay(attempt)
            if why is not None:
                logger.warning(message, why=why, backoff_s=round(delay, 3))
            await self._sleep(delay)
