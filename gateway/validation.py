"""Public requests -> internal scaled commands, every field checked (pure, no I/O).

Each check names the wrong field by its proto field name in a BadRequest
field violation; all wrong fields of a request are reported together, and
the error's reason is the first violation's reason. Nothing here touches
the network: callers look instruments and assets up first and pass them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import grpc

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.ids import DEFAULT_BOOK_DEPTH, IdRule, book_depth_problem, fee_bps_problem, scale_problem
from backbone.ids import symbol_problem as symbol_problem
from backbone.money import (
    INT64_MAX,
    InstrumentMath,
    MoneyError,
    derive_instrument,
    format_minor,
    is_multiple,
    minor_unit,
    parse_decimal,
    to_minor,
    to_units,
)
from backbone.reasons import RejectReason
from backbone.runtime.config import Settings
from backbone.runtime.errors import FieldViolation, ServiceError
from backbone.trading.v1 import trading_pb2

_SIDE_NAMES = {common_pb2.SIDE_BUY: "buy", common_pb2.SIDE_SELL: "sell"}


@dataclass(frozen=True)
class Violation:
    """One wrong field with the reason code it maps to."""

    field: str
    reason: RejectReason
    description: str


class Violations:
    """Collects field violations; `raise_if_any` turns them into one INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.items: list[Violation] = []

    def add(self, field: str, reason: RejectReason, description: str) -> None:
        self.items.append(Violation(field, reason, description))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise invalid(self.items)


# The reason of each instrument field (a derive_instrument MoneyError names one of them).
_FIELD_REASONS = {
    "symbol": RejectReason.INVALID_SYMBOL,
    "base_asset": RejectReason.INVALID_ASSET_CODE,
    "quote_asset": RejectReason.INVALID_ASSET_CODE,
    "base_scale": RejectReason.INVALID_SCALE,
    "quote_scale": RejectReason.INVALID_SCALE,
    "tick_size": RejectReason.INVALID_TICK_SIZE,
    "lot_size": RejectReason.INVALID_LOT_SIZE,
    "min_quantity": RejectReason.INVALID_MIN_QUANTITY,
    "max_quantity": RejectReason.INVALID_MAX_QUANTITY,
    "max_price": RejectReason.INVALID_MAX_PRICE,
    "maker_fee_bps": RejectReason.INVALID_FEE,
    "taker_fee_bps": RejectReason.INVALID_FEE,
}


def _invalid(field: str) -> RejectReason:
    """INVALID_TICK_SIZE for "tick_size" and so on: each instrument field has its own reason."""
    return _FIELD_REASONS.get(field, RejectReason.INVALID_INSTRUMENT)


def invalid(violations: Sequence[Violation]) -> ServiceError:
    """INVALID_ARGUMENT carrying every violation; reason of the first, message naming each."""
    message = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return ServiceError(
        grpc.StatusCode.INVALID_ARGUMENT,
        violations[0].reason,
        message,
        tuple(FieldViolation(v.field, v.description) for v in violations),
    )


def _check_id(field: str, rule: IdRule, value: str, violations: Violations) -> bool:
    """Record why `value` is not a valid id of `rule`'s kind; True when it is valid."""
    problem = rule.problem(value)
    if problem:
        violations.add(field, rule.reason, problem)
        return False
    return True


def _refuse_bad_id(field: str, rule: IdRule, value: str) -> None:
    violations = Violations()
    _check_id(field, rule, value, violations)
    violations.raise_if_any()


def _enum_name(enum: Any, value: int) -> str:
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)


