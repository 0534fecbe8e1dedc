"""A trade the ledger cannot post is parked; it never stalls the postings of other accounts.

Settlement runs in process on the real embedded PostgreSQL (the fixture of test_settlement_store).
A batch with an unpostable trade posts the others and parks that one, halting its accounts; later
trades of a halted account park behind it while other accounts keep posting; the stream's cursor
passes them; the health entry and the ledger's audit readers report them; a retry after a deposit
posts them in order and lifts the halts; a redelivered batch parks nothing twice; bad input to the
admin calls changes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from backbone.reasons import RejectReason
from backbone.settlement.v1 import settlement_pb2 as pb
from settlement import audit as ledger_audit
from settlement.app import PARKED_TRADES_HEALTH, SERVICE_NAME
from tests.integration.test_settlement_store import (
    BASE,
    COST,
    QUOTE,
    Ledger,
    account,
    balances,
    batch,
    exchange,
    refused,
    risk_address,
    settlement,
    snapshot,
    trade,
    unique,
)
from tests.waiting import eventually, health_of

pytestmark = pytest.mark.integration

__all__ = ["risk_address", "settlement"]  # the module's fixtures, shared

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def reference(source: str, trade_id: int) -> str:
    return f"trade:{source}:{trade_id}"


async def parked(settlement: Ledger, account_id: str = "") -> list[tuple[str, str, str]]:
    """(reference, reason, resolution) of the parked trades involving `account_id`, oldest first."""
    answer = await settlement.stub.ListParkedTrades(
        pb.ListParkedTradesRequest(account_id=account_id, include_resolved=True, limit=1000)
    )
    return [
        (t.reference, RejectReason.from_number(t.reason).value, t.resolution) for t in answer.parked_trades
    ]


async def halts(settlement: Ledger, *accounts: str) -> dict[str, tuple[str, int, str, int]]:
    """account -> (source, trade id, reason, parked trades) of the halts of `accounts`."""
    answer = await settlement.stub.ListHaltedAccounts(pb.ListHaltedAccountsRequest())
    return {
        h.account_id: (h.source, h.trade_id, RejectReason.from_number(h.reason).value, h.parked_trades)
        for h in answer.halts
        if h.account_id in accounts
    }


async def journal_order(url: str, references: list[str]) -> list[str]:
    """`references` in the order the ledger journaled them."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT reference FROM ledger.journal_entries WHERE reference = ANY(%s) ORDER BY entry_id",
            (references,),
        )
        return [row[0] for row in await cursor.fetchall()]


