"""Exact money arithmetic: decimal strings at the edge, scaled integers inside.

A price is a whole number of ticks, a quantity a whole number of lots, an
amount a whole number of an asset's minor units (10^-scale). Conversions
happen once, at the gateway; nothing here ever touches a float.

A decimal text is bounded before any arithmetic (``parse_decimal``: at most
19 digits before the point and 18 after, see :mod:`backbone.ids`), and every
computation here runs in a context wide enough to be exact for bounded values
and trapping anything inexact, so no Decimal operation can round silently or
raise past this module: a value too large to handle is a MoneyError.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import (
    Context,
    Decimal,
    DecimalException,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import lru_cache

from backbone.common.v1 import common_pb2
from backbone.ids import (
    DECIMAL_PRECISION,
    INT64_MAX,
    MAX_DECIMAL_INTEGER_DIGITS,
    MAX_DECIMAL_LENGTH,
    MAX_DECIMAL_PLACES,
    fee_bps_problem,
    scale_problem,
)

__all__ = [
    "BPS_DENOMINATOR",
    "INT64_MAX",
    "InstrumentMath",
    "MoneyError",
    "UnitsFormat",
    "derive_instrument",
    "format_minor",
    "format_units",
    "from_units",
    "is_multiple",
    "minor_unit",
    "parse_decimal",
    "to_minor",
    "to_units",
]

BPS_DENOMINATOR = 10_000

# The shape of a plain decimal: digits, an optional fraction (sizes checked after a match).
_DECIMAL = re.compile(r"(?P<integer>[0-9]+)(?:\.(?P<fraction>[0-9]+))?")
_EXACT = Context(prec=DECIMAL_PRECISION, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])


class MoneyError(ValueError):
    """A value that cannot be an exact price, quantity or amount. The message says why.

    `field` names the request or instrument field it is about, when one is known.
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@contextmanager
def _exact(what: str = "the value") -> Iterator[None]:
    """Exact decimal arithmetic; anything that would round or overflow is a MoneyError."""
    try:
        with localcontext(_EXACT):
            yield
    except DecimalException:
        raise MoneyError(f"{what} is too large or too precise to compute exactly") from None


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def parse_decimal(text: str) -> Decimal:
    """Parse a plain non-negative decimal string such as "101.25" exactly.

    The whole string must be digits with an optional fraction: no sign,
    exponent, leading zero, whitespace (not even a trailing newline) or other
    character; at most 19 digits before the point and 18 after. Nothing is
    computed before these checks pass.
    """
    if not isinstance(text, str) or not text:
        raise MoneyError("is empty; expected a decimal number such as 101.25")
    if len(text) > MAX_DECIMAL_LENGTH:
        raise MoneyError(
            f"is {len(text)} characters long; a decimal number has at most "
            f"{MAX_DECIMAL_INTEGER_DIGITS} digits before the point and {MAX_DECIMAL_PLACES} after"
        )
    matched = _DECIMAL.fullmatch(text)
    if matched is None:
        raise MoneyError(
            f"{_shown(text)} is not a plain decimal number "
            "(digits with an optional fraction, such as 101.25; no sign, exponent, spaces or "
            "other characters)"
        )
    integer, fraction = matched["integer"], matched["fraction"] or ""
    if len(integer) > 1 and integer[0] == "0":
        raise MoneyError(f"{_shown(text)} has a leading zero")
    if len(integer) > MAX_DECIMAL_INTEGER_DIGITS:
        raise MoneyError(
            f"{_shown(text)} has {len(integer)} digits before the point; "
            f"at most {MAX_DECIMAL_INTEGER_DIGITS} are allowed"
        )
    if len(fraction) > MAX_DECIMAL_PLACES:
        raise MoneyError(
            f"{_shown(text)} has {len(fraction)} decimal places; at most {MAX_DECIMAL_PLACES} are allowed"
        )
    return Decimal(text)


def _scaled(value: Decimal) -> tuple[int, int]:
    """A finite decimal as (coefficient, exponent): value == coefficient x 10**exponent.

    Cached by the decimal's text, not its value: 0.5 and 0.50 are equal but keep
    different places.
    """
    return _scaled_text(str(value))


@lru_cache(maxsize=4096)
def _scaled_text(text: str) -> tuple[int, int]:
    sign, digits, exponent = Decimal(text).as_tuple()
    if not isinstance(exponent, int):
        raise MoneyError(f"{text} is not a finite number")
    coefficient = 0
    for digit in digits:
        coefficient = coefficient * 10 + digit
    return (-coefficient if sign else coefficient), exponent


