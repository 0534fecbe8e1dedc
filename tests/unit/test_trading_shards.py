"""Trading shards: their settings, order ids that name them, and the gateway's routing (gateway/shards.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.config import ConfigError, Settings
from backbone.runtime.errors import ServiceError
from backbone.runtime.reconnect import Backoff, Reconnector
from backbone.trading.v1 import trading_pb2
from gateway.app import DependencyWatch
from gateway.instruments import InstrumentCache
from gateway.market_data import MarketDataFanout
from gateway.resolver import OutcomeResolver
from gateway.shards import TradingShard, TradingShards
from ops.supervisor import ServiceProcesses, trading_shard_processes

HEX = "0123456789abcdef" * 2


# --- settings ---------------------------------------------------------------------------------


def test_one_shard_is_the_default() -> None:
    settings = Settings.from_env({"BACKBONE_TRADING_ADDRESS": "127.0.0.1:7000"})
    assert settings.trading_shards == (("trading-0", "127.0.0.1:7000"),)
    assert settings.trading_shard_names == ("trading-0",)
    assert settings.trading_symbols == () and settings.up_trading_shards == ()


def test_shards_and_symbols_are_read_checked_and_ordered() -> None:
    settings = Settings.from_env(
        {
            "BACKBONE_TRADING_SHARDS": "trading-1=h1:1, trading-0=h0:2",
            "BACKBONE_TRADING_SYMBOLS": "ETH-USD, BTC-USD,ETH-USD",
            "BACKBONE_UP_TRADING_SHARDS": "a=BTC-USD,ETH-USD; b=SOL-USD",
        }
    )
    # The order given is kept: the first is the default shard.
    assert settings.trading_shards == (("trading-1", "h1:1"), ("trading-0", "h0:2"))
    assert settings.trading_shard_names == ("trading-1", "trading-0")
    assert settings.trading_symbols == ("BTC-USD", "ETH-USD")
    assert settings.up_trading_shards == (("a", ("BTC-USD", "ETH-USD")), ("b", ("SOL-USD",)))


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("TRADING_SHARDS", "trading-0", "name=host:port"),
        ("TRADING_SHARDS", "trading-0=nohostport", "host:port"),
        ("TRADING_SHARDS", "a=h:1,a=h:2", "twice"),
        ("TRADING_SHARDS", "a b=h:1", "shard name"),
        ("TRADING_SHARDS", "x" * 32 + "=h:1", "at most 31"),  # it begins every order id
        ("TRADING_SYMBOLS", "btc-usd", "symbol"),
        ("TRADING_SYMBOLS", "BTC-USD,", "symbol"),
        ("UP_TRADING_SHARDS", "a=BTC-USD;b=BTC-USD", "both"),
        ("UP_TRADING_SHARDS", "a=", "name=SYMBOL"),
        ("UP_TRADING_SHARDS", "a=BTC-USD;a=ETH-USD", "twice"),
        ("TRADING_SHARD", "x" * 32, "at most 31"),
    ],
)
def test_wrong_shard_settings_are_refused_at_start(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=f"BACKBONE_{variable}") as raised:
        Settings.from_env({f"BACKBONE_{variable}": value})
    assert says in str(raised.value)


def test_up_places_the_shards_after_the_trading_address_or_where_they_are_given() -> None:
    derived = Settings.from_env(
        {"BACKBONE_TRADING_ADDRESS": "127.0.0.1:7000", "BACKBONE_UP_TRADING_SHARDS": "a=X;b=Y;c=Z"}
    )
    assert [(s.name, s.address, s.symbols) for s in trading_shard_processes(derived, False)] == [
        ("a", "127.0.0.1:7000", ("X",)),
        ("b", "127.0.0.1:7010", ("Y",)),
        ("c", "127.0.0.1:7020", ("Z",)),
    ]
    given = Settings.from_env(
        {"BACKBONE_TRADING_SHARDS": "a=h:1,b=h:2", "BACKBONE_UP_TRADING_SHARDS": "b=Y;a=X"}
    )
    assert [(s.name, s.address) for s in trading_shard_processes(given, True)] == [("b", "h:2"), ("a", "h:1")]
    missing = Settings.from_env({"BACKBONE_TRADING_SHARDS": "a=h:1", "BACKBONE_UP_TRADING_SHARDS": "a=X;b=Y"})
    with pytest.raises(ConfigError, match="no address for the shard 'b'"):
        trading_shard_processes(missing, True)


def test_the_service_processes_run_one_trading_process_per_shard() -> None:
    services = ServiceProcesses(
        {"BACKBONE_TRADING_ADDRESS": "127.0.0.1:7000", "BACKBONE_UP_TRADING_SHARDS": "t0=X;t1=Y"}
    )
    assert services.start_order == ("settlement", "t0", "t1", "risk", "gateway")
    assert services.address("t1") == "127.0.0.1:7010"
    # Gateway and risk are told every shard.
    assert services.environment["BACKBONE_TRADING_SHARDS"] == "t0=127.0.0.1:7000,t1=127.0.0.1:7010"
    assert ServiceProcesses({}).start_order == ("settlement", "trading", "risk", "gateway")


# --- order ids ----------------------------------------------------------------------------------


def test_an_order_id_names_its_shard() -> None:
    order_id = ids.make_order_id("eu.trading-1")
    assert order_id.startswith("eu.trading-1.") and ids.ORDER_ID.is_valid(order_id)
    assert ids.shard_of_order_id(order_id) == "eu.trading-1"  # the part before the last dot
    longest = ids.make_order_id("x" * ids.SHARD_NAME_MAX_LENGTH)
    assert len(longest) == ids.MAX_ID_LENGTH and ids.ORDER_ID.is_valid(longest)


@pytest.mark.parametrize(
    "order_id",
    [
        HEX,  # made before sharding
        "." + HEX,  # no shard name
        "trading-1." + HEX.upper(),  # not the gateway's lower-case hex
        "trading-1." + HEX[:-1],  # one digit short
        "trading:1." + HEX,  # not a shard name
        "client-chosen-id",
    ],
)
def test_other_ids_name_no_shard(order_id: str) -> None:
    assert ids.shard_of_order_id(order_id) is None


# --- routing ------------------------------------------------------------------------------------


class FakeTrading:
    """What the router asks a shard: its info, its instruments; records commands sent to it."""

    def __init__(self, name: str, symbols: tuple[str, ...], instruments: tuple[str, ...] = ()) -> None:
        self.name, self.symbols, self.listed = name, symbols, instruments
        self.commands: list[trading_pb2.OrderCommand] = []
        self.down = False

    async def GetShardInfo(
        self, request: trading_pb2.GetShardInfoRequest
    ) -> trading_pb2.GetShardInfoResponse:
        return trading_pb2.GetShardInfoResponse(shard=self.name, symbols=self.symbols)

    async def ListInstruments(self, request: Any) -> trading_pb2.ListInstrumentsResponse:
        if self.down:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.TRADING_UNAVAILABLE, "down")
        return trading_pb2.ListInstrumentsResponse(
            instruments=[common_pb2.Instrument(symbol=symbol) for symbol in self.listed]
        )

    async def submit_many(self, commands: list[trading_pb2.OrderCommand]) -> list[trading_pb2.CommandResult]:
        self.commands += commands
        return [trading_pb2.CommandResult() for _ in commands]


def router(*fakes: FakeTrading) -> TradingShards:
    async def call(shard: TradingShard, method: Any, request: Any) -> Any:
        return await method(request)

    async def never_down(channel: Any) -> bool:
        return False

    return TradingShards(
        [TradingShard(fake.name, f"h:{i}", cast(Any, fake), cast(Any, fake)) for i, fake in enumerate(fakes)],
        call,
        never_down,
    )


async def test_a_new_symbol_goes_to_the_one_shard_that_owns_it() -> None:
    shards = router(FakeTrading("t0", ("AAA-USD",)), FakeTrading("t1", ("BBB-USD",)))
    assert (await shards.owner_of_new_symbol("BBB-USD")).name == "t1"
    with pytest.raises(ServiceError) as nobody:
        await shards.owner_of_new_symbol("ZZZ-USD")
    assert (nobody.value.code, nobody.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        RejectReason.NO_SHARD_FOR_SYMBOL,
    )
    # A shard owning every symbol beside another one: every symbol that one lists has two owners.
    overlapping = router(FakeTrading("t0", ()), FakeTrading("t1", ("BBB-USD",)))
    with pytest.raises(ServiceError, match="t0, t1 all claim it"):
        await overlapping.owner_of_new_symbol("BBB-USD")
    # A shard restarted with the symbol added: asked again before the symbol is refused.
    shards.all[0].stub.symbols = ("AAA-USD", "ZZZ-USD")  # type: ignore[attr-defined]
    assert (await shards.owner_of_new_symbol("ZZZ-USD")).name == "t0"
    # One shard owning every symbol: the one-shard default.
    assert (await router(FakeTrading("t0", ())).owner_of_new_symbol("ANY-USD")).name == "t0"


async def test_a_shard_answering_under_another_name_is_refused() -> None:
    shards = router(FakeTrading("t0", ()), FakeTrading("other", ()))
    shards.all[1].name = "t1"  # configured as t1, answers as "other"
    with pytest.raises(ServiceError, match="BACKBONE_TRADING_SHARDS calls it 't1'") as raised:
        await shards.owner_of_new_symbol("ANY-USD")
    assert raised.value.reason == RejectReason.UNKNOWN_SHARD


async def test_instruments_are_merged_and_a_shard_that_cannot_answer_keeps_its_last_list() -> None:
    zero, one = FakeTrading("t0", ("AAA-USD",), ("AAA-USD",)), FakeTrading("t1", ("BBB-USD",), ("BBB-USD",))
    shards = router(zero, one)
    assert [i.symbol for i in await shards.list_instruments()] == ["AAA-USD", "BBB-USD"]
    assert shards.of_symbol("BBB-USD").name == "t1"
    one.down = True
    assert [i.symbol for i in await shards.list_instruments()] == ["AAA-USD", "BBB-USD"]
    assert shards.unlisted() == []
    assert shards.of_symbol("BBB-USD").name == "t1"
    zero.down = True
    with pytest.raises(ServiceError):
        await shards.list_instruments()


async def test_commands_go_to_their_shards_and_are_answered_in_order() -> None:
    zero, one = FakeTrading("t0", (), ("AAA-USD",)), FakeTrading("t1", (), ("BBB-USD",))
    shards = router(zero, one)
    await shards.list_instruments()
    commands = [
        trading_pb2.OrderCommand(new_order=trading_pb2.NewOrder(symbol="BBB-USD", order_id="t1." + HEX)),
        trading_pb2.OrderCommand(cancel_order=trading_pb2.CancelOrder(order_id=HEX)),  # before sharding
        trading_pb2.OrderCommand(cancel_order=trading_pb2.CancelOrder(order_id="t9." + HEX)),  # no such shard
        trading_pb2.OrderCommand(cancel_order=trading_pb2.CancelOrder(order_id="t1." + HEX)),
        trading_pb2.OrderCommand(new_order=trading_pb2.NewOrder(symbol="AAA-USD")),
    ]
    answers = await shards.submit_many(commands)
    assert [type(answer).__name__ for answer in answers] == [
        "CommandResult", "CommandResult", "ServiceError", "CommandResult", "CommandResult",
    ]  # fmt: skip
    refusal = answers[2]
    assert isinstance(refusal, ServiceError) and refusal.reason == RejectReason.UNKNOWN_ORDER
    assert zero.commands == [commands[1], commands[4]]
    assert one.commands == [commands[0], commands[3]]


def test_an_unknown_shard_is_not_found() -> None:
    shards = router(FakeTrading("t0", ()))
    with pytest.raises(ServiceError) as raised:
        shards.named("t1")
    assert (raised.value.code, raised.value.reason) == (grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_SHARD)


def test_the_gateway_serves_while_any_trading_shard_does() -> None:
    watch = DependencyWatch(
        cast(Any, dict.fromkeys(("risk", "trading t0", "trading t1", "settlement"))),
        lambda: None,
        any_of=frozenset({"trading t0", "trading t1"}),
    )
    watch.serving.update({"risk": True, "settlement": True, "trading t0": False, "trading t1": True})
    assert watch.all_serving
    watch.serving["trading t1"] = False
    assert not watch.all_serving
    watch.serving.update({"trading t0": True, "trading t1": True, "risk": False})
    assert not watch.all_serving


class ResolvingTrading(FakeTrading):
    """ResolveOrders and ResolveReplaces: every order or replace fenced, or UNAVAILABLE while down;
    records what it was asked."""

    def __init__(self, name: str) -> None:
        super().__init__(name, ())
        self.asked: list[str] = []

    async def ResolveOrders(
        self, request: trading_pb2.ResolveOrdersRequest
    ) -> trading_pb2.ResolveOrdersResponse:
        self.asked += [item.order_id for item in request.orders]
        if self.down:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.TRADING_UNAVAILABLE, "down")
        return trading_pb2.ResolveOrdersResponse(
            results=[
                trading_pb2.OrderResolution(order_id=item.order_id, resolution=trading_pb2.RESOLUTION_FENCED)
                for item in request.orders
            ]
        )

    async def ResolveReplaces(
        self, request: trading_pb2.ResolveReplacesRequest
    ) -> trading_pb2.ResolveReplacesResponse:
        self.asked += [item.replace_id for item in request.replaces]
        if self.down:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.TRADING_UNAVAILABLE, "down")
        return trading_pb2.ResolveReplacesResponse(
            results=[
                trading_pb2.ReplaceResolutionResult(
                    order_id=item.order_id,
                    replace_id=item.replace_id,
                    resolution=trading_pb2.REPLACE_RESOLUTION_FENCED,
                )
                for item in request.replaces
            ]
        )


async def test_replaces_of_unknown_outcome_are_resolved_on_their_shards_one_down_or_not() -> None:
    zero, one = ResolvingTrading("t0"), ResolvingTrading("t1")
    one.down = True
    shards = router(zero, one)

    async def call(method: Any, request: Any) -> Any:
        return await method(request)

    async def on_fenced(order: trading_pb2.NewOrder) -> None:
        raise AssertionError("no order is resolved here")

    backends = SimpleNamespace(trading_shards=shards, call=call, background=set())
    resolver = OutcomeResolver(cast(Any, backends), on_fenced, max_pending=3)
    assert resolver.add_replace("t1." + HEX, "acct", "r-one")  # t1's replace waits first
    assert resolver.add_replace("t0." + HEX, "acct", "r-zero")
    assert resolver.add_replace("t0." + HEX, "acct", "r-zero")  # the same again: once
    assert resolver.add_replace(HEX, "acct", "r-old")
    assert not resolver.add_replace(HEX, "acct", "r-beyond")  # the queue is bounded
    assert resolver.pending_replaces == 3
    fenced = trading_pb2.REPLACE_RESOLUTION_FENCED
    resolver.start()
    try:
        await until(lambda: resolver.replaces_settled.get(fenced) == 2)
        assert zero.asked == ["r-zero", "r-old"] and one.asked[0] == "r-one"
        assert resolver.pending_replaces == 1  # t1 is down: the other shard's went meanwhile
        one.down = False  # back: asked again after the backoff
        await until(lambda: resolver.pending_replaces == 0)
        assert resolver.replaces_settled == {fenced: 3}
    finally:
        await resolver.stop()


async def test_orders_of_unknown_outcome_are_resolved_on_their_shards_one_down_or_not() -> None:
    zero, one = ResolvingTrading("t0"), ResolvingTrading("t1")
    one.down = True
    shards = router(zero, one)

    async def call(method: Any, request: Any) -> Any:
        return await method(request)

    fenced: list[str] = []

    async def on_fenced(order: trading_pb2.NewOrder) -> None:
        fenced.append(order.order_id)

    backends = SimpleNamespace(trading_shards=shards, call=call, background=set())
    resolver = OutcomeResolver(cast(Any, backends), on_fenced)
    on_one, on_zero, old = "t1." + HEX, "t0." + HEX, HEX
    for order_id in (on_one, on_zero, old):  # t1's order waits first
        resolver.add(trading_pb2.NewOrder(order_id=order_id, account_id="acct"))
    resolver.start()
    try:
        for _ in range(200):  # t1 is down: the other shard's orders are resolved meanwhile
            if len(fenced) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(fenced) == sorted([on_zero, old]) and zero.asked == [on_zero, old]
        assert resolver.awaiting(on_one) and one.asked[0] == on_one
        one.down = False
        for _ in range(500):
            if len(fenced) == 3:
                break
            await asyncio.sleep(0.01)
        assert fenced[-1] == on_one and resolver.pending == 0
    finally:
        await resolver.stop()


async def test_a_symbol_is_unknown_only_once_every_shard_has_listed_its_instruments() -> None:
    zero, one = FakeTrading("t0", (), ("AAA-USD",)), FakeTrading("t1", (), ("BBB-USD",))
    one.down = True  # since the gateway started
    shards = router(zero, one)
    cache = InstrumentCache(shards.list_instruments, unlisted=shards.unlisted, min_refresh_interval_seconds=0)
    assert (await cache.get("AAA-USD")) is not None  # the shard that answers trades on
    with pytest.raises(ServiceError) as raised:
        await cache.get("BBB-USD")
    assert (raised.value.code, raised.value.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        RejectReason.TRADING_UNAVAILABLE,
    )
    assert "t1" in raised.value.message
    one.down = False
    assert (await cache.get("BBB-USD")) is not None
    assert (await cache.get("ZZZ-USD")) is None  # now it is unknown for sure


class FakeFeed:
    """An upstream StreamMarketData call: yields what the test puts, raises what it puts."""

    def __init__(self) -> None:
        self.items: asyncio.Queue[Any] = asyncio.Queue()

    def __aiter__(self) -> FakeFeed:
        return self

    async def __anext__(self) -> Any:
        item = await self.items.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> None:
        return None


def book_snapshot(symbol: str, price_ticks: int) -> trading_pb2.StreamMarketDataResponse:
    return trading_pb2.StreamMarketDataResponse(
        updates=[
            trading_pb2.BookUpdate(
                symbol=symbol,
                snapshot=True,
                bids=[trading_pb2.PriceLevel(price_ticks=price_ticks, quantity_lots=1)],
            )
        ]
    )


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_the_books_of_a_shard_whose_feed_broke_are_not_served_until_it_resends_them() -> None:
    feeds: list[list[FakeFeed]] = [[], []]

    def opener(index: int) -> Any:
        def open_feed() -> FakeFeed:
            feeds[index].append(FakeFeed())
            return feeds[index][-1]

        return open_feed

    quick = Reconnector(Backoff(initial_seconds=0.01, factor=1.0, max_seconds=0.01, reset_after_seconds=1.0))
    fanout = MarketDataFanout([opener(0), opener(1)], reconnector=quick)
    await fanout.start()
    try:
        await until(lambda: all(feeds))
        feeds[0][0].items.put_nowait(book_snapshot("A", 100))
        feeds[1][0].items.put_nowait(book_snapshot("B", 200))
        await until(lambda: fanout.book("A") is not None and fanout.book("B") is not None)
        feeds[1][0].items.put_nowait(RuntimeError("trading-1 killed"))
        await until(lambda: fanout.book("B") is None)  # stale: a new caller is refused, not misled
        assert fanout.book("A") is not None and fanout.connected.is_set()  # the other shard's serve on
        await until(lambda: len(feeds[1]) == 2)  # subscribed again
        feeds[1][1].items.put_nowait(book_snapshot("B", 201))
        await until(lambda: fanout.book("B") is not None)
        book = fanout.book("B")
        assert book is not None and list(book.bids) == [201]
    finally:
        await fanout.close()
