"""The fills projection against a real PostgreSQL: each batch lands whole or not at all, never twice.

A batch that fails half-way through its COPY (here: the client order id lookup raising on one
trade) leaves no row and an unchanged mark; the task retries and projects it once. Two
projections of one shard at once (an old process and its successor overlapping) serialize on the
mark's row and never write a fill twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backbone.common.v1 import common_pb2
from backbone.runtime.database import migrate, open_pool
from backbone.runtime.embedded import free_port
from backbone.runtime.server import HealthEntries, HealthServicer
from backbone.trading.v1 import trading_pb2
from ops.supervisor import health_check
from tests.instruments import btc_usd
from tests.integration.test_trading_journal import settings_for
from tests.unit.test_trading_engine import BUY, SELL, T, new
from trading import audit as journal_audit
from trading import watermark
from trading.engine import Engine
from trading.fills import FillProjection, FillQuery, client_order_ids, fill_rows
from trading.journal import Journal

pytestmark = pytest.mark.integration

SHARD = "trading-test"
TRADES = 30


def trades_journal() -> tuple[Engine, list[trading_pb2.JournalRecord]]:
    """TRADES trades between a few accounts, with orders that rest in between."""
    engine = Engine()
    records = list(engine.create_instrument(btc_usd(), T).records)
    for number in range(TRADES):
        clock = T + 1 + number
        records += engine.apply(new(f"s{number}", SELL, 5_000_000, 2, f"acct-{number % 3}"), clock).records
        records += engine.apply(new(f"b{number}", BUY, 5_000_000, 2, f"acct-{number % 4}"), clock).records
        records += engine.apply(new(f"r{number}", BUY, 4_000_000, 1, "acct-rest"), clock).records
    return engine, records


def expected_rows(engine: Engine, records: list[trading_pb2.JournalRecord]) -> list[tuple[Any, ...]]:
    client_order_id_of = client_order_ids(engine.orders)
    return sorted(
        row[1:]
        for record in records
        if record.HasField("trade")
        for row in fill_rows(SHARD, record.sequence, record.trade, client_order_id_of)
    )


def stored(database_url: str) -> tuple[int, list[tuple[Any, ...]]]:
    with psycopg.connect(database_url) as connection:
        projection = journal_audit.fills_projection(connection, SHARD)
    assert projection is not None
    mark, rows = projection
    return mark, sorted(rows)


async def assert_projected_once(
    projection: FillProjection, database_url: str, engine: Engine, records: list[trading_pb2.JournalRecord]
) -> None:
    """The projection reaches the journal's end with one row per side of every trade, the mark there."""
    assert await projection.wait_projected(records[-1].sequence, 30.0)
    mark, rows = stored(database_url)
    assert mark == records[-1].sequence
    assert rows == expected_rows(engine, records) and len(rows) == 2 * TRADES


async def journaled(
    new_database: Callable[[], str], *, write: bool = True
) -> tuple[str, Any, Engine, list[trading_pb2.JournalRecord]]:
    """A new database, and the engine and records of trades_journal(), written to its journal
    unless `write` is False."""
    database_url = new_database()
    settings = settings_for(database_url)
    pool = await open_pool(settings, "trading-test")
    await migrate(pool, "trading")
    engine, records = trades_journal()
    if write:
        await Journal(pool, SHARD).append(records)
    return database_url, pool, engine, records


async def test_a_batch_that_fails_half_way_leaves_nothing_and_is_projected_once(
    new_database: Callable[[], str],
) -> None:
    database_url, pool, engine, records = await journaled(new_database)
    lookups = client_order_ids(engine.orders)
    calls = failures = 0

    def flaky(order_id: str) -> str:
        nonlocal calls, failures
        calls += 1
        if calls == 27:  # the second batch's fourth trade, half-way through its COPY
            failures += 1
            raise RuntimeError("lookup failed")
        return lookups(order_id)

    projection = FillProjection(SHARD, flaky, batch_trades=10, idle_seconds=0.05)
    await projection.start(settings_for(database_url), records[-1].sequence)
    try:
        assert await projection.wait_projected(records[-1].sequence, 30.0)
        assert failures == 1
        mark, rows = stored(database_url)
        assert mark == records[-1].sequence
        assert rows == expected_rows(engine, records) and len(rows) == 2 * TRADES
        # A page reads what was projected: one account's fills by trade id, and the mark.
        page, more, projected = await projection.page(
            FillQuery("acct-0", "", 0, 0, 0, 0, after_trade_id=0, after_side=0, limit=5)
        )
        assert [fill.trade_id for fill in page] == sorted(r[1] for r in rows if r[0] == "acct-0")[:5]
        assert more and projected == mark
    finally:
        await projection.stop()
        await pool.close()


