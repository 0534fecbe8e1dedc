"""The ledger's pure rules: trade and deposit postings, balance, validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.common.v1 import common_pb2
from settlement import ledger
from settlement.ledger import (
    SYSTEM_EXTERNAL,
    SYSTEM_FEES,
    LedgerError,
    Posting,
    TradeFill,
    UnbalancedEntry,
)

INT64_MAX = (1 << 63) - 1


def fill(**overrides: object) -> TradeFill:
    values: dict[str, object] = {
        "trade_id": 7,
        "buy_account_id": "alice",
        "sell_account_id": "bob",
        "base_asset": "BTC",
        "quote_asset": "USD",
        "base_amount": 50_000_000,
        "quote_amount": 25_000_000_000,
        "buyer_fee": 50_000_000,
        "seller_fee": 25_000_000,
    }
    values.update(overrides)
    return TradeFill(**values)  # type: ignore[arg-type]


def per_account(postings: tuple[Posting, ...]) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for p in postings:
        totals[(p.account_id, p.asset)] = totals.get((p.account_id, p.asset), 0) + p.amount
    return totals


def test_trade_entry_moves_both_assets_and_fees() -> None:
    entry = ledger.trade_entry("trading-0", fill())
    assert entry.kind == "trade"
    assert entry.reference == "trade:trading-0:7"
    assert entry.postings == (
        Posting("alice", "BTC", 50_000_000),
        Posting("bob", "BTC", -50_000_000),
        Posting("alice", "USD", -25_050_000_000),
        Posting("bob", "USD", 24_975_000_000),
        Posting(SYSTEM_FEES, "USD", 75_000_000),
    )
    assert ledger.net_by_asset(entry.postings) == {"BTC": 0, "USD": 0}


def test_zero_fees_leave_out_the_fee_posting() -> None:
    entry = ledger.trade_entry("s", fill(buyer_fee=0, seller_fee=0))
    assert all(p.account_id != SYSTEM_FEES for p in entry.postings)
    assert all(p.amount != 0 for p in entry.postings)
    assert len(entry.postings) == 4


def test_seller_fee_equal_to_quote_amount_omits_the_seller_quote_posting() -> None:
    entry = ledger.trade_entry("s", fill(quote_amount=100, seller_fee=100, buyer_fee=0))
    assert Posting("bob", "USD", 0) not in entry.postings
    assert ("bob", "USD") not in per_account(entry.postings)
    assert ledger.net_by_asset(entry.postings) == {"BTC": 0, "USD": 0}


def test_self_trade_balances_and_costs_only_the_fees() -> None:
    entry = ledger.trade_entry("s", fill(buy_account_id="carol", sell_account_id="carol"))
    deltas = ledger.balance_deltas([entry])
    assert deltas == [("carol", "USD", -75_000_000), (SYSTEM_FEES, "USD", 75_000_000)]


def test_deposit_entry() -> None:
    entry = ledger.deposit_entry("d-1", "alice", "USD", 1_000)
    assert entry.kind == "deposit"
    assert entry.reference == "deposit:d-1"
    assert entry.postings == (Posting("alice", "USD", 1_000), Posting(SYSTEM_EXTERNAL, "USD", -1_000))
    # A deposit id is any visible ASCII, as at the gateway (wire references, FIX-style ids).
    assert (
        ledger.deposit_entry("wire/2024-05-01#7", "alice", "USD", 1).reference == "deposit:wire/2024-05-01#7"
    )


@pytest.mark.parametrize(
    ("args", "field", "reason"),
    [
        (("", "alice", "USD", 1), "deposit_id", "REQUIRED"),
        (("a b", "alice", "USD", 1), "deposit_id", "INVALID_DEPOSIT_ID"),
        (("x" * 65, "alice", "USD", 1), "deposit_id", "INVALID_DEPOSIT_ID"),
        (("d-1\n", "alice", "USD", 1), "deposit_id", "INVALID_DEPOSIT_ID"),
        ((" d-1", "alice", "USD", 1), "deposit_id", "INVALID_DEPOSIT_ID"),
        (("d\x00", "alice", "USD", 1), "deposit_id", "INVALID_DEPOSIT_ID"),
        (("d", "alice\n", "USD", 1), "account_id", "INVALID_ACCOUNT_ID"),
        (("d", "alice", "USD\n", 1), "asset", "INVALID_ASSET_CODE"),
        (("d", "", "USD", 1), "account_id", "REQUIRED"),
        (("d", "al ice", "USD", 1), "account_id", "INVALID_ACCOUNT_ID"),
        (("d", SYSTEM_EXTERNAL, "USD", 1), "account_id", "SYSTEM_ACCOUNT"),
        (("d", SYSTEM_FEES, "USD", 1), "account_id", "SYSTEM_ACCOUNT"),
        (("d", "alice", "usd", 1), "asset", "INVALID_ASSET_CODE"),
        (("d", "alice", "", 1), "asset", "REQUIRED"),
        (("d", "alice", "USD", 0), "amount", "INVALID_AMOUNT"),
        (("d", "alice", "USD", -5), "amount", "INVALID_AMOUNT"),
    ],
)
def test_deposit_entry_refuses_bad_fields(args: tuple[str, str, str, int], field: str, reason: str) -> None:
    with pytest.raises(LedgerError) as caught:
        ledger.deposit_entry(*args)
    assert (caught.value.field, caught.value.reason) == (field, reason)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"trade_id": 0}, "trade.trade_id"),
        ({"buy_account_id": ""}, "trade.buy_account_id"),
        ({"sell_account_id": "system:fees"}, "trade.sell_account_id"),
        ({"base_asset": "btc"}, "trade.base_asset"),
        ({"quote_asset": ""}, "trade.quote_asset"),
        ({"quote_asset": "BTC"}, "trade.quote_asset"),
        ({"base_amount": 0}, "trade.base_amount"),
        ({"quote_amount": -1}, "trade.quote_amount"),
        ({"buyer_fee": -1}, "trade.buyer_fee"),
        ({"seller_fee": -1}, "trade.seller_fee"),
        ({"quote_amount": 10, "seller_fee": 11}, "trade.seller_fee"),
    ],
)
def test_trade_entry_refuses_bad_trades(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(LedgerError) as caught:
        ledger.trade_entry("trading-0", fill(**overrides))
    assert caught.value.field == field


@pytest.mark.parametrize("source", ["", "a:b", "x" * 65, "with space", "trading-0\n", "trading-0 "])
def test_trade_entry_refuses_bad_sources(source: str) -> None:
    with pytest.raises(LedgerError) as caught:
        ledger.trade_entry(source, fill())
    assert caught.value.field == "source"


def test_validators() -> None:
    assert ledger.check_account_id("A.b_c-9") == "A.b_c-9"
    assert ledger.check_ledger_account(SYSTEM_FEES) == SYSTEM_FEES
    with pytest.raises(LedgerError):
        ledger.check_account_id(SYSTEM_FEES)
    with pytest.raises(LedgerError):
        ledger.check_account_id("x" * 65)
    assert ledger.check_asset_code("USDT0") == "USDT0"
    with pytest.raises(LedgerError):
        ledger.check_asset_code("ABCDEFGHIJKLM")
    assert ledger.check_scale(0) == 0 and ledger.check_scale(18) == 18
    for scale in (19, -1, 2**32 - 1):
        with pytest.raises(LedgerError) as caught:
            ledger.check_scale(scale)
        assert caught.value.reason == "INVALID_SCALE"
    assert ledger.check_api_key_digest(b"\0" * 32) == b"\0" * 32
    for digest in (b"", b"\0" * 31, b"\0" * 33):
        with pytest.raises(LedgerError):
            ledger.check_api_key_digest(digest)
    assert ledger.check_list_limit(0) == 100
    assert ledger.check_list_limit(1) == 1
    assert ledger.check_list_limit(1000) == 1000
    with pytest.raises(LedgerError):
        ledger.check_list_limit(1001)


def test_assert_balanced_refuses_unbalanced_or_zero_or_empty() -> None:
    with pytest.raises(UnbalancedEntry):
        ledger.assert_balanced([Posting("a", "USD", 1), Posting("b", "USD", -2)])
    with pytest.raises(UnbalancedEntry):
        ledger.assert_balanced([Posting("a", "USD", 0)])
    with pytest.raises(UnbalancedEntry):
        ledger.assert_balanced([])


def test_balance_deltas_are_sorted_and_net() -> None:
    entries = [
        ledger.deposit_entry("d1", "zed", "USD", 5),
        ledger.deposit_entry("d2", "amy", "USD", 7),
        ledger.deposit_entry("d3", "amy", "BTC", 3),
    ]
    assert ledger.balance_deltas(entries) == [
        ("amy", "BTC", 3),
        ("amy", "USD", 7),
        (SYSTEM_EXTERNAL, "BTC", -3),
        (SYSTEM_EXTERNAL, "USD", -12),
        ("zed", "USD", 5),
    ]


accounts = st.sampled_from(["alice", "bob", "carol", "d.e-f_9"])
assets = st.sampled_from(["BTC", "ETH", "USD", "USDT"])
amounts = st.integers(min_value=1, max_value=INT64_MAX)


@st.composite
def trades(draw: st.DrawFn) -> TradeFill:
    base = draw(assets)
    quote = draw(assets.filter(lambda code: code != base))
    quote_amount = draw(amounts)
    return TradeFill(
        trade_id=draw(amounts),
        buy_account_id=draw(accounts),
        sell_account_id=draw(accounts),
        base_asset=base,
        quote_asset=quote,
        base_amount=draw(amounts),
        quote_amount=quote_amount,
        buyer_fee=draw(st.integers(min_value=0, max_value=INT64_MAX)),
        seller_fee=draw(st.integers(min_value=0, max_value=quote_amount)),
    )


@given(trades())
def test_any_trade_nets_to_zero_per_asset(trade: TradeFill) -> None:
    entry = ledger.trade_entry("trading-0", trade)
    assert set(ledger.net_by_asset(entry.postings).values()) == {0}
    assert all(p.amount != 0 for p in entry.postings)
    # Each party's net change is exactly what the contract says (a self-trade sums both sides).
    expected: dict[tuple[str, str], int] = {}
    for key, amount in (
        ((trade.buy_account_id, trade.base_asset), trade.base_amount),
        ((trade.sell_account_id, trade.base_asset), -trade.base_amount),
        ((trade.buy_account_id, trade.quote_asset), -(trade.quote_amount + trade.buyer_fee)),
        ((trade.sell_account_id, trade.quote_asset), trade.quote_amount - trade.seller_fee),
        ((SYSTEM_FEES, trade.quote_asset), trade.buyer_fee + trade.seller_fee),
    ):
        expected[key] = expected.get(key, 0) + amount
    actual = per_account(entry.postings)
    assert {k: v for k, v in actual.items() if v} == {k: v for k, v in expected.items() if v}


@given(st.lists(trades(), max_size=20), st.lists(st.tuples(accounts, assets, amounts), max_size=10))
def test_balance_deltas_and_pair_totals_of_any_entries_net_to_zero(
    fills: list[TradeFill], deposits: list[tuple[str, str, int]]
) -> None:
    entries = [ledger.trade_entry("s", f) for f in fills] + [
        ledger.deposit_entry(f"d{i}", account, asset, amount)
        for i, (account, asset, amount) in enumerate(deposits)
    ]
    deltas = ledger.balance_deltas(entries)
    assert [(a, s) for a, s, _ in deltas] == sorted({(a, s) for a, s, _ in deltas})
    assert all(delta != 0 for _, _, delta in deltas)
    totals: dict[str, int] = {}
    for _, asset, delta in deltas:
        totals[asset] = totals.get(asset, 0) + delta
    assert set(totals.values()) <= {0}
    # The same from pair totals, which also sum each balance's debits and credits.
    pairs = ledger.pair_totals(entries)
    assert ledger.deltas_of(pairs) == ledger.deltas_of(pairs, sorted(pairs)) == deltas
    postings = [p for e in entries for p in e.postings]
    assert set(pairs) == {(p.account_id, p.asset) for p in postings}
    for (account, asset), total in pairs.items():
        mine = [p.amount for p in postings if (p.account_id, p.asset) == (account, asset)]
        assert (total.net, total.debits, total.credits) == (
            sum(mine),
            sum(a for a in mine if a < 0),
            sum(a for a in mine if a > 0),
        )


def test_trade_fill_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        fill().trade_id = 3  # type: ignore[misc]


def _proto(fill: TradeFill) -> common_pb2.Trade:
    return common_pb2.Trade(**dataclasses.asdict(fill))


def _outcome(make: Callable[[], ledger.Entry]) -> ledger.Entry | tuple[str, str, str]:
    """The entry `make` builds, or the (field, reason, description) of the LedgerError it raises."""
    try:
        return make()
    except LedgerError as error:
        return (error.field, str(error.reason), error.description)


# Mostly well-formed trades (the stream's fast path), with every kind of flaw mixed in; amounts
# kept within int64, as a protobuf int64 field keeps them.
int64s = st.integers(min_value=-(1 << 63), max_value=INT64_MAX)
flawed_accounts = st.one_of(accounts, st.sampled_from(["", "system:fees", "with space", "x" * 65, "é"]))
flawed_assets = st.one_of(assets, st.sampled_from(["", "btc", "TOOLONGASSETCODE", "US D"]))


@st.composite
def any_trades(draw: st.DrawFn) -> TradeFill:
    if draw(st.booleans()):
        trade = draw(trades())
        edge = draw(st.sampled_from(["none", "no fees", "seller fee is all", "self"]))
        if edge == "no fees":
            return dataclasses.replace(trade, buyer_fee=0, seller_fee=0)
        if edge == "seller fee is all":
            return dataclasses.replace(trade, seller_fee=trade.quote_amount)
        if edge == "self":
            return dataclasses.replace(trade, sell_account_id=trade.buy_account_id)
        return trade
    return TradeFill(
        trade_id=draw(int64s),
        buy_account_id=draw(flawed_accounts),
        sell_account_id=draw(flawed_accounts),
        base_asset=draw(flawed_assets),
        quote_asset=draw(flawed_assets),
        base_amount=draw(int64s),
        quote_amount=draw(int64s),
        buyer_fee=draw(int64s),
        seller_fee=draw(int64s),
    )


@settings(max_examples=400)
@given(any_trades())
def test_a_well_formed_trade_entry_is_trade_entry_made_faster(trade: TradeFill) -> None:
    """The same entry (same lines, same types), or None for a trade trade_entry refuses or that
    has fewer than five lines (trade_entry makes those)."""
    slow = _outcome(lambda: ledger.trade_entry("trading-0", trade, source_checked=True))
    for _ in range(2):  # the second time, its ids are known valid
        fast = ledger.well_formed_trade_entry("trading-0", _proto(trade))
        if fast is None:
            assert not isinstance(slow, ledger.Entry) or len(slow.postings) < 5
        else:
            assert fast == slow and type(fast) is ledger.Entry
            assert all(type(p) is Posting for p in fast.postings)
            ledger.assert_balanced(fast.postings)