def _grid_units(
    field: str,
    reason: RejectReason,
    text: str,
    increment: Decimal | None,
    increment_name: str,
    violations: Violations,
) -> int:
    """`text` as a positive whole number of `increment`s; 0 after recording what is wrong with it.

    Without an increment (the symbol is unknown) only the decimal's form is checked.
    """
    if increment is not None:
        units = _positive_units(text, increment)
        if units:
            return units  # the common case, remembered; otherwise say below what is wrong
    if not text:
        violations.add(field, reason, "is required")
        return 0
    try:
        value = parse_decimal(text)
    except MoneyError as error:
        violations.add(field, reason, str(error))
        return 0
    if increment is None:
        return 0
    if value <= 0:
        violations.add(field, reason, "must be greater than zero")
        return 0
    try:
        return to_units(value, increment)
    except MoneyError:
        violations.add(field, reason, f"{text} is not a multiple of the {increment_name} {increment:f}")
        return 0


@lru_cache(maxsize=65_536)
def _positive_units(text: str, increment: Decimal) -> int:
    """`text` as a whole number of `increment`s when it is a plain decimal above zero on the grid;
    0 otherwise. Remembered: an order flow repeats its prices and quantities, and parsing a
    decimal costs more than looking it up (a caller's distinct values only turn the cache over)."""
    try:
        value = parse_decimal(text)
        return to_units(value, increment) if value > 0 else 0
    except MoneyError:
        return 0


def _check_price(text: str, math: InstrumentMath | None, violations: Violations, *, market: bool) -> int:
    if market and not text:
        violations.add(
            "price",
            RejectReason.MARKET_PROTECTION_REQUIRED,
            "is required on a market order: its protection price, the worst price it may trade at",
        )
        return 0
    tick = math.tick if math else None
    ticks = _grid_units("price", RejectReason.INVALID_PRICE, text, tick, "tick size", violations)
    if math is None or ticks == 0:
        return 0
    if ticks > math.instrument.max_price_ticks:
        largest = math.price_text(math.instrument.max_price_ticks)
        violations.add("price", RejectReason.INVALID_PRICE, f"{text} is above the largest price {largest}")
        return 0
    return ticks


def _check_quantity(text: str, math: InstrumentMath | None, violations: Violations) -> int:
    lot = math.lot if math else None
    lots = _grid_units("quantity", RejectReason.INVALID_QUANTITY, text, lot, "lot size", violations)
    if math is None or lots == 0:
        return 0
    instrument = math.instrument
    if lots < instrument.min_quantity_lots:
        smallest = math.quantity_text(instrument.min_quantity_lots)
        violations.add(
            "quantity", RejectReason.INVALID_QUANTITY, f"{text} is below the smallest quantity {smallest}"
        )
        return 0
    if lots > instrument.max_quantity_lots:
        largest = math.quantity_text(instrument.max_quantity_lots)
        violations.add(
            "quantity", RejectReason.INVALID_QUANTITY, f"{text} is above the largest quantity {largest}"
        )
        return 0
    return lots


