"""Where an execution stream resumes after a break: the sync and asyncio streams' shared bookkeeping.

Every report of a journaled event carries the account's report number (``account_sequence``: 1,
2, 3... per account and per trading shard, named by the report's ``shard``). The stream remembers
for each shard the highest number it handed out (or, before the first, the account's last number
the gateway announced when the subscription was registered, or the ``from_sequence`` it was
opened with), and after a break worth resuming opens a new call asking each shard for the report
after it: the gateway sends what the account had meanwhile from each shard's report history, then
goes on live, so the caller sees every report once.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason

from ._errors import BackboneError
from ._models import ExecutionReport

# The gateway's initial metadata keys with the account's last report numbers (gateway/executions.py):
# the default shard's alone, and every shard's as "shard=N,shard=N" (the default shard first).
LAST_SEQUENCE_HEADER = "backbone-account-sequence"
LAST_SEQUENCES_HEADER = "backbone-account-sequences"
# The key of the default shard before the stream learned its name (from_sequence is the default's).
DEFAULT_SHARD = ""
# Breaks in a row after which the stream gives up and raises.
MAX_ATTEMPTS = 10


def should_resume(error: BackboneError) -> bool:
    """Whether a stream that broke this way is worth opening again from where it stood: the
    gateway or its feed went away (UNAVAILABLE), or dropped a slow reader (SLOW_CONSUMER)."""
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return error.reason == RejectReason.SLOW_CONSUMER
    return error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class ResumePoint:
    """The numbers an execution stream resumes from, and how many breaks in a row it has had."""

    def __init__(self, from_sequence: int, max_attempts: int = MAX_ATTEMPTS) -> None:
        # Per shard: the highest report number handed out (or known to precede its next report).
        # A shard missing is not known (a live-only stream before the gateway announced it).
        self.last: dict[str, int] = {DEFAULT_SHARD: from_sequence - 1} if from_sequence > 0 else {}
        self.default_shard = DEFAULT_SHARD
        self.max_attempts = max(1, max_attempts)
        self.failures = 0
        self.reconnects = 0

    @property
    def known(self) -> bool:
        """Whether the stream knows where any shard's reports stand (else it cannot resume)."""
        return bool(self.last)

    def announced(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        """The gateway's headers: the account's last report number of each shard when it
        subscribed us. A shard whose number the stream knows already (it was asked to resume it)
        keeps it."""
        single: int | None = None
        shards: list[tuple[str, int]] = []
        for key, value in metadata or ():
            text = value.decode() if isinstance(value, bytes) else value
            if key == LAST_SEQUENCE_HEADER and text.isdigit():
                single = int(text)
            elif key == LAST_SEQUENCES_HEADER:
                for item in text.split(","):
                    name, _, digits = item.partition("=")
                    if name and digits.isdigit():
                        shards.append((name, int(digits)))
        if shards:
            self.default_shard = shards[0][0]
            if DEFAULT_SHARD in self.last:  # from_sequence named the default shard, its name unknown
                self.last[self.default_shard] = self.last.pop(DEFAULT_SHARD)
            for name, number in shards:
                self.last.setdefault(name, number)
        elif single is not None:  # a gateway that names no shard
            self.last.setdefault(DEFAULT_SHARD, single)

    def saw(self, report: ExecutionReport) -> None:
        """A report was handed out: a later break resumes its shard after it."""
        self.failures = 0
        if report.account_sequence:
            shard = report.shard or self.default_shard
            self.last[shard] = max(self.last.get(shard, 0), report.account_sequence)

    def resumes_after(self, error: BackboneError) -> bool:
        """Whether to open the stream again after `error` (counted as one break in a row)."""
        self.failures += 1
        return self.known and should_resume(error) and self.failures < self.max_attempts

    @property
    def last_sequence(self) -> int:
        """The default shard's highest report number handed out (0 when none is known)."""
        return self.last.get(self.default_shard, 0)

    @property
    def from_sequence(self) -> int:
        """The default shard's next report (0, live only, when none is known)."""
        return self.last[self.default_shard] + 1 if self.default_shard in self.last else 0

    def positions(self) -> dict[str, int]:
        """What a new call asks for: each known shard's next report (DEFAULT_SHARD: the default's)."""
        return {shard: last + 1 for shard, last in self.last.items()}


def resume_request(positions: dict[str, int]) -> gateway_pb2.StreamExecutionsRequest:
    """A StreamExecutionsRequest resuming each shard of `positions` (DEFAULT_SHARD: from_sequence)."""
    named = {shard: number for shard, number in positions.items() if shard != DEFAULT_SHARD}
    return gateway_pb2.StreamExecutionsRequest(
        from_sequence=positions.get(DEFAULT_SHARD, 0), from_shard_sequences=named
    )
