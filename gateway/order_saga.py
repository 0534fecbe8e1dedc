"""The order saga: claim the client order id, reserve in risk, place in trading, compensate.

SubmitOrder: claim the client order id (Redis) -> reserve (risk stream) ->
new order (trading stream). A step that fails after the reservation releases
it (the compensation), and a failed attempt frees its client order id, except
when trading's outcome is unknown: then the order may be live, so its id stays
claimed and the caller is told to ask GetOrder. Cancel has one step, but the
same rule on an unknown outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from backbone.runtime.errors import ServiceError, already_exists, unavailable
from backbone.trading.v1 import trading_pb2
from gateway import refusals
from gateway.backends import Backends, unreachable

log = structlog.get_logger("backbone.gateway")

CLIENT_ORDER_ID_TTL_SECONDS = 604_800  # 7 days
# How long an answer waits for a compensating release to be acknowledged; the
# release stays queued on the risk stream after that and is sent when it can be.
RELEASE_WAIT_SECONDS = 2.0

# SET NX EX, answering '' when claimed, else the order id already holding the key.
_CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return ''
end
return redis.call('GET', KEYS[1]) or ''
"""
# Delete the key only while it still names our order (a failed attempt frees its id).
_UNCLAIM_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def client_order_id_key(account_id: str, client_order_id: str) -> str:
    """Redis key of a claimed client order id, hash-tagged by account."""
    return f"gw:{{{account_id}}}:coid:{client_order_id}"


