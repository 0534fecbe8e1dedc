"""Trading against a real PostgreSQL: the journal, the service in process, replay after a restart."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from backbone.runtime.embedded import free_port
from backbone.runtime.errors import ServiceError, from_rpc_error
from backbone.runtime.server import RunningServer
from backbone.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from tests.instruments import as_listed, btc_usd
from tests.waiting import eventually
from trading.app import TradingApp, create_app
from trading.engine import Engine
from trading.execution_feed import ExecutionFeed
from trading.journal import RISK_KINDS, SETTLEMENT_KINDS, Journal

pytestmark = pytest.mark.integration

BUY, SELL = common_pb2.SIDE_BUY, common_pb2.SIDE_SELL
T = 1_700_000_000_000_000_000
ROOT = Path(__file__).resolve().parents[2]


def new(
    order_id: str, side: int, price: int, lots: int, account: str = "acct-1", symbol: str = "BTC-USD"
) -> trading_pb2.OrderCommand:
    return trading_pb2.OrderCommand(
        new_order=trading_pb2.NewOrder(
            order_id=order_id,
            client_order_id=f"c-{order_id}",
            account_id=account,
            symbol=symbol,
            side=side,  # type: ignore[arg-type]
            price_ticks=price,
            quantity_lots=lots,
        )
    )


def cancel(order_id: str, account: str = "acct-1") -> trading_pb2.OrderCommand:
    return trading_pb2.OrderCommand(
        cancel_order=trading_pb2.CancelOrder(order_id=order_id, account_id=account)
    )


def settings_for(database_url: str, **addresses: str) -> Settings:
    environment = {
        "BACKBONE_DATABASE_URL": database_url,
        "BACKBONE_SETTLEMENT_ADDRESS": addresses.get("settlement", f"127.0.0.1:{free_port()}"),
        "BACKBONE_RISK_ADDRESS": addresses.get("risk", f"127.0.0.1:{free_port()}"),
        "BACKBONE_TRADING_SHARD": "trading-test",
        "BACKBONE_GRACE_PERIOD_SECONDS": "1",
        "BACKBONE_BATCH_MAX_ITEMS": "64",
        "BACKBONE_DATABASE_POOL_SIZE": "4",
    }
    return Settings.from_env(environment)


class Trading:
    """A trading app running in process on a free port, with a stub to it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: TradingApp = create_app(settings)
        self.server = RunningServer(self.app, settings)
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Trading:
        await self.server.start("127.0.0.1:0")
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = trading_pb2_grpc.TradingServiceStub(self.channel)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.channel is not None
        await self.channel.close()
        await self.server.stop()

    async def send(self, *batches: list[trading_pb2.OrderCommand]) -> list[trading_pb2.StreamOrdersResponse]:
        """One StreamOrders stream carrying `batches` (sequences 1, 2, ...); returns the responses."""
        requests = [
            trading_pb2.StreamOrdersRequest(sequence=i + 1, commands=commands)
            for i, commands in enumerate(batches)
        ]

        async def generate() -> AsyncIterator[trading_pb2.StreamOrdersRequest]:
            for request in requests:
                yield request

        # Bounded: an engine that stops answering fails the test here, naming the call.
        return [response async for response in self.stub.StreamOrders(generate(), timeout=60)]


