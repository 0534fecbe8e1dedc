"""Engine snapshots on real PostgreSQL, trading in process: a start loads the newest snapshot and
replays only the journal after it, to the same state digest as a replay of the whole journal; a
snapshot that does not load back to its recorded state stops the start naming it; one written by
another engine version is passed over (the whole journal is replayed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import psycopg
import pytest

from backbone.reasons import RejectReason
from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from backbone.trading.v1 import trading_pb2
from tests.integration.test_trading_journal import (
    BUY,
    SELL,
    Trading,
    new,
    replayed,
    settings_for,
    small_journal,
)
from trading.journal import Journal
from trading.snapshots import FORMAT, Snapshotter, SnapshotUnreadable

pytestmark = pytest.mark.integration

SHARD = "trading-test"  # settings_for's shard


async def journaled(database_url: str) -> Settings:
    """Settings over a database whose journal holds small_journal's 7 records; snapshots by hand."""
    settings = dataclasses.replace(
        settings_for(database_url), trading_snapshot_commands=0, trading_snapshot_seconds=0
    )
    pool = await open_pool(settings, "trading-test")
    try:
        await migrate(pool, "trading")
        await Journal(pool, SHARD).append(small_journal()[1])
    finally:
        await pool.close()
    return settings


def snapshot_rows(database_url: str) -> list[tuple[int, str]]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT sequence, format FROM trading.snapshots WHERE shard = %s ORDER BY sequence", (SHARD,)
        ).fetchall()
    return [(int(sequence), str(form)) for sequence, form in rows]


def damage(database_url: str, sql: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(sql)


async def open_orders_of(trading: Trading, account_id: str) -> list[str]:
    request = trading_pb2.ListOpenOrdersRequest(account_id=account_id, limit=100)
    page = await trading.stub.ListOpenOrders(request)
    return [order.order_id for order in page.orders]


async def whole_journal_digest(settings: Settings) -> str:
    pool = await open_pool(settings, "trading-test")
    try:
        return (await replayed(Journal(pool, SHARD))).state_hash()
    finally:
        await pool.close()


async def test_a_start_loads_the_newest_snapshot_and_replays_only_what_follows(
    new_database: Callable[[], str],
) -> None:
    database_url = new_database()
    settings = await journaled(database_url)
    async with Trading(settings) as trading:
        assert trading.app.snapshotter is not None
        assert await trading.app.snapshotter.take() == 7
        await trading.send([new("s2", SELL, 95, 3), new("b3", BUY, 96, 1)])  # 3 records after it
        assert await trading.app.snapshotter.take() == 10
        await trading.send([new("b4", BUY, 80, 4, account="acct-2")])
        live = trading.app.engine.state_hash()
        listed = await open_orders_of(trading, "acct-1")
    assert snapshot_rows(database_url) == [(7, FORMAT), (10, FORMAT)]
    async with Trading(settings) as trading:
        assert trading.app.recovered_from == 10
        assert trading.app.engine.last_sequence == 11
        assert trading.app.engine.state_hash() == live == await whole_journal_digest(settings)
        # The open-order index follows the engine the snapshot loaded.
        assert await open_orders_of(trading, "acct-1") == listed and listed
        # It goes on from there: a new order trades against the recovered book.
        (response,) = await trading.send([new("s3", SELL, 80, 4, account="acct-3")])
        assert [report.execution_type for report in response.results[0].reports][-1] == 2  # a trade


async def test_replace_fences_and_applied_replace_ids_survive_a_snapshot(
    new_database: Callable[[], str],
) -> None:
    """A snapshot holding a replace fence and an applied replace id loads to the digest of the whole
    journal's replay, and the restarted engine answers and refuses as the live one did."""
    database_url = new_database()
    settings = await journaled(database_url)

    def replace(replace_id: str, price: int) -> trading_pb2.OrderCommand:
        command = trading_pb2.ReplaceOrder(
            order_id="b2", account_id="acct-1", price_ticks=price, quantity_lots=1, replace_id=replace_id
        )
        return trading_pb2.OrderCommand(replace_order=command)

    resolve = trading_pb2.ResolveReplacesRequest(
        replaces=[
            trading_pb2.ReplaceToResolve(order_id="b2", account_id="acct-1", replace_id=replace_id)
            for replace_id in ("applied", "lost")
        ]
    )
    async with Trading(settings) as trading:
        await trading.send([replace("applied", 91)])
        before = await trading.stub.ResolveReplaces(resolve)
        assert trading.app.snapshotter is not None
        assert await trading.app.snapshotter.take() == 10
        live = trading.app.engine.state_hash()
    async with Trading(settings) as trading:
        assert trading.app.recovered_from == 10
        assert trading.app.engine.state_hash() == live == await whole_journal_digest(settings)
        assert await trading.stub.ResolveReplaces(resolve) == before
        assert [r.resolution for r in before.results] == [
            trading_pb2.REPLACE_RESOLUTION_APPLIED,
            trading_pb2.REPLACE_RESOLUTION_FENCED,
        ]
        (late,) = await trading.send([replace("lost", 92)])
        assert late.results[0].reports[0].reject_reason == RejectReason.REPLACE_FENCED.number


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("UPDATE trading.snapshots SET payload = 'not a snapshot'", "it does not decode"),
        (
            "UPDATE trading.snapshots SET state_hash = repeat('0', 64)",
            "its state's digest differs from the one recorded",
        ),
        ("UPDATE trading.snapshots SET sequence = 6", "it stands at sequence 7"),
    ],
)
async def test_a_snapshot_that_does_not_load_back_stops_the_start_naming_it(
    new_database: Callable[[], str], sql: str, why: str
) -> None:
    database_url = new_database()
    settings = await journaled(database_url)
    async with Trading(settings) as trading:
        assert trading.app.snapshotter is not None
        await trading.app.snapshotter.take()
    damage(database_url, sql)
    broken = Trading(settings)
    with pytest.raises(SnapshotUnreadable) as refusal:
        await broken.server.start("127.0.0.1:0")
    await broken.server.server.stop(0)
    await broken.app.stop()
    assert refusal.value.shard == SHARD and refusal.value.why.startswith(why), refusal.value.why
    assert "trading stops rather than serve a state it cannot vouch for" in str(refusal.value)


