"""The report history against a real PostgreSQL: every report of the journal, by account and number,
written once, whether it comes from committed batches or from a start's replay.

A history written from the engine's batches holds exactly what a replay of the journal makes (per
account 1..n, no gap); a start that finds the history behind (its mark part-way) replays the
journal and writes only what follows the mark, in several transactions, and the result is the
same. Pages and an order's last report are read back as written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from backbone.common.v1 import common_pb2
from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from backbone.runtime.server import HealthEntries, HealthServicer
from backbone.trading.v1 import trading_pb2
from tests.instruments import btc_usd
from tests.integration.test_trading_journal import settings_for
from tests.orders import cancel_order, new_order
from tests.unit.test_trading_engine import BUY, SELL, T
from trading import audit as journal_audit
from trading import watermark
from trading.app import replay_journal
from trading.engine import Engine, Outcome
from trading.history import ReportHistory, forget, history_rows
from trading.journal import Journal

pytestmark = pytest.mark.integration

SHARD = "trading-test"
ROUNDS = 40

Batch = tuple[list[trading_pb2.JournalRecord], list[common_pb2.ExecutionReport]]


def flow() -> list[Batch]:
    """Batches of commands as the engine loop commits them: trades, resting orders, cancels, an
    IOC remainder, an order that only rests (no events), a refused order (not numbered)."""
    engine = Engine()
    batches: list[Batch] = [(list(engine.create_instrument(btc_usd(), T).records), [])]
    for number in range(ROUNDS):
        clock = T + 1 + number
        outcomes: list[Outcome] = [
            engine.apply(new_order(f"s{number}", SELL, 5_000_000, 2, f"acct-{number % 3}"), clock),
            engine.apply(new_order(f"b{number}", BUY, 5_000_000, 3, f"acct-{number % 4}"), clock),
            engine.apply(new_order(f"r{number}", BUY, 4_000_000, 1, "acct-rest"), clock),
            engine.apply(
                new_order(
                    f"i{number}", SELL, 5_000_000, 1, "acct-ioc", time_in_force=common_pb2.TIME_IN_FORCE_IOC
                ),
                clock,
            ),
            engine.apply(new_order(f"bad{number}", BUY, 0, 1, "acct-rest"), clock),  # refused
        ]
        if number % 2:
            outcomes.append(engine.apply(cancel_order(f"r{number - 1}", "acct-rest"), clock))
        records = [record for outcome in outcomes for record in outcome.records]
        reports = [report for outcome in outcomes if outcome.records for report in outcome.reports]
        batches.append((records, reports))
    return batches


def stored(database_url: str) -> tuple[int, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(database_url) as connection:
        history = journal_audit.report_history(connection, SHARD)
    assert history is not None
    mark, reports, orders = history
    return mark, sorted(reports), sorted(orders)


def replayed_rows(records: list[trading_pb2.JournalRecord]) -> tuple[list[Any], list[Any]]:
    """What a replay of the journal makes, as the audit reads the history (without the shard)."""
    engine = Engine()
    batches: list[Batch] = []
    for record in records:
        reports = engine.replay(record, reports=True)
        if reports or record.WhichOneof("record") in ("new_order", "instrument_created", "cancel_order"):
            batches.append(([record], reports))
        else:
            batches[-1][0].append(record)
    rows = history_rows(SHARD, batches, 0)
    return sorted(r[1:] for r in rows.reports), sorted(r[1:] for r in rows.orders)


async def journaled(
    new_database: Callable[[], str],
) -> tuple[str, Settings, Any, Journal, list[Batch], list[trading_pb2.JournalRecord]]:
    """A new database whose journal holds flow()'s batches."""
    database_url = new_database()
    settings = settings_for(database_url)
    pool = await open_pool(settings, "trading-test")
    await migrate(pool, "trading")
    batches = flow()
    records = [record for batch_records, _ in batches for record in batch_records]
    journal = Journal(pool, SHARD)
    await journal.append(records)
    return database_url, settings, pool, journal, batches, records


