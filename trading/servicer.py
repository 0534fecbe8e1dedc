"""TradingService over the engine loop: translates requests and answers, nothing more.

Every command and every read runs on the engine loop (trading/engine_loop.py),
so a read sees only journaled state; execution reports reach subscribers
through the execution feed (trading/execution_feed.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import structlog

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import (
    FieldViolation,
    ServiceError,
    already_exists,
    failed_precondition,
    invalid_field,
    not_found,
    out_of_range,
    unavailable,
)
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from trading.engine import CommandRejected, Engine, InstrumentRejected, _rejected_new_order
from trading.engine_loop import EngineLoop, Run
from trading.fills import FillProjection, FillQuery
from trading.history import ReportHistory
from trading.open_orders import OpenOrderIndex

log = structlog.get_logger("backbone.trading")

MAX_COMMANDS_PER_REQUEST = 10_000
MAX_ORDERS_TO_RESOLVE = 10_000
# The most orders or fills one ListOpenOrders or ListFills page holds.
MAX_LIST_PAGE = 1_000
# The longest ListFills waits for the projection to reach min_sequence (and ListExecutions for the
# report history to reach the journal), and what it keeps of the caller's deadline to answer after
# waiting.
MAX_FILLS_WAIT_SECONDS = 5.0
ANSWER_MARGIN_SECONDS = 0.5


class TradingServicer(trading_pb2_grpc.TradingServiceServicer):
    """TradingService over the engine loop: translates requests and answers, nothing more."""

    def __init__(
        self,
        loop: EngineLoop,
        *,
        max_in_flight_per_stream: int = 64,
        instrument_journaled: Callable[[int, float | None], Awaitable[None]] | None = None,
        open_orders: OpenOrderIndex | None = None,
        fills: FillProjection | None = None,
        history: ReportHistory | None = None,
        shard: str = "",
        symbols: tuple[str, ...] = (),
    ) -> None:
        self._loop = loop
        self._shard = shard
        # What this shard owns (BACKBONE_TRADING_SYMBOLS); empty: every symbol.
        self._symbols = tuple(symbols)
        self._owned = frozenset(symbols)
        # ListOpenOrders' candidates (kept by TradingApp from committed batches) and ListFills' source.
        self._open_orders = open_orders if open_orders is not None else OpenOrderIndex(loop.engine.orders)
        self._fills = fills
        # ListExecutions' and GetOrder's (of an order the engine forgot) source.
        self._history = history
        self._max_in_flight = max_in_flight_per_stream
        # Awaited with a new instrument's journal sequence and the caller's seconds left before
        # CreateInstrument answers (TradingApp waits there for risk to have learned it).
        self._instrument_journaled = instrument_journaled
        # FindClientOrders calls answered since the process started (its response says how many).
        self._client_order_lookups = 0

    @property
    def _engine(self) -> Engine:
        return self._loop.engine

    async def StreamOrders(
        self, request_iterator: AsyncIterator[trading_pb2.StreamOrdersRequest], context: Any
    ) -> AsyncIterator[trading_pb2.StreamOrdersResponse]:
        answers: asyncio.Queue[asyncio.Future[Any] | BaseException | None] = asyncio.Queue(
            self._max_in_flight
        )

        async def read() -> None:
            try:
                async for request in request_iterator:
                    if len(request.commands) > MAX_COMMANDS_PER_REQUEST:
                        raise invalid_field(
                            "commands",
                            RejectReason.TOO_MANY_COMMANDS,
                            f"has {len(request.commands)} commands; at most "
                            f"{MAX_COMMANDS_PER_REQUEST} fit in one request",
                        )
                    new_orders = _looked_up(request.commands)
                    future = await self._loop.submit(
                        self._orders_run(request), len(request.commands), new_orders
                    )
                    await answers.put(future)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a broken or refused request: end the stream with it
                await answers.put(error)
                return
            await answers.put(None)

        reader = asyncio.create_task(read(), name="trading-stream-orders-reader")
        try:
            while True:
                item = await answers.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield await item
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    def _orders_run(self, request: trading_pb2.StreamOrdersRequest) -> Run:
        engine = self._engine
        owned = self._owned

        def run(
            timestamp_ns: int,
            records: list[trading_pb2.JournalRecord],
            reports: list[common_pb2.ExecutionReport],
        ) -> trading_pb2.StreamOrdersResponse:
            response = trading_pb2.StreamOrdersResponse(sequence=request.sequence)
            add_result = response.results.add
            apply = engine.apply
            for command in request.commands:
                if owned and command.HasField("new_order") and command.new_order.symbol not in owned:
                    # Another shard's symbol: refused, nothing journaled (the gateway routes by symbol).
                    _rejected_new_order(
                        command.new_order,
                        RejectReason.SYMBOL_NOT_OWNED,
                        timestamp_ns,
                        add_result().reports.add,
                    )
                    continue
                # The reports are made in their result (not made, then copied in).
                outcome = apply(command, timestamp_ns, add_result().reports.add)
                if outcome.records:  # subscribers get what is journaled; refusals only go back
                    records += outcome.records
                    reports += outcome.reports
            return response

        return run

    async def SubscribeExecutions(
        self, request: trading_pb2.SubscribeExecutionsRequest, context: Any
    ) -> AsyncIterator[trading_pb2.SubscribeExecutionsResponse]:
        subscription = self._loop.feed.subscribe()
        log.info("execution subscriber joined", subscribers=self._loop.feed.subscriber_count)
        # Headers now tell the subscriber the subscription is registered: no later report is missed.
        await context.send_initial_metadata(())
        try:
            while True:
                yield await subscription.next()
        finally:
            self._loop.feed.unsubscribe(subscription)

    async def StreamMarketData(
        self, request: trading_pb2.StreamMarketDataRequest, context: Any
    ) -> AsyncIterator[trading_pb2.StreamMarketDataResponse]:
        market_data = self._loop.market_data
        snapshot, subscription = market_data.subscribe()
        log.info("market data subscriber joined", subscribers=market_data.subscriber_count)
        try:
            yield snapshot
            while True:
                yield await subscription.next()
        finally:
            market_data.unsubscribe(subscription)

    async def GetOrder(
        self, request: trading_pb2.GetOrderRequest, context: Any
    ) -> trading_pb2.GetOrderResponse:
        order_id = request.order_id
        if not order_id:
            raise invalid_field("order_id", RejectReason.REQUIRED, "is required")
        engine = self._engine

        def run(*_: object) -> common_pb2.Order | bool:
            order = engine.order_message(order_id)
            return order if order is not None else order_id in engine.fences

        order = await self._loop.call(run)
        if order is False:  # not in memory: closed and written to the history, or never journaled
            order = (await self._from_history([order_id])).get(order_id, False)
        if order is True:
            raise not_found(
                RejectReason.ORDER_FENCED,
                f"order {order_id[:80]!r} was never placed: its outcome was unknown and it was "
                "resolved as not placed (fenced)",
                order_id=order_id[:80],
            )
        if not isinstance(order, common_pb2.Order):
            raise not_found(
                RejectReason.UNKNOWN_ORDER, f"there is no order {order_id[:80]!r}", order_id=order_id[:80]
            )
        return trading_pb2.GetOrderResponse(order=order)

    async def GetOrders(
        self, request: trading_pb2.GetOrdersRequest, context: Any
    ) -> trading_pb2.GetOrdersResponse:
        """Each order's state (unset when unknown) and whether it was fenced; nothing changes."""
        order_ids = request.order_ids
        _check_order_count("order_ids", len(order_ids))
        for index, order_id in enumerate(order_ids):
            if not order_id:
                raise invalid_field(f"order_ids[{index}]", RejectReason.REQUIRED, "is required")
        engine = self._engine

        def run(*_: object) -> trading_pb2.GetOrdersResponse:
            response = trading_pb2.GetOrdersResponse()
            for order_id in order_ids:
                lookup = response.lookups.add()
                order = engine.order_message(order_id)
                if order is not None:
                    lookup.order.CopyFrom(order)
                else:
                    lookup.fenced = order_id in engine.fences
            return response

        answer: trading_pb2.GetOrdersResponse = await self._loop.call(run)
        missing = [
            lookup_id
            for lookup_id, lookup in zip(order_ids, answer.lookups, strict=True)
            if not lookup.HasField("order") and not lookup.fenced
        ]
        if missing:  # closed and written to the history, or never journaled
            found = await self._from_history(missing)
            for lookup_id, lookup in zip(order_ids, answer.lookups, strict=True):
                if lookup_id in found:
                    lookup.order.CopyFrom(found[lookup_id])
        return answer

    async def _from_history(self, order_ids: list[str]) -> dict[str, common_pb2.Order]:
        """The orders of `order_ids` the report history holds, as their last report left them
        (orders the engine no longer holds: closed, and written there before it forgot them)."""
        if self._history is None or self._history.pool is None:
            return {}
        reports = await self._history.last_reports(order_ids)
        return {order_id: report.order for order_id, report in reports.items()}

    async def ResolveOrders(
        self, request: trading_pb2.ResolveOrdersRequest, context: Any
    ) -> trading_pb2.ResolveOrdersResponse:
        """Each order: FOUND with its state when journaled, else fenced (journaled) and FENCED."""
        orders = request.orders
        _check_order_count("orders", len(orders))
        for index, item in enumerate(orders):
            for name, rule in (("order_id", ids.ORDER_ID), ("account_id", ids.ACCOUNT_ID)):
                _check_id(f"orders[{index}].{name}", rule, getattr(item, name))
        engine = self._engine

        def run(
            timestamp_ns: int,
            records: list[trading_pb2.JournalRecord],
            reports: list[common_pb2.ExecutionReport],
        ) -> tuple[trading_pb2.ResolveOrdersResponse, int]:
            response = trading_pb2.ResolveOrdersResponse()
            fenced = 0
            for item in orders:
                order, fence = engine.resolve_order(item.order_id, item.account_id, timestamp_ns)
                result = response.results.add(order_id=item.order_id)
                if order is not None:
                    result.resolution = trading_pb2.RESOLUTION_FOUND
                    result.order.CopyFrom(order.message())
                else:
                    result.resolution = trading_pb2.RESOLUTION_FENCED
                    records += fence
                    fenced += len(fence)
            return response, fenced

        # An order the engine forgot (closed, in the history) is taken back in for this batch, so it
        # is FOUND, never fenced: the same look-up as a new order's ids.
        looked_up = [
            trading_pb2.NewOrder(order_id=item.order_id, account_id=item.account_id) for item in orders
        ]
        answer: tuple[trading_pb2.ResolveOrdersResponse, int] = await self._loop.call(run, looked_up)
        response, fenced = answer
        if fenced:
            log.info(
                "orders fenced: never journaled, refused from now on",
                orders=fenced,
                order_ids=[
                    r.order_id for r in response.results if r.resolution == trading_pb2.RESOLUTION_FENCED
                ][:20],
            )
        return response

    async def ResolveReplaces(
        self, request: trading_pb2.ResolveReplacesRequest, context: Any
    ) -> trading_pb2.ResolveReplacesResponse:
        """Each replace: APPLIED when it is the order's last applied replace, ORDER_GONE when the
        engine holds no such order of that account, else fenced (journaled) and FENCED."""
        replaces = request.replaces
        _check_order_count("replaces", len(replaces))
        for index, item in enumerate(replaces):
            for name, rule in (
                ("order_id", ids.ORDER_ID),
                ("account_id", ids.ACCOUNT_ID),
                ("replace_id", ids.ORDER_ID),
            ):
                _check_id(f"replaces[{index}].{name}", rule, getattr(item, name))
        engine = self._engine

        def run(
            timestamp_ns: int,
            records: list[trading_pb2.JournalRecord],
            reports: list[common_pb2.ExecutionReport],
        ) -> tuple[trading_pb2.ResolveReplacesResponse, list[str]]:
            response = trading_pb2.ResolveReplacesResponse()
            fenced: list[str] = []
            for item in replaces:
                resolution, order, fence = engine.resolve_replace(
                    item.order_id, item.account_id, item.replace_id, timestamp_ns
                )
                result = response.results.add(
                    order_id=item.order_id, replace_id=item.replace_id, resolution=resolution
                )
                if order is not None:
                    result.order.CopyFrom(order.message())
                if fence:
                    records += fence
                    fenced.append(item.order_id)
            return response, fenced

        # No order is taken back in from the history: a closed order takes no replace, and its close
        # released its hold (ORDER_GONE says so).
        answer: tuple[trading_pb2.ResolveReplacesResponse, list[str]] = await self._loop.call(run)
        response, fenced = answer
        if fenced:
            log.info(
                "replaces fenced: never applied, refused from now on",
                replaces=len(fenced),
                order_ids=fenced[:20],
            )
        return response

    async def CreateInstrument(
        self, request: trading_pb2.CreateInstrumentRequest, context: Any
    ) -> trading_pb2.CreateInstrumentResponse:
        if not request.HasField("instrument"):
            raise invalid_field("instrument", RejectReason.REQUIRED, "is required")
        instrument = request.instrument
        if self._owned and instrument.symbol not in self._owned:
            more = f" and {len(self._symbols) - 10} more" if len(self._symbols) > 10 else ""
            raise failed_precondition(
                RejectReason.SYMBOL_NOT_OWNED,
                f"trading shard {self._shard!r} does not own {instrument.symbol[:40]!r} (it owns "
                f"{', '.join(self._symbols[:10])}{more}): create it on the shard whose "
                "BACKBONE_TRADING_SYMBOLS lists it",
                symbol=instrument.symbol[:40],
                shard=self._shard,
            )
        engine = self._engine

        def run(
            timestamp_ns: int,
            records: list[trading_pb2.JournalRecord],
            reports: list[common_pb2.ExecutionReport],
        ) -> tuple[common_pb2.Instrument, int]:
            try:
                outcome = engine.create_instrument(instrument, timestamp_ns)
            except InstrumentRejected as error:
                raise _instrument_error(error, instrument.symbol) from None
            records += outcome.records
            assert outcome.instrument is not None
            # The record's sequence; 0 when the same definition existed (nothing new was journaled).
            return outcome.instrument, outcome.records[-1].sequence if outcome.records else 0

        stored, sequence = await self._loop.call(run)
        if stored is not None:
            log.info("instrument ready", symbol=stored.symbol)
        if sequence and self._instrument_journaled is not None:
            await self._instrument_journaled(sequence, context.time_remaining())
        return trading_pb2.CreateInstrumentResponse(instrument=stored)

    async def SetInstrumentStatus(
        self, request: trading_pb2.SetInstrumentStatusRequest, context: Any
    ) -> trading_pb2.SetInstrumentStatusResponse:
        """Halt, close or resume an instrument on the engine loop; answered once journaled."""
        command = request.command
        _check_control_symbol(command.symbol, required=True)
        engine = self._engine

        def run(
            timestamp_ns: int,
            records: list[trading_pb2.JournalRecord],
            reports: list[common_pb2.ExecutionReport],
        ) -> trading_pb2.SetInstrumentStatusResponse:
            try:
                outcome = engine.set_instrument_status(command, timestamp_ns)
            except CommandRejected as error:
                raise _control_error(error, command.symbol) from None
            records += outcome.records
            return trading_pb2.SetInstrumentStatusResponse(
                instrument=outcome.instrument,
                changed=outcome.accepted,
                journal_sequence=outcome.records[-1].sequence if outcome.records else 0,
            )

        response: trading_pb2.SetInstrumentStatusResponse = await self._loop.call(run)
        if response.changed:
            log.info(
                "instrument status changed",
                symbol=command.symbol,
                status=common_pb2.InstrumentStatus.Name(command.status),
                sequence=response.journal_sequence,
            )
        return response

    async def ExpireOrders(
        self, request: trading_pb2.ExpireOrdersRequest, context: Any
    ) -> trading_pb2.ExpireOrdersResponse:
        """Expire the open DAY orders (of one symbol) on the engine loop; answered once journaled."""
        command = request.command
        _check_control_symbol(command.symbol, required=False)
        response = await expire_orders(self._loop, command)
        log.info(
            "day orders expired",
            symbol=command.symbol or "*",
            orders=len(response.reports),
            sequence=response.journal_sequence,
        )
        return response

    async def ListInstruments(
        self, request: trading_pb2.ListInstrumentsRequest, context: Any
    ) -> trading_pb2.ListInstrumentsResponse:
        engine = self._engine
        instruments = await self._loop.call(lambda *_: engine.instrument_list())
        return trading_pb2.ListInstrumentsResponse(instruments=instruments)

    async def GetEngineState(
        self, request: trading_pb2.GetEngineStateRequest, context: Any
    ) -> trading_pb2.GetEngineStateResponse:
        engine = self._engine

        def run(*_: object) -> trading_pb2.GetEngineStateResponse:
            return trading_pb2.GetEngineStateResponse(
                shard=self._shard,
                journal_sequence=engine.last_sequence,
                state_hash=engine.state_hash(),
                open_orders=sum(len(book) for book in engine.books.values()),
                orders=len(engine.orders),
                instruments=len(engine.instruments),
            )

        # On the engine task, between two commands; answered once that point is journaled.
        response: trading_pb2.GetEngineStateResponse = await self._loop.call(run)
        return response

    async def GetShardInfo(
        self, request: trading_pb2.GetShardInfoRequest, context: Any
    ) -> trading_pb2.GetShardInfoResponse:
        """This shard's name and the symbols it owns (none listed: every symbol)."""
        return trading_pb2.GetShardInfoResponse(shard=self._shard, symbols=self._symbols)

    async def FindClientOrders(
        self, request: trading_pb2.FindClientOrdersRequest, context: Any
    ) -> trading_pb2.FindClientOrdersResponse:
        """The order of this shard holding each (account, client order id); nothing changes.

        Runs on the engine loop with the keys as the look-up's NewOrders (account and client order
        id only), as a new order's ids are looked up: a key the engine no longer holds and its filter
        of journaled ids may have seen is read from the report history and taken back in before the
        run (trading/retention.py). So every order journaled or queued before the call is seen, in
        memory or in the history, exactly as a new order reusing the key would meet it."""
        keys = request.keys
        _check_order_count("keys", len(keys))
        for index, item in enumerate(keys):
            _check_id(f"keys[{index}].account_id", ids.ACCOUNT_ID, item.account_id)
            _check_id(f"keys[{index}].client_order_id", ids.CLIENT_ORDER_ID, item.client_order_id)
        engine = self._engine

        def run(*_: object) -> trading_pb2.FindClientOrdersResponse:
            response = trading_pb2.FindClientOrdersResponse(orders_journaled=engine.seen_ids.orders)
            orders, client_orders = engine.orders, engine.client_orders
            for item in keys:
                holder = response.holders.add()
                order = orders.get(client_orders.get((item.account_id, item.client_order_id), ""))
                if order is not None:
                    holder.order.CopyFrom(order.message())
            return response

        looked_up = [
            trading_pb2.NewOrder(account_id=item.account_id, client_order_id=item.client_order_id)
            for item in keys
        ]
        response: trading_pb2.FindClientOrdersResponse = await self._loop.call(run, looked_up)
        self._client_order_lookups += 1
        response.calls_answered = self._client_order_lookups
        return response

    async def GetOrderBook(
        self, request: trading_pb2.GetOrderBookRequest, context: Any
    ) -> trading_pb2.GetOrderBookResponse:
        symbol = request.symbol
        if not symbol:
            raise invalid_field("symbol", RejectReason.REQUIRED, "is required")
        depth = request.depth
        engine = self._engine

        def run(*_: object) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]] | None:
            book = engine.books.get(symbol)
            return None if book is None else book.snapshot(depth)

        levels = await self._loop.call(run)
        if levels is None:
            raise not_found(
                RejectReason.UNKNOWN_SYMBOL, f"there is no instrument {symbol[:40]!r}", symbol=symbol[:40]
            )
        bids, asks = levels
        return trading_pb2.GetOrderBookResponse(
            symbol=symbol,
            bids=[trading_pb2.PriceLevel(price_ticks=p, quantity_lots=q, order_count=n) for p, q, n in bids],
            asks=[trading_pb2.PriceLevel(price_ticks=p, quantity_lots=q, order_count=n) for p, q, n in asks],
        )

    async def ListOpenOrders(
        self, request: trading_pb2.ListOpenOrdersRequest, context: Any
    ) -> trading_pb2.ListOpenOrdersResponse:
        """A page of one account's open orders, by (created_ns, order_id); nothing changes."""
        account_id, symbol, limit = request.account_id, request.symbol, request.limit
        _check_listing(account_id, symbol, limit)
        if request.after_created_ns < 0:
            raise invalid_field("after_created_ns", RejectReason.INVALID_PAGE_TOKEN, "must not be negative")
        after_order_id = request.after_order_id
        if after_order_id:
            _check_id("after_order_id", ids.ORDER_ID, after_order_id)
        after = (request.after_created_ns, after_order_id)
        index = self._open_orders

        def run(*_: object) -> tuple[list[common_pb2.Order], bool]:
            return index.page(account_id, symbol, after, limit)

        orders, more = await self._loop.call(run)
        return trading_pb2.ListOpenOrdersResponse(orders=orders, more=more)

    async def ListFills(
        self, request: trading_pb2.ListFillsRequest, context: Any
    ) -> trading_pb2.ListFillsResponse:
        """A page of one account's fills from the projection, and how far it is complete."""
        _check_listing(request.account_id, request.symbol, request.limit)
        for name in (
            "start_timestamp_ns", "end_timestamp_ns", "start_trade_id", "end_trade_id", "after_trade_id",
            "min_sequence",
        ):  # fmt: skip
            if getattr(request, name) < 0:
                raise invalid_field(name, RejectReason.INVALID_RANGE, "must not be negative")
        for start, end in (("start_timestamp_ns", "end_timestamp_ns"), ("start_trade_id", "end_trade_id")):
            if getattr(request, end) and getattr(request, end) <= getattr(request, start):
                raise invalid_field(end, RejectReason.INVALID_RANGE, f"must be above {start}")
        if request.after_side not in (common_pb2.SIDE_UNSPECIFIED, common_pb2.SIDE_BUY, common_pb2.SIDE_SELL):
            raise invalid_field("after_side", RejectReason.INVALID_PAGE_TOKEN, "is not a side")
        fills = self._fills
        if fills is None or fills.pool is None:
            raise unavailable(
                RejectReason.SERVICE_STARTING, "trading is starting: its fills are not readable yet; retry"
            )
        if request.min_sequence:
            left = context.time_remaining()
            budget = MAX_FILLS_WAIT_SECONDS
            if left is not None:
                budget = min(budget, left - ANSWER_MARGIN_SECONDS)
            if budget > 0:
                await fills.wait_projected(request.min_sequence, budget)
        query = FillQuery(
            account_id=request.account_id,
            symbol=request.symbol,
            start_timestamp_ns=request.start_timestamp_ns,
            end_timestamp_ns=request.end_timestamp_ns,
            start_trade_id=request.start_trade_id,
            end_trade_id=request.end_trade_id,
            after_trade_id=request.after_trade_id,
            after_side=request.after_side,
            limit=request.limit,
        )
        page, more, projected = await fills.page(query)
        return trading_pb2.ListFillsResponse(fills=page, more=more, projected_sequence=projected)

    async def ListExecutions(
        self, request: trading_pb2.ListExecutionsRequest, context: Any
    ) -> trading_pb2.ListExecutionsResponse:
        """A page of one account's reports from the history, once it holds every report journaled
        when the call was answered; the account's last report number then."""
        account_id = request.account_id
        if request.last_only:
            _check_id("account_id", ids.ACCOUNT_ID, account_id)
            last = await self._loop.call(lambda *_: self._engine.account_sequences.get(account_id, 0))
            return trading_pb2.ListExecutionsResponse(last_account_sequence=last)
        _check_listing(account_id, "", request.limit)
        if request.from_sequence < 1:
            raise invalid_field("from_sequence", RejectReason.INVALID_RANGE, "must be at least 1")
        if request.through_sequence < 0:
            raise invalid_field("through_sequence", RejectReason.INVALID_RANGE, "must not be negative")
        history = self._history
        if history is None or history.pool is None:
            raise unavailable(
                RejectReason.SERVICE_STARTING, "trading is starting: its report history is not readable yet"
            )
        engine = self._engine

        def run(*_: object) -> tuple[int, int]:
            return engine.last_sequence, engine.account_sequences.get(account_id, 0)

        # Answered once the batch it ran in is journaled: everything up to `journaled` is then
        # committed and handed to the history.
        journaled, last_number = await self._loop.call(run)
        if request.from_sequence > last_number + 1:
            raise out_of_range(
                RejectReason.SEQUENCE_BEYOND_END,
                f"from_sequence {request.from_sequence} is beyond the account's last report "
                f"({last_number}) + 1",
                last_account_sequence=str(last_number),
            )
        through = min(request.through_sequence or last_number, last_number)
        if request.from_sequence > through:
            return trading_pb2.ListExecutionsResponse(last_account_sequence=last_number)
        left = context.time_remaining()
        budget = (
            MAX_FILLS_WAIT_SECONDS
            if left is None
            else min(MAX_FILLS_WAIT_SECONDS, left - ANSWER_MARGIN_SECONDS)
        )
        if budget <= 0 or not await history.wait_projected(journaled, budget):
            raise unavailable(
                RejectReason.HISTORY_BEHIND,
                f"the report history is written through journal sequence {history.projected_sequence}, "
                f"not yet {journaled}; retry",
            )
        reports = await history.page(account_id, request.from_sequence, through, request.limit)
        return trading_pb2.ListExecutionsResponse(reports=reports, last_account_sequence=last_number)


