"""Deliver a journal's records to a receiver, resumably and at least once.

The sender's journal is its outbox. :class:`OutboxSender` opens a
bidirectional stream, sends a hello naming its source, and the receiver
answers with the last sequence it has durably applied from that source. The
sender then sends the records after it, in batches, and waits for each
batch's acknowledgement before the next. After a broken stream or a restart
it resumes from the receiver's word, so nothing is lost; the receiver skips
what it has already applied, so nothing is doubled. A receiver that lost its
state (a cache rebuilt from its sources) asks in the hello's answer for a
snapshot: the sender's ``snapshot`` hook builds it at one consistent point and
the sender sends it, page by page, before the records after the receiver's word.

A break is either transient or a refusal. Transient: the receiver is down or
restarting (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED,
ABORTED, UNKNOWN, which grpc also gives a reset connection), the stream
closed, the journal could not be read; these are logged as a warning and
retried with backoff (:mod:`backbone.runtime.reconnect`). A refusal is an
answer that retrying the same records will not change (the codes in
:data:`REFUSAL_CODES`: the receiver judged the records or the stream wrong,
cannot do it, or is broken inside). The outbox is then *stalled*: it logs an
ERROR naming the outbox, the first undelivered sequence and the receiver's
reason, at most once per ``refusal_log_interval_seconds`` (saying how many
refusals it did not log), keeps retrying with a backoff that is not reset
(the receiver may be fixed), and reports the stall in :meth:`OutboxSender.status`
and in the health entry :meth:`OutboxSender.publish_health` keeps, until a
batch at or past the refused sequence is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
import structlog

from backbone.runtime.errors import from_rpc_error
from backbone.runtime.reconnect import Attempt, Reconnector

if TYPE_CHECKING:
    from backbone.runtime.server import HealthEntries

log = structlog.get_logger("backbone.outbox")

Record = TypeVar("Record")

# Status codes by which a receiver refuses what it was sent, for good: retrying the same records gets
# the same answer until someone changes the receiver or its data. Every other code, and any failure
# without a status, is a transient break.
REFUSAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DATA_LOSS,
    }
)


def is_refusal(error: BaseException) -> bool:
    """True when `error` is a receiver's answer that retrying the same records will not change."""
    if not isinstance(error, grpc.RpcError):
        return False
    code = getattr(error, "code", None)
    return callable(code) and code() in REFUSAL_CODES


@dataclass(frozen=True)
class OutboxStatus:
    """Where an outbox stands.

    ``lag`` counts journal sequence numbers after the point the receiver is known to have everything
    this outbox carries; with a ``newest_sequence`` hook the journal interleaves kinds this outbox
    does not carry, so it is an upper bound on the records waiting. None until the receiver answered.
    """

    name: str
    acknowledged: int  # the receiver's word: the last sequence it applied (-1 before it answered)
    newest: int | None  # the newest journaled sequence, when known
    lag: int | None
    stalled_seconds: float | None  # since the first refusal of the current stall; None when not stalled
    first_undelivered: int | None  # the first sequence of the refused batch (None: the hello was refused)
    refusal: str | None  # the receiver's last refusal: "CODE REASON: message"
    refusals: int  # refusals in the current stall

    @property
    def stalled(self) -> bool:
        return self.stalled_seconds is not None

    def describe(self) -> str:
        newest, lag = _or_unknown(self.newest), _or_unknown(self.lag)
        figures = f"acknowledged {self.acknowledged}, newest {newest}, lag {lag}"
        if self.stalled_seconds is None:
            return f"delivering; {figures}"
        at = "the hello" if self.first_undelivered is None else f"sequence {self.first_undelivered}"
        return (
            f"stalled for {self.stalled_seconds:.0f}s: the receiver refused {at} "
            f"{self.refusals} time(s), last with {self.refusal}; {figures}"
        )


def _or_unknown(value: int | None) -> str:
    return "unknown" if value is None else str(value)


@dataclass
class _Stall:
    since: float
    first_undelivered: int | None
    refusal: str
    refusals: int = 0


StatusListener = Callable[[OutboxStatus], Awaitable[None]]


