"""The risk store and service against a real (embedded) Redis."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import redis.asyncio as redis

from backbone.common.v1 import common_pb2
from backbone.money import InstrumentMath, derive_instrument
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.config import Settings
from backbone.runtime.errors import from_rpc_error
from backbone.runtime.outbox import OutboxSender
from backbone.runtime.server import RunningServer
from risk import exposure
from risk.app import create_app
from risk.exposure import LegOp, ReleaseOp, ReserveOp
from risk.store import AssetFigures, RiskStateError, RiskStore
from tests.integration.conftest import (
    EPOCH,
    ReadyStore,
    deposit_through_ledger_stream,
    make_ready,
    next_ledger_sequence,
)

INSTRUMENT = derive_instrument(
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
    maker_fee_bps=10,
    taker_fee_bps=25,
)
MATH = InstrumentMath.of(INSTRUMENT)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def figures(store: RiskStore, account: str) -> dict[str, tuple[int, int, int]]:
    return {f.asset: (f.total, f.reserved, f.available) for f in await store.account_figures(account)}


def reserve_op(
    account: str, order: str, side: int, price: int, lots: int, math: InstrumentMath = MATH
) -> ReserveOp:
    op = exposure.plan_reserve(
        risk_pb2.Reserve(
            order_id=order,
            account_id=account,
            symbol=math.instrument.symbol,
            side=side,  # type: ignore[arg-type]
            price_ticks=price,
            quantity_lots=lots,
        ),
        math,
    )
    assert isinstance(op, ReserveOp)
    return op


def plain_reserve(account: str, order: str, asset: str, amount: int) -> ReserveOp:
    return ReserveOp(account, order, asset, amount, "BUY", "X-Y", 1)


def trade(
    sequence: int,
    *,
    buyer: str,
    seller: str,
    buy_order: str,
    sell_order: str,
    price: int,
    lots: int,
    limit: int,
    buy_leaves: int,
    sell_leaves: int,
    maker_side: int = common_pb2.SIDE_SELL,
    math: InstrumentMath = MATH,
) -> common_pb2.Trade:
    quote = math.quote_amount(price, lots)
    maker, taker = math.instrument.maker_fee_bps, math.instrument.taker_fee_bps
    return common_pb2.Trade(
        trade_id=sequence,
        symbol=math.instrument.symbol,
        price_ticks=price,
        quantity_lots=lots,
        buy_order_id=buy_order,
        sell_order_id=sell_order,
        buy_account_id=buyer,
        sell_account_id=seller,
        maker_side=maker_side,  # type: ignore[arg-type]
        base_asset=math.instrument.base_asset,
        quote_asset=math.instrument.quote_asset,
        base_amount=math.base_amount(lots),
        quote_amount=quote,
        buyer_fee=math.fee(quote, maker if maker_side == common_pb2.SIDE_BUY else taker),
        seller_fee=math.fee(quote, maker if maker_side == common_pb2.SIDE_SELL else taker),
        buy_limit_price_ticks=limit,
        buy_leaves_lots=buy_leaves,
        sell_leaves_lots=sell_leaves,
    )


async def test_reserve_until_the_balance_is_used_up(store: ReadyStore) -> None:
    account = unique("alice")
    assert await store.deposit(account, "USD", 1000)
    first = await store.run_reservations(
        [
            plain_reserve(account, "o1", "USD", 600),
            plain_reserve(account, "o2", "USD", 401),
            plain_reserve(account, "o3", "USD", 400),
            plain_reserve(account, "o4", "USD", 1),
        ]
    )
    assert [(o.accepted, o.reason) for o in first] == [
        (True, ""),
        (False, "INSUFFICIENT_BALANCE"),
        (True, ""),
        (False, "INSUFFICIENT_BALANCE"),
    ]
    assert (first[1].asset, first[1].amount) == ("USD", 401)
    assert await figures(store, account) == {"USD": (1000, 1000, 0)}
    assert await store.order(account, "o2") == {}
    assert (await store.order(account, "o3"))["amount"] == "400"


async def test_a_refused_reserve_leaves_no_trace(store: ReadyStore) -> None:
    account = unique("nobody")
    (outcome,) = await store.run_reservations([plain_reserve(account, "o", "EUR", 5)])
    assert not outcome.accepted
    assert await store.account_figures(account) == []


async def test_reservation_amounts_are_exact(store: ReadyStore) -> None:
    account = unique("bob")
    await store.deposit(account, "USD", 10**12)
    await store.deposit(account, "BTC", 10**12)
    buy = reserve_op(account, "b", common_pb2.SIDE_BUY, 45_001, 3)
    sell = reserve_op(account, "s", common_pb2.SIDE_SELL, 45_001, 7)
    outcomes = await store.run_reservations([buy, sell])
    assert [(o.accepted, o.asset, o.amount) for o in outcomes] == [
        (True, "USD", 135_003 + 338),
        (True, "BTC", 7_000_000),
    ]
    assert await figures(store, account) == {
        "USD": (10**12, 135_341, 10**12 - 135_341),
        "BTC": (10**12, 7_000_000, 10**12 - 7_000_000),
    }
    before_ms = time.time_ns() // 1_000_000 - 60_000
    record = await store.order(account, "b")
    assert before_ms < int(record.pop("reserved_at")) <= time.time_ns() // 1_000_000  # for the reconciler
    assert record == {
        "asset": "USD",
        "amount": "135341",
        "original": "135341",
        "side": "BUY",
        "symbol": "BTC-USD",
        "price_ticks": "45001",
    }


async def test_amounts_beyond_double_precision_stay_exact(store: ReadyStore) -> None:
    account = unique("whale")
    big = (1 << 62) + 1  # not representable as a double
    await store.deposit(account, "USD", big)
    outcomes = await store.run_reservations(
        [
            plain_reserve(account, "o1", "USD", 1 << 62),
            plain_reserve(account, "o2", "USD", 2),
            plain_reserve(account, "o3", "USD", 1),
        ]
    )
    assert [o.accepted for o in outcomes] == [True, False, True]
    assert await figures(store, account) == {"USD": (big, big, 0)}
    with pytest.raises(RiskStateError) as raised:  # a total past 64 bits: refused whole
        await store.deposit(account, "USD", 1 << 62)
    assert raised.value.reason == "OVERFLOW"
    assert await figures(store, account) == {"USD": (big, big, 0)}


async def test_a_repeated_reserve_returns_the_first_answer(store: ReadyStore) -> None:
    account = unique("carol")
    await store.deposit(account, "USD", 1000)
    batch = [plain_reserve(account, "o1", "USD", 300), plain_reserve(account, "o1", "USD", 300)]
    again = [plain_reserve(account, "o1", "USD", 999)]
    outcomes = [*await store.run_reservations(batch), *await store.run_reservations(again)]
    assert {(o.accepted, o.asset, o.amount) for o in outcomes} == {(True, "USD", 300)}
    assert await figures(store, account) == {"USD": (1000, 300, 700)}


async def test_release_drops_the_reservation_once(store: ReadyStore) -> None:
    account = unique("dave")
    await store.deposit(account, "USD", 1000)
    await store.run_reservations([plain_reserve(account, "o1", "USD", 250)])
    outcomes = await store.run_reservations(
        [ReleaseOp(account, "o1"), ReleaseOp(account, "o1"), ReleaseOp(account, "never")]
    )
    assert [(o.accepted, o.asset, o.amount) for o in outcomes] == [
        (True, "USD", 250),
        (True, "", 0),
        (True, "", 0),
    ]
    assert await figures(store, account) == {"USD": (1000, 0, 1000)}


async def test_trades_move_totals_and_reservations_exactly(store: ReadyStore) -> None:
    source = unique("shard")
    buyer, seller = unique("buyer"), unique("seller")
    await store.deposit(buyer, "USD", 10_000_000)
    await store.deposit(seller, "BTC", 50_000_000)
    limit = 100_000
    buy = reserve_op(buyer, "b", common_pb2.SIDE_BUY, limit, 10)
    sell = reserve_op(seller, "s", common_pb2.SIDE_SELL, 90_000, 10)
    assert all(o.accepted for o in await store.run_reservations([buy, sell]))
    # Price improvement: the buyer fills below the limit, in two trades.
    first = trade(
        1,
        buyer=buyer,
        seller=seller,
        buy_order="b",
        sell_order="s",
        price=90_000,
        lots=4,
        limit=limit,
        buy_leaves=6,
        sell_leaves=6,
    )
    second = trade(
        2,
        buyer=buyer,
        seller=seller,
        buy_order="b",
        sell_order="s",
        price=95_000,
        lots=6,
        limit=limit,
        buy_leaves=0,
        sell_leaves=0,
        maker_side=common_pb2.SIDE_BUY,
    )
    legs = [*exposure.trade_legs(1, first, MATH)]
    assert await store.apply_legs(source, legs) == 2
    spent_1 = first.quote_amount + first.buyer_fee
    assert await figures(store, buyer) == {
        "USD": (
            10_000_000 - spent_1,
            MATH.buy_reservation(limit, 6),
            10_000_000 - spent_1 - MATH.buy_reservation(limit, 6),
        ),
        "BTC": (4_000_000, 0, 4_000_000),
    }
    assert await figures(store, seller) == {
        "BTC": (46_000_000, 6_000_000, 40_000_000),
        "USD": (first.quote_amount - first.seller_fee, 0, first.quote_amount - first.seller_fee),
    }
    assert await store.apply_legs(source, exposure.trade_legs(2, second, MATH)) == 2
    spent = spent_1 + second.quote_amount + second.buyer_fee
    assert spent < buy.amount  # the improvement is released, not kept
    assert await figures(store, buyer) == {
        "USD": (10_000_000 - spent, 0, 10_000_000 - spent),
        "BTC": (10_000_000, 0, 10_000_000),
    }
    received = first.quote_amount - first.seller_fee + second.quote_amount - second.seller_fee
    assert await figures(store, seller) == {
        "BTC": (40_000_000, 0, 40_000_000),
        "USD": (received, 0, received),
    }
    assert await store.order(buyer, "b") == {} and await store.order(seller, "s") == {}


async def test_a_self_trade_is_exact(store: ReadyStore) -> None:
    source = unique("shard")
    me = unique("self")
    await store.deposit(me, "USD", 5_000_000)
    await store.deposit(me, "BTC", 3_000_000)
    buy = reserve_op(me, "b", common_pb2.SIDE_BUY, 20_000, 3)
    sell = reserve_op(me, "s", common_pb2.SIDE_SELL, 20_000, 2)
    assert all(o.accepted for o in await store.run_reservations([buy, sell]))
    fill = trade(
        7,
        buyer=me,
        seller=me,
        buy_order="b",
        sell_order="s",
        price=20_000,
        lots=2,
        limit=20_000,
        buy_leaves=1,
        sell_leaves=0,
    )
    assert await store.apply_legs(source, exposure.trade_legs(7, fill, MATH)) == 2
    fees = fill.buyer_fee + fill.seller_fee
    assert fees > 0
    held = MATH.buy_reservation(20_000, 1)
    assert await figures(store, me) == {
        "USD": (5_000_000 - fees, held, 5_000_000 - fees - held),
        "BTC": (3_000_000, 0, 3_000_000),
    }
    assert await store.apply_legs(source, exposure.trade_legs(7, fill, MATH)) == 0
    assert (await figures(store, me))["USD"][0] == 5_000_000 - fees


async def test_order_released_drops_the_reservation(store: ReadyStore) -> None:
    source = unique("shard")
    account = unique("erin")
    await store.deposit(account, "BTC", 9_000_000)
    await store.run_reservations([reserve_op(account, "s", common_pb2.SIDE_SELL, 1, 5)])
    released = common_pb2.OrderReleased(order_id="s", account_id=account, released_lots=5)
    assert await store.apply_legs(source, [exposure.release_leg(3, released)]) == 1
    assert await figures(store, account) == {"BTC": (9_000_000, 0, 9_000_000)}
    assert await store.apply_legs(source, [exposure.release_leg(3, released)]) == 0


async def test_replayed_events_are_skipped_and_the_cursor_only_moves_up(store: ReadyStore) -> None:
    source = unique("shard")
    buyer, seller = unique("b"), unique("s")
    await store.deposit(buyer, "USD", 10_000_000)
    await store.deposit(seller, "BTC", 10_000_000)
    trades = [
        trade(
            s,
            buyer=buyer,
            seller=seller,
            buy_order=f"b{s}",
            sell_order=f"s{s}",
            price=1_000,
            lots=1,
            limit=1_000,
            buy_leaves=0,
            sell_leaves=0,
        )
        for s in (1, 2, 3)
    ]
    legs = [leg for s, t in enumerate(trades, start=1) for leg in exposure.trade_legs(s, t, MATH)]
    assert await store.apply_legs(source, legs[:4]) == 4
    after_two = await figures(store, buyer), await figures(store, seller)
    assert await store.apply_legs(source, legs[:4]) == 0
    assert (await figures(store, buyer), await figures(store, seller)) == after_two
    assert await store.apply_legs(source, legs) == 2  # a redelivered batch overlapping the old one
    assert (await figures(store, buyer))["BTC"][0] == 3_000_000
    assert await store.cursor(source) == 0
    assert await store.advance_cursor(source, 3) == 3
    assert await store.advance_cursor(source, 2) == 3
    assert await store.cursor(source) == 3
    # Another shard's sequence numbers are its own: they are not skipped.
    other = unique("shard")
    assert await store.apply_legs(other, legs[:2]) == 2


async def test_deposits_are_applied_once(store: ReadyStore) -> None:
    # A deposit is a ledger event: applied once per (account, ledger sequence), so redelivery is harmless.
    account = unique("frank")
    sequence = next_ledger_sequence()
    assert await store.deposit(account, "USD", 700, sequence=sequence)
    assert not await store.deposit(account, "USD", 700, sequence=sequence)
    assert await store.deposit(account, "USD", 1)
    assert await store.account_figures(account) == [AssetFigures("USD", 701, 0)]


async def test_a_leg_that_would_make_a_total_negative_is_refused_whole(store: ReadyStore) -> None:
    source = unique("shard")
    poor, rich, other = unique("poor"), unique("rich"), unique("other")
    await store.deposit(poor, "USD", 100)
    await store.deposit(poor, "BTC", 5)
    await store.deposit(rich, "USD", 10_000)
    bad = LegOp(poor, 40, 10, "x", (("BTC", 3), ("USD", -101)), 0)
    later = LegOp(poor, 44, 11, "y", (("USD", 7),), 0)
    fine = LegOp(rich, 45, 11, "z", (("USD", -1),), 0)
    with pytest.raises(RiskStateError) as raised:
        await store.apply_legs(source, [bad, later, fine])
    assert raised.value.reason == "NEGATIVE_TOTAL"
    assert raised.value.leg == bad
    assert await figures(store, poor) == {"USD": (100, 0, 100), "BTC": (5, 0, 5)}
    assert (await figures(store, rich))["USD"][0] == 9_999
    # The account stays stopped at the refused op, even in a later batch...
    with pytest.raises(RiskStateError) as again:
        await store.apply_legs(source, [later])
    assert again.value.reason == "HALTED"
    # ... until the refused op itself goes through.
    await store.deposit(poor, "USD", 1)
    assert await store.apply_legs(source, [bad, later, fine]) == 2
    assert await figures(store, poor) == {"USD": (7, 0, 7), "BTC": (8, 0, 8)}
    assert await store.apply_legs(source, [LegOp(other, 4, 1, "o", (("USD", 0),), 0)]) == 1


async def test_one_accounts_ops_in_a_batch_apply_in_order(store: ReadyStore) -> None:
    # An account's reserves and releases of a batch run in one script, in the batch's order:
    # each sees what the ones before it held or released; other accounts' ops are their own.
    me, other = unique("mixed"), unique("other")
    await store.deposit(me, "USD", 1000)
    await store.deposit(other, "USD", 100)
    outcomes = await store.run_reservations(
        [
            plain_reserve(me, "a", "USD", 700),
            plain_reserve(other, "x", "USD", 100),
            plain_reserve(me, "b", "USD", 400),  # 300 left: refused
            ReleaseOp(me, "a"),
            plain_reserve(me, "c", "USD", 400),  # fits again after the release
            plain_reserve(me, "d", "USD", 601),  # 600 left: refused
            plain_reserve(other, "y", "USD", 1),
            plain_reserve(me, "a", "USD", 5),  # released before: a new reservation of 5
            plain_reserve(me, "c", "USD", 9),  # held before: its first answer
        ]
    )
    assert [(o.accepted, o.reason, o.asset, o.amount) for o in outcomes] == [
        (True, "", "USD", 700),
        (True, "", "USD", 100),
        (False, "INSUFFICIENT_BALANCE", "USD", 400),
        (True, "", "USD", 700),
        (True, "", "USD", 400),
        (False, "INSUFFICIENT_BALANCE", "USD", 601),
        (False, "INSUFFICIENT_BALANCE", "USD", 1),
        (True, "", "USD", 5),
        (True, "", "USD", 400),
    ]
    assert await figures(store, me) == {"USD": (1000, 405, 595)}
    assert await figures(store, other) == {"USD": (100, 100, 0)}
    assert await store.order(me, "b") == {} and await store.order(me, "d") == {}
    assert (await store.order(me, "a"))["amount"] == "5"


async def test_a_refused_leg_stops_its_account_in_the_batch_only_from_there(store: ReadyStore) -> None:
    source = unique("shard")
    me, other = unique("me"), unique("other")
    await store.deposit(me, "USD", 100)
    await store.deposit(other, "USD", 50)
    first = LegOp(me, 8, 2, "p", (("USD", -30),), 0)
    bad = LegOp(me, 12, 3, "q", (("BTC", 1), ("USD", -71)), 0)
    later = LegOp(me, 16, 4, "r", (("USD", 1),), 0)
    fine = LegOp(other, 13, 3, "s", (("USD", -50),), 0)
    with pytest.raises(RiskStateError) as raised:
        await store.apply_legs(source, [first, bad, fine, later])
    assert (raised.value.leg, raised.value.reason, raised.value.detail) == (
        bad,
        "NEGATIVE_TOTAL",
        ("USD", "-1"),
    )
    # The first leg only; the refused one's BTC is put back (to 0).
    assert await figures(store, me) == {"USD": (70, 0, 70), "BTC": (0, 0, 0)}
    assert await figures(store, other) == {"USD": (0, 0, 0)}
    await store.deposit(me, "USD", 1)
    assert await store.apply_legs(source, [first, bad, fine, later]) == 2
    assert await figures(store, me) == {"USD": (1, 0, 1), "BTC": (1, 0, 1)}


async def test_partial_fills_of_one_order_in_one_batch(store: ReadyStore) -> None:
    source = unique("shard")
    buyer = unique("buyer")
    await store.deposit(buyer, "USD", 10**17)  # past 2^53: the exact path of the arithmetic
    (held,) = await store.run_reservations([plain_reserve(buyer, "b", "USD", 9 * 10**15 + 7)])
    assert held.accepted
    legs = [
        LegOp(buyer, 4 * s, s, "b", (("BTC", 1), ("USD", -(10**15 + s))), cap)
        for s, cap in ((1, 8 * 10**15), (2, 5 * 10**15 + 3), (3, 6 * 10**15), (4, 0))
    ]
    assert await store.apply_legs(source, legs[:3]) == 3
    spent = 3 * 10**15 + 6
    assert await figures(store, buyer) == {
        "USD": (10**17 - spent, 5 * 10**15 + 3, 10**17 - spent - 5 * 10**15 - 3),
        "BTC": (3, 0, 3),
    }
    assert (await store.order(buyer, "b"))["amount"] == str(5 * 10**15 + 3)
    assert await store.apply_legs(source, legs) == 1
    assert (await figures(store, buyer))["USD"][1] == 0
    assert await store.order(buyer, "b") == {}


async def test_the_scripts_arithmetic_is_exact(client: redis.Redis) -> None:
    # The Lua helpers add and compare 64-bit amounts held as strings, in doubles only where
    # those are exact: checked against Python's integers around every boundary they handle.
    helpers = (Path(exposure.__file__).parent / "lua" / "lib.lua").read_text()
    script = client.register_script(
        helpers
        + """