async def expire_orders(
    loop: EngineLoop, command: trading_pb2.ExpireOrders
) -> trading_pb2.ExpireOrdersResponse:
    """Run an ExpireOrders command on the engine loop: its EXPIRED reports, once journaled (and
    published to SubscribeExecutions). Raises ServiceError for an unknown symbol or a time in
    force other than DAY, changing nothing."""
    engine = loop.engine

    def run(
        timestamp_ns: int,
        records: list[trading_pb2.JournalRecord],
        reports: list[common_pb2.ExecutionReport],
    ) -> trading_pb2.ExpireOrdersResponse:
        response = trading_pb2.ExpireOrdersResponse()
        try:
            outcome = engine.expire_orders(command, timestamp_ns, report=response.reports.add)
        except CommandRejected as error:
            raise _control_error(error, command.symbol) from None
        records += outcome.records
        reports += outcome.reports
        if outcome.records:
            response.journal_sequence = outcome.records[-1].sequence
        return response

    response: trading_pb2.ExpireOrdersResponse = await loop.call(run)
    return response


def _check_id(field: str, rule: ids.IdRule, value: str) -> None:
    problem = rule.problem(value)
    if problem:
        raise invalid_field(field, rule.reason, problem)


def _check_listing(account_id: str, symbol: str, limit: int) -> None:
    """The fields every list call has: the account (required), a symbol (optional), the page size."""
    _check_id("account_id", ids.ACCOUNT_ID, account_id)
    if symbol:
        _check_id("symbol", ids.SYMBOL, symbol)
    if not 1 <= limit <= MAX_LIST_PAGE:
        raise invalid_field("limit", RejectReason.INVALID_LIMIT, f"must be 1 to {MAX_LIST_PAGE}")


