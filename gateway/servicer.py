"""GatewayService: the public trading API, translating requests and answers.

Every call is authenticated by its API key and scoped to the key's account,
validated (gateway/validation.py), and carried out by the order saga
(gateway/order_saga.py) or a read from trading, risk or settlement
(gateway/backends.py); refusals are worded in gateway/refusals.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from backbone.runtime.errors import ServiceError, invalid_field, not_found
from backbone.settlement.v1 import settlement_pb2
from backbone.trading.v1 import trading_pb2
from gateway import refusals
from gateway.backends import Backends, GetBackends
from gateway.executions import LAST_SEQUENCE_HEADER, AccountExecutions
from gateway.listing import fills_query, next_fills_token, next_orders_token, orders_query
from gateway.market_data import stream_market_data
from gateway.mass_cancel import check_symbol, mass_cancel
from gateway.order_saga import OrderSaga
from gateway.order_stream import OrderStreamSession
from gateway.validation import (
    book_depth,
    resolve_account,
    symbol_problem,
    validate_order_id,
    validate_submit_order,
    validate_symbol_field,
)
from gateway.views import balance_view, book_view, fill_view, instrument_view, order_view, report_view

log = structlog.get_logger("backbone.gateway")


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """The public API; one instance per process."""

    def __init__(self, backends: GetBackends) -> None:
        self._backends = backends
        self._saga = OrderSaga()

    async def _account(self, backends: Backends, requested: str, context: Any) -> str:
        authenticated = await backends.auth.account_of(context.invocation_metadata())
        return resolve_account(requested, authenticated)

    async def _instrument(self, backends: Backends, symbol: str) -> common_pb2.Instrument:
        instrument = await backends.instruments.get(symbol)
        if instrument is None:
            raise not_found(RejectReason.UNKNOWN_SYMBOL, f"there is no instrument {symbol!r}", symbol=symbol)
        return instrument

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
        order = validate_submit_order(
            request, instrument, account_id=account, order_id=order_id, defaults=backends.order_defaults
        )
        assert instrument is not None
        with structlog.contextvars.bound_contextvars(order_id=order_id):
            reports = await self._saga.submit(backends, order, instrument)
        views = [report_view(report, instrument) for report in reports]
        return gateway_pb2.SubmitOrderResponse(order=views[-1].order, reports=views)

    async def StreamOrders(
        self, request_iterator: AsyncIterator[gateway_pb2.StreamOrdersRequest], context: Any
    ) -> AsyncIterator[gateway_pb2.StreamOrdersResponse]:
        backends = self._backends()
        account = await backends.auth.account_of(context.invocation_metadata())
        session = OrderStreamSession(backends, self._saga, account)
        async for response in session.responses(request_iterator, context):
            yield response

    async def StreamMarketData(
        self, request: gateway_pb2.StreamMarketDataRequest, context: Any
    ) -> AsyncIterator[gateway_pb2.StreamMarketDataResponse]:
        backends = self._backends()
        await backends.auth.account_of(context.invocation_metadata())
        assert backends.market_data is not None
        async for response in stream_market_data(
            backends.market_data, backends.instruments, request, context
        ):
            yield response

    async def CancelOrder(
        self, request: gateway_pb2.CancelOrderRequest, context: Any
    ) -> gateway_pb2.CancelOrderResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        validate_order_id(request.order_id)
        with structlog.contextvars.bound_contextvars(order_id=request.order_id):
            order = await self._saga.cancel(backends, request.order_id, account)
        instrument = await self._instrument(backends, order.symbol)
        return gateway_pb2.CancelOrderResponse(order=order_view(order, instrument))

    async def CancelAllOrders(
        self, request: gateway_pb2.CancelAllOrdersRequest, context: Any
    ) -> gateway_pb2.CancelAllOrdersResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        await check_symbol(backends, request.symbol)
        done = await mass_cancel(backends, account, request.symbol)
        log.info("orders mass cancelled", account_id=account, symbol=request.symbol, orders=len(done.reports))
        return gateway_pb2.CancelAllOrdersResponse(
            cancelled_count=len(done.reports),
            orders=[order_view(r.order, done.instruments[r.order.symbol]) for r in done.reports],
            trading_sequence=done.trading_sequence,
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
                raise refusals.order_not_found(request.order_id) from None
            raise
        if not response.HasField("order") or response.order.account_id != account:
            raise refusals.order_not_found(request.order_id)
        instrument = await self._instrument(backends, response.order.symbol)
        return gateway_pb2.GetOrderResponse(order=order_view(response.order, instrument))

    async def StreamExecutions(
        self, request: gateway_pb2.StreamExecutionsRequest, context: Any
    ) -> AsyncIterator[gateway_pb2.StreamExecutionsResponse]:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        if request.from_sequence < 0:
            raise invalid_field("from_sequence", RejectReason.INVALID_RANGE, "must not be negative")
        # grpc.aio runs each step of a streaming handler in a task of its own and does
        # not cancel it when the caller goes away: cancel the waiting step ourselves.
        waiting: list[asyncio.Task[Any] | None] = [None]

        def caller_gone(_: object) -> None:
            executions.end()
            task = waiting[0]
            if task is not None and not task.done():
                task.cancel()

        executions = AccountExecutions(backends, account, request.from_sequence)
        try:
            context.add_done_callback(caller_gone)
            # Headers go out once the subscription is registered (and the feed is up), and a
            # resume's first page is read (a from_sequence beyond the end is refused before),
            # so a client that waits for them misses no report of a later order.
            first, last_sequence = await executions.start()
            await context.send_initial_metadata(
                () if last_sequence is None else ((LAST_SEQUENCE_HEADER, str(last_sequence)),)
            )
            shard = backends.settings.trading_shard
            reports = executions.reports(first)
            while True:
                waiting[0] = asyncio.current_task()
                report = await anext(reports, None)
                waiting[0] = None
                if report is None:
                    return
                instrument = await backends.instruments.get(report.order.symbol)
                if instrument is None:
                    log.error("report for an unknown instrument", symbol=report.order.symbol)
                    continue
                backends.reported.note((report,))
                view = report_view(report, instrument)
                view.shard = shard
                yield gateway_pb2.StreamExecutionsResponse(report=view)
        finally:
            executions.subscription.close()

    # --- balances and reference data ----------------------------------------------------------

    async def GetBalances(
        self, request: gateway_pb2.GetBalancesRequest, context: Any
    ) -> gateway_pb2.GetBalancesResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        if request.min_trading_sequence < 0:
            raise invalid_field("min_trading_sequence", RejectReason.INVALID_SEQUENCE, "must not be negative")
        # Read your writes: reserved and available reflect the latest report this account was told
        # about (here or by the caller's own word), risk waiting for it within the deadline.
        wanted = max(request.min_trading_sequence, backends.reported.latest(account))
        ledger, risk = await asyncio.gather(
            backends.call(
                backends.settlement.GetBalances,
                settlement_pb2.GetBalancesRequest(account_id=account),
            ),
            backends.call(
                backends.risk.GetAccountRisk,
                risk_pb2.GetAccountRiskRequest(
                    account_id=account, source=backends.settings.trading_shard, min_sequence=wanted
                ),
            ),
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
        return gateway_pb2.GetBalancesResponse(
            account_id=account, balances=balances, trading_sequence=risk.applied_sequence
        )

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

    # --- lists: what a client that reconnects rebuilds its state from ----------------------------

    async def _instruments_of(
        self, backends: Backends, symbols: set[str]
    ) -> dict[str, common_pb2.Instrument]:
        """The instruments of `symbols` (each listed order or fill has one: trading made it)."""
        return {symbol: await self._instrument(backends, symbol) for symbol in sorted(symbols)}

    async def _known_symbol(self, backends: Backends, symbol: str) -> None:
        """A symbol filter must name an instrument (NOT_FOUND otherwise, as GetOrderBook)."""
        if symbol:
            await self._instrument(backends, symbol)

    async def ListOrders(
        self, request: gateway_pb2.ListOrdersRequest, context: Any
    ) -> gateway_pb2.ListOrdersResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        query = orders_query(request, account)
        await self._known_symbol(backends, request.symbol)
        page = await backends.call(backends.trading.ListOpenOrders, query.request)
        instruments = await self._instruments_of(backends, {order.symbol for order in page.orders})
        response = gateway_pb2.ListOrdersResponse(
            orders=[order_view(order, instruments[order.symbol]) for order in page.orders]
        )
        if page.more and page.orders:
            response.next_page_token = next_orders_token(query, page.orders[-1])
        return response

    async def ListFills(
        self, request: gateway_pb2.ListFillsRequest, context: Any
    ) -> gateway_pb2.ListFillsResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        query = fills_query(request, account)
        await self._known_symbol(backends, request.symbol)
        # Read your writes: the fills reflect the latest report this account was told about.
        query.request.min_sequence = max(query.request.min_sequence, backends.reported.latest(account))
        page = await backends.call(backends.trading.ListFills, query.request)
        instruments = await self._instruments_of(backends, {fill.symbol for fill in page.fills})
        response = gateway_pb2.ListFillsResponse(
            fills=[fill_view(fill, instruments[fill.symbol]) for fill in page.fills],
            trading_sequence=page.projected_sequence,
        )
        if page.more and page.fills:
            response.next_page_token = next_fills_token(query, page.fills[-1])
        return response
