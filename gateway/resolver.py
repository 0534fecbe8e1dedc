"""Resolving orders and replaces whose outcome is unknown: found (applied) in trading's journal,
or fenced for good.

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

A replace answered OUTCOME_UNKNOWN is settled the same way (:meth:`OutcomeResolver.add_replace`):
risk grew the order's hold for it and marked the order with its replace id, refusing every other
replace of the order (REPLACE_IN_FLIGHT) until the mark goes. The resolver asks trading's
ResolveReplaces, which answers APPLIED when the replace is the order's last applied one (its
OrderReplaced event unmarked the order and re-sized the hold), ORDER_GONE when trading no longer
holds the order (its close released the hold), or fences the replace id (a journaled
ReplaceFenced record: the replace is refused from then on, even if it is still on its way, and
risk gives back what the grow added when it applies the record) and answers FENCED. So the mark
goes with no caller action, and since risk acts on trading's event, not on this answer, it goes
even if this gateway dies right after the fence.

A gateway that dies before it asks (between its grow and trading's answer) leaves the mark to
trading's reservation reconciler (trading/reconciler.py): it sees risk's marks over the
ListReservations it already reads, and settles one it has kept seeing for its grace (longer than
any replace can still be on its way) with the same Engine.resolve_replace; a replace still on its
way when such a fence lands is refused REPLACE_FENCED, never applied on a hold risk gave back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

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
REPLACE_RESOLUTIONS = frozenset(
    {
        trading_pb2.REPLACE_RESOLUTION_APPLIED,
        trading_pb2.REPLACE_RESOLUTION_FENCED,
        trading_pb2.REPLACE_RESOLUTION_ORDER_GONE,
    }
)

OnFenced = Callable[[trading_pb2.NewOrder], Awaitable[None]]
# A replace to resolve: (order id, account id, replace id).
Replace = tuple[str, str, str]


async def _ask_each_shard(
    backends: Backends,
    order_ids: Sequence[str],
    ask: Callable[[str, list[int]], Awaitable[Sequence[Any]]],
) -> list[Any]:
    """The results of `ask`(shard name, the indexes of `order_ids` on that shard), called for every
    shard the ids name at once, put back in the order of `order_ids` (a shard's missing results
    leave the list short)."""
    shards = backends.trading_shards
    groups: dict[str, list[int]] = {}
    for index, order_id in enumerate(order_ids):
        groups.setdefault(shards.of_order(order_id).name, []).append(index)
    answers = await asyncio.gather(*(ask(name, indexes) for name, indexes in groups.items()))
    by_index: dict[int, Any] = {}
    for indexes, results in zip(groups.values(), answers, strict=True):
        by_index.update(zip(indexes, results, strict=False))
    return [by_index[index] for index in sorted(by_index)]


async def resolve_orders(
    backends: Backends, orders: Sequence[tuple[str, str]]
) -> list[trading_pb2.OrderResolution]:
    """Trading's resolution of each (order id, account id), in order, each asked of the shard its
    id names. Raises ServiceError."""

    async def ask(name: str, indexes: list[int]) -> Sequence[trading_pb2.OrderResolution]:
        request = trading_pb2.ResolveOrdersRequest(
            orders=[
                trading_pb2.OrderToResolve(order_id=orders[i][0], account_id=orders[i][1]) for i in indexes
            ]
        )
        stub = backends.trading_shards.named(name).stub
        response: trading_pb2.ResolveOrdersResponse = await backends.call(stub.ResolveOrders, request)
        return response.results

    results = await _ask_each_shard(backends, [order_id for order_id, _ in orders], ask)
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


async def resolve_replaces(
    backends: Backends, replaces: Sequence[Replace]
) -> list[trading_pb2.ReplaceResolutionResult]:
    """Trading's resolution of each (order id, account id, replace id), in order, each asked of the
    shard its order id names. Raises ServiceError."""

    async def ask(name: str, indexes: list[int]) -> Sequence[trading_pb2.ReplaceResolutionResult]:
        request = trading_pb2.ResolveReplacesRequest(
            replaces=[
                trading_pb2.ReplaceToResolve(
                    order_id=replaces[i][0], account_id=replaces[i][1], replace_id=replaces[i][2]
                )
                for i in indexes
            ]
        )
        stub = backends.trading_shards.named(name).stub
        response: trading_pb2.ResolveReplacesResponse = await backends.call(stub.ResolveReplaces, request)
        return response.results

    results = await _ask_each_shard(backends, [order_id for order_id, _, _ in replaces], ask)
    if len(results) != len(replaces) or any(
        (r.order_id, r.replace_id) != (o, i) or r.resolution not in REPLACE_RESOLUTIONS
        for r, (o, _, i) in zip(results, replaces, strict=False)
    ):
        raise ServiceError(
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.PROTOCOL_ERROR,
            "trading answered ResolveReplaces with other replaces than it was asked about",
        )
    return results


class OutcomeResolver:
    """Settles, in the background, every order and replace answered OUTCOME_UNKNOWN (one per
    process)."""

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
        # (order id, replace id) -> account id of each replace to resolve, in arrival order.
        self._replaces: dict[tuple[str, str], str] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.found = 0
        self.fenced = 0
        # Replaces settled, by trading.v1 ReplaceResolution.
        self.replaces_settled: dict[int, int] = {}

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

    def add_replace(self, order_id: str, account_id: str, replace_id: str) -> bool:
        """Resolve the replace `replace_id` of `order_id` in the background; False when the queue
        is full (it is logged, and the order's mark stays until the order closes or risk rebuilds)."""
        key = (order_id, replace_id)
        if key in self._replaces:
            return True
        if len(self._replaces) >= self._max_pending:
            log.error(
                "outcome resolver queue full: the replace stays unresolved; risk refuses other "
                "replaces of the order until it closes or risk rebuilds",
                order_id=order_id,
                replace_id=replace_id,
                pending=len(self._replaces),
            )
            return False
        self._replaces[key] = account_id
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

    @property
    def pending_replaces(self) -> int:
        return len(self._replaces)

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST_SECONDS
        while True:
            if not self._pending and not self._replaces:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                answered = True
                if self._pending:
                    answered = await self._orders_round(backoff)
                if self._replaces:
                    answered = await self._replaces_round(backoff) and answered
            except Exception:  # a bug here must not end the resolver
                log.exception("outcome resolver failed; retrying")
                answered = False
            if answered:
                backoff = BACKOFF_FIRST_SECONDS
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    async def _orders_round(self, backoff: float) -> bool:
        """Resolve one shard's waiting orders (the first waiting one's): a shard that cannot answer
        sends its orders to the back of the queue, so the other shards' are resolved meanwhile.
        False when trading could not answer (the caller backs off)."""
        shard = shard_of_order_id(next(iter(self._pending)))
        orders = [o for o in self._pending.values() if shard_of_order_id(o.order_id) == shard][: self._batch]
        try:
            results = await resolve_orders(self.backends, [(o.order_id, o.account_id) for o in orders])
        except ServiceError as error:
            return _unanswered(error, "orders", self._pending, [o.order_id for o in orders], backoff)
        await self._settle(orders, results)
        return True

    async def _replaces_round(self, backoff: float) -> bool:
        """Resolve one shard's waiting replaces, as :meth:`_orders_round` does orders. Risk gives
        back a fenced replace's grow on trading's ReplaceFenced event: nothing to do here after."""
        shard = shard_of_order_id(next(iter(self._replaces))[0])
        keys = [key for key in self._replaces if shard_of_order_id(key[0]) == shard][: self._batch]
        replaces = [
            (order_id, self._replaces[order_id, replace_id], replace_id) for order_id, replace_id in keys
        ]
        try:
            results = await resolve_replaces(self.backends, replaces)
        except ServiceError as error:
            return _unanswered(error, "replaces", self._replaces, keys, backoff)
        for key, result in zip(keys, results, strict=True):
            self._replaces.pop(key, None)
            self.replaces_settled[result.resolution] = self.replaces_settled.get(result.resolution, 0) + 1
        log.info(
            "replaces of unknown outcome resolved",
            resolutions=[trading_pb2.ReplaceResolution.Name(r.resolution) for r in results][:20],
            order_ids=[order_id for order_id, _ in keys][:20],
            still_pending=len(self._replaces),
        )
        return True

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


def _unanswered(
    error: ServiceError, what: str, queue: dict[Any, Any], keys: list[Any], backoff: float
) -> bool:
    """Trading did not resolve `keys` (of `queue`, waiting `what`): INVALID_ARGUMENT is a bug, so they
    are dropped (logged) rather than asked forever, and True is answered; on any other failure they
    go to the back of the queue, so other shards' are asked meanwhile, and False (back off)."""
    if error.code == grpc.StatusCode.INVALID_ARGUMENT:
        log.error(
            f"trading refused to resolve {what}; they stay unresolved",
            keys=[str(key) for key in keys][:20],
            error=str(error),
        )
        for key in keys:
            queue.pop(key, None)
        return True
    for key in keys:
        queue[key] = queue.pop(key)
    log.info(
        f"cannot resolve {what} of unknown outcome yet; retrying",
        pending=len(queue),
        retry_in_s=round(backoff, 2),
        error=str(error),
    )
    return False
