"""An outbox whose receiver refuses says so: an ERROR line (rate-limited), NOT_SERVING health with the lag.

Both ends are real gRPC servers on free loopback ports run by the service runtime: a receiver
that can be told to refuse every batch with FAILED_PRECONDITION, and a sending app whose
OutboxSender publishes its health entry the way trading does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2

from backbone.reasons import RejectReason
from backbone.runtime.config import Settings
from backbone.runtime.errors import failed_precondition
from backbone.runtime.outbox import REFUSAL_CODES, OutboxSender, is_refusal
from backbone.runtime.reconnect import Backoff, Reconnector
from backbone.runtime.server import HealthEntries, RunningServer
from tests.waiting import eventually, health_of

RECEIVER = "backbone.test.Receiver"
SENDER = "backbone.test.Sender"
ENTRY = f"{SENDER}/outbox/to-receiver"


class ReceiverApp:
    """Applies records in sequence; while `refusing`, refuses every batch as a ledger would."""

    name = "receiver"

    def __init__(self) -> None:
        self.applied = 0
        self.refusing = False
        self.batches_refused = 0

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        async def stream(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
            async for request in requests:
                records = json.loads(request)["records"]
                if records and self.refusing:
                    self.batches_refused += 1
                    raise failed_precondition(
                        RejectReason.NEGATIVE_BALANCE, f"record {records[0][0]} would overdraw account a"
                    )
                for sequence, _ in records:
                    self.applied = max(self.applied, sequence)
                yield json.dumps({"applied": self.applied}).encode()

        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(stream)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(RECEIVER, {"Stream": handler}),)
        )
        return [RECEIVER]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class SenderApp:
    """A service with one outbox to the receiver, its health published as trading publishes its outboxes'."""

    name = "sender"

    def __init__(self, receiver_port: int, clock: FakeClock) -> None:
        self.journal: list[tuple[int, str]] = []
        self.health: HealthEntries | None = None
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{receiver_port}")
        fast = Backoff(initial_seconds=0.005, max_seconds=0.02, reset_after_seconds=1.0)
        self.outbox: OutboxSender[str] = OutboxSender(
            "to-receiver",
            "shard-1",
            lambda: self.channel.stream_stream(f"/{RECEIVER}/Stream")(),
            self.load_after,
            lambda source, records: json.dumps({"source": source, "records": list(records)}).encode(),
            lambda answer: int(json.loads(answer)["applied"]),
            idle_poll_seconds=0.05,
            newest_sequence=lambda: self.journal[-1][0] if self.journal else 0,
            refusal_log_interval_seconds=30.0,
            reconnector=Reconnector(fast, clock=clock),
        )

    async def load_after(self, cursor: int, limit: int) -> list[tuple[int, str]]:
        return [record for record in self.journal if record[0] > cursor][:limit]

    def journal_records(self, *values: str) -> None:
        start = self.journal[-1][0] if self.journal else 0
        self.journal.extend((start + i, value) for i, value in enumerate(values, start=1))
        self.outbox.notify()

    def use_health(self, entries: HealthEntries) -> None:
        self.health = entries

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        async def ping(request: bytes, context: object) -> bytes:
            return b"pong"

        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(ping)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SENDER, {"Ping": handler}),))
        return [SENDER]

    async def start(self) -> None:
        assert self.health is not None
        await self.outbox.publish_health(self.health, ENTRY)
        await self.outbox.start()

    async def stop(self) -> None:
        await self.outbox.stop()
        await self.channel.close()


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def settings() -> Settings:
    return Settings.from_env({"BACKBONE_GRACE_PERIOD_SECONDS": "1"})


