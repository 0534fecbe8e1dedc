"""Resolving orders whose outcome is unknown: found in trading's journal, or fenced for good.

An order the gateway answered OUTCOME_UNKNOWN (its NewOrder was sent to
trading and never answered: trading was killed mid-batch, the stream broke,
the answer timed out) may be live, or may never have reached the journal
while risk still holds its reservation. :class:`OutcomeResolver` settles
every such order by itself, in the background: it asks trading's
ResolveOrders, which answers FOUND with the order's state when it is
journaled (then trading's own events settle its reservation, as for any
order) or fences it (a journaled record: the order id is refused from then
on, even if its NewOrder is still on its way, and risk releases the
reservation on that record) and answers FENCED; the resolver then frees the
order's client order id, so a retry with it places the order anew.

The queue is bounded (``max_pending`` orders): beyond it an order is logged
and left to the client's retry with the same client order id, which resolves
the order that holds the id on its own path (gateway/order_saga.py). While
trading cannot be reached the resolver retries with backoff; it keeps the
orders in memory only, so a gateway restart leaves its unresolved orders to
those retries as well.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import grpc
import structlog

from backbone.ids import shard_of_order_id
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2
from gateway.backends import Backends

log = structlog.get_logger("backbone.gateway")

MAX_PENDING = 10_000
BATCH = 500  # orders per ResolveOrders call
BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0

FOUND = trading_pb2.RESOLUTION_FOUND
FENCED = trading_pb2.RESOLUTION_FENCED

OnFenced = Callable[[trading_pb2.NewOrder], Awaitable[None]]


async def resolve_orders(
    backends: Backends, orders: Sequence[tuple[str, str]]
) -> list[trading_pb2.OrderResolution]:
    """Trading's resolution of each (order id, account id), in order, each asked of the shard its
    id names. Raises ServiceError."""
    shards = backends.trading_shards
    groups: dict[str, list[int]] = {}
    for index, (order_id, _) in enumerate(orders):
        groups.setdefault(shards.of_order(order_id).name, []).append(index)
    answers = await asyncio.gather(
        *(
            backends.call(
                shards.named(name).stub.ResolveOrders,
                trading_pb2.ResolveOrdersRequest(
                    orders=[
                        trading_pb2.OrderToResolve(order_id=orders[i][0], account_id=orders[i][1])
                        for i in indexes
                    ]
                ),
            )
            for name, indexes in groups.items()
        )
    )
    by_index: dict[int, trading_pb2.OrderResolution] = {}
    for indexes, response in zip(groups.values(), answers, strict=True):
        by_index.update(zip(indexes, response.results, strict=False))
    results = [by_index[index] for index in sorted(by_index)]
    if len(results) != len(orders) or any(
        r.order_id != o or r.resolution not in (FOUND, FENCED)
        for r, (o, _) in zip(results, orders, strict=False)
    ):
        raise ServiceError(
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.PROTOCOL_ERROR,
            "trading answered ResolveOrders with other orders than it was asked about",
        )
    return results


class OutcomeResolver:
    """Settles, in the background, every order answered OUTCOME_UNKNOWN (one per process)."""

    def __init__(
        self,
        backends: Backends,
        on_fenced: OnFenced,
        *,
        max_pending: int = MAX_PENDING,
        batch: int = BATCH,
    ) -> None:
        self.backends = backends
        self._on_fenced = on_fenced
        self._max_pending = max_pending
        self._batch = batch
        self._pending: dict[str, trading_pb2.NewOrder] = {}  # in arrival order
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.found = 0
        self.fenced = 0

    def start(self) -> None:
        """Run in the background; the task is one of the backends' (cancelled when they close)."""
        if self._task is not None:
            return
        task = asyncio.create_task(self._run(), name="gateway-outcome-resolver")
        self._task = task
        self.backends.background.add(task)
        task.add_done_callback(self.backends.background.discard)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def add(self, order: trading_pb2.NewOrder) -> bool:
        """Resolve `order` in the background; False when the queue is full (it is logged)."""
        if order.order_id in self._pending:
            return True
        if len(self._pending) >= self._max_pending:
            log.error(
                "outcome resolver queue full: the order is left to a retry with its client order id",
                order_id=order.order_id,
                account_id=order.account_id,
                pending=len(self._pending),
            )
            return False
        self._pending[order.order_id] = order
        self._wake.set()
        return True

    def awaiting(self, order_id: str) -> bool:
        """True while `order_id` waits for its resolution here (its attempt is over)."""
        return order_id in self._pending

    def forget(self, order_id: str) -> None:
        """`order_id` was resolved on another path (a retry with its client order id)."""
        self._pending.pop(order_id, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST_SECONDS
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            # One shard's orders at a time (the first waiting one's): a shard that cannot answer
            # sends its orders to the back of the queue, so the other shards' are resolved meanwhile.
            shard = shard_of_order_id(next(iter(self._pending)))
            orders = [o for o in self._pending.values() if shard_of_order_id(o.order_id) == shard][
                : self._batch
            ]
            try:
                results = await resolve_orders(self.backends, [(o.order_id, o.account_id) for o in orders])
            except ServiceError as error:
                if error.code == grpc.StatusCode.INVALID_ARGUMENT:  # a bug: do not retry forever
                    log.error(
                        "trading refused to resolve orders; they stay unresolved",
                        orders=[o.order_id for o in orders][:20],
                        error=str(error),
                    )
                    for order in orders:
                        self._pending.pop(order.order_id, None)
                    continue
                for order in orders:
                    self._pending[order.order_id] = self._pending.pop(order.order_id)
                log.info(
                    "cannot resolve orders of unknown outcome yet; retrying",
                    pending=len(self._pending),
                    retry_in_s=round(backoff, 2),
                    error=str(error),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            except Exception:  # a bug here must not end the resolver
                log.exception("outcome resolver failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            backoff = BACKOFF_FIRST_SECONDS
            await self._settle(orders, results)

    async def _settle(
        self, orders: list[trading_pb2.NewOrder], results: list[trading_pb2.OrderResolution]
    ) -> None:
        found = fenced = 0
        for order, result in zip(orders, results, strict=True):
            if self._pending.pop(order.order_id, None) is None:
                continue  # resolved meanwhile on the retry path
            if result.resolution == FENCED:
                fenced += 1
                # Risk releases the reservation on the fence record; the client order id is free again.
                await self._on_fenced(order)
            else:
                found += 1
        self.found += found
        self.fenced += fenced
        log.info(
            "orders of unknown outcome resolved",
            found=found,
            fenced=fenced,
            order_ids=[o.order_id for o in orders][:20],
            still_pending=len(self._pending),
        )
