"""Settlement against a real embedded PostgreSQL, served in-process over a real grpc.aio server.

Trades are posted at most once, the cursor resumes, balances are exact, the
ledger nets to zero per asset, and refused input changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest

from backbone.common.v1 import common_pb2
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.config import Settings
from backbone.runtime.errors import ServiceError, from_rpc_error
from backbone.runtime.outbox import OutboxSender
from backbone.runtime.server import RunningServer
from backbone.settlement.v1 import settlement_pb2 as pb
from backbone.settlement.v1 import settlement_pb2_grpc
from settlement import ledger
from settlement.app import SettlementApp, create_app
from settlement.store import LedgerStore, TradeToPost

pytestmark = pytest.mark.integration

BASE, QUOTE = "BTC", "USD"


@dataclass
class Ledger:
    url: str
    app: SettlementApp
    stub: settlement_pb2_grpc.SettlementServiceStub
    channel: grpc.aio.Channel

    @property
    def store(self) -> LedgerStore:
        return self.app.store


class Risk(risk_pb2_grpc.RiskServiceServicer):
    """Stands in for risk on the ledger's event stream: applies (acknowledges) every event at once.

    Settlement answers a Deposit once risk has applied it; with no risk at all, every deposit
    would wait out the call timeout.
    """

    def __init__(self) -> None:
        self.applied = 0

    async def StreamLedgerEvents(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for request in request_iterator:
            self.applied = max([self.applied, *(event.sequence for event in request.events)])
            yield risk_pb2.StreamLedgerEventsResponse(applied_sequence=self.applied)


@pytest.fixture(scope="module")
async def risk_address() -> AsyncIterator[str]:
    server = grpc.aio.server()
    risk_pb2_grpc.add_RiskServiceServicer_to_server(Risk(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.fixture(scope="module")
async def settlement(new_database: Callable[[], str], risk_address: str) -> AsyncIterator[Ledger]:
    url = new_database()
    settings = Settings.from_env(
        {
            "BACKBONE_DATABASE_URL": url,
            "BACKBONE_RISK_ADDRESS": risk_address,
            "BACKBONE_GRACE_PERIOD_SECONDS": "1",
            "BACKBONE_LOG_LEVEL": "warning",
        }
    )
    app = create_app(settings)
    server = RunningServer(app, settings)
    await server.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = settlement_pb2_grpc.SettlementServiceStub(channel)  # type: ignore[no-untyped-call]
    await stub.CreateAsset(pb.CreateAssetRequest(asset=pb.Asset(code=BASE, scale=8)))
    await stub.CreateAsset(pb.CreateAssetRequest(asset=pb.Asset(code=QUOTE, scale=6)))
    try:
        yield Ledger(url, app, stub, channel)
    finally:
        await channel.close()
        await server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def digest() -> bytes:
    return hashlib.sha256(uuid.uuid4().bytes).digest()


async def refused(call: Any) -> ServiceError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return from_rpc_error(error)
    raise AssertionError("the call succeeded but should have been refused")


async def account(stub: settlement_pb2_grpc.SettlementServiceStub, **deposits: int) -> str:
    account_id = unique("acct")
    await stub.CreateAccount(pb.CreateAccountRequest(account_id=account_id, api_key_sha256=digest()))
    for asset, amount in deposits.items():
        await stub.Deposit(
            pb.DepositRequest(deposit_id=unique("dep"), account_id=account_id, asset=asset, amount=amount)
        )
    return account_id


async def balances(stub: settlement_pb2_grpc.SettlementServiceStub, account_id: str) -> dict[str, int]:
    response = await stub.GetBalances(pb.GetBalancesRequest(account_id=account_id))
    return {b.asset: b.amount for b in response.balances}


# What a default trade() moves: the buyer pays COST quote minor units (500,000 and a fee of 1000) for
# 1000 base minor units; the seller receives PROCEEDS (500,000 less a fee of 500).
COST = 500_000 + 1000
PROCEEDS = 500_000 - 500


def trade(
    trade_id: int,
    buyer: str,
    seller: str,
    *,
    base: int = 1000,
    quote: int = 500_000,
    buyer_fee: int = 1000,
    seller_fee: int = 500,
) -> common_pb2.Trade:
    return common_pb2.Trade(
        trade_id=trade_id,
        symbol=f"{BASE}-{QUOTE}",
        price_ticks=5,
        quantity_lots=1,
        buy_account_id=buyer,
        sell_account_id=seller,
        base_asset=BASE,
        quote_asset=QUOTE,
        base_amount=base,
        quote_amount=quote,
        buyer_fee=buyer_fee,
        seller_fee=seller_fee,
        maker_side=common_pb2.SIDE_SELL,
    )


def batch(source: str, items: Sequence[tuple[int, common_pb2.Trade]]) -> pb.StreamTradesRequest:
    return pb.StreamTradesRequest(
        source=source, trades=[pb.SequencedTrade(sequence=s, trade=t) for s, t in items]
    )


async def exchange(
    stub: settlement_pb2_grpc.SettlementServiceStub, requests: Sequence[pb.StreamTradesRequest]
) -> list[int]:
    """Send `requests` on one stream, one at a time, and collect each answer."""
    call = stub.StreamTrades()
    answers = []
    for request in requests:
        await call.write(request)
        answer = await call.read()
        assert answer is not grpc.aio.EOF
        answers.append(answer.applied_sequence)
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    return answers


async def stream_refused(
    stub: settlement_pb2_grpc.SettlementServiceStub, requests: Sequence[pb.StreamTradesRequest]
) -> ServiceError:
    """Send `requests`; the stream must fail on the last one."""
    call = stub.StreamTrades()
    try:
        for request in requests:
            await call.write(request)
            await call.read()
        await call.done_writing()
        await call.read()
    except grpc.aio.AioRpcError as error:
        return from_rpc_error(error)
    raise AssertionError("the stream succeeded but should have been refused")


async def snapshot(url: str) -> tuple[Any, ...]:
    """Everything the ledger holds, to show that a refused call changed nothing."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        rows = []
        for query in (
            "SELECT code, scale FROM ledger.assets ORDER BY code",
            "SELECT account_id, kind, api_key_sha256 FROM ledger.accounts ORDER BY account_id",
            "SELECT entry_id, kind, reference FROM ledger.journal_entries ORDER BY entry_id",
            "SELECT entry_id, line, account_id, asset, amount FROM ledger.postings ORDER BY 1, 2",
            "SELECT account_id, asset, amount FROM ledger.balances ORDER BY 1, 2",
            "SELECT source, applied_sequence FROM ledger.stream_cursors ORDER BY 1",
            "SELECT parked_id, reference, reason, detail, resolved_at, entry_id FROM ledger.parked_trades "
            "ORDER BY 1",
            "SELECT account_id, parked_id, reason FROM ledger.account_halts ORDER BY 1",
        ):
            cursor = await conn.execute(query)
            rows.append(tuple(await cursor.fetchall()))
        return tuple(rows)


