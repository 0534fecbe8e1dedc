"""The gateway and its dependencies: what it calls a missing one, and what its health says about them.

A unary call to a service that cannot be reached is refused UNAVAILABLE with that service's
reason (RISK_UNAVAILABLE, TRADING_UNAVAILABLE, SETTLEMENT_UNAVAILABLE) instead of waiting out the
deadline or relaying a bare transport error; a refusal the service itself gave is relayed as it
was. The dependency watch names what is missing and since when, and says so only on a change.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2

from backbone.reasons import RejectReason
from backbone.runtime.config import Settings
from backbone.runtime.errors import ServiceError, failed_precondition
from gateway import app as gateway_app
from gateway import backends as gateway_backends
from gateway.app import DependencyWatch
from gateway.backends import Backends, call_unary

READY = grpc.ChannelConnectivity.READY
DOWN = grpc.ChannelConnectivity.TRANSIENT_FAILURE
SETTINGS = Settings.from_env({})


class FakeChannel:
    """A channel in a fixed state that never becomes ready."""

    def __init__(self, state: grpc.ChannelConnectivity) -> None:
        self.state = state

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.state

    async def channel_ready(self) -> None:
        if self.state != READY:
            await asyncio.Event().wait()


def failing(error: grpc.RpcError) -> Any:
    calls: list[Any] = []

    async def method(request: Any, **options: Any) -> Any:
        calls.append(request)
        raise error

    method.calls = calls  # type: ignore[attr-defined]
    return method


def rpc_error(
    code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, Any], ...] = ()
) -> grpc.RpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details)


async def refusal(method: Any, service: str | None, channel: FakeChannel | None) -> ServiceError:
    with pytest.raises(ServiceError) as raised:
        await call_unary(SETTINGS, method, object(), service=service, channel=cast(Any, channel))
    return raised.value


async def test_a_service_that_is_down_is_not_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_backends, "REACH_WAIT_SECONDS", 0.05)
    method = failing(rpc_error(grpc.StatusCode.INTERNAL, "must not be called"))
    for service, reason in (
        ("risk", RejectReason.RISK_UNAVAILABLE),
        ("trading", RejectReason.TRADING_UNAVAILABLE),
        ("settlement", RejectReason.SETTLEMENT_UNAVAILABLE),
    ):
        error = await refusal(method, service, FakeChannel(DOWN))
        assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, reason)
        assert error.message == f"{service} cannot be reached: it is down; nothing was sent; retry"
    assert method.calls == []


async def test_a_service_lost_during_the_call_is_named() -> None:
    method = failing(rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed"))
    error = await refusal(method, "settlement", FakeChannel(READY))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, RejectReason.SETTLEMENT_UNAVAILABLE)
    assert "went away during the call (Socket closed); it may have been applied" in error.message


async def test_a_deadline_is_unavailable_only_when_the_service_was_not_reached() -> None:
    method = failing(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    error = await refusal(method, "risk", FakeChannel(grpc.ChannelConnectivity.CONNECTING))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, RejectReason.RISK_UNAVAILABLE)
    assert "could not be reached before the deadline" in error.message
    # Connected but slow: the deadline is relayed as it is (the call may still be running there).
    error = await refusal(method, "risk", FakeChannel(READY))
    assert (error.code, error.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, RejectReason.UNSPECIFIED)


async def test_a_refusal_of_the_service_itself_is_relayed() -> None:
    refused = failed_precondition(RejectReason.UNKNOWN_ACCOUNT, "no such account")
    method = failing(
        rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "no such account", refused.trailing_metadata())
    )
    error = await refusal(method, "settlement", FakeChannel(READY))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, RejectReason.UNKNOWN_ACCOUNT)
    # Without a service named, nothing is told apart (the old behaviour).
    method = failing(rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed"))
    error = await refusal(method, None, None)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, RejectReason.UNSPECIFIED)


class FakeStub:
    def __init__(self, method: Any) -> None:
        self.GetBalances = method


async def test_backends_know_which_service_a_stub_method_calls() -> None:
    lost = failing(rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection reset"))
    other = failing(rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection reset"))
    backends = Backends(
        settings=SETTINGS,
        redis=cast(Any, None),
        risk=cast(Any, FakeStub(other)),
        trading=cast(Any, FakeStub(other)),
        settlement=cast(Any, FakeStub(lost)),
        reservations=cast(Any, None),
        orders=cast(Any, None),
        fanout=cast(Any, None),
        instruments=cast(Any, None),
        assets=cast(Any, None),
        auth=cast(Any, None),
        settlement_channel=cast(Any, FakeChannel(READY)),
    )
    with pytest.raises(ServiceError) as raised:
        await backends.call(backends.settlement.GetBalances, object())
    assert raised.value.reason == RejectReason.SETTLEMENT_UNAVAILABLE
    with pytest.raises(ServiceError) as raised:
        await backends.call(failing(rpc_error(grpc.StatusCode.UNAVAILABLE, "x")), object())
    assert raised.value.reason == RejectReason.UNSPECIFIED  # not a stub method: not told apart


def test_the_watch_names_what_is_missing_and_since_when() -> None:
    now = [100.0]
    changes: list[bool] = []
    watch = DependencyWatch(
        cast(Any, {"risk": None, "trading": None, "settlement": None}),
        lambda: changes.append(watch.all_serving),
        clock=lambda: now[0],
    )
    assert not watch.all_serving
    for name in ("risk", "trading", "settlement"):
        watch._set(name, True, "its health says SERVING")
    assert watch.all_serving and changes == [False, False, True]
    assert watch.describe() == "risk, trading and settlement serving"

    now[0] = 110.0
    watch._set("risk", False, "UNAVAILABLE: connection refused")
    now[0] = 112.5
    watch._set("risk", False, "UNAVAILABLE: still refused")  # no change: no notice
    assert changes == [False, False, True, False]
    assert watch.describe() == "risk missing for 2.5s (UNAVAILABLE: still refused)"
    watch._set("risk", True, "its health says SERVING")
    assert changes[-1] is True and watch.describe() == "risk, trading and settlement serving"


class ScriptedHealth:
    """A channel whose health Check answers from a script (a status, or a failing code), then hangs."""

    def __init__(self, script: list[int | grpc.StatusCode]) -> None:
        self.script = list(script)
        self.done = asyncio.Event()

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        async def check(request: Any, **options: Any) -> Any:
            if not self.script:
                self.done.set()
                await asyncio.Event().wait()
            step = self.script.pop(0)
            if isinstance(step, grpc.StatusCode):
                raise rpc_error(step, step.name.lower())
            return health_pb2.HealthCheckResponse(status=step)

        return check

    unary_stream = unary_unary  # Watch: never called


async def test_slow_answers_make_a_dependency_missing_only_when_they_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway_app, "DEPENDENCY_POLL_SECONDS", 0)
    slow, refused = grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    channel = ScriptedHealth(
        [serving, slow, slow, serving, slow, slow, slow, serving, refused, serving, not_serving]
    )
    seen: list[tuple[bool, str]] = []
    watch = DependencyWatch(
        cast(Any, {"risk": channel}), lambda: seen.append((watch.serving["risk"], watch.why["risk"]))
    )
    task = asyncio.create_task(watch.watch("risk"))
    await asyncio.wait_for(channel.done.wait(), 5)
    task.cancel()
    assert seen == [
        (True, "its health says SERVING"),
        (False, "DEADLINE_EXCEEDED: deadline_exceeded"),  # the third slow answer in a row
        (True, "its health says SERVING"),
        (False, "UNAVAILABLE: unavailable"),  # refused: at once
        (True, "its health says SERVING"),
        (False, "its health says NOT_SERVING"),
    ]