def validate_submit_order(
    request: gateway_pb2.SubmitOrderRequest,
    instrument: common_pb2.Instrument | None,
    *,
    account_id: str,
    order_id: str,
    defaults: OrderDefaults | None = None,
) -> trading_pb2.NewOrder:
    """Check every field of a public order and convert it to trading's scaled NewOrder.

    `instrument` is the reference data of `request.symbol`, or None when the
    symbol is unknown; `defaults` what the gateway's configuration decides
    (Backends.order_defaults; None: the settings' defaults). Raises ServiceError(INVALID_ARGUMENT)
    naming every wrong field.
    """
    violations = Violations()
    _check_id("client_order_id", ids.CLIENT_ORDER_ID, request.client_order_id, violations)

    math: InstrumentMath | None = None
    symbol_ok = _check_id("symbol", ids.SYMBOL, request.symbol, violations)
    if symbol_ok and (instrument is None or instrument.symbol != request.symbol):
        violations.add(
            "symbol",
            RejectReason.UNKNOWN_SYMBOL,
            f"{request.symbol!r} is not a known instrument; ListInstruments lists them",
        )
    elif symbol_ok and instrument is not None:
        math = InstrumentMath.of(instrument)

    if request.side not in _SIDE_NAMES:
        description = (
            "is required: SIDE_BUY or SIDE_SELL"
            if request.side == common_pb2.SIDE_UNSPECIFIED
            else f"{_enum_name(common_pb2.Side, request.side)} is not SIDE_BUY or SIDE_SELL"
        )
        violations.add("side", RejectReason.INVALID_SIDE, description)

    order_type, time_in_force, post_only, self_trade_prevention = _check_terms(request, defaults, violations)
    market = order_type == common_pb2.ORDER_TYPE_MARKET
    quote_budget = _check_quote_budget(request, math, violations, market=market)
    if market and not request.price and request.quote_budget:
        price_ticks = 0  # a budget-only market buy: the budget is its protection
    else:
        price_ticks = _check_price(request.price, math, violations, market=market)
    quantity_lots = _check_quantity(request.quantity, math, violations)
    violations.raise_if_any()
    assert math is not None
    return trading_pb2.NewOrder(
        order_id=order_id,
        client_order_id=request.client_order_id,
        account_id=account_id,
        symbol=request.symbol,
        side=request.side,
        type=order_type,  # type: ignore[arg-type]
        time_in_force=time_in_force,  # type: ignore[arg-type]
        price_ticks=price_ticks,
        quantity_lots=quantity_lots,
        post_only=post_only,  # type: ignore[arg-type]
        self_trade_prevention=self_trade_prevention,  # type: ignore[arg-type]
        quote_budget=quote_budget,
    )


def _check_quote_budget(
    request: gateway_pb2.SubmitOrderRequest,
    math: InstrumentMath | None,
    violations: Violations,
    *,
    market: bool,
) -> int:
    """A market buy's quote budget in quote minor units (0 when none); recorded when it is on
    another kind of order, not a positive multiple of the quote asset's minor unit, or above the
    largest budget trading takes (what the instrument's largest order costs at its highest price)."""
    text = request.quote_budget
    if not text:
        return 0
    if not market or request.side != common_pb2.SIDE_BUY:
        violations.add(
            "quote_budget",
            RejectReason.INVALID_QUOTE_BUDGET,
            "only a market buy (type ORDER_TYPE_MARKET, side SIDE_BUY) may carry a quote budget",
        )
        return 0
    minor = minor_unit(math.instrument.quote_scale) if math else None
    quote_asset = math.instrument.quote_asset if math else "the quote asset"
    budget = _grid_units(
        "quote_budget",
        RejectReason.INVALID_QUOTE_BUDGET,
        text,
        minor,
        f"{quote_asset} minor unit",
        violations,
    )
    if math is None or budget == 0:
        return 0
    if budget > math.largest_quote_budget:
        largest = format_minor(math.largest_quote_budget, math.instrument.quote_scale)
        violations.add(
            "quote_budget", RejectReason.INVALID_QUOTE_BUDGET, f"{text} is above the largest budget {largest}"
        )
        return 0
    return budget


def validate_replace_texts(request: gateway_pb2.ReplaceOrderRequest) -> None:
    """What a replace's price and quantity must be whatever the order: at least one given, each
    given one a plain decimal above zero (bounded in size). Raises INVALID_ARGUMENT naming them."""
    violations = Violations()
    if not request.price and not request.quantity:
        violations.add("price", RejectReason.REQUIRED, "price or quantity (or both) is required")
        violations.add("quantity", RejectReason.REQUIRED, "price or quantity (or both) is required")
    for field, reason, text in (
        ("price", RejectReason.INVALID_PRICE, request.price),
        ("quantity", RejectReason.INVALID_QUANTITY, request.quantity),
    ):
        if not text:
            continue
        try:
            if parse_decimal(text) <= 0:
                violations.add(field, reason, "must be greater than zero")
        except MoneyError as error:
            violations.add(field, reason, str(error))
    violations.raise_if_any()


