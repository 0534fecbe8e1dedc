"""Risk arithmetic of replaces and budget-only market buys, against simple reference models.

A model of an order's hold as risk/lua/reserve.lua and leg.lua keep it (a replace marks the
order; a marked hold ignores caps above 0 and remembers the lowest) checks the argument of
risk/exposure.py replaced_leg: whatever the fills around a replace, the hold never drops below
what the order may cost, and ends exact. Sizes are checked at the int64 boundaries.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from backbone.common.v1 import common_pb2
from backbone.money import INT64_MAX, InstrumentMath, MoneyError, derive_instrument
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from risk import exposure
from risk.exposure import CAP_AT, CAP_REPLACED, CAP_SPEND, GrowOp, LegOp, Rejection, ReserveOp
from tests.unit.test_risk_exposure import MATH, make_instrument, make_trade

BUY, SELL = common_pb2.SIDE_BUY, common_pb2.SIDE_SELL


class MarkedHold:
    """One order's hold as the Lua scripts keep it: amount, the replace mark, its extra, the
    lowest cap skipped while marked. None once the order's key is gone."""

    def __init__(self, amount: int) -> None:
        self.amount: int | None = amount
        self.mark = ""
        self.extra = 0
        self.skipped: int | None = None

    def grow(self, want: int, replace_id: str) -> int:
        assert self.amount is not None and not self.mark
        self.extra = max(0, want - self.amount)
        self.amount += self.extra
        self.mark = replace_id
        return self.extra

    def end(self, replace_id: str) -> None:
        if self.amount is None or self.mark != replace_id:
            return
        after = max(0, self.amount - self.extra)
        if self.skipped is not None:
            after = min(after, self.skipped)
        self.amount = after or None
        self.mark, self.extra, self.skipped = "", 0, None

    def leg(self, leg: LegOp) -> None:
        if self.amount is None or leg.reservation_cap == exposure.KEEP_RESERVATION:
            return
        cap = leg.reservation_cap
        if leg.cap_kind == CAP_SPEND:
            self.amount = max(0, self.amount - cap)
        elif leg.cap_kind == CAP_REPLACED:
            self.amount = min(self.amount, cap)
            self.mark, self.extra, self.skipped = "", 0, None
        elif self.mark and cap != 0:
            self.skipped = cap if self.skipped is None else min(self.skipped, cap)
        else:
            self.amount = min(self.amount, cap)
        if self.amount == 0:
            self.amount = None


def fill(math: InstrumentMath, sequence: int, price: int, lots: int, limit: int, leaves: int) -> LegOp:
    trade = make_trade(
        math,
        trade_id=sequence,
        buy_order_id="b",
        sell_order_id=f"s{sequence}",
        price_ticks=price,
        quantity_lots=lots,
        buy_limit_price_ticks=limit,
        buy_leaves_lots=leaves,
        sell_leaves_lots=0,
    )
    return exposure.trade_legs(sequence, trade, math)[0]


def replaced(math: InstrumentMath, sequence: int, price: int, leaves: int) -> LegOp:
    event = common_pb2.OrderReplaced(
        order_id="b",
        account_id="alice",
        symbol="BTC-USD",
        side=BUY,
        new_price_ticks=price,
        new_leaves_lots=leaves,
    )
    return exposure.replaced_leg(sequence, event, math)


def grow(math: InstrumentMath, price: int, leaves: int) -> GrowOp | Rejection:
    return exposure.plan_grow(
        risk_pb2.GrowForReplace(
            order_id="b",
            account_id="alice",
            symbol="BTC-USD",
            side=BUY,
            price_ticks=price,
            leaves_lots=leaves,
            replace_id="r1",
        ),
        math,
    )