class OutboxSender(Generic[Record]):
    """Pumps records with sequence numbers to one receiver until stopped."""

    def __init__(
        self,
        name: str,
        source: str,
        open_stream: Callable[[], Any],
        load_after: Callable[[int, int], Awaitable[Sequence[tuple[int, Record]]]],
        make_request: Callable[[str, Sequence[tuple[int, Record]]], Any],
        applied_of: Callable[[Any], int],
        *,
        max_items: int = 512,
        idle_poll_seconds: float = 1.0,
        newest_sequence: Callable[[], int] | None = None,
        refusal_log_interval_seconds: float = 30.0,
        reconnector: Reconnector | None = None,
        snapshot: Callable[[Any], Awaitable[Sequence[Any]]] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self._open_stream = open_stream
        self._load_after = load_after
        self._make_request = make_request
        self._applied_of = applied_of
        # Given the hello's answer: the requests carrying a snapshot of the sender's state when
        # the receiver asked for one (it lost its state), else none. Each is acknowledged.
        self._snapshot = snapshot
        self._max_items = max_items
        self._idle_poll_seconds = idle_poll_seconds
        self.newest_sequence = newest_sequence
        self._refusal_log_interval = refusal_log_interval_seconds
        self._reconnector = reconnector or Reconnector()
        self._clock = self._reconnector.clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.acknowledged = -1
        self.acknowledged_changed = asyncio.Condition()
        self._newest_loaded = -1
        self._caught_up_through = -1  # everything this outbox carries up to here was delivered
        self._stall: _Stall | None = None
        self._refusal_logged_at: float | None = None
        self._refusals_not_logged = 0
        self._listeners: list[StatusListener] = []

    def notify(self) -> None:
        """New records were journaled: send them now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"outbox-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_acknowledged(self, sequence: int, timeout_seconds: float) -> bool:
        """Wait until the receiver has applied `sequence`; False on timeout."""

        async def reached() -> None:
            async with self.acknowledged_changed:
                await self.acknowledged_changed.wait_for(lambda: self.acknowledged >= sequence)

        try:
            await asyncio.wait_for(reached(), timeout_seconds)
        except TimeoutError:
            return False
        return True

    def status(self) -> OutboxStatus:
        newest = self.newest_sequence() if self.newest_sequence is not None else None
        if newest is None and self._newest_loaded >= 0:
            newest = self._newest_loaded
        lag = None
        if newest is not None and self.acknowledged >= 0:
            lag = max(0, newest - max(self.acknowledged, self._caught_up_through))
        stall = self._stall
        return OutboxStatus(
            name=self.name,
            acknowledged=self.acknowledged,
            newest=newest,
            lag=lag,
            stalled_seconds=None if stall is None else max(0.0, self._clock() - stall.since),
            first_undelivered=None if stall is None else stall.first_undelivered,
            refusal=None if stall is None else stall.refusal,
            refusals=0 if stall is None else stall.refusals,
        )

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call `listener` with the status when a stall starts, repeats and ends."""
        self._listeners.append(listener)

    async def publish_health(self, health: HealthEntries, entry: str) -> None:
        """Keep health entry `entry` SERVING, NOT_SERVING while stalled; its detail is the status."""

        async def publish(status: OutboxStatus) -> None:
            await health.set(entry, not status.stalled, lambda: self.status().describe())

        self.add_status_listener(publish)
        await publish(self.status())

    async def _publish_status(self) -> None:
        status = self.status()
        for listener in self._listeners:
            try:
                await listener(status)
            except Exception:  # a broken listener must not stop delivery
                log.exception("outbox status listener failed", outbox=self.name)

    async def _set_acknowledged(self, sequence: int) -> None:
        async with self.acknowledged_changed:
            self.acknowledged = max(self.acknowledged, sequence)
            self.acknowledged_changed.notify_all()
        stall = self._stall
        if stall is None:
            return
        if stall.first_undelivered is None or self.acknowledged >= stall.first_undelivered:
            self._stall = None
            log.info(
                "outbox delivering again",
                outbox=self.name,
                stalled_seconds=round(self._clock() - stall.since, 3),
                refusals=stall.refusals,
                acknowledged=self.acknowledged,
                lag=self.status().lag,
            )
            await self._publish_status()

    def _loaded(self, cursor: int, records: Sequence[tuple[int, Record]], newest_before: int | None) -> None:
        """Account for a load after `cursor`: what is known to be waiting, and known to be delivered."""
        if records:
            self._newest_loaded = max(self._newest_loaded, records[-1][0])
            # The journal may be ahead of what a load saw: never count records that are waiting as delivered.
            self._caught_up_through = min(self._caught_up_through, records[0][0] - 1)
        else:
            through = cursor if newest_before is None else max(cursor, newest_before)
            self._caught_up_through = max(self._caught_up_through, through)

    async def _refused(self, error: grpc.RpcError, first_undelivered: int | None) -> None:
        refusal = from_rpc_error(error)
        described = f"{refusal.code.name} {refusal.reason}: {refusal.message}"
        now = self._clock()
        stall = self._stall
        if stall is None:
            stall = self._stall = _Stall(now, first_undelivered, described)
        stall.refusals += 1
        stall.refusal = described
        if first_undelivered is not None:
            stall.first_undelivered = first_undelivered
        if self._refusal_logged_at is None or now - self._refusal_logged_at >= self._refusal_log_interval:
            log.error(
                "outbox refused by its receiver; retrying with backoff",
                outbox=self.name,
                first_undelivered=stall.first_undelivered,
                code=refusal.code.name,
                reason=str(refusal.reason),
                error=refusal.message,
                acknowledged=self.acknowledged,
                lag=self.status().lag,
                stalled_seconds=round(now - stall.since, 3),
                refusals_not_logged=self._refusals_not_logged,
            )
            self._refusal_logged_at = now
            self._refusals_not_logged = 0
        else:
            self._refusals_not_logged += 1
        await self._publish_status()

    async def _run(self) -> None:
        await self._reconnector.run(
            self._deliver_once, log.bind(outbox=self.name), "outbox broken, reconnecting"
        )

    async def _deliver_once(self, attempt: Attempt) -> str | None:
        """One stream: hello, then batches until it breaks. None after a refusal (reported here)."""
        call = self._open_stream()
        in_flight: int | None = None  # the first sequence of the batch awaiting its acknowledgement
        try:
            # An idle sender reads nothing: wake it when the receiver ends the stream (for example
            # a receiver whose state was rebuilt), so it reconnects instead of idling on a dead call.
            call.add_done_callback(lambda _: self._wake.set())
            await call.write(self._make_request(self.source, ()))
            hello = await call.read()
            if hello is grpc.aio.EOF:
                raise ConnectionError("receiver closed the stream before answering the hello")
            cursor = self._applied_of(hello)
            if self._snapshot is not None:
                pages = await self._snapshot(hello)
                for page in pages:
                    await call.write(page)
                    answer = await call.read()
                    if answer is grpc.aio.EOF:
                        raise ConnectionError("receiver closed the stream during the snapshot")
                    cursor = self._applied_of(answer)
                if pages:
                    log.info(
                        "outbox sent a snapshot", outbox=self.name, pages=len(pages), resume_after=cursor
                    )
            await self._set_acknowledged(cursor)
            if self._stall is None:  # while stalled every retry connects; the ERROR line speaks for them
                log.info("outbox connected", outbox=self.name, resume_after=cursor)
            attempt.established()
            while True:
                newest_before = self.newest_sequence() if self.newest_sequence is not None else None
                records = await self._load_after(cursor, self._max_items)
                self._loaded(cursor, records, newest_before)
                if not records:
                    if call.done():
                        raise ConnectionError("the receiver ended the stream")
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._idle_poll_seconds)
                    continue
                in_flight = records[0][0]
                await call.write(self._make_request(self.source, records))
                answer = await call.read()
                if answer is grpc.aio.EOF:
                    raise ConnectionError("receiver closed the stream")
                applied = self._applied_of(answer)
                if applied < records[-1][0]:
                    raise ConnectionError(f"receiver acknowledged {applied}, expected {records[-1][0]}")
                cursor = applied
                in_flight = None
                await self._set_acknowledged(cursor)
        except grpc.RpcError as error:
            if not is_refusal(error):
                raise
            attempt.refused()
            await self._refused(error, in_flight)
            return None
        finally:
            call.cancel()