class _Risk(risk_pb2_grpc.RiskServiceServicer):
    """A receiver of StreamTradingEvents that keeps what it is sent (stands in for risk).

    Trading's CreateInstrument answers once risk has acknowledged the new instrument, so
    tests that create one run with this receiver rather than wait for a risk that is not there.
    """

    def __init__(self) -> None:
        self.applied: dict[str, int] = {}
        self.events: list[tuple[str, int, str]] = []

    async def StreamTradingEvents(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for request in request_iterator:
            source = request.source
            applied = self.applied.get(source, 0)
            for event in request.events:
                if event.sequence > applied:
                    self.events.append((source, event.sequence, event.WhichOneof("event")))
                    applied = event.sequence
            self.applied[source] = applied
            yield risk_pb2.StreamTradingEventsResponse(applied_sequence=applied)


@pytest.fixture
async def risk() -> AsyncIterator[tuple[str, _Risk]]:
    """A stand-in risk receiver: its address and what it received."""
    receiver = _Risk()
    server = grpc.aio.server()
    risk_pb2_grpc.add_RiskServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", receiver
    finally:
        await server.stop(0)


async def refused(call: Any) -> ServiceError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return from_rpc_error(error)
    raise AssertionError("the call succeeded but should have been refused")


def journal_rows(database_url: str) -> list[tuple[int, str]]:
    with psycopg.connect(database_url) as connection:
        return [
            (int(sequence), kind)
            for sequence, kind in connection.execute(
                "SELECT sequence, kind FROM trading.journal WHERE shard = 'trading-test' ORDER BY sequence"
            ).fetchall()
        ]


# -- the journal adapter -------------------------------------------------------------------


def small_journal() -> tuple[Engine, list[trading_pb2.JournalRecord]]:
    """An engine and its 7 records: an instrument, a sell that trades and is cancelled, a resting buy
    (1 instrument_created, 2 new_order, 3 new_order, 4 trade, 5 cancel_order, 6 order_released,
    7 new_order)."""
    engine = Engine()
    records = list(engine.create_instrument(btc_usd(), T).records)
    for command in (new("s1", SELL, 100, 5), new("b1", BUY, 100, 2), cancel("s1"), new("b2", BUY, 90, 1)):
        records += engine.apply(command, T).records
    return engine, records


async def replayed(journal: Journal) -> Engine:
    """A new engine replaying what `journal` holds."""
    engine = Engine()
    for record in await journal.load_all():
        engine.replay(record)
    engine.finish_replay()
    return engine


async def test_journal_appends_in_one_transaction_and_reads_back(new_database: Callable[[], str]) -> None:
    settings = settings_for(new_database())
    pool = await open_pool(settings, "trading-test")
    try:
        await migrate(pool, "trading")
        assert await migrate(pool, "trading") == 0
        journal = Journal(pool, "shard-a", page_size=3)
        other = Journal(pool, "shard-b")
        engine, records = small_journal()
        await journal.append(records[:4])
        await journal.append(records[4:])
        await other.append(records[:1])
        assert await journal.last_sequence() == len(records) == 7
        assert await other.last_sequence() == 1
        assert await Journal(pool, "empty").last_sequence() == 0

        assert await journal.load_all() == records  # read a page of 3 at a time
        trades = await journal.load_after(0, 100, SETTLEMENT_KINDS)
        assert [(seq, r.WhichOneof("record")) for seq, r in trades] == [(4, "trade")]
        events = await journal.load_after(0, 100, RISK_KINDS)
        assert [(seq, r.WhichOneof("record")) for seq, r in events] == [
            (1, "instrument_created"),
            (4, "trade"),
            (6, "order_released"),
        ]
        assert await journal.load_after(1, 100, RISK_KINDS) == events[1:]
        assert await journal.load_after(0, 1, RISK_KINDS) == events[:1]

        # A batch that cannot be written entirely is not written at all.
        clash = [trading_pb2.JournalRecord(sequence=8, timestamp_ns=T), records[0]]
        clash[0].cancel_order.order_id = "x"
        with pytest.raises(psycopg.errors.UniqueViolation):
            await journal.append(clash)
        assert await journal.last_sequence() == 7
        # A COPY runs alone in its transaction (autocommit); the pool gets its connections back
        # as it lent them, outside autocommit, whether the COPY succeeded or failed.
        lent = [await pool.getconn() for _ in range(pool.get_stats()["pool_size"])]
        try:
            assert [connection.autocommit for connection in lent] == [False] * len(lent)
        finally:
            for connection in lent:
                await pool.putconn(connection)

        assert (await replayed(journal)).state_hash() == engine.state_hash()
    finally:
        await pool.close()


async def test_a_journal_written_before_006_replays_after_it_and_rows_keep_a_kind(
    new_database: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The schema as it was before 006_cheaper_rows.sql: migrations 001-005, from a package of their own.
    package = tmp_path / "trading_before_006"
    (package / "migrations").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for migration in sorted((ROOT / "trading" / "migrations").glob("00[1-5]_*.sql")):
        shutil.copy(migration, package / "migrations" / migration.name)
    monkeypatch.syspath_prepend(str(tmp_path))
    database_url = new_database()
    pool = await open_pool(settings_for(database_url), "trading-test")
    try:
        assert await migrate(pool, "trading", package="trading_before_006") == 5
        journal = Journal(pool, "shard-a")
        engine, records = small_journal()
        await journal.append(records[:5])
        later = [m for m in (ROOT / "trading" / "migrations").glob("*.sql") if m.name >= "006"]
        assert await migrate(pool, "trading") == len(later)  # 006 and those after it
        await journal.append(records[5:])
        assert (await replayed(journal)).state_hash() == engine.state_hash()
        events = await journal.load_after(0, 100, RISK_KINDS)  # along the primary key now
        assert [(seq, r.WhichOneof("record")) for seq, r in events] == [
            (1, "instrument_created"),
            (4, "trade"),
            (6, "order_released"),
        ]
        assert [seq for seq, _ in await journal.load_after(0, 100, SETTLEMENT_KINDS)] == [4]
    finally:
        await pool.close()
    with psycopg.connect(database_url, autocommit=True) as connection:
        indexes = connection.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'trading' AND tablename = 'journal' "
            "ORDER BY indexname"
        ).fetchall()
        assert indexes == [("journal_pkey",), ("journal_trades",)]
        for kind in ("", "k" * 41):
            with pytest.raises(psycopg.errors.CheckViolation):
                connection.execute(
                    "INSERT INTO trading.journal (shard, sequence, kind, payload) VALUES ('x', 1, %s, '')",
                    (kind,),
                )


# -- the service in process ----------------------------------------------------------------


async def test_orders_stream_journal_answer_in_order_and_replay_after_restart(
    new_database: Callable[[], str], risk: tuple[str, _Risk]
) -> None:
    database_url = new_database()
    settings = settings_for(database_url, risk=risk[0])
    async with Trading(settings) as trading:
        created = await trading.stub.CreateInstrument(
            trading_pb2.CreateInstrumentRequest(instrument=btc_usd())
        )
        assert created.instrument == as_listed(btc_usd())
        again = await trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))
        assert again.instrument == as_listed(btc_usd())

        subscription = trading.stub.SubscribeExecutions(trading_pb2.SubscribeExecutionsRequest())
        await eventually(lambda: trading.app.feed.subscriber_count == 1, "the subscription")

        responses = await trading.send(
            [new("s1", SELL, 5_000_000, 5_000, "bob"), new("s2", SELL, 5_000_100, 1_000, "bob")],
            [new("b1", BUY, 5_010_000, 6_000, "alice"), new("s1", BUY, 1, 1), cancel("nope")],
            [],
            [cancel("b1", "alice"), cancel("s2", "alice")],
        )
        assert [r.sequence for r in responses] == [1, 2, 3, 4]
        assert [len(r.results) for r in responses] == [2, 3, 0, 2]
        first, second, _, fourth = responses
        assert [[x.execution_type for x in result.reports] for result in first.results] == [
            [common_pb2.EXECUTION_TYPE_ACCEPTED],
            [common_pb2.EXECUTION_TYPE_ACCEPTED],
        ]
        buy = second.results[0].reports
        assert [(x.order.order_id, x.execution_type) for x in buy] == [
            ("b1", common_pb2.EXECUTION_TYPE_ACCEPTED),
            ("b1", common_pb2.EXECUTION_TYPE_TRADE),
            ("s1", common_pb2.EXECUTION_TYPE_TRADE),
            ("b1", common_pb2.EXECUTION_TYPE_TRADE),
            ("s2", common_pb2.EXECUTION_TYPE_TRADE),
        ]
        assert [x.last_price_ticks for x in buy[1:]] == [5_000_000, 5_000_000, 5_000_100, 5_000_100]
        assert buy[1].order.status == common_pb2.ORDER_STATUS_PARTIALLY_FILLED
        assert buy[3].order.status == common_pb2.ORDER_STATUS_FILLED
        assert (buy[2].liquidity_side, buy[3].liquidity_side) == (
            common_pb2.LIQUIDITY_SIDE_MAKER,
            common_pb2.LIQUIDITY_SIDE_TAKER,
        )
        assert second.results[1].reports[0].reject_reason == RejectReason.DUPLICATE_ORDER_ID.number
        assert second.results[2].reports[0].reject_reason == RejectReason.UNKNOWN_ORDER.number
        assert (
            fourth.results[0].reports[0].reject_reason == RejectReason.ORDER_NOT_OPEN.number
        )  # b1 was filled
        assert fourth.results[1].reports[0].reject_reason == RejectReason.NOT_ORDER_OWNER.number

        # Everything that was answered is journaled; refusals are not.
        assert [kind for _, kind in journal_rows(database_url)] == [
            "instrument_created",
            "new_order",
            "new_order",
            "new_order",
            "trade",
            "trade",
        ]

        # The subscriber saw every report of a journaled command, in order (refusals are not journaled).
        seen: list[common_pb2.ExecutionReport] = []
        expected = [
            x
            for response in responses
            for result in response.results
            for x in result.reports
            if x.execution_type != common_pb2.EXECUTION_TYPE_REJECTED
        ]
        assert len(expected) == 7
        while len(seen) < len(expected):
            seen.extend((await asyncio.wait_for(subscription.read(), 10)).reports)
        assert seen == expected
        subscription.cancel()

        order = await trading.stub.GetOrder(trading_pb2.GetOrderRequest(order_id="s2"))
        assert (order.order.filled_lots, order.order.leaves_lots) == (1_000, 0)
        missing = await refused(trading.stub.GetOrder(trading_pb2.GetOrderRequest(order_id="zzz")))
        assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER")
        empty = await refused(trading.stub.GetOrder(trading_pb2.GetOrderRequest()))
        assert empty.code == grpc.StatusCode.INVALID_ARGUMENT

        await trading.send([new("r1", BUY, 100, 1), new("r2", BUY, 90, 2), new("r3", SELL, 200, 3)])
        book = await trading.stub.GetOrderBook(trading_pb2.GetOrderBookRequest(symbol="BTC-USD"))
        assert [(x.price_ticks, x.quantity_lots, x.order_count) for x in book.bids] == [
            (100, 1, 1),
            (90, 2, 1),
        ]
        assert [(x.price_ticks, x.quantity_lots) for x in book.asks] == [(200, 3)]
        top = await trading.stub.GetOrderBook(trading_pb2.GetOrderBookRequest(symbol="BTC-USD", depth=1))
        assert len(top.bids) == 1 and len(top.asks) == 1
        unknown = await refused(trading.stub.GetOrderBook(trading_pb2.GetOrderBookRequest(symbol="NOPE")))
        assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "UNKNOWN_SYMBOL")

        state = trading.app.engine.state_hash()
        trading.app.engine.validate()

    # A new process over the same journal rebuilds the same state.
    async with Trading(settings) as restarted:
        assert restarted.app.engine.state_hash() == state
        restarted.app.engine.validate()
        assert await restarted.stub.GetOrderBook(trading_pb2.GetOrderBookRequest(symbol="BTC-USD")) == book
        listed = await restarted.stub.ListInstruments(trading_pb2.ListInstrumentsRequest())
        assert list(listed.instruments) == [as_listed(btc_usd())]
        # Counters continue: the next trade is number 3, right after the journal's last sequence.
        (response,) = await restarted.send([new("x1", SELL, 100, 1, "carol")])
        trade_reports = [
            x for x in response.results[0].reports if x.execution_type == common_pb2.EXECUTION_TYPE_TRADE
        ]
        assert {x.trade_id for x in trade_reports} == {3}
        rows = journal_rows(database_url)
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))


