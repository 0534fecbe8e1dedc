"""Risk arithmetic: reserves, trade legs and releases as exact per-account operations."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.common.v1 import common_pb2
from backbone.money import InstrumentMath, derive_instrument
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from risk import exposure
from risk.exposure import LegOp, Rejection, ReleaseOp, ReserveOp


def make_instrument(maker_bps: int = 10, taker_bps: int = 25) -> common_pb2.Instrument:
    return derive_instrument(
        symbol="BTC-USD",
        base_asset="BTC",
        quote_asset="USD",
        base_scale=8,
        quote_scale=2,
        tick_size=Decimal("1"),
        lot_size=Decimal("0.01"),
        min_quantity=Decimal("0.01"),
        max_quantity=Decimal("1000"),
        max_price=Decimal("10000000"),
        maker_fee_bps=maker_bps,
        taker_fee_bps=taker_bps,
    )


MATH = InstrumentMath.of(make_instrument())


def reserve(**fields: object) -> risk_pb2.Reserve:
    values: dict[str, object] = {
        "order_id": "o1",
        "account_id": "alice",
        "symbol": "BTC-USD",
        "side": common_pb2.SIDE_BUY,
        "price_ticks": 45_000,
        "quantity_lots": 5,
    }
    values.update(fields)
    return risk_pb2.Reserve(**values)  # type: ignore[arg-type]


def test_buy_reserves_notional_plus_fee_headroom_rounded_up() -> None:
    op = exposure.plan_reserve(reserve(price_ticks=45_001, quantity_lots=3), MATH)
    assert isinstance(op, ReserveOp)
    # tick 1 USD x lot 0.01 BTC = 0.01 USD, one quote minor unit.
    notional = 45_001 * 3
    headroom = -(-notional * 25 // 10_000)  # 337.5075 rounded up
    assert headroom == 338
    assert (op.asset, op.amount) == ("USD", notional + headroom)
    assert op.side == "BUY" and op.price_ticks == 45_001 and op.symbol == "BTC-USD"


def test_sell_reserves_base_lots() -> None:
    op = exposure.plan_reserve(reserve(side=common_pb2.SIDE_SELL, quantity_lots=7), MATH)
    assert isinstance(op, ReserveOp)
    assert (op.asset, op.amount, op.side) == ("BTC", 7 * 1_000_000, "SELL")


@pytest.mark.parametrize(
    "fields",
    [
        {"side": common_pb2.SIDE_UNSPECIFIED},
        {"quantity_lots": 0},
        {"quantity_lots": -3},
        {"price_ticks": 0},
        {"price_ticks": -1},
        {"order_id": ""},
        {"order_id": "x" * 65},
        {"order_id": "o1\n"},
        {"order_id": "o 1"},
        {"order_id": "\x00"},
        {"account_id": ""},
        {"account_id": "has space"},
        {"account_id": "alice\n"},
        {"account_id": " alice"},
        {"account_id": "system:fees"},
        {"account_id": "{tag}"},
        {"account_id": "a" * 65},
        {"price_ticks": 10_000_001},
        {"quantity_lots": 100_001},
    ],
)
def test_invalid_orders_are_rejected(fields: dict[str, object]) -> None:
    result = exposure.plan_reserve(reserve(**fields), MATH)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.INVALID_ORDER
    assert result.message


def test_unknown_symbol_is_rejected() -> None:
    result = exposure.plan_reserve(reserve(symbol="NOPE"), None)
    assert isinstance(result, Rejection) and result.reason is RejectReason.UNKNOWN_SYMBOL


def test_release_plan() -> None:
    assert exposure.plan_release(risk_pb2.Release(order_id="o", account_id="a")) == ReleaseOp("a", "o")
    bad = exposure.plan_release(risk_pb2.Release(order_id="", account_id="a"))
    assert isinstance(bad, Rejection) and bad.reason is RejectReason.INVALID_ORDER
    newline = exposure.plan_release(risk_pb2.Release(order_id="o", account_id="a\n"))
    assert isinstance(newline, Rejection) and newline.reason is RejectReason.INVALID_ORDER


def make_trade(math: InstrumentMath, **fields: object) -> common_pb2.Trade:
    values: dict[str, object] = {
        "trade_id": 1,
        "symbol": math.instrument.symbol,
        "price_ticks": 100,
        "quantity_lots": 2,
        "buy_order_id": "b1",
        "sell_order_id": "s1",
        "buy_account_id": "alice",
        "sell_account_id": "bob",
        "maker_side": common_pb2.SIDE_SELL,
        "base_asset": math.instrument.base_asset,
        "quote_asset": math.instrument.quote_asset,
        "buy_limit_price_ticks": 100,
        "buy_leaves_lots": 0,
        "sell_leaves_lots": 0,
    }
    values.update(fields)
    trade = common_pb2.Trade(**values)  # type: ignore[arg-type]
    trade.base_amount = math.base_amount(trade.quantity_lots)
    trade.quote_amount = math.quote_amount(trade.price_ticks, trade.quantity_lots)
    maker, taker = math.instrument.maker_fee_bps, math.instrument.taker_fee_bps
    buyer_bps = maker if trade.maker_side == common_pb2.SIDE_BUY else taker
    seller_bps = maker if trade.maker_side == common_pb2.SIDE_SELL else taker
    trade.buyer_fee = math.fee(trade.quote_amount, buyer_bps)
    trade.seller_fee = math.fee(trade.quote_amount, seller_bps)
    return trade


def test_trade_legs_are_exact() -> None:
    math = InstrumentMath.of(
        derive_instrument(
            symbol="ETH-USD",
            base_asset="ETH",
            quote_asset="USD",
            base_scale=18,
            quote_scale=2,
            tick_size=Decimal("1"),
            lot_size=Decimal("0.01"),
            min_quantity=Decimal("0.01"),
            max_quantity=Decimal("5"),
            max_price=Decimal("1000000"),
            maker_fee_bps=7,
            taker_fee_bps=30,
        )
    )
    trade = make_trade(
        math,
        price_ticks=250_012,
        quantity_lots=3,
        buy_limit_price_ticks=260_000,
        buy_leaves_lots=4,
        sell_leaves_lots=1,
    )
    buyer, seller = exposure.trade_legs(9, trade, math)
    assert (buyer.op_id, seller.op_id) == (36, 37)
    assert buyer == LegOp(
        "alice",
        36,
        9,
        "b1",
        (("ETH", 3 * 10**16), ("USD", -(trade.quote_amount + trade.buyer_fee))),
        math.buy_reservation(260_000, 4),
    )
    assert seller == LegOp(
        "bob",
        37,
        9,
        "s1",
        (("USD", trade.quote_amount - trade.seller_fee), ("ETH", -(3 * 10**16))),
        10**16,
    )


def test_self_trade_has_two_legs_with_distinct_op_ids() -> None:
    trade = make_trade(MATH, buy_account_id="carol", sell_account_id="carol")
    buyer, seller = exposure.trade_legs(5, trade, MATH)
    assert buyer.account_id == seller.account_id == "carol"
    assert buyer.op_id != seller.op_id
    net: dict[str, int] = {}
    for leg in (buyer, seller):
        for asset, delta in leg.deltas:
            net[asset] = net.get(asset, 0) + delta
    assert net.get("BTC", 0) == 0
    assert net["USD"] == -(trade.buyer_fee + trade.seller_fee)


def test_release_leg_drops_everything() -> None:
    leg = exposure.release_leg(12, common_pb2.OrderReleased(order_id="o9", account_id="dan", released_lots=3))
    assert leg == LegOp("dan", 48, 12, "o9", (), 0)


@pytest.mark.parametrize(
    "fields",
    [
        {"buy_account_id": ""},
        {"buy_account_id": "alice\n"},
        {"sell_order_id": ""},
        {"sell_order_id": "s1\n"},
        {"base_asset": "BTC\n"},
        {"buy_leaves_lots": -1},
        {"base_asset": "ETH"},
        {"quote_asset": "usd"},
    ],
)
def test_malformed_trades_are_refused(fields: dict[str, object]) -> None:
    trade = make_trade(MATH)
    for name, value in fields.items():
        setattr(trade, name, value)
    with pytest.raises(exposure.MalformedEvent):
        exposure.trade_legs(3, trade, MATH)
    with pytest.raises(exposure.MalformedEvent):
        exposure.trade_legs(0, make_trade(MATH), MATH)


class Model:
    """A reference model of one account's risk state, as the Lua scripts keep it."""

    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.orders: dict[str, tuple[str, int]] = {}

    def available(self, asset: str) -> int:
        return self.total.get(asset, 0) - self.reserved.get(asset, 0)

    def reserve(self, op: ReserveOp) -> bool:
        if self.available(op.asset) < op.amount:
            return False
        self.reserved[op.asset] = self.reserved.get(op.asset, 0) + op.amount
        self.orders[op.order_id] = (op.asset, op.amount)
        return True

    def apply(self, leg: LegOp) -> None:
        for asset, delta in leg.deltas:
            self.total[asset] = self.total.get(asset, 0) + delta
            assert self.total[asset] >= 0
        if leg.order_id in self.orders:
            asset, amount = self.orders[leg.order_id]
            new = min(amount, leg.reservation_cap)
            self.reserved[asset] -= amount - new
            if new == 0:
                del self.orders[leg.order_id]
            else:
                self.orders[leg.order_id] = (asset, new)


