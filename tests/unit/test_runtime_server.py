"""The shared server runtime: health, reflection, error details, request ids, exclusive ports, draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc
import psycopg_pool
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from backbone.reasons import RejectReason
from backbone.runtime.config import Settings
from backbone.runtime.context import request_id_var
from backbone.runtime.errors import ServiceError, from_rpc_error, invalid_field
from backbone.runtime.server import BindError, HealthEntries, RunningServer

SERVICE = "backbone.test.Probe"


class ProbeApp:
    """A service with three methods: echo the request id, refuse with details, crash, or wait."""

    name = "probe"

    def __init__(self) -> None:
        self.started = False
        self.stopped = False
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        async def request_id(request: bytes, context: object) -> bytes:
            return request_id_var.get().encode()

        async def refuse(request: bytes, context: object) -> bytes:
            raise invalid_field("price", RejectReason.INVALID_PRICE, "must be a multiple of 0.01")

        async def crash(request: bytes, context: object) -> bytes:
            raise RuntimeError("secret internals")

        async def busy(request: bytes, context: object) -> bytes:
            raise psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec")

        async def slow(request: bytes, context: object) -> bytes:
            self.entered.set()
            await self.release.wait()
            return b"done"

        async def feed(request: bytes, context: object) -> AsyncIterator[bytes]:
            number = 0
            while True:  # a feed never ends by itself
                number += 1
                yield str(number).encode()
                await asyncio.sleep(0.01)

        handlers = {
            name: grpc.unary_unary_rpc_method_handler(behavior)
            for name, behavior in {
                "RequestId": request_id,
                "Refuse": refuse,
                "Crash": crash,
                "Busy": busy,
                "Slow": slow,
            }.items()
        }
        handlers["Feed"] = grpc.unary_stream_rpc_method_handler(feed)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        return [SERVICE]

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


def settings() -> Settings:
    return Settings.from_env({"BACKBONE_GRACE_PERIOD_SECONDS": "5"})


async def test_runtime_serves_health_reflection_errors_and_request_ids() -> None:
    app = ProbeApp()
    running = RunningServer(app, settings())
    await running.start("127.0.0.1:0")
    target = f"127.0.0.1:{running.port}"
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            # Watch too (a handler that writes and returns, not an async generator).
            watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
            first = await asyncio.wait_for(watch.read(), 5)
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()

            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            names = {s.name async for reply in replies for s in reply.list_services_response.service}
            assert {SERVICE, "grpc.health.v1.Health"} <= names

            echo = channel.unary_unary(f"/{SERVICE}/RequestId")
            assert await echo(b"", metadata=(("x-request-id", "req-42"),)) == b"req-42"
            assert len(await echo(b"")) == 32  # made up when the caller sends none

            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(f"/{SERVICE}/Refuse")(b"")
            error = from_rpc_error(refused.value)
            assert (error.code, error.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                RejectReason.INVALID_PRICE,
            )
            assert [(v.field, v.description) for v in error.violations] == [
                ("price", "must be a multiple of 0.01")
            ]

            with pytest.raises(grpc.aio.AioRpcError) as crashed:
                await channel.unary_unary(f"/{SERVICE}/Crash")(b"")
            assert crashed.value.code() == grpc.StatusCode.INTERNAL
            assert "secret" not in (crashed.value.details() or "")

            # A database with no free connection is UNAVAILABLE (retry), not INTERNAL.
            with pytest.raises(grpc.aio.AioRpcError) as busy:
                await channel.unary_unary(f"/{SERVICE}/Busy")(b"")
            error = from_rpc_error(busy.value)
            assert (error.code, error.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                RejectReason.DATABASE_UNAVAILABLE,
            )
    finally:
        await running.stop()
    assert app.started and app.stopped


async def test_a_taken_port_is_refused_not_shared() -> None:
    first = RunningServer(ProbeApp(), settings())
    await first.start("127.0.0.1:0")
    try:
        second = RunningServer(ProbeApp(), settings())
        with pytest.raises(BindError):
            await second.start(f"127.0.0.1:{first.port}")
        await second.server.stop(0)
    finally:
        await first.stop()


async def test_stop_drains_in_flight_calls_and_reports_not_serving() -> None:
    app = ProbeApp()
    running = RunningServer(app, settings())
    await running.start("127.0.0.1:0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        in_flight = asyncio.ensure_future(channel.unary_unary(f"/{SERVICE}/Slow")(b""))
        await asyncio.wait_for(app.entered.wait(), 5)  # the call is being handled when the stop starts
        stopping = asyncio.ensure_future(running.stop())
        health = health_pb2_grpc.HealthStub(channel)

        async def not_serving() -> bool:
            try:
                answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            except grpc.aio.AioRpcError:
                return True  # already refusing new calls
            return answer.status == health_pb2.HealthCheckResponse.NOT_SERVING

        assert await asyncio.wait_for(_poll(not_serving), 5)
        app.release.set()
        assert await in_flight == b"done"
        await stopping
    assert app.stopped


async def test_a_feed_ended_by_the_drain_says_unavailable_not_ok() -> None:
    """A server-streaming feed has no end of its own: when the server stops, it ends at a message
    boundary with UNAVAILABLE / SERVICE_STOPPING, which clients (the SDK's streams) retry, not with
    OK, which reads as "nothing more will come"."""
    running = RunningServer(ProbeApp(), settings())
    await running.start("127.0.0.1:0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        call = channel.unary_stream(f"/{SERVICE}/Feed")(b"")
        assert await call.read() == b"1"
        stopping = asyncio.ensure_future(running.stop())
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while await asyncio.wait_for(call.read(), 5) is not grpc.aio.EOF:
                pass
        await stopping
    error = from_rpc_error(ended.value)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING)


async def _poll(condition: object) -> bool:
    while True:
        if await condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.01)


def test_service_error_round_trips_through_status_details() -> None:
    original = ServiceError(
        grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER", "no order o-1", metadata={"order_id": "o-1"}
    )
    status = original.to_status()
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert status.message == "no order o-1"


async def test_an_app_that_says_not_serving_during_start_is_not_overruled() -> None:
    """Risk rebuilding (or a gateway missing a dependency) at start stays NOT_SERVING after start()."""

    class NotReadyApp(ProbeApp):
        def use_health(self, entries: HealthEntries) -> None:
            self.entries = entries

        async def start(self) -> None:
            await self.entries.set("", False, lambda: "rebuilding")
            self.started = True

    app = NotReadyApp()
    running = RunningServer(app, settings())
    await running.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            whole = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert whole.status == health_pb2.HealthCheckResponse.NOT_SERVING
            own = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            assert own.status == health_pb2.HealthCheckResponse.SERVING  # not claimed: the runtime's
    finally:
        await running.stop()


async def test_thousands_of_concurrent_calls_are_all_served() -> None:
    """gRPC's server cancels calls past 1,000 waiting to be taken up (its default pending-request
    limit): a burst of concurrent calls must be queued and served, not answered CANCELLED."""
    running = RunningServer(ProbeApp(), settings())
    await running.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            echo = channel.unary_unary(f"/{SERVICE}/RequestId")
            await echo(b"")

            async def call() -> str:
                try:
                    await echo(b"", timeout=30)
                except grpc.aio.AioRpcError as error:
                    return error.code().name
                return "OK"

            outcomes = await asyncio.gather(*(call() for _ in range(4000)))
    finally:
        await running.stop()
    assert {outcome: outcomes.count(outcome) for outcome in set(outcomes)} == {"OK": 4000}
