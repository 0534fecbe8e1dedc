"""Internal scaled messages -> public messages with decimal strings (pure, no I/O)."""

from __future__ import annotations

from decimal import Decimal

from google.protobuf import timestamp_pb2

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.ids import shard_of_order_id
from backbone.money import InstrumentMath, UnitsFormat, format_minor, minor_unit
from backbone.trading.v1 import trading_pb2
from gateway.validation import PUBLIC_STP_OF

# Extra decimal places an average price keeps beyond the tick's.
AVERAGE_PRICE_EXTRA_PLACES = 8


def timestamp_of(nanoseconds: int) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for nanoseconds since the epoch; None for 0 (unknown)."""
    if nanoseconds <= 0:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(nanoseconds)
    return stamp


def average_price_text(filled_notional_ticks_lots: int, filled_lots: int, tick: Decimal) -> str:
    """Volume-weighted average fill price; empty when nothing is filled.

    Exact when the division terminates within the tick's places plus
    AVERAGE_PRICE_EXTRA_PLACES, otherwise rounded half-even to that many
    places; trailing zeros beyond the tick's places are dropped.
    """
    return UnitsFormat(tick).average_text(filled_notional_ticks_lots, filled_lots, AVERAGE_PRICE_EXTRA_PLACES)


class _Formats:
    """One instrument's formatting, worked out once: its increments and fee asset."""

    __slots__ = ("fee", "fee_asset", "lot", "price", "quantity", "tick")

    def __init__(self, instrument: common_pb2.Instrument) -> None:
        math = InstrumentMath.of(instrument)
        self.tick = UnitsFormat(math.tick)
        self.lot = UnitsFormat(math.lot)
        self.fee = UnitsFormat(minor_unit(instrument.quote_scale))
        self.fee_asset = instrument.quote_asset
        self.price = self.tick.text
        self.quantity = self.lot.text


_FORMATS: dict[tuple[str, str, str, str, int], _Formats] = {}
_MAX_FORMATS = 4096


def _formats(instrument: common_pb2.Instrument) -> _Formats:
    """The formatting of `instrument`, cached by what it depends on (an instrument never changes)."""
    key = (
        instrument.symbol,
        instrument.tick_size,
        instrument.lot_size,
        instrument.quote_asset,
        instrument.quote_scale,
    )
    formats = _FORMATS.get(key)
    if formats is None:
        if len(_FORMATS) >= _MAX_FORMATS:
            _FORMATS.clear()
        formats = _FORMATS[key] = _Formats(instrument)
    return formats


def _set_time(stamp: timestamp_pb2.Timestamp, nanoseconds: int) -> None:
    if nanoseconds > 0:
        stamp.seconds, stamp.nanos = divmod(nanoseconds, 1_000_000_000)


def order_view(order: common_pb2.Order, instrument: common_pb2.Instrument) -> gateway_pb2.Order:
    """The public form of an internal order, prices and quantities as decimal strings."""
    return _order_view(order, _formats(instrument))


def _order_view(order: common_pb2.Order, formats: _Formats) -> gateway_pb2.Order:
    lot = formats.lot
    quantity, zero = lot.text, lot.zero
    filled, cancelled, expired = order.filled_lots, order.cancelled_lots, order.expired_lots
    view = gateway_pb2.Order(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        time_in_force=order.time_in_force,
        price=formats.price(order.price_ticks),
        quantity=quantity(order.quantity_lots),
        filled_quantity=quantity(filled) if filled else zero,
        leaves_quantity=quantity(order.leaves_lots),
        cancelled_quantity=quantity(cancelled) if cancelled else zero,
        expired_quantity=quantity(expired) if expired else zero,
        status=order.status,
        post_only=order.post_only != common_pb2.POST_ONLY_UNSPECIFIED,
        self_trade_prevention=PUBLIC_STP_OF.get(
            order.self_trade_prevention, gateway_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED
        ),
    )
    if order.quote_budget:
        view.quote_budget = formats.fee.text(order.quote_budget)  # quote minor units, as fees
    if filled > 0:
        view.average_price = formats.tick.average_text(
            order.filled_notional_ticks_lots, filled, AVERAGE_PRICE_EXTRA_PLACES
        )
    _set_time(view.created_at, order.created_ns)
    _set_time(view.updated_at, order.updated_ns)
    return view


