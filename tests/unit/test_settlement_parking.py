"""The ledger's parking rules (settlement/parking.py), pure: which trades post and which are parked.

Examples pin the rules down; a property test holds the batch plan's shortcut (pair totals) to
the trade-by-trade judgement; another runs random trade sequences through a batch and then
through retries (after funding every account), as the store does, and checks that no customer
balance ever goes below zero, that every trade is posted exactly once in the end, and that no
trade of an account posts before a trade of it that was parked for a cause of its own (the trades
behind it wait). A trade that only waited behind a halted account does not hold its counterparty
back: the counterparty's later trades may post first (see settlement/parking.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.reasons import RejectReason
from settlement import ledger, parking
from settlement.ledger import Entry, TradeFill

SOURCE = "shard"


def entry(trade_id: int, buyer: str, seller: str, base: int = 10, quote: int = 100) -> Entry:
    return ledger.trade_entry(SOURCE, TradeFill(trade_id, buyer, seller, "BTC", "USD", base, quote, 1, 1))


def funded(**accounts: tuple[int, int]) -> parking.Balances:
    """account -> (BTC, USD)."""
    balances: parking.Balances = {}
    for account, (btc, usd) in accounts.items():
        balances[(account, "BTC")] = btc
        balances[(account, "USD")] = usd
    return balances


def reasons(plan: parking.BatchPlan) -> list[str | None]:
    return [None if v.posts else str(v.reason) for v in plan.verdicts]


def test_an_unpostable_trade_is_parked_and_halts_its_accounts_only() -> None:
    balances = funded(a=(0, 1000), b=(10, 0), c=(0, 1000), d=(100, 0))
    trades = [
        entry(1, "a", "b"),
        entry(2, "c", "b"),
        entry(3, "c", "d"),
        entry(4, "a", "d"),
        entry(5, "c", "d"),
    ]
    plan = parking.plan_batch(trades, balances, {})
    # 1 posts (b has 10 BTC), 2 would take b to -10: parked, b and c halted; 3 and 5 wait behind c;
    # 4 (a and d, neither halted) posts.
    assert reasons(plan) == [None, "NEGATIVE_BALANCE", "ACCOUNT_HALTED", None, "ACCOUNT_HALTED"]
    assert plan.new_halts == {
        "b": parking.Halt(trades[1].reference, RejectReason.NEGATIVE_BALANCE),
        "c": parking.Halt(trades[1].reference, RejectReason.NEGATIVE_BALANCE),
    }
    assert "b's BTC balance would go from 0 to -10" in plan.verdicts[1].detail
    assert trades[1].reference in plan.verdicts[2].detail
    assert balances[("b", "BTC")] == 0 and balances[("d", "BTC")] == 90 and balances[("a", "BTC")] == 20


def test_halts_from_before_the_batch_and_unknown_names() -> None:
    halt = parking.Halt("trade:shard:0", RejectReason.NEGATIVE_BALANCE)
    trades = [entry(1, "a", "b"), entry(2, "x", "b"), entry(3, "b", "c")]
    plan = parking.plan_batch(
        trades, funded(a=(0, 1000), b=(100, 1000), c=(100, 0)), {"a": halt}, missing_accounts={"x"}
    )
    assert reasons(plan) == ["ACCOUNT_HALTED", "UNKNOWN_ACCOUNT", "ACCOUNT_HALTED"]
    assert set(plan.new_halts) == {"b", "x"}  # a was halted before; c only waits
    odd = ledger.trade_entry(SOURCE, TradeFill(4, "c", "d", "ODD", "USD", 1, 1, 0, 0))
    plan = parking.plan_batch([odd], funded(c=(0, 10), d=(0, 0)), {}, missing_assets={"ODD"})
    assert reasons(plan) == ["UNKNOWN_ASSET"]


def test_a_balance_past_int64_is_parked() -> None:
    balances = funded(a=(ledger.INT64_MAX - 5, 1000), b=(100, 0))
    plan = parking.plan_batch([entry(1, "a", "b")], balances, {})
    assert reasons(plan) == ["BALANCE_TOO_LARGE"]


def parked_of(plan: parking.BatchPlan, trades: list[Entry]) -> list[parking.Parked]:
    return [
        parking.Parked(e.reference, e, v.reason, v.detail)
        for e, v in zip(trades, plan.verdicts, strict=True)
        if v.reason is not None
    ]


def test_a_retry_posts_the_trade_then_those_behind_it_in_order() -> None:
    balances = funded(a=(0, 1000), b=(10, 0), c=(0, 1000), d=(100, 0))
    trades = [entry(1, "a", "b"), entry(2, "c", "b"), entry(3, "c", "d"), entry(4, "c", "b", base=30)]
    plan = parking.plan_batch(trades, balances, {})
    parked = parked_of(plan, trades)
    assert [p.reference for p in parked] == [t.reference for t in trades[1:]]
    # Retrying a trade that waits is refused, naming the one to retry.
    with pytest.raises(parking.RetryRefused) as refused:
        parking.plan_retry(parked, trades[2].reference, dict(balances))
    assert refused.value.reason == RejectReason.ACCOUNT_HALTED and trades[1].reference in refused.value.detail
    # Still unfunded: refused with its own reason.
    with pytest.raises(parking.RetryRefused) as refused:
        parking.plan_retry(parked, trades[1].reference, dict(balances))
    assert refused.value.reason == RejectReason.NEGATIVE_BALANCE
    # b gets 15 BTC: 2 (10) posts, 3 (c with d) posts, 4 (30 more of b's) cannot: its own reason now.
    balances[("b", "BTC")] += 15
    retry = parking.plan_retry(parked, trades[1].reference, balances)
    assert retry.posted == [trades[1].reference, trades[2].reference]
    assert set(retry.renewed) == {trades[3].reference}
    assert retry.renewed[trades[3].reference].reason == RejectReason.NEGATIVE_BALANCE
    assert retry.halts == {
        "b": parking.Halt(trades[3].reference, RejectReason.NEGATIVE_BALANCE),
        "c": parking.Halt(trades[3].reference, RejectReason.NEGATIVE_BALANCE),
    }
    assert balances[("b", "BTC")] == 5


ACCOUNTS = ("a", "b", "c", "d")
trade_strategy = st.tuples(
    st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS), st.integers(1, 60), st.integers(1, 600)
).filter(lambda t: t[0] != t[1])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(trade_strategy, min_size=1, max_size=25),
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 1000)), min_size=4, max_size=4),
)
def test_parked_trades_never_overdraw_and_post_once_in_order_after_retries(
    raw: list[tuple[str, str, int, int]], start: list[tuple[int, int]]
) -> None:
    trades = [entry(i + 1, buyer, seller, base, quote) for i, (buyer, seller, base, quote) in enumerate(raw)]
    balances = funded(**dict(zip(ACCOUNTS, start, strict=True)))
    plan = parking.plan_batch(trades, balances, {})
    assert all(amount >= 0 for (account, _), amount in balances.items() if account in ACCOUNTS)
    order = [t.reference for t, v in zip(trades, plan.verdicts, strict=True) if v.posts]
    heads = [
        t
        for t, v in zip(trades, plan.verdicts, strict=True)
        if v.reason not in (None, RejectReason.ACCOUNT_HALTED)
    ]
    parked = parked_of(plan, trades)
    halts = dict(plan.new_halts)
    for _ in range(len(trades)):
        if not parked:
            break
        # The operator funds every account and retries the oldest trade parked for a cause of its own.
        for key in balances:
            balances[key] += 10_000
        head = next(p for p in parked if not p.waits)
        retry = parking.plan_retry(parked, head.reference, balances)
        assert all(amount >= 0 for (account, _), amount in balances.items() if account in ACCOUNTS)
        order += retry.posted
        posted = set(retry.posted)
        parked = [
            parking.Parked(p.reference, p.entry, v.reason, v.detail)
            if (v := retry.renewed.get(p.reference)) is not None and v.reason is not None
            else p
            for p in parked
            if p.reference not in posted
        ]
        halts = retry.halts
    assert parked == [] and halts == {}
    assert sorted(order) == sorted(t.reference for t in trades)  # every trade posted, once
    position = {reference: i for i, reference in enumerate(order)}
    arrival = {t.reference: i for i, t in enumerate(trades)}
    for first in heads:  # every later trade of its accounts posts after it
        accounts = set(parking.halted_accounts(first))
        for t in trades:
            if arrival[t.reference] > arrival[first.reference] and accounts & set(parking.halted_accounts(t)):
                assert position[t.reference] > position[first.reference], (first.reference, t.reference)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(trade_strategy, min_size=1, max_size=25),
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 30_000)), min_size=4, max_size=4),
    st.sampled_from(["none", "halted", "unknown account", "unknown asset", "near int64"]),
)
def test_the_pair_totals_shortcut_judges_as_the_trade_by_trade_plan(
    raw: list[tuple[str, str, int, int]], start: list[tuple[int, int]], situation: str
) -> None:
    """plan_batch with totals gives the verdicts, halts and balances of the plan without them."""
    trades = [entry(i + 1, buyer, seller, base, quote) for i, (buyer, seller, base, quote) in enumerate(raw)]
    balances = funded(**dict(zip(ACCOUNTS, start, strict=True)))
    if situation == "near int64":
        balances[("a", "USD")] = ledger.INT64_MAX - 700
    halts = (
        {"b": parking.Halt("trade:shard:0", RejectReason.NEGATIVE_BALANCE)} if situation == "halted" else {}
    )
    missing = {
        "missing_accounts": {"c"} if situation == "unknown account" else set(),
        "missing_assets": {"BTC"} if situation == "unknown asset" else set(),
    }
    by_trade = dict(balances)
    plan = parking.plan_batch(trades, by_trade, halts, **missing)
    shortcut = dict(balances)
    fast = parking.plan_batch(trades, shortcut, halts, **missing, totals=ledger.pair_totals(trades))
    assert fast.verdicts == plan.verdicts
    assert fast.new_halts == plan.new_halts
    assert shortcut == by_trade


def test_all_post_holds_when_no_order_of_the_trades_leaves_the_limits() -> None:
    # b buys 10 BTC from a, then sells them back (fees 1 USD each side).
    trades = [entry(1, "b", "a", base=10, quote=100), entry(2, "a", "b", base=10, quote=100)]
    totals = ledger.pair_totals(trades)
    assert parking.all_post(totals, funded(a=(10, 101), b=(10, 101)))
    # In some order b would sell 10 BTC it does not have yet, or a pay 101 USD it does not have yet.
    assert not parking.all_post(totals, funded(a=(10, 101), b=(9, 101)))
    assert not parking.all_post(totals, funded(a=(10, 100), b=(10, 101)))
    assert not parking.all_post(totals, funded(a=(ledger.INT64_MAX - 5, 101), b=(10, 101)))
    # Not in this order, though: then the trade-by-trade judgement posts both.
    plan = parking.plan_batch(trades, funded(a=(10, 101), b=(0, 101)), {}, totals=totals)
    assert [v.posts for v in plan.verdicts] == [True, True]
