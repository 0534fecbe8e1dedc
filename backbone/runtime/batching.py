"""Coalesce many callers' commands into batches on one bidirectional stream.

Between services no call carries one order: each caller hands a command to a
:class:`BatchingStream` and awaits its result; a sender task takes whatever
is queued (up to ``max_items``) into one request with a sequence number, with
at most ``max_batches_in_flight`` requests unanswered (so batches grow with
the load instead of the message count), and
a receiver task matches each response to its request by that number and
answers every caller. The queue is bounded: when it is full, callers get
RESOURCE_EXHAUSTED at once instead of waiting without limit. When the stream
breaks, every caller whose command was sent but not answered gets
UNAVAILABLE with reason OUTCOME_UNKNOWN (the command may or may not have
taken effect), and the stream reconnects with backoff
(:mod:`backbone.runtime.reconnect`; reset once a stream stayed up).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc
import structlog

from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.runtime.reconnect import Attempt, Reconnector, describe_break

log = structlog.get_logger("backbone.batching")

Command = TypeVar("Command")
Result = TypeVar("Result")

OpenStream = Callable[[], Any]  # returns a grpc.aio.StreamStreamCall


def _discard_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned future's outcome so asyncio does not report it as never retrieved."""
    if not future.cancelled():
        future.exception()


