"""Where an execution stream resumes after a break: the sync and asyncio streams' shared bookkeeping.

Every report of a journaled event carries the account's report number (``account_sequence``: 1,
2, 3... per account). The stream remembers the highest it handed out (or, before the first, the
account's last number the gateway announced when the subscription was registered, or the
``from_sequence`` it was opened with), and after a break worth resuming opens a new call with
``from_sequence`` = that + 1: the gateway sends what the account had meanwhile from trading's
report history, then goes on live, so the caller sees every report once.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from backbone.reasons import RejectReason

from ._errors import BackboneError
from ._models import ExecutionReport

# The gateway's initial metadata key with the account's last report number (gateway/executions.py).
LAST_SEQUENCE_HEADER = "backbone-account-sequence"
# Breaks in a row after which the stream gives up and raises.
MAX_ATTEMPTS = 10


def should_resume(error: BackboneError) -> bool:
    """Whether a stream that broke this way is worth opening again from where it stood: the
    gateway or its feed went away (UNAVAILABLE), or dropped a slow reader (SLOW_CONSUMER)."""
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return error.reason == RejectReason.SLOW_CONSUMER
    return error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class ResumePoint:
    """The number an execution stream resumes from, and how many breaks in a row it has had."""

    def __init__(self, from_sequence: int, max_attempts: int = MAX_ATTEMPTS) -> None:
        # The highest report number handed out (or known to precede the next report), and whether
        # it is known at all (a live-only stream before the gateway announced one: not).
        self.last_sequence = max(from_sequence - 1, 0)
        self.known = from_sequence > 0
        self.max_attempts = max(1, max_attempts)
        self.failures = 0
        self.reconnects = 0

    def announced(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        """The gateway's headers: the account's last report number when it subscribed us."""
        if self.known:
            return
        for key, value in metadata or ():
            if key == LAST_SEQUENCE_HEADER:
                text = value.decode() if isinstance(value, bytes) else value
                if text.isdigit():
                    self.last_sequence = int(text)
                    self.known = True

    def saw(self, report: ExecutionReport) -> None:
        """A report was handed out: a later break resumes after it."""
        self.failures = 0
        if report.account_sequence:
            self.last_sequence = max(self.last_sequence, report.account_sequence)
            self.known = True

    def resumes_after(self, error: BackboneError) -> bool:
        """Whether to open the stream again after `error` (counted as one break in a row)."""
        self.failures += 1
        return self.known and should_resume(error) and self.failures < self.max_attempts

    @property
    def from_sequence(self) -> int:
        """What a new call asks for: the next report (0, live only, when none is known)."""
        return self.last_sequence + 1 if self.known else 0