def validate_replace(
    request: gateway_pb2.ReplaceOrderRequest, order: common_pb2.Order, instrument: common_pb2.Instrument
) -> tuple[int, int]:
    """The (price in ticks, total quantity in lots) a replace of `order` asks for: an empty field
    keeps the order's (its price as it rests, its total quantity). Raises INVALID_ARGUMENT naming
    each wrong field: neither given, off the grid or out of the instrument's range."""
    validate_replace_texts(request)
    violations = Violations()
    math = InstrumentMath.of(instrument)
    price_ticks = (
        _check_price(request.price, math, violations, market=False) if request.price else order.price_ticks
    )
    quantity_lots = (
        _check_quantity(request.quantity, math, violations) if request.quantity else order.quantity_lots
    )
    violations.raise_if_any()
    return price_ticks, quantity_lots


_ORDER_TYPES = (common_pb2.ORDER_TYPE_LIMIT, common_pb2.ORDER_TYPE_MARKET)
_TIMES_IN_FORCE = (
    common_pb2.TIME_IN_FORCE_GTC,
    common_pb2.TIME_IN_FORCE_IOC,
    common_pb2.TIME_IN_FORCE_FOK,
    common_pb2.TIME_IN_FORCE_DAY,
)
# Times in force under which an order rests on the book (and so may be post-only).
_RESTING = (common_pb2.TIME_IN_FORCE_GTC, common_pb2.TIME_IN_FORCE_DAY)


def _check_terms(
    request: gateway_pb2.SubmitOrderRequest, defaults: OrderDefaults | None, violations: Violations
) -> tuple[int, int, int, int]:
    """The order's type, time in force, PostOnly and SelfTradePrevention as trading's command
    takes them, the unspecified ones filled in; each wrong field and combination recorded with
    the engine's reason where it has one (MARKET_ORDER_CANNOT_REST, INVALID_ORDER for post-only
    on IOC/FOK), so the gateway refuses it before risk reserves anything."""
    chosen = defaults or _SETTING_DEFAULTS
    order_type = request.type or common_pb2.ORDER_TYPE_LIMIT
    market = order_type == common_pb2.ORDER_TYPE_MARKET
    if order_type not in _ORDER_TYPES:
        violations.add(
            "type",
            RejectReason.UNSUPPORTED_ORDER_TYPE,
            f"{_enum_name(common_pb2.OrderType, request.type)} is not ORDER_TYPE_LIMIT or ORDER_TYPE_MARKET",
        )
    # A market order without a time in force is IOC: it never rests, and IOC is what a market
    # order means in every venue's API (FOK is the stricter choice a caller makes explicitly).
    unset = common_pb2.TIME_IN_FORCE_IOC if market else common_pb2.TIME_IN_FORCE_GTC
    time_in_force = request.time_in_force or unset
    if time_in_force not in _TIMES_IN_FORCE:
        violations.add(
            "time_in_force",
            RejectReason.UNSUPPORTED_TIME_IN_FORCE,
            f"{_enum_name(common_pb2.TimeInForce, request.time_in_force)} is not TIME_IN_FORCE_GTC, "
            "TIME_IN_FORCE_IOC, TIME_IN_FORCE_FOK or TIME_IN_FORCE_DAY",
        )
    elif market and time_in_force in _RESTING:
        violations.add(
            "time_in_force",
            RejectReason.MARKET_ORDER_CANNOT_REST,
            f"a market order never rests: send TIME_IN_FORCE_IOC or TIME_IN_FORCE_FOK, not "
            f"{_enum_name(common_pb2.TimeInForce, time_in_force)}",
        )
    post_only: int = common_pb2.POST_ONLY_UNSPECIFIED
    if request.post_only:
        if market:
            violations.add(
                "post_only", RejectReason.MARKET_ORDER_CANNOT_REST, "a market order cannot be post-only"
            )
        elif time_in_force in _TIMES_IN_FORCE and time_in_force not in _RESTING:
            violations.add(
                "post_only",
                RejectReason.INVALID_ORDER,
                f"a {_enum_name(common_pb2.TimeInForce, time_in_force)} order never rests, so it cannot "
                "be post-only; send TIME_IN_FORCE_GTC or TIME_IN_FORCE_DAY",
            )
        post_only = chosen.post_only
    stp = request.self_trade_prevention
    if stp == gateway_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED:
        self_trade_prevention = chosen.self_trade_prevention
    elif stp in _PUBLIC_STP:
        self_trade_prevention = _PUBLIC_STP[stp]
    else:
        violations.add(
            "self_trade_prevention",
            RejectReason.INVALID_ORDER,
            f"{_enum_name(gateway_pb2.SelfTradePrevention, stp)} is not a SelfTradePrevention value",
        )
        self_trade_prevention = common_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED
    return order_type, time_in_force, post_only, self_trade_prevention


