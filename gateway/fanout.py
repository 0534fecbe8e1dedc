"""One SubscribeExecutions stream from each trading shard, fanned out to the gateway's callers.

The gateway holds a single subscription to each trading shard's execution reports and hands each
report to the subscribers of its account. Every subscriber has a bounded queue: one that does not
keep up is ended with RESOURCE_EXHAUSTED (SLOW_CONSUMER) rather than slowing everybody down or
growing without bound. Each upstream reconnects with backoff (:mod:`backbone.runtime.reconnect`);
reports a shard journals while its feed is down are not sent again by the feed, so when an
established upstream breaks, its subscribers (StreamExecutions calls and StreamOrders sessions,
both through gateway/executions.py) stay open and, once that shard's feed is back, get a
``FeedResumed`` marker in their queues (before any report of the new feed): each reader fetches
what it missed from the shard's report history, so a trading restart ends no stream and loses no
report. (An upstream with no shard name to resume by ends every subscriber with UNAVAILABLE,
EXECUTIONS_INTERRUPTED; the gateway names every shard.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FeedResumed:
    """In a resuming subscription's queue: the feed of trading shard `shard` broke and is back; the
    reports the shard journaled meanwhile were not delivered (its report history has them)."""

    shard: str


class ResumingSubscription(CallerQueue[common_pb2.ExecutionReport | FeedResumed]):
    """One caller's queue of one account's reports, and a FeedResumed marker when a shard's feed
    is back after a break."""

    def __init__(self, fanout: ExecutionFanout, account_id: str, max_queued: int) -> None:
        super().__init__()
        self.account_id = account_id
        self._fanout = fanout
        self._max_queued = max_queued

    def deliver(self, item: common_pb2.ExecutionReport | FeedResumed) -> None:
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
        self._push(item)

    def close(self) -> None:
        self._fanout.unsubscribe(self)


class ExecutionFanout:
    """Reads trading's report stream and hands each report to its account's subscribers."""

    def __init__(
        self,
        open_subscription: OpenSubscription | Sequence[OpenSubscription],
        *,
        shard_names: Sequence[str] | None = None,
        max_queued_per_subscriber: int = 1024,
        reconnector: Reconnector | None = None,
    ) -> None:
        # One upstream per trading shard, each reconnecting on its own.
        self._opens = upstreams(open_subscription)
        self._names = list(shard_names) if shard_names is not None else [""] * len(self._opens)
        if len(self._names) != len(self._opens):
            raise ValueError("one shard name per upstream")
        # Upstreams that were established and broke: their next establishment is a resume.
        self._broken: set[int] = set()
        first = reconnector or Reconnector()
        self._reconnectors = [first] + [Reconnector(first.policy) for _ in self._opens[1:]]
        self._live: set[int] = set()
        self._max_queued = max_queued_per_subscriber
        self._subscribers: dict[str, set[ResumingSubscription]] = {}
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

    def subscribe_resuming(self, account_id: str, *, max_queued: int | None = None) -> ResumingSubscription:
        """A queue of `account_id`'s reports (bounded by `max_queued`, else the fan-out's bound) that
        a shard's feed break does not end: a FeedResumed marker says when that shard's feed is back
        (the reader fetches what it missed)."""
        subscription = ResumingSubscription(self, account_id, max_queued or self._max_queued)
        self._subscribers.setdefault(account_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: ResumingSubscription) -> None:
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
        subscribers = self._subscribers
        for report in reports:
            subscriptions = subscribers.get(report.order.account_id)
            if subscriptions:  # most accounts of a busy shard have nobody listening here
                for subscription in tuple(subscriptions):
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
        if index not in self._live:
            self._live.add(index)
            if index in self._broken:
                # Before any report of the new feed: a reader catching up from the history then
                # sees the new feed's reports after what it fetched (and drops what it has).
                self._broken.discard(index)
                resumed = FeedResumed(self._names[index])
                for subs in self._subscribers.values():
                    for subscription in subs:
                        subscription.deliver(resumed)
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
            self._interrupted(index)
        return why

    def _interrupted(self, index: int) -> None:
        """Upstream `index` broke: its subscribers wait for its FeedResumed; with no shard name to
        resume by, they are all ended."""
        if self._names[index]:
            self._broken.add(index)
            return
        self._fail_all(
            ServiceError(
                grpc.StatusCode.UNAVAILABLE,
                RejectReason.EXECUTIONS_INTERRUPTED,
                "the execution report feed was interrupted; resubscribe and reconcile open orders "
                "with GetOrder",
            )
        )

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
