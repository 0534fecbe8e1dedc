"""One trading process per shard, and a journal that cannot be read stops the service: real PostgreSQL,
real trading processes (started and killed as `backbone up` does), and trading in process.

A second process for a shard waits for its lease (NOT_SERVING, naming the holder) and then refuses
to start while the first keeps serving, or stops at once on SIGTERM; after a SIGKILL of the first, a
waiting process takes the lease and serves what the journal holds; a lease session terminated in
PostgreSQL stops the engine (and the process) before anything more is appended, and an append
through it cannot commit. A journal row that does not parse, or is not the record its row says, a
missing sequence, a record the engine refuses on replay, a journal ending mid-command: each stops
the start with an error naming the shard and the sequence, which the supervisor reports as the
process's last error.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from backbone.runtime.database import migrate, open_pool
from backbone.runtime.embedded import free_port
from backbone.runtime.server import EXIT_START_REFUSED, RunningServer
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from ops.supervisor import ServiceChild, ServiceFailed, ServiceProcesses, health_check
from tests.instruments import btc_usd
from tests.integration.test_trading_journal import (
    BUY,
    SELL,
    Trading,
    journal_rows,
    new,
    refused,
    settings_for,
    small_journal,
)
from tests.waiting import eventually
from trading.app import SERVICE_NAME, create_app
from trading.engine_loop import EXIT_JOURNAL_FAILED
from trading.journal import Journal, JournalUnreadable
from trading.lease import LeaseUnavailable, ShardLease, lease_application_name

pytestmark = pytest.mark.integration

SHARD = "trading-test"  # settings_for's shard, which journal_rows reads
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def trading_process(database_url: str, log_dir: Path, **environment: str) -> ServiceProcesses:
    """A trading process of SHARD over `database_url` (not started), on a port of its own, its
    settlement and risk addresses unanswered (its outboxes wait for them)."""
    return ServiceProcesses(
        {
            "BACKBONE_DATABASE_URL": database_url,
            "BACKBONE_TRADING_SHARD": SHARD,
            "BACKBONE_LOG_FORMAT": "json",
            "BACKBONE_GRACE_PERIOD_SECONDS": "1",
            # CreateInstrument waits this long for a risk that is not there, then answers.
            "BACKBONE_CALL_TIMEOUT_SECONDS": "1",
            **{
                f"BACKBONE_{name}_ADDRESS": f"127.0.0.1:{free_port()}"
                for name in ("TRADING", "RISK", "SETTLEMENT", "GATEWAY")
            },
            **environment,
        },
        log_dir,
    )


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., ServiceProcesses]]:
    """Start trading processes (waiting for none); each is stopped when the test ends."""
    running: list[ServiceProcesses] = []

    def start(database_url: str, log_dir: Path, **environment: str) -> ServiceProcesses:
        services = trading_process(database_url, log_dir, **environment)
        running.append(services)
        services.start("trading")
        return services

    yield start
    for services in running:
        services.stop("trading", 10)


class Client:
    """A channel to a trading process."""

    def __init__(self, services: ServiceProcesses) -> None:
        self.channel = grpc.aio.insecure_channel(services.address("trading"))
        self.stub = trading_pb2_grpc.TradingServiceStub(self.channel)  # type: ignore[no-untyped-call]

    async def order(
        self, order_id: str, side: int = BUY, account: str = "acct-1"
    ) -> trading_pb2.CommandResult:
        """One new order for 1 lot at 100 on a StreamOrders stream; its result."""
        request = trading_pb2.StreamOrdersRequest(sequence=1, commands=[new(order_id, side, 100, 1, account)])
        responses: list[trading_pb2.StreamOrdersResponse] = [
            answer async for answer in self.stub.StreamOrders(iter([request]))
        ]
        (result,) = responses[0].results
        return result

    async def close(self) -> None:
        await self.channel.close()


async def serving_with_an_order(
    started: Callable[..., ServiceProcesses], database_url: str, log_dir: Path
) -> ServiceProcesses:
    """A trading process started, SERVING, and having journaled an instrument and a resting buy
    "o1" (sequences 1 and 2)."""
    services = started(database_url, log_dir)
    services.wait_healthy("trading")
    client = Client(services)
    try:
        await client.stub.CreateInstrument(
            trading_pb2.CreateInstrumentRequest(instrument=btc_usd()), timeout=10
        )
        result = await client.order("o1")
        assert result.reports[0].order.order_id == "o1", result
    finally:
        await client.close()
    return services


def waiting_for_the_lease(services: ServiceProcesses, holder_pid: int) -> str | None:
    """The trading health detail of `services` while it waits for the lease `holder_pid` holds."""
    status, detail = health_check(services.address("trading"), SERVICE_NAME, 2.0)
    waiting = status == NOT_SERVING and f"waiting for the lease of shard '{SHARD}'" in detail
    return detail if waiting and f"pid={holder_pid} " in detail else None


async def test_a_second_process_waits_then_refuses_while_the_first_serves(
    new_database: Callable[[], str], tmp_path: Path, started: Callable[..., ServiceProcesses]
) -> None:
    database_url = new_database()
    first = await serving_with_an_order(started, database_url, tmp_path / "first")
    first_pid = first.processes["trading"].pid

    second = started(database_url, tmp_path / "second", BACKBONE_TRADING_LEASE_WAIT_SECONDS="10")
    detail = await eventually(lambda: waiting_for_the_lease(second, first_pid), "the second waiting")
    assert f"host={socket.gethostname()}" in detail
    code = await eventually(lambda: second.processes["trading"].poll(), "the second giving up")
    assert code == EXIT_START_REFUSED
    error = second.last_error("trading")
    assert error is not None and error.startswith(
        f"cannot serve: shard '{SHARD}' is owned by another trading process: backbone-trading-lease "
        f"pid={first_pid} "
    ), error
    assert "BACKBONE_TRADING_LEASE_WAIT_SECONDS" in error
    log = (tmp_path / "second" / "trading.log").read_text()
    assert "another trading process holds this shard; waiting for it to stop" in log

    # The first never stopped serving, and its journal is its own alone.
    assert health_check(first.address("trading"), SERVICE_NAME)[0] == health_pb2.HealthCheckResponse.SERVING
    client = Client(first)
    try:
        assert (await client.order("o2")).reports[0].order.order_id == "o2"
    finally:
        await client.close()
    assert journal_rows(database_url) == [(1, "instrument_created"), (2, "new_order"), (3, "new_order")]


async def test_after_a_sigkill_of_the_owner_a_waiting_process_takes_the_lease_and_serves(
    new_database: Callable[[], str], tmp_path: Path, started: Callable[..., ServiceProcesses]
) -> None:
    database_url = new_database()
    first = await serving_with_an_order(started, database_url, tmp_path / "first")

    first_pid = first.processes["trading"].pid
    second = started(database_url, tmp_path / "second", BACKBONE_TRADING_LEASE_WAIT_SECONDS="600")
    await eventually(lambda: waiting_for_the_lease(second, first_pid), "the second waiting")
    # A waiting process stops on SIGTERM at once and cleanly (not after its wait, killed).
    third = started(database_url, tmp_path / "third", BACKBONE_TRADING_LEASE_WAIT_SECONDS="600")
    await eventually(lambda: waiting_for_the_lease(third, first_pid), "the third waiting")
    assert third.stop("trading") == 0
    assert first.kill("trading") == -signal.SIGKILL
    # PostgreSQL frees the lock with the killed process's connection: the waiting one takes it.
    second.wait_healthy("trading")
    client = Client(second)
    try:
        found = await client.stub.GetOrder(trading_pb2.GetOrderRequest(order_id="o1"))
        assert found.order.leaves_lots == 1  # replayed from the journal the first wrote
        sold = await client.order("o2", SELL, "acct-2")
        assert sold.reports[-1].order.order_id == "o1"  # it trades with o1
    finally:
        await client.close()
    assert [kind for _, kind in journal_rows(database_url)] == [
        "instrument_created",
        "new_order",
        "new_order",
        "trade",
    ]


def terminate_lease_session(database_url: str, process_pid: int) -> int:
    """pg_terminate_backend of the lease session of trading process `process_pid`; its backend pid."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (lease_application_name(process_pid),),
        ).fetchone()
        assert row is not None, "no lease session"
        assert connection.execute("SELECT pg_terminate_backend(%s)", (row[0],)).fetchone() == (True,)
        return int(row[0])


