"""The reference instrument the tests share: BTC-USD, tick 0.01, lot 0.0001, 10/20 bps maker/taker."""

from __future__ import annotations

from decimal import Decimal

from backbone.common.v1 import common_pb2
from backbone.money import derive_instrument


def btc_usd(
    symbol: str = "BTC-USD",
    *,
    min_quantity: str = "0.0001",
    max_quantity: str = "1000",
    maker_fee_bps: int = 10,
    taker_fee_bps: int = 20,
) -> common_pb2.Instrument:
    """BTC (8 places) against USD (6 places), with the given limits and fees."""
    return derive_instrument(
        symbol=symbol,
        base_asset="BTC",
        quote_asset="USD",
        base_scale=8,
        quote_scale=6,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.0001"),
        min_quantity=Decimal(min_quantity),
        max_quantity=Decimal(max_quantity),
        max_price=Decimal("1000000"),
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
    )


def as_listed(
    instrument: common_pb2.Instrument,
    status: common_pb2.InstrumentStatus = common_pb2.INSTRUMENT_STATUS_TRADING,
) -> common_pb2.Instrument:
    """`instrument` as trading answers it (CreateInstrument, ListInstruments): with its status."""
    answered = common_pb2.Instrument()
    answered.CopyFrom(instrument)
    answered.status = status
    return answered