async def parked_rows(url: str, source: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT count(*) FROM ledger.parked_trades WHERE source = %s", (source,))
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def entry_not_serving(settlement: Ledger) -> tuple[int, str] | None:
    status, detail = await health_of(settlement.channel, PARKED_TRADES_HEALTH)
    return (status, detail) if status == NOT_SERVING else None


async def entry_serving(settlement: Ledger) -> bool:
    status, _ = await health_of(settlement.channel, PARKED_TRADES_HEALTH)
    return bool(status == SERVING)


async def test_an_unpostable_trade_is_parked_and_its_accounts_wait_while_others_post(
    settlement: Ledger,
) -> None:
    stub = settlement.stub
    source = unique("shard")
    alice = await account(stub, USD=10 * COST)  # buys from bob
    bob = await account(stub, BTC=1000)  # can deliver one trade's BTC, not two
    erin = await account(stub, USD=10 * COST)  # buys from bob after he ran out, then from dave
    carol = await account(stub, USD=10 * COST)  # trades with dave throughout
    dave = await account(stub, BTC=10_000)
    hello = pb.StreamTradesRequest(source=source)
    first = batch(
        source,
        [
            (1, trade(1, alice, bob)),  # posts: bob 1000 -> 0 BTC
            (2, trade(2, erin, bob)),  # bob would be at -1000 BTC: parked, bob and erin halted
            (3, trade(3, carol, dave)),  # other accounts: posts
            (4, trade(4, erin, dave)),  # erin is halted: parked behind trade 2, in order
        ],
    )
    # The whole batch counts as delivered: the cursor passes the parked trades.
    assert await exchange(stub, [hello, first]) == [0, 4]
    assert await parked(settlement, erin) == [
        (reference(source, 2), "NEGATIVE_BALANCE", ""),
        (reference(source, 4), "ACCOUNT_HALTED", ""),
    ]
    assert await halts(settlement, alice, bob, carol, dave, erin) == {
        bob: (source, 2, "NEGATIVE_BALANCE", 1),
        erin: (source, 2, "NEGATIVE_BALANCE", 2),
    }
    assert await balances(stub, bob) == {BASE: 0, QUOTE: 500_000 - 500}
    assert await balances(stub, erin) == {BASE: 0, QUOTE: 10 * COST}  # (its BTC row was locked at zero)
    assert await balances(stub, carol) == {BASE: 1000, QUOTE: 9 * COST}

    # A later batch: erin's trade parks behind trade 2 again, carol and dave keep posting.
    second = batch(source, [(7, trade(5, erin, dave)), (9, trade(6, carol, dave))])
    assert await exchange(stub, [hello, second]) == [4, 9]
    assert [ref for ref, _, _ in await parked(settlement, erin)] == [reference(source, i) for i in (2, 4, 5)]
    assert await balances(stub, carol) == {BASE: 2000, QUOTE: 8 * COST}

    # The health entry names them; the service itself keeps serving.
    _, detail = await eventually(
        lambda: entry_not_serving(settlement), "the parked-trades entry NOT_SERVING", 10
    )
    assert "trade(s) parked" in detail and bob in detail and erin in detail, detail
    assert (await health_of(settlement.channel, SERVICE_NAME))[0] == SERVING
    # So do the ledger's audit readers (what `backbone check` reads).
    with psycopg.connect(settlement.url) as conn:
        mine = [p for p in ledger_audit.parked_trades(conn) if p.source == source]
        assert [(p.sequence, p.reason, p.account_ids) for p in mine] == [
            (2, "NEGATIVE_BALANCE", tuple(sorted((bob, erin)))),
            (4, "ACCOUNT_HALTED", tuple(sorted((dave, erin)))),
            (7, "ACCOUNT_HALTED", tuple(sorted((dave, erin)))),
        ]
        assert "-1000" in mine[0].detail and bob in mine[0].detail
        assert {h.account_id: h.reference for h in ledger_audit.account_halts(conn)}.items() >= {
            bob: reference(source, 2),
            erin: reference(source, 2),
        }.items()

    # A redelivered batch (a lost acknowledgement, a sender restarted behind) parks nothing twice.
    before = await snapshot(settlement.url)
    assert await exchange(stub, [hello, first, second]) == [9, 9, 9]
    assert await snapshot(settlement.url) == before
    assert await parked_rows(settlement.url, source) == 3

    # Retrying a trade that waits behind another, or one still unpostable, changes nothing.
    error = await refused(stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=source, trade_id=4)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_HALTED")
    assert reference(source, 2) in error.message
    error = await refused(stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=source, trade_id=2)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NEGATIVE_BALANCE")
    assert await snapshot(settlement.url) == before

    # Bob is funded: the retry posts trade 2, then erin's later trades in order, and lifts the halts.
    await stub.Deposit(pb.DepositRequest(deposit_id=unique("dep"), account_id=bob, asset=BASE, amount=1000))
    retried = await stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=source, trade_id=2))
    posted = [reference(source, i) for i in (2, 4, 5)]
    assert [t.reference for t in retried.posted] == posted
    assert all(t.resolution == "posted" and t.entry_id > 0 and t.resolved_ns > 0 for t in retried.posted)
    assert sorted(retried.halts_lifted) == sorted([bob, erin])
    assert list(retried.halts) == []
    assert await journal_order(settlement.url, posted) == posted
    assert await halts(settlement, bob, erin) == {}
    assert await parked(settlement, erin) == [(ref, reason, "posted") for ref, reason, _ in [
        (reference(source, 2), "NEGATIVE_BALANCE", ""),
        (reference(source, 4), "ACCOUNT_HALTED", ""),
        (reference(source, 5), "ACCOUNT_HALTED", ""),
    ]]  # fmt: skip
    assert await balances(stub, bob) == {BASE: 0, QUOTE: 2 * (500_000 - 500)}
    assert await balances(stub, erin) == {BASE: 3000, QUOTE: 7 * COST}
    assert await balances(stub, dave) == {BASE: 10_000 - 4000, QUOTE: 4 * (500_000 - 500)}
    assert await settlement.store.audit() == []

    # A repeated retry changes nothing; with nothing parked, the health entry serves again.
    again = await stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=source, trade_id=2))
    assert (list(again.posted), list(again.halts_lifted), list(again.halts)) == ([], [], [])
    if not (await settlement.stub.ListParkedTrades(pb.ListParkedTradesRequest())).parked_count:
        await eventually(lambda: entry_serving(settlement), "the parked-trades entry SERVING again", 10)