# The public SelfTradePrevention -> trading's (whose UNSPECIFIED is "none": every order journaled
# before self-trade prevention existed), and back for the public view.
_PUBLIC_STP = {
    gateway_pb2.SELF_TRADE_PREVENTION_NONE: common_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED,
    gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_RESTING: common_pb2.SELF_TRADE_PREVENTION_CANCEL_RESTING,
    gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_INCOMING: common_pb2.SELF_TRADE_PREVENTION_CANCEL_INCOMING,
    gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH: common_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH,
}
PUBLIC_STP_OF = {internal: public for public, internal in _PUBLIC_STP.items()}
# BACKBONE_SELF_TRADE_PREVENTION and BACKBONE_POST_ONLY_MODE values -> trading's enums.
_STP_SETTINGS = {
    "none": common_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED,
    "cancel_resting": common_pb2.SELF_TRADE_PREVENTION_CANCEL_RESTING,
    "cancel_incoming": common_pb2.SELF_TRADE_PREVENTION_CANCEL_INCOMING,
    "cancel_both": common_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH,
}
_POST_ONLY_SETTINGS = {"reject": common_pb2.POST_ONLY_REJECT, "reprice": common_pb2.POST_ONLY_REPRICE}


@dataclass(frozen=True)
class OrderDefaults:
    """What the gateway's configuration decides for an order: the PostOnly a post-only order
    carries (BACKBONE_POST_ONLY_MODE) and the SelfTradePrevention of an order that does not
    choose one (BACKBONE_SELF_TRADE_PREVENTION). Both go on the command, so a replay of the
    journal never depends on configuration."""

    post_only: int = common_pb2.POST_ONLY_REJECT
    self_trade_prevention: int = common_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED

    @classmethod
    def of(cls, settings: Settings) -> OrderDefaults:
        post_only = _POST_ONLY_SETTINGS[settings.post_only_mode]
        return cls(post_only, _STP_SETTINGS[settings.self_trade_prevention])


# What the settings decide when left at their defaults (reject; no self-trade prevention).
_SETTING_DEFAULTS = OrderDefaults()


def validate_order_id(order_id: str) -> None:
    """An order id as the public API names it (see backbone.ids.ORDER_ID)."""
    _refuse_bad_id("order_id", ids.ORDER_ID, order_id)


def resolve_account(requested: str, authenticated: str) -> str:
    """The account a call acts on: empty means the key's own; a malformed one is
    INVALID_ARGUMENT, another well-formed one PERMISSION_DENIED."""
    if not requested or requested == authenticated:
        return authenticated
    _refuse_bad_id("account_id", ids.ACCOUNT_ID, requested)
    raise ServiceError(
        grpc.StatusCode.PERMISSION_DENIED,
        RejectReason.ACCOUNT_NOT_PERMITTED,
        f"this API key may only act on its own account; leave account_id empty or use {authenticated!r}",
    )


