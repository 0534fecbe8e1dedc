"""Raw gRPC baselines on this machine: what bare grpc.aio does with nothing of Backbone in the way.

- unary echo: a grpc.aio server in a process of its own answers each call with its request; the
  client keeps ``concurrency`` calls in flight -> calls/s, and the CPU each side spent per call
  (the server's is what a grpc.aio unary server that does nothing costs here: the floor under the
  gateway's SubmitOrder). The request is a serialized SubmitOrderRequest (what a unary order
  carries).
- relay: ``hops`` processes in a line, client -> p1 -> p2 -> ... -> pN, joined by bidirectional
  streams. Each message is a StreamOrdersRequest of ``batch`` orders; every hop parses it, reads
  every order (its client order id, price and quantity) and passes it on; the last hop answers
  each message with an acknowledgement that travels back up the line. The client keeps ``window``
  messages unacknowledged -> orders/s.

Both run under uvloop, as the services do. `python -m ops.perf.raw` (or scripts/raw_baselines.py)
prints both figures; the processes it starts are ended when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import grpc

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.runtime.embedded import free_port
from ops.perf.cpu import CpuMeter

ECHO_METHOD = "/backbone.bench.Echo/Call"
RELAY_METHOD = "/backbone.bench.Relay/Pass"
START_TIMEOUT_SECONDS = 30.0
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]

_Batch = gateway_pb2.StreamOrdersRequest
_Ack = gateway_pb2.StreamOrdersResponse


def order_request(number: int) -> gateway_pb2.SubmitOrderRequest:
    side = common_pb2.SIDE_BUY if number % 2 else common_pb2.SIDE_SELL
    return gateway_pb2.SubmitOrderRequest(
        client_order_id=f"raw-{number}",
        symbol="RAW-USD",
        side=side,
        price=f"{100 + number % 50}.{number % 100:02d}",
        quantity=f"{1 + number % 10}.00",
    )


def order_batch(first: int, size: int) -> gateway_pb2.StreamOrdersRequest:
    request = gateway_pb2.StreamOrdersRequest()
    for number in range(first, first + size):
        request.commands.add().submit.CopyFrom(order_request(number))
    return request


def read_every_order(batch: gateway_pb2.StreamOrdersRequest) -> int:
    """Touch what a hop would look at in each order; the number of orders."""
    count = 0
    for command in batch.commands:
        submit = command.submit
        if submit.client_order_id and submit.price and submit.quantity:
            count += 1
    return count


# --- the servers (each in a process of its own) ----------------------------------------------------


async def _serve_echo(port: int) -> None:
    async def call(request: bytes, context: Any) -> bytes:
        return request

    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    handler = grpc.method_handlers_generic_handler(
        "backbone.bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _serve_relay(port: int, next_address: str | None) -> None:
    channel = grpc.aio.insecure_channel(next_address, options=CHANNEL_OPTIONS) if next_address else None
    downstream = (
        channel.stream_stream(
            RELAY_METHOD, request_serializer=_Batch.SerializeToString, response_deserializer=_Ack.FromString
        )
        if channel is not None
        else None
    )

    async def relay(
        requests: AsyncIterator[gateway_pb2.StreamOrdersRequest], context: Any
    ) -> AsyncIterator[Any]:
        if downstream is None:  # the last hop: acknowledge each message
            async for batch in requests:
                yield _Ack(max_in_flight=read_every_order(batch))
            return
        call = downstream()

        async def forward() -> None:
            async for batch in requests:
                read_every_order(batch)
                await call.write(batch)
            await call.done_writing()

        task = asyncio.create_task(forward())
        try:
            async for ack in call:
                yield ack
        finally:
            task.cancel()

    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    handler = grpc.method_handlers_generic_handler(
        "backbone.bench.Relay",
        {
            "Pass": grpc.stream_stream_rpc_method_handler(
                relay, request_deserializer=_Batch.FromString, response_serializer=_Ack.SerializeToString
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# --- starting them ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _processes(commands: list[list[str]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        for command in commands:
            started.append(
                subprocess.Popen([sys.executable, "-m", "ops.perf.raw", *command], stdin=subprocess.DEVNULL)
            )
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def _ready(address: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the baseline server for {address} exited with code {process.returncode}")
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                await asyncio.wait_for(channel.channel_ready(), 1.0)
                return
            except TimeoutError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the baseline server for {address} did not start in {START_TIMEOUT_SECONDS:g} s"
            )


# --- the clients ------------------------------------------------------------------------------------


class EchoFigures(NamedTuple):
    """The unary echo's rate, and the CPU each side spent per call: the server's is the floor of
    what any grpc.aio unary server (the gateway's SubmitOrder among them) pays per call here."""

    calls_per_s: float
    server_cpu_us_per_call: float
    client_cpu_us_per_call: float


async def unary_echo(seconds: float, concurrency: int = 64) -> EchoFigures:
    """A grpc.aio unary echo, `concurrency` calls in flight, server in its own process."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    with _processes([["echo", "--port", str(port)]]) as (server,):
        await _ready(address, server)
        payload = order_request(1).SerializeToString()
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            call: Any = channel.unary_unary(ECHO_METHOD)
            for _ in range(50):  # warm the connection up
                await call(payload, timeout=10)
            count = 0
            until = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal count
                while time.perf_counter() < until:
                    await call(payload, timeout=30)
                    count += 1

            # The client is this process alone (the server is its child).
            meter = CpuMeter({"server": server.pid, "client": os.getpid()}, alone=frozenset({"client"}))
            meter.start()
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            spent = meter.stop()
    per_call = {name: round(seconds_spent * 1e6 / max(count, 1), 1) for name, seconds_spent in spent.items()}
    return EchoFigures(count / elapsed, per_call.get("server", 0.0), per_call.get("client", 0.0))


async def relay_rate(seconds: float, hops: int = 4, batch: int = 100, window: int = 16) -> float:
    """Orders/s through `hops` relaying processes, `batch` orders per message, `window` unacknowledged."""
    ports = [free_port() for _ in range(hops)]
    addresses = [f"127.0.0.1:{port}" for port in ports]
    commands = [
        ["relay", "--port", str(port), *(["--next", addresses[i + 1]] if i + 1 < hops else [])]
        for i, port in enumerate(ports)
    ]
    with _processes(commands) as processes:
        for address, process in zip(addresses, processes, strict=True):
            await _ready(address, process)
        messages = [order_batch(i * batch, batch) for i in range(window * 2)]
        async with grpc.aio.insecure_channel(addresses[0], options=CHANNEL_OPTIONS) as channel:
            open_call = channel.stream_stream(
                RELAY_METHOD,
                request_serializer=_Batch.SerializeToString,
                response_deserializer=_Ack.FromString,
            )
            call: Any = open_call()
            credit = asyncio.Semaphore(window)
            acked = 0
            measuring_from: float | None = None
            until = time.perf_counter() + seconds + 1.0  # the first second warms up

            async def send() -> None:
                number = 0
                while time.perf_counter() < until:
                    await credit.acquire()
                    await call.write(messages[number % len(messages)])
                    number += 1
                await call.done_writing()

            sender = asyncio.create_task(send())
            warm_until = time.perf_counter() + 1.0
            async for ack in call:
                credit.release()
                now = time.perf_counter()
                if now < warm_until:
                    continue
                if measuring_from is None:
                    measuring_from = now
                    continue
                acked += ack.max_in_flight
            await sender
            elapsed = time.perf_counter() - (measuring_from or time.perf_counter())
            return acked / elapsed if elapsed > 0 else 0.0


def _run(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.perf.raw", description=__doc__)
    roles = parser.add_subparsers(dest="role")
    echo = roles.add_parser("echo", help="(internal) serve the unary echo")
    echo.add_argument("--port", type=int, required=True)
    relay = roles.add_parser("relay", help="(internal) serve one relay hop")
    relay.add_argument("--port", type=int, required=True)
    relay.add_argument("--next")
    parser.add_argument("--seconds", type=float, default=5.0)
    options = parser.parse_args(argv)
    if options.role == "echo":
        _run(_serve_echo(options.port))
        return 0
    if options.role == "relay":
        _run(_serve_relay(options.port, options.next))
        return 0
    echo = _run(unary_echo(options.seconds))
    relayed = _run(relay_rate(options.seconds))
    print(f"raw grpc.aio unary echo, 64 in flight:            {echo.calls_per_s:>10,.0f} calls/s")
    server, client = echo.server_cpu_us_per_call, echo.client_cpu_us_per_call
    print(f"  CPU per call (us): server {server:,.0f}, client {client:,.0f}")
    print(f"4 processes relaying batches of 100 (streams):    {relayed:>10,.0f} orders/s")
    figures = {
        "raw_unary_calls_per_s": round(echo.calls_per_s, 1),
        "raw_unary_server_cpu_us_per_call": echo.server_cpu_us_per_call,
        "raw_unary_client_cpu_us_per_call": echo.client_cpu_us_per_call,
        "raw_relay_orders_per_s": round(relayed, 1),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
