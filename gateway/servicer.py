"""GatewayService: the public trading API.

Every call is authenticated by its API key and scoped to the key's account.
SubmitOrder is a saga: validate -> claim the client order id (Redis) ->
reserve (risk stream) -> new order (trading stream); a step that fails
after the reservation releases it (compensation), except when trading's
outcome is unknown, where the order may be live and the caller is told to
ask GetOrder.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis.asyncio as redis
import structlog
from redis.exceptions import RedisError

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.money import format_minor
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from backbone.runtime.batching import BatchingStream
from backbone.runtime.config import Settings
from backbone.runtime.context import outgoing_metadata
from backbone.runtime.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    from_rpc_error,
    not_found,
    unavailable,
)
from backbone.settlement.v1 import settlement_pb2
from backbone.trading.v1 import trading_pb2
from gateway.auth import ApiKeyAuthenticator
from gateway.fanout import ExecutionFanout
from gateway.instruments import AssetScales, InstrumentCache
from gateway.validation import (
    book_depth,
    resolve_account,
    symbol_problem,
    validate_order_id,
    validate_submit_order,
    validate_symbol_field,
)
from gateway.views import balance_view, book_view, instrument_view, order_view, report_view

log = structlog.get_logger("backbone.gateway")

CLIENT_ORDER_ID_TTL_SECONDS = 604_800  # 7 days
# How long an answer waits for a compensating release to be acknowledged; the
# release stays queued on the risk stream after that and is sent when it can be.
RELEASE_WAIT_SECONDS = 2.0
# How long StreamExecutions waits for the upstream feed before answering headers.
FEED_WAIT_SECONDS = 2.0
# How long a command waits for a channel in reconnect backoff (longer than its largest backoff).
REACH_WAIT_SECONDS = 2.5
# Commands a BatchingStream never sent: their outcome is known (nothing happened).
_NOT_SENT_REASONS = frozenset({RejectReason.BACKPRESSURE, RejectReason.SERVICE_STOPPING})

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

_RISK_REASONS = {
    RejectReason.INSUFFICIENT_BALANCE: "the account's available balance does not cover this order "
    "(price x quantity plus fees for a buy, the quantity for a sell)",
    RejectReason.UNKNOWN_SYMBOL: "risk does not know this instrument yet; retry shortly",
}
_RISK_TRANSIENT_REASONS = frozenset(
    {RejectReason.INSTRUMENTS_UNAVAILABLE, RejectReason.REDIS_UNAVAILABLE, RejectReason.SERVICE_STARTING}
)
_TRADING_REASONS = {
    RejectReason.UNKNOWN_SYMBOL: "the matching engine does not know this instrument",
    RejectReason.DUPLICATE_ORDER_ID: "the matching engine already has an order with this id",
    RejectReason.INVALID_ORDER: "the matching engine refused the order's side, price or quantity",
}

ReservationStream = BatchingStream[risk_pb2.ReservationCommand, risk_pb2.ReservationResult]
OrderStream = BatchingStream[trading_pb2.OrderCommand, trading_pb2.CommandResult]


@dataclass
class Backends:
    """What the servicers use, opened by GatewayApp.start()."""

    settings: Settings
    redis: redis.Redis
    risk: Any  # risk_pb2_grpc.RiskServiceStub
    trading: Any  # trading_pb2_grpc.TradingServiceStub
    settlement: Any  # settlement_pb2_grpc.SettlementServiceStub
    reservations: ReservationStream
    orders: OrderStream
    fanout: ExecutionFanout
    instruments: InstrumentCache
    assets: AssetScales
    auth: ApiKeyAuthenticator
    risk_channel: grpc.aio.Channel | None = None
    trading_channel: grpc.aio.Channel | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    async def call(self, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        """A unary call to another service with the deadline and request id; failures relayed."""
        return await call_unary(self.settings, method, request)


async def call_unary(settings: Settings, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
    """A unary call to another service with the deadline and request id; failures relayed."""
    try:
        # wait_for_ready: a channel in reconnect backoff (a service restarting) waits for it,
        # within the deadline, instead of failing at once.
        return await method(
            request,
            timeout=float(settings.call_timeout_seconds),
            metadata=outgoing_metadata(),
            wait_for_ready=True,
        )
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None


GetBackends = Callable[[], Backends]


async def unreachable(channel: grpc.aio.Channel | None, wait_seconds: float = REACH_WAIT_SECONDS) -> bool:
    """True when the channel is down and does not come back within `wait_seconds`.

    A command queued on a stream whose channel is down would not be sent, so the
    caller can be told at once (and for sure) that nothing happened; a service
    that is merely restarting gets the reconnect backoff's time to come back.
    """
    if channel is None:
        return False
    state = channel.get_state(try_to_connect=True)
    if state == grpc.ChannelConnectivity.SHUTDOWN:
        return True
    if state != grpc.ChannelConnectivity.TRANSIENT_FAILURE:
        return False
    try:
        await asyncio.wait_for(channel.channel_ready(), wait_seconds)
    except TimeoutError:
        return True
    return False


def client_order_id_key(account_id: str, client_order_id: str) -> str:
    """Redis key of a claimed client order id, hash-tagged by account."""
    return f"gw:{{{account_id}}}:coid:{client_order_id}"


def _reason_of(number: int) -> RejectReason:
    """The reason of a refusal from risk or trading; one without a reason breaks their contract."""
    reason = RejectReason.from_number(number)
    return RejectReason.PROTOCOL_ERROR if reason == RejectReason.UNSPECIFIED else reason


def _reason_sentence(reason: RejectReason, known: dict[RejectReason, str], who: str) -> str:
    return known.get(reason, f"{who} refused the order ({reason})")


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """The public API; one instance per process."""

    def __init__(self, backends: GetBackends) -> None:
        self._backends = backends
        self._claim: Any = None
        self._unclaim: Any = None

    # --- helpers -------------------------------------------------------------------------

    async def _account(self, backends: Backends, requested: str, context: Any) -> str:
        authenticated = await backends.auth.account_of(context.invocation_metadata())
        return resolve_account(requested, authenticated)

    async def _instrument(self, backends: Backends, symbol: str) -> common_pb2.Instrument:
        instrument = await backends.instruments.get(symbol)
        if instrument is None:
            raise not_found(RejectReason.UNKNOWN_SYMBOL, f"there is no instrument {symbol!r}", symbol=symbol)
        return instrument

    def _scripts(self, backends: Backends) -> tuple[Any, Any]:
        if self._claim is None:
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

    # --- orders --------------------------------------------------------------------------

    async def SubmitOrder(
        self, request: gateway_pb2.SubmitOrderRequest, context: Any
    ) -> gateway_pb2.SubmitOrderResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        instrument = None
        if request.symbol and symbol_problem(request.symbol) is None:
            instrument = await backends.instruments.get(request.symbol)
        order_id = uuid.uuid4().hex
        order = validate_submit_order(request, instrument, account_id=account, order_id=order_id)
        assert instrument is not None
        with structlog.contextvars.bound_contextvars(order_id=order_id):
            return await self._submit(backends, order, instrument)

    async def _submit(
        self, backends: Backends, order: trading_pb2.NewOrder, instrument: common_pb2.Instrument
    ) -> gateway_pb2.SubmitOrderResponse:
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
            if error.reason not in _NOT_SENT_REASONS:
                await self._release(backends, order)
            await self._free_client_order_id(backends, key, order.order_id)
            raise self._risk_unavailable(error) from None
        if not reservation.accepted:
            await self._free_client_order_id(backends, key, order.order_id)
            raise self._risk_refusal(reservation, instrument)

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
            if error.reason in _NOT_SENT_REASONS:
                await self._release(backends, order)
                await self._free_client_order_id(backends, key, order.order_id)
                raise
            raise self._outcome_unknown(order.order_id, error) from None
        # A command's result also carries the reports of the orders it traded against
        # (other accounts' orders): the caller sees only its own order's.
        reports = [r for r in result.reports if r.order.order_id == order.order_id]
        if not reports:
            raise self._outcome_unknown(
                order.order_id, unavailable(RejectReason.PROTOCOL_ERROR, "trading answered without a report")
            )
        first = reports[0]
        if first.execution_type == common_pb2.EXECUTION_TYPE_REJECTED:
            await self._release(backends, order)
            await self._free_client_order_id(backends, key, order.order_id)
            reason = _reason_of(first.reject_reason)
            log.info("order refused by trading", reason=reason)
            raise failed_precondition(
                reason,
                _reason_sentence(reason, _TRADING_REASONS, "the matching engine"),
                order_id=order.order_id,
            )
        views = [report_view(report, instrument) for report in reports]
        return gateway_pb2.SubmitOrderResponse(order=views[-1].order, reports=views)

    @staticmethod
    def _risk_refusal(
        reservation: risk_pb2.ReservationResult, instrument: common_pb2.Instrument
    ) -> ServiceError:
        reason = _reason_of(reservation.reject_reason)
        log.info("order refused by risk", reason=reason)
        if reason in _RISK_TRANSIENT_REASONS:
            return unavailable(
                reason, f"the order was not placed: risk could not check it now ({reason}); retry"
            )
        sentence = _reason_sentence(reason, _RISK_REASONS, "risk")
        scale = {
            instrument.base_asset: instrument.base_scale,
            instrument.quote_asset: instrument.quote_scale,
        }.get(reservation.asset)
        if reason == RejectReason.INSUFFICIENT_BALANCE and scale is not None and reservation.amount > 0:
            sentence = (
                f"the order needs {format_minor(reservation.amount, scale)} {reservation.asset} "
                "available (price x quantity plus fees for a buy, the quantity for a sell) "
                "and the account has less"
            )
        return failed_precondition(reason, sentence)

    @staticmethod
    def _risk_unavailable(error: ServiceError) -> ServiceError:
        if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return error
        return ServiceError(
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.RISK_UNAVAILABLE,
            f"the order was not placed: risk could not be reached ({error.message}); "
            "retry with the same client_order_id",
        )

    @staticmethod
    def _outcome_unknown(order_id: str, error: ServiceError) -> ServiceError:
        log.warning("trading outcome unknown", order_id=order_id, why=error.message)
        return ServiceError(
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.OUTCOME_UNKNOWN,
            f"the matching engine did not confirm order {order_id} ({error.message}); it may be "
            "live: call GetOrder with this order_id to learn its state",
            (),
            {"order_id": order_id},
        )

    async def CancelOrder(
        self, request: gateway_pb2.CancelOrderRequest, context: Any
    ) -> gateway_pb2.CancelOrderResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        validate_order_id(request.order_id)
        command = trading_pb2.OrderCommand(
            cancel_order=trading_pb2.CancelOrder(order_id=request.order_id, account_id=account)
        )
        if await unreachable(backends.trading_channel):
            raise unavailable(
                RejectReason.TRADING_UNAVAILABLE,
                "the cancel was not sent: the matching engine cannot be reached",
            )
        with structlog.contextvars.bound_contextvars(order_id=request.order_id):
            try:
                result = await backends.orders.submit(command)
            except ServiceError as error:
                if error.reason in _NOT_SENT_REASONS:
                    raise
                raise ServiceError(
                    grpc.StatusCode.UNAVAILABLE,
                    RejectReason.OUTCOME_UNKNOWN,
                    f"the matching engine did not confirm the cancel ({error.message}); "
                    "call GetOrder to learn the order's state",
                    (),
                    {"order_id": request.order_id},
                ) from None
            reports = [r for r in result.reports if r.order.order_id in ("", request.order_id)]
            if not reports:
                raise unavailable(RejectReason.PROTOCOL_ERROR, "trading answered the cancel without a report")
            rejected = next(
                (r for r in reports if r.execution_type == common_pb2.EXECUTION_TYPE_REJECTED), None
            )
            if rejected is not None:
                reason = _reason_of(rejected.reject_reason)
                if reason in (RejectReason.UNKNOWN_ORDER, RejectReason.NOT_ORDER_OWNER):
                    raise self._order_not_found(request.order_id)
                if reason == RejectReason.ORDER_NOT_OPEN:
                    raise failed_precondition(
                        RejectReason.ORDER_NOT_OPEN,
                        f"order {request.order_id} is no longer open (filled or cancelled)",
                        order_id=request.order_id,
                    )
                raise failed_precondition(
                    reason,
                    f"the matching engine refused the cancel ({reason})",
                    order_id=request.order_id,
                )
            last = reports[-1]
            instrument = await self._instrument(backends, last.order.symbol)
            return gateway_pb2.CancelOrderResponse(order=order_view(last.order, instrument))

    @staticmethod
    def _order_not_found(order_id: str) -> ServiceError:
        return not_found(
            RejectReason.UNKNOWN_ORDER, f"there is no order {order_id!r} in this account", order_id=order_id
        )

    async def GetOrder(
        self, request: gateway_pb2.GetOrderRequest, context: Any
    ) -> gateway_pb2.GetOrderResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        validate_order_id(request.order_id)
        try:
            response = await backends.call(
                backends.trading.GetOrder, trading_pb2.GetOrderRequest(order_id=request.order_id)
            )
        except ServiceError as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                raise self._order_not_found(request.order_id) from None
            raise
        if not response.HasField("order") or response.order.account_id != account:
            raise self._order_not_found(request.order_id)
        instrument = await self._instrument(backends, response.order.symbol)
        return gateway_pb2.GetOrderResponse(order=order_view(response.order, instrument))

    async def StreamExecutions(
        self, request: gateway_pb2.StreamExecutionsRequest, context: Any
    ) -> AsyncIterator[gateway_pb2.StreamExecutionsResponse]:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        # grpc.aio runs each step of a streaming handler in a task of its own and does
        # not cancel it when the caller goes away: cancel the waiting step ourselves.
        waiting: list[asyncio.Task[Any] | None] = [None]

        def caller_gone(_: object) -> None:
            subscription.end()
            task = waiting[0]
            if task is not None and not task.done():
                task.cancel()

        with backends.fanout.subscribe(account) as subscription:
            context.add_done_callback(caller_gone)
            # Headers go out once the subscription is registered (and the feed is up),
            # so a client that waits for them misses no report of a later order.
            await backends.fanout.wait_connected(FEED_WAIT_SECONDS)
            await context.send_initial_metadata(())
            while True:
                waiting[0] = asyncio.current_task()
                report = await subscription.get()
                waiting[0] = None
                if report is None:
                    return
                instrument = await backends.instruments.get(report.order.symbol)
                if instrument is None:
                    log.error("report for an unknown instrument", symbol=report.order.symbol)
                    continue
                yield gateway_pb2.StreamExecutionsResponse(report=report_view(report, instrument))

    # --- balances and reference data ----------------------------------------------------------

    async def GetBalances(
        self, request: gateway_pb2.GetBalancesRequest, context: Any
    ) -> gateway_pb2.GetBalancesResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        ledger, risk = await asyncio.gather(
            backends.call(
                backends.settlement.GetBalances,
                settlement_pb2.GetBalancesRequest(account_id=account),
            ),
            backends.call(backends.risk.GetAccountRisk, risk_pb2.GetAccountRiskRequest(account_id=account)),
        )
        totals = {balance.asset: balance.amount for balance in ledger.balances}
        scales = {balance.asset: balance.scale for balance in ledger.balances}
        exposures = {exposure.asset: exposure for exposure in risk.assets}
        balances = []
        for asset in sorted(set(totals) | set(exposures)):
            scale = scales.get(asset)
            if scale is None:
                scale = await backends.assets.scale_of(asset)
            if scale is None:
                log.error("balance in an unknown asset", asset=asset)
                continue
            exposure = exposures.get(asset)
            reserved = exposure.reserved if exposure is not None else 0
            available = exposure.available if exposure is not None else 0
            balances.append(balance_view(asset, scale, totals.get(asset, 0), reserved, available))
        return gateway_pb2.GetBalancesResponse(account_id=account, balances=balances)

    async def ListInstruments(
        self, request: gateway_pb2.ListInstrumentsRequest, context: Any
    ) -> gateway_pb2.ListInstrumentsResponse:
        backends = self._backends()
        await backends.auth.account_of(context.invocation_metadata())
        instruments = await backends.instruments.refresh()
        return gateway_pb2.ListInstrumentsResponse(
            instruments=[instrument_view(i) for i in sorted(instruments, key=lambda i: i.symbol)]
        )

    async def GetOrderBook(
        self, request: gateway_pb2.GetOrderBookRequest, context: Any
    ) -> gateway_pb2.GetOrderBookResponse:
        backends = self._backends()
        await backends.auth.account_of(context.invocation_metadata())
        validate_symbol_field(request.symbol)
        depth = book_depth(request.depth)
        instrument = await self._instrument(backends, request.symbol)
        book = await backends.call(
            backends.trading.GetOrderBook,
            trading_pb2.GetOrderBookRequest(symbol=request.symbol, depth=depth),
        )
        return book_view(book, instrument)