class BatchingStream(Generic[Command, Result]):
    """One long-lived stream carrying batched commands from many concurrent callers."""

    def __init__(
        self,
        name: str,
        open_stream: OpenStream,
        make_request: Callable[[int, list[Command]], Any],
        read_response: Callable[[Any], tuple[int, Sequence[Result]]],
        *,
        max_items: int = 512,
        max_batches_in_flight: int = 2,
        max_queued: int = 20_000,
        result_timeout_seconds: float = 10.0,
        reconnector: Reconnector | None = None,
    ) -> None:
        self.name = name
        self._open_stream = open_stream
        self._make_request = make_request
        self._read_response = read_response
        self._max_items = max_items
        self._max_batches = max_batches_in_flight
        self._window = asyncio.Semaphore(max_batches_in_flight)
        self._queue: asyncio.Queue[tuple[Command, asyncio.Future[Result]]] = asyncio.Queue(max_queued)
        self._pending: dict[int, list[asyncio.Future[Result]]] = {}
        self._sent: set[asyncio.Future[Result]] = set()
        self._sequence = 0
        self._timeout = result_timeout_seconds
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._reconnector = reconnector or Reconnector()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"batching-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail_pending("stream closed")
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                # Its caller may be gone already (shutdown cancels callers first): retrieved here
                # so asyncio does not log it as never retrieved.
                future.add_done_callback(_discard_outcome)
                future.set_exception(
                    self._unavailable(RejectReason.SERVICE_STOPPING, "the service is shutting down")
                )

    async def submit(self, command: Command) -> Result:
        """Queue `command`, wait for its result; raises ServiceError when it cannot be had."""
        (outcome,) = await self.submit_many([command])
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    async def submit_many(self, commands: Sequence[Command]) -> list[Result | ServiceError]:
        """Queue `commands` and wait for their results with one timer for the lot.

        Each entry of the answer is the command's result or the ServiceError that
        `submit` would have raised for it (BACKPRESSURE when the queue had no room,
        NOT_SENT or OUTCOME_UNKNOWN when the time ran out), in the order given.
        """
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Result] | ServiceError] = []
        waiting: list[asyncio.Future[Result]] = []
        for command in commands:
            future: asyncio.Future[Result] = loop.create_future()
            try:
                self._queue.put_nowait((command, future))
            except asyncio.QueueFull:
                futures.append(
                    ServiceError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        RejectReason.BACKPRESSURE,
                        f"too many requests queued for {self.name}; retry shortly",
                    )
                )
                continue
            futures.append(future)
            waiting.append(future)
        if waiting:
            await asyncio.wait(waiting, timeout=self._timeout)
        return [self._outcome(entry) for entry in futures]

    def _outcome(self, entry: asyncio.Future[Result] | ServiceError) -> Result | ServiceError:
        """The result of a submitted command, or the error that stands for it."""
        if isinstance(entry, ServiceError):
            return entry
        if entry.done():
            if entry.cancelled():
                return self._unavailable(RejectReason.NOT_SENT, f"{self.name}: the command was dropped")
            error = entry.exception()
            if error is None:
                return entry.result()
            if isinstance(error, ServiceError):
                return error
            raise error
        if entry not in self._sent:
            entry.cancel()  # never written to the stream: it cannot take effect after we gave up
            return self._unavailable(
                RejectReason.NOT_SENT,
                f"{self.name} could not be reached in {self._timeout:g}s; nothing was done",
            )
        entry.add_done_callback(_discard_outcome)
        return self._unavailable(
            RejectReason.OUTCOME_UNKNOWN, f"{self.name} did not answer in {self._timeout:g}s"
        )

    def _unavailable(self, reason: RejectReason, message: str) -> ServiceError:
        return ServiceError(grpc.StatusCode.UNAVAILABLE, reason, message)

    def _fail_pending(self, why: str) -> None:
        self._sent.clear()
        for futures in self._pending.values():
            for future in futures:
                if not future.done():
                    future.add_done_callback(_discard_outcome)  # its caller may be gone already
                    future.set_exception(
                        self._unavailable(RejectReason.OUTCOME_UNKNOWN, f"{self.name} stream broke ({why})")
                    )
        self._pending.clear()

    async def _run(self) -> None:
        await self._reconnector.run(
            self._connect_once, log.bind(stream=self.name), "stream broken, reconnecting"
        )

    async def _connect_once(self, attempt: Attempt) -> str:
        """One stream: send and receive until it breaks; fail what it left unanswered."""
        call = self._open_stream()
        self._window = asyncio.Semaphore(self._max_batches)
        receiver = asyncio.create_task(self._receive(call))
        sender = asyncio.create_task(self._send(call, attempt))
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
            why = "closed by peer"
        except asyncio.CancelledError:
            call.cancel()
            receiver.cancel()
            sender.cancel()
            raise
        except Exception as error:  # any other failure of the stream: reconnect
            why = describe_break(error)
        finally:
            self._connected.clear()
        call.cancel()
        receiver.cancel()
        sender.cancel()
        self._fail_pending(why)
        return why

    async def _send(self, call: Any, attempt: Attempt) -> None:
        await call.wait_for_connection()
        self._connected.set()
        attempt.established()
        while True:
            command, future = await self._queue.get()
            # At most a few batches unanswered: under load, what arrives meanwhile goes in the
            # next batch (bigger batches, fewer messages); when idle, a command goes at once.
            await self._window.acquire()
            batch = [(command, future)]
            while len(batch) < self._max_items and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [(c, f) for c, f in batch if not f.done()]
            if not live:
                self._window.release()
                continue
            self._sequence += 1
            self._pending[self._sequence] = [f for _, f in live]
            self._sent.update(f for _, f in live)
            await call.write(self._make_request(self._sequence, [c for c, _ in live]))

    async def _receive(self, call: Any) -> None:
        responses: AsyncIterator[Any] = call.__aiter__()
        async for response in responses:
            sequence, results = self._read_response(response)
            futures = self._pending.pop(sequence, None)
            if futures is not None:
                self._window.release()
            self._sent.difference_update(futures or ())
            if futures is None:
                log.error("response to an unknown batch", stream=self.name, sequence=sequence)
                continue
            if len(futures) != len(results):
                error = self._unavailable(
                    RejectReason.PROTOCOL_ERROR,
                    f"{self.name} answered {len(results)} of {len(futures)} commands",
                )
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
                continue
            for future, result in zip(futures, results, strict=True):
                if not future.done():
                    future.set_result(result)
