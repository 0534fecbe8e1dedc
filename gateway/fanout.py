"""One SubscribeExecutions stream from each trading shard, fanned out to StreamExecutions callers.

The gateway holds a single subscription to trading's execution reports and
hands each report to the subscribers of its account. Every subscriber has a
bounded queue: one that does not keep up is ended with RESOURCE_EXHAUSTED
(SLOW_CONSUMER) rather than slowing everybody down or growing without
bound. The upstream stream reconnects with backoff
(:mod:`backbone.runtime.reconnect`); reports journaled while
it was down are not replayed, so when an established upstream breaks every
subscriber is ended with UNAVAILABLE (EXECUTIONS_INTERRUPTED) and learns to
resubscribe and reconcile with GetOrder.

With several trading shards the fan-out holds one upstream per shard (an account's orders may be on
any of them); it is connected while every one of them is, and a break of any one ends every
subscriber the same way, since the reports of that shard's accounts were lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.runtime.reconnect import Attempt, Reconnector, describe_break
from gateway.caller_queue import CallerQueue, wait_set

log = structlog.get_logger("backbone.gateway")


OpenSubscription = Callable[[], Any]  # returns a grpc.aio.UnaryStreamCall

# How long a new subscriber waits for the upstream feed before it is answered.
FEED_WAIT_SECONDS = 2.0


class Subscription(CallerQueue[common_pb2.ExecutionReport]):
    """One caller's queue of reports for one account."""

    def __init__(self, fanout: ExecutionFanout, account_id: str, max_queued: int) -> None:
        super().__init__()
        self.account_id = account_id
        self._fanout = fanout
        self._max_queued = max_queued

    def deliver(self, report: common_pb2.ExecutionReport) -> None:
        if self._error is not None:
            return
        if len(self._items) >= self._max_queued:
            self.fail(
                ServiceError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    RejectReason.SLOW_CONSUMER,
                    f"more than {self._max_queued} execution reports were waiting for this stream; "
                    "read faster, then resubscribe and reconcile with GetOrder",
                )
            )
            return
        self._push(report)

    def close(self) -> None:
        self._fanout.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class ExecutionFanout:
    """Reads trading's report stream and hands each report to its account's subscribers."""

    def __init__(
        self,
        open_subscription: OpenSubscription | Sequence[OpenSubscription],
        *,
        max_queued_per_subscriber: int = 1024,
        reconnector: Reconnector | None = None,
    ) -> None:
        # One upstream per trading shard, each reconnecting on its own.
        self._opens = upstreams(open_subscription)
        first = reconnector or Reconnector()
        self._reconnectors = [first] + [Reconnector(first.policy) for _ in self._opens[1:]]
        self._live: set[int] = set()
        self._max_queued = max_queued_per_subscriber
        self._subscribers: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gateway-executions-fanout")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail_all(
            ServiceError(
                grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING, "the gateway is shutting down"
            )
        )

    def subscribe(self, account_id: str, *, max_queued: int | None = None) -> Subscription:
        """A queue of `account_id`'s reports (bounded by `max_queued`, else the fan-out's bound)."""
        subscription = Subscription(self, account_id, max_queued or self._max_queued)
        self._subscribers.setdefault(account_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subs = self._subscribers.get(subscription.account_id)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._subscribers[subscription.account_id]

    async def wait_connected(self, timeout_seconds: float) -> bool:
        """Wait (bounded) until the upstream subscription is established."""
        return await wait_set(self.connected, timeout_seconds)

    def dispatch(self, reports: Any) -> None:
        """Hand each report to the subscribers of its order's account."""
        for report in reports:
            for subscription in tuple(self._subscribers.get(report.order.account_id, ())):
                subscription.deliver(report)

    def _fail_all(self, error: ServiceError) -> None:
        for subs in list(self._subscribers.values()):
            for subscription in list(subs):
                subscription.fail(error)
        self._subscribers.clear()

    async def _run(self) -> None:
        await run_upstreams(
            self._reconnectors, self._subscribe_once, "execution subscription broken, reconnecting"
        )

    def _mark_live(self, index: int, attempt: Attempt) -> None:
        self._live.add(index)
        if len(self._live) == len(self._opens):
            self.connected.set()
        attempt.established()

    async def _subscribe_once(self, index: int, attempt: Attempt) -> str:
        """One upstream subscription: dispatch until it ends; then end every subscriber if it was live."""
        call = self._opens[index]()
        headers = asyncio.create_task(self._mark_live_soon(call, index, attempt))
        try:
            async for response in call:
                self._mark_live(index, attempt)
                self.dispatch(response.reports)
            why = "closed by trading"
        except asyncio.CancelledError:
            headers.cancel()
            call.cancel()
            raise
        except Exception as error:  # any failure: reconnect
            why = describe_break(error)
        headers.cancel()
        call.cancel()
        if index in self._live:
            self._live.discard(index)
            self.connected.clear()
            self._fail_all(
                ServiceError(
                    grpc.StatusCode.UNAVAILABLE,
                    RejectReason.EXECUTIONS_INTERRUPTED,
                    "the execution report feed was interrupted; resubscribe and reconcile "
                    "open orders with GetOrder",
                )
            )
        return why

    async def _mark_live_soon(self, call: Any, index: int, attempt: Attempt) -> None:
        """Take the feed as live once trading has sent headers: it sends them after registering us."""
        await call.initial_metadata()
        if not call.done():
            self._mark_live(index, attempt)


async def run_upstreams(
    reconnectors: Sequence[Reconnector],
    subscribe_once: Callable[[int, Attempt], Awaitable[str | None]],
    message: str,
) -> None:
    """Keep each upstream (by index) subscribed, each with its own reconnector, until cancelled."""
    await asyncio.gather(
        *(
            reconnector.run(functools.partial(subscribe_once, index), log, message)
            for index, reconnector in enumerate(reconnectors)
        )
    )


def upstreams(open_subscription: OpenSubscription | Sequence[OpenSubscription]) -> list[OpenSubscription]:
    """The upstreams a fan-out reads: one, or one per trading shard."""
    if isinstance(open_subscription, Sequence):
        return list(open_subscription)
    return [open_subscription]
