"""RiskService: proto in, domain operations, Redis store, proto out."""

from __future__ import annotations

import contextlib
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
from risk.exposure import LegOp, Rejection, ReleaseOp, ReserveOp
from risk.instruments import InstrumentCache, instrument_problem
from risk.store import AmountOverflowError, RiskStateError, RiskStore

log = structlog.get_logger("backbone.risk")


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

    def attach(self, store: RiskStore, instruments: InstrumentCache) -> None:
        self._store = store
        self._instruments = instruments

    def detach(self) -> None:
        self._store = None
        self._instruments = None

    def _ready(self) -> tuple[RiskStore, InstrumentCache]:
        if self._store is None or self._instruments is None:
            raise unavailable(RejectReason.SERVICE_STARTING, "risk is starting or stopping; retry shortly")
        return self._store, self._instruments

    # Reservations ---------------------------------------------------------

    async def StreamReservations(
        self,
        request_iterator: AsyncIterator[risk_pb2.StreamReservationsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[risk_pb2.StreamReservationsResponse]:
        async for request in request_iterator:
            results = await self.reserve_batch(request.commands)
            yield risk_pb2.StreamReservationsResponse(sequence=request.sequence, results=results)

    async def reserve_batch(
        self, commands: Sequence[risk_pb2.ReservationCommand]
    ) -> list[risk_pb2.ReservationResult]:
        """One result per command, in order; the store work is one Redis round trip."""
        store, instruments = self._ready()
        symbols = {c.reserve.symbol for c in commands if c.WhichOneof("command") == "reserve"}
        maths: dict[str, InstrumentMath] = {}
        if symbols:
            # A symbol risk has not learned from trading's events is UNKNOWN_SYMBOL (plan_reserve).
            with _redis_errors():
                maths = await instruments.lookup(symbols)
        planned: list[ReserveOp | ReleaseOp | Rejection] = []
        for command in commands:
            kind = command.WhichOneof("command")
            if kind == "reserve":
                planned.append(exposure.plan_reserve(command.reserve, maths.get(command.reserve.symbol)))
            elif kind == "release":
                planned.append(exposure.plan_release(command.release))
            else:
                planned.append(
                    Rejection("", exposure.INVALID_ORDER, "the command is neither reserve nor release")
                )
        runnable = [p for p in planned if not isinstance(p, Rejection)]
        with _redis_errors():
            outcomes = iter(await store.run_reservations(runnable))
        results = []
        for plan in planned:
            if isinstance(plan, Rejection):
                log.debug("command refused", order_id=plan.order_id, reason=plan.reason, why=plan.message)
                results.append(
                    risk_pb2.ReservationResult(
                        order_id=plan.order_id,
                        accepted=False,
                        reject_reason=RejectReason(plan.reason).number,
                        asset=plan.asset,
                        amount=plan.amount,
                    )
                )
                continue
            outcome = next(outcomes)
            if not outcome.accepted:
                log.debug("reserve refused", order_id=plan.order_id, reason=outcome.reason)
            results.append(
                risk_pb2.ReservationResult(
                    order_id=plan.order_id,
                    accepted=outcome.accepted,
                    reject_reason=RejectReason(outcome.reason or RejectReason.UNSPECIFIED).number,
                    asset=outcome.asset,
                    amount=outcome.amount,
                )
            )
        return results

    # Trading events -------------------------------------------------------

    async def StreamTradingEvents(
        self,
        request_iterator: AsyncIterator[risk_pb2.StreamTradingEventsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[risk_pb2.StreamTradingEventsResponse]:
        store, _ = self._ready()
        source = ""
        cursor = 0
        async for request in request_iterator:
            if request.source and request.source != source:
                if source:
                    raise invalid_field(
                        "source", RejectReason.SOURCE_CHANGED, "a stream carries the events of one source"
                    )
                problem = ids.source_problem(request.source)
                if problem:
                    raise invalid_field("source", RejectReason.INVALID_SOURCE, problem)
                source = request.source
                with _redis_errors():
                    cursor = await store.cursor(source)
                log.info("trading events stream opened", source=source, resume_after=cursor)
            if not source:
                raise invalid_field(
                    "source", RejectReason.SOURCE_REQUIRED, "the first request must name its source"
                )
            if request.events:
                cursor = await self.apply_events(source, cursor, request.events)
            yield risk_pb2.StreamTradingEventsResponse(applied_sequence=cursor)

    async def apply_events(self, source: str, cursor: int, events: Sequence[risk_pb2.TradingEvent]) -> int:
        """Apply the events after `cursor`, then advance the source's cursor; returns it.

        Instruments first: each is stored together with its sequence in one
        step, so a redelivered one is skipped and none is ever half-known. Then
        the legs of trades and releases (each applied once per account), then
        the cursor. Trading creates an instrument before any order on it, so a
        trade later in the same batch finds it.
        """
        store, instruments = self._ready()
        last = max(event.sequence for event in events)
        fresh = [event for event in events if event.sequence > cursor]
        learned = _instruments_of(fresh)
        with _redis_errors():
            if learned:
                stored = await store.apply_instruments(source, learned)
                for (sequence, instrument), new in zip(learned, stored, strict=True):
                    if new:
                        instruments.put(instrument)
                        log.info(
                            "instrument learned", symbol=instrument.symbol, source=source, sequence=sequence
                        )
            legs = await self._legs(fresh)
            try:
                await store.apply_legs(source, legs)
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
            return max(cursor, await store.advance_cursor(source, last))

    async def _legs(self, events: Sequence[risk_pb2.TradingEvent]) -> list[LegOp]:
        _, instruments = self._ready()
        symbols = {e.trade.symbol for e in events if e.WhichOneof("event") == "trade"}
        maths: dict[str, InstrumentMath] = {}
        if symbols:
            maths = await instruments.lookup(symbols)
        legs: list[LegOp] = []
        try:
            for event in events:
                kind = event.WhichOneof("event")
                if kind == "trade":
                    math = maths.get(event.trade.symbol)
                    if math is None:
                        log.error(
                            "trade of an unknown symbol", sequence=event.sequence, symbol=event.trade.symbol
                        )
                        raise failed_precondition(
                            RejectReason.UNKNOWN_SYMBOL,
                            f"event {event.sequence} trades {event.trade.symbol!r}, "
                            "an instrument risk has not learned from trading's events",
                        )
                    legs.extend(exposure.trade_legs(event.sequence, event.trade, math))
                elif kind == "order_released":
                    legs.append(exposure.release_leg(event.sequence, event.order_released))
                elif kind == "instrument_created":
                    continue  # stored before the legs (apply_events)
                else:
                    log.warning("trading event of no known kind skipped", sequence=event.sequence)
        except exposure.MalformedEvent as error:
            log.error("malformed trading event; stopping", error=str(error))
            raise invalid_field("events", RejectReason.MALFORMED_EVENT, str(error)) from error
        return legs

    # Deposits and figures -------------------------------------------------

    async def ApplyDeposit(
        self, request: risk_pb2.ApplyDepositRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> risk_pb2.ApplyDepositResponse:
        problem = ids.deposit_id_problem(request.deposit_id)
        if problem:
            raise invalid_field("deposit_id", RejectReason.INVALID_DEPOSIT_ID, problem)
        _check_account(request.account_id)
        problem = ids.asset_code_problem(request.asset)
        if problem:
            raise invalid_field("asset", RejectReason.INVALID_ASSET_CODE, problem)
        if request.amount <= 0:
            raise invalid_field("amount", RejectReason.INVALID_AMOUNT, "must be positive")
        store, _ = self._ready()
        with _redis_errors():
            try:
                applied = await store.apply_deposit(
                    request.deposit_id, request.account_id, request.asset, request.amount
                )
            except AmountOverflowError as error:
                raise failed_precondition(RejectReason.AMOUNT_OVERFLOW, str(error)) from error
        log.info(
            "deposit applied" if applied else "deposit already applied",
            deposit_id=request.deposit_id,
            account_id=request.account_id,
            asset=request.asset,
            amount=request.amount,
        )
        return risk_pb2.ApplyDepositResponse(applied=applied)

    async def GetAccountRisk(
        self, request: risk_pb2.GetAccountRiskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> risk_pb2.GetAccountRiskResponse:
        _check_account(request.account_id)
        store, _ = self._ready()
        with _redis_errors():
            figures = await store.account_figures(request.account_id)
        return risk_pb2.GetAccountRiskResponse(
            account_id=request.account_id,
            assets=[
                risk_pb2.AssetExposure(
                    asset=f.asset, total=f.total, reserved=f.reserved, available=f.available
                )
                for f in figures
            ],
        )


def _instruments_of(
    events: Sequence[risk_pb2.TradingEvent],
) -> list[tuple[int, common_pb2.Instrument]]:
    """(sequence, instrument) of each instrument event; MALFORMED_EVENT for one risk cannot use."""
    learned = []
    for event in events:
        if event.WhichOneof("event") == "instrument_created":
            problem = instrument_problem(event.instrument_created)
            if problem is not None:
                log.error("malformed instrument event; stopping", sequence=event.sequence, why=problem)
                raise invalid_field(
                    "events",
                    RejectReason.MALFORMED_EVENT,
                    f"event {event.sequence} creates an instrument risk cannot use: {problem}",
                )
            learned.append((event.sequence, event.instrument_created))
    return learned


def _check_account(account_id: str) -> None:
    problem = ids.account_id_problem(account_id)
    if problem:
        raise invalid_field("account_id", RejectReason.INVALID_ACCOUNT_ID, problem)
