"""RiskService: proto in, domain operations, Redis store, proto out.

Risk's state is a cache that can be rebuilt (risk/rebuild.py): every call runs in the state's
current epoch, and the two event streams (trading's, the ledger's) hand risk the snapshots it
asks for while it rebuilds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
import structlog
from redis import exceptions as redis_errors

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.money import InstrumentMath
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.errors import (
    ServiceError,
    failed_precondition,
    invalid_field,
    unavailable,
)
from risk import exposure
from risk.exposure import EndReplaceOp, GrowOp, LegOp, Rejection, ReleaseOp, ReserveOp
from risk.instruments import InstrumentCache, instrument_problem
from risk.rebuild import LEDGER_DONE, RiskState, caught_up_field, expected_field, snapshot_field
from risk.store import RiskStateError, RiskStore, StaleEpochError

log = structlog.get_logger("backbone.risk")

# The longest a balance read waits for risk to apply the sequence its caller was told about.
READ_WAIT_SECONDS = 2.0
# The most reservations one ListReservations page may ask for.
MAX_RESERVATIONS_PAGE = 5000


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    """Redis being unreachable is UNAVAILABLE; other Redis errors stay internal."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as error:
        log.warning("redis unreachable", error=repr(error))
        raise unavailable(RejectReason.REDIS_UNAVAILABLE, "risk cannot reach Redis; retry shortly") from error


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    """Translates RiskService calls to the store; `attach` gives it its store once started."""

    def __init__(self) -> None:
        self._store: RiskStore | None = None
        self._instruments: InstrumentCache | None = None
        self._state: RiskState | None = None

    def attach(self, store: RiskStore, instruments: InstrumentCache, state: RiskState) -> None:
        self._store = store
        self._instruments = instruments
        self._state = state

    def detach(self) -> None:
        self._store = None
        self._instruments = None
        self._state = None

    def _ready(self) -> tuple[RiskStore, InstrumentCache]:
        if self._store is None or self._instruments is None:
            raise unavailable(RejectReason.SERVICE_STARTING, "risk is starting or stopping; retry shortly")
        return self._store, self._instruments

    def _risk_state(self) -> RiskState:
        if self._state is None:
            raise unavailable(RejectReason.SERVICE_STARTING, "risk is starting or stopping; retry shortly")
        return self._state

    # Reservations ---------------------------------------------------------

    async def StreamReservations(
        self,
        request_iterator: AsyncIterator[risk_pb2.StreamReservationsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[risk_pb2.StreamReservationsResponse]:
        async for request in request_iterator:
            yield await self.reserve_batch(request.commands, request.sequence)

    async def reserve_batch(
        self, commands: Sequence[risk_pb2.ReservationCommand], sequence: int = 0
    ) -> risk_pb2.StreamReservationsResponse:
        """The answer to a batch: one result per command, in order; the store work is one Redis round trip."""
        store, instruments = self._ready()
        state = self._risk_state()
        response = risk_pb2.StreamReservationsResponse(sequence=sequence)
        epoch = state.ready_epoch
        if epoch is None:  # each command is answered: the stream stays up through a rebuild
            _all_refused(response, commands, RejectReason.RISK_REBUILDING)
            return response
        kinds = [command.WhichOneof("command") for command in commands]
        reserves = [
            command.reserve if kind == "reserve" else None
            for command, kind in zip(commands, kinds, strict=True)
        ]
        symbols = {reserve.symbol for reserve in reserves if reserve is not None}
        symbols.update(
            command.grow_for_replace.symbol
            for command, kind in zip(commands, kinds, strict=True)
            if kind == "grow_for_replace"
        )
        maths: dict[str, InstrumentMath] = {}
        if symbols:
            # A symbol risk has not learned from trading's events is UNKNOWN_SYMBOL (plan_reserve).
            with _redis_errors():
                maths = await instruments.lookup(symbols)
        planned: list[ReserveOp | ReleaseOp | GrowOp | EndReplaceOp | Rejection] = []
        for command, kind, reserve in zip(commands, kinds, reserves, strict=True):
            if reserve is not None:
                planned.append(exposure.plan_reserve(reserve, maths.get(reserve.symbol)))
            elif kind == "release":
                planned.append(exposure.plan_release(command.release))
            elif kind == "grow_for_replace":
                grow = command.grow_for_replace
                planned.append(exposure.plan_grow(grow, maths.get(grow.symbol)))
            elif kind == "end_replace":
                planned.append(exposure.plan_end_replace(command.end_replace))
            else:
                planned.append(Rejection("", exposure.INVALID_ORDER, "the command has no kind risk knows"))
        runnable = [p for p in planned if not isinstance(p, Rejection)]
        with _redis_errors():
            outcomes_list = await store.run_reservations(runnable, epoch)
        if any(o.reason == RejectReason.RISK_REBUILDING for o in outcomes_list):
            # The state is gone under this batch: what it held there is gone with it, so the
            # whole batch is refused (a reserve that was held is released by the rebuild).
            state.stale()
            del response.results[:]
            _all_refused(response, commands, RejectReason.RISK_REBUILDING)
            return response
        outcomes = iter(outcomes_list)
        add = response.results.add
        for plan in planned:
            if isinstance(plan, Rejection):
                log.debug("command refused", order_id=plan.order_id, reason=plan.reason, why=plan.message)
                add(
                    order_id=plan.order_id,
                    accepted=False,
                    reject_reason=_reason_number(plan.reason),
                    asset=plan.asset,
                    amount=plan.amount,
                )
                continue
            outcome = next(outcomes)
            if not outcome.accepted:
                log.debug("reserve refused", order_id=plan.order_id, reason=outcome.reason)
            result = add(
                order_id=plan.order_id,
                accepted=outcome.accepted,
                reject_reason=_reason_number(outcome.reason),
                asset=outcome.asset,
                amount=outcome.amount,
                epoch=epoch,
            )
            if outcome.claim:  # a reserve that looked at its client order id's claim
                result.client_order_id_claim = outcome.claim
                if outcome.holder:
                    result.client_order_id_holder = outcome.holder
                    result.client_order_id_ttl_ms = outcome.holder_ttl_ms
        return response

    # Trading events -------------------------------------------------------

    async def StreamTradingEvents(
        self,
        request_iterator: AsyncIterator[risk_pb2.StreamTradingEventsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[risk_pb2.StreamTradingEventsResponse]:
        store, _ = self._ready()
        state = self._risk_state()
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        if not first.source:
            raise invalid_field(
                "source", RejectReason.SOURCE_REQUIRED, "the first request must name its source"
            )
        problem = ids.source_problem(first.source)
        if problem:
            raise invalid_field("source", RejectReason.INVALID_SOURCE, problem)
        source = first.source
        with _redis_errors():
            stream, hello = await self._open_trading_stream(store, source)
        log.info(
            "trading events stream opened",
            source=source,
            resume_after=stream.cursor,
            snapshot_wanted=hello.snapshot_wanted,
        )
        yield hello
        async for request in state.until_gone(stream.epoch, requests):
            if request.source and request.source != source:
                raise invalid_field(
                    "source", RejectReason.SOURCE_CHANGED, "a stream carries the events of one source"
                )
            try:
                with _redis_errors():
                    if request.HasField("snapshot"):
                        await self._apply_trading_snapshot(stream, request.snapshot)
                    elif request.events:
                        stream.cursor = await self.apply_events(stream, request.events)
            except StaleEpochError:
                raise state.stale() from None
            yield risk_pb2.StreamTradingEventsResponse(applied_sequence=stream.cursor)

    async def _open_trading_stream(
        self, store: RiskStore, source: str
    ) -> tuple[_TradingStream, risk_pb2.StreamTradingEventsResponse]:
        """The stream's epoch and cursor, and the hello's answer (asking for a snapshot if needed)."""
        epoch, ready = await store.epochs()
        if epoch is None:
            raise self._risk_state().stale()
        progress = {} if ready == epoch else await store.rebuild_progress()
        stream = _TradingStream(
            source, epoch, await store.cursor(source), await store.balance_only_through(source)
        )
        wants_snapshot = ready != epoch and snapshot_field(source) not in progress
        if wants_snapshot and LEDGER_DONE not in progress:
            raise unavailable(
                RejectReason.RISK_REBUILDING,
                "risk is rebuilding and waits for the ledger's balances before trading's open orders; "
                "retry shortly",
            )
        hello = risk_pb2.StreamTradingEventsResponse(
            applied_sequence=stream.cursor,
            snapshot_wanted=wants_snapshot,
            epoch=epoch if wants_snapshot else "",
        )
        return stream, hello

    async def _apply_trading_snapshot(self, stream: _TradingStream, page: risk_pb2.TradingSnapshot) -> None:
        """Hold what each open order of a snapshot page needs; the last page ends the hand-over."""
        store, instruments = self._ready()
        if page.epoch != stream.epoch:
            raise StaleEpochError(f"a snapshot of epoch {page.epoch!r} for epoch {stream.epoch!r}")
        for instrument in page.instruments:
            problem = instrument_problem(instrument)
            if problem is not None:
                raise invalid_field("snapshot.instruments", RejectReason.MALFORMED_EVENT, problem)
        await store.store_instruments(stream.epoch, page.instruments)
        for instrument in page.instruments:
            instruments.put(instrument)
        maths = await instruments.lookup({order.symbol for order in page.orders})
        try:
            holds = [exposure.open_order_hold(order, maths[order.symbol]) for order in page.orders]
        except (KeyError, exposure.MalformedEvent) as error:
            raise invalid_field("snapshot.orders", RejectReason.MALFORMED_EVENT, str(error)) from error
        await store.write_holds(stream.epoch, holds)
        if page.last:
            await store.write_balance_only(stream.epoch, stream.source, page.sequence)
            stream.balance_only_through = max(stream.balance_only_through, page.sequence)
            await self._risk_state().step_done(
                stream.epoch, snapshot_field(stream.source), str(page.sequence)
            )
            log.info(
                "trading snapshot applied",
                source=stream.source,
                sequence=page.sequence,
                resume_after=stream.cursor,
            )
            await self._mark_caught_up(stream)

    async def _mark_caught_up(self, stream: _TradingStream) -> None:
        if stream.caught_up or stream.cursor < stream.balance_only_through:
            return
        store, _ = self._ready()
        epoch, ready = await store.epochs()
        if ready == epoch:
            stream.caught_up = True
            return
        progress = await store.rebuild_progress()
        if snapshot_field(stream.source) in progress:
            await self._risk_state().step_done(
                stream.epoch, caught_up_field(stream.source), str(stream.cursor)
            )
            stream.caught_up = True

    async def apply_events(self, stream: _TradingStream, events: Sequence[risk_pb2.TradingEvent]) -> int:
        """Apply the events after the stream's cursor, then advance it; returns it.

        Instruments first: each is stored together with its sequence in one
        step, so a redelivered one is skipped and none is ever half-known. Then
        the legs of trades and releases (each applied once per account), then
        the cursor. Trading creates an instrument before any order on it, so a
        trade later in the same batch finds it. Events at or below a rebuilt
        state's snapshot sequence change totals only.
        """
        store, instruments = self._ready()
        source, epoch, cursor = stream.source, stream.epoch, stream.cursor
        sequences = [event.sequence for event in events]
        last = max(sequences)
        # Each event's sequence and kind, read once.
        fresh = [
            (sequence, event.WhichOneof("event"), event)
            for sequence, event in zip(sequences, events, strict=True)
            if sequence > cursor
        ]
        learned = _instruments_of(fresh)
        if learned:
            stored = await store.apply_instruments(source, learned, epoch)
            for (sequence, instrument), new in zip(learned, stored, strict=True):
                if new:
                    instruments.put(instrument)
                    log.info("instrument learned", symbol=instrument.symbol, source=source, sequence=sequence)
        legs = await self._legs(fresh, stream.balance_only_through)
        try:
            await store.apply_legs(source, legs, epoch)
        except RiskStateError as error:
            log.error(
                "trading event refused: applying it would corrupt risk state; stopping",
                source=source,
                sequence=error.leg.sequence,
                account_id=error.leg.account_id,
                order_id=error.leg.order_id,
                reason=error.reason,
                detail=list(error.detail),
            )
            raise ServiceError(
                grpc.StatusCode.INTERNAL,
                RejectReason.RISK_STATE_INCONSISTENT,
                f"risk refused event {error.leg.sequence} of {source}: {error}",
            ) from error
        stream.cursor = max(cursor, await store.advance_cursor(source, last, epoch))
        await self._mark_caught_up(stream)
        return stream.cursor

    async def _legs(
        self, events: Sequence[tuple[int, str | None, risk_pb2.TradingEvent]], balance_only_through: int = 0
    ) -> list[LegOp]:
        """The legs of (sequence, kind, event) of trading events, in order."""
        _, instruments = self._ready()
        trades = [event.trade if kind == "trade" else None for _, kind, event in events]
        symbols = {trade.symbol for trade in trades if trade is not None}
        symbols.update(event.order_replaced.symbol for _, kind, event in events if kind == "order_replaced")
        maths: dict[str, InstrumentMath] = {}
        if symbols:
            maths = await instruments.lookup(symbols)
        legs: list[LegOp] = []
        try:
            for (sequence, kind, event), trade in zip(events, trades, strict=True):
                if trade is not None:
                    math = self._math_of(trade.symbol, maths, sequence)
                    sides = exposure.trade_legs(sequence, trade, math)
                    if sequence <= balance_only_through:
                        legs.extend(exposure.balance_only(leg) for leg in sides)
                    else:
                        legs.extend(sides)
                elif kind == "order_released":
                    if sequence > balance_only_through:  # else the open orders already reflect it
                        legs.append(exposure.release_leg(sequence, event.order_released))
                elif kind == "order_fenced":
                    legs.append(exposure.fence_leg(sequence, event.order_fenced))
                elif kind == "replace_fenced":
                    legs.append(exposure.replace_fence_leg(sequence, event.replace_fenced))
                elif kind == "order_replaced":
                    if sequence > balance_only_through:  # else the open orders already reflect it
                        replaced = event.order_replaced
                        math = self._math_of(replaced.symbol, maths, sequence)
                        legs.append(exposure.replaced_leg(sequence, replaced, math))
                elif kind in ("instrument_created", "risk_epoch_changed"):
                    continue  # stored before the legs (apply_events); a mark that changes nothing
                else:
                    log.warning("trading event of no known kind skipped", sequence=sequence)
        except exposure.MalformedEvent as error:
            log.error("malformed trading event; stopping", error=str(error))
            raise invalid_field("events", RejectReason.MALFORMED_EVENT, str(error)) from error
        return legs

    @staticmethod
    def _math_of(symbol: str, maths: dict[str, InstrumentMath], sequence: int) -> InstrumentMath:
        """The instrument math of an event's symbol; FAILED_PRECONDITION when risk has not learned it."""
        math = maths.get(symbol)
        if math is None:
            log.error("event of an unknown symbol", sequence=sequence, symbol=symbol)
            raise failed_precondition(
                RejectReason.UNKNOWN_SYMBOL,
                f"event {sequence} names {symbol!r}, which risk has not learned from trading's events",
            )
        return math

    # Deposits and figures -------------------------------------------------

    async def StreamLedgerEvents(
        self,
        request_iterator: AsyncIterator[risk_pb2.StreamLedgerEventsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[risk_pb2.StreamLedgerEventsResponse]:
        store, _ = self._ready()
        state = self._risk_state()
        requests = aiter(request_iterator)
        if await anext(requests, None) is None:
            return
        with _redis_errors():
            epoch, ready = await store.epochs()
            if epoch is None:
                raise state.stale()
            cursor = await store.ledger_cursor()
            progress = {} if ready == epoch else await store.rebuild_progress()
        wants_snapshot = ready != epoch and LEDGER_DONE not in progress
        log.info("ledger events stream opened", resume_after=cursor, snapshot_wanted=wants_snapshot)
        yield risk_pb2.StreamLedgerEventsResponse(applied_sequence=cursor, snapshot_wanted=wants_snapshot)
        async for request in state.until_gone(epoch, requests):
            try:
                with _redis_errors():
                    if request.HasField("snapshot"):
                        cursor = await self._apply_ledger_snapshot(epoch, request.snapshot, cursor)
                    elif request.events:
                        cursor = await self._apply_ledger_events(epoch, request.events, cursor)
            except StaleEpochError:
                raise state.stale() from None
            yield risk_pb2.StreamLedgerEventsResponse(applied_sequence=cursor)

    async def _apply_ledger_events(
        self, epoch: str, events: Sequence[risk_pb2.LedgerEvent], cursor: int
    ) -> int:
        """Apply the ledger events after `cursor` (each once per account), then advance it."""
        store, _ = self._ready()
        fresh = [event for event in events if event.sequence > cursor]
        # In sequence order, in runs of one kind: each account's applied marker only moves up.
        runs: list[tuple[bool, list[risk_pb2.LedgerEvent]]] = []
        for event in fresh:
            is_halt = event.kind in (risk_pb2.LEDGER_EVENT_KIND_HALT, risk_pb2.LEDGER_EVENT_KIND_RESUME)
            if not runs or runs[-1][0] != is_halt:
                runs.append((is_halt, []))
            runs[-1][1].append(event)
        try:
            for is_halt, run in runs:
                if is_halt:
                    await store.apply_halts(exposure.LEDGER_SOURCE, [exposure.halt_op(e) for e in run], epoch)
                    for event in run:
                        log.warning(
                            "account halted by the ledger"
                            if event.kind == risk_pb2.LEDGER_EVENT_KIND_HALT
                            else "account resumed by the ledger",
                            account_id=event.account_id,
                            sequence=event.sequence,
                        )
                else:
                    legs = [exposure.ledger_leg(event) for event in run]
                    await store.apply_legs(exposure.LEDGER_SOURCE, legs, epoch)
        except exposure.MalformedEvent as error:
            raise invalid_field("events", RejectReason.MALFORMED_EVENT, str(error)) from error
        except RiskStateError as error:
            log.error("ledger event refused: applying it would corrupt risk state", error=str(error))
            raise ServiceError(
                grpc.StatusCode.INTERNAL,
                RejectReason.RISK_STATE_INCONSISTENT,
                f"risk refused ledger event {error.leg.sequence}: {error}",
            ) from error
        last = max(event.sequence for event in events)
        return max(cursor, await store.advance_ledger_cursor(last, epoch))

    async def _apply_ledger_snapshot(self, epoch: str, page: risk_pb2.LedgerSnapshot, cursor: int) -> int:
        """Write a page of the ledger's balances; the last page sets the cursors the events resume from."""
        store, _ = self._ready()
        balances = []
        for balance in page.balances:
            if ids.account_id_problem(balance.account_id) or ids.asset_code_problem(balance.asset):
                raise invalid_field(
                    "snapshot.balances", RejectReason.MALFORMED_EVENT, "a balance has a bad id"
                )
            balances.append((balance.account_id, balance.asset, balance.amount))
        await store.write_balances(epoch, balances)
        for account in page.halted_accounts:
            if ids.account_id_problem(account):
                raise invalid_field("snapshot.halted_accounts", RejectReason.MALFORMED_EVENT, "a bad account")
        await store.write_halts(epoch, list(page.halted_accounts))
        for trade_cursor in page.trade_cursors:
            if ids.source_problem(trade_cursor.source):
                raise invalid_field("snapshot.trade_cursors", RejectReason.MALFORMED_EVENT, "a bad source")
            await store.write_cursor(epoch, trade_cursor.source, trade_cursor.applied_sequence)
            await store.mark_rebuild(epoch, expected_field(trade_cursor.source), "1")
        if not page.last:
            return cursor
        await store.write_cursor(epoch, None, page.sequence)
        await self._risk_state().step_done(epoch, LEDGER_DONE, str(page.sequence))
        log.info("ledger snapshot applied", sequence=page.sequence, balances_in_last_page=len(balances))
        return max(cursor, page.sequence)

    async def GetAccountRisk(
        self, request: risk_pb2.GetAccountRiskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> risk_pb2.GetAccountRiskResponse:
        _check_account(request.account_id)
        problem = ids.source_problem(request.source) if request.source else None
        if problem:
            raise invalid_field("source", RejectReason.INVALID_SOURCE, problem)
        if request.min_sequence < 0:
            raise invalid_field("min_sequence", RejectReason.INVALID_SEQUENCE, "must not be negative")
        store, _ = self._ready()
        self._risk_state().require_ready()
        applied = 0
        with _redis_errors():
            if request.source:
                # Read your writes: the figures reflect every event of the shard up to min_sequence
                # (legs are applied before the cursor moves), waiting for it within the deadline.
                remaining = context.time_remaining()
                budget = READ_WAIT_SECONDS if remaining is None else min(READ_WAIT_SECONDS, remaining - 0.2)
                deadline = time.monotonic() + budget
                pause = 0.002
                while (applied := await store.cursor(request.source)) < request.min_sequence:
                    if time.monotonic() >= deadline:
                        log.warning(
                            "balances read before risk applied the caller's sequence",
                            source=request.source,
                            wanted=request.min_sequence,
                            applied=applied,
                        )
                        break
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.02)
            figures = await store.account_figures(request.account_id)
        return risk_pb2.GetAccountRiskResponse(
            account_id=request.account_id,
            applied_sequence=applied,
            assets=[
                risk_pb2.AssetExposure(
                    asset=f.asset, total=f.total, reserved=f.reserved, available=f.available
                )
                for f in figures
            ],
        )

    async def ListReservations(
        self, request: risk_pb2.ListReservationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> risk_pb2.ListReservationsResponse:
        if not 0 <= request.page_size <= MAX_RESERVATIONS_PAGE:
            raise invalid_field(
                "page_size", RejectReason.INVALID_LIMIT, f"must be 0 to {MAX_RESERVATIONS_PAGE} (0 means 500)"
            )
        if request.older_than_ms < 0:
            raise invalid_field("older_than_ms", RejectReason.INVALID_LIMIT, "must not be negative")
        token = request.page_token or "0"
        if not token.isdigit() or len(token) > 20:
            raise invalid_field("page_token", RejectReason.INVALID_LIMIT, "is not a token this call gave")
        store, _ = self._ready()
        self._risk_state().require_ready()
        cutoff_ms = time.time_ns() // 1_000_000 - request.older_than_ms
        with _redis_errors():
            page, next_cursor = await store.reservations_page(int(token), request.page_size or 500)
        response = risk_pb2.ListReservationsResponse(next_page_token=str(next_cursor) if next_cursor else "")
        for account_id, order_id, fields in page:
            reserved_at = int(fields.get("reserved_at") or 0)
            if reserved_at > cutoff_ms:
                continue
            response.reservations.add(
                order_id=order_id,
                account_id=account_id,
                symbol=fields.get("symbol", ""),
                asset=fields.get("asset", ""),
                amount=int(fields.get("amount") or 0),
                reserved_at_ms=reserved_at,
                replace_id=fields.get("replacing") or "",
            )
        return response


def _all_refused(
    response: risk_pb2.StreamReservationsResponse,
    commands: Sequence[risk_pb2.ReservationCommand],
    reason: RejectReason,
) -> None:
    """Every command of a batch refused for one reason (the state it needs is not there)."""
    number = reason.number
    for command in commands:
        response.results.add(
            order_id=_order_id_of(command),
            accepted=False,
            reject_reason=number,
        )


# Each reason's proto number by name (the store answers reasons by name).
_REASON_NUMBERS = {reason.value: reason.number for reason in RejectReason}


def _order_id_of(command: risk_pb2.ReservationCommand) -> str:
    """The order a reservation command names, whatever its kind."""
    kind = command.WhichOneof("command")
    return getattr(command, kind).order_id if kind else ""


def _reason_number(reason: str) -> common_pb2.RejectReason:
    """The proto number of a reason given by name ("" is UNSPECIFIED)."""
    number = _REASON_NUMBERS.get(reason or RejectReason.UNSPECIFIED)
    return RejectReason(reason).number if number is None else number


class _TradingStream:
    """One trading shard's event stream: its epoch, cursor and snapshot point."""

    __slots__ = ("balance_only_through", "caught_up", "cursor", "epoch", "source")

    def __init__(self, source: str, epoch: str, cursor: int, balance_only_through: int) -> None:
        self.source = source
        self.epoch = epoch
        self.cursor = cursor
        self.balance_only_through = balance_only_through
        self.caught_up = False


def _instruments_of(
    events: Sequence[tuple[int, str | None, risk_pb2.TradingEvent]],
) -> list[tuple[int, common_pb2.Instrument]]:
    """(sequence, instrument) of each instrument event of (sequence, kind, event); MALFORMED_EVENT
    for one risk cannot use."""
    learned = []
    for sequence, kind, event in events:
        if kind == "instrument_created":
            instrument = event.instrument_created
            problem = instrument_problem(instrument)
            if problem is not None:
                log.error("malformed instrument event; stopping", sequence=sequence, why=problem)
                raise invalid_field(
                    "events",
                    RejectReason.MALFORMED_EVENT,
                    f"event {sequence} creates an instrument risk cannot use: {problem}",
                )
            learned.append((sequence, instrument))
    return learned


def _check_account(account_id: str) -> None:
    problem = ids.account_id_problem(account_id)
    if problem:
        raise invalid_field("account_id", RejectReason.INVALID_ACCOUNT_ID, problem)
