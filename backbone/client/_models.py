"""What the SDK hands back: frozen dataclasses with Decimal amounts, and their conversions."""

from __future__ import annotations

import dataclasses
import enum
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeAlias, TypedDict

import grpc
from google.protobuf import timestamp_pb2

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.money import MoneyError, parse_decimal
from backbone.reasons import RejectReason
from backbone.runtime.errors import FieldViolation

from ._errors import BackboneError


class Side(enum.StrEnum):
    """Direction of an order; compares equal to "buy" / "sell"."""

    BUY = "buy"
    SELL = "sell"
    UNSPECIFIED = "unspecified"


class OrderType(enum.StrEnum):
    """LIMIT rests at its price; MARKET trades at once down (sells) or up (buys) to its
    protection price and never rests."""

    LIMIT = "limit"
    MARKET = "market"
    UNSPECIFIED = "unspecified"


class TimeInForce(enum.StrEnum):
    """GTC rests until filled or cancelled; IOC trades what it can and expires the rest; FOK
    trades all at once or nothing; DAY rests like GTC until the end of the trading day."""

    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    DAY = "day"
    UNSPECIFIED = "unspecified"


class SelfTradePrevention(enum.StrEnum):
    """What happens when an order would trade with a resting order of its own account."""

    NONE = "none"
    CANCEL_RESTING = "cancel_resting"
    CANCEL_INCOMING = "cancel_incoming"
    CANCEL_BOTH = "cancel_both"
    UNSPECIFIED = "unspecified"


class CancelReason(enum.StrEnum):
    """Why an order's remainder was cancelled or expired (on CANCELLED and EXPIRED reports)."""

    REQUESTED = "requested"
    MASS_CANCEL = "mass_cancel"
    SELF_TRADE_PREVENTED = "self_trade_prevented"
    IOC_REMAINDER = "ioc_remainder"
    MARKET_REMAINDER = "market_remainder"
    FOK_UNFILLABLE = "fok_unfillable"
    DAY_EXPIRED = "day_expired"