async def test_committed_batches_are_written_once_as_the_replay_makes_them(
    new_database: Callable[[], str],
) -> None:
    database_url, settings, pool, _, batches, records = await journaled(new_database)
    history = ReportHistory(SHARD, batch_reports=25, idle_seconds=0.05)
    assert await history.open(settings) == 0
    history.start()
    try:
        for batch_records, reports in batches:
            history.committed(batch_records, reports)
        assert await history.wait_projected(records[-1].sequence, 30.0)
        mark, reports_rows, order_rows = stored(database_url)
        assert mark == records[-1].sequence and history.pending_reports == 0
        expected_reports, expected_orders = replayed_rows(records)
        assert len(reports_rows) == len(expected_reports) and len(order_rows) == len(expected_orders)
        assert [r[:6] for r in reports_rows] == [r[:6] for r in expected_reports]
        assert [common_pb2.ExecutionReport.FromString(r[6]) for r in reports_rows] == [
            common_pb2.ExecutionReport.FromString(r[6]) for r in expected_reports
        ]
        assert order_rows == expected_orders
        # Per account: 1..n, without a gap; refusals are not there.
        by_account: dict[str, list[int]] = {}
        for row in reports_rows:
            by_account.setdefault(row[0], []).append(row[1])
        assert all(numbers == list(range(1, len(numbers) + 1)) for numbers in by_account.values())
        assert not any(row[2].startswith("bad") for row in reports_rows)

        # Read back: a page in order, bounded; an order's last report is its final state.
        page = await history.page("acct-rest", 3, 10, 5)
        assert [report.account_sequence for report in page] == [3, 4, 5, 6, 7]
        last = await history.last_reports(["r0", "r1", "nobody"])
        assert set(last) == {"r0", "r1"}
        assert last["r0"].order.status == common_pb2.ORDER_STATUS_CANCELLED
        assert last["r1"].order.status == common_pb2.ORDER_STATUS_NEW
    finally:
        await history.stop()
        await pool.close()


async def test_a_start_behind_the_journal_replays_and_writes_only_what_follows_the_mark(
    new_database: Callable[[], str],
) -> None:
    database_url, settings, pool, journal, batches, records = await journaled(new_database)
    # A first process wrote the first half of the batches, then died.
    first = ReportHistory(SHARD)
    await first.open(settings)
    half = len(batches) // 2
    for batch_records, reports in batches[:half]:
        first.committed(batch_records, reports)
    assert await first.write_pending() == half
    await first.stop()
    half_mark = batches[half - 1][0][-1].sequence
    assert stored(database_url)[0] == half_mark

    # The next start replays the whole journal into the history: what follows the mark is written,
    # a batch at a time as the replay goes, the rest by the task.
    history = ReportHistory(SHARD, batch_reports=20, idle_seconds=0.05)
    assert await history.open(settings) == half_mark
    engine = Engine()
    await replay_journal(journal, engine, history)
    assert history.projected_sequence > half_mark  # written during the replay
    history.start()
    try:
        assert await history.wait_projected(records[-1].sequence, 30.0)
        mark, reports_rows, order_rows = stored(database_url)
        assert mark == records[-1].sequence
        expected_reports, expected_orders = replayed_rows(records)
        assert [r[:6] for r in reports_rows] == [r[:6] for r in expected_reports]
        assert order_rows == expected_orders
    finally:
        await history.stop()
        await pool.close()


class RecordedHealth(HealthEntries):
    """The health entries, with what each was last set to."""

    def __init__(self, servicer: HealthServicer) -> None:
        super().__init__(servicer)
        self.serving: dict[str, bool] = {}

    async def set(self, name: str, serving: bool, detail: Callable[[], str] | None = None) -> None:
        self.serving[name] = serving
        await super().set(name, serving, detail)


