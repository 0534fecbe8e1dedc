"""Exact money arithmetic: parsing at the edge and the reservation guarantee."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.ids import INT64_MAX, MAX_DECIMAL_INTEGER_DIGITS, MAX_DECIMAL_PLACES, MAX_FEE_BPS
from backbone.money import (
    InstrumentMath,
    MoneyError,
    UnitsFormat,
    derive_instrument,
    format_minor,
    format_units,
    from_units,
    is_multiple,
    parse_decimal,
    to_minor,
    to_units,
)
from tests.instruments import btc_usd


def btc_usd_math(maker_bps: int, taker_bps: int) -> InstrumentMath:
    return InstrumentMath.of(btc_usd(maker_fee_bps=maker_bps, taker_fee_bps=taker_bps))


@pytest.mark.parametrize(
    "text",
    [
        "-1",
        "1e5",
        "01",
        "00",
        "1.",
        ".5",
        "",
        " 1",
        "1 ",
        "NaN",
        "Infinity",
        "1,5",
        "0x10",
        "1_000",
        "1\n",  # a trailing newline: `$` would have matched before it, and Decimal() strips it
        "\n1",
        "1\r\n",
        "1\x00",
        "\t1",
        "1\u00a0",  # no-break space
        "\u0661",  # ARABIC-INDIC DIGIT ONE: Decimal() would read it as 1
        "\uff11",  # FULLWIDTH DIGIT ONE
        "1" + "0" * MAX_DECIMAL_INTEGER_DIGITS,  # 20 digits before the point
        "1" + "0" * 29,  # 10^29
        "9" * 10_000,
        "0." + "0" * MAX_DECIMAL_PLACES + "1",  # 19 places
        "1." + "0" * 100,
    ],
)
def test_parse_decimal_refuses_what_is_not_a_plain_decimal(text: str) -> None:
    with pytest.raises(MoneyError) as caught:
        parse_decimal(text)
    assert len(str(caught.value)) < 300  # a huge value is not echoed back whole


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "0.0",
        "10.50",
        "9" * MAX_DECIMAL_INTEGER_DIGITS,
        "0." + "0" * (MAX_DECIMAL_PLACES - 1) + "1",
        "9" * MAX_DECIMAL_INTEGER_DIGITS + "." + "9" * MAX_DECIMAL_PLACES,
    ],
)
def test_parse_decimal_accepts_the_edges_exactly(text: str) -> None:
    assert f"{parse_decimal(text):f}" == text


def test_parse_decimal_says_what_is_wrong() -> None:
    with pytest.raises(MoneyError, match="digits before the point"):
        parse_decimal("1" + "0" * 29)
    with pytest.raises(MoneyError, match="decimal places"):
        parse_decimal("0." + "1" * 19)
    with pytest.raises(MoneyError, match="leading zero"):
        parse_decimal("007")
    with pytest.raises(MoneyError, match=r"'1\\n'"):  # the newline is shown, escaped
        parse_decimal("1\n")


@given(st.text(max_size=50))
def test_parse_decimal_accepts_only_texts_it_reads_back_exactly(text: str) -> None:
    """Whatever is accepted is the very text, digit for digit: nothing stripped, rounded or reinterpreted."""
    try:
        value = parse_decimal(text)
    except MoneyError:
        return
    assert f"{value:f}" == text
    integer, _, fraction = text.partition(".")
    assert len(integer) <= MAX_DECIMAL_INTEGER_DIGITS and len(fraction) <= MAX_DECIMAL_PLACES
    assert text.isascii() and text.strip() == text


@given(
    integer=st.integers(0, 10**MAX_DECIMAL_INTEGER_DIGITS - 1),
    fraction=st.text("0123456789", max_size=MAX_DECIMAL_PLACES),
)
def test_parse_decimal_accepts_every_bounded_decimal(integer: int, fraction: str) -> None:
    text = f"{integer}.{fraction}" if fraction else str(integer)
    assert f"{parse_decimal(text):f}" == text


def test_arithmetic_on_huge_decimals_is_a_money_error_not_a_decimal_exception() -> None:
    with pytest.raises(MoneyError):
        to_units(Decimal("1e100"), Decimal("1e-100"))
    with pytest.raises(MoneyError):
        to_units(Decimal(1), Decimal(0))
    assert not is_multiple(Decimal("1e100"), Decimal("1e-100"))
    # The extremes of bounded decimals are exact (the default 28-digit context would raise or round).
    largest = parse_decimal("9" * 19 + "." + "9" * 18)
    finest = parse_decimal("0." + "0" * 17 + "1")
    assert to_units(largest, finest) == 10**37 - 1
    assert from_units(INT64_MAX, largest) == Decimal(f"{INT64_MAX * (10**37 - 1)}E-18")
    assert format_units(INT64_MAX, finest) == "9.223372036854775807"


def test_parse_decimal_is_exact() -> None:
    assert parse_decimal("0.1") + parse_decimal("0.2") == Decimal("0.3")
    assert parse_decimal("123456789012345678.123456789012345678") == Decimal(
        "123456789012345678.123456789012345678"
    )


def test_units_refuse_values_off_the_grid() -> None:
    assert to_units(Decimal("101.25"), Decimal("0.01")) == 10125
    with pytest.raises(MoneyError, match="not a multiple"):
        to_units(Decimal("101.255"), Decimal("0.01"))
    with pytest.raises(MoneyError, match="decimal places"):
        to_minor(Decimal("1.001"), 2)
    assert format_minor(12345, 2) == "123.45"
    assert format_minor(5, 0) == "5"


def test_instrument_grid_must_fit_the_asset_scales() -> None:
    with pytest.raises(MoneyError, match="finer than USD's 2 decimal places"):
        derive_instrument(
            symbol="BTC-USD", base_asset="BTC", quote_asset="USD", base_scale=8, quote_scale=2,
            tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"), min_quantity=Decimal(0),
            max_quantity=Decimal("1"), max_price=Decimal("10"), maker_fee_bps=0, taker_fee_bps=0,
        )  # fmt: skip
    with pytest.raises(MoneyError, match="64-bit"):
        derive_instrument(
            symbol="X-Y", base_asset="X", quote_asset="Y", base_scale=18, quote_scale=18,
            tick_size=Decimal("1"), lot_size=Decimal("1"), min_quantity=Decimal(0),
            max_quantity=Decimal("1000000"), max_price=Decimal("1000000"), maker_fee_bps=0, taker_fee_bps=0,
        )  # fmt: skip


def _derive(**changes: object) -> object:
    fields: dict[str, object] = dict(
        symbol="X-Y", base_asset="X", quote_asset="Y", base_scale=8, quote_scale=6,
        tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"), min_quantity=Decimal(0),
        max_quantity=Decimal("1000"), max_price=Decimal("1000000"), maker_fee_bps=10, taker_fee_bps=20,
    )  # fmt: skip
    fields.update(changes)
    return derive_instrument(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_price": Decimal(10) ** 29}, "max_price"),
        ({"max_quantity": Decimal(10) ** 29}, "max_quantity"),
        ({"max_price": Decimal("1000000.001")}, "max_price"),
        ({"max_quantity": Decimal("0.00001")}, "max_quantity"),
        ({"min_quantity": Decimal("0.00015")}, "min_quantity"),
        ({"min_quantity": Decimal("2000")}, "max_quantity"),
        ({"tick_size": Decimal(0)}, "tick_size"),
        ({"lot_size": Decimal("-1")}, "lot_size"),
        ({"lot_size": Decimal("NaN")}, "lot_size"),
        ({"lot_size": Decimal("0.000000001")}, "lot_size"),
        ({"tick_size": Decimal("0.0001")}, "tick_size"),
        ({"taker_fee_bps": MAX_FEE_BPS + 1}, "taker_fee_bps"),
        ({"quote_scale": 19}, "quote_scale"),
        ({"base_scale": 10**9}, "base_scale"),
    ],
)
def test_derive_instrument_names_the_field_at_fault(changes: dict[str, object], field: str) -> None:
    with pytest.raises(MoneyError) as caught:
        _derive(**changes)
    assert caught.value.field == field


def test_derive_instrument_writes_sizes_in_plain_notation() -> None:
    instrument = _derive(tick_size=Decimal("0.0000001"), lot_size=Decimal("10"), quote_scale=6, base_scale=0)
    assert instrument.tick_size == "0.0000001"  # type: ignore[attr-defined]
    assert parse_decimal(instrument.tick_size) == Decimal("0.0000001")  # type: ignore[attr-defined]


_BOUNDED = st.builds(
    lambda integer, places: Decimal(integer).scaleb(-places),
    st.integers(1, 10**MAX_DECIMAL_INTEGER_DIGITS - 1),
    st.integers(0, MAX_DECIMAL_PLACES),
)


@given(
    tick=_BOUNDED,
    lot=_BOUNDED,
    max_quantity=_BOUNDED,
    max_price=_BOUNDED,
    base_scale=st.integers(0, 18),
    quote_scale=st.integers(0, 18),
    fee=st.integers(0, MAX_FEE_BPS),
)
def test_derive_instrument_either_refuses_or_fits_int64(
    tick: Decimal,
    lot: Decimal,
    max_quantity: Decimal,
    max_price: Decimal,
    base_scale: int,
    quote_scale: int,
    fee: int,
) -> None:
    """Any bounded decimals: a MoneyError naming a field, or an instrument whose largest order fits."""
    try:
        instrument = _derive(
            tick_size=tick, lot_size=lot, max_quantity=max_quantity, max_price=max_price,
            base_scale=base_scale, quote_scale=quote_scale, maker_fee_bps=fee, taker_fee_bps=fee,
        )  # fmt: skip
    except MoneyError as error:
        assert error.field
        return
    math = InstrumentMath.of(instrument)  # type: ignore[arg-type]
    largest_lots, largest_ticks = math.instrument.max_quantity_lots, math.instrument.max_price_ticks
    assert 0 < math.buy_reservation(largest_ticks, largest_lots) <= INT64_MAX
    assert 0 < math.sell_reservation(largest_lots) <= INT64_MAX


@given(
    limit=st.integers(1, 100_000_000),
    improvement=st.integers(0, 100_000_000),
    fills=st.lists(st.integers(1, 10_000), min_size=1, max_size=20),
    maker_bps=st.integers(0, 1000),
    taker_bps=st.integers(0, 1000),
    rests=st.booleans(),
)
def test_buy_reservation_always_covers_its_fills(
    limit: int, improvement: int, fills: list[int], maker_bps: int, taker_bps: int, rests: bool
) -> None:
    """Whatever fills happen at or better than the limit, the held amount pays for them and their fees."""
    math = btc_usd_math(maker_bps, taker_bps)
    price = max(1, limit - improvement)
    fee_bps = maker_bps if rests else taker_bps
    leaves = sum(fills)
    held = math.buy_reservation(limit, leaves)
    spent = 0
    for quantity in fills:
        before = math.buy_reservation(limit, leaves)
        leaves -= quantity
        after = math.buy_reservation(limit, leaves)
        cost = math.quote_amount(price, quantity)
        cost += math.fee(cost, fee_bps)
        assert before - after >= cost
        spent += cost
    assert leaves == 0
    assert math.buy_reservation(limit, 0) == 0
    assert spent <= held


_INCREMENTS = st.builds(
    lambda digits, exponent: Decimal(digits).scaleb(exponent),
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=-MAX_DECIMAL_PLACES, max_value=3),
)


@given(st.integers(min_value=-INT64_MAX, max_value=INT64_MAX), _INCREMENTS)
def test_integer_formatting_equals_decimal_formatting(units: int, increment: Decimal) -> None:
    places = max(0, -int(increment.as_tuple().exponent))
    assert format_units(units, increment) == f"{Decimal(units) * increment:.{places}f}"


@given(st.integers(min_value=0, max_value=INT64_MAX), _INCREMENTS, st.integers(min_value=0, max_value=9))
def test_integer_units_equal_decimal_division(units: int, increment: Decimal, off: int) -> None:
    with localcontext() as context:
        context.prec = 100  # exact: the sums below have at most 45 digits
        value = Decimal(units) * increment
        nudged = value + increment / 10 * off
    assert to_units(value, increment) == units
    if off:
        with pytest.raises(MoneyError):
            to_units(nudged, increment)


def _average_by_decimal(total_units: int, count: int, increment: Decimal, extra_places: int) -> str:
    """The reference: Decimal division at high precision, quantized half-even, zeros trimmed."""
    places = max(0, -int(increment.as_tuple().exponent))
    with localcontext() as context:
        context.prec = 120
        value = (Decimal(total_units) * increment / Decimal(count)).quantize(
            Decimal(1).scaleb(-(places + extra_places)), rounding=ROUND_HALF_EVEN
        )
        text = f"{value:.{places + extra_places}f}"
    if "." in text:
        whole, fraction = text.split(".")
        fraction = fraction.rstrip("0").ljust(places, "0")
        text = f"{whole}.{fraction}" if fraction else whole
    return text


@given(
    st.integers(min_value=0, max_value=INT64_MAX) | st.integers(min_value=0, max_value=1000),
    st.integers(min_value=1, max_value=INT64_MAX) | st.integers(min_value=1, max_value=64),
    _INCREMENTS,
    st.integers(min_value=0, max_value=12),
)
def test_integer_average_equals_decimal_average(
    total: int, count: int, increment: Decimal, extra: int
) -> None:
    assert UnitsFormat(increment).average_text(total, count, extra) == _average_by_decimal(
        total, count, increment, extra
    )


def test_integer_average_rounds_half_to_even_and_keeps_the_increments_places() -> None:
    cents = UnitsFormat(Decimal("0.01"))
    assert cents.average_text(10025 * 2 + 10020 * 2, 4, 8) == "100.225"
    assert cents.average_text(5, 2, 0) == "0.02"  # 0.025 -> 0.02 (half to even)
    assert cents.average_text(7, 2, 0) == "0.04"  # 0.035 -> 0.04
    assert cents.average_text(100, 1, 8) == "1.00"
    assert cents.average_text(0, 0, 8) == ""
    assert UnitsFormat(Decimal("5")).average_text(3, 2, 1) == "7.5"
    assert UnitsFormat(Decimal("0.5")).text(-3) == "-1.5"
    assert UnitsFormat(Decimal("0.001")).zero == "0.000"