class OrderStatus(enum.StrEnum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNSPECIFIED = "unspecified"

    @property
    def is_open(self) -> bool:
        """True while the order can still trade."""
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class InstrumentStatus(enum.StrEnum):
    """Whether an instrument takes orders (AdminService SetInstrumentStatus changes it)."""

    TRADING = "trading"
    HALTED = "halted"
    CLOSED = "closed"
    UNSPECIFIED = "unspecified"


class ExecutionType(enum.StrEnum):
    ACCEPTED = "accepted"
    TRADE = "trade"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    REPLACED = "replaced"
    UNSPECIFIED = "unspecified"


class LiquiditySide(enum.StrEnum):
    MAKER = "maker"
    TAKER = "taker"


_SIDES = {common_pb2.SIDE_BUY: Side.BUY, common_pb2.SIDE_SELL: Side.SELL}
_SIDE_VALUES: dict[str, int] = {"buy": common_pb2.SIDE_BUY, "sell": common_pb2.SIDE_SELL}
_ORDER_TYPES = {common_pb2.ORDER_TYPE_LIMIT: OrderType.LIMIT, common_pb2.ORDER_TYPE_MARKET: OrderType.MARKET}
_TIME_IN_FORCE = {
    common_pb2.TIME_IN_FORCE_GTC: TimeInForce.GTC,
    common_pb2.TIME_IN_FORCE_IOC: TimeInForce.IOC,
    common_pb2.TIME_IN_FORCE_FOK: TimeInForce.FOK,
    common_pb2.TIME_IN_FORCE_DAY: TimeInForce.DAY,
}
_SELF_TRADE_PREVENTIONS = {
    gateway_pb2.SELF_TRADE_PREVENTION_NONE: SelfTradePrevention.NONE,
    gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_RESTING: SelfTradePrevention.CANCEL_RESTING,
    gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_INCOMING: SelfTradePrevention.CANCEL_INCOMING,
    gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH: SelfTradePrevention.CANCEL_BOTH,
}
_CANCEL_REASONS = {
    common_pb2.CANCEL_REASON_REQUESTED: CancelReason.REQUESTED,
    common_pb2.CANCEL_REASON_MASS_CANCEL: CancelReason.MASS_CANCEL,
    common_pb2.CANCEL_REASON_SELF_TRADE_PREVENTED: CancelReason.SELF_TRADE_PREVENTED,
    common_pb2.CANCEL_REASON_IOC_REMAINDER: CancelReason.IOC_REMAINDER,
    common_pb2.CANCEL_REASON_MARKET_REMAINDER: CancelReason.MARKET_REMAINDER,
    common_pb2.CANCEL_REASON_FOK_UNFILLABLE: CancelReason.FOK_UNFILLABLE,
    common_pb2.CANCEL_REASON_DAY_EXPIRED: CancelReason.DAY_EXPIRED,
}
_STATUSES = {
    common_pb2.ORDER_STATUS_NEW: OrderStatus.NEW,
    common_pb2.ORDER_STATUS_PARTIALLY_FILLED: OrderStatus.PARTIALLY_FILLED,
    common_pb2.ORDER_STATUS_FILLED: OrderStatus.FILLED,
    common_pb2.ORDER_STATUS_CANCELLED: OrderStatus.CANCELLED,
    common_pb2.ORDER_STATUS_REJECTED: OrderStatus.REJECTED,
    common_pb2.ORDER_STATUS_EXPIRED: OrderStatus.EXPIRED,
}
_EXECUTION_TYPES = {
    common_pb2.EXECUTION_TYPE_ACCEPTED: ExecutionType.ACCEPTED,
    common_pb2.EXECUTION_TYPE_TRADE: ExecutionType.TRADE,
    common_pb2.EXECUTION_TYPE_CANCELLED: ExecutionType.CANCELLED,
    common_pb2.EXECUTION_TYPE_REJECTED: ExecutionType.REJECTED,
    common_pb2.EXECUTION_TYPE_EXPIRED: ExecutionType.EXPIRED,
    common_pb2.EXECUTION_TYPE_REPLACED: ExecutionType.REPLACED,
}
_LIQUIDITY = {
    common_pb2.LIQUIDITY_SIDE_MAKER: LiquiditySide.MAKER,
    common_pb2.LIQUIDITY_SIDE_TAKER: LiquiditySide.TAKER,
}


@dataclass(frozen=True)
class ExecutionReport:
    """One event in an order's life; the fill fields are set on trade reports only."""

    order: Order
    execution_type: ExecutionType
    trade_id: int | None = None
    last_price: Decimal | None = None
    last_quantity: Decimal | None = None
    last_fee: Decimal | None = None
    fee_asset: str | None = None
    liquidity_side: LiquiditySide | None = None
    reject_reason: RejectReason | None = None
    timestamp: datetime | None = None
    # The trading journal sequence that records the event (0 for a refusal): balances read
    # with at least this sequence reflect it (the clients send the highest they have seen).
    trading_sequence: int = 0
    # Why the remainder was cancelled or expired, on CANCELLED and EXPIRED reports.
    cancel_reason: CancelReason | None = None
    # The account's report number: 1, 2, 3... over its journaled reports of one trading shard (a
    # gap is a missed report); 0 on a report of nothing journaled (a refusal, a retried order's
    # answer).
    account_sequence: int = 0
    # The trading shard that journaled the report (account_sequence counts per shard); set on
    # StreamExecutions' reports.
    shard: str = ""


@dataclass(frozen=True)
class Order:
    """An order as the gateway reports it; `reports` holds what SubmitOrder produced at once."""

    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: Decimal
    quantity: Decimal
    filled_quantity: Decimal
    leaves_quantity: Decimal
    cancelled_quantity: Decimal
    average_price: Decimal | None
    status: OrderStatus
    created_at: datetime | None = None
    updated_at: datetime | None = None
    reports: tuple[ExecutionReport, ...] = ()
    # What expired (IOC, FOK and market remainders, DAY orders at the end of the day).
    expired_quantity: Decimal = Decimal(0)
    post_only: bool = False
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.UNSPECIFIED
    # A market buy's quote budget (None: it has none).
    quote_budget: Decimal | None = None

    @property
    def is_open(self) -> bool:
        return self.status.is_open


@dataclass(frozen=True)
class Balance:
    """One asset of an account: ledger total, reserved for open orders, available."""

    asset: str
    total: Decimal
    reserved: Decimal
    available: Decimal


@dataclass(frozen=True)
class Instrument:
    """A tradable symbol and its rules."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    max_quantity: Decimal
    max_price: Decimal
    maker_fee_bps: int
    taker_fee_bps: int
    # UNSPECIFIED when the gateway did not say (an older gateway).
    status: InstrumentStatus = InstrumentStatus.UNSPECIFIED


@dataclass(frozen=True)
class Account:
    """A new account and its API key (shown once; kept out of repr)."""

    account_id: str
    api_key: str = field(repr=False)


@dataclass(frozen=True)
class Asset:
    """An asset and its number of decimal places."""

    code: str
    scale: int


@dataclass(frozen=True)
class Deposit:
    """The outcome of a deposit: `created` is False when the deposit id was already posted."""

    deposit_id: str
    account_id: str
    asset: str
    created: bool
    balance: Decimal


@dataclass(frozen=True)
class PriceLevel:
    price: Decimal
    quantity: Decimal
    order_count: int


@dataclass(frozen=True)
class OrderBook:
    """Aggregated levels, best first: bids highest first, asks lowest first."""

    symbol: str
    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]


@dataclass(frozen=True)
class Fill:
    """One trade of one of this account's orders (a trade between two of its orders is two fills)."""

    trade_id: int
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity_side: LiquiditySide | None
    timestamp: datetime | None
    # The trading journal sequence that records the trade.
    trading_sequence: int


class FillFilters(TypedDict, total=False):
    """The filters of list_fills besides the symbol, as iter_fills takes them."""

    start_time: datetime | None
    end_time: datetime | None
    start_trade_id: int | None
    end_trade_id: int | None
    page_size: int


@dataclass(frozen=True)
class OrdersPage:
    """A page of open orders, oldest first; pass ``next_page_token`` for the next ("" on the last)."""

    orders: tuple[Order, ...]
    next_page_token: str


@dataclass(frozen=True)
class FillsPage:
    """A page of fills by trade id; pass ``next_page_token`` for the next ("" on the last).

    ``trading_sequence``: every fill journaled at or before it is included (within the filters);
    the fills are read from a projection that trails the journal by a moment.
    """

    fills: tuple[Fill, ...]
    next_page_token: str
    trading_sequence: int


# --- the order stream ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewOrder:
    """An order to send on an order stream (``stream.submit_many([...])``).

    ``side`` is "buy" or "sell" (or a :class:`Side`); ``price`` and
    ``quantity`` are exact Decimals on the instrument's tick and lot grid
    (a market order's price is its protection price, the worst it may trade
    at). ``order_type``, ``time_in_force``, ``post_only`` and
    ``self_trade_prevention`` are those of ``Client.submit_order``.
    A ``client_order_id`` is generated when none is given, so the same
    object sent again (after a broken stream) is the same order to the
    gateway: it answers a repeat with the order it placed the first time.
    ``tag`` is echoed on the result (up to 64 printable ASCII characters,
    no spaces).
    """

    symbol: str
    side: str | int
    price: Decimal | None
    quantity: Decimal
    client_order_id: str = ""
    tag: str | None = None
    order_type: OrderType | str = OrderType.LIMIT
    time_in_force: TimeInForce | str | None = None
    post_only: bool = False
    self_trade_prevention: SelfTradePrevention | str | None = None
    quote_budget: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.client_order_id:
            object.__setattr__(self, "client_order_id", secrets.token_hex(16))


@dataclass(frozen=True)
class CancelOrder:
    """A cancel of an order's open quantity, to send on an order stream; ``tag`` as in NewOrder."""

    order_id: str
    tag: str | None = None


@dataclass(frozen=True)
class ReplaceOrder:
    """A replace of an open order's price and/or total quantity, to send on an order stream
    (None keeps the order's); ``tag`` as in NewOrder. Sent again, it changes nothing more: the
    gateway answers a replace to what the order already is with the order as it is."""

    order_id: str
    price: Decimal | None = None
    quantity: Decimal | None = None
    tag: str | None = None


OrderCommand: TypeAlias = NewOrder | CancelOrder | ReplaceOrder
"""A command of an order stream: a new order, a cancel or a replace."""


@dataclass(frozen=True)
class OrderResult:
    """The answer to one command of an order stream.

    ``error`` is None when the command was carried out (``order`` is then the
    order after it, ``reports`` what it produced at once); otherwise it is
    the :class:`BackboneError` the unary SubmitOrder / CancelOrder would have
    raised and ``order`` is None (``order_id`` names the order a refusal
    names, such as the one already holding a client_order_id, as
    ``error.metadata["order_id"]`` does). A command the stream could not get
    answered is failed here too: OUTCOME_UNKNOWN (it was sent; send it again
    with the same client_order_id and the gateway answers with the order if
    it was placed) or NOT_SENT (nothing was done).
    ``request_number`` (from 1) and ``index`` (from 0) say which request of
    the stream carried it (0 and 0 when it was never sent).
    """

    command: OrderCommand
    order: Order | None
    error: BackboneError | None
    reports: tuple[ExecutionReport, ...] = ()
    request_number: int = 0
    index: int = 0

    @property
    def ok(self) -> bool:
        """True when the command was carried out."""
        return self.error is None

    @property
    def tag(self) -> str | None:
        """The command's tag."""
        return self.command.tag

    @property
    def client_order_id(self) -> str:
        """The new order's client_order_id (for a cancel: that of the cancelled order, when known)."""
        if isinstance(self.command, NewOrder):
            return self.command.client_order_id
        return self.order.client_order_id if self.order is not None else ""

    @property
    def order_id(self) -> str | None:
        """The order's id: the placed (or cancelled) order, or the one a refusal names."""
        if self.order is not None and self.order.order_id:
            return self.order.order_id
        if self.error is not None and self.error.metadata.get("order_id"):
            return self.error.metadata["order_id"]
        if isinstance(self.command, CancelOrder):
            return self.command.order_id
        return None

    def order_or_raise(self) -> Order:
        """The order after the command, or the command's refusal raised as BackboneError."""
        if self.error is not None:
            raise self.error
        assert self.order is not None  # a carried-out command always names its order
        return self.order


# --- proto -> model ---------------------------------------------------------------------------


def _decimal(text: str) -> Decimal:
    """A decimal string from the gateway ('' is zero)."""
    return Decimal(text) if text else Decimal(0)


def _optional_decimal(text: str) -> Decimal | None:
    return Decimal(text) if text else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    """A Timestamp as an aware UTC datetime (what ToDatetime(tzinfo=UTC) gives, in half the time)."""
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def order_from_proto(message: gateway_pb2.Order, reports: tuple[ExecutionReport, ...] = ()) -> Order:
    return Order(
        order_id=message.order_id,
        client_order_id=message.client_order_id,
        account_id=message.account_id,
        symbol=message.symbol,
        side=_SIDES.get(message.side, Side.UNSPECIFIED),
        type=_ORDER_TYPES.get(message.type, OrderType.UNSPECIFIED),
        time_in_force=_TIME_IN_FORCE.get(message.time_in_force, TimeInForce.UNSPECIFIED),
        price=_decimal(message.price),
        quantity=_decimal(message.quantity),
        filled_quantity=_decimal(message.filled_quantity),
        leaves_quantity=_decimal(message.leaves_quantity),
        cancelled_quantity=_decimal(message.cancelled_quantity),
        average_price=_optional_decimal(message.average_price),
        status=_STATUSES.get(message.status, OrderStatus.UNSPECIFIED),
        created_at=_datetime(message.created_at) if message.HasField("created_at") else None,
        updated_at=_datetime(message.updated_at) if message.HasField("updated_at") else None,
        reports=reports,
        expired_quantity=_decimal(message.expired_quantity),
        post_only=message.post_only,
        self_trade_prevention=_SELF_TRADE_PREVENTIONS.get(
            message.self_trade_prevention, SelfTradePrevention.UNSPECIFIED
        ),
        quote_budget=_optional_decimal(message.quote_budget),
    )


def report_from_proto(message: gateway_pb2.ExecutionReport, order: Order | None = None) -> ExecutionReport:
    """A report; `order`, when given, is its order already converted (the same message)."""
    return ExecutionReport(
        order=order if order is not None else order_from_proto(message.order),
        execution_type=_EXECUTION_TYPES.get(message.execution_type, ExecutionType.UNSPECIFIED),
        trade_id=int(message.trade_id) if message.trade_id else None,
        last_price=_optional_decimal(message.last_price),
        last_quantity=_optional_decimal(message.last_quantity),
        last_fee=_optional_decimal(message.last_fee),
        fee_asset=message.fee_asset or None,
        liquidity_side=_LIQUIDITY.get(message.liquidity_side),
        reject_reason=RejectReason.from_number(message.reject_reason) if message.reject_reason else None,
        timestamp=_datetime(message.timestamp) if message.HasField("timestamp") else None,
        trading_sequence=message.trading_sequence,
        cancel_reason=_CANCEL_REASONS.get(message.cancel_reason),
        account_sequence=message.account_sequence,
        shard=message.shard,
    )


def order_with_reports(
    message: gateway_pb2.Order, reports: Sequence[gateway_pb2.ExecutionReport]
) -> tuple[Order, tuple[ExecutionReport, ...]]:
    """An answer's order carrying its reports, converted once: a report whose order is the same
    message (the last one, usually) shares the converted Order."""
    order = order_from_proto(message)
    converted = tuple(
        report_from_proto(report, order if report.order == message else None) for report in reports
    )
    return (dataclasses.replace(order, reports=converted) if converted else order), converted


def submitted_order_from_proto(message: gateway_pb2.SubmitOrderResponse) -> Order:
    """The order of a SubmitOrderResponse, carrying its reports."""
    return order_with_reports(message.order, message.reports)[0]


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a numeric status (UNKNOWN for a number gRPC does not define)."""
    return _STATUS_CODES.get(number, grpc.StatusCode.UNKNOWN)


def command_error(message: gateway_pb2.OrderCommandResult) -> BackboneError:
    """The BackboneError the unary call would have raised for a refused command."""
    violations: tuple[FieldViolation, ...] = ()
    if message.field:
        prefix = f"{message.field}: "
        text = message.message
        description = text[len(prefix) :] if text.startswith(prefix) else text
        violations = (FieldViolation(message.field, description),)
    metadata = {"order_id": message.order.order_id} if message.order.order_id else {}
    code = status_code(message.code)
    return BackboneError(
        code,
        RejectReason.from_number(message.reason),
        message.message or code.name,
        violations,
        metadata,
    )


def order_result_from_proto(command: OrderCommand, message: gateway_pb2.OrderCommandResult) -> OrderResult:
    """An OrderCommandResult as the SDK shows it, for the command it answers."""
    if message.code != 0:
        # A refusal names an order (the holder of a client_order_id, one whose outcome is
        # unknown) by id only: it is in error.metadata["order_id"] and OrderResult.order_id.
        return OrderResult(
            command=command,
            order=None,
            error=command_error(message),
            request_number=message.request_number,
            index=message.index,
        )
    order: Order | None = None
    reports: tuple[ExecutionReport, ...] = ()
    if message.HasField("order"):
        order, reports = order_with_reports(message.order, message.reports)
    error = None
    if order is None:
        error = BackboneError(
            grpc.StatusCode.INTERNAL,
            RejectReason.PROTOCOL_ERROR,
            "the gateway answered the command as carried out but named no order; "
            "call GetOrder (or send it again with the same client_order_id) to learn its state",
        )
    return OrderResult(
        command=command,
        order=order,
        error=error,
        reports=reports,
        request_number=message.request_number,
        index=message.index,
    )


def orders_page_from_proto(message: gateway_pb2.ListOrdersResponse) -> OrdersPage:
    return OrdersPage(tuple(order_from_proto(order) for order in message.orders), message.next_page_token)


def fill_from_proto(message: gateway_pb2.Fill) -> Fill:
    return Fill(
        trade_id=int(message.trade_id),
        order_id=message.order_id,
        client_order_id=message.client_order_id,
        account_id=message.account_id,
        symbol=message.symbol,
        side=_SIDES.get(message.side, Side.UNSPECIFIED),
        price=_decimal(message.price),
        quantity=_decimal(message.quantity),
        fee=_decimal(message.fee),
        fee_asset=message.fee_asset,
        liquidity_side=_LIQUIDITY.get(message.liquidity_side),
        timestamp=_datetime(message.timestamp) if message.HasField("timestamp") else None,
        trading_sequence=message.trading_sequence,
    )


def fills_page_from_proto(message: gateway_pb2.ListFillsResponse) -> FillsPage:
    return FillsPage(
        tuple(fill_from_proto(fill) for fill in message.fills),
        message.next_page_token,
        message.trading_sequence,
    )


def balance_from_proto(message: gateway_pb2.Balance) -> Balance:
    return Balance(
        asset=message.asset,
        total=_decimal(message.total),
        reserved=_decimal(message.reserved),
        available=_decimal(message.available),
    )


def balances_from_proto(message: gateway_pb2.GetBalancesResponse) -> dict[str, Balance]:
    return {balance.asset: balance_from_proto(balance) for balance in message.balances}


def instrument_from_proto(message: gateway_pb2.Instrument) -> Instrument:
    return Instrument(
        symbol=message.symbol,
        base_asset=message.base_asset,
        quote_asset=message.quote_asset,
        tick_size=_decimal(message.tick_size),
        lot_size=_decimal(message.lot_size),
        min_quantity=_decimal(message.min_quantity),
        max_quantity=_decimal(message.max_quantity),
        max_price=_decimal(message.max_price),
        maker_fee_bps=message.maker_fee_bps,
        taker_fee_bps=message.taker_fee_bps,
        status=_INSTRUMENT_STATUSES.get(message.status, InstrumentStatus.UNSPECIFIED),
    )


def order_book_from_proto(message: gateway_pb2.GetOrderBookResponse) -> OrderBook:
    def level(item: gateway_pb2.PriceLevel) -> PriceLevel:
        return PriceLevel(_decimal(item.price), _decimal(item.quantity), item.order_count)

    return OrderBook(
        symbol=message.symbol,
        bids=tuple(level(item) for item in message.bids),
        asks=tuple(level(item) for item in message.asks),
    )


# --- arguments -> request fields ----------------------------------------------------------------


def _local_error(field_name: str, reason: RejectReason, description: str) -> BackboneError:
    return BackboneError.invalid_argument(field_name, reason, description)


# The reason the gateway gives for each decimal field, so a local refusal reads the same.
_DECIMAL_FIELD_REASONS = {
    "price": RejectReason.INVALID_PRICE,
    "quantity": RejectReason.INVALID_QUANTITY,
    "amount": RejectReason.INVALID_AMOUNT,
    "tick_size": RejectReason.INVALID_TICK_SIZE,
    "lot_size": RejectReason.INVALID_LOT_SIZE,
    "min_quantity": RejectReason.INVALID_MIN_QUANTITY,
    "max_quantity": RejectReason.INVALID_MAX_QUANTITY,
    "max_price": RejectReason.INVALID_MAX_PRICE,
    "quote_budget": RejectReason.INVALID_QUOTE_BUDGET,
}


def _invalid_reason(field_name: str) -> RejectReason:
    """INVALID_PRICE for "price" and so on: the reason the gateway gives for that field."""
    return _DECIMAL_FIELD_REASONS[field_name]


def side_value(side: str | int) -> int:
    """common.v1 Side of "buy"/"sell" (any case), a Side, or a common.v1 Side value."""
    if isinstance(side, str):
        value = _SIDE_VALUES.get(side.lower())
        if value is not None:
            return value
    elif isinstance(side, int) and not isinstance(side, bool) and side in _SIDES:
        return side
    raise _local_error("side", RejectReason.INVALID_SIDE, f"{side!r} is not 'buy' or 'sell'")


def decimal_text(value: Decimal | int | str, field_name: str, *, allow_zero: bool = False) -> str:
    """An exact, plain decimal string for the wire (no exponent), refusing NaN, inf and negatives.

    Floats are refused: they cannot hold most decimal prices exactly.
    """
    if isinstance(value, bool | float):
        raise TypeError(
            f"{field_name} must be a Decimal (or int or str), not {type(value).__name__}: "
            "floats cannot hold prices exactly"
        )
    if isinstance(value, str):
        # A string is held to the server's rule (backbone.money.parse_decimal): the whole string,
        # no whitespace, sign or exponent, so the SDK never sends what grpcurl would be refused for.
        try:
            number = parse_decimal(value)
        except MoneyError as error:
            raise _local_error(field_name, _invalid_reason(field_name), str(error)) from None
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    else:
        raise TypeError(f"{field_name} must be a Decimal, not {type(value).__name__}")
    reason = _invalid_reason(field_name)
    if not number.is_finite():
        raise _local_error(field_name, reason, f"{number} is not a finite number")
    if number < 0 or (number == 0 and number.is_signed()):
        if number != 0:
            raise _local_error(field_name, reason, f"{number} is negative")
        number = Decimal(0)
    if number == 0 and not allow_zero:
        raise _local_error(field_name, reason, "must be greater than zero")
    text = format(number, "f")
    if "." in text:
        whole, fraction = text.split(".")
        fraction = fraction.rstrip("0")
        text = f"{whole}.{fraction}" if fraction else whole
    return text


# --- requests ------------------------------------------------------------------------------------


def submit_order_request(
    symbol: str,
    side: str | int,
    price: Decimal | int | str | None,
    quantity: Decimal | int | str,
    client_order_id: str,
    *,
    order_type: OrderType | str = OrderType.LIMIT,
    time_in_force: TimeInForce | str | None = None,
    post_only: bool = False,
    self_trade_prevention: SelfTradePrevention | str | None = None,
    quote_budget: Decimal | int | str | None = None,
) -> gateway_pb2.SubmitOrderRequest:
    """The wire form of a new order. Unset time in force and self-trade prevention are left to
    the gateway (GTC for a limit order, IOC for a market order; its configured prevention); a
    None price or quote budget is left out (a budget-only market buy has no price)."""
    if not isinstance(post_only, bool):
        raise TypeError(f"post_only must be a bool, not {type(post_only).__name__}")
    return gateway_pb2.SubmitOrderRequest(
        client_order_id=client_order_id,
        symbol=symbol,
        side=side_value(side),  # type: ignore[arg-type]
        type=_term_value(order_type, _ORDER_TYPES, "type", RejectReason.UNSUPPORTED_ORDER_TYPE),  # type: ignore[arg-type]
        time_in_force=_term_value(  # type: ignore[arg-type]
            time_in_force, _TIME_IN_FORCE, "time_in_force", RejectReason.UNSUPPORTED_TIME_IN_FORCE
        ),
        price=_optional_decimal_text(price, "price"),
        quantity=decimal_text(quantity, "quantity"),
        quote_budget=_optional_decimal_text(quote_budget, "quote_budget"),
        post_only=post_only,
        self_trade_prevention=_term_value(  # type: ignore[arg-type]
            self_trade_prevention,
            _SELF_TRADE_PREVENTIONS,
            "self_trade_prevention",
            RejectReason.INVALID_ORDER,
        ),
    )


def _optional_decimal_text(value: Decimal | int | str | None, field_name: str) -> str:
    """decimal_text of a value that may be left out (None: the empty text, the field unset)."""
    return "" if value is None else decimal_text(value, field_name)


def replace_order_request(
    order_id: str, price: Decimal | int | str | None, quantity: Decimal | int | str | None
) -> gateway_pb2.ReplaceOrderRequest:
    """The wire form of a replace (None keeps the order's price or quantity)."""
    if not isinstance(order_id, str):
        raise TypeError(f"order_id must be a str, not {type(order_id).__name__}")
    return gateway_pb2.ReplaceOrderRequest(
        order_id=order_id,
        price=_optional_decimal_text(price, "price"),
        quantity=_optional_decimal_text(quantity, "quantity"),
    )


def replaced_order_from_proto(message: gateway_pb2.ReplaceOrderResponse) -> Order:
    """The order of a ReplaceOrderResponse, carrying its reports (none when nothing changed)."""
    return order_with_reports(message.order, message.reports)[0]


def _term_value(
    value: str | None, known: Mapping[Any, enum.StrEnum], field_name: str, reason: RejectReason
) -> int:
    """The wire value of an order term given as its SDK enum or name ("ioc", any case); 0 for None."""
    if value is None:
        return 0
    if isinstance(value, str):
        for number, member in known.items():
            if member == value.lower():
                return int(number)
    choices = ", ".join(repr(str(member)) for member in known.values())
    raise _local_error(field_name, reason, f"{value!r} is not one of {choices}")


def order_command_proto(command: OrderCommand) -> gateway_pb2.OrderCommand:
    """The wire form of a stream command; bad arguments are refused here, before sending."""
    if isinstance(command, NewOrder):
        submit = submit_order_request(
            command.symbol,
            command.side,
            command.price,
            command.quantity,
            command.client_order_id,
            order_type=command.order_type,
            time_in_force=command.time_in_force,
            post_only=command.post_only,
            self_trade_prevention=command.self_trade_prevention,
            quote_budget=command.quote_budget,
        )
        return gateway_pb2.OrderCommand(submit=submit, tag=command.tag or "")
    if isinstance(command, ReplaceOrder):
        replace = replace_order_request(command.order_id, command.price, command.quantity)
        return gateway_pb2.OrderCommand(replace=replace, tag=command.tag or "")
    if isinstance(command, CancelOrder):
        if not isinstance(command.order_id, str):
            raise TypeError(f"order_id must be a str, not {type(command.order_id).__name__}")
        cancel = gateway_pb2.CancelOrderRequest(order_id=command.order_id)
        return gateway_pb2.OrderCommand(cancel=cancel, tag=command.tag or "")
    raise TypeError(
        f"an order stream sends NewOrder, CancelOrder or ReplaceOrder, not {type(command).__name__}"
    )


def create_instrument_request(
    symbol: str,
    base_asset: str,
    quote_asset: str,
    *,
    tick_size: Decimal | int | str,
    lot_size: Decimal | int | str,
    max_quantity: Decimal | int | str,
    max_price: Decimal | int | str,
    min_quantity: Decimal | int | str | None = None,
    maker_fee_bps: int = 0,
    taker_fee_bps: int = 0,
) -> gateway_pb2.CreateInstrumentRequest:
    for name, bps in (("maker_fee_bps", maker_fee_bps), ("taker_fee_bps", taker_fee_bps)):
        if isinstance(bps, bool) or not isinstance(bps, int) or bps < 0:
            raise _local_error(
                name, RejectReason.INVALID_FEE, f"{bps!r} is not a whole number of basis points"
            )
    return gateway_pb2.CreateInstrumentRequest(
        symbol=symbol,
        base_asset=base_asset,
        quote_asset=quote_asset,
        tick_size=decimal_text(tick_size, "tick_size"),
        lot_size=decimal_text(lot_size, "lot_size"),
        min_quantity="" if min_quantity is None else decimal_text(min_quantity, "min_quantity"),
        max_quantity=decimal_text(max_quantity, "max_quantity"),
        max_price=decimal_text(max_price, "max_price"),
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
    )


def create_asset_request(code: str, scale: int) -> gateway_pb2.CreateAssetRequest:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 0:
        raise _local_error(
            "scale", RejectReason.INVALID_SCALE, f"{scale!r} is not a number of decimal places"
        )
    return gateway_pb2.CreateAssetRequest(code=code, scale=scale)


def deposit_request(
    account_id: str, asset: str, amount: Decimal | int | str, deposit_id: str
) -> gateway_pb2.DepositRequest:
    return gateway_pb2.DepositRequest(
        deposit_id=deposit_id,
        account_id=account_id,
        asset=asset,
        amount=decimal_text(amount, "amount"),
    )


def deposit_from_proto(request: gateway_pb2.DepositRequest, message: gateway_pb2.DepositResponse) -> Deposit:
    return Deposit(
        deposit_id=request.deposit_id,
        account_id=request.account_id,
        asset=request.asset,
        created=message.created,
        balance=_decimal(message.balance),
    )


def order_book_request(symbol: str, depth: int) -> gateway_pb2.GetOrderBookRequest:
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 1000:
        raise _local_error(
            "depth", RejectReason.INVALID_DEPTH, f"{depth!r} is not a number of levels from 1 to 1000"
        )
    return gateway_pb2.GetOrderBookRequest(symbol=symbol, depth=depth)


# The largest page the gateway gives (gateway/listing.py MAX_PAGE_SIZE).
MAX_PAGE_SIZE = 1000


def _page_size(page_size: int) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise _local_error(
            "page_size",
            RejectReason.INVALID_LIMIT,
            f"{page_size!r} is not a page size from 1 to {MAX_PAGE_SIZE}",
        )
    return page_size


def list_orders_request(symbol: str | None, page_size: int, page_token: str) -> gateway_pb2.ListOrdersRequest:
    return gateway_pb2.ListOrdersRequest(
        symbol=symbol or "", page_size=_page_size(page_size), page_token=page_token
    )


def _timestamp(value: datetime | None, field_name: str) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{field_name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _local_error(
            field_name, RejectReason.INVALID_RANGE, "must be timezone-aware (UTC, for example)"
        )
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def _trade_id_text(value: int | None, field_name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 1 << 63:
        raise _local_error(field_name, RejectReason.INVALID_TRADE_ID, f"{value!r} is not a positive trade id")
    return str(value)


def list_fills_request(
    symbol: str | None,
    *,
    start_time: datetime | None,
    end_time: datetime | None,
    start_trade_id: int | None,
    end_trade_id: int | None,
    page_size: int,
    page_token: str,
    min_trading_sequence: int,
) -> gateway_pb2.ListFillsRequest:
    return gateway_pb2.ListFillsRequest(
        symbol=symbol or "",
        start_time=_timestamp(start_time, "start_time"),
        end_time=_timestamp(end_time, "end_time"),
        start_trade_id=_trade_id_text(start_trade_id, "start_trade_id"),
        end_trade_id=_trade_id_text(end_trade_id, "end_trade_id"),
        page_size=_page_size(page_size),
        page_token=page_token,
        min_trading_sequence=min_trading_sequence,
    )


_INSTRUMENT_STATUSES = {
    common_pb2.INSTRUMENT_STATUS_TRADING: InstrumentStatus.TRADING,
    common_pb2.INSTRUMENT_STATUS_HALTED: InstrumentStatus.HALTED,
    common_pb2.INSTRUMENT_STATUS_CLOSED: InstrumentStatus.CLOSED,
}
_INSTRUMENT_STATUS_VALUES = {status.value: number for number, status in _INSTRUMENT_STATUSES.items()}


def set_instrument_status_request(
    symbol: str, status: InstrumentStatus | str
) -> gateway_pb2.SetInstrumentStatusRequest:
    """The request of set_instrument_status: "trading", "halted" or "closed" (any case)."""
    number = _INSTRUMENT_STATUS_VALUES.get(status.lower()) if isinstance(status, str) else None
    if number is None:
        raise _local_error(
            "status",
            RejectReason.INVALID_INSTRUMENT_STATUS,
            f"{status!r} is not 'trading', 'halted' or 'closed'",
        )
    return gateway_pb2.SetInstrumentStatusRequest(symbol=symbol, status=number)