async def test_failing_passes_say_so_in_health_and_write_nothing_until_they_work(
    new_database: Callable[[], str],
) -> None:
    database_url, settings, pool, _, batches, records = await journaled(new_database)
    # A row in the way of the first batch's COPY (what a second writer would have left): every
    # pass fails whole until it is gone.
    blocker = ("acct-rest", 1, "x", "x", "BTC-USD", 1, b"")
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO trading.reports (shard, account_id, account_sequence, order_id, client_order_id, "
            "symbol, sequence, report) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (SHARD, *blocker),
        )
    entries = RecordedHealth(HealthServicer())
    entry = "backbone.trading.v1.TradingService/report-history"
    history = ReportHistory(SHARD, idle_seconds=0.05)
    await history.open(settings)
    await history.publish_health(entries, entry)
    history.start()
    try:
        for batch_records, reports in batches:
            history.committed(batch_records, reports)
        last = records[-1].sequence
        assert not await history.wait_projected(last, 0.5)
        assert history.failure.startswith("PostgreSQL: UniqueViolation")
        assert history.describe().startswith(f"projected through 0 of {last} committed; failing:")
        assert stored(database_url)[0] == 0 and len(stored(database_url)[1]) == 1  # nothing written
        assert entries.serving[entry] is False
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("DELETE FROM trading.reports WHERE order_id = 'x'")
        assert await history.wait_projected(last, 30.0)
        assert history.failure == "" and entries.serving[entry] is True
        assert [r[:6] for r in stored(database_url)[1]] == [r[:6] for r in replayed_rows(records)[0]]
    finally:
        await history.stop()
        await pool.close()


async def test_a_forgotten_history_is_written_again_from_the_whole_journal(
    new_database: Callable[[], str],
) -> None:
    database_url, settings, pool, journal, batches, records = await journaled(new_database)
    first = ReportHistory(SHARD)
    await first.open(settings)
    for batch_records, reports in batches:
        first.committed(batch_records, reports)
    await first.stop()  # a graceful stop writes what is queued
    written = stored(database_url)
    assert written[0] == records[-1].sequence
    with psycopg.connect(database_url) as connection:
        forget(connection, SHARD)  # what an operator does to rebuild it, trading stopped
    assert stored(database_url) == (0, [], [])
    history = ReportHistory(SHARD, batch_reports=50, idle_seconds=0.05)
    assert await history.open(settings) == 0
    await replay_journal(journal, Engine(), history)
    history.start()
    try:
        assert await history.wait_projected(records[-1].sequence, 30.0)
        again = stored(database_url)
        assert again[0] == written[0] and again[2] == written[2]
        assert [r[:6] for r in again[1]] == [r[:6] for r in written[1]]
    finally:
        await history.stop()
        await pool.close()


async def test_a_light_flow_lingers_until_enough_wait_or_a_reader_asks(
    new_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fewer than LINGER_ITEMS reports waiting a pass lingers for more (here for a minute): the
    batch stays unwritten until a reader waits for the mark, which is then reached without waiting
    out the linger; batches that bring the waiting reports to LINGER_ITEMS are written at once."""
    monkeypatch.setattr(watermark, "LINGER_SECONDS", 60.0)
    database_url, settings, pool, _, batches, _ = await journaled(new_database)
    history = ReportHistory(SHARD, idle_seconds=0.05)
    await history.open(settings)
    history.start()
    await asyncio.sleep(0.2)  # its first pass (a start's catch-up) does not linger
    try:
        first = batches[1]
        assert 0 < len(first[1]) < watermark.LINGER_ITEMS
        history.committed(*batches[0])
        history.committed(*first)
        await asyncio.sleep(0.3)
        assert history.projected_sequence == 0 and stored(database_url)[0] == 0  # lingering
        assert await history.wait_projected(first[0][-1].sequence, 30.0)  # a reader: no linger
        assert stored(database_url)[0] == first[0][-1].sequence

        handed = 0
        position = 2
        while handed < watermark.LINGER_ITEMS:  # no reader now: the hand-in ends the linger
            history.committed(*batches[position])
            handed += len(batches[position][1])
            position += 1
            await asyncio.sleep(0.05)  # the pass lingers with what waits so far
        through = batches[position - 1][0][-1].sequence
        for _ in range(300):
            if history.projected_sequence >= through:
                break
            await asyncio.sleep(0.1)
        assert history.projected_sequence >= through
    finally:
        await history.stop()
        await pool.close()