async def test_two_projections_of_one_shard_at_once_never_double_a_fill(
    new_database: Callable[[], str],
) -> None:
    database_url, pool, engine, records = await journaled(new_database)
    last = records[-1].sequence
    projections = [
        FillProjection(SHARD, client_order_ids(engine.orders), batch_trades=4, idle_seconds=0.05)
        for _ in range(2)
    ]
    await asyncio.gather(*(projection.start(settings_for(database_url), last) for projection in projections))
    try:
        done = await asyncio.gather(*(projection.wait_projected(last, 30.0) for projection in projections))
        assert done == [True, True]
        mark, rows = stored(database_url)
        assert mark == last and rows == expected_rows(engine, records)
    finally:
        for projection in projections:
            await projection.stop()
        await pool.close()


async def walk(projection: FillProjection, account: str, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """(trade id, side) of every fill of `account` in [start_ns, end_ns), a page of 3 at a time."""
    listed: list[tuple[int, int]] = []
    after_trade_id, after_side = 0, 0
    while True:
        query = FillQuery(account, "", start_ns, end_ns, 0, 0, after_trade_id, after_side, 3)
        page, more, _ = await projection.page(query)
        listed += [(fill.trade_id, fill.side) for fill in page]
        if not more:
            return listed
        after_trade_id, after_side = page[-1].trade_id, page[-1].side


def trade_record(sequence: int, trade_id: int, timestamp_ns: int) -> trading_pb2.JournalRecord:
    return trading_pb2.JournalRecord(
        sequence=sequence,
        timestamp_ns=timestamp_ns,
        trade=common_pb2.Trade(
            trade_id=trade_id, symbol="BTC-USD", price_ticks=100, quantity_lots=1,
            buy_order_id=f"b{trade_id}", sell_order_id=f"s{trade_id}",
            buy_account_id="acct-a", sell_account_id="acct-b",
            maker_side=common_pb2.SIDE_SELL, timestamp_ns=timestamp_ns,
        ),
    )  # fmt: skip


@pytest.mark.parametrize("in_order", [True, False])
async def test_a_time_range_lists_exactly_the_fills_in_it(
    new_database: Callable[[], str], in_order: bool
) -> None:
    """Times in journal order map to a trade id range (read along the primary key); a journal whose
    times ever go back is read by time alone: the same answers either way."""
    database_url = new_database()
    settings = settings_for(database_url)
    pool = await open_pool(settings, "trading-test")
    await migrate(pool, "trading")
    times = [100, 200, 200, 300, 400, 500] if in_order else [100, 50, 200, 150, 400, 300]
    records = [trade_record(sequence, sequence, t) for sequence, t in enumerate(times, start=1)]
    await Journal(pool, SHARD).append(records)
    projection = FillProjection(SHARD, lambda order_id: f"c-{order_id}")
    await projection.start(settings, records[-1].sequence)
    try:
        assert await projection.wait_projected(records[-1].sequence, 30.0)
        # (0 is no bound; 40 and 1-51 take in trade 2 at 50, which a time-to-id map would miss
        # when times go back.)
        windows = [(0, 0), (40, 0), (60, 0), (100, 300), (150, 201), (0, 150), (201, 0), (600, 0), (1, 51)]
        for start, end in windows:
            expected = [
                (r.trade.trade_id, BUY)
                for r in records
                if start <= r.timestamp_ns and (not end or r.timestamp_ns < end)
            ]
            assert await walk(projection, "acct-a", start, end) == expected, (start, end)
    finally:
        await projection.stop()
        await pool.close()


async def test_a_failing_projection_says_so_in_its_health_entry_until_it_works_again(
    new_database: Callable[[], str],
) -> None:
    database_url, pool, engine, records = await journaled(new_database)
    lookups = client_order_ids(engine.orders)
    broken = True

    def lookup(order_id: str) -> str:
        if broken:
            raise RuntimeError("order store unreachable")
        return lookups(order_id)

    health = HealthServicer()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    entry = "backbone.trading.v1.TradingService/fills-projection"
    projection = FillProjection(SHARD, lookup, idle_seconds=0.05)
    await projection.publish_health(HealthEntries(health), entry)
    await projection.start(settings_for(database_url), records[-1].sequence)
    try:

        async def state() -> tuple[int, str]:
            return await asyncio.to_thread(health_check, address, entry)

        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        for _ in range(200):  # polled, bounded
            status, detail = await state()
            if status == not_serving:
                break
            await asyncio.sleep(0.05)
        assert (status, detail) == (
            not_serving,
            f"projected through 0 of {records[-1].sequence} committed; "
            "failing: RuntimeError('order store unreachable')",
        )
        broken = False
        assert await projection.wait_projected(records[-1].sequence, 30.0)
        for _ in range(200):
            status, detail = await state()
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.05)
        last = records[-1].sequence
        assert (status, detail) == (
            health_pb2.HealthCheckResponse.SERVING,
            f"projected through {last} of {last} committed",
        )
        assert stored(database_url)[1] == expected_rows(engine, records)
    finally:
        await projection.stop()
        await server.stop(None)
        await pool.close()