async def test_create_instrument_refusals(new_database: Callable[[], str], risk: tuple[str, _Risk]) -> None:
    async with Trading(settings_for(new_database(), risk=risk[0])) as trading:
        await trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))
        different = btc_usd()
        different.maker_fee_bps = 1
        exists = await refused(
            trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=different))
        )
        assert (exists.code, exists.reason) == (grpc.StatusCode.ALREADY_EXISTS, "INSTRUMENT_EXISTS")
        bad = btc_usd("ETH-USD")
        bad.base_minor_per_lot = 7
        bad.tick_size = "0.0"
        invalid = await refused(
            trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=bad))
        )
        assert (invalid.code, invalid.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INSTRUMENT")
        assert "instrument.tick_size" in [v.field for v in invalid.violations]
        missing = await refused(trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest()))
        assert missing.code == grpc.StatusCode.INVALID_ARGUMENT
        listed = await trading.stub.ListInstruments(trading_pb2.ListInstrumentsRequest())
        assert [i.symbol for i in listed.instruments] == ["BTC-USD"]


async def test_concurrent_streams_all_go_through_one_engine(
    new_database: Callable[[], str], risk: tuple[str, _Risk]
) -> None:
    database_url = new_database()
    async with Trading(settings_for(database_url, risk=risk[0])) as trading:
        await trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))

        async def flow(name: str, side: int) -> list[trading_pb2.StreamOrdersResponse]:
            batches = [[new(f"{name}-{i}-{j}", side, 100, 1, name) for j in range(20)] for i in range(10)]
            return await trading.send(*batches)

        results = await asyncio.gather(*(flow(f"t{n}", BUY if n % 2 else SELL) for n in range(6)))
        for responses in results:
            assert [r.sequence for r in responses] == list(range(1, 11))
            assert all(len(r.results) == 20 for r in responses)
        engine = trading.app.engine
        engine.validate()
        # Every order is known: open ones in memory, closed ones there or in the report history.
        order_ids = [f"t{n}-{i}-{j}" for n in range(6) for i in range(10) for j in range(20)]
        lookups = (await trading.stub.GetOrders(trading_pb2.GetOrdersRequest(order_ids=order_ids))).lookups
        assert all(lookup.HasField("order") for lookup in lookups) and len(lookups) == 6 * 200
        assert engine.last_trade_id == 600  # every buy met a sell at the same price
        state = engine.state_hash()
        rows = journal_rows(database_url)
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
    async with Trading(settings_for(database_url)) as restarted:
        assert restarted.app.engine.state_hash() == state


