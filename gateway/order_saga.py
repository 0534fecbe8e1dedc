"""The order saga: claim the client order id, reserve in risk, place in trading, compensate.

SubmitOrder: claim the client order id (Redis) -> reserve (risk stream) ->
new order (trading stream). A step that fails after the reservation releases
it (the compensation), and a failed attempt frees its client order id, except
when trading's outcome is unknown: then the order may be live, so its id stays
claimed, the caller is told to ask GetOrder, and the outcome resolver
(gateway/resolver.py) settles the order by itself (found in trading's journal,
or fenced: never placed, its reservation released, its client order id freed).
Cancel has one step, but the same rule on an unknown outcome.

Client order ids are unique per account in trading's journal; the Redis claim
is the fast path in front of it. When the claim names another order H, trading
confirms it: the same order again (a retry) is answered with H as it is now, a
different one is ALREADY_EXISTS naming H (which GetOrder finds); an H trading
does not know is resolved, and once it is fenced its reservation is released,
the claim points at the new attempt and the attempt is placed. When trading
itself answers that the client order id is held (the claim was lost, for
example in a Redis flush), the attempt's reservation is released, the claim
points at the holder, and the answer is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import grpc
import structlog
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from backbone.runtime.errors import ServiceError, unavailable
from backbone.trading.v1 import trading_pb2
from gateway import refusals
from gateway.backends import Backends, unreachable
from gateway.resolver import FENCED, OutcomeResolver, resolve_orders

log = structlog.get_logger("backbone.gateway")

CLIENT_ORDER_ID_TTL_SECONDS = 604_800  # 7 days
# How long an answer waits for a compensating release to be acknowledged; the
# release stays queued on the risk stream after that and is sent when it can be.
RELEASE_WAIT_SECONDS = 2.0

# Rounds of claim and confirm one submission goes through while concurrent attempts with the
# same client order id keep taking the claim.
CLAIM_ROUNDS = 3
# An attempt claimed this long ago is over (answered or OUTCOME_UNKNOWN), wherever it ran: beyond
# twice the call timeout (reserve, then place) and the waits for a channel to come back.
ATTEMPT_SLACK_SECONDS = 10.0

# SET NX EX, answering {''} when claimed, else {the order id holding the key, its ms to live}.
_CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return {''}
end
return {redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
"""
# Point the key at ARGV[2] while it names ARGV[1] (or is gone): 1 when it names ARGV[2] now.
_REPOINT_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] or current == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
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


def same_order(order: trading_pb2.NewOrder, held: common_pb2.Order) -> bool:
    """True when `order` is `held` sent again: same symbol, side, type, time in force, price, quantity."""
    return (
        order.symbol == held.symbol
        and order.side == held.side
        and (order.type or common_pb2.ORDER_TYPE_LIMIT) == (held.type or common_pb2.ORDER_TYPE_LIMIT)
        and (order.time_in_force or common_pb2.TIME_IN_FORCE_GTC)
        == (held.time_in_force or common_pb2.TIME_IN_FORCE_GTC)
        and order.price_ticks == held.price_ticks
        and order.quantity_lots == held.quantity_lots
    )


