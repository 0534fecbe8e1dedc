"""Deliver a journal's records to a receiver, resumably and at least once.

The sender's journal is its outbox. :class:`OutboxSender` opens a
bidirectional stream, sends a hello naming its source, and the receiver
answers with the last sequence it has durably applied from that source. The
sender then sends the records after it, in batches, and waits for each
batch's acknowledgement before the next. After a broken stream or a restart
it resumes from the receiver's word, so nothing is lost; the receiver skips
what it has already applied, so nothing is doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc
import structlog

log = structlog.get_logger("backbone.outbox")

Record = TypeVar("Record")


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
    ) -> None:
        self.name = name
        self.source = source
        self._open_stream = open_stream
        self._load_after = load_after
        self._make_request = make_request
        self._applied_of = applied_of
        self._max_items = max_items
        self._idle_poll_seconds = idle_poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.acknowledged = -1
        self.acknowledged_changed = asyncio.Condition()

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

    async def _set_acknowledged(self, sequence: int) -> None:
        async with self.acknowledged_changed:
            self.acknowledged = max(self.acknowledged, sequence)
            self.acknowledged_changed.notify_all()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            call = self._open_stream()
            try:
                await call.write(self._make_request(self.source, ()))
                hello = await call.read()
                if hello is grpc.aio.EOF:
                    raise ConnectionError("receiver closed the stream before answering the hello")
                cursor = self._applied_of(hello)
                await self._set_acknowledged(cursor)
                log.info("outbox connected", outbox=self.name, resume_after=cursor)
                backoff = 0.05
                while True:
                    records = await self._load_after(cursor, self._max_items)
                    if not records:
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self._idle_poll_seconds)
                        continue
                    await call.write(self._make_request(self.source, records))
                    answer = await call.read()
                    if answer is grpc.aio.EOF:
                        raise ConnectionError("receiver closed the stream")
                    applied = self._applied_of(answer)
                    if applied < records[-1][0]:
                        raise ConnectionError(f"receiver acknowledged {applied}, expected {records[-1][0]}")
                    cursor = applied
                    await self._set_acknowledged(cursor)
            except asyncio.CancelledError:
                call.cancel()
                raise
            except Exception as error:  # broken stream, receiver down, database hiccup: retry
                why = (
                    f"{error.code().name}: {error.details()}"
                    if isinstance(error, grpc.RpcError)
                    else repr(error)
                )
                log.warning("outbox broken, reconnecting", outbox=self.name, why=why, backoff_s=backoff)
            call.cancel()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