async def test_migration_seeds_system_accounts(settlement: Ledger) -> None:
    for system in (ledger.SYSTEM_EXTERNAL, ledger.SYSTEM_FEES):
        response = await settlement.stub.GetBalances(pb.GetBalancesRequest(account_id=system))
        assert response.account_id == system
    assert await settlement.store.audit() == []


async def test_trades_post_once_cursor_resumes_and_balances_are_exact(settlement: Ledger) -> None:
    stub = settlement.stub
    alice = await account(stub, USD=10_000_000)
    bob = await account(stub, BTC=5_000)
    source = unique("shard")
    first = [(3, trade(1, alice, bob)), (5, trade(2, alice, bob, base=2000, quote=1_000_000))]

    assert await exchange(stub, [pb.StreamTradesRequest(source=source), batch(source, first)]) == [0, 5]
    # The same batch again (a resend after a lost acknowledgement) posts nothing more.
    assert await exchange(stub, [pb.StreamTradesRequest(source=source), batch(source, first)]) == [5, 5]
    # The cursor resumes after a new stream; a later batch posts and advances it.
    second = [(9, trade(3, bob, alice, base=500, quote=200_000, buyer_fee=0, seller_fee=0))]
    assert await exchange(stub, [pb.StreamTradesRequest(source=source), batch(source, second)]) == [5, 9]
    assert await settlement.store.applied_sequence(source) == 9

    assert await balances(stub, alice) == {
        BASE: 1000 + 2000 - 500,
        QUOTE: 10_000_000 - (500_000 + 1000) - (1_000_000 + 1000) + 200_000,
    }
    assert await balances(stub, bob) == {
        BASE: 5_000 - 1000 - 2000 + 500,
        QUOTE: (500_000 - 500) + (1_000_000 - 500) - 200_000,
    }
    entries = (await stub.ListEntries(pb.ListEntriesRequest(account_id=alice))).entries
    assert [e.reference for e in entries] == [
        f"trade:{source}:3",
        f"trade:{source}:2",
        f"trade:{source}:1",
        entries[-1].reference,
    ]
    assert entries[-1].kind == "deposit"
    for entry in entries:
        assert entry.created_ns > 0
        assert set(
            ledger.net_by_asset(
                ledger.Posting(p.account_id, p.asset, p.amount) for p in entry.postings
            ).values()
        ) == {0}
    assert await settlement.store.audit() == []