def book_depth(depth: int) -> int:
    """GetOrderBook depth: 0 means DEFAULT_BOOK_DEPTH; at most MAX_BOOK_DEPTH (backbone.ids)."""
    if depth == 0:
        return DEFAULT_BOOK_DEPTH
    problem = book_depth_problem(depth)
    if problem:
        raise invalid([Violation("depth", RejectReason.INVALID_DEPTH, problem)])
    return depth


def validate_market_data_request(request: gateway_pb2.StreamMarketDataRequest) -> tuple[list[str], int]:
    """The symbols (in the order asked) and the depth (0 means DEFAULT_MARKET_DATA_DEPTH) of a
    StreamMarketData request; INVALID_ARGUMENT naming each wrong field."""
    violations = Violations()
    symbols = list(request.symbols)
    if not symbols:
        violations.add("symbols", RejectReason.REQUIRED, "name at least one symbol")
    elif len(symbols) > ids.MAX_MARKET_DATA_SYMBOLS:
        violations.add(
            "symbols",
            RejectReason.INVALID_SYMBOL,
            f"at most {ids.MAX_MARKET_DATA_SYMBOLS} symbols on one stream, got {len(symbols)}",
        )
    else:
        seen: set[str] = set()
        for index, symbol in enumerate(symbols):
            field = f"symbols[{index}]"
            if _check_id(field, ids.SYMBOL, symbol, violations) and symbol in seen:
                violations.add(field, RejectReason.INVALID_SYMBOL, f"{symbol!r} is named twice")
            seen.add(symbol)
    depth = request.depth or ids.DEFAULT_MARKET_DATA_DEPTH
    problem = ids.market_data_depth_problem(depth)
    if problem:
        violations.add("depth", RejectReason.INVALID_DEPTH, problem)
    violations.raise_if_any()
    return symbols, depth


def validate_symbol_field(symbol: str) -> None:
    """A symbol field of a read request: present and well formed."""
    _refuse_bad_id("symbol", ids.SYMBOL, symbol)


# --- admin requests -------------------------------------------------------------------------


def validate_create_asset(request: gateway_pb2.CreateAssetRequest) -> None:
    violations = Violations()
    _check_id("code", ids.ASSET_CODE, request.code, violations)
    problem = scale_problem(request.scale)
    if problem:
        violations.add("scale", RejectReason.INVALID_SCALE, problem)
    violations.raise_if_any()


@dataclass(frozen=True)
class InstrumentFields:
    """The parsed decimals of a CreateInstrumentRequest."""

    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    max_quantity: Decimal
    max_price: Decimal


def _parse_positive(
    request: gateway_pb2.CreateInstrumentRequest, field: str, violations: Violations, *, optional: bool
) -> Decimal:
    text: str = getattr(request, field)
    if not text:
        if not optional:
            violations.add(field, _invalid(field), "is required")
        return Decimal(0)
    try:
        value = parse_decimal(text)
    except MoneyError as error:
        violations.add(field, _invalid(field), str(error))
        return Decimal(0)
    if value <= 0:
        violations.add(field, _invalid(field), "must be greater than zero")
        return Decimal(0)
    return value


def validate_create_instrument(request: gateway_pb2.CreateInstrumentRequest) -> InstrumentFields:
    """Check the fields that need no asset look-up; returns the parsed decimals."""
    violations = Violations()
    _check_id("symbol", ids.SYMBOL, request.symbol, violations)
    for field in ("base_asset", "quote_asset"):
        _check_id(field, ids.ASSET_CODE, getattr(request, field), violations)
    if request.base_asset and request.base_asset == request.quote_asset:
        violations.add("quote_asset", RejectReason.INVALID_ASSET_CODE, "must differ from base_asset")
    tick = _parse_positive(request, "tick_size", violations, optional=False)
    lot = _parse_positive(request, "lot_size", violations, optional=False)
    minimum = _parse_positive(request, "min_quantity", violations, optional=True)
    maximum = _parse_positive(request, "max_quantity", violations, optional=False)
    max_price = _parse_positive(request, "max_price", violations, optional=False)
    if lot > 0:
        for field, value in (("min_quantity", minimum), ("max_quantity", maximum)):
            if value > 0 and not is_multiple(value, lot):
                violations.add(field, _invalid(field), f"{value:f} is not a multiple of lot_size {lot:f}")
    if tick > 0 and max_price > 0 and not is_multiple(max_price, tick):
        violations.add(
            "max_price",
            RejectReason.INVALID_MAX_PRICE,
            f"{max_price:f} is not a multiple of tick_size {tick:f}",
        )
    for field in ("maker_fee_bps", "taker_fee_bps"):
        problem = fee_bps_problem(getattr(request, field))
        if problem:
            violations.add(field, RejectReason.INVALID_FEE, problem)
    violations.raise_if_any()
    return InstrumentFields(tick, lot, minimum, maximum, max_price)


