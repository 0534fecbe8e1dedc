"""`backbone check` on a live system: all invariants hold after real trading, and each kind of damage
to the stores is reported by the invariant it breaks, naming what breaks it.

The damage is written behind the services' backs (the only SQL writes on their tables outside them,
allowed by tests/unit/test_layering.py for this file alone); what to damage is found through the
services' own audit readers and key builders.

A trade the ledger cannot post (risk's view damaged, so it accepts a sell the ledger cannot settle)
is parked: `backbone check` and settlement's health report it until an operator resolves it through
the gateway's AdminService (the tests at the end, on the same system).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
import redis
from grpc_health.v1 import health_pb2

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import from_rpc_error
from ops.invariants import Report, check_once
from ops.supervisor import health_check
from risk import audit as risk_audit
from risk import keys as risk_keys
from settlement import audit as ledger_audit
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    balances,
    funded_account,
    invariants_hold,
    key,
    order,
    refused,
    setup_market,
    unique,
    wait_for,
)
from tests.integration.grpcurl_stand_in import Answers, run_pasted, substitute
from trading import audit as journal_audit

pytestmark = pytest.mark.integration

ALL = [
    "entries balance",
    "assets net to zero",
    "balances match postings",
    "no negative balance",
    "no parked trades",
    "journal replays",
    "trades posted once",
    "reservations match open orders",
    "risk matches ledger",
    "fills match the journal",
    "history matches the journal",
]


@pytest.fixture(scope="module")
def traded(system_factory: Callable[..., System]) -> Iterator[tuple[System, dict[str, str]]]:
    """A system after a trade, a partial fill, a cancel and resting orders; returns it and order ids."""
    system = system_factory()
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "ETH-USD", "ETH")
        _, seller = funded_account(gateway, {"ETH": "10"})
        _, buyer = funded_account(gateway, {"USD": "100000"})
        submit = gateway.public.SubmitOrder
        resting_sell = submit(order("ETH-USD", SELL, "2000.00", "3"), metadata=key(seller)).order.order_id
        submit(order("ETH-USD", BUY, "2001.00", "1"), metadata=key(buyer))  # partly fills the sell
        resting_buy = submit(order("ETH-USD", BUY, "1500.00", "2"), metadata=key(buyer)).order.order_id
        cancelled = submit(order("ETH-USD", BUY, "1400.00", "1"), metadata=key(buyer)).order.order_id
        gateway.public.CancelOrder(gateway_pb2.CancelOrderRequest(order_id=cancelled), metadata=key(buyer))
    yield system, {"resting_sell": resting_sell, "resting_buy": resting_buy, "cancelled": cancelled}


def statuses(report: Report) -> dict[str, str]:
    return {finding.name: finding.status for finding in report.findings}


def settled(system: System) -> Report:
    return invariants_hold(system.database_url, system.redis_url)


def test_every_invariant_holds_after_trading(traded: tuple[System, dict[str, str]]) -> None:
    system, _ = traded
    report = settled(system)
    assert [f.name for f in report.findings] == ALL
    assert report.finding("trades posted once").summary == "1 trades, each posted once as computed"
    assert report.finding("no parked trades").summary == "no trade parked, no account halted"
    assert report.finding("reservations match open orders").summary.startswith("2 open orders")
    assert (
        report.finding("fills match the journal").summary
        == "2 fills of 1 trades, each as the journal records it"
    )


def test_the_command_reports_and_exits_by_status(traded: tuple[System, dict[str, str]]) -> None:
    system, _ = traded
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    environment |= {"BACKBONE_DATABASE_URL": system.database_url, "BACKBONE_REDIS_URL": system.redis_url}
    ran = subprocess.run(
        [sys.executable, "-m", "ops", "check", "--json"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout.splitlines()[-1])
    assert report["status"] == "ok"
    assert [f["name"] for f in report["findings"]] == ALL

    missing = subprocess.run(
        [sys.executable, "-m", "ops", "check"],
        env={k: v for k, v in environment.items() if k != "BACKBONE_DATABASE_URL"}
        | {"BACKBONE_DATA_DIR": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "BACKBONE_DATABASE_URL" in missing.stderr

    for wrong in ("nan", "-1", "soon"):
        refused = subprocess.run(
            [sys.executable, "-m", "ops", "check", "--settle", wrong],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2
        assert "is not a number of seconds from 0 to 3600" in refused.stderr


def reservation_key(cache: redis.Redis, order_id: str) -> tuple[str, str]:
    """(account, risk's key) of the reservation `order_id` holds."""
    held = next(r for r in risk_audit.reservations(cache) if r.order_id == order_id)
    return held.account_id, risk_keys.order_key(held.account_id, order_id)


def damaged(system: System, names: set[str]) -> Report:
    """Check once; exactly `names` are violated."""
    report = check_once(system.database_url, system.redis_url)
    violated = {name for name, status in statuses(report).items() if status == "violated"}
    assert violated == names, "\n".join(report.lines())
    return report


def test_a_lost_reservation_is_reported(traded: tuple[System, dict[str, str]]) -> None:
    system, orders = traded
    settled(system)
    cache = redis.Redis.from_url(system.redis_url)
    _, order_key = reservation_key(cache, orders["resting_buy"])
    saved = cache.hgetall(order_key)
    cache.delete(order_key)
    try:
        report = damaged(system, {"reservations match open orders"})
        items = report.finding("reservations match open orders").items
        assert any(orders["resting_buy"] in item and "risk holds None" in item for item in items), items
    finally:
        cache.hset(order_key, mapping=dict(saved.items()))
        cache.close()
    settled(system)


def test_an_orphan_reservation_and_a_wrong_risk_total_are_reported(
    traded: tuple[System, dict[str, str]],
) -> None:
    system, orders = traded
    settled(system)
    cache = redis.Redis.from_url(system.redis_url)
    account, _ = reservation_key(cache, orders["resting_sell"])
    orphan_key = risk_keys.order_key(account, "never-placed")
    balances_key = risk_keys.balances_key(account)
    eth_reserved = risk_keys.balance_field("ETH", risk_keys.RESERVED)
    usd_total = risk_keys.balance_field("USD", risk_keys.TOTAL)
    cache.hset(orphan_key, mapping={"asset": "ETH", "amount": "5"})
    cache.hincrby(balances_key, eth_reserved, 5)
    cache.hincrby(balances_key, usd_total, 1)
    try:
        report = damaged(system, {"reservations match open orders", "risk matches ledger"})
        assert report.finding("reservations match open orders").items == [
            f"order never-placed of {account} holds 5 ETH but is not open"
        ]
        assert any(account in item for item in report.finding("risk matches ledger").items)
    finally:
        cache.delete(orphan_key)
        cache.hincrby(balances_key, eth_reserved, -5)
        cache.hincrby(balances_key, usd_total, -1)
        cache.close()
    settled(system)


def test_ledger_damage_is_reported(traded: tuple[System, dict[str, str]]) -> None:
    system, _ = traded
    settled(system)
    with psycopg.connect(system.database_url) as connection:
        account, _ = next(iter(ledger_audit.customer_balances(connection)))
        # A posting without its counterpart: the entry and the asset no longer sum to zero.
        (entry,) = connection.execute(
            "INSERT INTO ledger.journal_entries (kind, reference) VALUES ('deposit', 'deposit:forged') "
            "RETURNING entry_id"
        ).fetchone() or (0,)
        connection.execute(
            "INSERT INTO ledger.postings (entry_id, line, account_id, asset, amount) "
            "VALUES (%s, 1, %s, 'USD', 7)",
            (entry, account),
        )
        connection.commit()
        try:
            report = damaged(system, {"entries balance", "assets net to zero", "balances match postings"})
            assert report.finding("entries balance").items == [
                f"entry {entry} (deposit:forged) sums to 7 in USD"
            ]
            assert report.finding("assets net to zero").items == ["USD sums to 7"]
        finally:
            connection.execute("DELETE FROM ledger.postings WHERE entry_id = %s", (entry,))
            connection.execute("DELETE FROM ledger.journal_entries WHERE entry_id = %s", (entry,))
            connection.commit()
    settled(system)


def test_a_lost_trade_posting_and_a_tampered_journal_are_reported(
    traded: tuple[System, dict[str, str]],
) -> None:
    system, _ = traded
    settled(system)
    with psycopg.connect(system.database_url) as connection:
        trade = ledger_audit.trade_entries(connection)[0]
        entry, reference = trade.entry_id, trade.reference
        connection.execute("DELETE FROM ledger.postings WHERE entry_id = %s", (entry,))
        connection.execute("DELETE FROM ledger.journal_entries WHERE entry_id = %s", (entry,))
        connection.commit()
        try:
            report = damaged(system, {"trades posted once", "balances match postings"})
            assert report.finding("trades posted once").items[0].startswith(f"{reference} (journal ")
        finally:
            connection.execute(
                "INSERT INTO ledger.journal_entries (entry_id, kind, reference) VALUES (%s, 'trade', %s)",
                (entry, reference),
            )
            connection.cursor().executemany(
                "INSERT INTO ledger.postings (entry_id, line, account_id, asset, amount) "
                "VALUES (%s, %s, %s, %s, %s)",
                [
                    (entry, line, p.account_id, p.asset, p.amount)
                    for line, p in enumerate(trade.postings, start=1)
                ],
            )
            connection.commit()
        settled(system)

        # A journaled trade rewritten to another price no longer replays from its commands.
        shard, record = next(
            (shard, record)
            for shard in journal_audit.shards(connection)
            for record in journal_audit.records(connection, shard)
            if record.WhichOneof("record") == "trade"
        )
        payload = record.SerializeToString()
        record.trade.price_ticks += 1
        connection.execute(
            "UPDATE trading.journal SET payload = %s WHERE shard = %s AND sequence = %s",
            (record.SerializeToString(), shard, record.sequence),
        )
        connection.commit()
        try:
            report = check_once(system.database_url, system.redis_url)
            assert statuses(report) == {
                **dict.fromkeys(ALL[:5], "ok"),
                "journal replays": "violated",
                **dict.fromkeys(ALL[6:], "unchecked"),
            }, "\n".join(report.lines())
            assert "is not what replay regenerated" in report.finding("journal replays").items[0]
        finally:
            connection.execute(
                "UPDATE trading.journal SET payload = %s WHERE shard = %s AND sequence = %s",
                (payload, shard, record.sequence),
            )
            connection.commit()
    settled(system)


def test_a_lost_or_altered_fill_is_reported(traded: tuple[System, dict[str, str]]) -> None:
    system, _ = traded
    settled(system)
    with psycopg.connect(system.database_url) as connection:
        (shard,) = journal_audit.shards(connection)
        projection = journal_audit.fills_projection(connection, shard)
        assert projection is not None
        _, (first, second) = projection
        connection.execute(
            "DELETE FROM trading.fills WHERE shard = %s AND account_id = %s AND trade_id = %s AND side = %s",
            (shard, *first[:3]),
        )
        connection.execute(
            "UPDATE trading.fills SET fee = fee + 1 WHERE shard = %s AND account_id = %s AND trade_id = %s "
            "AND side = %s",
            (shard, *second[:3]),
        )
        connection.commit()
        try:
            items = damaged(system, {"fills match the journal"}).finding("fills match the journal").items
            assert len(items) == 2, items
            assert any(
                f"account {second[0]} in trade {second[1]}" in item and "its trade says" in item
                for item in items
            )
            assert any(
                f"account {first[0]} in trade {first[1]}" in item and "missing" in item for item in items
            )
        finally:
            connection.execute(
                "UPDATE trading.fills SET fee = fee - 1 "
                "WHERE shard = %s AND account_id = %s AND trade_id = %s AND side = %s",
                (shard, *second[:3]),
            )
            connection.execute(
                "INSERT INTO trading.fills (shard, account_id, trade_id, side, order_id, client_order_id, "
                "symbol, price_ticks, quantity_lots, fee, liquidity_side, timestamp_ns, sequence) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (shard, *first),
            )
            connection.commit()
    settled(system)


def test_a_lost_or_altered_history_report_is_reported(traded: tuple[System, dict[str, str]]) -> None:
    system, _ = traded
    settled(system)
    with psycopg.connect(system.database_url) as connection:
        (shard,) = journal_audit.shards(connection)
        history = journal_audit.report_history(connection, shard)
        assert history is not None
        _, reports, _ = history
        numbered = sorted(reports, key=lambda row: (row[0], row[1]))
        # The first report of an account with two or more is lost (a gap in its numbers), and
        # another report is altered (its bytes say another status).
        lost = next(
            row for row in numbered if row[1] == 1 and any(r[0] == row[0] and r[1] == 2 for r in numbered)
        )
        altered = next(row for row in numbered if row[0] != lost[0])
        changed = common_pb2.ExecutionReport.FromString(altered[6])
        changed.order.filled_lots += 1
        connection.execute(
            "DELETE FROM trading.reports WHERE shard = %s AND account_id = %s AND account_sequence = %s",
            (shard, lost[0], lost[1]),
        )
        connection.execute(
            "UPDATE trading.reports SET report = %s "
            "WHERE shard = %s AND account_id = %s AND account_sequence = %s",
            (changed.SerializeToString(), shard, altered[0], altered[1]),
        )
        connection.commit()
        try:
            items = (
                damaged(system, {"history matches the journal"}).finding("history matches the journal").items
            )
            assert any(f"account {lost[0]}'s reports are not numbered" in item for item in items), items
            assert any(f"report 1 of account {lost[0]} is missing" in item for item in items), items
            assert any(
                f"report {altered[1]} of account {altered[0]} differs from the journal's replay" in item
                for item in items
            ), items
        finally:
            connection.execute(
                "UPDATE trading.reports SET report = %s WHERE shard = %s AND account_id = %s "
                "AND account_sequence = %s",
                (altered[6], shard, altered[0], altered[1]),
            )
            connection.execute(
                "INSERT INTO trading.reports (shard, account_id, account_sequence, order_id, "
                "client_order_id, symbol, sequence, report) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (shard, *lost),
            )
            connection.commit()
    settled(system)


def test_a_parked_trade_that_is_also_posted_or_in_no_journal_is_reported(
    traded: tuple[System, dict[str, str]],
) -> None:
    system, _ = traded
    settled(system)
    with psycopg.connect(system.database_url) as connection:
        posted = ledger_audit.trade_entries(connection)[0]
        _, source, trade_id = posted.reference.split(":")
        accounts = sorted({p.account_id for p in posted.postings if not p.account_id.startswith("system:")})
        forged = [
            (source, 10**6, int(trade_id), posted.reference),  # recorded as parked, yet posted
            ("ghost-shard", 1, 1, "trade:ghost-shard:1"),  # parked, but no journal has it
        ]
        for row in forged:
            connection.execute(
                "INSERT INTO ledger.parked_trades (source, sequence, trade_id, reference, trade, reason, "
                "account_ids) VALUES (%s, %s, %s, %s, %s, 'NEGATIVE_BALANCE', %s)",
                (*row, json.dumps({"trade_id": str(row[2]), "buy_account_id": accounts[0],
                                   "sell_account_id": accounts[-1], "base_asset": "ETH", "quote_asset": "USD",
                                   "base_amount": "1", "quote_amount": "1"}), accounts),
            )  # fmt: skip
        connection.commit()
        try:
            # Risk never applied these, so its totals differ from the ledger's plus the parked trades.
            report = damaged(system, {"no parked trades", "trades posted once", "risk matches ledger"})
            assert report.finding("trades posted once").items == [
                f"{posted.reference} is posted and still parked",
                "trade:ghost-shard:1 is parked but in no journal",
            ]
            items = report.finding("no parked trades").items
            assert [item.split(" ")[0] for item in items] == [posted.reference, "trade:ghost-shard:1"]
        finally:
            connection.execute(
                "DELETE FROM ledger.parked_trades WHERE reference = ANY(%s)", ([r[3] for r in forged],)
            )
            connection.commit()
    settled(system)


# --- parked trades ------------------------------------------------------------------------------
# Risk's view of one seller is damaged (it believes the seller holds 2 PRK more than the ledger
# does, as after a lost posting or a wrong rebuild), so risk accepts a sell the ledger cannot
# settle. The ledger parks that trade and halts the seller and the buyer; the buyer's next trade
# waits behind it; other accounts keep trading and posting; trading's outbox to settlement never
# stalls. Settlement's parked-trades health entry and `backbone check` name them. An operator lists
# them through the gateway's AdminService (the README's commands, pasted), funds the seller and
# retries: both trades post in order, the halts are lifted and every invariant holds again. Bad
# input to the admin calls is refused naming the field, and changes nothing.

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PARKED_ENTRY = "backbone.settlement.v1.SettlementService/parked-trades"
OUTBOX_ENTRY = "backbone.trading.v1.TradingService/outbox/settlement-trades"
EXTRA = 2 * 10**8  # 2 PRK in minor units (scale 8)
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class Market:
    system: System
    gateway: Gateway
    accounts: dict[str, tuple[str, str]]  # name -> (account id, api key)

    def id(self, name: str) -> str:
        return self.accounts[name][0]

    def trade(self, seller: str, buyer: str, quantity: str) -> None:
        """`seller` rests a sell at 100.00 and `buyer` takes it."""
        public = self.gateway.public
        public.SubmitOrder(order("PRK-USD", SELL, "100.00", quantity), metadata=key(self.accounts[seller][1]))
        answer = public.SubmitOrder(
            order("PRK-USD", BUY, "100.00", quantity), metadata=key(self.accounts[buyer][1])
        )
        assert answer.order.filled_quantity == answer.order.quantity, answer


@pytest.fixture(scope="module")
def market(traded: tuple[System, dict[str, str]]) -> Iterator[Market]:
    """The traded system with a second market and four accounts of its own (the parked-trade tests)."""
    system, _ = traded
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "PRK-USD", "PRK")
        accounts = {
            "seller": funded_account(gateway, {"PRK": "1"}),
            "buyer": funded_account(gateway, {"USD": "10000"}),
            "other_seller": funded_account(gateway, {"PRK": "10"}),
            "other_buyer": funded_account(gateway, {"USD": "10000"}),
        }
        yield Market(system, gateway, accounts)