def to_units(value: Decimal, increment: Decimal) -> int:
    """`value` as a whole number of `increment`s; refuses a value off the grid.

    Exact integer arithmetic on the two decimals' coefficients; a result of more
    than DECIMAL_PRECISION digits is refused as too large to compute exactly.
    """
    if increment <= 0:
        raise MoneyError(f"the increment {increment:f} is not positive")
    value_coefficient, value_exponent = _scaled(value)
    step_coefficient, step_exponent = _scaled(increment)
    shift = value_exponent - step_exponent
    if abs(shift) > DECIMAL_PRECISION:
        raise MoneyError(
            f"{value:f} in units of {increment:f} is too large or too precise to compute exactly"
        )
    units: int
    remainder: int
    if shift >= 0:
        units, remainder = divmod(value_coefficient * 10**shift, step_coefficient)
    else:
        units, remainder = divmod(value_coefficient, step_coefficient * 10**-shift)
    if remainder != 0:
        raise MoneyError(f"{value:f} is not a multiple of {increment:f}")
    if len(str(abs(units))) > DECIMAL_PRECISION:
        raise MoneyError(
            f"{value:f} in units of {increment:f} is too large or too precise to compute exactly"
        )
    return units


def is_multiple(value: Decimal, increment: Decimal) -> bool:
    """Whether `value` is a whole number of `increment`s (exactly; False when it cannot be computed)."""
    try:
        to_units(value, increment)
    except MoneyError:
        return False
    return True


def from_units(units: int, increment: Decimal) -> Decimal:
    """`units` whole `increment`s as an exact decimal."""
    with _exact(f"{units} x {increment:f}"):
        return Decimal(units) * increment


def format_units(units: int, increment: Decimal) -> str:
    """A whole number of `increment`s as a decimal string with the increment's places.

    Integer arithmetic only (the increment's coefficient and exponent are cached), so
    formatting the figures of an execution report costs no decimal context.
    """
    return _units_format(str(increment)).text(units)


@lru_cache(maxsize=4096)
def _units_format(text: str) -> UnitsFormat:
    return UnitsFormat(Decimal(text))


class UnitsFormat:
    """Whole numbers of one increment as decimal strings with the increment's places, the
    increment worked out once (for code that formats many figures of one instrument)."""

    __slots__ = ("_coefficient", "_places", "zero")

    def __init__(self, increment: Decimal) -> None:
        coefficient, exponent = _scaled(increment)
        self._coefficient = coefficient * 10 ** max(0, exponent)
        self._places = max(0, -exponent)
        self.zero = self.text(0)

    def text(self, units: int) -> str:
        """`units` increments, exactly, with the increment's places."""
        scaled = units * self._coefficient
        places = self._places
        if not places:
            return str(scaled)
        if scaled < 0:
            return "-" + self.text(-units)
        digits = str(scaled)
        if len(digits) <= places:
            digits = digits.rjust(places + 1, "0")
        return f"{digits[:-places]}.{digits[-places:]}"

    def average_text(self, total_units: int, count: int, extra_places: int) -> str:
        """`total_units` increments divided by `count`, rounded half-even to the increment's places
        plus `extra_places`, trailing zeros beyond the increment's places dropped; '' for no count.

        Integer arithmetic: the volume-weighted average price of a fill history, say, is exact
        whenever the division terminates within those places.
        """
        if count <= 0:
            return ""
        places = self._places
        kept = places + extra_places
        quotient, remainder = divmod(total_units * self._coefficient * 10**extra_places, count)
        twice = 2 * remainder
        if twice > count or (twice == count and quotient % 2):
            quotient += 1
        digits = str(quotient)
        if not kept:
            return digits
        if len(digits) <= kept:
            digits = digits.rjust(kept + 1, "0")
        whole, fraction = digits[:-kept], digits[-kept:].rstrip("0")
        if len(fraction) < places:
            fraction += "0" * (places - len(fraction))
        return f"{whole}.{fraction}" if fraction else whole


@lru_cache(maxsize=4096)
def _decimal(text: str) -> Decimal:
    """An instrument's increment text as a Decimal (cached: a handful of distinct values)."""
    return Decimal(text)


@lru_cache(maxsize=64)
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
        return cls(instrument, _decimal(instrument.tick_size), _decimal(instrument.lot_size))

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

    def budget_reservation(self, quote_budget: int) -> int:
        """Quote minor units a budget-only market buy holds: the budget plus the largest fee on it.

        Its trades' quote amounts sum to at most the budget, and each fee is rounded down at a
        rate of at most max_fee_bps, so their fees sum to at most the fee on the budget rounded up.
        """
        return quote_budget + _ceil_div(quote_budget * self.max_fee_bps, BPS_DENOMINATOR)

    @property
    def largest_quote_budget(self) -> int:
        """The largest quote budget an order may carry (trading's bound): what the largest order
        costs at the highest price, in quote minor units."""
        instrument = self.instrument
        return instrument.max_price_ticks * instrument.max_quantity_lots * instrument.quote_minor_per_tick_lot

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