async def test_a_retry_stops_at_a_later_trade_that_still_cannot_post(settlement: Ledger) -> None:
    stub = settlement.stub
    source = unique("shard")
    frank = await account(stub, BTC=1000)
    gina = await account(stub, USD=10 * COST)
    hello = pb.StreamTradesRequest(source=source)
    trades = [
        (1, trade(1, gina, frank, base=2000)),  # needs 2000 BTC of frank's 1000: parked
        (2, trade(2, gina, frank, base=500)),  # behind 1
        (3, trade(3, gina, frank, base=1000)),  # behind 1
    ]
    assert await exchange(stub, [hello, batch(source, trades)]) == [0, 3]
    await stub.Deposit(pb.DepositRequest(deposit_id=unique("dep"), account_id=frank, asset=BASE, amount=1000))
    # Frank now has 2000: trade 1 posts, trade 2 (500 more) cannot and keeps its place with its
    # own reason now, and trade 3 stays behind it.
    retried = await stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=source, trade_id=1))
    assert [t.reference for t in retried.posted] == [reference(source, 1)]
    assert list(retried.halts_lifted) == []
    assert {(h.account_id, h.trade_id, RejectReason.from_number(h.reason)) for h in retried.halts} == {
        (frank, 2, RejectReason.NEGATIVE_BALANCE),
        (gina, 2, RejectReason.NEGATIVE_BALANCE),
    }
    assert await parked(settlement, frank) == [
        (reference(source, 1), "NEGATIVE_BALANCE", "posted"),
        (reference(source, 2), "NEGATIVE_BALANCE", ""),
        (reference(source, 3), "ACCOUNT_HALTED", ""),
    ]
    await stub.Deposit(pb.DepositRequest(deposit_id=unique("dep"), account_id=frank, asset=BASE, amount=1500))
    retried = await stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=source, trade_id=2))
    assert [t.reference for t in retried.posted] == [reference(source, 2), reference(source, 3)]
    assert sorted(retried.halts_lifted) == sorted([frank, gina])
    assert await balances(stub, frank) == {BASE: 0, QUOTE: 3 * (500_000 - 500)}
    assert await settlement.store.audit() == []


async def test_unknown_accounts_and_assets_are_parked_until_they_exist(settlement: Ledger) -> None:
    stub = settlement.stub
    source = unique("shard")
    alice = await account(stub, USD=10 * COST)
    bob = await account(stub, BTC=10_000)
    newcomer = unique("acct")  # not created yet
    odd = trade(2, alice, bob)
    odd.base_asset = "P" + unique("x")[-8:].upper()  # an asset the ledger does not have
    hello = pb.StreamTradesRequest(source=source)
    items = [(1, trade(1, newcomer, bob)), (2, odd), (3, trade(3, alice, bob))]
    assert await exchange(stub, [hello, batch(source, items)]) == [0, 3]
    assert await parked(settlement, bob) == [
        (reference(source, 1), "UNKNOWN_ACCOUNT", ""),
        (reference(source, 2), "ACCOUNT_HALTED", ""),
        (reference(source, 3), "ACCOUNT_HALTED", ""),
    ]
    # Alice's trades wait behind bob's halt, but do not halt alice herself.
    assert set(await halts(settlement, newcomer, bob, alice)) == {newcomer, bob}
    await stub.CreateAccount(pb.CreateAccountRequest(account_id=newcomer, api_key_sha256=b"n" * 32))
    await stub.Deposit(
        pb.DepositRequest(deposit_id=unique("dep"), account_id=newcomer, asset=QUOTE, amount=COST)
    )
    retried = await stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=source, trade_id=1))
    # Trade 1 posts; trade 2 still names an unknown asset, so it stays (its own reason now) and
    # trade 3 waits behind it.
    assert [t.reference for t in retried.posted] == [reference(source, 1)]
    assert retried.halts_lifted == [newcomer]
    assert await parked(settlement, bob) == [
        (reference(source, 1), "UNKNOWN_ACCOUNT", "posted"),
        (reference(source, 2), "UNKNOWN_ASSET", ""),
        (reference(source, 3), "ACCOUNT_HALTED", ""),
    ]
    await stub.CreateAsset(pb.CreateAssetRequest(asset=pb.Asset(code=odd.base_asset, scale=0)))
    await stub.Deposit(
        pb.DepositRequest(deposit_id=unique("dep"), account_id=bob, asset=odd.base_asset, amount=1000)
    )
    retried = await stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=source, trade_id=2))
    assert [t.reference for t in retried.posted] == [reference(source, 2), reference(source, 3)]
    assert sorted(retried.halts_lifted) == sorted([alice, bob])
    assert await settlement.store.audit() == []


