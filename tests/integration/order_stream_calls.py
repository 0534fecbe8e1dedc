"""StreamOrders from a test: one call driven by a thread, its results and reports collected."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from tests.integration.gateway_calls import key

OK = grpc.StatusCode.OK.value[0]


def submit(request: gateway_pb2.SubmitOrderRequest, tag: str = "") -> gateway_pb2.OrderCommand:
    return gateway_pb2.OrderCommand(submit=request, tag=tag)


def cancel(order_id: str, tag: str = "") -> gateway_pb2.OrderCommand:
    return gateway_pb2.OrderCommand(cancel=gateway_pb2.CancelOrderRequest(order_id=order_id), tag=tag)


class OrderStream:
    """One StreamOrders call driven from a test: send batches, collect what comes back."""

    def __init__(
        self, channel: grpc.Channel, api_key: str, *, read: bool = True, cancel_on_disconnect: bool = False
    ) -> None:
        self._cancel_on_disconnect = cancel_on_disconnect
        self._requests: queue.Queue[gateway_pb2.StreamOrdersRequest | None] = queue.Queue()
        self.sent_commands = 0
        self._call = channel.stream_stream(
            "/backbone.gateway.v1.GatewayService/StreamOrders",
            request_serializer=gateway_pb2.StreamOrdersRequest.SerializeToString,
            response_deserializer=gateway_pb2.StreamOrdersResponse.FromString,
        )(self._outgoing(), metadata=key(api_key))
        self.results: dict[tuple[int, int], gateway_pb2.OrderCommandResult] = {}
        self.reports: list[gateway_pb2.ExecutionReport] = []
        self.first: gateway_pb2.StreamOrdersResponse | None = None
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        self._changed = threading.Condition()
        self._reading = threading.Event()
        if read:
            self._reading.set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _outgoing(self) -> Iterator[gateway_pb2.StreamOrdersRequest]:
        while True:
            request = self._requests.get()
            if request is None:
                return
            self.sent_commands += len(request.commands)
            yield request

    def _read(self) -> None:
        try:
            for response in self._call:
                self._reading.wait()
                with self._changed:
                    if self.first is None:
                        self.first = response
                    for result in response.results:
                        key_ = (result.request_number, result.index)
                        assert key_ not in self.results, f"command {key_} answered twice"
                        self.results[key_] = result
                    self.reports.extend(response.reports)
                    self._changed.notify_all()
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.ended.set()
            with self._changed:
                self._changed.notify_all()

    def send(self, *commands: gateway_pb2.OrderCommand) -> None:
        self._requests.put(
            gateway_pb2.StreamOrdersRequest(
                commands=commands, cancel_on_disconnect=self._cancel_on_disconnect
            )
        )

    def start_reading(self) -> None:
        self._reading.set()

    def close(self) -> None:
        """Half-close: the gateway answers what it read, then ends the stream."""
        self._requests.put(None)

    def cut(self) -> None:
        """Drop the stream without waiting for anything."""
        self._call.cancel()

    def wait_results(self, count: int, timeout_seconds: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        with self._changed:
            while len(self.results) < count and not self.ended.is_set():
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.results)} of {count} results in {timeout_seconds:g}s"
                self._changed.wait(left)
        assert len(self.results) >= count, (
            f"stream ended after {len(self.results)} of {count} results: {self.error!r}"
        )

    def wait_reports(self, predicate: Callable[[list[gateway_pb2.ExecutionReport]], bool]) -> None:
        deadline = time.monotonic() + 20
        with self._changed:
            while not predicate(self.reports):
                left = deadline - time.monotonic()
                assert left > 0, f"reports: {self.reports}"
                self._changed.wait(left)


def with_resting_order(
    channel: grpc.Channel, api_key: str, request: gateway_pb2.SubmitOrderRequest
) -> tuple[OrderStream, gateway_pb2.OrderCommandResult]:
    """A new session whose first command places `request`, which must rest; and its result."""
    session = OrderStream(channel, api_key)
    session.send(submit(request))
    session.wait_results(1)
    resting = session.results[(1, 0)]
    assert (resting.code, resting.order.status) == (OK, common_pb2.ORDER_STATUS_NEW), resting
    return session, resting
