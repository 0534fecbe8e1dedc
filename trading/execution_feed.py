"""Execution reports to SubscribeExecutions subscribers, each through a bounded queue.

The engine loop publishes the reports of every journaled batch once; each
subscriber gets the same (read-only) response message in its own queue. A
subscriber that falls more than ``max_queued_batches`` behind is ended with
RESOURCE_EXHAUSTED (SLOW_CONSUMER) rather than slowing the engine or growing
without bound.
"""

from __future__ import annotations

import asyncio

import grpc

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2


def stopping_error() -> ServiceError:
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING, "the trading service is shutting down"
    )


class ExecutionFeed:
    """Hands every batch of reports to each subscriber's bounded queue."""

    def __init__(self, max_queued_batches: int = 1024) -> None:
        self._max_queued = max_queued_batches
        self._subscribers: set[Subscription] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, self._max_queued)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, reports: list[common_pb2.ExecutionReport]) -> None:
        if not self._subscribers or not reports:
            return
        response = trading_pb2.SubscribeExecutionsResponse(reports=reports)
        for subscription in list(self._subscribers):
            subscription.deliver(response)

    def close(self) -> None:
        for subscription in list(self._subscribers):
            subscription.end(stopping_error())
        self._subscribers.clear()


class Subscription:
    """One subscriber's queue of report batches (shared, read-only messages)."""

    def __init__(self, feed: ExecutionFeed, max_queued: int) -> None:
        self._feed = feed
        self._max_queued = max_queued
        self._queue: asyncio.Queue[trading_pb2.SubscribeExecutionsResponse | ServiceError] = asyncio.Queue(
            max_queued + 1
        )
        self._ended = False

    def deliver(self, response: trading_pb2.SubscribeExecutionsResponse) -> None:
        if self._queue.qsize() >= self._max_queued:
            self.end(
                ServiceError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    RejectReason.SLOW_CONSUMER,
                    f"more than {self._max_queued} batches of execution reports were waiting for "
                    "this subscriber; read faster, then resubscribe and reconcile with GetOrder",
                )
            )
            return
        self._queue.put_nowait(response)

    def end(self, error: ServiceError) -> None:
        """End the subscription: what was queued is dropped and the reader gets `error`."""
        if self._ended:
            return
        self._ended = True
        self._feed.unsubscribe(self)
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(error)

    async def next(self) -> trading_pb2.SubscribeExecutionsResponse:
        item = await self._queue.get()
        if isinstance(item, ServiceError):
            raise item
        return item