class OrderSaga:
    """Places and cancels orders across risk and trading; one instance per process."""

    def __init__(self) -> None:
        self._claim: AsyncScript | None = None
        self._unclaim: AsyncScript | None = None

    async def submit(
        self, backends: Backends, order: trading_pb2.NewOrder, instrument: common_pb2.Instrument
    ) -> list[common_pb2.ExecutionReport]:
        """Place a validated order; the reports of this order (accepted, fills). Raises ServiceError."""
        key = client_order_id_key(order.account_id, order.client_order_id)
        existing = await self._claim_client_order_id(backends, key, order.order_id)
        if existing:
            raise already_exists(
                RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                f"client_order_id {order.client_order_id!r} was already used by order {existing}; "
                "GetOrder returns it",
                order_id=existing,
            )

        if await unreachable(backends.risk_channel):
            await self._free_client_order_id(backends, key, order.order_id)
            raise unavailable(
                RejectReason.RISK_UNAVAILABLE,
                "the order was not placed: risk cannot be reached; retry with the same client_order_id",
            )
        reserve = risk_pb2.ReservationCommand(
            reserve=risk_pb2.Reserve(
                order_id=order.order_id,
                account_id=order.account_id,
                symbol=order.symbol,
                side=order.side,
                price_ticks=order.price_ticks,
                quantity_lots=order.quantity_lots,
            )
        )
        try:
            reservation = await backends.reservations.submit(reserve)
        except ServiceError as error:
            if error.reason not in refusals.NOT_SENT_REASONS:
                await self._release(backends, order)
            await self._free_client_order_id(backends, key, order.order_id)
            raise refusals.risk_unreachable(error) from None
        if not reservation.accepted:
            await self._free_client_order_id(backends, key, order.order_id)
            raise refusals.risk_refusal(reservation, instrument)

        if await unreachable(backends.trading_channel):
            await self._release(backends, order)
            await self._free_client_order_id(backends, key, order.order_id)
            raise unavailable(
                RejectReason.TRADING_UNAVAILABLE,
                "the order was not placed: the matching engine cannot be reached; "
                "retry with the same client_order_id",
            )
        try:
            result = await backends.orders.submit(trading_pb2.OrderCommand(new_order=order))
        except ServiceError as error:
            if error.reason in refusals.NOT_SENT_REASONS:
                await self._release(backends, order)
                await self._free_client_order_id(backends, key, order.order_id)
                raise
            raise refusals.outcome_unknown(order.order_id, error) from None
        # A command's result also carries the reports of the orders it traded against
        # (other accounts' orders): the caller sees only its own order's.
        reports = [r for r in result.reports if r.order.order_id == order.order_id]
        if not reports:
            raise refusals.outcome_unknown(
                order.order_id, unavailable(RejectReason.PROTOCOL_ERROR, "trading answered without a report")
            )
        first = reports[0]
        if first.execution_type == common_pb2.EXECUTION_TYPE_REJECTED:
            await self._release(backends, order)
            await self._free_client_order_id(backends, key, order.order_id)
            raise refusals.trading_refusal(first, order.order_id)
        return reports

    async def cancel(self, backends: Backends, order_id: str, account_id: str) -> common_pb2.Order:
        """Cancel an open order of `account_id`; the order afterwards. Raises ServiceError."""
        command = trading_pb2.OrderCommand(
            cancel_order=trading_pb2.CancelOrder(order_id=order_id, account_id=account_id)
        )
        if await unreachable(backends.trading_channel):
            raise unavailable(
                RejectReason.TRADING_UNAVAILABLE,
                "the cancel was not sent: the matching engine cannot be reached",
            )
        try:
            result = await backends.orders.submit(command)
        except ServiceError as error:
            if error.reason in refusals.NOT_SENT_REASONS:
                raise
            raise refusals.outcome_unknown(order_id, error, cancel=True) from None
        reports = [r for r in result.reports if r.order.order_id in ("", order_id)]
        if not reports:
            raise unavailable(RejectReason.PROTOCOL_ERROR, "trading answered the cancel without a report")
        rejected = next((r for r in reports if r.execution_type == common_pb2.EXECUTION_TYPE_REJECTED), None)
        if rejected is not None:
            raise refusals.cancel_refusal(rejected, order_id)
        return reports[-1].order

    # --- steps ------------------------------------------------------------------------------

    def _scripts(self, backends: Backends) -> tuple[AsyncScript, AsyncScript]:
        if self._claim is None or self._unclaim is None:
            self._claim = backends.redis.register_script(_CLAIM_SCRIPT)
            self._unclaim = backends.redis.register_script(_UNCLAIM_SCRIPT)
        return self._claim, self._unclaim

    async def _claim_client_order_id(self, backends: Backends, key: str, order_id: str) -> str:
        """'' when the id is ours now; else the order id that already holds it."""
        claim, _ = self._scripts(backends)
        try:
            existing = await claim(keys=[key], args=[order_id, CLIENT_ORDER_ID_TTL_SECONDS])
        except RedisError as error:
            raise unavailable(
                RejectReason.REDIS_UNAVAILABLE, f"the idempotency store is unavailable ({error}); retry"
            ) from None
        return str(existing or "")

    async def _free_client_order_id(self, backends: Backends, key: str, order_id: str) -> None:
        _, unclaim = self._scripts(backends)
        try:
            await unclaim(keys=[key], args=[order_id])
        except RedisError as error:  # the id stays taken until it expires: log, do not fail
            log.warning("could not free client order id", key=key, error=str(error))

    async def _release(self, backends: Backends, order: trading_pb2.NewOrder) -> None:
        """Queue a compensating release and wait (bounded) for risk to apply it.

        The release is queued behind the reserve on the same stream, so even a
        reserve that is still waiting to be sent is released after it.
        """
        command = risk_pb2.ReservationCommand(
            release=risk_pb2.Release(order_id=order.order_id, account_id=order.account_id)
        )
        task = asyncio.create_task(backends.reservations.submit(command))
        backends.background.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            backends.background.discard(finished)
            if finished.cancelled():
                return
            error = finished.exception()
            if error is not None:
                log.warning(
                    "compensating release failed; risk reconciles the reservation",
                    order_id=order.order_id,
                    error=str(error),
                )

        task.add_done_callback(done)
        # When risk is known to be down the release stays queued; do not keep the caller waiting.
        wait = 0.05 if await unreachable(backends.risk_channel, 0) else RELEASE_WAIT_SECONDS
        await asyncio.wait({task}, timeout=wait)