class OrderSaga:
    """Places and cancels orders across risk and trading; one instance per process."""

    def __init__(self) -> None:
        self._claim: AsyncScript | None = None
        self._unclaim: AsyncScript | None = None
        self._repoint: AsyncScript | None = None
        self._resolver: OutcomeResolver | None = None
        # Orders of submissions under way in this process (from the claim to the answer), each
        # with the event set when it is answered.
        self._in_flight: dict[str, asyncio.Event] = {}

    async def submit(
        self, backends: Backends, order: trading_pb2.NewOrder, instrument: common_pb2.Instrument
    ) -> list[common_pb2.ExecutionReport]:
        """Place a validated order; the reports of this order (accepted, fills). Raises ServiceError.

        When its client order id is held by the same order sent before, that order's report as
        it is now (the retry is answered with the original).
        """
        key = client_order_id_key(order.account_id, order.client_order_id)
        answered = self._in_flight[order.order_id] = asyncio.Event()
        try:
            holder = ""
            for _ in range(CLAIM_ROUNDS):
                holder, age_seconds = await self._claim_client_order_id(backends, key, order.order_id)
                if not holder:
                    return await self._place(backends, order, instrument, key)
                held = await self._held(backends, order, key, holder, age_seconds)
                if isinstance(held, list):
                    return held
                if held:  # the holder is dead and the claim names this order now
                    return await self._place(backends, order, instrument, key)
            raise refusals.client_order_id_in_flight(order.client_order_id, holder)
        finally:
            del self._in_flight[order.order_id]
            answered.set()

    async def _held(
        self, backends: Backends, order: trading_pb2.NewOrder, key: str, holder_id: str, age_seconds: float
    ) -> list[common_pb2.ExecutionReport] | bool:
        """The client order id is claimed by order `holder_id`: answer with it, or free it when dead.

        A holder this process is still submitting is waited for (False: claim again). A holder
        trading has journaled: the same order (a retry) is answered with the holder's
        report as it is now; a different one is ALREADY_EXISTS naming it. A holder trading does
        not know whose attempt may still be under way (in this process, or claimed less than
        the longest attempt ago elsewhere) is OUTCOME_UNKNOWN for now; else it is resolved: found
        meanwhile, answered as above; fenced, its reservation is released and the claim pointed
        at `order` (True: place it; False: another attempt took the claim, claim again).
        """
        under_way = self._in_flight.get(holder_id)
        if under_way is not None:  # a submission of this process: wait for its answer, then look again
            try:
                await asyncio.wait_for(under_way.wait(), self._attempt_seconds(backends))
            except TimeoutError:
                raise refusals.client_order_id_in_flight(order.client_order_id, holder_id) from None
            return False
        holder, fenced = await self._find_holder(backends, order, holder_id)
        if holder is None:
            resolver = self._resolver_for(backends)
            attempt_over = (
                fenced or resolver.awaiting(holder_id) or age_seconds > self._attempt_seconds(backends)
            )
            if not attempt_over:
                raise refusals.client_order_id_in_flight(order.client_order_id, holder_id)
            try:
                (resolution,) = await resolve_orders(backends, [(holder_id, order.account_id)])
            except ServiceError as error:
                raise refusals.holder_unconfirmed(order.client_order_id, holder_id, error) from None
            if resolution.resolution == FENCED:
                resolver.forget(holder_id)
                log.info("client order id freed: its order was never placed", holder_id=holder_id)
                await self._release_order(backends, holder_id, order.account_id)
                return await self._repoint_client_order_id(backends, key, holder_id, order.order_id)
            holder = resolution.order
        if holder.account_id != order.account_id:  # a claim is per account: this one is corrupt
            log.error("client order id claimed by another account's order", holder_id=holder_id)
            return await self._repoint_client_order_id(backends, key, holder_id, order.order_id)
        return _holder_answer(
            order,
            common_pb2.ExecutionReport(
                order=holder,
                execution_type=common_pb2.EXECUTION_TYPE_ACCEPTED,
                timestamp_ns=holder.updated_ns,
            ),
        )

    async def _find_holder(
        self, backends: Backends, order: trading_pb2.NewOrder, holder_id: str
    ) -> tuple[common_pb2.Order | None, bool]:
        """(the holder, False) when trading has it; (None, True) when it is fenced; else (None, False)."""
        try:
            response = await backends.call(
                backends.trading.GetOrder, trading_pb2.GetOrderRequest(order_id=holder_id)
            )
        except ServiceError as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                return None, error.reason == RejectReason.ORDER_FENCED
            raise refusals.holder_unconfirmed(order.client_order_id, holder_id, error) from None
        return response.order, False

    async def _place(
        self,
        backends: Backends,
        order: trading_pb2.NewOrder,
        instrument: common_pb2.Instrument,
        key: str,
    ) -> list[common_pb2.ExecutionReport]:
        """Reserve in risk, then place in trading, compensating what fails; the claim is this order's."""
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
        # Trading refuses an order reserved in an epoch of risk's state that risk has since rebuilt.
        order.risk_epoch = reservation.epoch

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
            self._resolver_for(backends).add(order)
            raise refusals.outcome_unknown(order.order_id, error) from None
        backends.reported.note(result.reports)  # for every account whose order it touched
        # A command's result also carries the reports of the orders it traded against
        # (other accounts' orders): the caller sees only its own order's.
        reports = [r for r in result.reports if r.order.order_id == order.order_id]
        if not reports:
            holder = _holder_report(result.reports, order)
            if holder is not None:
                # Trading holds the client order id for another order (the claim was lost): this
                # attempt was not placed; its reservation goes and the claim names the holder.
                await self._release(backends, order)
                await self._repoint_client_order_id(backends, key, order.order_id, holder.order.order_id)
                return _holder_answer(order, holder)
            self._resolver_for(backends).add(order)
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
        backends.reported.note(result.reports)
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

    def _resolver_for(self, backends: Backends) -> OutcomeResolver:
        """This process's outcome resolver, started with the backends it resolves through."""
        resolver = self._resolver
        if resolver is None or resolver.backends is not backends:

            async def fenced(order: trading_pb2.NewOrder) -> None:
                key = client_order_id_key(order.account_id, order.client_order_id)
                await self._free_client_order_id(backends, key, order.order_id)

            resolver = OutcomeResolver(backends, fenced)
            resolver.start()
            self._resolver = resolver
        return resolver

    @staticmethod
    def _attempt_seconds(backends: Backends) -> float:
        """How long a submission can run from its claim to its answer."""
        return 2 * float(backends.settings.call_timeout_seconds) + ATTEMPT_SLACK_SECONDS

    async def _claim_client_order_id(self, backends: Backends, key: str, order_id: str) -> tuple[str, float]:
        """('', 0) when the id is ours now; else (the order id that holds it, seconds since its claim)."""
        claim, _ = self._scripts(backends)
        try:
            answer = await claim(keys=[key], args=[order_id, CLIENT_ORDER_ID_TTL_SECONDS])
        except RedisError as error:
            raise unavailable(
                RejectReason.REDIS_UNAVAILABLE, f"the idempotency store is unavailable ({error}); retry"
            ) from None
        holder = _text(answer[0]) if answer else ""
        if not holder:
            return "", 0.0
        left_ms = int(answer[1]) if len(answer) > 1 else -1
        age = CLIENT_ORDER_ID_TTL_SECONDS - left_ms / 1000 if left_ms >= 0 else float("inf")
        return holder, age

    async def _repoint_client_order_id(self, backends: Backends, key: str, old: str, new: str) -> bool:
        """Point the claim at order `new` if it still names `old` (or is gone); True when it does."""
        if self._repoint is None:
            self._repoint = backends.redis.register_script(_REPOINT_SCRIPT)
        try:
            return bool(await self._repoint(keys=[key], args=[old, new, CLIENT_ORDER_ID_TTL_SECONDS]))
        except RedisError as error:  # trading's index still holds the id: log, do not fail
            log.warning(
                "could not point the client order id at its order", key=key, order_id=new, error=str(error)
            )
            return False

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
        await self._release_order(backends, order.order_id, order.account_id)

    async def _release_order(self, backends: Backends, order_id: str, account_id: str) -> None:
        """Release what `order_id` holds (see _release)."""
        command = risk_pb2.ReservationCommand(
            release=risk_pb2.Release(order_id=order_id, account_id=account_id)
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
                    order_id=order_id,
                    error=str(error),
                )

        task.add_done_callback(done)
        # When risk is known to be down the release stays queued; do not keep the caller waiting.
        wait = 0.05 if await unreachable(backends.risk_channel, 0) else RELEASE_WAIT_SECONDS
        await asyncio.wait({task}, timeout=wait)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _holder_report(
    reports: Iterable[common_pb2.ExecutionReport], order: trading_pb2.NewOrder
) -> common_pb2.ExecutionReport | None:
    """Trading's report of the order holding `order`'s client order id, when it answered with one."""
    for report in reports:
        held = report.order
        if (
            held.order_id != order.order_id
            and held.account_id == order.account_id
            and held.client_order_id == order.client_order_id
            and (
                report.execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED
                or report.reject_reason == RejectReason.DUPLICATE_CLIENT_ORDER_ID.number
            )
        ):
            return report
    return None


def _holder_answer(
    order: trading_pb2.NewOrder, holder: common_pb2.ExecutionReport
) -> list[common_pb2.ExecutionReport]:
    """The answer to `order` when `holder` holds its client order id: the holder if it is the same
    order (a retry), else ALREADY_EXISTS naming it."""
    held = holder.order
    if holder.execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED and same_order(order, held):
        log.info("client order id retried: answered with its order", holder_id=held.order_id)
        return [holder]
    raise refusals.duplicate_client_order_id(order.client_order_id, held.order_id)