def to_post(source: str, sequence: int, item: common_pb2.Trade) -> TradeToPost:
    return TradeToPost(sequence, item, ledger.trade_entry(source, ledger.fill_of(item)))


async def test_duplicate_trade_ids_within_a_batch_post_once(settlement: Ledger) -> None:
    alice = await account(settlement.stub, USD=1_000_000)
    bob = await account(settlement.stub, BTC=10_000)
    source = unique("shard")
    same = trade(1, alice, bob, base=100, quote=1000, buyer_fee=1, seller_fee=1)
    posted = await settlement.store.post_trades(source, [to_post(source, 1, same), to_post(source, 2, same)])
    assert (posted.applied_sequence, posted.posted, posted.parked) == (2, 1, ())
    again = await settlement.store.post_trades(source, [to_post(source, 1, same)])
    assert (again.applied_sequence, again.posted) == (2, 0)  # never goes backwards
    assert await balances(settlement.stub, alice) == {BASE: 100, QUOTE: 1_000_000 - 1001}


async def test_outbox_sender_delivers_everything_once_and_resumes(settlement: Ledger) -> None:
    stub = settlement.stub
    buyers = [await account(stub, USD=100_000_000) for _ in range(3)]
    sellers = [await account(stub, BTC=1_000_000) for _ in range(3)]
    source = unique("shard")
    journal = [
        (sequence, trade(sequence, buyers[sequence % 3], sellers[(sequence // 3) % 3]))
        for sequence in range(1, 301)
    ]

    async def load_after(cursor: int, limit: int) -> Sequence[tuple[int, common_pb2.Trade]]:
        return [item for item in journal if item[0] > cursor][:limit]

    def sender() -> OutboxSender[common_pb2.Trade]:
        return OutboxSender(
            "settlement",
            source,
            stub.StreamTrades,
            load_after,
            batch,
            lambda answer: answer.applied_sequence,
            max_items=64,
            idle_poll_seconds=0.05,
        )

    first = sender()
    await first.start()
    try:
        assert await first.wait_acknowledged(300, 60.0)
    finally:
        await first.stop()
    journal.extend((s, trade(s, buyers[0], sellers[0])) for s in range(301, 311))
    again = sender()
    await again.start()
    try:
        assert await again.wait_acknowledged(310, 60.0)
    finally:
        await again.stop()

    async with await psycopg.AsyncConnection.connect(settlement.url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM ledger.journal_entries WHERE reference LIKE %s", (f"trade:{source}:%",)
        )
        assert (await cursor.fetchone()) == (310,)
    bought = {b: 0 for b in buyers}
    for _, t in journal:
        bought[t.buy_account_id] += 1
    for buyer in buyers:
        assert await balances(stub, buyer) == {
            BASE: 1000 * bought[buyer],
            QUOTE: 100_000_000 - 501_000 * bought[buyer],
        }
    assert await settlement.store.audit() == []


async def test_concurrent_deposits_and_trades_serialize(settlement: Ledger) -> None:
    stub = settlement.stub
    alice = await account(stub, USD=20_000_000)
    bob = await account(stub, BTC=1_000_000)
    sources = [unique("shard") for _ in range(3)]

    async def deposits(who: str, asset: str) -> None:
        for _ in range(15):
            await stub.Deposit(
                pb.DepositRequest(deposit_id=unique("dep"), account_id=who, asset=asset, amount=7)
            )

    async def trades(source: str) -> None:
        items = [(s, trade(s, alice, bob)) for s in range(1, 11)]
        requests = [pb.StreamTradesRequest(source=source)] + [
            batch(source, items[i : i + 2]) for i in range(0, 10, 2)
        ]
        assert (await exchange(stub, requests))[-1] == 10

    await asyncio.gather(
        deposits(alice, QUOTE),
        deposits(bob, QUOTE),
        deposits(alice, BASE),
        deposits(bob, BASE),
        *(trades(s) for s in sources),
    )
    assert await balances(stub, alice) == {
        BASE: 15 * 7 + 30 * 1000,
        QUOTE: 20_000_000 + 15 * 7 - 30 * 501_000,
    }
    assert await balances(stub, bob) == {BASE: 1_000_000 + 15 * 7 - 30 * 1000, QUOTE: 15 * 7 + 30 * 499_500}
    assert await settlement.store.audit() == []


async def test_malformed_trades_abort_the_stream_and_post_nothing(settlement: Ledger) -> None:
    """A malformed batch (a bug in the sender) is refused whole; a well-formed trade the ledger
    cannot post is parked instead (tests/integration/test_settlement_parked_trades.py)."""
    stub = settlement.stub
    alice = await account(stub, USD=1_000_000)
    bob = await account(stub, BTC=1_000)
    source = unique("shard")
    assert await exchange(
        stub, [pb.StreamTradesRequest(source=source), batch(source, [(1, trade(1, alice, bob))])]
    ) == [0, 1]
    hello = pb.StreamTradesRequest(source=source)
    good = (2, trade(2, alice, bob))
    bad_field = trade(3, alice, bob)
    bad_field.quote_amount = 0
    cases: list[tuple[list[pb.StreamTradesRequest], grpc.StatusCode, str]] = [
        ([batch(source, [(1, trade(1, alice, bob))])], grpc.StatusCode.INVALID_ARGUMENT, "HELLO_EXPECTED"),
        ([pb.StreamTradesRequest()], grpc.StatusCode.INVALID_ARGUMENT, "REQUIRED"),
        ([pb.StreamTradesRequest(source="a:b")], grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SOURCE"),
        ([pb.StreamTradesRequest(source=source + "\n")], grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SOURCE"),
        ([pb.StreamTradesRequest(source="s" * 65)], grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SOURCE"),
        ([hello, batch("other", [good])], grpc.StatusCode.INVALID_ARGUMENT, "SOURCE_CHANGED"),
        (
            [hello, batch(source, [good, (2, trade(3, alice, bob))])],
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SEQUENCE",
        ),
        (
            [hello, batch(source, [(0, trade(2, alice, bob))])],
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SEQUENCE",
        ),
        (
            [hello, pb.StreamTradesRequest(trades=[pb.SequencedTrade(sequence=2)])],
            grpc.StatusCode.INVALID_ARGUMENT,
            "REQUIRED",
        ),
        ([hello, batch(source, [good, (3, bad_field)])], grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TRADE"),
        (
            [hello, batch(source, [good, (3, trade(3, alice, "bad id"))])],
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ACCOUNT_ID",
        ),
    ]
    before = await snapshot(settlement.url)
    for requests, code, reason in cases:
        error = await stream_refused(stub, requests)
        assert (error.code, error.reason) == (code, reason), (requests, error)
        assert await snapshot(settlement.url) == before
    assert await settlement.store.applied_sequence(source) == 1


async def test_assets(settlement: Ledger) -> None:
    stub = settlement.stub
    code = "A" + uuid.uuid4().hex[:8].upper()
    created = await stub.CreateAsset(pb.CreateAssetRequest(asset=pb.Asset(code=code, scale=2)))
    assert (created.asset.code, created.asset.scale) == (code, 2)
    again = await stub.CreateAsset(pb.CreateAssetRequest(asset=pb.Asset(code=code, scale=2)))
    assert again.asset.scale == 2
    listed = (await stub.ListAssets(pb.ListAssetsRequest())).assets
    assert [(a.code, a.scale) for a in listed if a.code in (code, BASE, QUOTE)] == sorted(
        [(code, 2), (BASE, 8), (QUOTE, 6)]
    )
    before = await snapshot(settlement.url)
    cases = [
        (pb.CreateAssetRequest(asset=pb.Asset(code=code, scale=3)), "ALREADY_EXISTS", "ASSET_EXISTS"),
        (pb.CreateAssetRequest(), "INVALID_ARGUMENT", "REQUIRED"),
        (pb.CreateAssetRequest(asset=pb.Asset(code="", scale=2)), "INVALID_ARGUMENT", "REQUIRED"),
        (
            pb.CreateAssetRequest(asset=pb.Asset(code="usd", scale=2)),
            "INVALID_ARGUMENT",
            "INVALID_ASSET_CODE",
        ),
        (
            pb.CreateAssetRequest(asset=pb.Asset(code="A" * 13, scale=2)),
            "INVALID_ARGUMENT",
            "INVALID_ASSET_CODE",
        ),
        # Refused by backbone.ids before PostgreSQL's CHECK would answer INTERNAL.
        (
            pb.CreateAssetRequest(asset=pb.Asset(code="NEW1\n", scale=2)),
            "INVALID_ARGUMENT",
            "INVALID_ASSET_CODE",
        ),
        (
            pb.CreateAssetRequest(asset=pb.Asset(code=" NEW1", scale=2)),
            "INVALID_ARGUMENT",
            "INVALID_ASSET_CODE",
        ),
        (
            pb.CreateAssetRequest(asset=pb.Asset(code="NEW\x00", scale=2)),
            "INVALID_ARGUMENT",
            "INVALID_ASSET_CODE",
        ),
        (pb.CreateAssetRequest(asset=pb.Asset(code="NEW1", scale=19)), "INVALID_ARGUMENT", "INVALID_SCALE"),
        (
            pb.CreateAssetRequest(asset=pb.Asset(code="NEW1", scale=2**32 - 1)),
            "INVALID_ARGUMENT",
            "INVALID_SCALE",
        ),
    ]
    for request, code_name, reason in cases:
        error = await refused(stub.CreateAsset(request))
        assert (error.code.name, error.reason) == (code_name, reason), request
    assert await snapshot(settlement.url) == before


async def test_accounts_and_api_keys(settlement: Ledger) -> None:
    stub = settlement.stub
    account_id, key = unique("acct"), digest()
    response = await stub.CreateAccount(pb.CreateAccountRequest(account_id=account_id, api_key_sha256=key))
    assert response.account_id == account_id
    found = await stub.AuthenticateApiKey(pb.AuthenticateApiKeyRequest(api_key_sha256=key))
    assert found.account_id == account_id
    assert await balances(stub, account_id) == {}
    before = await snapshot(settlement.url)
    cases = [
        (
            stub.CreateAccount(pb.CreateAccountRequest(account_id=account_id, api_key_sha256=digest())),
            "ALREADY_EXISTS",
            "ACCOUNT_EXISTS",
        ),
        (
            stub.CreateAccount(pb.CreateAccountRequest(account_id=unique("acct"), api_key_sha256=key)),
            "ALREADY_EXISTS",
            "API_KEY_EXISTS",
        ),
        (
            stub.CreateAccount(pb.CreateAccountRequest(account_id="", api_key_sha256=digest())),
            "INVALID_ARGUMENT",
            "REQUIRED",
        ),
        (
            stub.CreateAccount(pb.CreateAccountRequest(account_id="bad id", api_key_sha256=digest())),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
        ),
        (
            stub.CreateAccount(pb.CreateAccountRequest(account_id="x" * 65, api_key_sha256=digest())),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
        ),
        # Refused by backbone.ids before PostgreSQL's CHECK would answer INTERNAL.
        (
            stub.CreateAccount(
                pb.CreateAccountRequest(account_id=unique("acct") + "\n", api_key_sha256=digest())
            ),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
        ),
        (
            stub.CreateAccount(
                pb.CreateAccountRequest(account_id="\t" + unique("acct"), api_key_sha256=digest())
            ),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
        ),
        (
            stub.CreateAccount(
                pb.CreateAccountRequest(account_id=unique("a") + "\x00", api_key_sha256=digest())
            ),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
        ),
        (
            stub.CreateAccount(
                pb.CreateAccountRequest(account_id=ledger.SYSTEM_FEES, api_key_sha256=digest())
            ),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
        ),
        (
            stub.CreateAccount(pb.CreateAccountRequest(account_id=unique("acct"), api_key_sha256=b"short")),
            "INVALID_ARGUMENT",
            "INVALID_API_KEY_DIGEST",
        ),
        (
            stub.CreateAccount(pb.CreateAccountRequest(account_id=unique("acct"))),
            "INVALID_ARGUMENT",
            "INVALID_API_KEY_DIGEST",
        ),
        (
            stub.AuthenticateApiKey(pb.AuthenticateApiKeyRequest(api_key_sha256=digest())),
            "NOT_FOUND",
            "UNKNOWN_API_KEY",
        ),
        (
            stub.AuthenticateApiKey(pb.AuthenticateApiKeyRequest(api_key_sha256=key[:31])),
            "INVALID_ARGUMENT",
            "INVALID_API_KEY_DIGEST",
        ),
        (stub.GetBalances(pb.GetBalancesRequest(account_id=unique("ghost"))), "NOT_FOUND", "UNKNOWN_ACCOUNT"),
        (stub.GetBalances(pb.GetBalancesRequest(account_id="")), "INVALID_ARGUMENT", "REQUIRED"),
        (stub.GetBalances(pb.GetBalancesRequest(account_id="a/b")), "INVALID_ARGUMENT", "INVALID_ACCOUNT_ID"),
        (
            stub.GetBalances(pb.GetBalancesRequest(account_id=account_id + "\n")),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
        ),
    ]
    for call, code_name, reason in cases:
        error = await refused(call)
        assert (error.code.name, error.reason) == (code_name, reason)
    assert await snapshot(settlement.url) == before


async def test_deposits(settlement: Ledger) -> None:
    stub = settlement.stub
    alice = await account(stub)
    deposit_id = unique("dep")
    first = await stub.Deposit(
        pb.DepositRequest(deposit_id=deposit_id, account_id=alice, asset=QUOTE, amount=250)
    )
    assert first.created and first.balance == 250 and first.entry_id > 0
    other = await stub.Deposit(
        pb.DepositRequest(deposit_id=unique("dep"), account_id=alice, asset=QUOTE, amount=50)
    )
    assert other.balance == 300
    repeat = await stub.Deposit(
        pb.DepositRequest(deposit_id=deposit_id, account_id=alice, asset=QUOTE, amount=250)
    )
    assert (repeat.created, repeat.entry_id, repeat.balance) == (False, first.entry_id, 300)
    external = await balances(settlement.stub, ledger.SYSTEM_EXTERNAL)
    assert external[QUOTE] < 0
    before = await snapshot(settlement.url)
    max_deposit = pb.DepositRequest(
        deposit_id=unique("dep"), account_id=alice, asset=QUOTE, amount=ledger.INT64_MAX
    )
    cases = [
        (
            pb.DepositRequest(deposit_id=deposit_id, account_id=alice, asset=QUOTE, amount=251),
            "FAILED_PRECONDITION",
            "DEPOSIT_ID_REUSED",
        ),
        (
            pb.DepositRequest(deposit_id=deposit_id, account_id=alice, asset=BASE, amount=250),
            "FAILED_PRECONDITION",
            "DEPOSIT_ID_REUSED",
        ),
        (
            pb.DepositRequest(deposit_id=unique("dep"), account_id=unique("ghost"), asset=QUOTE, amount=1),
            "NOT_FOUND",
            "UNKNOWN_ACCOUNT",
        ),
        (
            pb.DepositRequest(deposit_id=unique("dep"), account_id=alice, asset="NOPE", amount=1),
            "NOT_FOUND",
            "UNKNOWN_ASSET",
        ),
        (
            pb.DepositRequest(deposit_id=unique("dep"), account_id=ledger.SYSTEM_FEES, asset=QUOTE, amount=1),
            "INVALID_ARGUMENT",
            "SYSTEM_ACCOUNT",
        ),
        (
            pb.DepositRequest(deposit_id=unique("dep"), account_id=alice, asset=QUOTE, amount=0),
            "INVALID_ARGUMENT",
            "INVALID_AMOUNT",
        ),
        (
            pb.DepositRequest(deposit_id=unique("dep"), account_id=alice, asset=QUOTE, amount=-3),
            "INVALID_ARGUMENT",
            "INVALID_AMOUNT",
        ),
        (pb.DepositRequest(account_id=alice, asset=QUOTE, amount=3), "INVALID_ARGUMENT", "REQUIRED"),
        (
            pb.DepositRequest(deposit_id="a b", account_id=alice, asset=QUOTE, amount=3),
            "INVALID_ARGUMENT",
            "INVALID_DEPOSIT_ID",
        ),
        (
            pb.DepositRequest(deposit_id=unique("dep") + "\n", account_id=alice, asset=QUOTE, amount=3),
            "INVALID_ARGUMENT",
            "INVALID_DEPOSIT_ID",
        ),
        (
            pb.DepositRequest(deposit_id="d" * 65, account_id=alice, asset=QUOTE, amount=3),
            "INVALID_ARGUMENT",
            "INVALID_DEPOSIT_ID",
        ),
        (
            pb.DepositRequest(deposit_id=unique("dep"), account_id=alice + "\n", asset=QUOTE, amount=3),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
        ),
        (
            pb.DepositRequest(deposit_id=unique("dep"), account_id=alice, asset=QUOTE + "\n", amount=3),
            "INVALID_ARGUMENT",
            "INVALID_ASSET_CODE",
        ),
        (
            pb.DepositRequest(deposit_id=unique("dep"), account_id=alice, asset="", amount=3),
            "INVALID_ARGUMENT",
            "REQUIRED",
        ),
        (max_deposit, "FAILED_PRECONDITION", "BALANCE_TOO_LARGE"),
    ]
    for request, code_name, reason in cases:
        error = await refused(stub.Deposit(request))
        assert (error.code.name, error.reason) == (code_name, reason), request
    assert await snapshot(settlement.url) == before
    assert await settlement.store.audit() == []


async def test_list_entries(settlement: Ledger) -> None:
    stub = settlement.stub
    alice = await account(stub)
    ids = [unique("dep") for _ in range(5)]
    for amount, deposit_id in enumerate(ids, start=1):
        await stub.Deposit(
            pb.DepositRequest(deposit_id=deposit_id, account_id=alice, asset=QUOTE, amount=amount)
        )
    entries = (await stub.ListEntries(pb.ListEntriesRequest(account_id=alice))).entries
    assert [e.reference for e in entries] == [f"deposit:{d}" for d in reversed(ids)]
    assert [e.entry_id for e in entries] == sorted((e.entry_id for e in entries), reverse=True)
    newest = entries[0]
    assert newest.kind == "deposit"
    assert [(p.account_id, p.asset, p.amount) for p in newest.postings] == [
        (alice, QUOTE, 5),
        (ledger.SYSTEM_EXTERNAL, QUOTE, -5),
    ]
    two = (await stub.ListEntries(pb.ListEntriesRequest(account_id=alice, limit=2))).entries
    assert [e.entry_id for e in two] == [e.entry_id for e in entries[:2]]
    system = await stub.ListEntries(pb.ListEntriesRequest(account_id=ledger.SYSTEM_EXTERNAL, limit=1000))
    assert len(system.entries) >= 5
    fresh = await account(stub)
    assert list((await stub.ListEntries(pb.ListEntriesRequest(account_id=fresh))).entries) == []
    for request, code_name, reason in [
        (pb.ListEntriesRequest(account_id=alice, limit=1001), "INVALID_ARGUMENT", "INVALID_LIMIT"),
        (pb.ListEntriesRequest(account_id=""), "INVALID_ARGUMENT", "REQUIRED"),
        (pb.ListEntriesRequest(account_id=unique("ghost")), "NOT_FOUND", "UNKNOWN_ACCOUNT"),
    ]:
        error = await refused(stub.ListEntries(request))
        assert (error.code.name, error.reason) == (code_name, reason)


async def test_stop_closes_the_pool_and_start_again_is_clean(new_database: Callable[[], str]) -> None:
    settings = Settings.from_env({"BACKBONE_DATABASE_URL": new_database()})
    for _ in range(2):  # the second start finds the migration applied
        app = create_app(settings)
        assert app.name == "settlement"
        await app.start()
        try:
            assert await app.store.applied_sequence("trading-0") == 0
            assert await app.store.audit() == []
        finally:
            await app.stop()
        assert app.pool is None
