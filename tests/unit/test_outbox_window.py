"""The outbox keeps a window of batches in flight and sends committed records from memory.

Both ends are real gRPC servers on loopback ports run by the service runtime: a receiver that
applies each sequence once (as settlement and risk do) and can hold its answers or break the
stream after applying a batch, and an outbox whose journal is a list in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence

import grpc

from backbone.runtime.config import Settings
from backbone.runtime.outbox import OutboxSender, _Recent
from backbone.runtime.reconnect import Backoff, Reconnector
from backbone.runtime.server import RunningServer
from tests.waiting import eventually

RECEIVER = "backbone.test.WindowReceiver"


class Receiver:
    """Applies each sequence at most once, answers each request in order with its cursor."""

    name = "receiver"

    def __init__(self) -> None:
        self.cursor = 0
        self.applied: list[int] = []  # every sequence applied, in order (a repeat would show)
        self.requests = 0
        self.answered = 0
        self.answer = asyncio.Event()
        self.answer.set()
        self.break_after_requests: int | None = None  # abort once this many requests were applied

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        async def stream(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> AsyncIterator[bytes]:
            # Requests are read (and applied) as they come; answers wait while `answer` is clear,
            # so what the sender keeps in flight shows in `requests`.
            answers: asyncio.Queue[int | None] = asyncio.Queue()

            async def read() -> None:
                async for request in requests:
                    records = json.loads(request)["records"]
                    if records:
                        self.requests += 1
                    for sequence, _ in records:
                        if sequence > self.cursor:
                            self.applied.append(sequence)
                            self.cursor = sequence
                    if records and self.break_after_requests == self.requests:
                        self.break_after_requests = None
                        await answers.put(-1)
                        return
                    await answers.put(self.cursor)
                await answers.put(None)

            reader = asyncio.create_task(read())
            try:
                while (cursor := await answers.get()) is not None:
                    if cursor < 0:
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "receiver restarting")
                    await self.answer.wait()
                    self.answered += 1
                    yield json.dumps({"applied": cursor}).encode()
            finally:
                reader.cancel()

        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(stream)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(RECEIVER, {"Stream": handler}),)
        )
        return [RECEIVER]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class Journal:
    """The sender's journal: what load_after reads; commit() also offers the batch in memory."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str]] = []
        self.loads = 0

    async def load_after(self, cursor: int, limit: int) -> list[tuple[int, str]]:
        self.loads += 1
        return [record for record in self.records if record[0] > cursor][:limit]

    def commit(self, outbox: OutboxSender[str] | None, count: int, *, offered: bool = True) -> None:
        after = self.records[-1][0] if self.records else 0
        batch = [(after + i, f"r{after + i}") for i in range(1, count + 1)]
        self.records.extend(batch)
        if outbox is not None and offered:
            outbox.offer(after, batch[-1][0], batch)
        elif outbox is not None:
            outbox.notify()


def settings() -> Settings:
    return Settings.from_env({"BACKBONE_GRACE_PERIOD_SECONDS": "1"})


@contextlib.asynccontextmanager
async def running_outbox(
    receiver: Receiver, journal: Journal, *, max_items: int, window: int
) -> AsyncIterator[OutboxSender[str]]:
    """An outbox to `receiver` (served on a free port) over `journal`, started; stopped on the way out."""
    server = RunningServer(receiver, settings())
    await server.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            outbox = outbox_to(channel, journal, max_items=max_items, window=window)
            await outbox.start()
            try:
                yield outbox
            finally:
                await outbox.stop()
    finally:
        await server.stop()


def outbox_to(
    channel: grpc.aio.Channel, journal: Journal, *, max_items: int, window: int
) -> OutboxSender[str]:
    return OutboxSender(
        "to-receiver",
        "shard-1",
        lambda: channel.stream_stream(f"/{RECEIVER}/Stream")(),
        journal.load_after,
        lambda source, records: json.dumps({"source": source, "records": list(records)}).encode(),
        lambda answer: int(json.loads(answer)["applied"]),
        max_items=max_items,
        window=window,
        idle_poll_seconds=0.05,
        reconnector=Reconnector(Backoff(initial_seconds=0.005, max_seconds=0.02, reset_after_seconds=1.0)),
    )