async def test_a_failed_journal_write_stops_the_engine(
    new_database: Callable[[], str], risk: tuple[str, _Risk]
) -> None:
    database_url = new_database()
    async with Trading(settings_for(database_url, risk=risk[0])) as trading:
        await trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))
        fatal: list[str] = []
        trading.app.loop._on_fatal = fatal.append
        assert trading.app.journal is not None

        async def broken(records: object) -> None:
            raise psycopg.OperationalError("the disk is on fire")

        trading.app.journal.append = broken  # type: ignore[method-assign]
        error = await refused(trading.send([new("o1", BUY, 100, 1)]))
        assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "OUTCOME_UNKNOWN")
        assert fatal and "journal write failed" in fatal[0]
        after = await refused(trading.stub.GetOrder(trading_pb2.GetOrderRequest(order_id="o1")))
        assert after.code == grpc.StatusCode.UNAVAILABLE
    assert [kind for _, kind in journal_rows(database_url)] == ["instrument_created"]


async def test_a_follower_that_fails_on_a_committed_batch_does_not_stop_the_engine(
    new_database: Callable[[], str], risk: tuple[str, _Risk]
) -> None:
    """A bug in what follows the journal (an outbox's offer, an index, a feed) is logged; the engine
    goes on answering (before, its exception ended the task every later batch waited for)."""
    async with Trading(settings_for(new_database(), risk=risk[0])) as trading:
        await trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))
        fatal: list[str] = []
        trading.app.loop._on_fatal = fatal.append

        def broken(records: object) -> None:
            raise RuntimeError("a bug in a follower")

        trading.app.loop.on_committed.insert(0, broken)
        for number in range(3):
            (response,) = await asyncio.wait_for(trading.send([new(f"o{number}", BUY, 100, 1)]), 30)
            assert response.results[0].reports[0].execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED
        assert not fatal


