"""`backbone check` on a live system: all invariants hold after real trading, and each kind of damage
to the stores is reported by the invariant it breaks, naming what breaks it.

The damage is written behind the services' backs (the only SQL writes on their tables outside them,
allowed by tests/unit/test_layering.py for this file alone); what to damage is found through the
services' own audit readers and key builders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import grpc
import psycopg
import pytest
import redis

from backbone.gateway.v1 import gateway_pb2
from ops.invariants import Report, check_once
from risk import audit as risk_audit
from risk import keys as risk_keys
from settlement import audit as ledger_audit
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    funded_account,
    invariants_hold,
    key,
    order,
    setup_market,
)
from trading import audit as journal_audit

pytestmark = pytest.mark.integration

ALL = [
    "entries balance",
    "assets net to zero",
    "balances match postings",
    "no negative balance",
    "journal replays",
    "trades posted once",
    "reservations match open orders",
    "risk matches ledger",
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
    assert report.finding("reservations match open orders").summary.startswith("2 open orders")


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
        cache.hset(order_key, mapping=saved)
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
                **dict.fromkeys(ALL[:4], "ok"),
                "journal replays": "violated",
                **dict.fromkeys(ALL[5:], "unchecked"),
            }, "\n".join(report.lines())
            assert "is not what replay regenerated" in report.finding("journal replays").items[0]
        finally:
            connection.execute(
                "UPDATE trading.journal SET payload = %s WHERE shard = %s AND sequence = %s",
                (payload, shard, record.sequence),
            )
            connection.commit()
    settled(system)
