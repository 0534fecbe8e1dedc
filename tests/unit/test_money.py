"""Exact money arithmetic: parsing at the edge and the reservation guarantee."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.money import (
    InstrumentMath,
    MoneyError,
    derive_instrument,
    format_minor,
    parse_decimal,
    to_minor,
    to_units,
)
from tests.instruments import btc_usd


def btc_usd_math(maker_bps: int, taker_bps: int) -> InstrumentMath:
    return InstrumentMath.of(btc_usd(maker_fee_bps=maker_bps, taker_fee_bps=taker_bps))


@pytest.mark.parametrize(
    "text", ["-1", "1e5", "01", "1.", ".5", "", " 1", "1 ", "NaN", "Infinity", "1,5", "0x10"]
)
def test_parse_decimal_refuses_what_is_not_a_plain_decimal(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_decimal(text)


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