async def test_batches_stay_in_flight_up_to_the_window() -> None:
    receiver = Receiver()
    journal = Journal()
    async with running_outbox(receiver, journal, max_items=2, window=3) as outbox:
        assert await outbox.wait_acknowledged(0, 10)
        answered = receiver.answered  # the hello's answer
        receiver.answer.clear()  # the receiver applies but does not answer yet
        journal.commit(outbox, 10)
        await eventually(lambda: receiver.requests == 3, "three batches sent before any answer")
        await asyncio.sleep(0.1)
        assert receiver.requests == 3 and receiver.answered == answered  # never more than the window
        receiver.answer.set()
        assert await outbox.wait_acknowledged(10, 10)
        assert receiver.applied == list(range(1, 11))
        assert receiver.requests == 5


async def test_committed_batches_are_sent_from_memory_once_caught_up() -> None:
    receiver = Receiver()
    journal = Journal()
    journal.commit(None, 7)  # journaled before the outbox started: read from the journal
    async with running_outbox(receiver, journal, max_items=5, window=4) as outbox:
        assert await outbox.wait_acknowledged(7, 10)
        journal.commit(outbox, 3)
        assert await outbox.wait_acknowledged(10, 10)
        loads = journal.loads
        for _ in range(20):
            journal.commit(outbox, 4)
        assert await outbox.wait_acknowledged(90, 10)
        assert journal.loads == loads  # nothing read back from the journal
        assert receiver.applied == list(range(1, 91))
        assert outbox.status().lag == 0


async def test_a_gap_in_what_is_offered_is_read_from_the_journal() -> None:
    receiver = Receiver()
    journal = Journal()
    async with running_outbox(receiver, journal, max_items=3, window=2) as outbox:
        journal.commit(outbox, 4)
        assert await outbox.wait_acknowledged(4, 10)
        journal.commit(outbox, 5, offered=False)  # 5-9 never reach memory
        journal.commit(outbox, 4)  # 10-13 do: memory starts again at 9
        assert await outbox.wait_acknowledged(13, 10)
        assert receiver.applied == list(range(1, 14))


async def test_a_stream_broken_with_batches_in_flight_resumes_from_the_receivers_word() -> None:
    receiver = Receiver()
    journal = Journal()
    async with running_outbox(receiver, journal, max_items=2, window=4) as outbox:
        assert await outbox.wait_acknowledged(0, 10)
        receiver.break_after_requests = 2  # applies the second batch, then the stream breaks
        journal.commit(outbox, 12)
        assert await outbox.wait_acknowledged(12, 10)
        for _ in range(3):
            journal.commit(outbox, 5)
        assert await outbox.wait_acknowledged(27, 10)
        # Batches in flight at the break were sent again; each sequence was applied once.
        assert receiver.applied == list(range(1, 28))
        assert receiver.requests > 27 // 2


def span(recent: _Recent[str]) -> tuple[int | None, int, int]:
    return recent.start, recent.end, len(recent)


def test_memory_covers_a_contiguous_run_and_forgets_what_is_acknowledged() -> None:
    recent: _Recent[str] = _Recent(limit=6)
    assert span(recent) == (None, -1, 0)
    recent.add(10, 13, [(11, "a"), (13, "b")])  # 12 is of a kind this outbox does not carry
    recent.add(13, 15, [(14, "c"), (15, "d")])
    assert (span(recent)[0], recent.end) == (10, 15)
    assert recent.after(10, 10) == [(11, "a"), (13, "b"), (14, "c"), (15, "d")]
    assert recent.after(13, 1) == [(14, "c")]
    recent.acknowledged(13)
    assert (span(recent)[0], len(recent)) == (13, 2)
    assert recent.after(13, 10) == [(14, "c"), (15, "d")]
    recent.acknowledged(40)  # acknowledged past memory (read from the journal): nothing is kept
    assert (span(recent)[0], recent.end, len(recent)) == (15, 15, 0)
    recent.add(15, 16, [(16, "e")])
    assert recent.after(15, 10) == [(16, "e")]
    recent.add(20, 21, [(21, "f")])  # a gap: memory starts again after it
    assert (span(recent)[0], recent.after(20, 10)) == (20, [(21, "f")])
    recent.add(21, 28, [(n, "x") for n in range(22, 29)])  # past the limit: starts again
    assert (span(recent)[0], len(recent)) == (21, 7)
