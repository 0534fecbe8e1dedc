"""Internal scaled messages -> public messages with decimal strings (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

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


class _Texts(dict[int, str]):
    """Texts of whole numbers of one increment, each worked out once: an order flow repeats its
    prices and quantities, and a look-up costs a fraction of formatting. Bounded over every
    instrument together (MAX_TEXTS_HELD): when full, every instrument's formats are forgotten (a
    caller's distinct values only turn them over)."""

    __slots__ = ("_format",)

    def __init__(self, format_units: Callable[[int], str]) -> None:
        super().__init__()
        self._format = format_units

    def __missing__(self, units: int) -> str:
        global _texts_held
        if _texts_held >= MAX_TEXTS_HELD:
            _FORMATS.clear()  # the other instruments' texts go with their formats
            self.clear()  # this one is still in use
            _texts_held = 0
        text = self[units] = self._format(units)
        _texts_held += 1
        return text


# Texts remembered at most, over every instrument's formats (about 100 bytes each).
MAX_TEXTS_HELD = 65_536
_texts_held = 0


class _Formats:
    """One instrument's formatting, worked out once: its increments and fee asset, and the texts
    of its prices (`prices[ticks]`), quantities (`quantities[lots]`) and fees."""

    __slots__ = ("fee", "fee_asset", "fees", "prices", "quantities", "tick")

    def __init__(self, instrument: common_pb2.Instrument) -> None:
        math = InstrumentMath.of(instrument)
        self.tick = UnitsFormat(math.tick)
        self.fee = UnitsFormat(minor_unit(instrument.quote_scale))
        self.fee_asset = instrument.quote_asset
        self.prices = _Texts(self.tick.text)
        self.quantities = _Texts(UnitsFormat(math.lot).text)
        self.fees = _Texts(self.fee.text)


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


def _time_fields(nanoseconds: int) -> dict[str, int]:
    """A Timestamp's fields for nanoseconds since the epoch (> 0), to build it in place."""
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    return {"seconds": seconds, "nanos": nanos}


def order_view(order: common_pb2.Order, instrument: common_pb2.Instrument) -> gateway_pb2.Order:
    """The public form of an internal order, prices and quantities as decimal strings."""
    return gateway_pb2.Order(**_order_fields(order, _formats(instrument)))


def _order_fields(order: common_pb2.Order, formats: _Formats) -> dict[str, Any]:
    """The public order's fields (a message field as its own fields): a message is built from them
    in place, where building it apart and handing it over would copy it (protobuf copies a
    message given to another's constructor or appended to a repeated field)."""
    quantities = formats.quantities
    filled = order.filled_lots
    fields: dict[str, Any] = {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "account_id": order.account_id,
        "symbol": order.symbol,
        "side": order.side,
        "type": order.type,
        "time_in_force": order.time_in_force,
        "price": formats.prices[order.price_ticks],
        "quantity": quantities[order.quantity_lots],
        "filled_quantity": quantities[filled],
        "leaves_quantity": quantities[order.leaves_lots],
        "cancelled_quantity": quantities[order.cancelled_lots],
        "expired_quantity": quantities[order.expired_lots],
        "status": order.status,
        "self_trade_prevention": PUBLIC_STP_OF.get(
            order.self_trade_prevention, gateway_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED
        ),
    }
    if order.post_only != common_pb2.POST_ONLY_UNSPECIFIED:  # else False, as unset
        fields["post_only"] = True
    if order.quote_budget:
        fields["quote_budget"] = formats.fees[order.quote_budget]  # quote minor units, as fees
    if filled > 0:
        fields["average_price"] = formats.tick.average_text(
            order.filled_notional_ticks_lots, filled, AVERAGE_PRICE_EXTRA_PLACES
        )
    created, updated = order.created_ns, order.updated_ns
    if created > 0:
        fields["created_at"] = _time_fields(created)
    if updated > 0:
        fields["updated_at"] = _time_fields(updated)
    return fields


def report_view(
    report: common_pb2.ExecutionReport, instrument: common_pb2.Instrument, default_shard: str
) -> gateway_pb2.ExecutionReport:
    """The public form of an execution report; fill fields only on trade reports. Its shard is
    the one its order id names (`default_shard` for an id made before sharding)."""
    return gateway_pb2.ExecutionReport(**_report_fields(report, _formats(instrument), default_shard))


def add_report_views(
    into: RepeatedCompositeFieldContainer[gateway_pb2.ExecutionReport],
    reports: Iterable[common_pb2.ExecutionReport],
    instrument: common_pb2.Instrument,
    default_shard: str,
) -> None:
    """Append the public form of each of `reports` (see `report_view`) to `into`, built in place."""
    formats = _formats(instrument)
    for report in reports:
        into.add(**_report_fields(report, formats, default_shard))


def _report_fields(
    report: common_pb2.ExecutionReport, formats: _Formats, default_shard: str
) -> dict[str, Any]:
    order = report.order
    execution_type = report.execution_type
    fields: dict[str, Any] = {
        "shard": shard_of_order_id(order.order_id) or default_shard,
        "order": _order_fields(order, formats),
        "execution_type": execution_type,
        "trading_sequence": report.journal_sequence,
        "account_sequence": report.account_sequence,
    }
    # Most reports have neither reason: a field left unset reads (and is sent) as the zero it
    # would be set to, and each field set costs the message's constructor.
    reject_reason, cancel_reason = report.reject_reason, report.cancel_reason
    if reject_reason:
        fields["reject_reason"] = reject_reason
    if cancel_reason:
        fields["cancel_reason"] = cancel_reason
    if execution_type == common_pb2.EXECUTION_TYPE_TRADE:
        fields["trade_id"] = str(report.trade_id)
        fields["last_price"] = formats.prices[report.last_price_ticks]
        fields["last_quantity"] = formats.quantities[report.last_quantity_lots]
        fields["last_fee"] = formats.fees[report.last_fee]
        fields["fee_asset"] = formats.fee_asset
        fields["liquidity_side"] = report.liquidity_side
    timestamp = report.timestamp_ns
    if timestamp > 0:
        fields["timestamp"] = _time_fields(timestamp)
    return fields


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
        price=formats.prices[fill.price_ticks],
        quantity=formats.quantities[fill.quantity_lots],
        fee=formats.fees[fill.fee],
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