def report_view(
    report: common_pb2.ExecutionReport, instrument: common_pb2.Instrument, default_shard: str
) -> gateway_pb2.ExecutionReport:
    """The public form of an execution report; fill fields only on trade reports. Its shard is
    the one its order id names (`default_shard` for an id made before sharding)."""
    formats = _formats(instrument)
    view = gateway_pb2.ExecutionReport(
        shard=shard_of_order_id(report.order.order_id) or default_shard,
        order=_order_view(report.order, formats),
        execution_type=report.execution_type,
        reject_reason=report.reject_reason,
        trading_sequence=report.journal_sequence,
        cancel_reason=report.cancel_reason,
        account_sequence=report.account_sequence,
    )
    if report.execution_type == common_pb2.EXECUTION_TYPE_TRADE:
        view.trade_id = str(report.trade_id)
        view.last_price = formats.price(report.last_price_ticks)
        view.last_quantity = formats.quantity(report.last_quantity_lots)
        view.last_fee = formats.fee.text(report.last_fee)
        view.fee_asset = formats.fee_asset
        view.liquidity_side = report.liquidity_side
    _set_time(view.timestamp, report.timestamp_ns)
    return view


def fill_view(fill: trading_pb2.Fill, instrument: common_pb2.Instrument) -> gateway_pb2.Fill:
    """The public form of a fill: price, quantity and fee as decimal strings."""
    formats = _formats(instrument)
    view = gateway_pb2.Fill(
        trade_id=str(fill.trade_id),
        order_id=fill.order_id,
        client_order_id=fill.client_order_id,
        account_id=fill.account_id,
        symbol=fill.symbol,
        side=fill.side,
        price=formats.price(fill.price_ticks),
        quantity=formats.quantity(fill.quantity_lots),
        fee=formats.fee.text(fill.fee),
        fee_asset=formats.fee_asset,
        liquidity_side=fill.liquidity_side,
        trading_sequence=fill.sequence,
    )
    _set_time(view.timestamp, fill.timestamp_ns)
    return view


def instrument_view(instrument: common_pb2.Instrument) -> gateway_pb2.Instrument:
    """The public form of an instrument: its rules as decimal strings."""
    math = InstrumentMath.of(instrument)
    return gateway_pb2.Instrument(
        symbol=instrument.symbol,
        base_asset=instrument.base_asset,
        quote_asset=instrument.quote_asset,
        tick_size=instrument.tick_size,
        lot_size=instrument.lot_size,
        min_quantity=math.quantity_text(instrument.min_quantity_lots),
        max_quantity=math.quantity_text(instrument.max_quantity_lots),
        max_price=math.price_text(instrument.max_price_ticks),
        maker_fee_bps=instrument.maker_fee_bps,
        taker_fee_bps=instrument.taker_fee_bps,
        status=instrument.status,
    )


def book_view(
    book: trading_pb2.GetOrderBookResponse, instrument: common_pb2.Instrument
) -> gateway_pb2.GetOrderBookResponse:
    """The public form of an order book, levels best first."""
    math = InstrumentMath.of(instrument)

    def level(item: trading_pb2.PriceLevel) -> gateway_pb2.PriceLevel:
        return gateway_pb2.PriceLevel(
            price=math.price_text(item.price_ticks),
            quantity=math.quantity_text(item.quantity_lots),
            order_count=item.order_count,
        )

    return gateway_pb2.GetOrderBookResponse(
        symbol=book.symbol or instrument.symbol,
        bids=[level(item) for item in book.bids],
        asks=[level(item) for item in book.asks],
    )


def balance_view(asset: str, scale: int, total: int, reserved: int, available: int) -> gateway_pb2.Balance:
    """One asset's balance with the asset's decimal places (negative amounts keep their sign)."""
    return gateway_pb2.Balance(
        asset=asset,
        total=signed_minor_text(total, scale),
        reserved=signed_minor_text(reserved, scale),
        available=signed_minor_text(available, scale),
    )


def signed_minor_text(amount: int, scale: int) -> str:
    """Minor units as a decimal string, with a leading '-' when negative."""
    if amount < 0:
        return "-" + format_minor(-amount, scale)
    return format_minor(amount, scale)
