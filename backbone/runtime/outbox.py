"""Deliver a journal's records to a receiver, resumably and at least once.

The sender's journal is its outbox. :class:`OutboxSender` opens a
bidirectional stream, sends a hello naming its source, and the receiver
answers with the last sequence it has durably applied from that source. The
sender then sends the records after it, in batches, keeping up to ``window``
batches unacknowledged in flight (the receiver applies them in order and
answers each in turn, so its work, the network and the sender's reads overlap
instead of taking turns). After a broken stream or a restart it resumes from
the receiver's word, so nothing is lost; the receiver skips what it has
already applied, so nothing is doubled.

Where the records come from: the sender's source of truth is its journal
(``load_after``), read after a sequence. A sender that journals in process also
hands each committed batch to :meth:`OutboxSender.offer`; the outbox keeps the
records it has not seen acknowledged in memory (bounded by ``max_buffered``) and,
once it has read the journal up to where that memory begins, sends from memory
instead of reading back what was just written. Memory only ever holds a
contiguous run of committed sequences, so a gap (a batch never offered, the
memory dropped when full) sends it back to the journal; after a reconnect or a
restart the journal is read from the receiver's word as before. A receiver that lost its
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
import bisect
import collections
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


async def _write_failure(reader: asyncio.Task[None], error: grpc.RpcError) -> BaseException:
    """Why a write failed: the receiver's own answer (the call's status, which the reader gets)
    when there is one, else a transient break (a write into a dying connection fails with
    INTERNAL from gRPC's core, which is no refusal of the receiver's)."""
    await asyncio.wait({reader}, timeout=1.0)
    if reader.done() and not reader.cancelled():
        answer = reader.exception()
        if isinstance(answer, grpc.RpcError):
            return answer
    return ConnectionError(f"writing to the receiver failed: {error!r}")


class _Recent(Generic[Record]):
    """Committed records kept in memory: every record of the outbox's kinds in (start, end].

    `start` is None while nothing is known (the journal must be read). Offers must be
    contiguous (each begins where the last ended) or the memory starts again from the offer.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.start: int | None = None
        self.end = -1
        self._sequences: list[int] = []
        self._records: list[tuple[int, Record]] = []
        self._head = 0  # records before this index are acknowledged and only await compaction

    def __len__(self) -> int:
        return len(self._records) - self._head

    def add(self, after: int, through: int, records: Sequence[tuple[int, Record]]) -> None:
        if self.start is None or after != self.end or len(self) + len(records) > self.limit:
            self._sequences, self._records, self._head = [], [], 0
            self.start = after
        self._sequences.extend(sequence for sequence, _ in records)
        self._records.extend(records)
        self.end = through

    def after(self, sequence: int, limit: int) -> list[tuple[int, Record]]:
        """Up to `limit` records after `sequence` (which must be at or past `start`)."""
        index = bisect.bisect_right(self._sequences, sequence, self._head)
        return self._records[index : index + limit]

    def acknowledged(self, sequence: int) -> None:
        """Forget what the receiver has applied; memory still covers everything after it."""
        if self.start is None or sequence <= self.start:
            return
        self._head = bisect.bisect_right(self._sequences, sequence, self._head)
        self.start = min(sequence, self.end)
        if self._head > 1024 and self._head * 2 > len(self._records):
            del self._sequences[: self._head]
            del self._records[: self._head]
            self._head = 0


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
        window: int = 8,
        max_buffered: int = 100_000,
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
        self._window = max(1, window)
        self._recent: _Recent[Record] = _Recent(max_buffered)
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

    def offer(self, after: int, through: int, records: Sequence[tuple[int, Record]]) -> None:
        """Sequences `after`+1 .. `through` are committed; `records` are those of them this outbox carries.

        Call it for every committed batch, in commit order (including batches with none of
        this outbox's records, so memory stays contiguous); it wakes the sender when there is
        something to send.
        """
        self._recent.add(after, through, records)
        if records:
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

    async def _next_records(self, after: int) -> tuple[list[tuple[int, Record]], int, bool]:
        """(the records to send after `after`, the sequence sent through, from memory or not).

        With nothing to send, the sequence is how far the outbox knows there is nothing (the
        caller moves past it).
        """
        recent = self._recent
        start = recent.start
        if start is not None and after >= start:
            records = recent.after(after, self._max_items)
            return records, records[-1][0] if records else max(after, recent.end), True
        records = list(await self._load_after(after, self._max_items))
        if records:
            return records, records[-1][0], False
        # Nothing in the journal after `after`: memory began (at `start`) only once everything
        # before it was committed, so there is nothing of this outbox's before `start` either.
        return [], after if start is None else max(after, start), False

    async def _deliver_once(self, attempt: Attempt) -> str | None:
        """One stream: hello, then batches until it breaks. None after a refusal (reported here)."""
        call = self._open_stream()
        # (first, last) sequence of each batch sent and not yet acknowledged, oldest first.
        in_flight: collections.deque[tuple[int, int]] = collections.deque()
        reader: asyncio.Task[None] | None = None
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
            self._recent.acknowledged(cursor)
            if self._stall is None:  # while stalled every retry connects; the ERROR line speaks for them
                log.info("outbox connected", outbox=self.name, resume_after=cursor)
            attempt.established()
            reader = asyncio.create_task(self._read_answers(call, in_flight), name=f"outbox-{self.name}-acks")
            reader.add_done_callback(lambda _: self._wake.set())
            sent = cursor
            while True:
                if reader.done():
                    reader.result()  # the receiver's refusal or the break, raised here
                    raise ConnectionError("the receiver ended the stream")
                if len(in_flight) >= self._window:
                    self._wake.clear()
                    await self._wake.wait()  # an acknowledgement makes room
                    continue
                self._wake.clear()  # a batch committed from here on wakes the wait below
                newest_before = self.newest_sequence() if self.newest_sequence is not None else None
                records, through, from_memory = await self._next_records(sent)
                if records:
                    self._newest_loaded = max(self._newest_loaded, records[-1][0])
                    # Never count records that are waiting as delivered.
                    self._caught_up_through = min(self._caught_up_through, records[0][0] - 1)
                    in_flight.append((records[0][0], records[-1][0]))
                    try:
                        await call.write(self._make_request(self.source, records))
                    except grpc.RpcError as error:
                        raise await _write_failure(reader, error) from None
                    sent = through
                    continue
                if not in_flight:  # everything known is delivered
                    known = through if from_memory or newest_before is None else max(through, newest_before)
                    self._caught_up_through = max(self._caught_up_through, known)
                if through > sent:
                    sent = through
                    continue
                if call.done() and not in_flight:
                    raise ConnectionError("the receiver ended the stream")
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
                # arrives as the wait ends (stop() would then wait forever).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._idle_poll_seconds):
                        await self._wake.wait()
        except grpc.RpcError as error:
            if not is_refusal(error):
                raise
            attempt.refused()
            await self._refused(error, in_flight[0][0] if in_flight else None)
            return None
        finally:
            call.cancel()  # first: a read under way ends with the call, not with its task's cancellation
            if reader is not None:
                reader.cancel()
                await asyncio.wait({reader}, timeout=1.0)
                if reader.done() and not reader.cancelled():
                    reader.exception()  # retrieved: the error that mattered was raised above

    async def _read_answers(self, call: Any, in_flight: collections.deque[tuple[int, int]]) -> None:
        """Match each answer to the oldest batch in flight; the receiver applies and answers in order."""
        while True:
            answer = await call.read()
            if answer is grpc.aio.EOF:
                raise ConnectionError("receiver closed the stream")
            if not in_flight:
                raise ConnectionError("receiver answered a batch it was not sent")
            _, last = in_flight[0]
            applied = self._applied_of(answer)
            if applied < last:
                raise ConnectionError(f"receiver acknowledged {applied}, expected {last}")
            in_flight.popleft()
            self._recent.acknowledged(applied)
            await self._set_acknowledged(applied)
            self._wake.set()
