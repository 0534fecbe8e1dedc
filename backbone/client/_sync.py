"""The blocking client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Protocol, TypeVar, Unpack

import grpc
from google.protobuf.message import Message

from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason

from ._errors import BackboneError, backoff_seconds, is_duplicate_of_earlier_attempt, should_retry
from ._executions import MAX_ATTEMPTS, ResumePoint, resume_request
from ._market_data import market_data_request
from ._models import (
    Account,
    Asset,
    Balance,
    Deposit,
    ExecutionReport,
    Fill,
    FillFilters,
    FillsPage,
    Instrument,
    InstrumentStatus,
    Order,
    OrderBook,
    OrdersPage,
    OrderType,
    SelfTradePrevention,
    TimeInForce,
    balances_from_proto,
    create_asset_request,
    create_instrument_request,
    deposit_from_proto,
    deposit_request,
    fills_page_from_proto,
    instrument_from_proto,
    list_fills_request,
    list_orders_request,
    order_book_from_proto,
    order_book_request,
    order_from_proto,
    orders_page_from_proto,
    replace_order_request,
    replaced_order_from_proto,
    report_from_proto,
    set_instrument_status_request,
    submit_order_request,
    submitted_order_from_proto,
)
from ._order_stream import DEFAULT_BUFFER, EventsMode, check_stream_options
from ._sync_market_data import MarketDataStream
from ._sync_order_stream import OrderStream

Response = TypeVar("Response", bound=Message)
T = TypeVar("T")

API_KEY_HEADER = "x-api-key"
ADMIN_KEY_HEADER = "x-admin-key"
GATEWAY_SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name
ADMIN_SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name


def channel_options() -> list[tuple[str, int]]:
    """Channel options shared by both clients: keepalive and reconnect backoff."""
    return [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ]


class _ResponseIterator(Protocol):
    def __next__(self) -> gateway_pb2.StreamExecutionsResponse: ...

    def cancel(self) -> bool: ...

    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...] | None: ...

    def is_active(self) -> bool: ...

    def code(self) -> grpc.StatusCode: ...


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _unary(
    channel: grpc.Channel, service: str, method: str, response_type: type[Response]
) -> grpc.UnaryUnaryMultiCallable[Message, Response]:
    return channel.unary_unary(
        f"/{service}/{method}",
        request_serializer=_serialize,
        response_deserializer=response_type.FromString,
    )


class ExecutionStream(Iterator[ExecutionReport]):
    """The caller's execution reports as they happen; iterate, and close() when done.

    Once this object exists the subscription is registered at the gateway, so
    no report of an order submitted afterwards is missed. A break worth
    resuming (the gateway or its feed went away, a slow reader dropped) opens
    a new call by itself, from the report after the last one handed out
    (``from_sequence``; see ``last_sequence``, ``reconnects``), so every report
    is seen once; a refusal, or too many breaks in a row, raises
    :class:`BackboneError`.
    """

    def __init__(
        self,
        open_call: Callable[[gateway_pb2.StreamExecutionsRequest], _ResponseIterator],
        on_report: Callable[[ExecutionReport], None] | None = None,
        *,
        from_sequence: int = 0,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._open = open_call
        self._resume = ResumePoint(from_sequence, max_attempts)
        self._on_report = on_report
        self._closed = False
        self._call = self._opened(resume_request(self._resume.positions()))

    @property
    def last_sequence(self) -> int:
        """The highest report number of the default trading shard handed out (a new call resumes
        after it); with several shards see ``last_sequences``."""
        return self._resume.last_sequence

    @property
    def last_sequences(self) -> dict[str, int]:
        """Per trading shard (a report's ``shard``), the highest report number handed out or
        announced: a new call resumes each after its own."""
        return dict(self._resume.last)

    @property
    def reconnects(self) -> int:
        """How many times the stream was opened again after a break."""
        return self._resume.reconnects

    def _opened(self, request: gateway_pb2.StreamExecutionsRequest) -> _ResponseIterator:
        """A new call, once the gateway has registered it (its headers); raises its refusal."""
        call = self._open(request)
        metadata = None
        try:
            metadata = call.initial_metadata()  # the gateway sends headers once the subscription is live
            if not call.is_active() and call.code() != grpc.StatusCode.OK:
                next(call)  # raises the call's error
        except grpc.RpcError as error:
            call.cancel()
            raise BackboneError.from_rpc_error(error) from None
        except StopIteration:
            pass
        self._resume.announced(metadata)
        return call

    def __iter__(self) -> ExecutionStream:
        return self

    def __next__(self) -> ExecutionReport:
        while not self._closed:
            try:
                response = next(self._call)
            except grpc.RpcError as error:
                if self._closed:
                    break
                self._reopen(BackboneError.from_rpc_error(error))
                continue
            report = report_from_proto(response.report)
            self._resume.saw(report)
            if self._on_report is not None:
                self._on_report(report)
            return report
        raise StopIteration

    def _reopen(self, failure: BackboneError) -> None:
        """Open the stream again after `failure`, from the report after the last one handed out;
        raises the failure when it is not worth it, or after too many in a row."""
        while True:
            if not self._resume.resumes_after(failure):
                raise failure
            time.sleep(backoff_seconds(self._resume.failures))
            self._call.cancel()
            self._resume.reconnects += 1
            try:
                self._call = self._opened(resume_request(self._resume.positions()))
                return
            except BackboneError as again:
                failure = again

    def close(self) -> None:
        """Stop the subscription."""
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> ExecutionStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Client:
    """A blocking client of the Backbone gateway. Build it with :meth:`Client.connect`.

    Every failure is raised as :class:`BackboneError`. Idempotent calls are
    retried on UNAVAILABLE; submit_order is retried with the same
    client_order_id, so a retry never places a second order.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        target: str,
        api_key: str | None,
        admin_key: str | None,
        timeout_seconds: float,
        max_attempts: int,
    ) -> None:
        self.target = target
        self._channel = channel
        self._api_key = api_key
        self._admin_key = admin_key
        self._timeout = timeout_seconds
        self._max_attempts = max(1, max_attempts)
        # The highest trading sequence of the reports this client has seen: balance reads
        # reflect at least it (read your writes).
        self.seen_trading_sequence = 0
        g, a = GATEWAY_SERVICE, ADMIN_SERVICE
        self._submit_order = _unary(channel, g, "SubmitOrder", gateway_pb2.SubmitOrderResponse)
        self._cancel_order = _unary(channel, g, "CancelOrder", gateway_pb2.CancelOrderResponse)
        self._replace_order = _unary(channel, g, "ReplaceOrder", gateway_pb2.ReplaceOrderResponse)
        self._get_order = _unary(channel, g, "GetOrder", gateway_pb2.GetOrderResponse)
        self._get_balances = _unary(channel, g, "GetBalances", gateway_pb2.GetBalancesResponse)
        self._list_instruments = _unary(channel, g, "ListInstruments", gateway_pb2.ListInstrumentsResponse)
        self._get_order_book = _unary(channel, g, "GetOrderBook", gateway_pb2.GetOrderBookResponse)
        self._list_orders = _unary(channel, g, "ListOrders", gateway_pb2.ListOrdersResponse)
        self._list_fills = _unary(channel, g, "ListFills", gateway_pb2.ListFillsResponse)
        self._stream_executions: grpc.UnaryStreamMultiCallable[
            Message, gateway_pb2.StreamExecutionsResponse
        ] = channel.unary_stream(
            f"/{g}/StreamExecutions",
            request_serializer=_serialize,
            response_deserializer=gateway_pb2.StreamExecutionsResponse.FromString,
        )
        self._stream_orders: grpc.StreamStreamMultiCallable[
            gateway_pb2.StreamOrdersRequest, gateway_pb2.StreamOrdersResponse
        ] = channel.stream_stream(
            f"/{g}/StreamOrders",
            request_serializer=_serialize,
            response_deserializer=gateway_pb2.StreamOrdersResponse.FromString,
        )
        self._stream_market_data: grpc.UnaryStreamMultiCallable[
            Message, gateway_pb2.StreamMarketDataResponse
        ] = channel.unary_stream(
            f"/{g}/StreamMarketData",
            request_serializer=_serialize,
            response_deserializer=gateway_pb2.StreamMarketDataResponse.FromString,
        )
        self._create_asset = _unary(channel, a, "CreateAsset", gateway_pb2.CreateAssetResponse)
        self._create_instrument = _unary(channel, a, "CreateInstrument", gateway_pb2.CreateInstrumentResponse)
        self._create_account = _unary(channel, a, "CreateAccount", gateway_pb2.CreateAccountResponse)
        self._deposit = _unary(channel, a, "Deposit", gateway_pb2.DepositResponse)
        self._cancel_all_orders = _unary(channel, g, "CancelAllOrders", gateway_pb2.CancelAllOrdersResponse)
        self._set_instrument_status = _unary(
            channel, a, "SetInstrumentStatus", gateway_pb2.SetInstrumentStatusResponse
        )
        self._expire_day_orders = _unary(channel, a, "ExpireDayOrders", gateway_pb2.ExpireDayOrdersResponse)

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout_seconds: float = 10.0,
        tls: bool = False,
        root_certificates: bytes | None = None,
        max_attempts: int = 3,
    ) -> Client:
        """Connect to the gateway at `target` ("host:port"), waiting until it is reachable.

        `timeout_seconds` bounds the connection and is the deadline of every
        call. `api_key` is needed for trading calls, `admin_key` for the
        admin calls. `tls=True` uses TLS (with `root_certificates`, or the
        system's roots).
        """
        options = channel_options()
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            channel = grpc.secure_channel(target, credentials, options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_seconds)
        except grpc.FutureTimeoutError:
            channel.close()
            raise BackboneError(
                grpc.StatusCode.UNAVAILABLE,
                RejectReason.UNREACHABLE,
                f"cannot reach the gateway at {target} within {timeout_seconds:g}s",
            ) from None
        return cls(
            channel,
            target=target,
            api_key=api_key,
            admin_key=admin_key,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
        )

    # --- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(target={self.target!r})"

    def _metadata(self, admin: bool) -> Sequence[tuple[str, str]]:
        if admin:
            if not self._admin_key:
                raise BackboneError.not_configured("admin_key")
            return ((ADMIN_KEY_HEADER, self._admin_key),)
        if not self._api_key:
            raise BackboneError.not_configured("api_key")
        return ((API_KEY_HEADER, self._api_key),)

    def _call(
        self,
        method: grpc.UnaryUnaryMultiCallable[Message, Response],
        request: Message,
        *,
        admin: bool = False,
    ) -> Response:
        metadata = tuple(self._metadata(admin))
        try:
            return method(request, timeout=self._timeout, metadata=metadata)
        except grpc.RpcError as error:
            raise BackboneError.from_rpc_error(error) from None

    def _retrying(self, attempt_once: Callable[[], T]) -> T:
        attempt = 1
        while True:
            try:
                return attempt_once()
            except BackboneError as error:
                if attempt >= self._max_attempts or not should_retry(error):
                    raise
            time.sleep(backoff_seconds(attempt))
            attempt += 1

    # --- trading -------------------------------------------------------------------------------

    def submit_order(
        self,
        symbol: str,
        side: str | int,
        price: Decimal | None,
        quantity: Decimal,
        *,
        client_order_id: str | None = None,
        order_type: OrderType | str = OrderType.LIMIT,
        time_in_force: TimeInForce | str | None = None,
        post_only: bool = False,
        self_trade_prevention: SelfTradePrevention | str | None = None,
        quote_budget: Decimal | None = None,
    ) -> Order:
        """Place an order; returns it with the execution reports it produced at once.

        `side` is "buy" or "sell" (or a common.v1 Side). `price` and `quantity`
        are exact Decimals on the instrument's tick and lot grid. Without a
        `client_order_id` one is generated; retries reuse it, and when an
        earlier attempt did get through, that order is returned.

        `order_type` is "limit" or "market" (a market order's `price` is its
        protection price: it never trades beyond it). `time_in_force` is
        "gtc", "ioc", "fok" or "day"; None leaves it to the gateway (GTC for a
        limit order, IOC for a market order). `post_only` (GTC or DAY limit
        orders only) refuses or reprices an order that would take liquidity,
        as the gateway is configured. `self_trade_prevention` ("none",
        "cancel_resting", "cancel_incoming", "cancel_both"; None: the
        gateway's default) says what happens when the order would trade with
        one of the account's own resting orders. `quote_budget` (a market buy
        only) is the most it may spend on trades, fees excluded, in the quote
        asset; with it `price` may be None (no protection price): risk holds the
        budget plus the largest fee on it and gives back what is not used.
        """
        coid = client_order_id or uuid.uuid4().hex
        request = submit_order_request(
            symbol,
            side,
            price,
            quantity,
            coid,
            order_type=order_type,
            time_in_force=time_in_force,
            post_only=post_only,
            self_trade_prevention=self_trade_prevention,
            quote_budget=quote_budget,
        )
        attempt = 1
        earlier: BackboneError | None = None
        while True:
            try:
                order = submitted_order_from_proto(self._call(self._submit_order, request))
                self._saw(*order.reports)
                return order
            except BackboneError as error:
                if earlier is not None and is_duplicate_of_earlier_attempt(error):
                    # An earlier attempt got through to the gateway: that order is the answer.
                    try:
                        return self.get_order(error.metadata["order_id"])
                    except BackboneError as lookup:
                        if lookup.code != grpc.StatusCode.NOT_FOUND:
                            raise
                        raise earlier from None  # not on the book (yet): its outcome is unknown
                if attempt >= self._max_attempts or not should_retry(error):
                    raise
                earlier = error
            time.sleep(backoff_seconds(attempt))
            attempt += 1

    def cancel_order(self, order_id: str) -> Order:
        """Cancel an order's open quantity; returns the cancelled order."""
        response = self._call(self._cancel_order, gateway_pb2.CancelOrderRequest(order_id=order_id))
        return order_from_proto(response.order)

    def replace_order(
        self, order_id: str, *, price: Decimal | None = None, quantity: Decimal | None = None
    ) -> Order:
        """Replace an open order's price and/or total quantity (None keeps it); returns the order
        after it, with the reports it produced (REPLACED, then any trades at the new price).

        Less quantity at the same price keeps the order's time priority; a new price or more
        quantity loses it. Risk holds what the replaced order may cost first: a replace the
        account cannot afford is refused (INSUFFICIENT_BALANCE) with nothing changed. Safe to
        retry: a replace to what the order already is changes nothing and returns the order.
        """
        request = replace_order_request(order_id, price, quantity)
        response = self._retrying(lambda: self._call(self._replace_order, request))
        order = replaced_order_from_proto(response)
        self._saw(*order.reports)
        return order

    def cancel_all_orders(self, symbol: str | None = None) -> list[Order]:
        """Cancel every open order of this account (of `symbol`, when given); the cancelled orders.

        Safe to retry: a repeat cancels what is still open. Balances read afterwards show the
        reservations released.
        """
        request = gateway_pb2.CancelAllOrdersRequest(symbol=symbol or "")
        response = self._retrying(lambda: self._call(self._cancel_all_orders, request))
        self._saw_sequence(response.trading_sequence)
        return [order_from_proto(order) for order in response.orders]

    def get_order(self, order_id: str) -> Order:
        """An order of this account."""
        request = gateway_pb2.GetOrderRequest(order_id=order_id)
        response = self._retrying(lambda: self._call(self._get_order, request))
        return order_from_proto(response.order)

    def _saw(self, *reports: ExecutionReport) -> None:
        for report in reports:
            self.seen_trading_sequence = max(self.seen_trading_sequence, report.trading_sequence)

    def _saw_sequence(self, trading_sequence: int) -> None:
        self.seen_trading_sequence = max(self.seen_trading_sequence, trading_sequence)

    def get_balances(self) -> dict[str, Balance]:
        """This account's balances by asset code."""
        request = gateway_pb2.GetBalancesRequest(min_trading_sequence=self.seen_trading_sequence)
        return balances_from_proto(self._retrying(lambda: self._call(self._get_balances, request)))

    def list_instruments(self) -> list[Instrument]:
        """Every tradable instrument and its rules."""
        request = gateway_pb2.ListInstrumentsRequest()
        response = self._retrying(lambda: self._call(self._list_instruments, request))
        return [instrument_from_proto(item) for item in response.instruments]

    def get_order_book(self, symbol: str, depth: int = 20) -> OrderBook:
        """Aggregated price levels of `symbol`, best first (1 to 1000 per side)."""
        request = order_book_request(symbol, depth)
        return order_book_from_proto(self._retrying(lambda: self._call(self._get_order_book, request)))

    def list_orders(
        self, symbol: str | None = None, *, page_size: int = 100, page_token: str = ""
    ) -> OrdersPage:
        """A page of this account's open orders (of `symbol` unless None), oldest first.

        `page_size` is 1 to 1000; pass the page's ``next_page_token`` as `page_token` for the
        next one (with the same `symbol`). :meth:`iter_orders` walks every page.
        """
        request = list_orders_request(symbol, page_size, page_token)
        return orders_page_from_proto(self._retrying(lambda: self._call(self._list_orders, request)))

    def iter_orders(self, symbol: str | None = None, *, page_size: int = 100) -> Iterator[Order]:
        """Every open order of this account (of `symbol` unless None), oldest first, a page at a time."""
        token = ""
        while True:
            page = self.list_orders(symbol, page_size=page_size, page_token=token)
            yield from page.orders
            if not page.next_page_token:
                return
            token = page.next_page_token

    def list_fills(
        self,
        symbol: str | None = None,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        start_trade_id: int | None = None,
        end_trade_id: int | None = None,
        page_size: int = 100,
        page_token: str = "",
    ) -> FillsPage:
        """A page of this account's fills by trade id: of `symbol` unless None, at or after
        `start_time` and before `end_time` (timezone-aware), of trade ids from `start_trade_id`
        and below `end_trade_id`. The page covers every trade this client has seen reported
        (read your writes). Pass ``next_page_token`` with the same filters for the next page;
        :meth:`iter_fills` walks every page.
        """
        request = list_fills_request(
            symbol,
            start_time=start_time,
            end_time=end_time,
            start_trade_id=start_trade_id,
            end_trade_id=end_trade_id,
            page_size=page_size,
            page_token=page_token,
            min_trading_sequence=self.seen_trading_sequence,
        )
        return fills_page_from_proto(self._retrying(lambda: self._call(self._list_fills, request)))

    def iter_fills(self, symbol: str | None = None, **filters: Unpack[FillFilters]) -> Iterator[Fill]:
        """Every fill of this account within the filters (those of :meth:`list_fills`), by trade id."""
        token = ""
        while True:
            page = self.list_fills(symbol, page_token=token, **filters)
            yield from page.fills
            if not page.next_page_token:
                return
            token = page.next_page_token

    def stream_executions(self, from_sequence: int = 0) -> ExecutionStream:
        """Subscribe to this account's execution reports; returns once the subscription is live.

        ``from_sequence`` > 0 starts with the account's reports from that number (its
        ``account_sequence``) on, then goes on live; 0 is live only. After a break the stream
        resumes by itself after the last report it handed out.
        """
        metadata = tuple(self._metadata(False))

        def open_call(request: gateway_pb2.StreamExecutionsRequest) -> _ResponseIterator:
            return self._stream_executions(request, metadata=metadata)

        return ExecutionStream(open_call, self._saw, from_sequence=from_sequence)

    def order_stream(
        self, *, events: EventsMode = "all", buffer: int = DEFAULT_BUFFER, cancel_on_disconnect: bool = False
    ) -> OrderStream:
        """Batched order entry (GatewayService.StreamOrders); returns once the stream is open.

        ``with client.order_stream() as stream:`` then
        ``ticket = stream.submit(...)``, ``stream.cancel(...)``,
        ``order = ticket.result()`` and ``for event in stream`` (see
        :class:`OrderStream`). ``events`` says what the iterator yields: "all"
        (results and later reports), "reports" (later reports only) or "none"
        (use the tickets alone); ``buffer`` bounds the events waiting for it.
        Reports seen on the stream count for read-your-writes in get_balances.
        With ``cancel_on_disconnect`` the gateway cancels the stream's open orders
        when the stream ends, however it ends (``close()`` included).
        """
        check_stream_options(events, buffer)
        metadata = tuple(self._metadata(False))
        stream = OrderStream(
            lambda requests: self._stream_orders(requests, metadata=metadata),
            on_sequence=self._saw_sequence,
            timeout_seconds=self._timeout,
            events=events,
            buffer=buffer,
            cancel_on_disconnect=cancel_on_disconnect,
        )
        return stream.open()

    def market_data(self, symbols: Sequence[str], depth: int = 10) -> MarketDataStream:
        """Follow `symbols` (GatewayService.StreamMarketData): ``with client.market_data(["BTC-USD"]) as
        events: for event in events: ...``, each event with the symbol's book after it (its top
        `depth` levels, 1 to 50) and its new trade prints. Opening it waits for the snapshots (a
        refusal raises BackboneError there); a lost message or a dropped stream is healed by the
        stream itself with fresh snapshots (see :class:`MarketDataStream`)."""
        request = market_data_request(symbols, depth)
        metadata = tuple(self._metadata(False))
        stream = MarketDataStream(
            lambda: self._stream_market_data(request, metadata=metadata), max_attempts=self._max_attempts
        )
        return stream.start()

    # --- admin ---------------------------------------------------------------------------------

    def create_asset(self, code: str, scale: int) -> Asset:
        """Define an asset with `scale` decimal places (repeating the same definition is a no-op)."""
        request = create_asset_request(code, scale)
        response = self._retrying(lambda: self._call(self._create_asset, request, admin=True))
        return Asset(response.code, response.scale)

    def create_instrument(
        self,
        symbol: str,
        base_asset: str,
        quote_asset: str,
        *,
        tick_size: Decimal,
        lot_size: Decimal,
        max_quantity: Decimal,
        max_price: Decimal,
        min_quantity: Decimal | None = None,
        maker_fee_bps: int = 0,
        taker_fee_bps: int = 0,
    ) -> Instrument:
        """Define a tradable symbol over two existing assets."""
        request = create_instrument_request(
            symbol,
            base_asset,
            quote_asset,
            tick_size=tick_size,
            lot_size=lot_size,
            max_quantity=max_quantity,
            max_price=max_price,
            min_quantity=min_quantity,
            maker_fee_bps=maker_fee_bps,
            taker_fee_bps=taker_fee_bps,
        )
        response = self._retrying(lambda: self._call(self._create_instrument, request, admin=True))
        return instrument_from_proto(response.instrument)

    def set_instrument_status(self, symbol: str, status: InstrumentStatus | str) -> Instrument:
        """Halt ("halted"), close ("closed") or resume ("trading") an instrument; the instrument now.

        A halted or closed instrument refuses new orders (INSTRUMENT_HALTED, INSTRUMENT_CLOSED)
        and keeps its book; cancels still work.
        """
        request = set_instrument_status_request(symbol, status)
        response = self._retrying(lambda: self._call(self._set_instrument_status, request, admin=True))
        return instrument_from_proto(response.instrument)

    def expire_day_orders(self, symbol: str | None = None) -> list[Order]:
        """Expire every open DAY order now (of `symbol`, when given), as the end of the trading
        day does; the expired orders."""
        request = gateway_pb2.ExpireDayOrdersRequest(symbol=symbol or "")
        response = self._retrying(lambda: self._call(self._expire_day_orders, request, admin=True))
        return [order_from_proto(order) for order in response.orders]

    def create_account(self, account_id: str | None = None) -> Account:
        """Open an account (id generated when None); its API key is returned this once."""
        request = gateway_pb2.CreateAccountRequest(account_id=account_id or "")
        response = self._call(self._create_account, request, admin=True)
        return Account(response.account_id, response.api_key)

    def deposit(
        self,
        account_id: str,
        asset: str,
        amount: Decimal,
        *,
        deposit_id: str | None = None,
    ) -> Deposit:
        """Credit `amount` of `asset`; a repeated `deposit_id` is a no-op (created=False)."""
        request = deposit_request(account_id, asset, amount, deposit_id or uuid.uuid4().hex)
        response = self._retrying(lambda: self._call(self._deposit, request, admin=True))
        return deposit_from_proto(request, response)