def _check_order_count(field: str, count: int) -> None:
    """A request names at least one order and at most MAX_ORDERS_TO_RESOLVE."""
    if not count:
        raise invalid_field(field, RejectReason.REQUIRED, "name at least one order")
    if count > MAX_ORDERS_TO_RESOLVE:
        raise invalid_field(
            field,
            RejectReason.TOO_MANY_COMMANDS,
            f"has {count} orders; at most {MAX_ORDERS_TO_RESOLVE} fit in one request",
        )


def _instrument_error(error: InstrumentRejected, symbol: str) -> ServiceError:
    if error.reason == RejectReason.INSTRUMENT_EXISTS:
        return already_exists(error.reason, error.message, symbol=symbol[:40])
    violations = [
        FieldViolation(name if name == "instrument" else f"instrument.{name}", description)
        for name, description in error.violations
    ]
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, error.reason, error.message, violations)


def _check_control_symbol(symbol: str, *, required: bool) -> None:
    """A control command's symbol: well formed (the engine answers whether it is known)."""
    if not symbol:
        if required:
            raise invalid_field("command.symbol", RejectReason.REQUIRED, "is required")
        return
    _check_id("command.symbol", ids.SYMBOL, symbol)


def _control_error(error: CommandRejected, symbol: str) -> ServiceError:
    """A refused control command: NOT_FOUND for an unknown symbol, else INVALID_ARGUMENT naming the
    command's field at fault."""
    if error.reason == RejectReason.UNKNOWN_SYMBOL:
        return not_found(error.reason, error.message, symbol=symbol[:40])
    violations = [FieldViolation(f"command.{name}", description) for name, description in error.violations]
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, error.reason, error.message, violations)


def _looked_up(commands: Sequence[trading_pb2.OrderCommand]) -> list[trading_pb2.NewOrder]:
    """What a batch's ids are looked up in the report history by (EngineLoop.submit): its new
    orders, and a NewOrder naming the order of each cancel and replace (only the order id and
    account: no client order id to check). So a cancel or replace of a closed order the engine
    has forgotten finds it, and is refused ORDER_NOT_OPEN as while it was held, not UNKNOWN_ORDER."""
    looked_up: list[trading_pb2.NewOrder] = []
    for command in commands:
        kind = command.WhichOneof("command")
        if kind == "new_order":
            looked_up.append(command.new_order)
        elif kind == "cancel_order" or kind == "replace_order":
            named = getattr(command, kind)
            looked_up.append(trading_pb2.NewOrder(order_id=named.order_id, account_id=named.account_id))
    return looked_up
