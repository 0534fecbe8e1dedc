"""Internal scaled messages -> public messages with decimal strings (pure, no I/O)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from google.protobuf import timestamp_pb2

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.money import InstrumentMath, format_minor
from backbone.trading.v1 import trading_pb2

# Extra decimal places an average price keeps beyond the tick's.
AVERAGE_PRICE_EXTRA_PLACES = 8


def timestamp_of(nanoseconds: int) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for nanoseconds since the epoch; None for 0 (unknown)."""
    if nanoseconds <= 0:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(nanoseconds)
    return stamp


def _places(increment: Decimal) -> int:
    exponent = increment.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def average_price_text(filled_notional_ticks_lots: int, filled_lots: int, tick: Decimal) -> str:
    """Volume-weighted average fill price; empty when nothing is filled.

    Exact when the division terminates within the tick's places plus
    AVERAGE_PRICE_EXTRA_PLACES, otherwise rounded half-even to that many
    places; trailing zeros beyond the tick's places are dropped.
    """
    if filled_lots <= 0:
        return ""
    places = _places(tick)
    with localcontext() as context:
        context.prec = 80
        value = Decimal(filled_notional_ticks_lots) * tick / Decimal(filled_lots)
        value = value.quantize(
            Decimal(1).scaleb(-(places + AVERAGE_PRICE_EXTRA_PLACES)), rounding=ROUND_HALF_EVEN
        )
        text = f"{value:.{places + AVERAGE_PRICE_EXTRA_PLACES}f}"
    if "." in text:
        whole, fraction = text.split(".")
        fraction = fraction.rstrip("0")
        if len(fraction) < places:
            fraction = fraction + "0" * (places - len(fraction))
        text = f"{whole}.{fraction}" if fraction else whole
    return text


def order_view(order: common_pb2.Order, instrument: common_pb2.Instrument) -> gateway_pb2.Order:
    """The public form of an internal order, prices and quantities as decimal strings."""
    math = InstrumentMath.of(instrument)
    view = gateway_pb2.Order(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        time_in_force=order.time_in_force,
        price=math.price_text(order.price_ticks),
        quantity=math.quantity_text(order.quantity_lots),
        filled_quantity=math.quantity_text(order.filled_lots),
        leaves_quantity=math.quantity_text(order.leaves_lots),
        cancelled_quantity=math.quantity_text(order.cancelled_lots),
        average_price=average_price_text(order.filled_notional_ticks_lots, order.filled_lots, math.tick),
        status=order.status,
    )
    created = timestamp_of(order.created_ns)
    if created is not None:
        view.created_at.CopyFrom(created)
    updated = timestamp_of(order.updated_ns)
    if updated is not None:
        view.updated_at.CopyFrom(updated)
    return view


def report_view(
    report: common_pb2.ExecutionReport, instrument: common_pb2.Instrument
) -> gateway_pb2.ExecutionReport:
    """The public form of an execution report; fill fields only on trade reports."""
    math = InstrumentMath.of(instrument)
    view = gateway_pb2.ExecutionReport(
        order=order_view(report.order, instrument),
        execution_type=report.execution_type,
        reject_reason=report.reject_reason,
        trading_sequence=report.journal_sequence,
    )
    if report.execution_type == common_pb2.EXECUTION_TYPE_TRADE:
        view.trade_id = str(report.trade_id)
        view.last_price = math.price_text(report.last_price_ticks)
        view.last_quantity = math.quantity_text(report.last_quantity_lots)
        view.last_fee = format_minor(report.last_fee, instrument.quote_scale)
        view.fee_asset = instrument.quote_asset
        view.liquidity_side = report.liquidity_side
    stamp = timestamp_of(report.timestamp_ns)
    if stamp is not None:
        view.timestamp.CopyFrom(stamp)
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