async def test_a_refused_outbox_logs_an_error_reports_not_serving_and_recovers() -> None:
    receiver_app = ReceiverApp()
    receiver = RunningServer(receiver_app, settings())
    await receiver.start("127.0.0.1:0")
    clock = FakeClock()
    sender_app = SenderApp(receiver.port, clock)
    sender = RunningServer(sender_app, settings())
    outbox = sender_app.outbox
    with structlog.testing.capture_logs() as lines:
        await sender.start("127.0.0.1:0")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{sender.port}") as channel:
                sender_app.journal_records("a", "b", "c")
                assert await outbox.wait_acknowledged(3, 10)
                status, detail = await health_of(channel, ENTRY)
                assert (status, detail) == (SERVING, "delivering; acknowledged 3, newest 3, lag 0")

                receiver_app.refusing = True
                sender_app.journal_records("d", "e", "f")

                def errors() -> list[MutableMapping[str, Any]]:
                    return [line for line in lines if line["log_level"] == "error" and "outbox" in line]

                first = (await eventually(errors, "an ERROR line about the refusal"))[0]
                assert first["event"] == "outbox refused by its receiver; retrying with backoff"
                assert first["outbox"] == "to-receiver"
                assert first["first_undelivered"] == 4
                assert (first["code"], first["reason"]) == ("FAILED_PRECONDITION", "NEGATIVE_BALANCE")
                assert first["error"] == "record 4 would overdraw account a"
                assert (first["acknowledged"], first["lag"], first["refusals_not_logged"]) == (3, 3, 0)

                # It keeps retrying (the receiver may be fixed), but says so once per 30 s at most.
                await eventually(lambda: receiver_app.batches_refused >= 5, "five refused retries")
                assert len(errors()) == 1
                assert not [line for line in lines if line["event"] == "outbox broken, reconnecting"]
                assert len([line for line in lines if line["event"] == "outbox connected"]) == 1

                status, detail = await health_of(channel, ENTRY)
                assert status == NOT_SERVING
                assert "refused sequence 4" in detail
                assert "FAILED_PRECONDITION NEGATIVE_BALANCE: record 4 would overdraw account a" in detail
                assert detail.endswith("acknowledged 3, newest 6, lag 3")
                assert (await health_of(channel, SENDER))[0] == SERVING  # the service itself still serves
                assert (await health_of(channel, ""))[0] == SERVING

                sender_app.journal_records("g")  # the lag grows while it is stalled
                assert (await health_of(channel, ENTRY))[1].endswith("acknowledged 3, newest 7, lag 4")
                state = outbox.status()
                assert state.stalled and state.first_undelivered == 4 and state.lag == 4

                refused_so_far = receiver_app.batches_refused
                clock.now += 31.0  # 30 s later, the next refusal is logged again, with the count it skipped
                await eventually(lambda: len(errors()) == 2, "a second ERROR line after 30 s")
                second = errors()[1]
                assert second["first_undelivered"] == 4
                assert second["refusals_not_logged"] >= max(3, refused_so_far - 2)
                assert second["stalled_seconds"] >= 31.0

                receiver_app.refusing = False  # the receiver is fixed
                assert await outbox.wait_acknowledged(7, 10)

                async def serving_again() -> bool:
                    return (await health_of(channel, ENTRY))[0] == SERVING

                await eventually(serving_again, "the outbox entry SERVING again")
                status, detail = await health_of(channel, ENTRY)
                assert (status, detail) == (SERVING, "delivering; acknowledged 7, newest 7, lag 0")
                assert not outbox.status().stalled
                recovered = [line for line in lines if line["event"] == "outbox delivering again"]
                assert len(recovered) == 1 and recovered[0]["refusals"] >= 5
                assert len(errors()) == 2
        finally:
            await sender.stop()
            await receiver.stop()


async def test_a_transient_break_is_a_warning_and_not_a_stall() -> None:
    receiver_app = ReceiverApp()
    receiver = RunningServer(receiver_app, settings())
    await receiver.start("127.0.0.1:0")
    sender_app = SenderApp(receiver.port, FakeClock())
    sender = RunningServer(sender_app, settings())
    with structlog.testing.capture_logs() as lines:
        await sender.start("127.0.0.1:0")
        try:
            sender_app.journal_records("a")
            assert await sender_app.outbox.wait_acknowledged(1, 10)
            await receiver.stop()  # the receiver goes away: UNAVAILABLE, retried, not a refusal
            sender_app.journal_records("b")
            await eventually(
                lambda: any(line["event"] == "outbox broken, reconnecting" for line in lines),
                "a reconnect warning",
            )
            assert not sender_app.outbox.status().stalled
            assert not [line for line in lines if line["log_level"] == "error"]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{sender.port}") as channel:
                assert (await health_of(channel, ENTRY))[0] == SERVING
        finally:
            await sender.stop()


def test_which_codes_are_refusals() -> None:
    class Failed(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    transient = {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
    }
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        assert is_refusal(Failed(code)) == (code not in transient), code
    assert REFUSAL_CODES.isdisjoint(transient)
    assert not is_refusal(ConnectionError("receiver closed the stream"))


async def test_a_refused_hello_stalls_until_a_hello_is_answered() -> None:
    """A receiver that refuses the stream itself (the hello): stalled with no sequence, cleared by a hello."""
    refuse = {"hello": True}

    class Call:
        def __init__(self) -> None:
            self.cancelled = False

        async def write(self, request: bytes) -> None:
            pass

        async def read(self) -> bytes:
            if refuse["hello"]:
                raise FakeRefusal()
            return json.dumps({"applied": 0}).encode()

        def cancel(self) -> None:
            self.cancelled = True

        def done(self) -> bool:
            return self.cancelled

        def add_done_callback(self, callback: object) -> None:
            pass  # this fake never ends by itself

    class FakeRefusal(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.PERMISSION_DENIED

        def details(self) -> str:
            return "this source may not send here"

        def trailing_metadata(self) -> tuple[()]:
            return ()

    async def nothing(cursor: int, limit: int) -> list[tuple[int, str]]:
        return []

    outbox: OutboxSender[str] = OutboxSender(
        "hello-refused",
        "shard-1",
        Call,
        nothing,
        lambda source, records: b"",
        lambda answer: int(json.loads(answer)["applied"]),
        idle_poll_seconds=0.05,
        refusal_log_interval_seconds=0.0,
        reconnector=Reconnector(Backoff(initial_seconds=0.005, max_seconds=0.01)),
    )
    with structlog.testing.capture_logs() as lines:
        await outbox.start()
        try:
            await eventually(lambda: outbox.status().refusals >= 2, "two refused hellos")
            state = outbox.status()
            assert state.first_undelivered is None and state.lag is None
            assert state.refusal is not None and state.refusal.startswith("PERMISSION_DENIED ")
            assert state.refusal.endswith(": this source may not send here")
            assert "refused the hello" in state.describe()
            error = next(line for line in lines if line["log_level"] == "error")
            assert error["first_undelivered"] is None
            refuse["hello"] = False
            await eventually(lambda: not outbox.status().stalled, "the stall cleared by an answered hello")
            assert outbox.acknowledged == 0
        finally:
            await outbox.stop()