def batches_of(records: list[trading_pb2.JournalRecord], size: int) -> list[list[trading_pb2.JournalRecord]]:
    return [records[start : start + size] for start in range(0, len(records), size)]


async def test_committed_trades_are_projected_from_memory_without_reading_the_journal(
    new_database: Callable[[], str],
) -> None:
    """The batches handed in are not in this journal at all: only the queue can have projected them."""
    database_url, pool, engine, records = await journaled(new_database, write=False)
    projection = FillProjection(SHARD, client_order_ids(engine.orders), batch_trades=4, idle_seconds=0.05)
    await projection.start(settings_for(database_url), 0)
    try:
        for batch in batches_of(records, 5):
            projection.committed(batch)
        await assert_projected_once(projection, database_url, engine, records)
    finally:
        await projection.stop()
        await pool.close()


@pytest.mark.parametrize("max_queued_trades", [10_000, 3])
async def test_a_restart_catches_up_from_the_journal_then_takes_the_committed_batches(
    new_database: Callable[[], str], max_queued_trades: int
) -> None:
    """The start's catch-up (the mark to the replayed end) comes from the journal, what is committed
    next from the queue; a queue too small for what comes (3 trades) leaves batches to the journal,
    and a failing pass takes nothing off the queue: every fill is written once all the same."""
    database_url, pool, engine, records = await journaled(new_database)
    half = len(records) // 2
    lookups = client_order_ids(engine.orders)
    calls = 0

    def flaky(order_id: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 35:
            raise RuntimeError("lookup failed")
        return lookups(order_id)

    projection = FillProjection(
        SHARD, flaky, batch_trades=4, idle_seconds=0.05, max_queued_trades=max_queued_trades
    )
    await projection.start(settings_for(database_url), records[half - 1].sequence)
    try:
        for batch in batches_of(records[half:], 4):
            projection.committed(batch)  # journaled already (journaled() wrote them all)
            await asyncio.sleep(0)
        await assert_projected_once(projection, database_url, engine, records)
        assert calls > 35  # the failing pass was retried
    finally:
        await projection.stop()
        await pool.close()


async def test_a_batch_that_does_not_continue_the_queue_is_read_from_the_journal(
    new_database: Callable[[], str],
) -> None:
    """A batch never handed in (here: the second third) breaks the queue's range: the batches after
    it are not taken as if they followed the first, the journal fills the gap."""
    database_url, pool, engine, records = await journaled(new_database)
    third = len(records) // 3
    projection = FillProjection(SHARD, client_order_ids(engine.orders), batch_trades=4, idle_seconds=0.05)
    await projection.start(settings_for(database_url), 0)
    try:
        projection.committed(records[:third])
        projection.committed(records[2 * third :])
        await assert_projected_once(projection, database_url, engine, records)
    finally:
        await projection.stop()
        await pool.close()


async def test_a_light_flow_lingers_until_a_reader_waits_for_the_mark(
    new_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fewer than LINGER_ITEMS journal records waiting a pass lingers for more (here for a
    minute): a reader waiting for the mark (ListFills) ends the linger, and the fills are there."""
    monkeypatch.setattr(watermark, "LINGER_SECONDS", 60.0)
    database_url, pool, engine, records = await journaled(new_database)
    projection = FillProjection(SHARD, client_order_ids(engine.orders), idle_seconds=0.05)
    await projection.start(settings_for(database_url), 0)
    await asyncio.sleep(0.2)  # its first pass (a start's catch-up) does not linger
    try:
        small = records[: watermark.LINGER_ITEMS // 2]
        assert any(record.HasField("trade") for record in small)
        projection.committed(small)
        await asyncio.sleep(0.3)
        assert projection.projected_sequence == 0 and stored(database_url) == (0, [])  # lingering
        assert await projection.wait_projected(small[-1].sequence, 30.0)
        mark, rows = stored(database_url)
        assert mark == small[-1].sequence and rows == expected_rows(engine, small) and rows
    finally:
        await projection.stop()
        await pool.close()