async def test_a_snapshot_of_another_engine_version_is_passed_over(new_database: Callable[[], str]) -> None:
    database_url = new_database()
    settings = await journaled(database_url)
    async with Trading(settings) as trading:
        assert trading.app.snapshotter is not None
        await trading.app.snapshotter.take()
    damage(database_url, "UPDATE trading.snapshots SET format = 'pickle5-0000000000000000'")
    async with Trading(settings) as trading:
        assert trading.app.recovered_from is None
        assert trading.app.engine.state_hash() == await whole_journal_digest(settings)
        assert trading.app.snapshotter is not None
        await trading.app.snapshotter.take()
    assert snapshot_rows(database_url) == [(7, FORMAT)]  # the old format's row is gone


def test_a_snapshot_is_due_by_records_or_by_time_once_something_was_journaled() -> None:
    sequence = [100]

    async def never() -> tuple[int, str, bytes]:
        raise AssertionError

    by_records = Snapshotter(None, never, lambda: sequence[0], every_records=50, every_seconds=0, since=60)  # type: ignore[arg-type]
    assert not by_records.due(now=1e9, last_taken=0)  # 40 records behind
    sequence[0] = 110
    assert by_records.due(now=0, last_taken=0)
    by_time = Snapshotter(None, never, lambda: sequence[0], every_records=0, every_seconds=60, since=110)  # type: ignore[arg-type]
    assert not by_time.due(now=1_000, last_taken=0)  # nothing journaled since
    sequence[0] = 111
    assert not by_time.due(now=30, last_taken=0) and by_time.due(now=61, last_taken=0)
