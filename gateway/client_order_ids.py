"""Client order ids unique per account across trading shards, even after Redis lost the claims.

The gateway claims each client order id in Redis (gateway/order_saga.py) and each trading shard is
the authority for its own orders (its engine's index and report history): a different order
under a held id is answered REJECTED, DUPLICATE_CLIENT_ORDER_ID, naming the holder. A shard knows
only its own orders, so once the claims are gone (FLUSHDB, a Redis restarted without persistence,
a new instance) an id used on shard A could be taken again by a different order on shard B. Redis
is a cache: losing it may slow the system, never make it wrong. So while the claims may be
incomplete, a new order's client order id is also looked up on the other shards before the order
is sent (TradingService FindClientOrders), and an id held there gets the answer its holder's shard
would give: ACCEPTED with the holder when it is the same order sent again, else REJECTED,
DUPLICATE_CLIENT_ORDER_ID, with the holder (the saga then releases the reservation, points the
claim at the holder and answers ALREADY_EXISTS naming it, as when a shard answers so itself).

When the claims may be incomplete: the key CLAIMS_COMPLETE_SINCE_KEY holds the Unix time from
which every claim made is still in Redis. It is written once (SET NX) by the first batch that finds
it missing, with that batch's time: a loss of the database takes it with the claims, so a missing
marker says "claims made before now may be gone". A claim lives CLIENT_ORDER_ID_TTL_SECONDS, so
once the marker is older than that, every claim that may still exist was made after it and the
claims are complete again: no shard is asked. A brand-new system needs no care: when the marker is
missing and every shard answers that it has never journaled an order, the only claims that can
have been lost are those of attempts still under way (claimed less than `attempt_seconds` ago,
the saga's bound), so the marker is written that much younger than the TTL.

Cost: nothing with one shard (TradingShards never calls this) and nothing for batches without new
orders; with several shards, one Redis GET per batch of new orders (after their claims: a loss
between claim and check is seen), and while the claims may be incomplete one FindClientOrders per
other shard per batch, in parallel (every shard when the marker is missing, for their order
counts). A shard that cannot answer makes the orders that needed it UNAVAILABLE
(CLIENT_ORDER_ID_UNCHECKED), nothing placed: a not-sent refusal, so the saga gives the
reservation back and frees the claim.

What the marker cannot see: a loss of some claims only, leaving the marker (a replica promoted
after missing the last writes, claims evicted under a volatile maxmemory policy, keys deleted by
hand, one node of a Redis Cluster losing its data while the marker lives on another; run the
claims' Redis with noeviction), and an id whose claim expired (older than the TTL) reused on
another shard, which the claims never covered. Each shard still refuses a reuse of its
own orders' ids in every case.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import redis.asyncio as redis
import structlog
from redis.exceptions import RedisError

from backbone.claims import CLIENT_ORDER_ID_TTL_SECONDS
from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, unavailable
from backbone.trading.v1 import trading_pb2
from gateway.order_saga import same_order

if TYPE_CHECKING:
    from gateway.shards import TradingShards

log = structlog.get_logger("backbone.gateway")

# The Unix time (seconds) from which every client order id claim made is still in Redis.
CLAIMS_COMPLETE_SINCE_KEY = "gw:claims-complete-since"

Answer = trading_pb2.CommandResult | ServiceError


class ClientOrderIdCheck:
    """Looks a batch's new client order ids up on the other shards while the claims may be incomplete."""

    def __init__(
        self, cache: redis.Redis, *, attempt_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = cache
        # The longest a submission runs from its claim to its answer (the saga's bound).
        self._attempt_seconds = attempt_seconds
        self._clock = clock

    async def held_elsewhere(
        self,
        shards: TradingShards,
        commands: Sequence[trading_pb2.OrderCommand],
        groups: Mapping[str, Sequence[int]],
    ) -> dict[int, Answer]:
        """The answers of the new orders among `commands` (routed: shard name -> their positions)
        that must not be sent: position -> the holder's answer when another shard holds the order's
        client order id, or UNAVAILABLE (CLIENT_ORDER_ID_UNCHECKED) when a shard that had to be
        asked could not answer. Empty while the claims are complete (no shard is asked)."""
        shard_of: dict[int, str] = {
            index: name
            for name, indices in groups.items()
            for index in indices
            if commands[index].WhichOneof("command") == "new_order"
            and commands[index].new_order.client_order_id
        }
        if not shard_of:
            return {}
        now = self._clock()
        since, readable = await self._complete_since()
        if since is not None and now - since >= CLIENT_ORDER_ID_TTL_SECONDS:
            return {}
        missing = since is None
        # Each shard is asked about the orders sent elsewhere; every order when the marker is
        # missing (so every shard tells how many orders it ever journaled).
        asks = {
            shard.name: asked
            for shard in shards.all
            if (asked := [index for index, name in shard_of.items() if missing or name != shard.name])
        }
        answers = await asyncio.gather(
            *(
                self._find(shards, name, [commands[index].new_order for index in indices])
                for name, indices in asks.items()
            )
        )
        held: dict[int, Answer] = {}
        unchecked: dict[int, ServiceError] = {}
        journaled = 0
        for (name, indices), answer in zip(asks.items(), answers, strict=True):
            if isinstance(answer, ServiceError):
                for index in indices:
                    unchecked.setdefault(index, _unchecked(commands[index].new_order, name, answer))
                continue
            journaled += answer.orders_journaled
            for index, found in zip(indices, answer.holders, strict=True):
                if found.HasField("order") and name != shard_of[index] and index not in held:
                    held[index] = _holder_result(commands[index].new_order, found.order)
                    log.info(
                        "client order id held on another shard after the claims were lost",
                        order_id=commands[index].new_order.order_id,
                        holder_id=found.order.order_id,
                        holder_shard=name,
                    )
        for index, error in unchecked.items():
            held.setdefault(index, error)
        if missing and readable and not unchecked:
            await self._mark(now, brand_new=not journaled)
        return held

    async def _complete_since(self) -> tuple[float | None, bool]:
        """(The marker's time, None when it is missing or unreadable; whether Redis answered)."""
        try:
            value = await self._redis.get(CLAIMS_COMPLETE_SINCE_KEY)
        except RedisError as error:
            log.warning("the client order id claims marker could not be read", error=str(error))
            return None, False
        if value is None:
            return None, True
        try:
            return float(value), True
        except ValueError:
            log.error("the claims marker is not a time: it is written again", value=str(value)[:40])
        try:
            await self._redis.delete(CLAIMS_COMPLETE_SINCE_KEY)
        except RedisError as error:
            log.warning("the client order id claims marker could not be deleted", error=str(error))
            return None, False
        return None, True

    async def _mark(self, now: float, *, brand_new: bool) -> None:
        """Write the marker (unless another gateway did first): claims are complete from `now`, or,
        on a system whose shards never journaled an order, from all but the last attempt's time."""
        since = now - CLIENT_ORDER_ID_TTL_SECONDS + self._attempt_seconds if brand_new else now
        try:
            written = await self._redis.set(CLAIMS_COMPLETE_SINCE_KEY, repr(since), nx=True)
        except RedisError as error:
            log.warning("the client order id claims marker could not be written", error=str(error))
            return
        if written:
            log.info(
                "client order id claims marker written",
                complete_since=since,
                brand_new=brand_new,
                checking_other_shards_seconds=round(since + CLIENT_ORDER_ID_TTL_SECONDS - now, 3),
            )

    @staticmethod
    async def _find(
        shards: TradingShards, name: str, orders: Sequence[trading_pb2.NewOrder]
    ) -> trading_pb2.FindClientOrdersResponse | ServiceError:
        """Shard `name`'s holders of the orders' keys, or why it could not say."""
        request = trading_pb2.FindClientOrdersRequest(
            keys=[
                trading_pb2.ClientOrderKey(account_id=order.account_id, client_order_id=order.client_order_id)
                for order in orders
            ]
        )
        try:
            answer: trading_pb2.FindClientOrdersResponse = await shards.find_client_orders(name, request)
        except ServiceError as error:
            return error
        if len(answer.holders) != len(orders):
            return unavailable(
                RejectReason.PROTOCOL_ERROR,
                f"FindClientOrders answered {len(answer.holders)} keys of {len(orders)}",
            )
        return answer


def _holder_result(order: trading_pb2.NewOrder, holder: common_pb2.Order) -> trading_pb2.CommandResult:
    """What the holder's shard answers a new order under its client order id: ACCEPTED with the
    holder when it is the same order sent again, else REJECTED, DUPLICATE_CLIENT_ORDER_ID; either
    report names the holder (trading/engine.py Engine._client_order_id_held)."""
    report = common_pb2.ExecutionReport(order=holder, timestamp_ns=holder.updated_ns)
    if same_order(order, holder):
        report.execution_type = common_pb2.EXECUTION_TYPE_ACCEPTED
    else:
        report.execution_type = common_pb2.EXECUTION_TYPE_REJECTED
        report.reject_reason = RejectReason.DUPLICATE_CLIENT_ORDER_ID.number
    return trading_pb2.CommandResult(reports=[report])


def _unchecked(order: trading_pb2.NewOrder, shard: str, error: ServiceError) -> ServiceError:
    return unavailable(
        RejectReason.CLIENT_ORDER_ID_UNCHECKED,
        f"the order was not placed: the client order id claims may have been lost (Redis was flushed "
        f"or replaced) and trading shard {shard!r}, which must confirm that {order.client_order_id!r} "
        f"is not held there, could not answer ({error.reason}: {error.message[:200]}); retry with the "
        "same client_order_id",
    )
