"""Exact money arithmetic: decimal strings at the edge, scaled integers inside.

A price is a whole number of ticks, a quantity a whole number of lots, an
amount a whole number of an asset's minor units (10^-scale). Conversions
happen once, at the gateway; nothing here ever touches a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, localcontext

from backbone.common.v1 import common_pb2

# Digits, an optional fraction; no sign, exponent, spaces or leading zeros.
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,29})(\.[0-9]{1,18})?$")
INT64_MAX = (1 << 63) - 1
BPS_DENOMINATOR = 10_000


class MoneyError(ValueError):
    """A value that cannot be an exact price, quantity or amount. The message says why."""


def parse_decimal(text: str) -> Decimal:
    """Parse a plain non-negative decimal string such as "101.25" exactly."""
    if not isinstance(text, str) or not text:
        raise MoneyError("is empty; expected a decimal number such as 101.25")
    if not _DECIMAL.match(text):
        raise MoneyError(
            f"{text[:40]!r} is not a plain decimal number "
            "(digits with an optional fraction, at most 18 decimal places; no sign or exponent)"
        )
    return Decimal(text)


def to_units(value: Decimal, increment: Decimal) -> int:
    """`value` as a whole number of `increment`s; refuses a value off the grid."""
    with localcontext() as context:
        context.prec = 80
        units, remainder = divmod(value, increment)
    if remainder != 0:
        raise MoneyError(f"{value:f} is not a multiple of {increment:f}")
    return int(units)


def format_units(units: int, increment: Decimal) -> str:
    """A whole number of `increment`s as a decimal string with the increment's places."""
    places = max(0, -int(increment.as_tuple().exponent))
    with localcontext() as context:
        context.prec = 80
        value = Decimal(units) * increment
        return f"{value:.{places}f}"


def minor_unit(scale: int) -> Decimal:
    """The minor unit of an asset with `scale` decimal places, e.g. 0.01 for scale 2."""
    return Decimal(1).scaleb(-scale)


def to_minor(value: Decimal, scale: int) -> int:
    """An amount in minor units; refuses more decimal places than the asset keeps."""
    try:
        return to_units(value, minor_unit(scale))
    except MoneyError:
        raise MoneyError(f"{value:f} has more than {scale} decimal places") from None


def format_minor(amount: int, scale: int) -> str:
    """Minor units as a decimal string with the asset's places, e.g. 12345 at 2 -> "123.45"."""
    return format_units(amount, minor_unit(scale))


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True)
class InstrumentMath:
    """The integer arithmetic of one instrument, shared by gateway, risk and trading."""

    instrument: common_pb2.Instrument
    tick: Decimal
    lot: Decimal

    @classmethod
    def of(cls, instrument: common_pb2.Instrument) -> InstrumentMath:
        return cls(instrument, Decimal(instrument.tick_size), Decimal(instrument.lot_size))

    @property
    def max_fee_bps(self) -> int:
        return max(self.instrument.maker_fee_bps, self.instrument.taker_fee_bps)

    def base_amount(self, lots: int) -> int:
        """Base minor units in `lots`."""
        return lots * self.instrument.base_minor_per_lot

    def quote_amount(self, price_ticks: int, lots: int) -> int:
        """Quote minor units of `lots` at `price_ticks`, before fees."""
        return price_ticks * lots * self.instrument.quote_minor_per_tick_lot

    @staticmethod
    def fee(quote_amount: int, fee_bps: int) -> int:
        """Fee on a quote amount, rounded down to the minor unit."""
        return quote_amount * fee_bps // BPS_DENOMINATOR

    def buy_reservation(self, price_ticks: int, lots: int) -> int:
        """Quote minor units a buy of `lots` at limit `price_ticks` holds: notional plus fee headroom.

        The headroom is rounded up while fees are rounded down, so for any
        fills at or better than the limit, reservation(L) - reservation(L - q)
        covers what q lots cost including their fee: a fill never needs more
        than the order held.
        """
        notional = self.quote_amount(price_ticks, lots)
        return notional + _ceil_div(notional * self.max_fee_bps, BPS_DENOMINATOR)

    def sell_reservation(self, lots: int) -> int:
        """Base minor units a sell of `lots` holds."""
        return self.base_amount(lots)

    def reservation(self, side: int, price_ticks: int, lots: int) -> tuple[str, int]:
        """(asset, minor units) an order of `side` holds while `lots` are open."""
        if side == common_pb2.SIDE_BUY:
            return self.instrument.quote_asset, self.buy_reservation(price_ticks, lots)
        if side == common_pb2.SIDE_SELL:
            return self.instrument.base_asset, self.sell_reservation(lots)
        raise MoneyError(f"side {side} is neither buy nor sell")

    def price_text(self, price_ticks: int) -> str:
        return format_units(price_ticks, self.tick)

    def quantity_text(self, lots: int) -> str:
        return format_units(lots, self.lot)


def derive_instrument(
    *,
    symbol: str,
    base_asset: str,
    quote_asset: str,
    base_scale: int,
    quote_scale: int,
    tick_size: Decimal,
    lot_size: Decimal,
    min_quantity: Decimal,
    max_quantity: Decimal,
    max_price: Decimal,
    maker_fee_bps: int,
    taker_fee_bps: int,
) -> common_pb2.Instrument:
    """Build an instrument, checking that its grid fits the assets' scales.

    One lot must be a whole number of base minor units, and one tick times
    one lot a whole number of quote minor units, so every trade converts to
    exact amounts. The largest order's notional must fit in 63 bits.
    Raises MoneyError naming what does not fit.
    """
    if tick_size <= 0:
        raise MoneyError("tick_size must be positive")
    if lot_size <= 0:
        raise MoneyError("lot_size must be positive")
    try:
        base_minor_per_lot = to_units(lot_size, minor_unit(base_scale))
    except MoneyError:
        raise MoneyError(
            f"lot_size {lot_size:f} is finer than {base_asset}'s {base_scale} decimal places"
        ) from None
    try:
        quote_minor_per_tick_lot = to_units(tick_size * lot_size, minor_unit(quote_scale))
    except MoneyError:
        raise MoneyError(
            f"tick_size x lot_size ({tick_size * lot_size:f}) is finer than "
            f"{quote_asset}'s {quote_scale} decimal places"
        ) from None
    min_lots = to_units(min_quantity, lot_size) if min_quantity else 1
    max_lots = to_units(max_quantity, lot_size)
    max_ticks = to_units(max_price, tick_size)
    if min_lots < 1:
        raise MoneyError("min_quantity must be at least one lot")
    if max_lots < min_lots:
        raise MoneyError("max_quantity must be at least min_quantity")
    if max_ticks < 1:
        raise MoneyError("max_price must be at least one tick")
    largest = max_ticks * max_lots * quote_minor_per_tick_lot
    headroom = largest + _ceil_div(largest * max(maker_fee_bps, taker_fee_bps), BPS_DENOMINATOR)
    if headroom > INT64_MAX or max_lots * base_minor_per_lot > INT64_MAX:
        raise MoneyError("max_price x max_quantity is too large for 64-bit amounts; lower one of them")
    return common_pb2.Instrument(
        symbol=symbol,
        base_asset=base_asset,
        quote_asset=quote_asset,
        base_scale=base_scale,
        quote_scale=quote_scale,
        tick_size=str(tick_size),
        lot_size=str(lot_size),
        min_quantity_lots=min_lots,
        max_quantity_lots=max_lots,
        max_price_ticks=max_ticks,
        base_minor_per_lot=base_minor_per_lot,
        quote_minor_per_tick_lot=quote_minor_per_tick_lot,
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
    )