local out = {}
for i = 1, #ARGV, 2 do
  local sum = add(ARGV[i], ARGV[i + 1])
  out[#out + 1] = (sum or 'nil') .. ' ' .. tostring(ge(ARGV[i], ARGV[i + 1]))
    .. ' ' .. tostring(sum ~= nil and fits_int64(sum))
end
return table.concat(out, ',')
"""
    )
    rnd = random.Random(7)
    edges = [0, 1, 10**9 - 1, 10**9, 10**9 + 1, 2**53 - 1, 2**53, 2**53 + 1, 10**15, 10**16]
    edges += [2**63 - 1, 2**62, 10**18, 10**18 - 1]
    values = edges + [-v for v in edges] + [rnd.randint(-(2**63) + 1, 2**63 - 1) for _ in range(60)]
    values += [rnd.randint(-(10**12), 10**12) for _ in range(30)] + [-(2**63)]
    pairs = [(a, b) for a in values for b in (rnd.choice(values) for _ in range(6))]
    pairs += [(a, b) for a in edges for b in edges]
    for start in range(0, len(pairs), 200):
        chunk = pairs[start : start + 200]
        answers = str(await script(args=[str(x) for pair in chunk for x in pair])).split(",")
        for (a, b), answer in zip(chunk, answers, strict=True):
            total, at_least, fits = answer.split(" ")
            assert total == str(a + b), (a, b)
            assert at_least == str(a >= b).lower(), (a, b)
            assert fits == str(-(2**63) <= a + b < 2**63).lower(), (a, b)
    # An operand past 64 bits is no amount: no sum (the scripts refuse it as an overflow).
    assert str(await script(args=[str(2**64), "1"])).startswith("nil ")


async def test_concurrent_reserves_never_over_reserve(redis_url: str) -> None:
    account = unique("busy")
    clients = [redis.Redis.from_url(redis_url, decode_responses=True) for _ in range(4)]
    stores = [ReadyStore(c) for c in clients]
    try:
        await stores[0].deposit(account, "USD", 37 * 1_000 + 999)

        async def worker(index: int) -> list[bool]:
            store = stores[index % len(stores)]
            batch = [plain_reserve(account, f"o{index}-{n}", "USD", 1_000) for n in range(10)]
            return [o.accepted for o in await store.run_reservations(batch)]

        answers = await asyncio.gather(*(worker(i) for i in range(40)))
        assert sum(sum(a) for a in answers) == 37
        assert await figures(stores[0], account) == {"USD": (37_999, 37_000, 999)}
    finally:
        for c in clients:
            await c.aclose()


async def test_a_large_batch_and_its_listing_are_read_back_whole(store: ReadyStore) -> None:
    # Thousands of replies, well past one read of the connection: each reply cut across reads
    # is read whole, and none is lost or shifted.
    accounts = [unique("many") for _ in range(40)]
    for account in accounts:
        await store.deposit(account, "USD", 10**6)
    ops = [plain_reserve(accounts[n % 40], f"big-{n}", "USD", 1 + n % 7) for n in range(4000)]
    outcomes = await store.run_reservations(ops)
    assert [(o.accepted, o.amount) for o in outcomes] == [(True, 1 + n % 7) for n in range(4000)]
    listed: dict[tuple[str, str], dict[str, str]] = {}
    cursor = 0
    while True:
        page, cursor = await store.reservations_page(cursor, 5000)
        listed.update({(account, order): fields for account, order, fields in page})
        if not cursor:
            break
    for n, op in enumerate(ops):
        fields = listed[(op.account_id, op.order_id)]
        assert (fields["asset"], fields["amount"], fields["symbol"]) == ("USD", str(1 + n % 7), "X-Y")


async def test_scripts_are_loaded_again_after_redis_forgets_them(
    store: ReadyStore, client: redis.Redis
) -> None:
    account = unique("gina")
    await store.deposit(account, "USD", 10)
    await client.script_flush()
    outcomes = await store.run_reservations([plain_reserve(account, "o", "USD", 4)])
    assert outcomes[0].accepted
    assert await figures(store, account) == {"USD": (10, 4, 6)}


# The service over gRPC. Risk calls no other service: it learns instruments only from
# trading's event stream, so these tests teach it BTC-USD the way trading does.


async def teach(stub: risk_pb2_grpc.RiskServiceStub, source: str, *instruments: common_pb2.Instrument) -> int:
    """Send `instruments` as `source`'s next instrument_created events; returns the applied sequence."""
    call = stub.StreamTradingEvents()
    await call.write(risk_pb2.StreamTradingEventsRequest(source=source))
    start = (await call.read()).applied_sequence
    events = [
        risk_pb2.TradingEvent(sequence=start + i, instrument_created=instrument)
        for i, instrument in enumerate(instruments, start=1)
    ]
    await call.write(risk_pb2.StreamTradingEventsRequest(source=source, events=events))
    applied = int((await call.read()).applied_sequence)
    assert applied == start + len(instruments)
    call.cancel()
    return applied


def risk_settings(redis_url: str) -> Settings:
    return Settings.from_env({"BACKBONE_REDIS_URL": redis_url, "BACKBONE_GRACE_PERIOD_SECONDS": "0"})


@pytest.fixture
async def risk_service(redis_url: str, client: redis.Redis) -> AsyncIterator[risk_pb2_grpc.RiskServiceStub]:
    await make_ready(client)  # a state risk serves from, as after a completed rebuild
    settings = risk_settings(redis_url)
    running = RunningServer(create_app(settings), settings)
    await running.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    stub = risk_pb2_grpc.RiskServiceStub(channel)  # type: ignore[no-untyped-call]
    try:
        await teach(stub, unique("shard"), INSTRUMENT)
        yield stub
    finally:
        await channel.close()
        await running.stop()


async def test_service_reservations_batch(
    risk_service: risk_pb2_grpc.RiskServiceStub,
) -> None:
    stub = risk_service
    account = unique("henry")
    await deposit_through_ledger_stream(stub, account, "USD", 10**7)

    def reserve(order: str, **fields: object) -> risk_pb2.ReservationCommand:
        values: dict[str, object] = {
            "order_id": order,
            "account_id": account,
            "symbol": "BTC-USD",
            "side": common_pb2.SIDE_BUY,
            "price_ticks": 50_000,
            "quantity_lots": 10,
        }
        values.update(fields)
        return risk_pb2.ReservationCommand(reserve=risk_pb2.Reserve(**values))  # type: ignore[arg-type]

    call = stub.StreamReservations()
    await call.write(
        risk_pb2.StreamReservationsRequest(
            sequence=41,
            commands=[
                reserve("o1"),
                reserve("o2", symbol="NOPE-USD"),
                reserve("o3", side=common_pb2.SIDE_UNSPECIFIED),
                reserve("o4", quantity_lots=0),
                risk_pb2.ReservationCommand(),
                reserve("o5", quantity_lots=10_000),
                reserve("o1"),
                risk_pb2.ReservationCommand(release=risk_pb2.Release(order_id="o1", account_id=account)),
            ],
        )
    )
    response = await call.read()
    assert response.sequence == 41
    held = MATH.buy_reservation(50_000, 10)
    results = response.results
    assert [
        (r.order_id, r.accepted, RejectReason.from_number(r.reject_reason), r.asset, r.amount)
        for r in results
    ] == [
        ("o1", True, "UNSPECIFIED", "USD", held),
        ("o2", False, "UNKNOWN_SYMBOL", "", 0),
        ("o3", False, "INVALID_ORDER", "", 0),
        ("o4", False, "INVALID_ORDER", "", 0),
        ("", False, "INVALID_ORDER", "", 0),
        ("o5", False, "INSUFFICIENT_BALANCE", "USD", MATH.buy_reservation(50_000, 10_000)),
        ("o1", True, "UNSPECIFIED", "USD", held),
        ("o1", True, "UNSPECIFIED", "USD", held),
    ]
    # The stream is still usable after malformed commands.
    await call.write(risk_pb2.StreamReservationsRequest(sequence=42, commands=[reserve("o6")]))
    second = await call.read()
    assert second.sequence == 42 and second.results[0].accepted
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    figures = await stub.GetAccountRisk(risk_pb2.GetAccountRiskRequest(account_id=account))
    assert [(a.asset, a.total, a.reserved, a.available) for a in figures.assets] == [
        ("USD", 10**7, held, 10**7 - held)
    ]
    # A symbol risk has not learned is unknown until trading's event stream brings it.
    eth = derive_instrument(
        symbol=unique("ETH").upper(),
        base_asset="ETH",
        quote_asset="USD",
        base_scale=8,
        quote_scale=2,
        tick_size=Decimal("1"),
        lot_size=Decimal("0.01"),
        min_quantity=Decimal("0.01"),
        max_quantity=Decimal("1000"),
        max_price=Decimal("100000"),
        maker_fee_bps=0,
        taker_fee_bps=0,
    )
    call = stub.StreamReservations()
    await call.write(
        risk_pb2.StreamReservationsRequest(sequence=1, commands=[reserve("o7", symbol=eth.symbol)])
    )
    (result,) = (await call.read()).results
    assert (result.accepted, RejectReason.from_number(result.reject_reason)) == (False, "UNKNOWN_SYMBOL")
    await teach(stub, unique("shard"), eth)
    await call.write(
        risk_pb2.StreamReservationsRequest(sequence=2, commands=[reserve("o7", symbol=eth.symbol)])
    )
    (result,) = (await call.read()).results
    assert (result.accepted, result.asset, result.amount) == (True, "USD", 50_000 * 10)
    call.cancel()


async def test_service_deposits_and_bad_input(
    risk_service: risk_pb2_grpc.RiskServiceStub,
) -> None:
    stub = risk_service
    account = unique("ivy")
    cursor = await deposit_through_ledger_stream(stub, account, "USD", 5)
    # Redelivered: the ledger stream skips what it applied (the cursor), so nothing is doubled.
    call = stub.StreamLedgerEvents()
    await call.write(risk_pb2.StreamLedgerEventsRequest(source="ledger"))
    assert (await call.read()).applied_sequence == cursor
    again = risk_pb2.LedgerEvent(sequence=cursor, account_id=account, asset="USD", amount=5)
    await call.write(risk_pb2.StreamLedgerEventsRequest(source="ledger", events=[again]))
    assert (await call.read()).applied_sequence == cursor
    call.cancel()
    for field, value in [("amount", 0), ("asset", "usd"), ("account_id", ""), ("account_id", "a b")]:
        bad = risk_pb2.LedgerEvent(sequence=cursor + 1, account_id=account, asset="USD", amount=1)
        setattr(bad, field, value)
        call = stub.StreamLedgerEvents()
        await call.write(risk_pb2.StreamLedgerEventsRequest(source="ledger"))
        await call.read()
        await call.write(risk_pb2.StreamLedgerEventsRequest(source="ledger", events=[bad]))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert from_rpc_error(raised.value).reason == "MALFORMED_EVENT"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetAccountRisk(risk_pb2.GetAccountRiskRequest(account_id="no spaces"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    figures = await stub.GetAccountRisk(risk_pb2.GetAccountRiskRequest(account_id=account))
    assert [(a.asset, a.total) for a in figures.assets] == [("USD", 5)]


def event_request(
    source: str, records: Sequence[tuple[int, risk_pb2.TradingEvent]]
) -> risk_pb2.StreamTradingEventsRequest:
    return risk_pb2.StreamTradingEventsRequest(source=source, events=[event for _, event in records])


async def test_service_applies_trading_events_from_an_outbox(
    risk_service: risk_pb2_grpc.RiskServiceStub,
) -> None:
    stub = risk_service
    source = unique("shard")
    buyer, seller = unique("b"), unique("s")
    for account, asset in ((buyer, "USD"), (seller, "BTC")):
        await deposit_through_ledger_stream(stub, account, asset, 10**8)
    call = stub.StreamReservations()
    await call.write(
        risk_pb2.StreamReservationsRequest(
            sequence=1,
            commands=[
                risk_pb2.ReservationCommand(
                    reserve=risk_pb2.Reserve(
                        order_id="b",
                        account_id=buyer,
                        symbol="BTC-USD",
                        side=common_pb2.SIDE_BUY,
                        price_ticks=1_000,
                        quantity_lots=5,
                    )
                ),
                risk_pb2.ReservationCommand(
                    reserve=risk_pb2.Reserve(
                        order_id="s",
                        account_id=seller,
                        symbol="BTC-USD",
                        side=common_pb2.SIDE_SELL,
                        price_ticks=900,
                        quantity_lots=5,
                    )
                ),
            ],
        )
    )
    assert all(r.accepted for r in (await call.read()).results)
    call.cancel()
    journal: list[tuple[int, risk_pb2.TradingEvent]] = [
        (
            1,
            risk_pb2.TradingEvent(
                sequence=1,
                trade=trade(
                    1,
                    buyer=buyer,
                    seller=seller,
                    buy_order="b",
                    sell_order="s",
                    price=900,
                    lots=2,
                    limit=1_000,
                    buy_leaves=3,
                    sell_leaves=3,
                ),
            ),
        ),
        (
            2,
            risk_pb2.TradingEvent(
                sequence=2,
                order_released=common_pb2.OrderReleased(
                    order_id="b",
                    account_id=buyer,
                    symbol="BTC-USD",
                    side=common_pb2.SIDE_BUY,
                    released_lots=3,
                ),
            ),
        ),
        (
            3,
            risk_pb2.TradingEvent(
                sequence=3,
                order_released=common_pb2.OrderReleased(
                    order_id="s",
                    account_id=seller,
                    symbol="BTC-USD",
                    side=common_pb2.SIDE_SELL,
                    released_lots=3,
                ),
            ),
        ),
    ]

    async def load_after(cursor: int, limit: int) -> list[tuple[int, risk_pb2.TradingEvent]]:
        return [record for record in journal if record[0] > cursor][:2]

    def make_sender() -> OutboxSender[risk_pb2.TradingEvent]:
        return OutboxSender(
            "risk",
            source,
            stub.StreamTradingEvents,
            load_after,
            event_request,
            lambda response: response.applied_sequence,
            idle_poll_seconds=0.05,
        )

    sender = make_sender()
    await sender.start()
    try:
        assert await sender.wait_acknowledged(3, 10.0)
    finally:
        await sender.stop()
    fill = journal[0][1].trade
    spent = fill.quote_amount + fill.buyer_fee
    buyer_figures = await stub.GetAccountRisk(risk_pb2.GetAccountRiskRequest(account_id=buyer))
    assert {(a.asset, a.total, a.reserved) for a in buyer_figures.assets} == {
        ("USD", 10**8 - spent, 0),
        ("BTC", 2_000_000, 0),
    }
    # A restarted sender resumes after what risk applied: nothing is applied twice.
    again = make_sender()
    await again.start()
    try:
        assert await again.wait_acknowledged(3, 10.0)
        assert again.acknowledged == 3
    finally:
        await again.stop()
    replay = stub.StreamTradingEvents()
    await replay.write(risk_pb2.StreamTradingEventsRequest(source=source))
    assert (await replay.read()).applied_sequence == 3
    await replay.write(event_request(source, journal))  # redelivered: skipped
    assert (await replay.read()).applied_sequence == 3
    replay.cancel()
    assert buyer_figures == await stub.GetAccountRisk(risk_pb2.GetAccountRiskRequest(account_id=buyer))


async def test_service_stops_the_event_stream_rather_than_corrupt(
    risk_service: risk_pb2_grpc.RiskServiceStub,
) -> None:
    stub = risk_service
    source = unique("shard")
    buyer, seller = unique("b"), unique("s")  # no deposits: the trade cannot be paid
    events = stub.StreamTradingEvents()
    await events.write(risk_pb2.StreamTradingEventsRequest(source=source))
    assert (await events.read()).applied_sequence == 0
    await events.write(
        risk_pb2.StreamTradingEventsRequest(
            source=source,
            events=[
                risk_pb2.TradingEvent(
                    sequence=1,
                    trade=trade(
                        1,
                        buyer=buyer,
                        seller=seller,
                        buy_order="b",
                        sell_order="s",
                        price=900,
                        lots=2,
                        limit=1_000,
                        buy_leaves=0,
                        sell_leaves=0,
                    ),
                )
            ],
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await events.read()
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert from_rpc_error(raised.value).reason == "RISK_STATE_INCONSISTENT"
    hello = stub.StreamTradingEvents()
    await hello.write(risk_pb2.StreamTradingEventsRequest(source=source))
    assert (await hello.read()).applied_sequence == 0
    hello.cancel()
    for account in (buyer, seller):
        figures = await stub.GetAccountRisk(risk_pb2.GetAccountRiskRequest(account_id=account))
        assert all(a.total >= 0 for a in figures.assets)


async def test_a_halted_account_is_refused_until_the_ledger_resumes_it(store: ReadyStore) -> None:
    account = unique("halted")
    await store.deposit(account, "USD", 1000)

    def halt(halted: bool) -> list[tuple[str, int, bool]]:
        return [(account, exposure.op_id(next_ledger_sequence(), 0), halted)]

    assert await store.apply_halts(exposure.LEDGER_SOURCE, halt(True), EPOCH) == 1
    (refused,) = await store.run_reservations([plain_reserve(account, "o1", "USD", 10)])
    assert (refused.accepted, refused.reason) == (False, "ACCOUNT_HALTED")
    assert await store.apply_halts(exposure.LEDGER_SOURCE, halt(False), EPOCH) == 1
    (accepted,) = await store.run_reservations([plain_reserve(account, "o2", "USD", 10)])
    assert accepted.accepted
    # A rebuild writes the ledger's halted accounts into the new state as well.
    await store.write_halts(EPOCH, [account])
    (again,) = await store.run_reservations([plain_reserve(account, "o3", "USD", 10)])
    assert again.reason == "ACCOUNT_HALTED"
    assert await store.account_figures(account) == [AssetFigures("USD", 1000, 10)]  # the flag is no asset


async def test_service_grows_and_gives_back_for_replaces_and_applies_order_replaced(
    risk_service: risk_pb2_grpc.RiskServiceStub,
) -> None:
    """The service's side of a replace: GrowForReplace and EndReplace commands on the reservations
    stream (malformed ones refused one by one), OrderReplaced on trading's event stream."""
    stub = risk_service
    account = unique("ivy")
    await deposit_through_ledger_stream(stub, account, "USD", 10**7)
    reserve = risk_pb2.Reserve(
        order_id="b",
        account_id=account,
        symbol="BTC-USD",
        side=common_pb2.SIDE_BUY,
        price_ticks=100,
        quantity_lots=10,
    )

    def grow(replace_id: str, **fields: object) -> risk_pb2.ReservationCommand:
        values: dict[str, object] = {
            "order_id": "b",
            "account_id": account,
            "symbol": "BTC-USD",
            "side": common_pb2.SIDE_BUY,
            "price_ticks": 120,
            "leaves_lots": 10,
            "replace_id": replace_id,
        }
        values.update(fields)
        return risk_pb2.ReservationCommand(grow_for_replace=risk_pb2.GrowForReplace(**values))  # type: ignore[arg-type]

    def end(replace_id: str) -> risk_pb2.ReservationCommand:
        return risk_pb2.ReservationCommand(
            end_replace=risk_pb2.EndReplace(order_id="b", account_id=account, replace_id=replace_id)
        )

    call = stub.StreamReservations()
    await call.write(
        risk_pb2.StreamReservationsRequest(
            sequence=1,
            commands=[
                risk_pb2.ReservationCommand(reserve=reserve),
                grow("bad id!"),
                grow("r0", symbol="NOPE-USD"),
                grow("r0", price_ticks=0),
                grow("r0", leaves_lots=-1),
                grow("r0", order_id="never-reserved"),
                grow("r1"),
                grow("r2"),
                end("r2"),
                end(""),
            ],
        )
    )
    results = (await call.read()).results
    extra = MATH.buy_reservation(120, 10) - MATH.buy_reservation(100, 10)
    assert [
        (r.order_id, r.accepted, RejectReason.from_number(r.reject_reason), r.amount) for r in results
    ] == [
        ("b", True, "UNSPECIFIED", MATH.buy_reservation(100, 10)),
        ("b", False, "INVALID_ORDER", 0),
        ("b", False, "UNKNOWN_SYMBOL", 0),
        ("b", False, "INVALID_ORDER", 0),
        ("b", False, "INVALID_ORDER", 0),
        ("never-reserved", False, "ORDER_NOT_OPEN", MATH.buy_reservation(120, 10)),
        ("b", True, "UNSPECIFIED", extra),
        ("b", False, "REPLACE_IN_FLIGHT", MATH.buy_reservation(120, 10)),
        ("b", True, "UNSPECIFIED", 0),  # r2 never marked the order: nothing given back
        ("b", False, "INVALID_ORDER", 0),
    ]
    assert results[6].epoch  # the epoch trading checks the replace against
    call.cancel()
    # Trading journals the replace: its OrderReplaced sets the hold and unmarks the order.
    source = unique("shard")
    events = stub.StreamTradingEvents()
    await events.write(risk_pb2.StreamTradingEventsRequest(source=source))
    start = (await events.read()).applied_sequence
    replaced = common_pb2.OrderReplaced(
        order_id="b", account_id=account, symbol="BTC-USD", side=common_pb2.SIDE_BUY,
        old_price_ticks=100, new_price_ticks=120, old_leaves_lots=10, new_leaves_lots=10,
    )  # fmt: skip
    await events.write(
        risk_pb2.StreamTradingEventsRequest(
            source=source, events=[risk_pb2.TradingEvent(sequence=start + 1, order_replaced=replaced)]
        )
    )
    assert (await events.read()).applied_sequence == start + 1
    events.cancel()
    figures = await stub.GetAccountRisk(risk_pb2.GetAccountRiskRequest(account_id=account))
    assert [(a.asset, a.reserved) for a in figures.assets] == [("USD", MATH.buy_reservation(120, 10))]