def build_instrument(
    request: gateway_pb2.CreateInstrumentRequest,
    fields: InstrumentFields,
    *,
    base_scale: int,
    quote_scale: int,
) -> common_pb2.Instrument:
    """The full internal instrument; a grid that does not fit the assets is INVALID_ARGUMENT."""
    try:
        return derive_instrument(
            symbol=request.symbol,
            base_asset=request.base_asset,
            quote_asset=request.quote_asset,
            base_scale=base_scale,
            quote_scale=quote_scale,
            tick_size=fields.tick_size,
            lot_size=fields.lot_size,
            min_quantity=fields.min_quantity,
            max_quantity=fields.max_quantity,
            max_price=fields.max_price,
            maker_fee_bps=request.maker_fee_bps,
            taker_fee_bps=request.taker_fee_bps,
        )
    except MoneyError as error:
        field = error.field or "tick_size"
        raise invalid([Violation(field, _invalid(field), str(error))]) from None


def validate_account_id_field(account_id: str, *, field: str = "account_id") -> None:
    _refuse_bad_id(field, ids.ACCOUNT_ID, account_id)


def validate_deposit(request: gateway_pb2.DepositRequest) -> None:
    """Checks of a deposit that need no asset look-up (the amount is checked with its scale)."""
    violations = Violations()
    _check_id("deposit_id", ids.DEPOSIT_ID, request.deposit_id, violations)
    _check_id("account_id", ids.ACCOUNT_ID, request.account_id, violations)
    _check_id("asset", ids.ASSET_CODE, request.asset, violations)
    if not request.amount:
        violations.add("amount", RejectReason.INVALID_AMOUNT, "is required")
    else:
        try:
            parse_decimal(request.amount)
        except MoneyError as error:
            violations.add("amount", RejectReason.INVALID_AMOUNT, str(error))
    violations.raise_if_any()


def deposit_amount(text: str, scale: int) -> int:
    """A deposit amount in minor units: positive, within the asset's scale, within int64."""
    try:
        value = parse_decimal(text)
    except MoneyError as error:
        raise invalid([Violation("amount", RejectReason.INVALID_AMOUNT, str(error))]) from None
    try:
        minor = to_minor(value, scale)
    except MoneyError:
        raise invalid(
            [Violation("amount", RejectReason.INVALID_AMOUNT, f"{text} has more than {scale} decimal places")]
        ) from None
    if minor <= 0:
        raise invalid([Violation("amount", RejectReason.INVALID_AMOUNT, "must be greater than zero")])
    if minor > INT64_MAX:
        raise invalid([Violation("amount", RejectReason.INVALID_AMOUNT, f"{text} is too large")])
    return minor


def trade_id_problem(text: str) -> str | None:
    """Why `text` is not a trade id as the public API shows it (a positive whole number, at most
    2^63-1, digits only); None when it is one."""
    if text.isascii() and text.isdigit() and len(text) <= len(str(INT64_MAX)) and 0 < int(text) <= INT64_MAX:
        return None
    return f"{text[:40]!r} is not a trade id: a positive whole number such as 42"
