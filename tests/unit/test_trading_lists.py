"""ListOpenOrders' index of open orders, and the rows of the fills projection (pure parts)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.common.v1 import common_pb2
from backbone.trading.v1 import trading_pb2
from tests.instruments import btc_usd
from tests.unit.test_trading_engine import BUY, SELL, T, cancel, new
from trading.engine import Engine
from trading.fills import client_order_ids, fill_rows
from trading.open_orders import OpenOrderIndex

ACCOUNTS = ("acct-a", "acct-b", "acct-c")


def walk(index: OpenOrderIndex, account: str, symbol: str, page_size: int) -> list[str]:
    """Every page of an account's open orders, as ListOpenOrders and the gateway's tokens walk them."""
    listed: list[str] = []
    after = (0, "")
    while True:
        orders, more = index.page(account, symbol, after, page_size)
        listed += [order.order_id for order in orders]
        assert len(orders) == page_size or not more
        if not more:
            return listed
        after = (orders[-1].created_ns, orders[-1].order_id)


def reference(engine: Engine, account: str, symbol: str = "") -> list[str]:
    """The account's open orders by (created_ns, order_id), from the engine's own list."""
    mine = [o for o in engine.open_orders() if o.account_id == account and (not symbol or o.symbol == symbol)]
    return [o.order_id for o in sorted(mine, key=lambda o: (o.created_ns, o.order_id))]


# A flow: (account, buy?, price offset, lots) new orders and cancels of earlier ones, in batches.
_STEP = st.one_of(
    st.tuples(st.sampled_from(ACCOUNTS), st.booleans(), st.integers(-3, 3), st.integers(1, 4)),
    st.tuples(st.just("cancel"), st.integers(0, 200)),
)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(_STEP, min_size=1, max_size=8), min_size=1, max_size=12),
    page_size=st.integers(1, 4),
)
def test_pages_walk_exactly_the_open_orders_of_an_account(
    batches: list[list[tuple[object, ...]]], page_size: int
) -> None:
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    engine.create_instrument(btc_usd("ETH-USD"), T)
    index = OpenOrderIndex(engine.orders)
    placed: list[tuple[str, str]] = []
    clock = T
    for batch in batches:
        records: list[trading_pb2.JournalRecord] = []
        for step in batch:
            clock += 1 if len(placed) % 3 else 0  # some orders share a timestamp, as a batch's do
            if step[0] == "cancel":
                if placed:
                    order_id, account = placed[int(step[1]) % len(placed)]  # type: ignore[call-overload]
                    records += engine.apply(cancel(order_id, account), clock).records
                continue
            account, buy, offset, lots = step
            order_id = f"o{len(placed):03d}"
            symbol = "ETH-USD" if len(placed) % 4 == 3 else "BTC-USD"
            command = new(order_id, BUY if buy else SELL, 5_000_000 + int(offset), int(lots), str(account))  # type: ignore[call-overload]
            command.new_order.symbol = symbol
            outcome = engine.apply(command, clock)
            records += outcome.records
            placed.append((order_id, str(account)))
        index.committed(records)  # the batch is committed
        for account in ACCOUNTS:
            assert walk(index, account, "", page_size) == reference(engine, account)
            assert walk(index, account, "ETH-USD", page_size) == reference(engine, account, "ETH-USD")
    rebuilt = OpenOrderIndex(engine.orders)
    rebuilt.catch_up()  # after a restart's replay: the same pages
    assert len(rebuilt) == len(engine.open_orders())  # a fresh index holds the open orders only
    for account in ACCOUNTS:
        assert walk(rebuilt, account, "", page_size) == reference(engine, account)


def test_a_taker_filled_on_arrival_never_joins_and_closed_orders_are_dropped() -> None:
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    index = OpenOrderIndex(engine.orders)
    index.committed(engine.apply(new("o1", BUY, 5_000_000, 2, "acct-a"), T + 1).records)
    index.committed(engine.apply(new("o2", BUY, 5_000_000, 2, "acct-a"), T + 2).records)
    index.committed(engine.apply(new("o3", SELL, 5_000_000, 2, "acct-b"), T + 3).records)  # fills o1
    assert len(index) == 2  # o1 and o2; o3 was filled on arrival
    orders, more = index.page("acct-a", "", (0, ""), 10)
    assert [o.order_id for o in orders] == ["o2"] and not more  # o1 is closed: left out
    assert index.page("acct-b", "", (0, ""), 10) == ([], False)

    # Many orders rest, then close: the next page that walks over them drops them all.
    for number in range(200):
        engine.apply(new(f"r{number}", BUY, 4_000_000, 1, "acct-c"), T + 4)
    index.catch_up()
    for number in range(200):
        engine.apply(cancel(f"r{number}", "acct-c"), T + 5)
    assert index.page("acct-c", "", (0, ""), 10) == ([], False)
    assert len(index) == 2  # o1 (not walked past enough to compact acct-a) and o2
    # And an account that keeps adding compacts as it grows: its candidates stay within twice
    # the open ones at its last compaction plus a slack.
    for number in range(1_000):
        engine.apply(new(f"s{number}", BUY, 3_000_000, 1, "acct-d"), T + 6)
        index.catch_up()
        engine.apply(cancel(f"s{number}", "acct-d"), T + 6)
    assert len(index) < 2 + 100


def test_a_fill_row_per_side_with_its_fee_and_liquidity() -> None:
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    engine.apply(new("maker", SELL, 5_000_000, 3, "acct-s"), T + 1)
    outcome = engine.apply(new("taker", BUY, 5_000_000, 2, "acct-b"), T + 2)
    trade_record = next(r for r in outcome.records if r.HasField("trade"))
    buy, sell = fill_rows(
        "shard-0", trade_record.sequence, trade_record.trade, client_order_ids(engine.orders)
    )
    trade = trade_record.trade
    assert buy == (
        "shard-0", "acct-b", trade.trade_id, BUY, "taker", "c-taker", "BTC-USD", 5_000_000, 2,
        trade.buyer_fee, common_pb2.LIQUIDITY_SIDE_TAKER, T + 2, trade_record.sequence,
    )  # fmt: skip
    assert sell == (
        "shard-0", "acct-s", trade.trade_id, SELL, "maker", "c-maker", "BTC-USD", 5_000_000, 2,
        trade.seller_fee, common_pb2.LIQUIDITY_SIDE_MAKER, T + 2, trade_record.sequence,
    )  # fmt: skip
    assert trade.buyer_fee > trade.seller_fee > 0  # taker 20 bps, maker 10 bps
    assert client_order_ids(engine.orders)("never-placed") == ""
