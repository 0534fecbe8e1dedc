"""Trading's feeds (execution reports, market data) to their subscribers, each through a bounded queue.

The engine loop publishes each journaled batch once; each subscriber gets the
same (read-only) response message in its own queue. A subscriber that falls
more than ``max_queued_batches`` behind is ended with RESOURCE_EXHAUSTED
(SLOW_CONSUMER) rather than slowing the engine or growing without bound.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

import grpc

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2

Message = TypeVar("Message")


def stopping_error() -> ServiceError:
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING, "the trading service is shutting down"
    )


class Feed(Generic[Message]):
    """Hands each published message to every subscriber's bounded queue (shared, read-only).

    ``what`` names the messages in the refusal a slow subscriber is ended with.
    """

    def __init__(self, max_queued_batches: int, what: str) -> None:
        self._max_queued = max_queued_batches
        self._what = what
        self._subscribers: set[Subscription[Message]] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription[Message]:
        subscription = Subscription(self, self._max_queued, self._what)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[Message]) -> None:
        self._subscribers.discard(subscription)

    def deliver(self, message: Message) -> None:
        for subscription in list(self._subscribers):
            subscription.deliver(message)

    def close(self, error: ServiceError | None = None) -> None:
        """End every subscription with `error` (UNAVAILABLE, SERVICE_STOPPING by default)."""
        for subscription in list(self._subscribers):
            subscription.end(error or stopping_error())
        self._subscribers.clear()


class ExecutionFeed(Feed[trading_pb2.SubscribeExecutionsResponse]):
    """Every journaled batch's execution reports, once, to each SubscribeExecutions subscriber."""

    def __init__(self, max_queued_batches: int = 1024) -> None:
        super().__init__(
            max_queued_batches, "batches of execution reports (resubscribe and reconcile with GetOrder)"
        )

    def publish(self, reports: list[common_pb2.ExecutionReport]) -> None:
        if self._subscribers and reports:
            self.deliver(trading_pb2.SubscribeExecutionsResponse(reports=reports))


class Subscription(Generic[Message]):
    """One subscriber's queue of messages (shared, read-only)."""

    def __init__(self, feed: Feed[Message], max_queued: int, what: str) -> None:
        self._feed = feed
        self._max_queued = max_queued
        self._what = what
        self._queue: asyncio.Queue[Message | ServiceError] = asyncio.Queue(max_queued + 1)
        self._ended = False

    def deliver(self, message: Message) -> None:
        if self._queue.qsize() >= self._max_queued:
            self.end(
                ServiceError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    RejectReason.SLOW_CONSUMER,
                    f"more than {self._max_queued} {self._what} were waiting for this subscriber; "
                    "read faster, then resubscribe",
                )
            )
            return
        self._queue.put_nowait(message)

    def end(self, error: ServiceError) -> None:
        """End the subscription: what was queued is dropped and the reader gets `error`."""
        if self._ended:
            return
        self._ended = True
        self._feed.unsubscribe(self)
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(error)

    async def next(self) -> Message:
        item = await self._queue.get()
        if isinstance(item, ServiceError):
            raise item
        return item
