"""The one reconnect loop: backoff with jitter, reset only after a connection that stayed up, cancellation."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from backbone.runtime.batching import BatchingStream
from backbone.runtime.reconnect import Attempt, Backoff, Reconnector, describe_break

POLICY = Backoff(initial_seconds=0.05, factor=2.0, max_seconds=2.0, reset_after_seconds=1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    """An injected sleep: records each wait, takes no time (but yields to the loop)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class Lines:
    """A logger that keeps (event, fields) of every warning."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


class Stop(BaseException):
    """Ends a scripted run (a BaseException, so the loop does not take it for a break)."""


Step = Callable[[Attempt, FakeClock], Any]


def scripted(clock: FakeClock, steps: list[Step]) -> Callable[[Attempt], Any]:
    """connect_once running one step per attempt; Stop once the steps are used up."""
    remaining = list(steps)

    async def connect_once(attempt: Attempt) -> str | None:
        if not remaining:
            raise Stop
        result = remaining.pop(0)(attempt, clock)
        return result if isinstance(result, str) or result is None else "closed by peer"

    return connect_once


def fails(attempt: Attempt, clock: FakeClock) -> None:
    raise ConnectionError("refused at connect")


def up_for(seconds: float, *, refused: bool = False) -> Step:
    def step(attempt: Attempt, clock: FakeClock) -> str:
        attempt.established()
        clock.advance(seconds)
        if refused:
            attempt.refused()
        return "closed by peer"

    return step


def slow_failure(seconds: float) -> Step:
    """Never established, but took a long time to fail (a connect timeout)."""

    def step(attempt: Attempt, clock: FakeClock) -> str:
        clock.advance(seconds)
        return "connect timed out"

    return step


async def run_script(steps: list[Step], unit: float = 0.999999) -> tuple[list[float], Lines]:
    clock, sleeps, lines = FakeClock(), Sleeps(), Lines()
    reconnector = Reconnector(POLICY, clock=clock, sleep=sleeps, random_unit=lambda: unit)
    with pytest.raises(Stop):
        await reconnector.run(scripted(clock, steps), lines, "broken, reconnecting")
    return [round(d, 6) for d in sleeps.delays], lines


def test_policy_ceiling_doubles_to_the_maximum_and_delays_stay_within_bounds() -> None:
    assert [POLICY.ceiling(n) for n in range(1, 9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert POLICY.ceiling(10_000) == 2.0  # no overflow after a very long outage
    rng = random.Random(7)
    for failures in range(1, 12):
        draws = [POLICY.delay(failures, rng.random()) for _ in range(200)]
        assert all(0.05 <= d <= POLICY.ceiling(failures) for d in draws)
        assert max(draws) - min(draws) > 0.25 * (POLICY.ceiling(failures) - 0.05)  # really jittered
    for bad in (
        {"initial_seconds": 0},
        {"initial_seconds": 3.0},
        {"factor": 0.5},
        {"reset_after_seconds": -1},
    ):
        with pytest.raises(ValueError):
            Backoff(**bad)


async def test_backoff_grows_with_jitter_within_bounds() -> None:
    clock, sleeps, lines = FakeClock(), Sleeps(), Lines()
    rng = random.Random(11)
    reconnector = Reconnector(POLICY, clock=clock, sleep=sleeps, random_unit=rng.random)
    with pytest.raises(Stop):
        await reconnector.run(scripted(clock, [fails] * 9), lines, "broken, reconnecting")
    assert len(sleeps.delays) == 9
    for failures, delay in enumerate(sleeps.delays, start=1):
        assert 0.05 <= delay <= POLICY.ceiling(failures)
    assert len(set(sleeps.delays)) == 9  # jittered, not a fixed ladder
    # Each break is logged with what broke and the wait chosen.
    assert [fields["why"] for _, fields in lines.warnings] == ["ConnectionError('refused at connect')"] * 9
    assert [fields["backoff_s"] for _, fields in lines.warnings] == [round(d, 3) for d in sleeps.delays]


async def test_backoff_is_reset_after_a_connection_that_stayed_up() -> None:
    delays, _ = await run_script([fails, fails, fails, fails, up_for(1.0), fails, fails])
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.1, 0.2, 0.4], abs=0.001)


async def test_backoff_is_not_reset_after_a_connection_that_failed_quickly() -> None:
    delays, _ = await run_script([fails, fails, up_for(0.9), fails, up_for(0.2), fails])
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0], abs=0.001)


async def test_backoff_is_not_reset_by_a_long_refused_or_never_established_attempt() -> None:
    steps = [fails, up_for(30.0, refused=True), slow_failure(30.0), fails]
    delays, _ = await run_script(steps)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8], abs=0.001)


async def test_an_attempt_that_reported_its_own_end_is_not_logged_again() -> None:
    def reported(attempt: Attempt, clock: FakeClock) -> None:
        return None

    delays, lines = await run_script([fails, reported, fails])
    assert len(delays) == 3
    assert len(lines.warnings) == 2


async def test_cancellation_stops_the_loop_cleanly() -> None:
    clock, sleeps, lines = FakeClock(), Sleeps(), Lines()
    reconnector = Reconnector(POLICY, clock=clock, sleep=sleeps, random_unit=lambda: 0.5)
    connected = asyncio.Event()
    cleaned_up: list[str] = []

    async def connect_once(attempt: Attempt) -> str:
        attempt.established()
        connected.set()
        try:
            await asyncio.Event().wait()  # a live stream
        finally:
            cleaned_up.append("call cancelled")
        return "closed by peer"

    task = asyncio.create_task(reconnector.run(connect_once, lines))
    await asyncio.wait_for(connected.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned_up == ["call cancelled"]
    assert reconnector.attempts == 1 and sleeps.delays == [] and lines.warnings == []

    # Cancelled while waiting between attempts: it ends there too.
    waiting = asyncio.Event()

    async def slow_sleep(seconds: float) -> None:
        waiting.set()
        await asyncio.sleep(3600)

    between = Reconnector(POLICY, clock=clock, sleep=slow_sleep, random_unit=lambda: 0.5)

    async def broken(attempt: Attempt) -> str:
        raise ConnectionError("down")

    task = asyncio.create_task(between.run(broken, lines))
    await asyncio.wait_for(waiting.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert between.attempts == 1


def test_describe_break_names_the_grpc_status() -> None:
    class Failed(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "connection refused"

    assert describe_break(Failed()) == "UNAVAILABLE: connection refused"
    assert describe_break(ValueError("x")) == "ValueError('x')"


# --- A real user of the loop: BatchingStream against a real grpc.aio server -------------------------

METHOD = "/backbone.test.Batches/Stream"


class Peer:
    """A stream-stream server whose n-th stream follows script[n]: 'drop' at once, or 'serve_long'."""

    def __init__(self, clock: FakeClock, script: list[str]) -> None:
        self.clock = clock
        self.script = script
        self.streams = 0
        self.server = grpc.aio.server()
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(self._stream)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("backbone.test.Batches", {"Stream": handler}),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def _stream(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        mode = self.script[self.streams] if self.streams < len(self.script) else "serve"
        self.streams += 1
        if mode == "drop":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "peer restarting")
        async for request in requests:
            batch = json.loads(request)
            if mode == "serve_long":
                self.clock.advance(5.0)  # this stream stays up a long time (by the injected clock)
            yield json.dumps(
                {"sequence": batch["sequence"], "results": [c * 2 for c in batch["commands"]]}
            ).encode()
            if mode == "serve_long":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "peer restarting after a long run")


class GatedSleeps:
    """An injected sleep that records each wait and returns when the test lets it."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.gate: asyncio.Queue[None] = asyncio.Queue()
        self._recorded = asyncio.Condition()

    async def __call__(self, seconds: float) -> None:
        async with self._recorded:
            self.delays.append(round(seconds, 6))
            self._recorded.notify_all()
        await self.gate.get()

    async def wait_for(self, count: int) -> None:
        async def reached() -> None:
            async with self._recorded:
                await self._recorded.wait_for(lambda: len(self.delays) >= count)

        await asyncio.wait_for(reached(), 10)