async def test_a_terminated_lease_session_ends_the_process_and_a_restart_takes_it_again(
    new_database: Callable[[], str], tmp_path: Path, started: Callable[..., ServiceProcesses]
) -> None:
    database_url = new_database()
    services = await serving_with_an_order(started, database_url, tmp_path / "logs")

    terminate_lease_session(database_url, services.processes["trading"].pid)
    code = await eventually(lambda: services.processes["trading"].poll(), "the process stopping")
    assert code == EXIT_JOURNAL_FAILED
    error = services.last_error("trading")
    assert error is not None and f"the lease of shard '{SHARD}' is lost" in error, error
    assert len(journal_rows(database_url)) == 2

    services.start("trading")  # what the supervisor does
    services.wait_healthy("trading")
    client = Client(services)
    try:
        assert (await client.stub.GetOrder(trading_pb2.GetOrderRequest(order_id="o1"))).order.order_id == "o1"
    finally:
        await client.close()


async def test_appends_through_a_lost_lease_fail_and_write_nothing(new_database: Callable[[], str]) -> None:
    database_url = new_database()
    pool = await open_pool(settings_for(database_url), "trading-test")
    try:
        await migrate(pool, "trading")
        lease = await ShardLease.acquire(database_url, "shard-a", wait_seconds=0)
        journal = Journal(pool, "shard-a", lease=lease)
        _, records = small_journal()
        await journal.append(records[:4])
        with pytest.raises(LeaseUnavailable, match=f"pid={os.getpid()} "):
            await ShardLease.acquire(database_url, "shard-a", wait_seconds=0)
        other_shard = await ShardLease.acquire(database_url, "shard-b", wait_seconds=0)  # a lease per shard
        with pytest.raises(ValueError, match="cannot write the journal"):
            Journal(pool, "shard-a", lease=other_shard)
        await other_shard.close()

        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("SELECT pg_terminate_backend(%s)", (lease.connection.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            await journal.append(records[4:])
        assert await journal.last_sequence() == 4
        await lease.close()

        # The lock went with the session: the next owner takes it at once and goes on.
        # (Its backend may take a moment to end after pg_terminate_backend: a bounded wait.)
        successor = await ShardLease.acquire(database_url, "shard-a", wait_seconds=30)
        await Journal(pool, "shard-a", lease=successor).append(records[4:])
        await successor.close()
        replayed = [record async for record in journal.records()]
        assert replayed == records
    finally:
        await pool.close()


async def test_the_engine_stops_when_its_lease_is_lost(new_database: Callable[[], str]) -> None:
    database_url = new_database()
    # No risk answers: CreateInstrument waits its call timeout for it, then answers all the same.
    settings = dataclasses.replace(settings_for(database_url), call_timeout_seconds=1)
    async with Trading(settings) as trading:
        await trading.stub.CreateInstrument(
            trading_pb2.CreateInstrumentRequest(instrument=btc_usd()), timeout=10
        )
        fatal: list[str] = []
        trading.app.loop._on_fatal = fatal.append
        lease = trading.app.lease
        assert lease is not None
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("SELECT pg_terminate_backend(%s)", (lease.connection.info.backend_pid,))
        await eventually(lambda: fatal, "the engine stopped")
        assert fatal[0].startswith(f"the lease of shard '{SHARD}' is lost: its PostgreSQL session ended")
        error = await refused(trading.send([new("o1", BUY, 100, 1)]))
        assert error.code == grpc.StatusCode.UNAVAILABLE
    assert journal_rows(database_url) == [(1, "instrument_created")]


# -- a journal that cannot be read -------------------------------------------------------------


def corrupt(database_url: str, statement: str, *parameters: object) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(statement, parameters)


def payload_of(database_url: str, sequence: int) -> trading_pb2.JournalRecord:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT payload FROM trading.journal WHERE shard = %s AND sequence = %s", (SHARD, sequence)
        ).fetchone()
    assert row is not None
    return trading_pb2.JournalRecord.FromString(row[0])


def a_dearer_trade(database_url: str) -> None:
    """Record 4 (the trade) at another price, its row consistent: only replay can tell."""
    trade = payload_of(database_url, 4)
    trade.trade.price_ticks += 1
    corrupt(
        database_url,
        "UPDATE trading.journal SET payload = %s WHERE shard = %s AND sequence = 4",
        trade.SerializeToString(),
        SHARD,
    )


CORRUPTIONS: dict[str, tuple[Callable[[str], None], int, str]] = {
    "payload that does not parse": (
        lambda url: corrupt(
            url, "UPDATE trading.journal SET payload = 'not a journal record' WHERE sequence = 2"
        ),
        2,
        "its payload does not parse",
    ),
    "another record's payload": (
        lambda url: corrupt(
            url,
            "UPDATE trading.journal SET payload = (SELECT payload FROM trading.journal WHERE sequence = 2) "
            "WHERE sequence = 3",
        ),
        3,
        "its payload is record 2 of kind 'new_order', its row says 3 of kind 'new_order'",
    ),
    "a missing sequence": (
        lambda url: corrupt(url, "DELETE FROM trading.journal WHERE sequence = 5"),
        5,
        "that sequence is missing (the next row is 6)",
    ),
    "a record the engine refuses": (
        a_dearer_trade,
        4,
        "journal record 4 (trade) is not what replay regenerated",
    ),
    "a journal ending mid-command": (
        lambda url: corrupt(url, "DELETE FROM trading.journal WHERE sequence >= 6"),
        5,
        "the journal ends before the events of its last command (1 missing)",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_a_journal_that_cannot_be_read_stops_the_start_naming_the_sequence(
    new_database: Callable[[], str], corruption: str
) -> None:
    database_url = new_database()
    settings = settings_for(database_url)
    pool = await open_pool(settings, "trading-test")
    try:
        await migrate(pool, "trading")
        await Journal(pool, SHARD).append(small_journal()[1])
    finally:
        await pool.close()
    damage, sequence, why = CORRUPTIONS[corruption]
    damage(database_url)
    rows = journal_rows(database_url)

    app = create_app(settings)
    server = RunningServer(app, settings)
    with pytest.raises(JournalUnreadable) as refusal:
        await server.start("127.0.0.1:0")
    await server.server.stop(0)
    await app.stop()
    assert (refusal.value.shard, refusal.value.sequence) == (SHARD, sequence)
    assert refusal.value.why.startswith(why), refusal.value.why
    assert str(refusal.value).startswith(
        f"the journal of shard '{SHARD}' cannot be replayed at sequence {sequence}: {why}"
    )
    assert "; trading stops rather than serve a book rebuilt from part of it" in str(refusal.value)
    assert journal_rows(database_url) == rows  # nothing written
    # The lease was let go on the way out: the next start (once the journal is repaired) takes it.
    taken = await ShardLease.acquire(database_url, SHARD, wait_seconds=0)
    await taken.close()


async def test_a_corrupt_row_stops_the_process_and_its_supervisor_says_why(
    new_database: Callable[[], str], tmp_path: Path, started: Callable[..., ServiceProcesses]
) -> None:
    database_url = new_database()
    services = await serving_with_an_order(started, database_url, tmp_path / "logs")
    assert services.stop("trading") == 0
    corrupt(database_url, "UPDATE trading.journal SET payload = '\\x08' WHERE sequence = 2")

    services.start("trading")
    why = (
        f"cannot serve: the journal of shard '{SHARD}' cannot be replayed at sequence 2: its payload does "
        "not parse"
    )
    # What `backbone up` prints when a service fails its first start, and its supervisor's `why` after.
    with pytest.raises(ServiceFailed) as failed:
        services.wait_healthy("trading")
    exited = f"trading exited with code {EXIT_START_REFUSED} while starting"
    assert str(failed.value).startswith(f"{exited}: {why}")
    last_error = ServiceChild(services, "trading").last_error()
    assert last_error is not None and last_error.startswith(why), last_error
    log = (tmp_path / "logs" / "trading.log").read_text()
    assert '"event": "journal cannot be replayed"' in log and '"sequence": 2' in log