@settings(max_examples=500, deadline=None)
@given(
    old_price=st.integers(1, 100_000),
    new_price=st.integers(1, 100_000),
    total=st.integers(1, 40),
    new_total=st.integers(1, 60),
    before=st.lists(st.tuples(st.integers(1, 8), st.integers(0, 10**6)), max_size=6),
    after=st.lists(st.tuples(st.integers(1, 8), st.integers(0, 10**6)), max_size=6),
    points=st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)),
    refused=st.booleans(),
)
def test_a_hold_around_a_replace_never_drops_below_what_the_order_may_cost(
    old_price: int,
    new_price: int,
    total: int,
    new_total: int,
    before: list[tuple[int, int]],
    after: list[tuple[int, int]],
    points: tuple[int, int, int],
    refused: bool,
) -> None:
    """Journal: fills at the old price, then the replace (unless trading refuses it), then fills
    at the new price. The gateway sized the grow after `seen` of the first fills (it reads
    trading, which is ahead of risk); risk grows the hold after it has applied `grown` of them,
    and (on a refusal) the gateway's EndReplace comes after `ended` of them."""
    math = MATH
    # Trading's journal, and the order's (price reserved at, open lots) after each event.
    journal: list[LegOp] = []
    states: list[tuple[int, int]] = []
    leaves = total
    for lots, seed in before:
        lots = min(lots, leaves)
        if not lots:
            break
        leaves -= lots
        journal.append(fill(math, len(journal) + 1, 1 + seed % old_price, lots, old_price, leaves))
        states.append((old_price, leaves))
    filled = total - leaves
    seen, grown, ended = (min(point, len(journal)) for point in points)
    filled_seen = total - (states[seen - 1][1] if seen else total)
    assume(new_total > filled_seen)  # else the gateway refuses it (REPLACE_QUANTITY_TOO_SMALL)
    planned = grow(math, new_price, new_total - filled_seen)
    assert isinstance(planned, GrowOp)
    applies = not refused and leaves > 0 and new_total > filled  # trading's own checks
    if applies:
        leaves = new_total - filled
        journal.append(replaced(math, len(journal) + 1, new_price, leaves))
        states.append((new_price, leaves))
        for lots, seed in after:
            lots = min(lots, leaves)
            if not lots:
                break
            leaves -= lots
            journal.append(fill(math, len(journal) + 1, 1 + seed % new_price, lots, new_price, leaves))
            states.append((new_price, leaves))
    ended = max(ended, grown)

    hold = MarkedHold(math.buy_reservation(old_price, total))
    pending = False
    for applied in range(len(journal) + 1):
        if applied == grown and hold.amount is not None:
            hold.grow(planned.amount, "r1")
            pending = True
        if applied == ended and not applies:
            hold.end("r1")
            pending = False
        if applied:
            leg = journal[applied - 1]
            hold.leg(leg)
            pending = pending and leg.cap_kind != CAP_REPLACED
        price, open_lots = states[applied - 1] if applied else (old_price, total)
        held = hold.amount or 0
        assert held >= (math.buy_reservation(price, open_lots) if open_lots else 0)
        if pending and applies:
            # The replace is on its way: the hold covers what the replaced order will need.
            assert held >= math.buy_reservation(new_price, new_total - filled)
    # Once every event is applied, the hold is exact and the order unmarked.
    price, open_lots = states[-1] if states else (old_price, total)
    assert (hold.amount or 0) == (math.buy_reservation(price, open_lots) if open_lots else 0)
    assert not hold.mark


