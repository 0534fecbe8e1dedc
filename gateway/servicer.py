"""GatewayService: the public trading API, translating requests and answers.

Every call is authenticated by its API key and scoped to the key's account,
validated (gateway/validation.py), and carried out by the order saga
(gateway/order_saga.py) or a read from trading, risk or settlement
(gateway/backends.py); refusals are worded in gateway/refusals.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import structlog

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.ids import make_order_id
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from backbone.runtime.errors import invalid_field, not_found, unavailable
from backbone.settlement.v1 import settlement_pb2
from backbone.trading.v1 import trading_pb2
from gateway.backends import Backends, GetBackends
from gateway.executions import LAST_SEQUENCE_HEADER, LAST_SEQUENCES_HEADER, AccountExecutions
from gateway.listing import fills_query, next_fills_token, next_orders_token, orders_query
from gateway.market_data import stream_market_data
from gateway.mass_cancel import check_symbol, mass_cancel
from gateway.order_lookups import order_of
from gateway.order_replace import replace_order
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
from gateway.views import (
    add_report_views,
    balance_view,
    book_view,
    fill_view,
    instrument_view,
    order_view,
    report_view,
)

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
        order_id = make_order_id(backends.trading_shards.of_symbol(request.symbol).name)
        order = validate_submit_order(
            request, instrument, account_id=account, order_id=order_id, defaults=backends.order_defaults
        )
        assert instrument is not None
        with structlog.contextvars.bound_contextvars(order_id=order_id):
            reports = await self._saga.submit(backends, order, instrument)
        response = gateway_pb2.SubmitOrderResponse()
        add_report_views(response.reports, reports, instrument, backends.trading_shards.default.name)
        response.order.CopyFrom(response.reports[-1].order)  # built in place: no copy of each view
        return response

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
        order = await order_of(self._saga.lookups_for(backends), request.order_id, account)
        instrument = await self._instrument(backends, order.symbol)
        return gateway_pb2.GetOrderResponse(order=order_view(order, instrument))

    async def ReplaceOrder(
        self, request: gateway_pb2.ReplaceOrderRequest, context: Any
    ) -> gateway_pb2.ReplaceOrderResponse:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        return (await replace_order(backends, self._saga, request, account)).view

    async def StreamExecutions(
        self, request: gateway_pb2.StreamExecutionsRequest, context: Any
    ) -> AsyncIterator[gateway_pb2.StreamExecutionsResponse]:
        backends = self._backends()
        account = await self._account(backends, request.account_id, context)
        resume = _resume_positions(backends, request)
        # grpc.aio runs each step of a streaming handler in a task of its own and does
        # not cancel it when the caller goes away: cancel the waiting step ourselves.
        waiting: list[asyncio.Task[Any] | None] = [None]

        def caller_gone(_: object) -> None:
            executions.end()
            task = waiting[0]
            if task is not None and not task.done():
                task.cancel()

        executions = AccountExecutions(backends, account, resume)
        try:
            context.add_done_callback(caller_gone)
            # Headers go out once the subscription is registered (and the feed is up), and a
            # resume's first pages are read (a number beyond the end is refused before), so a
            # client that waits for them misses no report of a later order.
            lasts = await executions.start()
            headers = [(LAST_SEQUENCES_HEADER, ",".join(f"{name}={last}" for name, last in lasts.items()))]
            default = backends.trading_shards.default.name
            if default in lasts:
                headers.append((LAST_SEQUENCE_HEADER, str(lasts[default])))
            await context.send_initial_metadata(headers)
            reports = executions.reports()
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
                view = report_view(report, instrument, default)
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
        # about (here or by the caller's own word), risk waiting for it within the deadline. Each
        # trading shard numbers its own journal: the gateway waits for what it reported of each
        # shard (gateway/reported.py); the caller's min_trading_sequence, one number, names a
        # point of one journal only without shards (the SDK sends the highest it saw of any shard:
        # taken as the default shard's, it would make every read wait its full bound).
        shards = backends.trading_shards
        caller = 0 if shards.sharded else request.min_trading_sequence
        await asyncio.gather(
            *(
                backends.call(
                    backends.risk.GetAccountRisk,
                    risk_pb2.GetAccountRiskRequest(
                        account_id=account, source=shard.name, min_sequence=wanted
                    ),
                )
                for shard in shards.all[1:]
                if (wanted := backends.reported.latest(account, shard.name))
            )
        )
        wanted = max(caller, backends.reported.latest(account, shards.default.name))
        ledger, risk = await asyncio.gather(
            backends.call(
                backends.settlement.GetBalances,
                settlement_pb2.GetBalancesRequest(account_id=account),
            ),
            backends.call(
                backends.risk.GetAccountRisk,
                risk_pb2.GetAccountRiskRequest(
                    account_id=account, source=shards.default.name, min_sequence=wanted
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
        unlisted = backends.trading_shards.unlisted()
        if unlisted:  # the list would look complete without that shard's instruments
            raise unavailable(
                RejectReason.TRADING_UNAVAILABLE,
                f"trading shard {', '.join(unlisted)} cannot be reached: its instruments are not "
                "known yet; retry",
            )
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
            backends.trading_shards.of_symbol(request.symbol).stub.GetOrderBook,
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
        page = await backends.trading_shards.list_open_orders(query.request)
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
        shards = backends.trading_shards
        if shards.sharded:  # one number names no point of several journals (as in GetBalances)
            query.request.min_sequence = 0
        fills, last_shard, more, projected = await shards.list_fills(
            query.request, query.shard, lambda shard: backends.reported.latest(account, shard)
        )
        instruments = await self._instruments_of(backends, {fill.symbol for fill in fills})
        response = gateway_pb2.ListFillsResponse(
            fills=[fill_view(fill, instruments[fill.symbol]) for fill in fills],
            trading_sequence=projected,
        )
        if more and fills:  # a walk of several shards names the last fill's
            walked = shards.sharded and not request.symbol
            response.next_page_token = next_fills_token(query, fills[-1], last_shard if walked else "")
        return response


def _resume_positions(backends: Backends, request: gateway_pb2.StreamExecutionsRequest) -> dict[str, int]:
    """Shard name -> the first report number wanted of it, from StreamExecutions' from_sequence (the
    default shard's) and from_shard_sequences; 0s left out (live only). Refuses a negative number,
    an unknown shard and the default shard named twice, before anything is subscribed."""
    shards = backends.trading_shards
    if request.from_sequence < 0:
        raise invalid_field("from_sequence", RejectReason.INVALID_RANGE, "must not be negative")
    resume = {shards.default.name: request.from_sequence} if request.from_sequence else {}
    for name, number in request.from_shard_sequences.items():
        problem = ids.source_problem(name)
        if problem is not None:
            raise invalid_field(
                "from_shard_sequences", RejectReason.INVALID_SOURCE, f"a shard name {problem}"
            )
        if number < 0:
            raise invalid_field(
                "from_shard_sequences",
                RejectReason.INVALID_RANGE,
                f"the number of shard {name[:64]!r} is negative",
            )
        shards.named(name)  # NOT_FOUND (UNKNOWN_SHARD) when there is no such shard
        if name == shards.default.name and request.from_sequence:
            raise invalid_field(
                "from_shard_sequences",
                RejectReason.INVALID_RANGE,
                f"names the default shard {name!r}, which from_sequence already names: give one",
            )
        if number:
            resume[name] = number
    return resume