@settings(max_examples=300, deadline=None)
@given(
    maker_bps=st.integers(0, 100),
    taker_bps=st.integers(0, 100),
    limit=st.integers(1, 5_000_000),
    fills=st.lists(st.tuples(st.integers(1, 50), st.integers(0, 5_000_000)), min_size=1, max_size=8),
    extra=st.integers(0, 1000),
    cancel_rest=st.booleans(),
)
def test_buyer_reservation_always_covers_fills_and_is_released_at_the_end(
    maker_bps: int,
    taker_bps: int,
    limit: int,
    fills: list[tuple[int, int]],
    extra: int,
    cancel_rest: bool,
) -> None:
    """Fills at or below the limit never need more than held; what is left is released."""
    math = InstrumentMath.of(make_instrument(maker_bps, taker_bps))
    lots = sum(q for q, _ in fills) + (extra % 7 if cancel_rest else 0)
    buyer, seller = Model(), Model()
    funds = math.buy_reservation(limit, lots) + extra
    buyer.total["USD"] = funds
    seller.total["BTC"] = math.base_amount(lots)
    buy = exposure.plan_reserve(
        reserve(order_id="b", account_id="alice", price_ticks=limit, quantity_lots=lots), math
    )
    sell = exposure.plan_reserve(
        reserve(order_id="s", account_id="bob", side=common_pb2.SIDE_SELL, quantity_lots=lots), math
    )
    assert isinstance(buy, ReserveOp) and isinstance(sell, ReserveOp)
    assert buyer.reserve(buy) and seller.reserve(sell)
    leaves = lots
    spent = fees = 0
    for sequence, (quantity, price_seed) in enumerate(fills, start=1):
        price = 1 + price_seed % limit  # at or better than the buyer's limit
        leaves -= quantity
        trade = make_trade(
            math,
            trade_id=sequence,
            buy_order_id="b",
            sell_order_id="s",
            price_ticks=price,
            quantity_lots=quantity,
            buy_limit_price_ticks=limit,
            buy_leaves_lots=leaves,
            sell_leaves_lots=leaves,
            maker_side=common_pb2.SIDE_SELL if sequence % 2 else common_pb2.SIDE_BUY,
        )
        buyer_leg, seller_leg = exposure.trade_legs(sequence, trade, math)
        buyer.apply(buyer_leg)
        seller.apply(seller_leg)
        spent += trade.quote_amount + trade.buyer_fee
        fees += trade.buyer_fee + trade.seller_fee
        # Never over-committed: what is held stays within the total.
        assert buyer.available("USD") >= 0 and seller.available("BTC") >= 0
        assert buyer.reserved["USD"] == math.buy_reservation(limit, leaves)
    if leaves:
        released = exposure.release_leg(
            len(fills) + 1, common_pb2.OrderReleased(order_id="b", account_id="alice", released_lots=leaves)
        )
        buyer.apply(released)
        seller.apply(
            exposure.release_leg(
                len(fills) + 2, common_pb2.OrderReleased(order_id="s", account_id="bob", released_lots=leaves)
            )
        )
    assert buyer.orders == {} and seller.orders == {}
    assert buyer.reserved["USD"] == 0 and seller.reserved["BTC"] == 0
    assert buyer.total["USD"] == funds - spent
    assert buyer.total["BTC"] == math.base_amount(lots - leaves)
    assert seller.total["BTC"] == math.base_amount(leaves)
    # Conservation: the quote asset only leaks to fees.
    assert buyer.total["USD"] + seller.total.get("USD", 0) + fees == funds


@given(sequence=st.integers(1, 1 << 55), leg=st.sampled_from([0, 1]))
def test_op_ids_are_distinct_and_ordered(sequence: int, leg: int) -> None:
    assert exposure.op_id(sequence, leg) < exposure.op_id(sequence + 1, 0)
    assert exposure.op_id(sequence, 0) < exposure.op_id(sequence, 1)
