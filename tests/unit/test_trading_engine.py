"""The matching engine: reports, exact trade amounts, refusals, instruments, deterministic replay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2
from tests.instruments import as_listed, btc_usd
from tests.orders import cancel_order as cancel
from tests.orders import new_order as new
from trading.engine import Engine, InstrumentRejected, Outcome, ReplayError, check_instrument, no_report

BUY, SELL = common_pb2.SIDE_BUY, common_pb2.SIDE_SELL
T = 1_700_000_000_000_000_000


@pytest.fixture
def engine() -> Engine:
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    return engine


def kinds(outcome: Outcome) -> list[str]:
    return [record.WhichOneof("record") or "" for record in outcome.records]


def execution_types(outcome: Outcome) -> list[int]:
    return [report.execution_type for report in outcome.reports]


def test_an_accepted_order_rests_and_is_reported_new(engine: Engine) -> None:
    outcome = engine.apply(new("o1", BUY, 5_000_000, 20_000), T + 1)
    assert kinds(outcome) == ["new_order"]
    assert outcome.records[0].sequence == 2 and outcome.records[0].timestamp_ns == T + 1
    (report,) = outcome.reports
    assert report.execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED
    assert report.order.status == common_pb2.ORDER_STATUS_NEW
    assert (report.order.leaves_lots, report.order.filled_lots, report.order.cancelled_lots) == (20_000, 0, 0)
    assert report.order.type == common_pb2.ORDER_TYPE_LIMIT
    assert report.order.time_in_force == common_pb2.TIME_IN_FORCE_GTC
    assert engine.books["BTC-USD"].snapshot() == ([(5_000_000, 20_000, 1)], [])
    stored = engine.order_message("o1")
    assert stored is not None and stored == report.order
    engine.validate()


def test_a_crossing_order_trades_at_the_makers_price_with_exact_amounts(engine: Engine) -> None:
    # Sell 0.5 BTC at 50,000.00; buy 0.5 at 50,100.00 -> one trade at 50,000.00.
    engine.apply(new("sell", SELL, 5_000_000, 5_000, account="bob"), T + 1)
    outcome = engine.apply(new("buy", BUY, 5_010_000, 5_000, account="alice"), T + 2)
    assert kinds(outcome) == ["new_order", "trade"]
    trade = outcome.records[1].trade
    assert outcome.records[1].sequence == 4
    assert trade.trade_id == 1
    assert (trade.price_ticks, trade.quantity_lots) == (5_000_000, 5_000)
    assert (trade.buy_order_id, trade.sell_order_id) == ("buy", "sell")
    assert (trade.buy_account_id, trade.sell_account_id) == ("alice", "bob")
    assert trade.maker_side == SELL
    assert (trade.base_asset, trade.quote_asset) == ("BTC", "USD")
    assert trade.base_amount == 50_000_000  # 0.5 BTC in satoshis
    assert trade.quote_amount == 25_000_000_000  # 25,000 USD in micro-dollars
    assert trade.buyer_fee == 50_000_000  # taker, 20 bps
    assert trade.seller_fee == 25_000_000  # maker, 10 bps
    assert trade.buy_limit_price_ticks == 5_010_000
    assert (trade.buy_leaves_lots, trade.sell_leaves_lots) == (0, 0)
    assert trade.timestamp_ns == T + 2

    accepted, taker, maker = outcome.reports
    assert accepted.execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED
    assert accepted.order.status == common_pb2.ORDER_STATUS_NEW
    for report, order_id, side, fee in (
        (taker, "buy", common_pb2.LIQUIDITY_SIDE_TAKER, 50_000_000),
        (maker, "sell", common_pb2.LIQUIDITY_SIDE_MAKER, 25_000_000),
    ):
        assert report.execution_type == common_pb2.EXECUTION_TYPE_TRADE
        assert report.order.order_id == order_id
        assert report.liquidity_side == side
        assert report.last_fee == fee
        assert (report.trade_id, report.last_price_ticks, report.last_quantity_lots) == (1, 5_000_000, 5_000)
        assert report.order.status == common_pb2.ORDER_STATUS_FILLED
        assert (report.order.filled_lots, report.order.leaves_lots) == (5_000, 0)
        assert report.order.filled_notional_ticks_lots == 5_000_000 * 5_000
    assert engine.books["BTC-USD"].snapshot() == ([], [])
    engine.validate()


def test_a_taker_sweeping_several_makers_reports_each_fill_in_order(engine: Engine) -> None:
    engine.apply(new("a1", SELL, 101, 2, account="m1"), T)
    engine.apply(new("a2", SELL, 100, 3, account="m2"), T)
    outcome = engine.apply(new("b", BUY, 101, 10), T)
    assert kinds(outcome) == ["new_order", "trade", "trade"]
    trades = [record.trade for record in outcome.records[1:]]
    assert [(t.trade_id, t.sell_order_id, t.price_ticks, t.quantity_lots) for t in trades] == [
        (1, "a2", 100, 3),
        (2, "a1", 101, 2),
    ]
    assert [t.buy_leaves_lots for t in trades] == [7, 5]
    assert [t.sell_leaves_lots for t in trades] == [0, 0]
    taker_reports = [r for r in outcome.reports[1:] if r.order.order_id == "b"]
    assert [r.order.leaves_lots for r in taker_reports] == [7, 5]
    assert all(r.order.status == common_pb2.ORDER_STATUS_PARTIALLY_FILLED for r in taker_reports)
    assert [r.order.order_id for r in outcome.reports] == ["b", "b", "a2", "b", "a1"]
    resting = engine.order_message("b")
    assert resting is not None
    assert (resting.status, resting.filled_lots, resting.leaves_lots) == (
        common_pb2.ORDER_STATUS_PARTIALLY_FILLED,
        5,
        5,
    )
    assert resting.filled_notional_ticks_lots == 3 * 100 + 2 * 101
    assert engine.books["BTC-USD"].snapshot() == ([(101, 5, 1)], [])
    engine.validate()


def test_a_partially_filled_maker_keeps_its_place(engine: Engine) -> None:
    engine.apply(new("a1", SELL, 100, 10, account="m"), T)
    engine.apply(new("a2", SELL, 100, 10, account="m"), T)
    outcome = engine.apply(new("b1", BUY, 100, 4, account="t"), T)
    maker = outcome.reports[2]
    assert maker.order.order_id == "a1"
    assert maker.order.status == common_pb2.ORDER_STATUS_PARTIALLY_FILLED
    assert maker.order.leaves_lots == 6
    trade = outcome.records[1].trade
    assert (trade.buy_leaves_lots, trade.sell_leaves_lots, trade.maker_side) == (0, 6, SELL)
    second = engine.apply(new("b2", BUY, 100, 8, account="t"), T)
    assert [(r.trade.sell_order_id, r.trade.quantity_lots) for r in second.records[1:]] == [
        ("a1", 6),
        ("a2", 2),
    ]
    engine.validate()


def test_a_sell_taker_pays_the_taker_fee_and_the_buyer_the_maker_fee(engine: Engine) -> None:
    engine.apply(new("b", BUY, 333_333, 7, account="buyer"), T)
    outcome = engine.apply(new("s", SELL, 1, 7, account="seller"), T)
    trade = outcome.records[1].trade
    assert trade.maker_side == BUY and trade.price_ticks == 333_333
    assert trade.quote_amount == 333_333 * 7
    assert trade.buyer_fee == 333_333 * 7 * 10 // 10_000  # maker fee, rounded down
    assert trade.seller_fee == 333_333 * 7 * 20 // 10_000  # taker fee, rounded down
    assert trade.buy_limit_price_ticks == 333_333
    assert trade.base_amount == 7 * 10_000


def test_cancel_releases_the_open_quantity(engine: Engine) -> None:
    engine.apply(new("a", SELL, 100, 10, account="m"), T)
    engine.apply(new("b", BUY, 100, 4, account="t"), T)
    outcome = engine.apply(cancel("a", "m"), T + 5)
    assert kinds(outcome) == ["cancel_order", "order_released"]
    released = outcome.records[1].order_released
    assert (released.order_id, released.account_id, released.symbol) == ("a", "m", "BTC-USD")
    assert released.side == SELL
    assert (released.released_lots, released.timestamp_ns) == (6, T + 5)
    (report,) = outcome.reports
    assert report.execution_type == common_pb2.EXECUTION_TYPE_CANCELLED
    assert report.order.status == common_pb2.ORDER_STATUS_CANCELLED
    assert (report.order.filled_lots, report.order.leaves_lots, report.order.cancelled_lots) == (4, 0, 6)
    assert engine.books["BTC-USD"].snapshot() == ([], [])
    again = engine.apply(cancel("a", "m"), T + 6)
    assert again.records == []
    assert again.reports[0].reject_reason == RejectReason.ORDER_NOT_OPEN.number
    engine.validate()


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (cancel("missing"), "UNKNOWN_ORDER"),
        (cancel(""), "UNKNOWN_ORDER"),
        (cancel("resting", "someone-else"), "NOT_ORDER_OWNER"),
        (cancel("resting", ""), "NOT_ORDER_OWNER"),
        (new("resting", BUY, 100, 1), "DUPLICATE_ORDER_ID"),
        (new("x", BUY, 100, 1, symbol="ETH-USD"), "UNKNOWN_SYMBOL"),
        (new("x", BUY, 100, 1, symbol=""), "UNKNOWN_SYMBOL"),
        (new("x", 0, 100, 1), "INVALID_ORDER"),
        (new("x", 7, 100, 1), "INVALID_ORDER"),
        (new("x", BUY, 0, 1), "INVALID_ORDER"),
        (new("x", BUY, -5, 1), "INVALID_ORDER"),
        (new("x", BUY, 100_000_001, 1), "INVALID_ORDER"),
        (new("x", BUY, 100, 0), "INVALID_ORDER"),
        (new("x", BUY, 100, -1), "INVALID_ORDER"),
        (new("x", BUY, 100, 10_000_001), "INVALID_ORDER"),
        (new("x", BUY, 100, 1, type=5), "INVALID_ORDER"),
        (new("x", BUY, 100, 1, time_in_force=5), "INVALID_ORDER"),
        (new("", BUY, 100, 1), "INVALID_ORDER"),
        (new("x", BUY, 100, 1, account=""), "INVALID_ORDER"),
        (new("x", BUY, 100, 1, account="system:fees"), "INVALID_ORDER"),
        (new("x\n", BUY, 100, 1), "INVALID_ORDER"),
        (new("x y", BUY, 100, 1), "INVALID_ORDER"),
        (new("x" * 65, BUY, 100, 1), "INVALID_ORDER"),
        (new("x", BUY, 100, 1, account="acct-1\n"), "INVALID_ORDER"),
        (new("x", BUY, 100, 1, client_order_id=""), "INVALID_ORDER"),
        (new("x", BUY, 100, 1, client_order_id="c\n"), "INVALID_ORDER"),
        (new("x", BUY, 100, 1, client_order_id="c" * 65), "INVALID_ORDER"),
        (new("x", BUY, 100, 1, client_order_id="with space"), "INVALID_ORDER"),
        (trading_pb2.OrderCommand(), "INVALID_ORDER"),
    ],
)
def test_refusals_are_reported_and_change_nothing(
    engine: Engine, command: trading_pb2.OrderCommand, reason: str
) -> None:
    engine.apply(new("resting", SELL, 200, 1), T)
    before = engine.state_hash()
    outcome = engine.apply(command, T + 1)
    assert outcome.records == [] and not outcome.accepted
    (report,) = outcome.reports
    assert report.execution_type == common_pb2.EXECUTION_TYPE_REJECTED
    assert RejectReason.from_number(report.reject_reason) == reason
    assert report.order.status in (common_pb2.ORDER_STATUS_REJECTED, common_pb2.ORDER_STATUS_NEW)
    if reason == "NOT_ORDER_OWNER":
        assert report.order.price_ticks == 0  # nothing about someone else's order leaks
    assert engine.state_hash() == before


def test_sequences_and_trade_ids_run_without_gaps(engine: Engine) -> None:
    sequences = [record.sequence for record in engine.apply(new("a", SELL, 100, 5), T).records]
    for i in range(5):
        sequences += [r.sequence for r in engine.apply(new(f"b{i}", BUY, 100, 1), T).records]
    sequences += [r.sequence for r in engine.apply(new("z", BUY, 0, 1), T).records]  # rejected
    assert sequences == list(range(2, 2 + len(sequences)))
    assert engine.last_trade_id == 5 and engine.last_sequence == sequences[-1]


def test_engine_time_never_goes_backwards(engine: Engine) -> None:
    first = engine.apply(new("a", SELL, 100, 5), T + 100)
    second = engine.apply(new("b", BUY, 100, 1), T + 50)
    assert first.records[0].timestamp_ns == T + 100
    assert second.records[0].timestamp_ns == T + 100
    assert second.records[1].trade.timestamp_ns == T + 100


# -- instruments ---------------------------------------------------------------------------


def test_creating_the_same_instrument_again_is_a_no_op(engine: Engine) -> None:
    outcome = engine.create_instrument(btc_usd(), T)
    assert outcome.records == [] and outcome.instrument == as_listed(btc_usd())
    different = btc_usd()
    different.taker_fee_bps = 30
    with pytest.raises(InstrumentRejected) as refused:
        engine.create_instrument(different, T)
    assert refused.value.reason == "INSTRUMENT_EXISTS"
    assert engine.instrument_list() == [as_listed(btc_usd())]


def test_a_new_instrument_is_journaled_and_gets_an_empty_book(engine: Engine) -> None:
    outcome = engine.create_instrument(btc_usd("ETH-USD"), T)
    assert kinds(outcome) == ["instrument_created"]
    assert outcome.records[0].instrument_created == btc_usd("ETH-USD")
    assert [i.symbol for i in engine.instrument_list()] == ["BTC-USD", "ETH-USD"]
    assert engine.books["ETH-USD"].snapshot() == ([], [])


def _changed(**fields: object) -> common_pb2.Instrument:
    instrument = btc_usd("NEW-USD")
    for name, value in fields.items():
        setattr(instrument, name, value)
    return instrument


@pytest.mark.parametrize(
    ("instrument", "field"),
    [
        (_changed(symbol=""), "symbol"),
        (_changed(symbol="btc-usd"), "symbol"),
        (_changed(symbol="BTC USD"), "symbol"),
        (_changed(symbol="A" * 40), "symbol"),
        (_changed(symbol="NEW-USD\n"), "symbol"),
        (_changed(symbol="NEW/USD"), "symbol"),
        (_changed(symbol="NEW_USD"), "symbol"),
        (_changed(base_asset="BTC\n"), "base_asset"),
        (_changed(base_asset=""), "base_asset"),
        (_changed(base_asset="btc"), "base_asset"),
        (_changed(quote_asset="BTC"), "quote_asset"),
        (_changed(base_scale=19), "base_scale"),
        (_changed(tick_size=""), "tick_size"),
        (_changed(tick_size="0"), "tick_size"),
        (_changed(tick_size="-0.01"), "tick_size"),
        (_changed(tick_size="1e-2"), "tick_size"),
        (_changed(tick_size="0.01\n"), "tick_size"),
        (_changed(tick_size=" 0.01"), "tick_size"),
        (_changed(lot_size="0.0001" + "0" * 40), "lot_size"),
        (_changed(lot_size="abc"), "lot_size"),
        (_changed(min_quantity_lots=0), "min_quantity_lots"),
        (_changed(max_quantity_lots=0), "max_quantity_lots"),
        (_changed(max_price_ticks=0), "max_price_ticks"),
        (_changed(maker_fee_bps=10_001), "maker_fee_bps"),
        (_changed(taker_fee_bps=1_001), "taker_fee_bps"),  # the gateway's largest rate is the engine's
        (_changed(base_minor_per_lot=1), "base_minor_per_lot"),
        (_changed(quote_minor_per_tick_lot=0), "quote_minor_per_tick_lot"),
        (_changed(lot_size="0.000000001"), "lot_size"),  # finer than BTC's 8 places
        (_changed(max_price_ticks=(1 << 62)), "max_price_ticks"),  # notional beyond 64 bits
    ],
)
def test_invalid_instruments_are_refused_naming_the_field(
    engine: Engine, instrument: common_pb2.Instrument, field: str
) -> None:
    assert field in [name for name, _ in check_instrument(instrument)]
    with pytest.raises(InstrumentRejected) as refused:
        engine.create_instrument(instrument, T)
    assert refused.value.reason == "INVALID_INSTRUMENT"
    assert field in [name for name, _ in refused.value.violations]
    assert "NEW-USD" not in engine.instruments


def test_check_instrument_accepts_a_derived_definition() -> None:
    assert check_instrument(btc_usd()) == []


# -- replay --------------------------------------------------------------------------------


def replay_into_new_engine(records: list[trading_pb2.JournalRecord]) -> Engine:
    copy = Engine()
    for record in records:
        copy.replay(trading_pb2.JournalRecord.FromString(record.SerializeToString()))
    copy.finish_replay()
    return copy


command_strategy = st.lists(
    st.one_of(
        st.tuples(
            st.just("new"),
            st.sampled_from([BUY, SELL]),
            st.integers(min_value=98, max_value=102),
            st.integers(min_value=1, max_value=6),
            st.sampled_from(["alice", "bob", "carol"]),
        ),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=100), st.booleans()),
        st.tuples(st.just("bad"), st.integers(min_value=0, max_value=3)),
        # Resolve an order of unknown outcome: a submitted one (found) or one never sent (fenced).
        st.tuples(st.just("resolve"), st.integers(min_value=0, max_value=100), st.booleans()),
        # A new order id reusing a submitted order's client order id: the same order, or another.
        st.tuples(st.just("reuse"), st.integers(min_value=0, max_value=100), st.booleans()),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(command_strategy)
def test_random_flow_keeps_invariants_and_replays_to_the_same_state(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    engine = Engine()
    journal = list(engine.create_instrument(btc_usd(), T).records)
    submitted: list[tuple[str, str]] = []
    fenced: list[str] = []
    filled_by_trades: dict[str, int] = {}
    for step, op in enumerate(ops):
        now = T + step
        if op[0] == "resolve":
            known = bool(submitted) and op[2]
            order_id, owner = submitted[op[1] % len(submitted)] if known else (f"o{step}", "alice")
            order, records = engine.resolve_order(order_id, owner, now)
            assert (order is not None) == (order_id in engine.orders) == (not records) == known
            journal.extend(records)
            if not known:
                fenced.append(order_id)
                assert engine.apply(new(order_id, BUY, 100, 1), now).reports[0].reject_reason == (
                    RejectReason.ORDER_FENCED.number
                )
            engine.validate()
            continue
        if op[0] == "reuse":
            if not submitted:
                continue
            holder = engine.orders[submitted[op[1] % len(submitted)][0]]
            lots = holder.quantity_lots if op[2] else holder.quantity_lots + 1
            retry = new(
                f"r{step}",
                holder.side,
                holder.price_ticks,
                lots,
                account=holder.account_id,
                client_order_id=holder.client_order_id,
            )
            before = engine.state_hash()
            outcome = engine.apply(retry, now)
            assert not outcome.records and engine.state_hash() == before
            (report,) = outcome.reports
            assert report.order == holder.message()
            continue
        if op[0] == "new":
            _, side, price, lots, account = op
            order_id = f"o{step}"
            submitted.append((order_id, account))
            outcome = engine.apply(new(order_id, side, price, lots, account=account), now)
            assert outcome.accepted
        elif op[0] == "cancel":
            if not submitted:
                continue
            order_id, owner = submitted[op[1] % len(submitted)]
            outcome = engine.apply(cancel(order_id, owner if op[2] else "intruder"), now)
        else:
            bad = [new("o0", BUY, 100, 1), new("x", BUY, 0, 1), cancel("nope"), new("y", 0, 1, 1)][op[1]]
            free = "o0" not in engine.orders and "o0" not in engine.fences
            outcome = engine.apply(bad, now)
            if op[1] == 0 and free:
                assert outcome.accepted  # "o0" was free after all
                submitted.append(("o0", "acct-1"))
        journal.extend(outcome.records)
        for record in outcome.records:
            if record.HasField("trade"):
                trade = record.trade
                assert trade.buy_account_id != "" and trade.sell_account_id != ""
                assert trade.quote_amount == trade.price_ticks * trade.quantity_lots
                for order_id in (trade.buy_order_id, trade.sell_order_id):
                    filled_by_trades[order_id] = filled_by_trades.get(order_id, 0) + trade.quantity_lots
        engine.validate()
        book = engine.books["BTC-USD"]
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask
    for order_id, order in engine.orders.items():
        assert order.filled_lots == filled_by_trades.get(order_id, 0)
    assert [r.sequence for r in journal] == list(range(1, len(journal) + 1))
    replayed = replay_into_new_engine(journal)
    replayed.validate()
    assert replayed.state_hash() == engine.state_hash()
    assert replayed.books["BTC-USD"].snapshot() == engine.books["BTC-USD"].snapshot()
    assert (replayed.last_sequence, replayed.last_trade_id) == (engine.last_sequence, engine.last_trade_id)
    assert replayed.client_orders == engine.client_orders and replayed.fences == engine.fences
    assert sorted(replayed.fences) == sorted(fenced)


def _journal_with_a_trade() -> list[trading_pb2.JournalRecord]:
    engine = Engine()
    records = list(engine.create_instrument(btc_usd(), T).records)
    records += engine.apply(new("a", SELL, 100, 5), T).records
    records += engine.apply(new("b", BUY, 100, 2), T).records
    records += engine.apply(cancel("a"), T).records
    return records


def test_replay_refuses_a_journal_that_does_not_regenerate() -> None:
    records = _journal_with_a_trade()
    assert [r.WhichOneof("record") for r in records] == [
        "instrument_created",
        "new_order",
        "new_order",
        "trade",
        "cancel_order",
        "order_released",
    ]
    tampered = [trading_pb2.JournalRecord.FromString(r.SerializeToString()) for r in records]
    tampered[3].trade.quote_amount += 1
    with pytest.raises(ReplayError):
        replay_into_new_engine(tampered)
    with pytest.raises(ReplayError):  # a gap
        replay_into_new_engine(records[:1] + records[2:])
    with pytest.raises(ReplayError):  # the last command's events are missing
        replay_into_new_engine(records[:-1])
    duplicate = trading_pb2.JournalRecord(sequence=3, timestamp_ns=T, new_order=records[1].new_order)
    with pytest.raises(ReplayError):  # a command that is refused on replay (a duplicate order id)
        replay_into_new_engine([*records[:2], duplicate])
    earlier = trading_pb2.JournalRecord.FromString(records[2].SerializeToString())
    earlier.timestamp_ns = records[1].timestamp_ns - 1
    with pytest.raises(ReplayError):  # a new order journaled at a time before its predecessor's
        replay_into_new_engine([*records[:2], earlier, *records[3:]])


def test_an_order_journaled_under_an_older_id_rule_still_replays() -> None:
    # Before ids were one rule, the gateway took client order ids with spaces; such an order is
    # in somebody's journal, and replay must rebuild it rather than refuse to start.
    live = Engine()
    records = list(live.create_instrument(btc_usd(), T).records)
    old = new("legacy", SELL, 100, 5, client_order_id="my order 1")
    assert kinds(live.apply(old, T)) == []  # today's rule refuses it live
    accepted_then = trading_pb2.JournalRecord(sequence=2, timestamp_ns=T, new_order=old.new_order)
    rebuilt = replay_into_new_engine([*records, accepted_then])
    assert rebuilt.orders["legacy"].client_order_id == "my order 1"
    assert rebuilt.last_sequence == 2


# -- client order ids and fences ---------------------------------------------------------------


def test_client_order_ids_are_indexed_per_account(engine: Engine) -> None:
    engine.apply(new("o1", BUY, 100, 1, client_order_id="mine"), T)
    other = engine.apply(new("o2", BUY, 100, 1, account="acct-2", client_order_id="mine"), T)
    assert kinds(other) == ["new_order"]  # another account's id of the same spelling is its own
    assert engine.client_orders == {("acct-1", "mine"): "o1", ("acct-2", "mine"): "o2"}
    engine.validate()


def test_the_same_order_again_is_answered_with_the_original_and_journals_nothing(engine: Engine) -> None:
    engine.apply(new("o1", SELL, 100, 5, client_order_id="mine"), T + 1)
    engine.apply(new("taker", BUY, 100, 2, account="acct-2"), T + 2)  # o1 is partly filled now
    before, sequence = engine.state_hash(), engine.last_sequence
    outcome = engine.apply(new("o1-retry", SELL, 100, 5, client_order_id="mine"), T + 3)
    assert outcome.records == [] and not outcome.accepted
    (report,) = outcome.reports
    assert report.execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED
    assert report.order == engine.order_message("o1")  # the original, as it is now
    assert (report.order.filled_lots, report.order.status) == (2, common_pb2.ORDER_STATUS_PARTIALLY_FILLED)
    assert "o1-retry" not in engine.orders
    assert (engine.state_hash(), engine.last_sequence) == (before, sequence)
    # Unspecified type and time in force are the limit GTC the original was.
    explicit = new(
        "o1-again",
        SELL,
        100,
        5,
        client_order_id="mine",
        type=common_pb2.ORDER_TYPE_LIMIT,
        time_in_force=common_pb2.TIME_IN_FORCE_GTC,
    )
    assert execution_types(engine.apply(explicit, T + 4)) == [common_pb2.EXECUTION_TYPE_ACCEPTED]


@pytest.mark.parametrize(
    "change",
    [
        {"price_ticks": 101},
        {"quantity_lots": 6},
        {"side": BUY},
        {"symbol": "ETH-USD"},
    ],
)
def test_a_different_order_with_a_used_client_order_id_is_refused_naming_the_original(
    engine: Engine, change: dict[str, object]
) -> None:
    engine.create_instrument(btc_usd(symbol="ETH-USD"), T)
    engine.apply(new("o1", SELL, 100, 5, client_order_id="mine"), T + 1)
    fields: dict[str, object] = {"side": SELL, "price_ticks": 100, "quantity_lots": 5, **change}
    side, price, lots = fields.pop("side"), fields.pop("price_ticks"), fields.pop("quantity_lots")
    before = engine.state_hash()
    outcome = engine.apply(new("o2", side, price, lots, client_order_id="mine", **fields), T + 2)  # type: ignore[arg-type]
    (report,) = outcome.reports
    assert outcome.records == [] and engine.state_hash() == before
    assert report.execution_type == common_pb2.EXECUTION_TYPE_REJECTED
    assert report.reject_reason == RejectReason.DUPLICATE_CLIENT_ORDER_ID.number
    assert report.order.order_id == "o1" and report.order == engine.order_message("o1")


def test_a_closed_order_keeps_its_client_order_id(engine: Engine) -> None:
    engine.apply(new("o1", BUY, 100, 1, client_order_id="mine"), T)
    engine.apply(cancel("o1"), T)
    (report,) = engine.apply(new("o2", BUY, 100, 1, client_order_id="mine"), T).reports
    assert report.execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED
    assert (report.order.order_id, report.order.status) == ("o1", common_pb2.ORDER_STATUS_CANCELLED)


def test_resolving_finds_a_journaled_order_and_fences_an_unknown_one(engine: Engine) -> None:
    engine.apply(new("live", BUY, 100, 1), T)
    order, records = engine.resolve_order("live", "acct-1", T + 1)
    assert order is engine.orders["live"] and records == []

    sequence = engine.last_sequence
    order, records = engine.resolve_order("lost", "acct-1", T + 2)
    assert order is None
    (record,) = records
    assert record.sequence == sequence + 1 == engine.last_sequence
    assert record.order_fenced == common_pb2.OrderFenced(
        order_id="lost", account_id="acct-1", timestamp_ns=T + 2
    )
    assert engine.fences == {"lost": "acct-1"}
    assert engine.resolve_order("lost", "acct-1", T + 3) == (None, [])  # asked again: nothing new

    # The NewOrder still on its way is refused, and nothing about the order exists.
    before = engine.state_hash()
    late = engine.apply(new("lost", BUY, 100, 1, client_order_id="c-lost"), T + 4)
    assert late.records == [] and engine.state_hash() == before
    assert late.reports[0].reject_reason == RejectReason.ORDER_FENCED.number
    assert engine.order_message("lost") is None
    assert engine.apply(cancel("lost"), T + 5).reports[0].reject_reason == RejectReason.UNKNOWN_ORDER.number
    # Its client order id was never taken: a new order may use it.
    assert kinds(engine.apply(new("again", BUY, 100, 1, client_order_id="c-lost"), T + 6)) == ["new_order"]
    engine.validate()


def test_replay_rebuilds_the_client_order_id_index_and_the_fences() -> None:
    live = Engine()
    journal = list(live.create_instrument(btc_usd(), T).records)
    journal += live.apply(new("o1", SELL, 100, 5, client_order_id="mine"), T).records
    journal += live.resolve_order("lost", "acct-1", T)[1]
    journal += live.apply(new("o2", BUY, 100, 5, account="acct-2"), T).records
    rebuilt = replay_into_new_engine(journal)
    assert rebuilt.state_hash() == live.state_hash()
    assert rebuilt.client_orders == live.client_orders == {("acct-1", "mine"): "o1", ("acct-2", "c-o2"): "o2"}
    assert rebuilt.fences == {"lost": "acct-1"}
    (report,) = rebuilt.apply(new("o3", SELL, 100, 5, client_order_id="mine"), T).reports
    assert (report.order.order_id, report.order.status) == ("o1", common_pb2.ORDER_STATUS_FILLED)
    refused = rebuilt.apply(new("lost", BUY, 100, 1), T).reports[0]
    assert refused.reject_reason == RejectReason.ORDER_FENCED.number


def test_a_fence_of_a_journaled_order_does_not_replay() -> None:
    live = Engine()
    journal = list(live.create_instrument(btc_usd(), T).records)
    journal += live.apply(new("o1", BUY, 100, 1), T).records
    bogus = trading_pb2.JournalRecord(
        sequence=3, timestamp_ns=T, order_fenced=common_pb2.OrderFenced(order_id="o1", account_id="acct-1")
    )
    with pytest.raises(ReplayError):
        replay_into_new_engine([*journal, bogus])
    fence = live.resolve_order("x", "acct-1", T)[1]
    with pytest.raises(ReplayError):  # the same fence twice
        replay_into_new_engine(
            [*journal, *fence, trading_pb2.JournalRecord(sequence=4, order_fenced=fence[0].order_fenced)]
        )


def test_a_client_order_id_journaled_twice_before_the_rule_still_replays() -> None:
    # Before trading kept the index, a Redis flush let a used client order id through again:
    # such a journal must replay (the index keeps the first), not refuse to start.
    live = Engine()
    records = list(live.create_instrument(btc_usd(), T).records)
    records += live.apply(new("first", BUY, 100, 1, client_order_id="mine"), T).records
    second = new("second", BUY, 100, 1, client_order_id="mine")
    assert kinds(live.apply(second, T)) == []  # today's rule answers it with the first
    accepted_then = trading_pb2.JournalRecord(sequence=3, timestamp_ns=T, new_order=second.new_order)
    rebuilt = replay_into_new_engine([*records, accepted_then])
    assert set(rebuilt.orders) == {"first", "second"}
    assert rebuilt.client_orders == {("acct-1", "mine"): "first"}


def test_reports_name_the_last_sequence_risk_applies_for_them(engine: Engine) -> None:
    # A resting order has nothing risk must apply (its reservation came first): 0, no read waits.
    rested = engine.apply(new("rest", SELL, 100, 5), T)
    assert [r.journal_sequence for r in rested.reports] == [0]
    # A fill: every report of it names the trade's record, what a balance read must reflect.
    filled = engine.apply(new("take", BUY, 100, 2), T + 1)
    trade_sequence = next(r.sequence for r in filled.records if r.HasField("trade"))
    assert {r.journal_sequence for r in filled.reports} == {trade_sequence}
    # A cancel: its release.
    cancelled = engine.apply(cancel("rest"), T + 2)
    release_sequence = next(r.sequence for r in cancelled.records if r.HasField("order_released"))
    assert {r.journal_sequence for r in cancelled.reports} == {release_sequence}
    # Several fills: every report names the last trade's record.
    engine.apply(new("ask-1", SELL, 100, 1), T + 3)
    engine.apply(new("ask-2", SELL, 101, 1), T + 3)
    swept = engine.apply(new("sweep", BUY, 101, 4), T + 4)
    assert kinds(swept) == ["new_order", "trade", "trade"]
    assert {r.journal_sequence for r in swept.reports} == {swept.records[-1].sequence}


def test_reports_made_in_a_result_are_the_reports_made_alone() -> None:
    # The stream's answer has each command's reports made in its result (report=...reports.add);
    # they, and the outcome's references to them, equal what the engine makes on its own.
    commands = [
        new("rest", SELL, 100, 5, account="bob"),
        new("take", BUY, 101, 7),
        new("bad id", BUY, 100, 1),
        new("again", BUY, 100, 1, client_order_id="c-take"),
        new("take", BUY, 100, 1, client_order_id="other"),
        cancel("take"),
        cancel("rest", account="acct-1"),
        cancel("missing"),
        trading_pb2.OrderCommand(),
    ]
    alone, in_results = Engine(), Engine()
    for engine in (alone, in_results):
        engine.create_instrument(btc_usd(), T)
    response = trading_pb2.StreamOrdersResponse()
    for number, command in enumerate(commands):
        expected = alone.apply(command, T + number)
        result = response.results.add()
        outcome = in_results.apply(command, T + number, result.reports.add)
        assert list(result.reports) == expected.reports
        assert outcome.reports == expected.reports and outcome.records == expected.records
    assert [len(result.reports) for result in response.results] == [1, 3, 1, 1, 1, 1, 1, 1, 1]
    assert in_results.state_hash() == alone.state_hash()


def test_commands_applied_without_reports_journal_and_change_the_same() -> None:
    # Replay's report maker (no_report): the same records and state, account report numbers
    # included, and no report, for every path that reports (rest, fills, releases, a replace
    # that trades, an IOC remainder, self-trade prevention).
    commands = [
        new("rest", SELL, 100, 5, account="bob"),
        new("take", BUY, 101, 7),
        new("ioc", SELL, 90, 9, account="carol", time_in_force=common_pb2.TIME_IN_FORCE_IOC),
        new("ask", SELL, 102, 3, account="bob"),
        new(
            "own",
            BUY,
            102,
            4,
            account="bob",
            self_trade_prevention=common_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH,
        ),
        new("bid", BUY, 95, 2, account="dave"),
        new("late", SELL, 105, 2, account="erin"),
        trading_pb2.OrderCommand(
            replace_order=trading_pb2.ReplaceOrder(
                order_id="bid", account_id="dave", price_ticks=110, quantity_lots=3
            )
        ),
        cancel("bid", account="dave"),
    ]
    reported, silent = Engine(), Engine()
    for engine in (reported, silent):
        engine.create_instrument(btc_usd(), T)
    for number, command in enumerate(commands):
        expected = reported.apply(command, T + number)
        outcome = silent.apply(command, T + number, no_report)
        assert expected.reports and outcome.reports == []
        assert outcome.records == expected.records
    assert silent.state_hash() == reported.state_hash()