@settings(max_examples=300, deadline=None)
@given(
    budget=st.integers(1, 10**9),
    prices=st.lists(st.integers(1, 10**5), min_size=1, max_size=8),
    sizes=st.lists(st.integers(1, 10**4), min_size=8, max_size=8),
    maker_bps=st.integers(0, 100),
    taker_bps=st.integers(0, 100),
)
def test_a_budget_buys_fills_never_need_more_than_its_hold(
    budget: int, prices: list[int], sizes: list[int], maker_bps: int, taker_bps: int
) -> None:
    """Fills sized as the engine sizes them (whole lots the rest of the budget buys at each
    maker's price, prices only getting worse) use at most the hold; the last event drops the rest."""
    math = InstrumentMath.of(make_instrument(maker_bps, taker_bps))
    op = exposure.plan_reserve(_budget_reserve(budget, quantity_lots=10**5), math)
    assert isinstance(op, ReserveOp) and op.amount == math.budget_reservation(budget)
    hold = MarkedHold(op.amount)
    left, leaves, spent = budget, 10**5, 0
    for sequence, (price, size) in enumerate(zip(sorted(prices), sizes, strict=False), start=1):
        lots = min(size, leaves, left // (price * math.instrument.quote_minor_per_tick_lot))
        if not lots:
            break
        left -= math.quote_amount(price, lots)
        leaves -= lots
        trade = make_trade(
            math,
            trade_id=sequence,
            buy_order_id="b",
            sell_order_id=f"s{sequence}",
            price_ticks=price,
            quantity_lots=lots,
            buy_limit_price_ticks=0,
            buy_leaves_lots=leaves,
            sell_leaves_lots=0,
            maker_side=SELL if sequence % 2 else BUY,
        )
        trade.buy_quote_budget = budget
        leg = exposure.trade_legs(sequence, trade, math)[0]
        assert leg.cap_kind == (CAP_SPEND if leaves else CAP_AT)
        spent += trade.quote_amount + trade.buyer_fee
        assert spent <= op.amount  # never more than held
        hold.leg(leg)
        assert (hold.amount or 0) == (op.amount - spent if leaves else 0)
    hold.leg(exposure.release_leg(99, common_pb2.OrderReleased(order_id="b", account_id="alice")))
    assert hold.amount is None


def _budget_reserve(quote_budget: int, quantity_lots: int = 1, **fields: object) -> risk_pb2.Reserve:
    values: dict[str, object] = {
        "order_id": "b",
        "account_id": "alice",
        "symbol": "BTC-USD",
        "side": BUY,
        "price_ticks": 0,
        "quantity_lots": quantity_lots,
        "quote_budget": quote_budget,
    }
    values.update(fields)
    return risk_pb2.Reserve(**values)  # type: ignore[arg-type]


def _edge_instrument(max_price: int, max_quantity: int, fee_bps: int) -> InstrumentMath | None:
    """An instrument of whole units whose largest order is near 2^63 quote minor units; None
    when its largest order (with fee headroom) does not fit in 64 bits (derive_instrument refuses)."""
    try:
        instrument = derive_instrument(
            symbol="BTC-USD",
            base_asset="BTC",
            quote_asset="USD",
            base_scale=0,
            quote_scale=0,
            tick_size=Decimal(1),
            lot_size=Decimal(1),
            min_quantity=Decimal(1),
            max_quantity=Decimal(max_quantity),
            max_price=Decimal(max_price),
            maker_fee_bps=fee_bps,
            taker_fee_bps=fee_bps,
        )
    except MoneyError:
        return None
    return InstrumentMath.of(instrument)


@settings(max_examples=300, deadline=None)
@given(
    max_price=st.integers(1, INT64_MAX),
    max_quantity=st.integers(1, INT64_MAX),
    fee_bps=st.integers(0, 1000),
    budget=st.integers(-(2**63), 2**63 - 1),
    price=st.integers(-(2**63), 2**63 - 1),
    leaves=st.integers(-(2**63), 2**63 - 1),
)
def test_budgets_and_grows_at_the_int64_boundaries_fit_or_are_refused(
    max_price: int, max_quantity: int, fee_bps: int, budget: int, price: int, leaves: int
) -> None:
    """Every amount risk holds fits in 64 bits; anything else is a Rejection, never an error."""
    math = _edge_instrument(max_price, max_quantity, fee_bps)
    assume(math is not None)
    assert math is not None
    planned = exposure.plan_reserve(_budget_reserve(budget), math)
    if 0 < budget <= math.largest_quote_budget:
        assert isinstance(planned, ReserveOp)
        assert planned.amount == math.budget_reservation(budget) <= INT64_MAX
    else:
        assert isinstance(planned, Rejection)
        assert planned.reason in (RejectReason.INVALID_ORDER, RejectReason.INVALID_QUOTE_BUDGET)
    grown = grow(math, price, leaves)
    if 0 < price <= max_price and 0 < leaves <= max_quantity:
        assert isinstance(grown, GrowOp) and 0 < grown.amount <= INT64_MAX
        assert grown.amount == math.buy_reservation(price, leaves)
    else:
        assert isinstance(grown, Rejection) and grown.reason == RejectReason.INVALID_ORDER


def test_the_largest_budget_is_held_exactly_at_the_int64_edge() -> None:
    # 3,035,000,000^2 * (1 + 10 bps), rounded up, is just below 2^63 (9.2204e18 of 9.2234e18).
    math = _edge_instrument(3_035_000_000, 3_035_000_000, 10)
    assert math is not None
    largest = math.largest_quote_budget
    assert math.budget_reservation(largest) == math.buy_reservation(3_035_000_000, 3_035_000_000) <= INT64_MAX
    assert isinstance(exposure.plan_reserve(_budget_reserve(largest), math), ReserveOp)
    refused = exposure.plan_reserve(_budget_reserve(largest + 1), math)
    assert isinstance(refused, Rejection) and refused.reason == RejectReason.INVALID_QUOTE_BUDGET


def test_a_budget_is_only_for_a_buy_and_never_negative() -> None:
    for fields, reason in (
        ({"side": SELL, "price_ticks": 100}, RejectReason.INVALID_QUOTE_BUDGET),
        ({"budget": -5}, RejectReason.INVALID_ORDER),
        ({"budget": 0}, RejectReason.INVALID_ORDER),  # price 0 and no budget
    ):
        budget = int(fields.pop("budget", 100))  # type: ignore[call-overload]
        refused = exposure.plan_reserve(_budget_reserve(budget, **fields), MATH)
        assert isinstance(refused, Rejection) and refused.reason == reason, fields
    # A budget with a protection price holds by the price, as any buy.
    priced = exposure.plan_reserve(_budget_reserve(100, price_ticks=50, quantity_lots=3), MATH)
    assert isinstance(priced, ReserveOp) and priced.amount == MATH.buy_reservation(50, 3)


def test_replaced_and_grow_commands_are_checked() -> None:
    leg = replaced(MATH, 7, 120, 4)
    assert (leg.reservation_cap, leg.cap_kind, leg.op_id) == (MATH.buy_reservation(120, 4), CAP_REPLACED, 28)
    sell = exposure.replaced_leg(
        3,
        common_pb2.OrderReplaced(
            order_id="s", account_id="bob", symbol="BTC-USD", side=SELL, new_price_ticks=9, new_leaves_lots=5
        ),
        MATH,
    )
    assert sell.reservation_cap == MATH.sell_reservation(5)
    bad = exposure.plan_grow(
        risk_pb2.GrowForReplace(
            order_id="b",
            account_id="alice",
            symbol="BTC-USD",
            side=BUY,
            price_ticks=1,
            leaves_lots=1,
            replace_id="x y",
        ),
        MATH,
    )
    assert isinstance(bad, Rejection) and "replace_id" in bad.message
    end = exposure.plan_end_replace(risk_pb2.EndReplace(order_id="b", account_id="alice", replace_id=""))
    assert isinstance(end, Rejection) and "replace_id" in end.message