def _units_of(field: str, value: Decimal, increment: Decimal, increment_name: str) -> int:
    try:
        return to_units(value, increment)
    except MoneyError:
        raise MoneyError(
            f"{field} {value:f} is not a multiple of {increment_name} {increment:f}", field
        ) from None


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
    """Build an instrument, checking that its grid fits the assets' scales and 64-bit amounts.

    One lot must be a whole number of base minor units, and one tick times
    one lot a whole number of quote minor units, so every trade converts to
    exact amounts. The largest quantity in base minor units, and the largest
    order's notional plus its fee headroom in quote minor units, must fit in
    63 bits (so must every tick, lot and minor-unit count derived from them).
    Raises MoneyError whose `field` names the field at fault.
    """
    for field, scale in (("base_scale", base_scale), ("quote_scale", quote_scale)):
        problem = scale_problem(scale)
        if problem:
            raise MoneyError(f"{field} {problem}", field)
    for field, bps in (("maker_fee_bps", maker_fee_bps), ("taker_fee_bps", taker_fee_bps)):
        problem = fee_bps_problem(bps)
        if problem:
            raise MoneyError(f"{field} {problem}", field)
    for field, value in (
        ("tick_size", tick_size),
        ("lot_size", lot_size),
        ("max_quantity", max_quantity),
        ("max_price", max_price),
    ):
        if not value.is_finite() or value <= 0:
            raise MoneyError(f"{field} must be positive", field)
    if not min_quantity.is_finite() or min_quantity < 0:
        raise MoneyError("min_quantity must not be negative", "min_quantity")
    try:
        base_minor_per_lot = to_units(lot_size, minor_unit(base_scale))
    except MoneyError:
        raise MoneyError(
            f"lot_size {lot_size:f} is finer than {base_asset}'s {base_scale} decimal places", "lot_size"
        ) from None
    with _exact("tick_size x lot_size"):
        tick_lot = tick_size * lot_size
    try:
        quote_minor_per_tick_lot = to_units(tick_lot, minor_unit(quote_scale))
    except MoneyError:
        raise MoneyError(
            f"tick_size x lot_size ({tick_lot:f}) is finer than {quote_asset}'s {quote_scale} decimal places",
            "tick_size",
        ) from None
    min_lots = _units_of("min_quantity", min_quantity, lot_size, "lot_size") if min_quantity else 1
    max_lots = _units_of("max_quantity", max_quantity, lot_size, "lot_size")
    max_ticks = _units_of("max_price", max_price, tick_size, "tick_size")
    if min_lots < 1:
        raise MoneyError("min_quantity must be at least one lot", "min_quantity")
    if max_lots < min_lots:
        raise MoneyError("max_quantity must be at least min_quantity", "max_quantity")
    if base_minor_per_lot > INT64_MAX:
        raise MoneyError(f"lot_size {lot_size:f} is too large for 64-bit amounts of {base_asset}", "lot_size")
    if quote_minor_per_tick_lot > INT64_MAX:
        raise MoneyError(
            f"tick_size x lot_size ({tick_lot:f}) is too large for 64-bit amounts of {quote_asset}",
            "tick_size",
        )
    if max_lots * base_minor_per_lot > INT64_MAX:
        raise MoneyError(
            f"max_quantity {max_quantity:f} is too large for 64-bit amounts of {base_asset}; lower it",
            "max_quantity",
        )
    largest = max_ticks * max_lots * quote_minor_per_tick_lot
    headroom = largest + _ceil_div(largest * max(maker_fee_bps, taker_fee_bps), BPS_DENOMINATOR)
    if headroom > INT64_MAX:
        raise MoneyError(
            f"max_price x max_quantity ({max_price:f} x {max_quantity:f}) plus fees is too large for "
            f"64-bit amounts of {quote_asset}; lower one of them",
            "max_price",
        )
    return common_pb2.Instrument(
        symbol=symbol,
        base_asset=base_asset,
        quote_asset=quote_asset,
        base_scale=base_scale,
        quote_scale=quote_scale,
        tick_size=f"{tick_size:f}",
        lot_size=f"{lot_size:f}",
        min_quantity_lots=min_lots,
        max_quantity_lots=max_lots,
        max_price_ticks=max_ticks,
        base_minor_per_lot=base_minor_per_lot,
        quote_minor_per_tick_lot=quote_minor_per_tick_lot,
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
    )