async def test_batching_stream_resets_its_backoff_after_a_stream_that_stayed_up() -> None:
    clock, sleeps = FakeClock(), GatedSleeps()
    peer = Peer(clock, ["drop", "drop", "drop", "drop", "serve_long", "drop", "drop"])
    await peer.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{peer.port}")
    stream: BatchingStream[int, int] = BatchingStream(
        "doubler",
        lambda: channel.stream_stream(METHOD)(),
        lambda sequence, commands: json.dumps({"sequence": sequence, "commands": commands}).encode(),
        lambda response: (json.loads(response)["sequence"], json.loads(response)["results"]),
        result_timeout_seconds=10.0,
        reconnector=Reconnector(POLICY, clock=clock, sleep=sleeps, random_unit=lambda: 0.999999),
    )
    try:
        await stream.start()
        for count in range(1, 5):  # four streams dropped at once: the wait grows each time
            await sleeps.wait_for(count)
            if count < 4:
                sleeps.gate.put_nowait(None)
        answer = asyncio.ensure_future(stream.submit(21))  # carried by the fifth stream, which stays up
        sleeps.gate.put_nowait(None)
        assert await asyncio.wait_for(answer, 10) == 42
        for count in range(5, 8):
            await sleeps.wait_for(count)
            sleeps.gate.put_nowait(None)
        assert sleeps.delays[:7] == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.1, 0.2, 0.4], abs=0.001)
        assert await asyncio.wait_for(stream.submit(5), 10) == 10  # the eighth stream serves
    finally:
        await stream.close()
        await channel.close()
        await peer.server.stop(0)