class _Settlement(settlement_pb2_grpc.SettlementServiceServicer):
    """A receiver of StreamTrades that keeps what it is sent (stands in for settlement)."""

    def __init__(self) -> None:
        self.applied = 0
        self.trades: list[tuple[str, int, int]] = []

    async def StreamTrades(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for request in request_iterator:
            for item in request.trades:
                if item.sequence > self.applied:
                    self.trades.append((request.source, item.sequence, item.trade.trade_id))
                    self.applied = item.sequence
            yield settlement_pb2.StreamTradesResponse(applied_sequence=self.applied)


async def test_trades_reach_settlement_and_risk_through_the_outboxes(
    new_database: Callable[[], str], risk: tuple[str, _Risk]
) -> None:
    receiver = _Settlement()
    server = grpc.aio.server()
    settlement_pb2_grpc.add_SettlementServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        settings = settings_for(new_database(), settlement=f"127.0.0.1:{port}", risk=risk[0])
        async with Trading(settings) as trading:
            await trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))
            await trading.send(
                [new("s", SELL, 100, 3, "a"), new("b", BUY, 100, 1, "b")], [new("c", BUY, 100, 2, "c")]
            )
            await eventually(lambda: len(receiver.trades) == 2, "both trades at the receiver")
            assert receiver.trades == [("trading-test", 4, 1), ("trading-test", 6, 2)]
            outbox = trading.app.outboxes[0]
            assert await outbox.wait_acknowledged(6, 10)
            # Risk gets the instrument first, then the trades (both orders were filled: no release).
            await eventually(lambda: len(risk[1].events) == 3, "every risk event at the receiver")
            assert risk[1].events == [
                ("trading-test", 1, "instrument_created"),
                ("trading-test", 4, "trade"),
                ("trading-test", 6, "trade"),
            ]
    finally:
        await server.stop(0)


