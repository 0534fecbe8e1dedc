"""Risk learns instruments from trading's event stream, keeps them in Redis, and never asks trading.

Against the real (embedded) Redis and PostgreSQL: the store step that applies an
instrument event once, replicas that learn from Redis on a miss, the refusals,
and trading's CreateInstrument answering once risk knows the instrument.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from google.protobuf import json_format
from redis.crc import key_slot

import trading.app as trading_app
from backbone.common.v1 import common_pb2
from backbone.money import InstrumentMath
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.config import Settings
from backbone.runtime.embedded import free_port
from backbone.runtime.errors import ServiceError, from_rpc_error
from backbone.runtime.server import RunningServer
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from risk.app import RiskApp
from risk.app import create_app as create_risk
from risk.instruments import InstrumentCache
from risk.keys import INSTRUMENTS_APPLIED_KEY, INSTRUMENTS_KEY
from risk.rebuild import RiskState
from risk.servicer import RiskServicer
from risk.store import RiskStore
from tests.instruments import as_listed, btc_usd
from tests.integration.conftest import ReadyStore, deposit_through_ledger_stream, make_ready
from trading.app import create_app as create_trading

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_symbol() -> str:
    """A symbol no other test stores (risk's instruments are shared by the whole Redis)."""
    return f"T{uuid.uuid4().hex[:8].upper()}-USD"


def instrument(symbol: str, maker_fee_bps: int = 10) -> common_pb2.Instrument:
    return btc_usd(symbol, maker_fee_bps=maker_fee_bps)


class Risk:
    """A risk replica running in process on a free port, with a stub to it."""

    def __init__(self, redis_url: str) -> None:
        self.settings = Settings.from_env(
            {"BACKBONE_REDIS_URL": redis_url, "BACKBONE_GRACE_PERIOD_SECONDS": "0"}
        )
        self.app: RiskApp = create_risk(self.settings)
        self.server = RunningServer(self.app, self.settings)
        self.channel: grpc.aio.Channel | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def __aenter__(self) -> Risk:
        async with redis.Redis.from_url(self.settings.redis_url, decode_responses=True) as client:
            await make_ready(client)  # a state risk serves from, as after a completed rebuild
        await self.server.start("127.0.0.1:0")
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = risk_pb2_grpc.RiskServiceStub(self.channel)  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.channel is not None
        await self.channel.close()
        await self.server.stop()

    async def deposit(self, account: str, asset: str, amount: int) -> None:
        await deposit_through_ledger_stream(self.stub, account, asset, amount)

    async def reserve(self, account: str, symbol: str, lots: int = 1) -> risk_pb2.ReservationResult:
        call = self.stub.StreamReservations()
        command = risk_pb2.ReservationCommand(
            reserve=risk_pb2.Reserve(
                order_id=unique("o"),
                account_id=account,
                symbol=symbol,
                side=common_pb2.SIDE_BUY,
                price_ticks=100,
                quantity_lots=lots,
            )
        )
        await call.write(risk_pb2.StreamReservationsRequest(sequence=1, commands=[command]))
        response: risk_pb2.StreamReservationsResponse = await call.read()
        call.cancel()
        (result,) = response.results
        return result

    async def stream(self, source: str, *events: risk_pb2.TradingEvent) -> int:
        """One StreamTradingEvents stream: the hello, then `events` in one batch; the applied sequence."""
        call = self.stub.StreamTradingEvents()
        try:
            await call.write(risk_pb2.StreamTradingEventsRequest(source=source))
            applied = int((await call.read()).applied_sequence)
            if events:
                await call.write(risk_pb2.StreamTradingEventsRequest(source=source, events=events))
                applied = int((await call.read()).applied_sequence)
            return applied
        finally:
            call.cancel()


def created(sequence: int, definition: common_pb2.Instrument) -> risk_pb2.TradingEvent:
    return risk_pb2.TradingEvent(sequence=sequence, instrument_created=definition)


def reason(result: risk_pb2.ReservationResult) -> str:
    return RejectReason.from_number(result.reject_reason)


# -- the store --------------------------------------------------------------------------------


async def test_an_instrument_event_is_stored_once_with_its_sequence(
    store: ReadyStore, client: redis.Redis
) -> None:
    source, other = unique("shard"), unique("shard")
    a, b, c = instrument(new_symbol()), instrument(new_symbol()), instrument(new_symbol())
    assert await store.apply_instruments(source, [(5, a)]) == [True]
    assert await store.apply_instruments(source, [(5, a)]) == [False]  # redelivered: skipped
    changed = instrument(a.symbol, maker_fee_bps=99)
    assert await store.apply_instruments(source, [(3, changed), (5, changed)]) == [False, False]
    assert await store.apply_instruments(source, [(6, b), (6, b), (7, c)]) == [True, False, True]
    assert await store.apply_instruments(other, [(1, changed)]) == [True]  # its own sequence numbers

    # The layout: one hash of whole definitions, and each source's sequence, in one cluster slot.
    assert key_slot(INSTRUMENTS_KEY.encode()) == key_slot(INSTRUMENTS_APPLIED_KEY.encode())
    assert await client.hget(INSTRUMENTS_APPLIED_KEY, source) == "7"
    assert await client.hget(INSTRUMENTS_APPLIED_KEY, other) == "1"
    text = await client.hget(INSTRUMENTS_KEY, b.symbol)
    assert text is not None and json_format.Parse(text, common_pb2.Instrument()) == b
    learned = {i.symbol: i for i in await store.instruments()}
    assert (learned[a.symbol], learned[b.symbol], learned[c.symbol]) == (changed, b, c)


async def test_a_stored_instrument_that_does_not_parse_is_left_out(
    store: ReadyStore, client: redis.Redis
) -> None:
    symbol = new_symbol()
    await client.hset(INSTRUMENTS_KEY, symbol, "{not json")
    try:
        assert symbol not in {i.symbol for i in await store.instruments()}
    finally:
        await client.hdel(INSTRUMENTS_KEY, symbol)


# -- the service ------------------------------------------------------------------------------


async def test_a_replica_learns_on_a_miss_what_another_replica_was_streamed(redis_url: str) -> None:
    symbol = new_symbol()
    account = unique("acct")
    async with Risk(redis_url) as streamed, Risk(redis_url) as other:
        await other.deposit(account, "USD", 10**9)
        before = await other.reserve(account, symbol)
        assert (before.accepted, reason(before)) == (False, "UNKNOWN_SYMBOL")

        assert await streamed.stream(unique("shard"), created(1, instrument(symbol))) == 1
        after = await other.reserve(account, symbol, lots=2)
        expected = InstrumentMath.of(instrument(symbol)).buy_reservation(100, 2)
        assert (after.accepted, after.asset, after.amount) == (True, "USD", expected)

    # A replica that starts later has it from the start: no miss needed.
    async with Risk(redis_url) as later:
        assert later.app.instruments is not None
        assert later.app.instruments.cached(symbol) is not None


async def test_an_instrument_and_its_trades_in_one_batch_are_applied_once(
    redis_url: str, client: redis.Redis
) -> None:
    source, symbol = unique("shard"), new_symbol()
    definition = instrument(symbol)
    math = InstrumentMath.of(definition)
    buyer, seller = unique("b"), unique("s")
    quote = math.quote_amount(100, 2)
    trade = common_pb2.Trade(
        trade_id=1,
        symbol=symbol,
        price_ticks=100,
        quantity_lots=2,
        buy_order_id="bo",
        sell_order_id="so",
        buy_account_id=buyer,
        sell_account_id=seller,
        maker_side=common_pb2.SIDE_SELL,
        base_asset="BTC",
        quote_asset="USD",
        base_amount=math.base_amount(2),
        quote_amount=quote,
        buyer_fee=math.fee(quote, definition.taker_fee_bps),
        seller_fee=math.fee(quote, definition.maker_fee_bps),
        buy_limit_price_ticks=100,
    )
    batch = (created(1, definition), risk_pb2.TradingEvent(sequence=2, trade=trade))
    async with Risk(redis_url) as risk:
        await risk.deposit(buyer, "USD", 10**9)
        await risk.deposit(seller, "BTC", 10**9)
        assert await risk.stream(source, *batch) == 2

        async def totals() -> dict[str, int]:
            figures = await risk.stub.GetAccountRisk(risk_pb2.GetAccountRiskRequest(account_id=buyer))
            return {a.asset: a.total for a in figures.assets}

        once = await totals()
        assert once == {"USD": 10**9 - quote - trade.buyer_fee, "BTC": math.base_amount(2)}
        # Redelivered after a broken stream: skipped, the instrument too.
        await client.hset(INSTRUMENTS_KEY, symbol, json_format.MessageToJson(instrument(symbol, 77)))
        assert await risk.stream(source, *batch) == 2
        assert await totals() == once
        text = await client.hget(INSTRUMENTS_KEY, symbol)
        assert text is not None
        stored = json_format.Parse(text, common_pb2.Instrument())
        assert stored.maker_fee_bps == 77  # the redelivered event did not write it again


async def test_a_malformed_instrument_event_is_refused_and_nothing_is_stored(
    redis_url: str, client: redis.Redis
) -> None:
    source = unique("shard")
    bad = instrument(new_symbol())
    bad.quote_minor_per_tick_lot = 0
    async with Risk(redis_url) as risk:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await risk.stream(source, created(1, bad))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert from_rpc_error(raised.value).reason == "MALFORMED_EVENT"
        assert await risk.stream(source) == 0
    assert not await client.hexists(INSTRUMENTS_KEY, bad.symbol)


async def test_redis_unreachable_is_redis_unavailable() -> None:
    gone = redis.Redis(host="127.0.0.1", port=free_port(), decode_responses=True, socket_connect_timeout=1)
    store = RiskStore(gone)
    servicer = RiskServicer()
    state = RiskState(store, ["trading-0"])
    state.ready_epoch = "e"  # it was serving when Redis went away
    servicer.attach(store, InstrumentCache(store.instruments), state)
    command = risk_pb2.ReservationCommand(
        reserve=risk_pb2.Reserve(
            order_id="o",
            account_id="a",
            symbol="BTC-USD",
            side=common_pb2.SIDE_BUY,
            price_ticks=1,
            quantity_lots=1,
        )
    )
    try:
        with pytest.raises(ServiceError) as raised:
            await servicer.reserve_batch([command])
        assert (raised.value.code, raised.value.reason) == (grpc.StatusCode.UNAVAILABLE, "REDIS_UNAVAILABLE")
    finally:
        await gone.aclose()


# -- trading's CreateInstrument waits for risk ------------------------------------------------


def trading_settings(database_url: str, risk_address: str) -> Settings:
    return Settings.from_env(
        {
            "BACKBONE_DATABASE_URL": database_url,
            "BACKBONE_RISK_ADDRESS": risk_address,
            "BACKBONE_SETTLEMENT_ADDRESS": f"127.0.0.1:{free_port()}",
            "BACKBONE_TRADING_SHARD": unique("shard"),  # risk's Redis is shared by the tests
            "BACKBONE_GRACE_PERIOD_SECONDS": "1",
            "BACKBONE_DATABASE_POOL_SIZE": "4",
        }
    )


class Trading:
    def __init__(self, settings: Settings) -> None:
        self.app = create_trading(settings)
        self.server = RunningServer(self.app, settings)
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Trading:
        await self.server.start("127.0.0.1:0")
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = trading_pb2_grpc.TradingServiceStub(self.channel)  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.channel is not None
        await self.channel.close()
        await self.server.stop()

    def risk_outbox(self) -> Any:
        return next(o for o in self.app.outboxes if o.name == trading_app.RISK_OUTBOX)


async def test_create_instrument_answers_once_risk_knows_it(
    new_database: Callable[[], str], redis_url: str
) -> None:
    symbol = new_symbol()
    account = unique("acct")
    async with Risk(redis_url) as risk:
        await risk.deposit(account, "USD", 10**9)
        async with Trading(trading_settings(new_database(), risk.address)) as trading:
            # The first creation: risk's stream connects meanwhile; the answer waits for it.
            for name in (symbol, new_symbol()):
                response = await trading.stub.CreateInstrument(
                    trading_pb2.CreateInstrumentRequest(instrument=instrument(name)), timeout=10
                )
                assert response.instrument.symbol == name
                # Read-your-writes: risk has applied it before the answer, so an order right now
                # is sized, not refused as an unknown symbol.
                assert trading.risk_outbox().acknowledged == trading.app.engine.last_sequence
                result = await risk.reserve(account, name)
                assert (result.accepted, reason(result)) == (True, "UNSPECIFIED")
            # The same definition again journals nothing and answers at once.
            again = await trading.stub.CreateInstrument(
                trading_pb2.CreateInstrumentRequest(instrument=instrument(symbol)), timeout=10
            )
            assert again.instrument.symbol == symbol


class Warnings:
    """Stands in for trading.app's logger: keeps the warnings."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


async def test_create_instrument_answers_within_the_deadline_when_risk_does_not_acknowledge(
    new_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = Warnings()
    monkeypatch.setattr(trading_app, "log", logged)
    nobody = f"127.0.0.1:{free_port()}"  # risk is down
    async with Trading(trading_settings(new_database(), nobody)) as trading:
        started = time.monotonic()
        response = await trading.stub.CreateInstrument(
            trading_pb2.CreateInstrumentRequest(instrument=btc_usd()), timeout=3
        )
        waited = time.monotonic() - started
        assert response.instrument == as_listed(btc_usd())
        assert 1.5 < waited < 3.0  # it waited for risk, within the caller's deadline
        listed = await trading.stub.ListInstruments(trading_pb2.ListInstrumentsRequest())
        assert [i.symbol for i in listed.instruments] == ["BTC-USD"]  # created all the same
        assert [fields["sequence"] for _, fields in logged.warnings] == [1]
        assert "risk has not acknowledged" in logged.warnings[0][0]
