"""The order saga: reserve in risk (claiming the client order id), place in trading, compensate.

SubmitOrder: reserve and claim the client order id (risk stream: one atomic
Redis step in risk, see risk/lua/reserve.lua) -> new order (trading stream).
A reserve risk refuses leaves no claim. A step that fails after the
reservation releases it (the compensation), and a failed attempt frees its
client order id, except when trading's outcome is unknown: then the order may
be live, so its id stays claimed, the caller is told to ask GetOrder, and the
outcome resolver (gateway/resolver.py) settles the order by itself (found in
trading's journal, or fenced: never placed, its reservation released, its
client order id freed). Cancel has one step, but the same rule on an unknown
outcome.

ReplaceOrder: look the order up in trading -> grow its hold in risk to what the
replaced order may cost (GrowForReplace: one atomic check of the difference
against the available balance; the order is marked until risk applies the
replace) -> replace in trading (ReplaceOrder, carrying the epoch of the grow).
When trading refuses, the grow is given back (EndReplace); when its outcome is
unknown the outcome resolver settles it (gateway/resolver.py): if trading
applied it, its OrderReplaced event unmarked the order and set the hold; if
not, trading fences its replace id and risk gives the grow back on that
fence's event, so the next replace of the order is accepted. A replace that asks for the
price and quantity the order already has changes nothing and is answered with
the order as it is: that is how a retried replace is recognised. Risk marks
one replace of an order at a time; when the mark found is that of a replace
this gateway already answered (risk has not applied its OrderReplaced yet),
the grow is tried once more after risk has caught up with what the gateway
reported to the account.

Client order ids are unique per account in trading's journal; the Redis claim
(backbone/claims.py) is the fast path in front of it. When risk answers that
the claim names another order H (or, where risk did not look at the claim: it
could not be reached, was rebuilding or is of a version that does not claim,
the gateway's own claim finds H), the order takes the one-by-one path, where
the gateway claims by itself and trading confirms H: the same order again (a
retry) is answered with H as it is now, a
different one is ALREADY_EXISTS naming H (which GetOrder finds); an H trading
does not know is resolved, and once it is fenced its reservation is released,
the claim points at the new attempt and the attempt is placed. When trading
itself answers that the client order id is held (the claim was lost, for
example in a Redis flush), the attempt's reservation is released, the claim
points at the holder, and the answer is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple

import structlog
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from backbone.claims import CLIENT_ORDER_ID_TTL_SECONDS, client_order_id_key
from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from backbone.runtime.errors import ServiceError, failed_precondition, unavailable
from backbone.trading.v1 import trading_pb2
from gateway import refusals
from gateway.backends import REACH_WAIT_SECONDS, Backends, unreachable
from gateway.order_lookups import OrderLookups
from gateway.resolver import FENCED, OutcomeResolver, resolve_orders
from gateway.shards import TradingShard

log = structlog.get_logger("backbone.gateway")

# An order trading may still change (a replace needs one).
_OPEN_STATUSES = frozenset({common_pb2.ORDER_STATUS_NEW, common_pb2.ORDER_STATUS_PARTIALLY_FILLED})
# How long an answer waits for a compensating release to be acknowledged; the
# release stays queued on the risk stream after that and is sent when it can be.
RELEASE_WAIT_SECONDS = 2.0

# Rounds of claim and confirm one submission goes through while concurrent attempts with the
# same client order id keep taking the claim.
CLAIM_ROUNDS = 3
# An attempt claimed this long ago is over (answered or OUTCOME_UNKNOWN), wherever it ran: beyond
# twice the call timeout (reserve, then place) and the waits for a channel to come back.
ATTEMPT_SLACK_SECONDS = 10.0

# For each key (all of one account: they share its hash tag) SET NX EX to its order id
# (ARGV[i]; the last ARGV is the time to live), answering per key two values: '' and -1 when
# claimed, else the order id holding the key and its milliseconds to live.
_CLAIM_SCRIPT = """
local ttl = ARGV[#KEYS + 1]
local answer = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[i], 'NX', 'EX', ttl) then
    answer[#answer + 1] = ''
    answer[#answer + 1] = -1
  else
    answer[#answer + 1] = redis.call('GET', key) or ''
    answer[#answer + 1] = redis.call('PTTL', key)
  end
end
return answer
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
# Delete each key (of one account) only while it still names its order, ARGV[i] (a failed
# attempt frees its id); answers how many were deleted.
_UNCLAIM_SCRIPT = """
local deleted = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    deleted = deleted + redis.call('DEL', key)
  end
end
return deleted
"""


def same_order(order: trading_pb2.NewOrder, held: common_pb2.Order) -> bool:
    """True when `order` is `held` sent again: same symbol, side, type, time in force, post-only,
    self-trade prevention, price and quantity. The price sent is what risk reserved at
    (reserve_price_ticks when a POST_ONLY_REPRICE order rests at another price). Post-only
    compares as the caller asked it (on or off): the mode is the gateway's, not the caller's."""
    sent_price = held.reserve_price_ticks or held.price_ticks
    return (
        order.symbol == held.symbol
        and order.side == held.side
        and (order.type or common_pb2.ORDER_TYPE_LIMIT) == (held.type or common_pb2.ORDER_TYPE_LIMIT)
        and (order.time_in_force or common_pb2.TIME_IN_FORCE_GTC)
        == (held.time_in_force or common_pb2.TIME_IN_FORCE_GTC)
        and bool(order.post_only) == bool(held.post_only)
        and order.self_trade_prevention == held.self_trade_prevention
        and order.price_ticks == sent_price
        and order.quantity_lots == held.quantity_lots
        and order.quote_budget == held.quote_budget
    )


Outcome = list[common_pb2.ExecutionReport] | ServiceError


class _Held(NamedTuple):
    """An order's client order id is held by another order: that order's id, and the seconds
    since its claim was made (inf: the claim has no expiry)."""

    order_id: str
    age_seconds: float


Placing = tuple[trading_pb2.NewOrder, common_pb2.Instrument]

# Orders placed in one batch at most, and batches under way at once (see OrderSaga.place).
BATCH_MAX_ORDERS = 1_000
BATCHES_IN_FLIGHT = 4
# A partial batch (fewer than BATCH_MAX_ORDERS waiting) goes only when no batch is under way, or
# when the newest one has been under way for GROUP_COMMIT_WAIT_SECONDS: a group commit. An order
# that arrives while the system is idle goes at once, and the orders that arrive while a batch is
# under way go together in the next. Each batch costs every hop (risk,
# trading, its journal commit, the outboxes, settlement's transaction) about the same whatever its
# size, so on two cores fewer, larger batches leave more CPU for orders: against partial batches
# overlapping up to 4, measured on this machine in one session, SubmitOrder with 64 callers went
# from 748-834 to 1,071-1,123 orders/s (CPU per order 2,700-3,000 -> 1,900-2,000 us, p99 139-158
# -> 92-98 ms), and a StreamOrders open loop at 1,500/s from p99 127-176 to 87-111 ms. Full batches
# still overlap (up to BATCHES_IN_FLIGHT): waiting cannot make them larger, and a stream's flow of
# full batches needs both cores busy (one at a time lowered the closed-loop stream's rate). The
# wait is bounded so that a slow batch (one of its orders' shard is down, and its part of the batch
# waits to learn so) holds the others up that long at most: batches take a few ms to a few tens
# under load, and waiting without a bound let a killed shard starve the other shard's orders.
GROUP_COMMIT_WAIT_SECONDS = 0.05


class _Placing:
    """One caller's orders being placed: their outcomes, in order, and the future set when the
    last is known (one future per call, however many orders it carries)."""

    __slots__ = ("future", "left", "outcomes")

    def __init__(self, count: int, future: asyncio.Future[list[Outcome]]) -> None:
        self.outcomes: list[Outcome | None] = [None] * count
        self.left = count
        self.future = future

    def answer(self, position: int, outcome: Outcome) -> None:
        self.outcomes[position] = outcome
        self.left -= 1
        if not self.left and not self.future.done():
            self.future.set_result([o if o is not None else _lost() for o in self.outcomes])


class _Waiting:
    """An order waiting to be placed in a batch: its caller's call and its place in it."""

    __slots__ = ("aside_since", "backends", "call", "instrument", "order", "position")

    def __init__(
        self,
        backends: Backends,
        order: trading_pb2.NewOrder,
        instrument: common_pb2.Instrument,
        call: _Placing,
        position: int,
    ) -> None:
        self.backends = backends
        self.order = order
        self.instrument = instrument
        self.call = call
        self.position = position
        self.aside_since = 0.0  # loop time it was first set aside for a down shard (0: never)


class OrderSaga:
    """Places and cancels orders across risk and trading; one instance per process.

    Orders go through in batches formed from whatever waits (unary calls and StreamOrders
    requests alike; see `place`). A batch costs one risk message for its reservations and
    claims (risk makes them in one Redis round trip) and one trading message for its orders.
    """

    def __init__(self) -> None:
        self._claim: AsyncScript | None = None
        self._unclaim: AsyncScript | None = None
        self._repoint: AsyncScript | None = None
        self._resolver: OutcomeResolver | None = None
        self._lookups: OrderLookups | None = None
        # Orders of submissions under way in this process (from the claim to the answer), each
        # with the event set when it is answered: made only when another submission waits for it
        # (None until then; a submission rarely waits for another, and every order would pay).
        self._in_flight: dict[str, asyncio.Event | None] = {}
        # Orders waiting for a batch (see `place`), and the task that forms the batches.
        self._waiting: deque[_Waiting] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._batching: asyncio.Task[None] | None = None
        self._last_batch_at = 0.0  # loop time the newest batch started
        self._batches: set[asyncio.Task[None]] = set()
        # Orders set aside because their shard was down when their batch formed, by shard name
        # (see _set_aside), and the tasks waiting for those shards.
        self._aside: dict[str, list[_Waiting]] = {}
        self._aside_tasks: set[asyncio.Task[None]] = set()

    async def submit(
        self, backends: Backends, order: trading_pb2.NewOrder, instrument: common_pb2.Instrument
    ) -> list[common_pb2.ExecutionReport]:
        """Place a validated order; the reports of this order (accepted, fills). Raises ServiceError.

        When its client order id is held by the same order sent before, that order's report as
        it is now (the retry is answered with the original). See `place`.
        """
        (outcome,) = await self.place(backends, [(order, instrument)])
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    async def place(self, backends: Backends, orders: Sequence[Placing]) -> list[Outcome]:
        """Place validated orders; for each (in order) its reports or its refusal.

        Orders from every caller (unary calls, StreamOrders requests) wait together and are
        placed in batches of up to BATCH_MAX_ORDERS: an order that arrives while the system is
        idle goes at once, and under load the orders that arrive while a batch is under way form
        the next one, so the cost per order falls as the load grows (full batches overlap, up to
        BATCHES_IN_FLIGHT at a time). A caller that goes away does not stop its orders' placement.
        """
        if not orders:
            return []
        call = _Placing(len(orders), asyncio.get_running_loop().create_future())
        for position, (order, instrument) in enumerate(orders):
            self._waiting.append(_Waiting(backends, order, instrument, call, position))
        if self._batching is None or self._batching.done():
            self._batching = asyncio.create_task(self._form_batches(), name="gateway-order-batches")
        self._wake.set()
        return await asyncio.shield(call.future)

    async def _form_batches(self) -> None:
        """Take the waiting orders into batches: a full one while fewer than BATCHES_IN_FLIGHT are
        under way, a partial one when none is or the newest has been under way for
        GROUP_COMMIT_WAIT_SECONDS (see BATCH_MAX_ORDERS)."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            wait = self._last_batch_at + GROUP_COMMIT_WAIT_SECONDS - loop.time()
            if self._batches and len(self._waiting) < BATCH_MAX_ORDERS and wait > 0:
                # A batch is under way: wait for it to end, for a full batch to be waiting, or
                # for the bound.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            while len(self._batches) >= BATCHES_IN_FLIGHT:
                self._room.clear()
                await self._room.wait()
            backends = self._waiting[0].backends
            batch: list[_Waiting] = []
            while self._waiting and len(batch) < BATCH_MAX_ORDERS and self._waiting[0].backends is backends:
                batch.append(self._waiting.popleft())
            batch = self._set_aside(backends, batch)
            if not batch:
                continue
            task = asyncio.create_task(self._answer(backends, batch), name="gateway-order-batch")
            self._last_batch_at = loop.time()
            self._batches.add(task)
            task.add_done_callback(self._batch_done)

    def _set_aside(self, backends: Backends, batch: list[_Waiting]) -> list[_Waiting]:
        """The orders of `batch` to place now; those whose shard's channel is down set aside.

        A batch waits for its slowest step, and learning that a shard is down takes up to
        REACH_WAIT_SECONDS (a restart may be over by then): placed with the others, an order of
        a down shard would hold every order of its batch that long, whatever their shards, and a
        few such batches every batch slot (BATCHES_IN_FLIGHT), so that one killed shard would
        stall the others. Set aside, the orders of a down shard wait together, without a slot and
        before anything is reserved for them, for the shard to come back within that time: then
        they go into the next batch, ahead of the orders that came after; else each is refused
        UNAVAILABLE (TRADING_UNAVAILABLE), with nothing done, to be retried."""
        shards = backends.trading_shards
        down: dict[str, TradingShard | None] = {}  # symbol -> its shard if down now, else None
        kept: list[_Waiting] = []
        for item in batch:
            symbol = item.order.symbol
            if symbol in down:
                shard = down[symbol]
            else:
                shard = down[symbol] = shards.down_now(symbol)
            if shard is None:
                kept.append(item)
                continue
            now = asyncio.get_running_loop().time()
            if not item.aside_since:
                item.aside_since = now
            elif now - item.aside_since >= REACH_WAIT_SECONDS:
                # Set aside before, back, and down again (a flapping shard): it has waited enough.
                item.call.answer(item.position, refusals.trading_unreachable())
                continue
            aside = self._aside.get(shard.name)
            if aside is None:
                aside = self._aside[shard.name] = []
                task = asyncio.create_task(self._after_down(shard), name=f"gateway-orders-aside-{shard.name}")
                self._aside_tasks.add(task)
                task.add_done_callback(self._aside_tasks.discard)
            aside.append(item)
        return kept

    async def _after_down(self, shard: TradingShard) -> None:
        """Wait for down `shard` to come back (REACH_WAIT_SECONDS at most), then queue the orders set
        aside for it again, or refuse each."""
        try:
            down = await unreachable(shard.channel)
        finally:
            aside = self._aside.pop(shard.name, [])
        if down:
            for item in aside:
                item.call.answer(item.position, refusals.trading_unreachable())
            return
        self._waiting.extendleft(reversed(aside))
        self._wake.set()

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._room.set()
        self._wake.set()

    async def _answer(self, backends: Backends, batch: list[_Waiting]) -> None:
        try:
            outcomes = await self.submit_batch(backends, [(item.order, item.instrument) for item in batch])
        except Exception as error:  # a bug: every order of the batch has an unknown outcome
            log.exception("order batch failed")
            outcomes = [refusals.gateway_failed(item.order.order_id, error) for item in batch]
        for item, outcome in zip(batch, outcomes, strict=True):
            item.call.answer(item.position, outcome)

    async def submit_batch(self, backends: Backends, orders: Sequence[Placing]) -> list[Outcome]:
        """Place validated orders together; for each (in order) its reports or its refusal.

        Each order is answered exactly as `submit` answers it alone; one order's refusal
        does not touch the others. Risk claims each client order id in the step that reserves
        the order (no round trip of the gateway's own); an order whose id another order holds
        (a retry, or the same id earlier in the batch) takes the one-by-one path of `submit`
        once the others are answered.
        """
        in_flight = self._in_flight
        entries: list[tuple[trading_pb2.NewOrder, common_pb2.Instrument, str]] = []
        for order, instrument in orders:
            in_flight[order.order_id] = None
            entries.append((order, instrument, client_order_id_key(order.account_id, order.client_order_id)))
        try:
            placed = await self._place_many(backends, entries)
            outcomes: list[Outcome | None] = [None] * len(orders)
            held: list[tuple[int, _Held]] = []
            for index, outcome in enumerate(placed):
                if isinstance(outcome, _Held):
                    held.append((index, outcome))
                else:
                    outcomes[index] = outcome
                    # A later order of the batch under the same client order id waits for this answer.
                    self._answered(entries[index][0].order_id)
            await asyncio.gather(
                *(
                    _into(
                        outcomes,
                        index,
                        self._submit_held(backends, *entries[index], holder),
                        functools.partial(self._answered, entries[index][0].order_id),
                    )
                    for index, holder in held
                )
            )
            return [outcome if outcome is not None else _lost() for outcome in outcomes]
        finally:
            for order, _ in orders:
                self._answered(order.order_id)

    def _answered(self, order_id: str) -> None:
        """The submission of order `order_id` is answered: it is no longer under way, and whoever
        waits for it is woken."""
        event = self._in_flight.pop(order_id, None)
        if event is not None:
            event.set()

    async def _submit_held(
        self,
        backends: Backends,
        order: trading_pb2.NewOrder,
        instrument: common_pb2.Instrument,
        key: str,
        held_by: _Held,
    ) -> list[common_pb2.ExecutionReport]:
        """The one-by-one path: the client order id was held by another order (a retry, most often).

        The gateway claims the id itself here (the rare path), then reserves and places the order
        with the claim already its own.
        """
        holder, age_seconds = held_by
        known = True  # holder and age_seconds are what the last step found
        for _ in range(CLAIM_ROUNDS):
            if not known:
                holder, age_seconds = await self._claim_client_order_id(backends, key, order.order_id)
            known = False
            if holder and holder != order.order_id:
                held = await self._held(backends, order, key, holder, age_seconds)
                if isinstance(held, list):
                    return held
                if not held:  # waited for an attempt of this process, or lost the claim: again
                    continue
            (outcome,) = await self._place_many(backends, [(order, instrument, key)], claimed=True)
            if isinstance(outcome, _Held):  # another attempt took the claim meanwhile
                (holder, age_seconds), known = outcome, True
                continue
            if isinstance(outcome, ServiceError):
                raise outcome
            return outcome
        raise refusals.client_order_id_in_flight(order.client_order_id, holder)

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
        if holder_id in self._in_flight:
            # A submission of this process: wait for its answer, then look again.
            under_way = self._in_flight[holder_id]
            if under_way is None:
                under_way = self._in_flight[holder_id] = asyncio.Event()
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
                await self._release_many(backends, [(holder_id, order.account_id)])
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
            return await self.lookups_for(backends).find(holder_id)
        except ServiceError as error:
            raise refusals.holder_unconfirmed(order.client_order_id, holder_id, error) from None

    async def _place_many(
        self,
        backends: Backends,
        entries: Sequence[tuple[trading_pb2.NewOrder, common_pb2.Instrument, str]],
        *,
        claimed: bool = False,
    ) -> list[Outcome | _Held]:
        """Claim each client order id and reserve in risk, then place in trading, compensating
        what fails; `claimed` when the gateway has claimed every id for its order already.

        One risk message reserves every order and claims its client order id in the same atomic
        step (an id another order holds is answered _Held, and nothing of that order changed);
        one trading message places those risk granted. A refused reserve left no claim; the
        claims of orders that fail later are freed in one Redis round trip. A reserve whose
        claim risk did not look at (risk could not answer, refused before looking, or does
        not claim: an older risk) has its id claimed here, in one round trip for all of them.
        """
        outcomes: list[Outcome | _Held | None] = [None] * len(entries)
        freeing: list[tuple[str, str]] = []  # (key, order id) of attempts that failed for sure
        releasing: list[trading_pb2.NewOrder] = []  # reservations to give back
        reservations: Sequence[risk_pb2.ReservationResult | ServiceError]
        risk_down: ServiceError | None = None  # the answer of every reserve when none was sent
        if await unreachable(backends.risk_channel):
            risk_down = unavailable(
                RejectReason.RISK_UNAVAILABLE,
                "the order was not placed: risk cannot be reached; retry with the same client_order_id",
            )
            reservations = [risk_down for _ in entries]
        else:
            # Each Reserve built in place from its fields (a Reserve message handed over is copied).
            reservations = await backends.reservations.submit_many(
                [
                    risk_pb2.ReservationCommand(
                        reserve={
                            "order_id": order.order_id,
                            "account_id": order.account_id,
                            "symbol": order.symbol,
                            "side": order.side,
                            "price_ticks": order.price_ticks,
                            "quantity_lots": order.quantity_lots,
                            "quote_budget": order.quote_budget,
                            "client_order_id": order.client_order_id,
                        }
                    )
                    for order, _, _ in entries
                ]
            )
        claims = await self._claims_of(backends, entries, reservations, claimed)
        granted: list[int] = []
        for index, ((order, instrument, key), reservation, claim) in enumerate(
            zip(entries, reservations, claims, strict=True)
        ):
            if claim is True and (isinstance(reservation, ServiceError) or not reservation.accepted):
                freeing.append((key, order.order_id))
            if isinstance(reservation, ServiceError):
                if reservation is not risk_down and reservation.reason not in refusals.NOT_SENT_REASONS:
                    releasing.append(order)
                if isinstance(claim, _Held | ServiceError):
                    outcomes[index] = claim
                else:
                    outcomes[index] = (
                        reservation if reservation is risk_down else refusals.risk_unreachable(reservation)
                    )
            elif isinstance(claim, _Held | ServiceError):
                # Another order holds the id, or the claim could not be looked at (Redis is down).
                if reservation.accepted:  # an older risk reserved without looking at the claim
                    releasing.append(order)
                outcomes[index] = claim
            elif not reservation.accepted:
                outcomes[index] = refusals.risk_refusal(reservation, instrument)
            else:
                # Trading refuses an order reserved in an epoch of risk's state that risk has since rebuilt.
                order.risk_epoch = reservation.epoch
                granted.append(index)

        answers: list[trading_pb2.CommandResult | ServiceError] = []
        shards = backends.trading_shards
        symbols = {entries[index][0].symbol for index in granted}  # each symbol's shard looked up once
        down = await shards.down(shards.of_symbol(symbol) for symbol in symbols)
        if down:  # the orders of a shard that cannot be reached are not sent; the others are
            cut = [index for index in granted if shards.of_symbol(entries[index][0].symbol).name in down]
            granted = [index for index in granted if index not in cut]
            for index in cut:
                order, _, key = entries[index]
                releasing.append(order)
                freeing.append((key, order.order_id))
                outcomes[index] = refusals.trading_unreachable()
        if granted:
            answers = await shards.submit_many(
                [trading_pb2.OrderCommand(new_order=entries[index][0]) for index in granted]
            )
        rare: list[Awaitable[None]] = []
        for index, answer in zip(granted, answers, strict=True):
            order, instrument, key = entries[index]
            if isinstance(answer, ServiceError):
                if answer.reason in refusals.NOT_SENT_REASONS:
                    releasing.append(order)
                    freeing.append((key, order.order_id))
                    outcomes[index] = answer
                else:
                    self._resolver_for(backends).add(order)
                    outcomes[index] = refusals.outcome_unknown(order.order_id, answer)
                continue
            # Read once: each read of a repeated field makes a Python object per element.
            every = list(answer.reports)
            backends.reported.note(every)  # for every account whose order it touched
            # A command's result also carries the reports of the orders it traded against
            # (other accounts' orders): the caller sees only its own order's.
            order_id = order.order_id
            reports = [r for r in every if r.order.order_id == order_id]
            if not reports:
                rare.append(_into(outcomes, index, self._unplaced(backends, order, key, answer)))
                continue
            if reports[0].execution_type == common_pb2.EXECUTION_TYPE_REJECTED:
                releasing.append(order)
                freeing.append((key, order.order_id))
                outcomes[index] = refusals.trading_refusal(reports[0], order.order_id)
                continue
            outcomes[index] = reports
        # Releases first: a freed client order id may be reused at once, and its new attempt's
        # reserve must come after the release on risk's stream.
        if releasing:
            await self._release_many(backends, [(order.order_id, order.account_id) for order in releasing])
        await asyncio.gather(self._free_many(backends, freeing), *rare)
        return [outcome if outcome is not None else _lost() for outcome in outcomes]

    async def _claims_of(
        self,
        backends: Backends,
        entries: Sequence[tuple[trading_pb2.NewOrder, common_pb2.Instrument, str]],
        reservations: Sequence[risk_pb2.ReservationResult | ServiceError],
        claimed: bool,
    ) -> list[bool | _Held | ServiceError]:
        """Where each order's client order id stands after its reserve: True when it is claimed
        for the order (to be freed if the attempt fails), False when nothing was claimed, _Held
        when another order holds it, a ServiceError when it could not be looked at.

        `claimed`: the gateway claimed every id before the reserve. Otherwise an id whose claim
        risk did not look at is claimed here, all of them in one round trip.
        """
        claims: list[bool | _Held | ServiceError] = []
        unlooked: list[int] = []
        for index, reservation in enumerate(reservations):
            state = (
                risk_pb2.CLIENT_ORDER_ID_CLAIM_UNSPECIFIED
                if isinstance(reservation, ServiceError)
                else reservation.client_order_id_claim
            )
            if state == risk_pb2.CLIENT_ORDER_ID_CLAIM_HELD:
                assert not isinstance(reservation, ServiceError)
                holder = reservation.client_order_id_holder
                claims.append(_Held(holder, _claim_age(reservation.client_order_id_ttl_ms)))
            elif claimed or state == risk_pb2.CLIENT_ORDER_ID_CLAIM_CLAIMED:
                claims.append(True)
            elif state == risk_pb2.CLIENT_ORDER_ID_CLAIM_FREE:
                claims.append(False)
            else:
                claims.append(True)
                unlooked.append(index)
        if unlooked:
            try:
                found = await self._claim_many(
                    backends,
                    [entries[index][2] for index in unlooked],
                    [entries[index][0].order_id for index in unlooked],
                )
            except ServiceError as error:
                for index in unlooked:
                    claims[index] = error
                return claims
            for index, (holder, age_seconds) in zip(unlooked, found, strict=True):
                if holder and holder != entries[index][0].order_id:
                    claims[index] = _Held(holder, age_seconds)
        return claims

    async def _unplaced(
        self, backends: Backends, order: trading_pb2.NewOrder, key: str, answer: trading_pb2.CommandResult
    ) -> list[common_pb2.ExecutionReport]:
        """Trading answered without a report of `order`: another order holds its client order id, or
        the answer breaks the protocol (the outcome is unknown)."""
        holder = _holder_report(answer.reports, order)
        if holder is not None:
            # Trading holds the client order id for another order (the claim was lost): this
            # attempt was not placed; its reservation goes and the claim names the holder.
            await self._release_many(backends, [(order.order_id, order.account_id)])
            await self._repoint_client_order_id(backends, key, order.order_id, holder.order.order_id)
            return _holder_answer(order, holder)
        self._resolver_for(backends).add(order)
        raise refusals.outcome_unknown(
            order.order_id, unavailable(RejectReason.PROTOCOL_ERROR, "trading answered without a report")
        )

    async def cancel(self, backends: Backends, order_id: str, account_id: str) -> common_pb2.Order:
        """Cancel an open order of `account_id`; the order afterwards. Raises ServiceError."""
        (outcome,) = await self.cancel_batch(backends, [(order_id, account_id)])
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome[-1].order

    async def cancel_batch(self, backends: Backends, cancels: Sequence[tuple[str, str]]) -> list[Outcome]:
        """Cancel (order id, account id) pairs in one trading message; each its order's reports
        (the last one shows the order afterwards) or its refusal."""
        shards = backends.trading_shards
        outcomes: list[Outcome | None] = [None] * len(cancels)
        target: dict[int, str] = {}  # the shard of each cancel whose id names a known one
        for index, (order_id, _) in enumerate(cancels):
            try:
                target[index] = shards.of_order(order_id).name
            except ServiceError as error:  # it names a shard there is not: no such order
                outcomes[index] = error
        down = await shards.down(shards.named(name) for name in set(target.values()))
        sending = [index for index, name in target.items() if name not in down]
        for index, name in target.items():
            if name in down:
                outcomes[index] = unavailable(
                    RejectReason.TRADING_UNAVAILABLE,
                    "the cancel was not sent: the matching engine cannot be reached",
                )
        answers = await shards.submit_many(
            [
                trading_pb2.OrderCommand(
                    cancel_order=trading_pb2.CancelOrder(order_id=order_id, account_id=account_id)
                )
                for order_id, account_id in (cancels[index] for index in sending)
            ]
        )
        for index, answer in zip(sending, answers, strict=True):
            order_id = cancels[index][0]
            outcomes[index] = _cancel_outcome(backends, order_id, answer)
        return [outcome if outcome is not None else _lost() for outcome in outcomes]

    async def replace(
        self, backends: Backends, order: common_pb2.Order, price_ticks: int, quantity_lots: int
    ) -> list[common_pb2.ExecutionReport]:
        """Replace the open `order` (as trading last showed it) to `price_ticks` and a total of
        `quantity_lots`; the replace's reports (REPLACED, then any trades), or [] when the order
        already has that price and quantity. Raises ServiceError (nothing changed, except on
        OUTCOME_UNKNOWN)."""
        order_id, account_id = order.order_id, order.account_id
        shard = backends.trading_shards.of_order(order_id)
        if order.status not in _OPEN_STATUSES:
            raise refusals.order_not_open(order_id)
        if price_ticks == order.price_ticks and quantity_lots == order.quantity_lots:
            return []  # already what is asked: a retried replace changes nothing
        if quantity_lots <= order.filled_lots:
            raise failed_precondition(
                RejectReason.REPLACE_QUANTITY_TOO_SMALL,
                "quantity must be above the order's filled quantity; cancel the order instead",
                order_id=order_id,
            )
        if await unreachable(backends.risk_channel):
            raise unavailable(
                RejectReason.RISK_UNAVAILABLE, "the order was not replaced: risk cannot be reached"
            )
        replace_id = uuid.uuid4().hex
        grow = risk_pb2.ReservationCommand(
            grow_for_replace=risk_pb2.GrowForReplace(
                order_id=order_id,
                account_id=account_id,
                symbol=order.symbol,
                side=order.side,
                price_ticks=price_ticks,
                leaves_lots=quantity_lots - order.filled_lots,
                replace_id=replace_id,
            )
        )
        (grown,) = await backends.reservations.submit_many([grow])
        if (
            not isinstance(grown, ServiceError)
            and grown.reject_reason == RejectReason.REPLACE_IN_FLIGHT.number
            and await _risk_caught_up(backends, account_id, shard.name)
        ):
            # The replace in flight may be one this gateway already answered (its caller replaces
            # again at once) whose OrderReplaced risk had not applied yet: now it has.
            (grown,) = await backends.reservations.submit_many([grow])
        if isinstance(grown, ServiceError):
            if grown.reason not in refusals.NOT_SENT_REASONS:
                await self._end_replaces(backends, [(order_id, account_id, replace_id)])
            raise refusals.risk_unreachable(grown)
        if not grown.accepted:
            raise refusals.replace_refused_by_risk(grown, order)
        end = [(order_id, account_id, replace_id)]
        if await unreachable(shard.channel):
            await self._end_replaces(backends, end)
            raise unavailable(
                RejectReason.TRADING_UNAVAILABLE,
                "the order was not replaced: the matching engine cannot be reached",
            )
        command = trading_pb2.ReplaceOrder(
            order_id=order_id,
            account_id=account_id,
            price_ticks=price_ticks,
            quantity_lots=quantity_lots,
            risk_epoch=grown.epoch,
            replace_id=replace_id,
        )
        replace = trading_pb2.OrderCommand(replace_order=command)
        (answer,) = await backends.trading_shards.submit_many([replace])
        if isinstance(answer, ServiceError):
            if answer.reason in refusals.NOT_SENT_REASONS:
                await self._end_replaces(backends, end)
                raise answer
            # Applied or not, the resolver settles it: fenced when not, and risk then gives the grow back.
            self._resolver_for(backends).add_replace(order_id, account_id, replace_id)
            raise refusals.outcome_unknown(order_id, answer, replace=True)
        backends.reported.note(answer.reports)
        reports = [r for r in answer.reports if r.order.order_id == order_id]
        if not reports:
            self._resolver_for(backends).add_replace(order_id, account_id, replace_id)
            raise refusals.outcome_unknown(
                order_id,
                unavailable(RejectReason.PROTOCOL_ERROR, "trading answered without a report"),
                replace=True,
            )
        if reports[0].execution_type == common_pb2.EXECUTION_TYPE_REJECTED:
            await self._end_replaces(backends, end)
            raise refusals.replace_refusal(reports[0], order_id)
        return reports

    async def _end_replaces(self, backends: Backends, ends: Sequence[tuple[str, str, str]]) -> None:
        """Give back what the grows of (order id, account id, replace id) added: their replaces
        were not applied."""
        commands = [
            risk_pb2.ReservationCommand(
                end_replace=risk_pb2.EndReplace(
                    order_id=order_id, account_id=account_id, replace_id=replace_id
                )
            )
            for order_id, account_id, replace_id in ends
        ]
        await self._compensate(backends, commands, [order_id for order_id, _, _ in ends])

    # --- steps ------------------------------------------------------------------------------

    def _scripts(self, backends: Backends) -> tuple[AsyncScript, AsyncScript]:
        if self._claim is None or self._unclaim is None:
            self._claim = backends.redis.register_script(_CLAIM_SCRIPT)
            self._unclaim = backends.redis.register_script(_UNCLAIM_SCRIPT)
        return self._claim, self._unclaim

    def lookups_for(self, backends: Backends) -> OrderLookups:
        """Trading's word on orders (held client order ids' holders, replaced and looked-up orders),
        the lookups of one loop turn together."""
        lookups = self._lookups
        if lookups is None or lookups.backends is not backends:
            lookups = self._lookups = OrderLookups(backends)
        return lookups

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

    async def _run_many(
        self,
        backends: Backends,
        script: AsyncScript,
        calls: Sequence[tuple[Sequence[str], Sequence[str | int]]],
    ) -> list[Any]:
        """Run `script` once per (keys, args) in one pipeline (one round trip); results in order.

        A script Redis lost (a flush, a restart) is loaded again and the calls that missed it
        are run again; any other failure raises RedisError.
        """
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            async with backends.redis.pipeline(transaction=False) as pipe:
                for index in todo:
                    keys, args = calls[index]
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
            missing = []
            for index, answer in zip(todo, answers, strict=True):
                if isinstance(answer, NoScriptError) and attempt == 0:
                    missing.append(index)
                elif isinstance(answer, Exception):
                    raise answer if isinstance(answer, RedisError) else RedisError(str(answer))
                else:
                    results[index] = answer
            if not missing:
                break
            await backends.redis.script_load(script.script)
            todo = missing
        return results

    async def _by_account(
        self, backends: Backends, script: AsyncScript, claims: Sequence[tuple[str, str]], *extra: str | int
    ) -> list[Any]:
        """Run `script` over (key, order id) claims, one call per account (its keys share a hash
        tag), all in one round trip; each call's answer, per account in order of first appearance,
        with the claims' positions."""
        groups: dict[str, list[int]] = {}
        for index, (key, _) in enumerate(claims):
            groups.setdefault(key[: key.index("}") + 1], []).append(index)
        calls = [
            ([claims[i][0] for i in indices], [*(claims[i][1] for i in indices), *extra])
            for indices in groups.values()
        ]
        answers = await self._run_many(backends, script, calls)
        return list(zip(groups.values(), answers, strict=True))

    async def _claim_many(
        self, backends: Backends, keys: Sequence[str], order_ids: Sequence[str]
    ) -> list[tuple[str, float]]:
        """For each key, ('', 0) when the id is now its order's; else (the order id holding it,
        seconds since its claim). One round trip; REDIS_UNAVAILABLE when Redis cannot answer."""
        claim, _ = self._scripts(backends)
        claims: list[tuple[str, float]] = [("", 0.0)] * len(keys)
        try:
            groups = await self._by_account(
                backends, claim, list(zip(keys, order_ids, strict=True)), CLIENT_ORDER_ID_TTL_SECONDS
            )
        except RedisError as error:
            raise unavailable(
                RejectReason.REDIS_UNAVAILABLE, f"the idempotency store is unavailable ({error}); retry"
            ) from None
        for indices, answer in groups:
            for position, index in enumerate(indices):
                claims[index] = _claim_answer(answer[2 * position : 2 * position + 2])
        return claims

    async def _claim_client_order_id(self, backends: Backends, key: str, order_id: str) -> tuple[str, float]:
        """('', 0) when the id is ours now; else (the order id that holds it, seconds since its claim)."""
        (claim,) = await self._claim_many(backends, [key], [order_id])
        return claim

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
        await self._free_many(backends, [(key, order_id)])

    async def _free_many(self, backends: Backends, claims: Sequence[tuple[str, str]]) -> None:
        """Free each (key, order id) claim that still names its order (failed attempts); one round trip."""
        if not claims:
            return
        _, unclaim = self._scripts(backends)
        try:
            await self._by_account(backends, unclaim, claims)
        except RedisError as error:  # the ids stay taken until they expire: log, do not fail
            log.warning("could not free client order ids", count=len(claims), error=str(error))

    async def _release_many(self, backends: Backends, orders: Sequence[tuple[str, str]]) -> None:
        """Queue compensating releases of what each (order id, account id) holds, in one risk
        message, and wait (bounded) for risk to apply them.

        A release is queued behind its reserve on the same stream, so even a reserve that is
        still waiting to be sent is released after it.
        """
        commands = [
            risk_pb2.ReservationCommand(release=risk_pb2.Release(order_id=order_id, account_id=account_id))
            for order_id, account_id in orders
        ]
        await self._compensate(backends, commands, [order_id for order_id, _ in orders])

    async def _compensate(
        self, backends: Backends, commands: Sequence[risk_pb2.ReservationCommand], order_ids: Sequence[str]
    ) -> None:
        """Queue compensating `commands` (of `order_ids`) in one risk message and wait (bounded)
        for risk to apply them; a failure is logged (risk reconciles what is left)."""
        task = asyncio.create_task(backends.reservations.submit_many(commands))
        backends.background.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            backends.background.discard(finished)
            if finished.cancelled():
                return
            error = finished.exception()
            failures = (
                [error] if error is not None else [r for r in finished.result() if isinstance(r, Exception)]
            )
            for failure in failures:
                log.warning(
                    "compensation failed; risk reconciles the reservation",
                    order_ids=list(order_ids[:10]),
                    error=str(failure),
                )

        task.add_done_callback(done)
        # When risk is known to be down the releases stay queued; do not keep the caller waiting.
        wait = 0.05 if await unreachable(backends.risk_channel, 0) else RELEASE_WAIT_SECONDS
        await asyncio.wait({task}, timeout=wait)


async def _risk_caught_up(backends: Backends, account_id: str, shard: str) -> bool:
    """Wait (bounded, risk's read wait) until risk has applied every event of trading shard `shard`
    this gateway reported to `account_id`; False when there is none, or risk could not say."""
    wanted = backends.reported.latest(account_id, shard)
    if not wanted:
        return False
    request = risk_pb2.GetAccountRiskRequest(account_id=account_id, source=shard, min_sequence=wanted)
    try:
        answer = await backends.call(backends.risk.GetAccountRisk, request)
    except ServiceError as error:
        log.info("risk did not confirm the account's events", account_id=account_id, why=error.message)
        return False
    return bool(answer.applied_sequence >= wanted)


def _into(
    outcomes: list[Outcome | None] | list[Outcome | _Held | None],
    index: int,
    attempt: Awaitable[list[common_pb2.ExecutionReport]],
    answered: Callable[[], None] | None = None,
) -> Awaitable[None]:
    """Run `attempt` and put its reports, or its refusal, at `index` of `outcomes` (then call `answered`)."""

    async def run() -> None:
        try:
            outcomes[index] = await attempt
        except ServiceError as error:
            outcomes[index] = error
        finally:
            if answered is not None:
                answered()

    return run()


def _lost() -> ServiceError:
    """An order of a batch left without an outcome: a bug, answered as an unknown outcome."""
    log.error("an order of a batch was left without an outcome")
    return unavailable(RejectReason.OUTCOME_UNKNOWN, "the gateway lost track of this order; call GetOrder")


def _claim_answer(answer: Any) -> tuple[str, float]:
    holder = _text(answer[0]) if answer else ""
    if not holder:
        return "", 0.0
    return holder, _claim_age(int(answer[1]) if len(answer) > 1 else -1)


def _claim_age(left_ms: int) -> float:
    """Seconds since a claim with `left_ms` milliseconds to live was made (inf: it has no expiry)."""
    return CLIENT_ORDER_ID_TTL_SECONDS - left_ms / 1000 if left_ms >= 0 else float("inf")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _cancel_outcome(
    backends: Backends, order_id: str, answer: trading_pb2.CommandResult | ServiceError
) -> Outcome:
    """What trading's answer to a cancel means for its caller: the order's reports, or a refusal."""
    if isinstance(answer, ServiceError):
        if answer.reason in refusals.NOT_SENT_REASONS:
            return answer
        return refusals.outcome_unknown(order_id, answer, cancel=True)
    backends.reported.note(answer.reports)
    reports = [r for r in answer.reports if r.order.order_id in ("", order_id)]
    if not reports:
        return unavailable(RejectReason.PROTOCOL_ERROR, "trading answered the cancel without a report")
    rejected = next((r for r in reports if r.execution_type == common_pb2.EXECUTION_TYPE_REJECTED), None)
    if rejected is not None:
        return refusals.cancel_refusal(rejected, order_id)
    return reports


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