def admin(market: Market) -> tuple[tuple[str, str], ...]:
    return market.gateway.admin_metadata()


def listed(market: Market) -> gateway_pb2.ListParkedTradesResponse:
    request = gateway_pb2.ListParkedTradesRequest(include_resolved=True)
    answer: gateway_pb2.ListParkedTradesResponse = market.gateway.admin.ListParkedTrades(
        request, metadata=admin(market)
    )
    return answer


def halted(market: Market) -> dict[str, gateway_pb2.AccountHalt]:
    answer = market.gateway.admin.ListHaltedAccounts(
        gateway_pb2.ListHaltedAccountsRequest(), metadata=admin(market)
    )
    return {halt.account_id: halt for halt in answer.halts}


def market_statuses(market: Market) -> dict[str, str]:
    return statuses(check_once(market.system.database_url, market.system.redis_url))


def readme_block() -> str:
    """The grpcurl block of the README's "Parked trades" section, after the walk-through's ADMIN and GW."""
    section = README.read_text().split("\n## Parked trades\n", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", section, re.S)
    (block,) = blocks
    return 'ADMIN="x-admin-key: $(cat .backbone/admin-key)"\nGW=127.0.0.1:50051\n' + block


def paste(system: System, commands: str, folder: Path) -> Answers:
    """Run README commands as a reader would, in a folder holding `.backbone/admin-key`."""
    (folder / ".backbone").mkdir(parents=True)
    (folder / ".backbone" / "admin-key").write_text(system.admin_key + "\n")
    return run_pasted(substitute(commands, "GW=127.0.0.1:50051", f"GW={system.gateway}"), folder)


def test_a_parked_trade_is_reported_and_retried_through_the_gateway(market: Market, tmp_path: Path) -> None:
    system = market.system
    invariants_hold(system.database_url, system.redis_url)
    cache = redis.Redis.from_url(system.redis_url)
    seller_total = (
        risk_keys.balances_key(market.id("seller")),
        risk_keys.balance_field("PRK", risk_keys.TOTAL),
    )
    cache.hincrby(*seller_total, EXTRA)  # risk now believes the seller holds 3 PRK; the ledger says 1
    try:
        # One buy of 3 takes two resting sells in one command: 2 PRK of the seller, which the ledger
        # cannot deliver from the seller's 1 (parked), then 1 PRK of another seller, which waits
        # behind it because the buyer is now halted.
        public = market.gateway.public
        for who, quantity in (("seller", "2"), ("other_seller", "1")):
            public.SubmitOrder(
                order("PRK-USD", SELL, "100.00", quantity), metadata=key(market.accounts[who][1])
            )
        taken = public.SubmitOrder(
            order("PRK-USD", BUY, "100.00", "3"), metadata=key(market.accounts["buyer"][1])
        )
        assert taken.order.filled_quantity == taken.order.quantity
        market.trade("other_seller", "other_buyer", "1")  # other accounts post as usual

        wait_for(lambda: listed(market).parked_count == 2, what="two parked trades")
        parked = listed(market)
        first, second = parked.parked_trades
        assert (RejectReason.from_number(first.reason), RejectReason.from_number(second.reason)) == (
            RejectReason.NEGATIVE_BALANCE,
            RejectReason.ACCOUNT_HALTED,
        )
        assert (first.sell_account_id, first.buy_account_id) == (market.id("seller"), market.id("buyer"))
        assert (first.base_amount, first.quote_amount, first.price, first.quantity) == (
            "2.00000000",
            "200.000000",
            "100.00",
            "2.0000",
        )
        assert first.parked_at.seconds > 0 and not first.resolution
        assert sorted(first.account_ids) == sorted([market.id("seller"), market.id("buyer")])
        halts = halted(market)
        assert set(halts) == {market.id("seller"), market.id("buyer")}
        assert halts[market.id("buyer")].trade_id == first.trade_id
        assert halts[market.id("buyer")].parked_trades == 2
        # Risk learns the halts from the ledger: the halted accounts' new orders are refused.
        buyer_key = market.accounts["buyer"][1]

        def buyer_refused() -> str:
            try:
                public.SubmitOrder(order("PRK-USD", BUY, "1.00", "1"), metadata=key(buyer_key))
            except grpc.RpcError as error:
                return str(from_rpc_error(error).reason)
            return ""

        assert wait_for(buyer_refused, what="the halted buyer refused") == "ACCOUNT_HALTED"
        wait_for(
            lambda: balances(market.gateway, market.accounts["other_buyer"][1])["PRK"].total == "1.00000000",
            what="the other accounts' trade posted",
        )

        # Settlement says so in its health; it keeps serving, and trading's outbox is not stalled.
        settlement = system.services.address("settlement")
        status, detail = health_check(settlement, PARKED_ENTRY)
        assert status == NOT_SERVING
        assert (
            "2 trade(s) parked" in detail and market.id("seller") in detail and market.id("buyer") in detail
        )
        assert health_check(settlement, "backbone.settlement.v1.SettlementService")[0] == SERVING
        assert health_check(system.services.address("trading"), OUTBOX_ENTRY)[0] == SERVING

        # `backbone check` lists them; the parked trades are recorded, not missing.
        report = check_once(system.database_url, system.redis_url)
        finding = report.finding("no parked trades")
        assert finding.status == "violated"
        assert any(item.startswith(f"trade:{first.source}:{first.trade_id} ") for item in finding.items)
        assert any(market.id("buyer") in item and "halted" in item for item in finding.items)
        assert report.finding("trades posted once").status == "ok"
        assert "2 parked" in report.finding("trades posted once").summary
        # Risk's damage is still there (it is the cause), and nothing else is wrong.
        assert {name for name, s in market_statuses(market).items() if s != "ok"} == {
            "no parked trades",
            "risk matches ledger",
        }

        # Retrying the waiting trade, or the first before the seller is funded, changes nothing.
        retry = market.gateway.admin.RetryParkedTrade
        error = refused(
            lambda: retry(
                gateway_pb2.RetryParkedTradeRequest(source=second.source, trade_id=second.trade_id),
                metadata=admin(market),
            )
        )
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_HALTED")
        error = refused(
            lambda: retry(
                gateway_pb2.RetryParkedTradeRequest(source=first.source, trade_id=first.trade_id),
                metadata=admin(market),
            )
        )
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NEGATIVE_BALANCE")
        assert listed(market) == parked

        # The operator funds the seller (and repairs risk's view), then retries: both post, in order.
        market.gateway.admin.Deposit(
            gateway_pb2.DepositRequest(
                deposit_id=unique("dep"), account_id=market.id("seller"), asset="PRK", amount="2"
            ),
            metadata=admin(market),
        )
    finally:
        cache.hincrby(*seller_total, -EXTRA)
        cache.close()
    # The retry as the README's "Parked trades" section writes it, pasted (grpcurl played by buf curl).
    assert first.source == "trading-0"
    commands = readme_block()
    commands = substitute(commands, '"account_id":"bob"', f'"account_id":"{market.id("seller")}"')
    commands = substitute(commands, '"trade_id":"7"', f'"trade_id":"{first.trade_id}"')
    answers = paste(system, commands, tmp_path)
    assert {h["accountId"] for h in answers.of("ListHaltedAccounts")[0]["halts"]} == {
        market.id("seller"),
        market.id("buyer"),
    }
    assert [t["tradeId"] for t in answers.of("ListParkedTrades")[0]["parkedTrades"]] == [first.trade_id]
    (answer,) = answers.of("RetryParkedTrade")
    assert [t["tradeId"] for t in answer["posted"]] == [first.trade_id, second.trade_id]
    assert all(t["resolution"] == "posted" and t["resolvedAt"] for t in answer["posted"])
    assert sorted(answer["haltsLifted"]) == sorted([market.id("seller"), market.id("buyer")])
    assert "halts" not in answer and halted(market) == {}
    assert listed(market).parked_count == 0

    # The halts lifted reach risk too: the buyer may trade again.
    def buyer_accepted() -> bool:
        try:
            market.gateway.public.SubmitOrder(
                order("PRK-USD", BUY, "1.00", "1"), metadata=key(market.accounts["buyer"][1])
            )
        except grpc.RpcError as error:
            assert from_rpc_error(error).reason == "ACCOUNT_HALTED", error
            return False
        return True

    wait_for(buyer_accepted, what="the buyer trading again")
    invariants_hold(system.database_url, system.redis_url)
    wait_for(lambda: health_check(system.services.address("settlement"), PARKED_ENTRY)[0] == SERVING)
    # A repeated retry changes nothing.
    again = market.gateway.admin.RetryParkedTrade(
        gateway_pb2.RetryParkedTradeRequest(source=first.source, trade_id=first.trade_id),
        metadata=admin(market),
    )
    assert (list(again.posted), list(again.halts_lifted)) == ([], [])


def test_bad_input_to_the_parked_trade_admin_calls_names_the_field_and_changes_nothing(
    market: Market,
) -> None:
    admin_calls = market.gateway.admin
    before = (listed(market), halted(market))
    md = admin(market)
    retry = gateway_pb2.RetryParkedTradeRequest
    cases: list[tuple[Callable[[], object], str, str, str]] = [
        (
            lambda: admin_calls.ListParkedTrades(gateway_pb2.ListParkedTradesRequest()),
            "UNAUTHENTICATED",
            "MISSING_ADMIN_KEY",
            "",
        ),
        (
            lambda: admin_calls.ListHaltedAccounts(
                gateway_pb2.ListHaltedAccountsRequest(), metadata=(("x-admin-key", "wrong"),)
            ),
            "UNAUTHENTICATED",
            "INVALID_ADMIN_KEY",
            "",
        ),
        (
            lambda: admin_calls.RetryParkedTrade(retry(source="trading-0", trade_id="1")),
            "UNAUTHENTICATED",
            "MISSING_ADMIN_KEY",
            "",
        ),
        (
            lambda: admin_calls.ListParkedTrades(
                gateway_pb2.ListParkedTradesRequest(account_id="bad id"), metadata=md
            ),
            "INVALID_ARGUMENT",
            "INVALID_ACCOUNT_ID",
            "account_id",
        ),
        (
            lambda: admin_calls.ListParkedTrades(
                gateway_pb2.ListParkedTradesRequest(limit=1001), metadata=md
            ),
            "INVALID_ARGUMENT",
            "INVALID_LIMIT",
            "limit",
        ),
        (
            lambda: admin_calls.RetryParkedTrade(retry(trade_id="1"), metadata=md),
            "INVALID_ARGUMENT",
            "REQUIRED",
            "source",
        ),
        (
            lambda: admin_calls.RetryParkedTrade(retry(source="trading 0", trade_id="1"), metadata=md),
            "INVALID_ARGUMENT",
            "INVALID_SOURCE",
            "source",
        ),
        (
            lambda: admin_calls.RetryParkedTrade(retry(source="trading-0"), metadata=md),
            "INVALID_ARGUMENT",
            "REQUIRED",
            "trade_id",
        ),
        *(
            (
                lambda bad=bad: admin_calls.RetryParkedTrade(
                    retry(source="trading-0", trade_id=bad), metadata=md
                ),
                "INVALID_ARGUMENT",
                "INVALID_TRADE_ID",
                "trade_id",
            )
            for bad in ("abc", "-1", "0", "1.5", " 1", "1\n", "\uff11\uff12", "9" * 19, "1" * 200)
        ),
        (
            lambda: admin_calls.RetryParkedTrade(
                retry(source="trading-0", trade_id="987654321"), metadata=md
            ),
            "NOT_FOUND",
            "UNKNOWN_PARKED_TRADE",
            "",
        ),
    ]
    for call, code, reason, field in cases:
        error = refused(call)
        assert (error.code.name, error.reason) == (code, reason), error
        assert [v.field for v in error.violations] == ([field] if field else []), error
    assert (listed(market), halted(market)) == before


def test_risk_behind_the_ledger_or_rebuilding_is_pending_not_violated(
    traded: tuple[System, dict[str, str]],
) -> None:
    """Deposits reach risk through settlement's outbox and a rebuild takes a moment: neither is a fault."""
    system, _ = traded
    settled(system)
    cache = redis.Redis.from_url(system.redis_url)
    try:
        cursor = int(cache.get(risk_keys.LEDGER_CURSOR_KEY) or 0)
        assert cursor > 0  # the module's deposits came from the ledger
        cache.set(risk_keys.LEDGER_CURSOR_KEY, cursor - 1)  # as if the last deposit were in flight
        finding = check_once(system.database_url, system.redis_url).finding("risk matches ledger")
        assert finding.status == "pending" and f"up to {cursor - 1} of {cursor}" in finding.summary
    finally:
        cache.set(risk_keys.LEDGER_CURSOR_KEY, cursor)
        cache.close()
    settled(system)
