"""Exchange-grade order handling in the engine, case by case, with the exact records and reports.

Market orders (protection price, quote budget), IOC, FOK, DAY and its expiry, post-only,
self-trade prevention, cancel-replace, mass cancel, instrument status and per-account report
numbers; every refusal is a report (or CommandRejected) that changes nothing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from backbone.common.v1 import common_pb2 as c
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2
from tests.instruments import as_listed, btc_usd
from tests.orders import cancel_order
from tests.orders import new_order as new
from trading.book import InvariantViolation
from trading.engine import CommandRejected, Engine, Outcome, ReplayError

BUY, SELL = c.SIDE_BUY, c.SIDE_SELL
T = 1_700_000_000_000_000_000
DATA = Path(__file__).resolve().parents[1] / "data"
MARKET, LIMIT = c.ORDER_TYPE_MARKET, c.ORDER_TYPE_LIMIT
IOC, FOK, DAY, GTC = c.TIME_IN_FORCE_IOC, c.TIME_IN_FORCE_FOK, c.TIME_IN_FORCE_DAY, c.TIME_IN_FORCE_GTC
ACCEPTED, TRADE, CANCELLED = c.EXECUTION_TYPE_ACCEPTED, c.EXECUTION_TYPE_TRADE, c.EXECUTION_TYPE_CANCELLED
EXPIRED, REJECTED, REPLACED = c.EXECUTION_TYPE_EXPIRED, c.EXECUTION_TYPE_REJECTED, c.EXECUTION_TYPE_REPLACED


def replace(order_id: str, price: int, lots: int, account: str = "acct-1") -> trading_pb2.OrderCommand:
    command = trading_pb2.ReplaceOrder(
        order_id=order_id, account_id=account, price_ticks=price, quantity_lots=lots
    )
    return trading_pb2.OrderCommand(replace_order=command)


def mass_cancel(account: str, symbol: str = "") -> trading_pb2.OrderCommand:
    return trading_pb2.OrderCommand(mass_cancel=trading_pb2.MassCancel(account_id=account, symbol=symbol))


def status(symbol: str, value: int) -> trading_pb2.SetInstrumentStatus:
    return trading_pb2.SetInstrumentStatus(symbol=symbol, status=value)  # type: ignore[arg-type]


def expire(symbol: str = "", time_in_force: int = DAY) -> trading_pb2.ExpireOrders:
    return trading_pb2.ExpireOrders(symbol=symbol, time_in_force=time_in_force)  # type: ignore[arg-type]


@pytest.fixture
def engine() -> Engine:
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    engine.create_instrument(btc_usd("ETH-USD"), T)
    return engine


def kinds(outcome: Outcome) -> list[str]:
    return [record.WhichOneof("record") or "" for record in outcome.records]


def summary(outcome: Outcome) -> list[tuple[str, int, int]]:
    """(order id, execution type, reason) of each report; the reason is the reject or cancel reason."""
    return [(r.order.order_id, r.execution_type, r.reject_reason or r.cancel_reason) for r in outcome.reports]


def trades(outcome: Outcome) -> list[tuple[str, str, int, int]]:
    return [
        (r.trade.buy_order_id, r.trade.sell_order_id, r.trade.price_ticks, r.trade.quantity_lots)
        for r in outcome.records
        if r.HasField("trade")
    ]


def released(outcome: Outcome) -> list[tuple[str, int]]:
    return [
        (r.order_released.order_id, r.order_released.released_lots)
        for r in outcome.records
        if r.HasField("order_released")
    ]


def refused(engine: Engine, command: trading_pb2.OrderCommand, reason: RejectReason) -> c.ExecutionReport:
    """Apply `command`, which must be refused with `reason` and change nothing."""
    before = engine.state_hash()
    outcome = engine.apply(command, T + 99)
    assert outcome.records == []
    (report,) = outcome.reports
    assert (report.execution_type, report.reject_reason) == (REJECTED, reason.number)
    assert (report.account_sequence, report.journal_sequence) == (0, 0)
    assert engine.state_hash() == before
    return report


def asks(engine: Engine, symbol: str = "BTC-USD") -> list[tuple[int, int, int]]:
    return engine.books[symbol].depth(SELL)


def bids(engine: Engine, symbol: str = "BTC-USD") -> list[tuple[int, int, int]]:
    return engine.books[symbol].depth(BUY)


def ask_ladder(engine: Engine) -> None:
    """Asks of a2: 3 lots at 100, 5 at 101, 4 at 103."""
    for order_id, price, lots in (("s100", 100, 3), ("s101", 101, 5), ("s103", 103, 4)):
        assert engine.apply(new(order_id, SELL, price, lots, account="a2"), T).accepted


# -- market orders -------------------------------------------------------------------------------


def test_a_market_buy_trades_up_to_its_protection_price_and_expires_the_rest(engine: Engine) -> None:
    ask_ladder(engine)
    outcome = engine.apply(new("m", BUY, 101, 10, type=MARKET, time_in_force=IOC), T + 1)
    assert kinds(outcome) == ["new_order", "trade", "trade", "order_released"]
    assert trades(outcome) == [("m", "s100", 100, 3), ("m", "s101", 101, 5)]
    assert released(outcome) == [("m", 2)]
    assert summary(outcome) == [
        ("m", ACCEPTED, 0),
        ("m", TRADE, 0),
        ("s100", TRADE, 0),
        ("m", TRADE, 0),
        ("s101", TRADE, 0),
        ("m", EXPIRED, c.CANCEL_REASON_MARKET_REMAINDER),
    ]
    # Risk reserved the buy at its protection price, and releases the improvement by it.
    assert [r.trade.buy_limit_price_ticks for r in outcome.records if r.HasField("trade")] == [101, 101]
    assert [r.trade.buy_quote_budget for r in outcome.records if r.HasField("trade")] == [0, 0]
    final = outcome.reports[-1].order
    assert (final.status, final.filled_lots, final.leaves_lots, final.expired_lots) == (
        c.ORDER_STATUS_EXPIRED,
        8,
        0,
        2,
    )
    assert all(r.journal_sequence == outcome.records[-1].sequence for r in outcome.reports)
    assert asks(engine) == [(103, 4, 1)] and bids(engine) == []
    engine.validate()


def test_a_market_sell_stops_at_its_protection_price(engine: Engine) -> None:
    for order_id, price in (("b1", 100), ("b2", 98)):
        engine.apply(new(order_id, BUY, price, 2, account="a2"), T)
    outcome = engine.apply(new("m", SELL, 99, 5, type=MARKET, time_in_force=IOC), T + 1)
    assert trades(outcome) == [("b1", "m", 100, 2)]
    assert released(outcome) == [("m", 3)]
    assert bids(engine) == [(98, 2, 1)]


def test_a_budget_market_buy_buys_the_whole_lots_its_budget_pays_for(engine: Engine) -> None:
    ask_ladder(engine)
    # btc_usd: one tick times one lot is 1 quote minor unit, so a fill costs price x lots.
    outcome = engine.apply(new("m", BUY, 0, 50, type=MARKET, time_in_force=IOC, quote_budget=500), T + 1)
    # 3 at 100 (300), then 200 // 101 = 1 at 101 (101): 401 spent, 99 left buys nothing more.
    assert trades(outcome) == [("m", "s100", 100, 3), ("m", "s101", 101, 1)]
    assert released(outcome) == [("m", 46)]
    spent = sum(r.trade.quote_amount for r in outcome.records if r.HasField("trade"))
    assert spent == 401 <= 500
    assert [
        (r.trade.buy_limit_price_ticks, r.trade.buy_quote_budget)
        for r in outcome.records
        if r.HasField("trade")
    ] == [
        (0, 500),
        (0, 500),
    ]
    assert summary(outcome)[-1] == ("m", EXPIRED, c.CANCEL_REASON_MARKET_REMAINDER)
    assert asks(engine) == [(101, 4, 1), (103, 4, 1)]
    engine.validate()


def test_a_market_buy_with_price_and_budget_obeys_both(engine: Engine) -> None:
    ask_ladder(engine)
    outcome = engine.apply(new("m", BUY, 101, 50, type=MARKET, time_in_force=IOC, quote_budget=10_000), T + 1)
    assert trades(outcome) == [("m", "s100", 100, 3), ("m", "s101", 101, 5)]  # the price stops it
    assert released(outcome) == [("m", 42)]


def test_a_fully_filled_market_order_has_no_release(engine: Engine) -> None:
    ask_ladder(engine)
    outcome = engine.apply(new("m", BUY, 0, 3, type=MARKET, time_in_force=FOK, quote_budget=300), T + 1)
    assert kinds(outcome) == ["new_order", "trade"]
    assert outcome.reports[-1].order.status == c.ORDER_STATUS_FILLED


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"type": MARKET, "time_in_force": IOC, "price_ticks": 0}, RejectReason.MARKET_PROTECTION_REQUIRED),
        ({"type": MARKET, "time_in_force": GTC}, RejectReason.MARKET_ORDER_CANNOT_REST),
        ({"type": MARKET, "time_in_force": DAY}, RejectReason.MARKET_ORDER_CANNOT_REST),
        ({"type": MARKET}, RejectReason.MARKET_ORDER_CANNOT_REST),  # unspecified means GTC
        (
            {"type": MARKET, "time_in_force": IOC, "post_only": c.POST_ONLY_REJECT},
            RejectReason.MARKET_ORDER_CANNOT_REST,
        ),
        (
            {"type": MARKET, "time_in_force": IOC, "side": SELL, "quote_budget": 100},
            RejectReason.INVALID_QUOTE_BUDGET,
        ),
        ({"type": MARKET, "time_in_force": IOC, "quote_budget": -1}, RejectReason.INVALID_QUOTE_BUDGET),
        # Above the largest order's amount (max price x max quantity x quote per tick-lot).
        (
            {"type": MARKET, "time_in_force": IOC, "quote_budget": 100_000_000 * 10_000_000 + 1},
            RejectReason.INVALID_QUOTE_BUDGET,
        ),
        ({"quote_budget": 100}, RejectReason.INVALID_QUOTE_BUDGET),  # a limit order has none
        ({"type": MARKET, "time_in_force": IOC, "price_ticks": 100_000_001}, RejectReason.INVALID_ORDER),
        ({"type": MARKET, "time_in_force": IOC, "price_ticks": -1}, RejectReason.INVALID_ORDER),
        ({"type": 9}, RejectReason.INVALID_ORDER),
        ({"time_in_force": 9}, RejectReason.INVALID_ORDER),
        ({"post_only": 9}, RejectReason.INVALID_ORDER),
        ({"self_trade_prevention": 9}, RejectReason.INVALID_ORDER),
        ({"time_in_force": IOC, "post_only": c.POST_ONLY_REJECT}, RejectReason.INVALID_ORDER),
        ({"time_in_force": FOK, "post_only": c.POST_ONLY_REPRICE}, RejectReason.INVALID_ORDER),
        ({"time_in_force": IOC, "price_ticks": 0}, RejectReason.INVALID_ORDER),
    ],
)
def test_order_conditions_that_do_not_go_together_are_refused(
    engine: Engine, extra: dict[str, object], reason: RejectReason
) -> None:
    ask_ladder(engine)
    fields: dict[str, object] = {"side": BUY, "price_ticks": 101}
    fields.update(extra)
    side, price = fields.pop("side"), fields.pop("price_ticks")
    report = refused(engine, new("x", side, price, 5, **fields), reason)  # type: ignore[arg-type]
    assert report.order.order_id == "x" and report.order.status == c.ORDER_STATUS_REJECTED


# -- IOC, FOK, DAY ---------------------------------------------------------------------------------


def test_an_ioc_order_trades_what_it_can_and_expires_the_rest(engine: Engine) -> None:
    ask_ladder(engine)
    outcome = engine.apply(new("i", BUY, 100, 5, time_in_force=IOC), T + 1)
    assert kinds(outcome) == ["new_order", "trade", "order_released"]
    assert trades(outcome) == [("i", "s100", 100, 3)] and released(outcome) == [("i", 2)]
    assert summary(outcome)[-1] == ("i", EXPIRED, c.CANCEL_REASON_IOC_REMAINDER)
    assert bids(engine) == []


def test_a_fok_that_cannot_fill_entirely_changes_no_book_and_expires(engine: Engine) -> None:
    ask_ladder(engine)
    books = asks(engine)
    outcome = engine.apply(new("f", BUY, 101, 9, time_in_force=FOK), T + 1)  # 8 lots within 101
    assert kinds(outcome) == ["new_order", "order_released"]
    assert released(outcome) == [("f", 9)]
    assert summary(outcome) == [("f", ACCEPTED, 0), ("f", EXPIRED, c.CANCEL_REASON_FOK_UNFILLABLE)]
    assert outcome.reports[-1].order.expired_lots == 9
    assert asks(engine) == books
    engine.validate()


def test_a_fok_that_can_fill_trades_its_whole_quantity(engine: Engine) -> None:
    ask_ladder(engine)
    outcome = engine.apply(new("f", BUY, 101, 8, time_in_force=FOK), T + 1)
    assert trades(outcome) == [("f", "s100", 100, 3), ("f", "s101", 101, 5)]
    assert released(outcome) == []
    assert asks(engine) == [(103, 4, 1)]


def test_a_fok_counts_only_what_self_trade_prevention_lets_it_reach(engine: Engine) -> None:
    engine.apply(new("own", SELL, 100, 3, account="acct-1"), T)
    engine.apply(new("other", SELL, 100, 3, account="a2"), T)
    stops = new(
        "f1", BUY, 100, 4, time_in_force=FOK, self_trade_prevention=c.SELF_TRADE_PREVENTION_CANCEL_INCOMING
    )
    outcome = engine.apply(stops, T + 1)
    assert summary(outcome)[-1] == ("f1", EXPIRED, c.CANCEL_REASON_FOK_UNFILLABLE)
    assert asks(engine) == [(100, 6, 2)]  # not even the own order was cancelled
    skips = new(
        "f2", BUY, 100, 3, time_in_force=FOK, self_trade_prevention=c.SELF_TRADE_PREVENTION_CANCEL_RESTING
    )
    outcome = engine.apply(skips, T + 2)
    assert released(outcome) == [("own", 3)] and trades(outcome) == [("f2", "other", 100, 3)]
    assert asks(engine) == []


def test_day_orders_rest_until_expire_orders_expires_them(engine: Engine) -> None:
    engine.apply(new("d1", BUY, 90, 2, time_in_force=DAY), T)
    engine.apply(new("g1", BUY, 91, 2), T)
    engine.apply(new("d2", SELL, 110, 3, account="a2", time_in_force=DAY), T)
    engine.apply(new("d3", BUY, 90, 1, time_in_force=DAY, symbol="ETH-USD"), T)
    outcome = engine.expire_orders(expire("BTC-USD"), T + 1)
    assert kinds(outcome) == ["expire_orders", "order_released", "order_released"]
    assert released(outcome) == [("d1", 2), ("d2", 3)]  # bids, then asks
    assert summary(outcome) == [
        ("d1", EXPIRED, c.CANCEL_REASON_DAY_EXPIRED),
        ("d2", EXPIRED, c.CANCEL_REASON_DAY_EXPIRED),
    ]
    assert [r.order.status for r in outcome.reports] == [c.ORDER_STATUS_EXPIRED] * 2
    assert bids(engine) == [(91, 2, 1)] and asks(engine) == []
    assert bids(engine, "ETH-USD") == [(90, 1, 1)]
    assert released(engine.expire_orders(expire(), T + 2)) == [("d3", 1)]  # every symbol
    assert engine.expire_orders(expire(), T + 3).records == []  # nothing left: nothing journaled
    engine.validate()


@pytest.mark.parametrize(
    ("command", "reason", "field"),
    [
        (expire("BTC-USD", GTC), RejectReason.INVALID_COMMAND, "time_in_force"),
        (expire("NOPE-USD"), RejectReason.UNKNOWN_SYMBOL, "symbol"),
    ],
)
def test_expire_orders_refusals_change_nothing(
    engine: Engine, command: trading_pb2.ExpireOrders, reason: RejectReason, field: str
) -> None:
    engine.apply(new("d1", BUY, 90, 2, time_in_force=DAY), T)
    before = engine.state_hash()
    with pytest.raises(CommandRejected) as error:
        engine.expire_orders(command, T + 1)
    assert error.value.reason == reason and [name for name, _ in error.value.violations] == [field]
    assert engine.state_hash() == before


# -- post-only ----------------------------------------------------------------------------------


def test_a_post_only_order_that_would_take_is_refused(engine: Engine) -> None:
    ask_ladder(engine)
    refused(engine, new("p", BUY, 100, 1, post_only=c.POST_ONLY_REJECT), RejectReason.POST_ONLY_WOULD_TAKE)
    outcome = engine.apply(new("p", BUY, 99, 1, post_only=c.POST_ONLY_REJECT), T + 1)
    assert summary(outcome) == [("p", ACCEPTED, 0)] and bids(engine) == [(99, 1, 1)]


def test_a_post_only_order_is_repriced_one_tick_behind_the_best_opposite_price(engine: Engine) -> None:
    ask_ladder(engine)
    outcome = engine.apply(new("p", BUY, 105, 2, post_only=c.POST_ONLY_REPRICE), T + 1)
    assert kinds(outcome) == ["new_order"] and outcome.records[0].new_order.price_ticks == 105
    assert outcome.reports[0].order.price_ticks == 99 and bids(engine) == [(99, 2, 1)]
    assert outcome.reports[0].order.reserve_price_ticks == 105  # what risk rebuilds from
    # Risk reserved at 105: the price a trade releases the improvement by.
    later = engine.apply(new("s", SELL, 99, 2, account="a3"), T + 2)
    assert [r.trade.buy_limit_price_ticks for r in later.records if r.HasField("trade")] == [105]
    engine.apply(new("b", BUY, 90, 1, account="a2"), T + 3)
    sell = engine.apply(new("ps", SELL, 80, 1, account="a3", post_only=c.POST_ONLY_REPRICE), T + 4)
    assert sell.reports[0].order.price_ticks == 91


def test_a_repriced_post_only_order_retried_is_answered_with_the_original(engine: Engine) -> None:
    ask_ladder(engine)
    engine.apply(new("p", BUY, 105, 2, post_only=c.POST_ONLY_REPRICE), T + 1)
    again = engine.apply(new("p2", BUY, 105, 2, post_only=c.POST_ONLY_REPRICE, client_order_id="c-p"), T + 2)
    assert again.records == [] and summary(again) == [("p", ACCEPTED, 0)]


# -- self-trade prevention ----------------------------------------------------------------------


def own_and_other(engine: Engine) -> None:
    """a1's sell of 2 at 100 first in the queue, then a2's sell of 3 at 100."""
    engine.apply(new("own", SELL, 100, 2, account="acct-1"), T)
    engine.apply(new("other", SELL, 100, 3, account="a2"), T)


def test_cancel_resting_cancels_the_own_order_and_matches_on(engine: Engine) -> None:
    own_and_other(engine)
    taker = new("b", BUY, 100, 5, self_trade_prevention=c.SELF_TRADE_PREVENTION_CANCEL_RESTING)
    outcome = engine.apply(taker, T + 1)
    assert kinds(outcome) == ["new_order", "order_released", "trade"]
    assert released(outcome) == [("own", 2)] and trades(outcome) == [("b", "other", 100, 3)]
    assert summary(outcome) == [
        ("b", ACCEPTED, 0),
        ("own", CANCELLED, c.CANCEL_REASON_SELF_TRADE_PREVENTED),
        ("b", TRADE, 0),
        ("other", TRADE, 0),
    ]
    assert bids(engine) == [(100, 2, 1)] and asks(engine) == []  # the taker rests its remainder
    engine.validate()


def test_cancel_incoming_cancels_the_arriving_remainder(engine: Engine) -> None:
    assert engine.apply(new("cheap", SELL, 99, 1, account="a2"), T).accepted
    own_and_other(engine)
    taker = new("b", BUY, 100, 5, self_trade_prevention=c.SELF_TRADE_PREVENTION_CANCEL_INCOMING)
    outcome = engine.apply(taker, T + 1)
    assert trades(outcome) == [("b", "cheap", 99, 1)] and released(outcome) == [("b", 4)]
    assert summary(outcome)[-1] == ("b", CANCELLED, c.CANCEL_REASON_SELF_TRADE_PREVENTED)
    assert outcome.reports[-1].order.cancelled_lots == 4
    assert asks(engine) == [(100, 5, 2)] and bids(engine) == []


def test_cancel_both_cancels_the_resting_and_the_arriving_order(engine: Engine) -> None:
    own_and_other(engine)
    taker = new("b", BUY, 100, 5, self_trade_prevention=c.SELF_TRADE_PREVENTION_CANCEL_BOTH)
    outcome = engine.apply(taker, T + 1)
    assert released(outcome) == [("own", 2), ("b", 5)] and trades(outcome) == []
    assert asks(engine) == [(100, 3, 1)] and bids(engine) == []


def test_without_self_trade_prevention_an_account_trades_with_itself(engine: Engine) -> None:
    own_and_other(engine)
    outcome = engine.apply(new("b", BUY, 100, 2), T + 1)
    assert trades(outcome) == [("b", "own", 100, 2)]


# -- cancel-replace -----------------------------------------------------------------------------


def test_reducing_at_the_same_price_keeps_time_priority(engine: Engine) -> None:
    engine.apply(new("first", BUY, 100, 5), T)
    engine.apply(new("second", BUY, 100, 5, account="a2"), T)
    outcome = engine.apply(replace("first", 100, 3), T + 1)
    assert kinds(outcome) == ["replace_order", "order_replaced"]
    event = outcome.records[1].order_replaced
    assert (event.old_price_ticks, event.new_price_ticks, event.old_leaves_lots, event.new_leaves_lots) == (
        100,
        100,
        5,
        3,
    )
    assert event.priority_kept and event.account_id == "acct-1" and event.side == BUY
    (report,) = outcome.reports
    assert (report.execution_type, report.order.quantity_lots, report.order.leaves_lots) == (REPLACED, 3, 3)
    assert report.journal_sequence == outcome.records[1].sequence
    hit = engine.apply(new("s", SELL, 100, 1, account="a3"), T + 2)
    assert trades(hit) == [("first", "s", 100, 1)]
    engine.validate()


@pytest.mark.parametrize(("price", "lots"), [(100, 6), (101, 5), (99, 2)])
def test_a_new_price_or_more_quantity_loses_time_priority(engine: Engine, price: int, lots: int) -> None:
    engine.apply(new("first", BUY, 100, 5), T)
    engine.apply(new("second", BUY, price, 5, account="a2"), T)
    outcome = engine.apply(replace("first", price, lots), T + 1)
    assert not outcome.records[1].order_replaced.priority_kept
    hit = engine.apply(new("s", SELL, price, 1, account="a3"), T + 2)
    assert trades(hit) == [("second", "s", price, 1)]
    engine.validate()


def test_a_replace_to_a_crossing_price_trades_at_once(engine: Engine) -> None:
    ask_ladder(engine)
    engine.apply(new("b", BUY, 90, 10), T)
    assert engine.apply(new("x", SELL, 95, 1, account="a3"), T).accepted  # rests: b's 90 does not reach it
    outcome = engine.apply(replace("b", 100, 10), T + 1)
    assert kinds(outcome) == ["replace_order", "order_replaced", "trade", "trade"]
    assert trades(outcome) == [("b", "x", 95, 1), ("b", "s100", 100, 3)]
    assert summary(outcome)[0] == ("b", REPLACED, 0)
    # Risk re-sized the reservation to 100 first: the trades' reserved price is the new one.
    assert {r.trade.buy_limit_price_ticks for r in outcome.records if r.HasField("trade")} == {100}
    assert bids(engine) == [(100, 6, 1)]
    engine.validate()


def test_a_replace_after_fills_keeps_them(engine: Engine) -> None:
    engine.apply(new("b", BUY, 100, 10), T)
    engine.apply(new("s", SELL, 100, 4, account="a2"), T)
    outcome = engine.apply(replace("b", 100, 7), T + 1)
    order = outcome.reports[0].order
    assert (order.quantity_lots, order.filled_lots, order.leaves_lots, order.status) == (
        7,
        4,
        3,
        c.ORDER_STATUS_PARTIALLY_FILLED,
    )
    assert outcome.records[1].order_replaced.new_leaves_lots == 3
    refused(engine, replace("b", 100, 4), RejectReason.REPLACE_QUANTITY_TOO_SMALL)
    engine.validate()


def test_replace_refusals_change_nothing(engine: Engine) -> None:
    engine.apply(new("b", BUY, 100, 5), T)
    engine.apply(new("gone", BUY, 100, 5), T)
    engine.apply(new("p", BUY, 90, 5, post_only=c.POST_ONLY_REJECT), T)
    engine.apply(new("s", SELL, 101, 1, account="a2"), T)
    engine.apply(cancel_order("gone"), T)
    refused(engine, replace("nope", 100, 5), RejectReason.UNKNOWN_ORDER)
    report = refused(engine, replace("b", 100, 5, account="a2"), RejectReason.NOT_ORDER_OWNER)
    assert report.order.symbol == ""  # another account's order is not shown
    refused(engine, replace("gone", 100, 5), RejectReason.ORDER_NOT_OPEN)
    refused(engine, replace("b", 0, 5), RejectReason.INVALID_ORDER)
    refused(engine, replace("b", 100_000_001, 5), RejectReason.INVALID_ORDER)
    refused(engine, replace("b", 100, 0), RejectReason.INVALID_ORDER)
    refused(engine, replace("b", 100, 10_000_001), RejectReason.INVALID_ORDER)
    refused(engine, replace("p", 101, 5), RejectReason.POST_ONLY_WOULD_TAKE)
    engine.set_instrument_status(status("BTC-USD", c.INSTRUMENT_STATUS_HALTED), T)
    refused(engine, replace("b", 99, 5), RejectReason.INSTRUMENT_HALTED)


def test_a_replace_grown_before_risk_rebuilt_is_refused(engine: Engine) -> None:
    """Risk's grow of a replace lives in one epoch of its state: after a rebuild the engine
    refuses a replace grown in an older one (its grow is gone); an empty epoch is not checked."""
    engine.apply(new("b", BUY, 100, 5), T)
    engine.change_risk_epoch("epoch-2", T)
    grown_before = replace("b", 101, 5)
    grown_before.replace_order.risk_epoch = "epoch-1"
    refused(engine, grown_before, RejectReason.RISK_REBUILT)
    grown_now = replace("b", 101, 5)
    grown_now.replace_order.risk_epoch = "epoch-2"
    assert summary(engine.apply(grown_now, T + 1))[0] == ("b", REPLACED, 0)
    assert summary(engine.apply(replace("b", 102, 5), T + 2))[0] == ("b", REPLACED, 0)
    engine.validate()


# -- mass cancel ---------------------------------------------------------------------------------


def test_mass_cancel_cancels_every_open_order_of_the_account(engine: Engine) -> None:
    engine.apply(new("b1", BUY, 90, 1), T)
    engine.apply(new("s1", SELL, 110, 2), T)
    engine.apply(new("e1", BUY, 90, 3, symbol="ETH-USD"), T)
    engine.apply(new("other", BUY, 91, 4, account="a2"), T)
    one_symbol = engine.apply(mass_cancel("acct-1", "ETH-USD"), T + 1)
    assert kinds(one_symbol) == ["mass_cancel", "order_released"] and released(one_symbol) == [("e1", 3)]
    outcome = engine.apply(mass_cancel("acct-1"), T + 2)
    assert outcome.cancelled_count == 2
    assert released(outcome) == [("b1", 1), ("s1", 2)]
    assert summary(outcome) == [
        ("b1", CANCELLED, c.CANCEL_REASON_MASS_CANCEL),
        ("s1", CANCELLED, c.CANCEL_REASON_MASS_CANCEL),
    ]
    assert bids(engine) == [(91, 4, 1)]
    nothing = engine.apply(mass_cancel("acct-1"), T + 3)
    assert (nothing.records, nothing.reports, nothing.cancelled_count) == ([], [], 0)
    engine.validate()


def test_mass_cancel_refusals_and_halted_instruments(engine: Engine) -> None:
    engine.apply(new("b1", BUY, 90, 1), T)
    refused(engine, mass_cancel("bad account!"), RejectReason.INVALID_ACCOUNT_ID)
    refused(engine, mass_cancel("", "BTC-USD"), RejectReason.INVALID_ACCOUNT_ID)
    refused(engine, mass_cancel("acct-1", "NOPE-USD"), RejectReason.UNKNOWN_SYMBOL)
    engine.set_instrument_status(status("BTC-USD", c.INSTRUMENT_STATUS_HALTED), T)
    assert released(engine.apply(mass_cancel("acct-1", "BTC-USD"), T + 1)) == [("b1", 1)]


# -- instrument status ---------------------------------------------------------------------------


def test_a_halted_or_closed_instrument_refuses_orders_and_keeps_its_book(engine: Engine) -> None:
    engine.apply(new("b1", BUY, 90, 1), T)
    engine.apply(new("b2", BUY, 91, 1), T)
    outcome = engine.set_instrument_status(status("BTC-USD", c.INSTRUMENT_STATUS_HALTED), T + 1)
    assert kinds(outcome) == ["set_instrument_status"]
    assert outcome.instrument == as_listed(btc_usd(), c.INSTRUMENT_STATUS_HALTED)
    assert engine.instrument_list() == [
        as_listed(btc_usd(), c.INSTRUMENT_STATUS_HALTED),
        as_listed(btc_usd("ETH-USD")),
    ]
    refused(engine, new("x", SELL, 90, 1, account="a2"), RejectReason.INSTRUMENT_HALTED)
    assert engine.apply(new("e", BUY, 90, 1, symbol="ETH-USD"), T + 2).accepted  # other symbols trade
    assert engine.apply(cancel_order("b1"), T + 2).accepted
    assert bids(engine) == [(91, 1, 1)]
    engine.set_instrument_status(status("BTC-USD", c.INSTRUMENT_STATUS_CLOSED), T + 3)
    refused(engine, new("x", SELL, 90, 1, account="a2"), RejectReason.INSTRUMENT_CLOSED)
    again = engine.set_instrument_status(status("BTC-USD", c.INSTRUMENT_STATUS_CLOSED), T + 4)
    assert again.records == []  # the status it has: a no-op
    engine.set_instrument_status(status("BTC-USD", c.INSTRUMENT_STATUS_TRADING), T + 5)
    assert trades(engine.apply(new("x", SELL, 90, 1, account="a2"), T + 6)) == [("b2", "x", 91, 1)]
    engine.validate()


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (status("NOPE-USD", c.INSTRUMENT_STATUS_HALTED), RejectReason.UNKNOWN_SYMBOL),
        (status("BTC-USD", c.INSTRUMENT_STATUS_UNSPECIFIED), RejectReason.INVALID_COMMAND),
        (status("BTC-USD", 7), RejectReason.INVALID_COMMAND),
    ],
)
def test_set_instrument_status_refusals_change_nothing(
    engine: Engine, command: trading_pb2.SetInstrumentStatus, reason: RejectReason
) -> None:
    before = engine.state_hash()
    with pytest.raises(CommandRejected) as error:
        engine.set_instrument_status(command, T)
    assert error.value.reason == reason
    assert engine.state_hash() == before


def test_create_instrument_ignores_a_given_status(engine: Engine) -> None:
    listed = engine.instrument_list()[0]
    assert listed.status == c.INSTRUMENT_STATUS_TRADING
    assert engine.create_instrument(listed, T).records == []  # what it lists can be given back
    outcome = engine.create_instrument(as_listed(btc_usd("SOL-USD"), c.INSTRUMENT_STATUS_HALTED), T)
    assert outcome.records[0].instrument_created.status == c.INSTRUMENT_STATUS_UNSPECIFIED  # journaled unset
    assert engine.instrument_status["SOL-USD"] == c.INSTRUMENT_STATUS_TRADING


# -- report numbers and replay ----------------------------------------------------------------


def test_every_journaled_report_is_numbered_per_account(engine: Engine) -> None:
    first = engine.apply(new("s", SELL, 100, 2, account="a2"), T)
    second = engine.apply(new("b", BUY, 100, 5, time_in_force=IOC), T + 1)
    numbers = [(r.order.account_id, r.account_sequence) for r in first.reports + second.reports]
    assert numbers == [("a2", 1), ("acct-1", 1), ("acct-1", 2), ("a2", 2), ("acct-1", 3)]
    refusal = refused(engine, new("s", SELL, 100, 2, account="a2"), RejectReason.DUPLICATE_ORDER_ID)
    assert refusal.account_sequence == 0
    retry = engine.apply(new("b2", BUY, 100, 5, time_in_force=IOC, client_order_id="c-b"), T + 2)
    assert retry.records == [] and retry.reports[0].account_sequence == 0
    assert engine.account_sequences == {"acct-1": 3, "a2": 2}


def test_every_new_record_kind_replays_to_the_same_state() -> None:
    engine = Engine()
    journal = list(engine.create_instrument(btc_usd(), T).records)
    commands = [
        new("s1", SELL, 100, 3, account="a2", time_in_force=DAY),
        new("s2", SELL, 101, 3, account="acct-1"),
        new("m", BUY, 0, 5, type=MARKET, time_in_force=IOC, quote_budget=350),
        new("p", BUY, 101, 2, account="a3", post_only=c.POST_ONLY_REPRICE),
        new("stp", BUY, 101, 2, self_trade_prevention=c.SELF_TRADE_PREVENTION_CANCEL_BOTH),
        replace("p", 99, 4, account="a3"),
        new("f", SELL, 90, 50, account="a2", time_in_force=FOK),
        mass_cancel("a3"),
        new("d", BUY, 95, 1, account="a2", time_in_force=DAY),
    ]
    for step, command in enumerate(commands):
        journal += engine.apply(command, T + step).records
    journal += engine.set_instrument_status(status("BTC-USD", c.INSTRUMENT_STATUS_HALTED), T + 20).records
    journal += engine.expire_orders(expire(), T + 21).records
    found = {record.WhichOneof("record") for record in journal}
    assert found >= {
        "trade",
        "order_released",
        "order_replaced",
        "replace_order",
        "mass_cancel",
        "expire_orders",
        "set_instrument_status",
    }
    engine.validate()
    replayed = Engine()
    for record in journal:
        replayed.replay(trading_pb2.JournalRecord.FromString(record.SerializeToString()))
    replayed.finish_replay()
    assert replayed.state_hash() == engine.state_hash()
    assert replayed.account_sequences == engine.account_sequences
    assert replayed.instrument_status == engine.instrument_status


def test_replay_refuses_a_replace_event_that_does_not_regenerate() -> None:
    engine = Engine()
    journal = list(engine.create_instrument(btc_usd(), T).records)
    journal += engine.apply(new("b", BUY, 100, 5), T).records
    journal += engine.apply(replace("b", 100, 3), T).records
    journal[-1].order_replaced.new_leaves_lots = 4
    replayed = Engine()
    with pytest.raises(ReplayError, match="is not what replay regenerated"):
        for record in journal:
            replayed.replay(record)


def test_a_journal_written_before_order_types_replays_to_the_same_books() -> None:
    # Made by the engine of aa2ae5b (limit GTC orders, cancels, fences, risk epochs; 215 trades):
    # every event it journaled must be regenerated byte for byte (replay checks that), and the
    # books must end as they did then. Zero in every new field means the old behaviour.
    lines = (DATA / "journal_before_order_types.txt").read_text().splitlines()
    header = json.loads(lines[0])
    engine = Engine()
    for line in lines[1:]:
        engine.replay(trading_pb2.JournalRecord.FromString(base64.b64decode(line)))
    engine.finish_replay()
    engine.validate()
    assert (engine.last_sequence, engine.last_trade_id) == (header["records"], header["last_trade_id"])
    assert [list(level) for level in bids(engine)] == header["bids"]
    assert [list(level) for level in asks(engine)] == header["asks"]


def test_validate_catches_broken_new_state(engine: Engine) -> None:
    ask_ladder(engine)
    outcome = engine.apply(new("i", BUY, 100, 5, time_in_force=IOC), T + 1)
    order = engine.orders["i"]
    assert (order.filled_lots, order.expired_lots) == (3, 2) and outcome.accepted
    engine.validate()
    order.expired_lots = 1  # filled + leaves + cancelled + expired no longer = quantity
    with pytest.raises(InvariantViolation, match="conserve"):
        engine.validate()
    order.expired_lots = 2
    order.status = c.ORDER_STATUS_CANCELLED
    with pytest.raises(InvariantViolation, match="status"):
        engine.validate()
    order.status = c.ORDER_STATUS_EXPIRED
    engine.instrument_status["BTC-USD"] = c.INSTRUMENT_STATUS_HALTED  # without its refusal
    with pytest.raises(InvariantViolation, match="refusals"):
        engine.validate()