async def test_streams_of_two_sources_park_and_post_concurrently(settlement: Ledger) -> None:
    """Batches of two sources touching one halted account at once: each trade recorded once, in order."""
    stub = settlement.stub
    hank = await account(stub, BTC=5000)
    buyers = [await account(stub, USD=100 * COST) for _ in range(2)]
    sources = [unique("shard") for _ in range(2)]

    async def stream(source: str, buyer: str) -> int:
        requests = [pb.StreamTradesRequest(source=source)] + [
            batch(source, [(s, trade(s, buyer, hank))]) for s in range(1, 6)
        ]
        return (await exchange(stub, requests))[-1]

    assert await asyncio.gather(*(stream(s, b) for s, b in zip(sources, buyers, strict=True))) == [5, 5]
    # Hank had BTC for 5 of the 10 trades: the first that found him short is parked, and every
    # later trade of his waits behind it, whichever source it came from.
    mine = [row for row in await parked(settlement, hank)]
    assert len(mine) == 5
    assert mine[0][1] == "NEGATIVE_BALANCE" and {reason for _, reason, _ in mine[1:]} == {"ACCOUNT_HALTED"}
    assert (await balances(stub, hank))[BASE] == 0
    await stub.Deposit(pb.DepositRequest(deposit_id=unique("dep"), account_id=hank, asset=BASE, amount=5000))
    _, source, trade_id = mine[0][0].split(":")
    retried = await stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=source, trade_id=int(trade_id)))
    assert [t.reference for t in retried.posted] == [ref for ref, _, _ in mine]
    assert hank in retried.halts_lifted
    assert (await balances(stub, hank))[BASE] == 0
    assert await settlement.store.audit() == []


async def test_bad_input_to_the_parked_trade_calls_changes_nothing(settlement: Ledger) -> None:
    stub = settlement.stub
    before = await snapshot(settlement.url)
    cases: list[tuple[Any, str, str, str]] = [
        (
            stub.ListParkedTrades(pb.ListParkedTradesRequest(limit=1001)),
            "INVALID_ARGUMENT",
            "INVALID_LIMIT",
            "limit",
        ),
        (
            stub.ListParkedTrades(pb.ListParkedTradesRequest(account_id="bad id")),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
            "account_id",
        ),
        (
            stub.RetryParkedTrade(pb.RetryParkedTradeRequest(trade_id=1)),
            "INVALID_ARGUMENT",
            "REQUIRED",
            "source",
        ),
        (
            stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source="a:b", trade_id=1)),
            "INVALID_ARGUMENT",
            "INVALID_SOURCE",
            "source",
        ),
        (
            stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source="trading-0\n", trade_id=1)),
            "INVALID_ARGUMENT",
            "INVALID_SOURCE",
            "source",
        ),
        (
            stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source="trading-0")),
            "INVALID_ARGUMENT",
            "REQUIRED",
            "trade_id",
        ),
        (
            stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source="trading-0", trade_id=-5)),
            "INVALID_ARGUMENT",
            "INVALID_TRADE_ID",
            "trade_id",
        ),
        (
            stub.RetryParkedTrade(pb.RetryParkedTradeRequest(source=unique("shard"), trade_id=7)),
            "NOT_FOUND",
            "UNKNOWN_PARKED_TRADE",
            "",
        ),
    ]
    for call, code, reason, field in cases:
        error = await refused(call)
        assert (error.code.name, error.reason) == (code, reason), error
        assert [v.field for v in error.violations] == ([field] if field else [])
    assert await snapshot(settlement.url) == before