async def test_a_subscriber_that_falls_behind_is_ended_not_waited_for() -> None:
    feed = ExecutionFeed(max_queued_batches=2)
    slow, fast = feed.subscribe(), feed.subscribe()
    report = common_pb2.ExecutionReport(execution_type=common_pb2.EXECUTION_TYPE_ACCEPTED)
    for _ in range(2):
        feed.publish([report])
        assert (await fast.next()).reports == [report]
    feed.publish([report])  # the third batch finds the slow queue full
    assert (await fast.next()).reports == [report]
    with pytest.raises(ServiceError) as ended:
        await slow.next()
    assert (ended.value.code, ended.value.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOW_CONSUMER")
    assert feed.subscriber_count == 1
    feed.close()
    with pytest.raises(ServiceError) as closed:
        await fast.next()
    assert closed.value.code == grpc.StatusCode.UNAVAILABLE


# -- client order ids and fences -----------------------------------------------------------


def reuse(order_id: str, client_order_id: str, side: int, price: int, lots: int) -> trading_pb2.OrderCommand:
    """A new order under `order_id` that reuses `client_order_id` (of account acct-1)."""
    command = new(order_id, side, price, lots)
    command.new_order.client_order_id = client_order_id
    return command


def resolve(*order_ids: str) -> trading_pb2.ResolveOrdersRequest:
    return trading_pb2.ResolveOrdersRequest(
        orders=[trading_pb2.OrderToResolve(order_id=o, account_id="acct-1") for o in order_ids]
    )


async def test_resolve_orders_fences_what_was_never_journaled_and_replay_keeps_fences_and_ids(
    new_database: Callable[[], str], risk: tuple[str, _Risk]
) -> None:
    database_url = new_database()
    settings = settings_for(database_url, risk=risk[0])
    async with Trading(settings) as trading:
        await trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))
        await trading.send([new("live", BUY, 100, 2)])

        answer = await trading.stub.ResolveOrders(resolve("live", "lost"))
        found, fenced = answer.results
        assert (found.order_id, found.resolution) == ("live", trading_pb2.RESOLUTION_FOUND)
        assert (found.order.status, found.order.leaves_lots) == (common_pb2.ORDER_STATUS_NEW, 2)
        assert (fenced.order_id, fenced.resolution, fenced.HasField("order")) == (
            "lost",
            trading_pb2.RESOLUTION_FENCED,
            False,
        )
        assert [kind for _, kind in journal_rows(database_url)] == [
            "instrument_created",
            "new_order",
            "order_fenced",
        ]
        # Risk is sent the fence (it releases the order's reservation on it).
        await eventually(
            lambda: any(kind == "order_fenced" for *_, kind in risk[1].events), "the fence at risk"
        )
        assert risk[1].events[-1] == ("trading-test", 3, "order_fenced")

        # Asked again: the same answers, nothing new journaled.
        again = await trading.stub.ResolveOrders(resolve("lost", "live"))
        assert [r.resolution for r in again.results] == [
            trading_pb2.RESOLUTION_FENCED,
            trading_pb2.RESOLUTION_FOUND,
        ]
        assert len(journal_rows(database_url)) == 3

        # The NewOrder still on its way is refused; GetOrder says why the order does not exist.
        ((result,),) = [r.results for r in await trading.send([new("lost", BUY, 100, 1)])]
        assert result.reports[0].reject_reason == RejectReason.ORDER_FENCED.number
        missing = await refused(trading.stub.GetOrder(trading_pb2.GetOrderRequest(order_id="lost")))
        assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "ORDER_FENCED")
        # GetOrders says the same of several orders at once, and fences nothing.
        looked = await trading.stub.GetOrders(
            trading_pb2.GetOrdersRequest(order_ids=["live", "lost", "nope"])
        )
        live, lost, nope = looked.lookups
        assert (live.order.order_id, live.order.leaves_lots, live.fenced) == ("live", 2, False)
        assert (lost.HasField("order"), lost.fenced) == (False, True)
        assert (nope.HasField("order"), nope.fenced) == (False, False)
        for bad, field in (([], "order_ids"), (["live", ""], "order_ids[1]")):
            refusal = await refused(trading.stub.GetOrders(trading_pb2.GetOrdersRequest(order_ids=bad)))
            assert (refusal.code, refusal.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUIRED")
            assert [v.field for v in refusal.violations] == [field]
        assert len(journal_rows(database_url)) == 3  # nothing journaled by the lookups

        # A client order id held by a journaled order: the same order again gets the original,
        # another order gets DUPLICATE_CLIENT_ORDER_ID naming it; neither is journaled.
        (response,) = await trading.send(
            [reuse("retry", "c-live", BUY, 100, 2), reuse("other", "c-live", BUY, 101, 2)]
        )
        same, different = (r.reports[0] for r in response.results)
        assert (same.execution_type, same.order.order_id) == (common_pb2.EXECUTION_TYPE_ACCEPTED, "live")
        assert (different.execution_type, different.reject_reason, different.order.order_id) == (
            common_pb2.EXECUTION_TYPE_REJECTED,
            RejectReason.DUPLICATE_CLIENT_ORDER_ID.number,
            "live",
        )
        assert len(journal_rows(database_url)) == 3

        # Malformed requests name the field.
        empty = await refused(trading.stub.ResolveOrders(trading_pb2.ResolveOrdersRequest()))
        assert (empty.code, empty.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUIRED")
        bad = await refused(trading.stub.ResolveOrders(resolve("ok", "not an id")))
        assert (bad.code, bad.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ORDER_ID")
        assert [v.field for v in bad.violations] == ["orders[1].order_id"]
        assert len(journal_rows(database_url)) == 3
        state = trading.app.engine.state_hash()

    async with Trading(settings) as restarted:
        engine = restarted.app.engine
        assert engine.state_hash() == state
        assert engine.fences == {"lost": "acct-1"}
        assert engine.client_orders == {("acct-1", "c-live"): "live"}
        ((result,),) = [r.results for r in await restarted.send([new("lost", BUY, 100, 1)])]
        assert result.reports[0].reject_reason == RejectReason.ORDER_FENCED.number
        (response,) = await restarted.send([reuse("retry-2", "c-live", BUY, 100, 2)])
        assert response.results[0].reports[0].order.order_id == "live"
        answer = await restarted.stub.ResolveOrders(resolve("lost"))
        assert answer.results[0].resolution == trading_pb2.RESOLUTION_FENCED
        assert len(journal_rows(database_url)) == 3
