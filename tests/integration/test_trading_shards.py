"""Two trading shards, each owning its symbols: the gateway routes, risk and settlement take both.

The system runs trading as two processes (BACKBONE_UP_TRADING_SHARDS): trading-0 owns AAA-USD and
CCC-USD, trading-1 owns BBB-USD. Orders on both shards trade and settle; an order id names its
shard, so CancelOrder and GetOrder reach it; an account's ListOrders, CancelAllOrders and
StreamExecutions cover both; a symbol no shard owns, and an instrument asked of the wrong shard,
are refused with their reasons; with one shard killed (SIGKILL) under a flow of orders the other
keeps trading, the killed one recovers, and `backbone check` holds for both journals and both
live engines, and a StreamOrders session trading on one shard is not interrupted by the other's
restart; a Redis flush makes risk rebuild the holds of both shards' open orders.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import grpc
import pytest
import redis

from backbone.client import Client
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.ids import shard_of_order_id
from backbone.reasons import RejectReason
from backbone.runtime.errors import from_rpc_error
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
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
    set_claims_marker,
    setup_market,
    two_shard_settings,
    wait_for,
)
from tests.integration.order_flow import OrderFlow
from tests.integration.order_stream_calls import OK, OrderStream, cancel, submit, with_resting_order
from tests.integration.test_market_data import DEPTH, Follower, public_book

pytestmark = pytest.mark.integration

ON_ZERO, ALSO_ON_ZERO, ON_ONE = "AAA-USD", "CCC-USD", "BBB-USD"
DAY = common_pb2.TIME_IN_FORCE_DAY
SHARD_OF = {ON_ZERO: "trading-0", ALSO_ON_ZERO: "trading-0", ON_ONE: "trading-1"}


@pytest.fixture(scope="module")
def system(system_factory: Callable[..., System]) -> System:
    return system_factory(**two_shard_settings([ON_ZERO, ALSO_ON_ZERO], [ON_ONE]))


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        for symbol in SHARD_OF:
            setup_market(gateway, symbol, symbol.split("-")[0])
        # Not about a Redis loss: with the claims complete an order needs its own shard only.
        set_claims_marker(system.redis_url)
        yield gateway


def trading_addresses(system: System) -> list[str]:
    return [system.services.address(name) for name in ("trading-0", "trading-1")]


def shard_stub(system: System, name: str) -> Iterator[trading_pb2_grpc.TradingServiceStub]:
    with grpc.insecure_channel(system.services.address(name)) as channel:
        yield trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]


def trader(gateway: Gateway) -> tuple[str, str]:
    return funded_account(gateway, {"USD": "1000000", "AAA": "1000", "BBB": "1000", "CCC": "1000"})


def test_orders_on_both_shards_trade_settle_and_are_reached_by_their_ids(gateway: Gateway) -> None:
    _, buyer_key = trader(gateway)
    _, seller_key = trader(gateway)
    for symbol, shard in SHARD_OF.items():
        resting = gateway.public.SubmitOrder(order(symbol, SELL, "100.00", "2"), metadata=key(seller_key))
        assert shard_of_order_id(resting.order.order_id) == shard
        taking = gateway.public.SubmitOrder(order(symbol, BUY, "100.00", "2"), metadata=key(buyer_key))
        assert taking.order.status == common_pb2.ORDER_STATUS_FILLED
        # Every report of the answer names the shard that journaled it.
        assert [report.shard for report in (*resting.reports, *taking.reports)] == [shard] * (
            len(resting.reports) + len(taking.reports)
        )
        # GetOrder reaches each order on the shard its id names.
        got = gateway.public.GetOrder(
            gateway_pb2.GetOrderRequest(order_id=resting.order.order_id), metadata=key(seller_key)
        )
        assert (got.order.symbol, got.order.status) == (symbol, common_pb2.ORDER_STATUS_FILLED)

    # Both shards' trades are posted: the buyer paid 3 x 200 USD plus 20 bps taker fees.
    def totals() -> dict[str, str]:
        return {asset: balance.total for asset, balance in balances(gateway, buyer_key).items()}

    expected = {
        "USD": "999398.800000",
        "AAA": "1002.00000000",
        "BBB": "1002.00000000",
        "CCC": "1002.00000000",
    }
    wait_for(lambda: totals() == expected, what="both shards' trades settled")
    fills = gateway.public.ListFills(gateway_pb2.ListFillsRequest(symbol=ON_ONE), metadata=key(buyer_key))
    assert [fill.symbol for fill in fills.fills] == [ON_ONE]
    # ListFills of every symbol walks both shards (each numbers its own trades): page by page,
    # every fill once, trading-0's first.
    for page_size in (1, 2, 3):
        assert walk_fills(gateway, buyer_key, page_size) == [ON_ZERO, ALSO_ON_ZERO, ON_ONE]
    # Each shard's engine state, and one by name.
    md = gateway.admin_metadata()
    states = gateway.admin.GetEngineState(gateway_pb2.GetEngineStateRequest(), metadata=md)
    assert {state.shard: state.instruments for state in states.shards} == {"trading-0": 2, "trading-1": 1}
    one = gateway.admin.GetEngineState(gateway_pb2.GetEngineStateRequest(shard="trading-1"), metadata=md)
    assert [state.shard for state in one.shards] == ["trading-1"]
    listed = gateway.public.ListInstruments(gateway_pb2.ListInstrumentsRequest(), metadata=key(buyer_key))
    assert [instrument.symbol for instrument in listed.instruments] == sorted(SHARD_OF)


def test_a_replace_reaches_the_shard_its_order_id_names(gateway: Gateway, system: System) -> None:
    """ReplaceOrder (unary and on StreamOrders) of orders on each shard: risk grows the hold, the
    order's own shard replaces it (the default shard does not know trading-1's orders), and the
    grows are settled by each shard's OrderReplaced."""
    _, api_key = trader(gateway)
    placed = {
        symbol: gateway.public.SubmitOrder(order(symbol, BUY, "10.00", "1"), metadata=key(api_key)).order
        for symbol in (ON_ZERO, ON_ONE)
    }
    up = gateway.public.ReplaceOrder(
        gateway_pb2.ReplaceOrderRequest(order_id=placed[ON_ONE].order_id, price="12.00", quantity="2"),
        metadata=key(api_key),
    )
    assert (up.order.price, up.order.quantity) == ("12.00", "2.0000")
    assert [report.execution_type for report in up.reports] == [common_pb2.EXECUTION_TYPE_REPLACED]
    assert [report.shard for report in up.reports] == ["trading-1"]
    command = gateway_pb2.OrderCommand(
        tag="down", replace=gateway_pb2.ReplaceOrderRequest(order_id=placed[ON_ZERO].order_id, price="9.00")
    )
    responses = gateway.public.StreamOrders(
        iter([gateway_pb2.StreamOrdersRequest(commands=[command])]), metadata=key(api_key), timeout=30
    )
    (result,) = [result for response in responses for result in response.results]
    assert (result.code, result.order.price) == (OK, "9.00")
    for symbol, price in ((ON_ONE, "12.00"), (ON_ZERO, "9.00")):
        got = gateway.public.GetOrder(
            gateway_pb2.GetOrderRequest(order_id=placed[symbol].order_id), metadata=key(api_key)
        )
        assert got.order.price == price
    # Held: 2 x 12 + 1 x 9 USD plus the largest fee rate on each (the market's 20 bps taker fee).
    wait_for(lambda: balances(gateway, api_key)["USD"].reserved == "33.066000", what="both replaced holds")
    invariants_hold(system.database_url, system.redis_url, trading_addresses(system))


def test_a_resumed_execution_stream_catches_up_on_each_shard(gateway: Gateway, system: System) -> None:
    """Report numbers count per shard: a stream resumed with each shard's next number gets, once
    each and in each shard's order, what both shards reported while it was away; a stream open
    while one shard restarts gets both shards' reports without breaking."""
    _, api_key = trader(gateway)
    first = gateway.public.StreamExecutions(
        gateway_pb2.StreamExecutionsRequest(), metadata=key(api_key), timeout=60
    )
    announced = dict(first.initial_metadata())["backbone-account-sequences"]
    assert announced == "trading-0=0,trading-1=0"
    first.cancel()
    # Away: two orders on each shard (ACCEPTED, then CANCELLED for one of each).
    for symbol in (ON_ZERO, ON_ONE):
        placed = gateway.public.SubmitOrder(order(symbol, BUY, "10.00", "1"), metadata=key(api_key))
        gateway.public.SubmitOrder(order(symbol, BUY, "11.00", "1"), metadata=key(api_key))
        gateway.public.CancelOrder(
            gateway_pb2.CancelOrderRequest(order_id=placed.order.order_id), metadata=key(api_key)
        )
    resumed = gateway.public.StreamExecutions(
        gateway_pb2.StreamExecutionsRequest(from_shard_sequences={"trading-0": 1, "trading-1": 2}),
        metadata=key(api_key),
        timeout=60,
    )
    seen: dict[str, list[int]] = {"trading-0": [], "trading-1": []}
    for response in resumed:
        seen[response.report.shard].append(response.report.account_sequence)
        if sum(map(len, seen.values())) == 5:
            break
    resumed.cancel()
    assert seen == {"trading-0": [1, 2, 3], "trading-1": [2, 3]}
    # Refusals: an unknown shard, a negative number, the default shard named twice.
    cases = (
        ({"trading-9": 1}, 0, grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_SHARD),
        ({"trading-1\n": 1}, 0, grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_SOURCE),
        ({"": 1}, 0, grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_SOURCE),
        ({"trading-1": -1}, 0, grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_RANGE),
        ({"trading-0": 1}, 1, grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_RANGE),
    )
    for by_shard, default, code, reason in cases:
        request = gateway_pb2.StreamExecutionsRequest(from_sequence=default, from_shard_sequences=by_shard)
        error = refused(
            lambda r=request: next(iter(gateway.public.StreamExecutions(r, metadata=key(api_key))))
        )
        assert (error.code, error.reason) == (code, reason)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert [v.field for v in error.violations] == ["from_shard_sequences"]
    # The SDK's stream stays open while trading-1 dies and comes back (the gateway rides through
    # a shard's feed break): an order placed on trading-0 while trading-1 is down, and one on
    # trading-1 once it is back (journaled, most often, before the gateway's feed of trading-1 is
    # back: read from its history), come once each, without the stream breaking.
    with Client.connect(system.gateway, api_key=api_key) as client, client.stream_executions() as stream:
        assert stream.last_sequences == {"trading-0": 3, "trading-1": 3}
        system.services.kill("trading-1")
        client.submit_order(ON_ZERO, "BUY", Decimal("9.00"), Decimal("1"))
        system.services.start("trading-1")
        system.services.wait_healthy("trading-1")
        wait_for(lambda: _accepted(gateway, api_key, ON_ONE), what="trading-1 back")
        got = sorted((report.shard, report.account_sequence) for report in (next(stream), next(stream)))
        assert got == [("trading-0", 4), ("trading-1", 4)]
        assert stream.last_sequences == {"trading-0": 4, "trading-1": 4}
        assert stream.reconnects == 0


def walk_fills(gateway: Gateway, api_key: str, page_size: int) -> list[str]:
    """The symbols of the account's fills, read `page_size` at a time to the end."""
    symbols: list[str] = []
    token = ""
    for _ in range(20):
        page = gateway.public.ListFills(
            gateway_pb2.ListFillsRequest(page_size=page_size, page_token=token), metadata=key(api_key)
        )
        symbols += [fill.symbol for fill in page.fills]
        token = page.next_page_token
        if not token:
            return symbols
    raise AssertionError(f"no end after 20 pages: {symbols}")


def test_one_order_stream_batch_goes_to_both_shards(gateway: Gateway, system: System) -> None:
    _, maker_key = trader(gateway)
    _, taker_key = trader(gateway)
    for symbol in SHARD_OF:
        gateway.public.SubmitOrder(order(symbol, SELL, "20.00", "1"), metadata=key(maker_key))
    with grpc.insecure_channel(system.gateway) as channel:
        stream = OrderStream(channel, taker_key)
        # One request: a buy on each shard's symbols, a refused one between them.
        stream.send(
            submit(order(ON_ZERO, BUY, "20.00", "1")),
            submit(order(ON_ONE, BUY, "20.00", "1")),
            submit(order("ZZZ-USD", BUY, "20.00", "1")),
            submit(order(ALSO_ON_ZERO, BUY, "20.00", "1")),
        )
        stream.wait_results(4)
        stream.close()
        results = [stream.results[(1, index)] for index in range(4)]
    assert [result.code for result in results] == [OK, OK, grpc.StatusCode.INVALID_ARGUMENT.value[0], OK]
    assert [shard_of_order_id(results[i].order.order_id) for i in (0, 1, 3)] == [
        "trading-0", "trading-1", "trading-0",
    ]  # fmt: skip
    assert all(results[i].order.status == common_pb2.ORDER_STATUS_FILLED for i in (0, 1, 3))
    assert [{report.shard for report in results[i].reports} for i in (0, 1, 3)] == [
        {"trading-0"}, {"trading-1"}, {"trading-0"},
    ]  # fmt: skip


def test_an_accounts_calls_cover_both_shards(gateway: Gateway, system: System) -> None:
    _, api_key = trader(gateway)
    reports: list[gateway_pb2.StreamExecutionsResponse] = []
    stream = gateway.public.StreamExecutions(
        gateway_pb2.StreamExecutionsRequest(), metadata=key(api_key), timeout=60
    )
    stream.initial_metadata()  # subscribed: no later report is missed

    def read() -> None:
        try:
            for response in stream:
                reports.append(response)
        except grpc.RpcError:
            return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    placed = [
        gateway.public.SubmitOrder(order(symbol, BUY, price, "1"), metadata=key(api_key)).order.order_id
        for symbol in (ON_ZERO, ON_ONE, ALSO_ON_ZERO, ON_ONE)
        for price in ("50.00", "51.00")
    ]
    assert {shard_of_order_id(order_id) for order_id in placed} == {"trading-0", "trading-1"}
    # Reports of both shards' orders reach the one stream.
    wait_for(
        lambda: {r.report.order.order_id for r in reports} >= set(placed),
        what="every order's report streamed",
    )
    # ListOrders merges both shards' pages: walked 3 at a time, each order once, in creation order.
    seen: list[str] = []
    token = ""
    while True:
        page = gateway.public.ListOrders(
            gateway_pb2.ListOrdersRequest(page_size=3, page_token=token), metadata=key(api_key)
        )
        seen += [listed.order_id for listed in page.orders]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(placed) and len(seen) == len(placed)
    # CancelOrder reaches each shard by the order id.
    for order_id in (placed[0], placed[2]):
        cancelled = gateway.public.CancelOrder(
            gateway_pb2.CancelOrderRequest(order_id=order_id), metadata=key(api_key)
        )
        assert cancelled.order.status == common_pb2.ORDER_STATUS_CANCELLED
    # CancelAllOrders of the account cancels what is open on both shards.
    everything = gateway.public.CancelAllOrders(gateway_pb2.CancelAllOrdersRequest(), metadata=key(api_key))
    assert everything.cancelled_count == len(placed) - 2
    assert {shard_of_order_id(listed.order_id) for listed in everything.orders} == {"trading-0", "trading-1"}
    empty = gateway.public.ListOrders(gateway_pb2.ListOrdersRequest(), metadata=key(api_key))
    assert list(empty.orders) == []
    # Read your writes on both shards: the gateway waits for each shard's releases it reported.
    assert balances(gateway, api_key)["USD"].reserved == "0.000000"
    # A caller's min_trading_sequence names no point of two journals: not waited for (risk would log it).
    huge = 10**12
    gateway.public.GetBalances(
        gateway_pb2.GetBalancesRequest(min_trading_sequence=huge), metadata=key(api_key)
    )
    gateway.public.ListFills(gateway_pb2.ListFillsRequest(min_trading_sequence=huge), metadata=key(api_key))
    assert f'"wanted": {huge}' not in (system.log_dir / "risk.log").read_text()
    stream.cancel()
    reader.join(10)


def test_a_symbol_no_shard_owns_and_the_wrong_shard_are_refused(gateway: Gateway, system: System) -> None:
    md = gateway.admin_metadata()
    nobodys = refused(
        lambda: gateway.admin.CreateInstrument(
            gateway_pb2.CreateInstrumentRequest(
                symbol="ZZZ-USD", base_asset="AAA", quote_asset="USD", tick_size="0.01", lot_size="0.0001",
                min_quantity="0.0001", max_quantity="1000", max_price="1000000",
            ),
            metadata=md,
        )
    )  # fmt: skip
    assert (nobodys.code, nobodys.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        RejectReason.NO_SHARD_FOR_SYMBOL,
    )
    assert "ZZZ-USD" in nobodys.message
    _, api_key = trader(gateway)
    listed = gateway.public.ListInstruments(gateway_pb2.ListInstrumentsRequest(), metadata=key(api_key))
    assert "ZZZ-USD" not in {instrument.symbol for instrument in listed.instruments}
    # An order id naming a shard there is not is an order nobody has.
    missing = refused(
        lambda: gateway.public.GetOrder(
            gateway_pb2.GetOrderRequest(order_id="trading-7." + "a" * 32), metadata=key(api_key)
        )
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_ORDER)
    unknown_shard = refused(
        lambda: gateway.admin.GetEngineState(
            gateway_pb2.GetEngineStateRequest(shard="trading-7"), metadata=md
        )
    )
    assert (unknown_shard.code, unknown_shard.reason) == (
        grpc.StatusCode.NOT_FOUND,
        RejectReason.UNKNOWN_SHARD,
    )
    bad_shard = refused(
        lambda: gateway.admin.GetEngineState(gateway_pb2.GetEngineStateRequest(shard="no shard"), metadata=md)
    )
    assert (bad_shard.code, bad_shard.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        RejectReason.INVALID_SOURCE,
    )
    # Asked directly, a shard says what it owns and refuses another shard's instrument and orders.
    for stub in shard_stub(system, "trading-1"):
        info = stub.GetShardInfo(trading_pb2.GetShardInfoRequest(), timeout=10)
        assert (info.shard, list(info.symbols)) == ("trading-1", [ON_ONE])
        instruments = stub.ListInstruments(trading_pb2.ListInstrumentsRequest(), timeout=10).instruments
        # A valid definition (trading-1's own instrument's) under trading-0's symbol.
        definition = common_pb2.Instrument()
        definition.CopyFrom(next(i for i in instruments if i.symbol == ON_ONE))
        definition.symbol = ON_ZERO
        with pytest.raises(grpc.RpcError) as wrong:
            stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=definition), timeout=10)
        assert wrong.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "does not own" in (wrong.value.details() or "")
        before = stub.GetEngineState(trading_pb2.GetEngineStateRequest(), timeout=10)
        command = trading_pb2.OrderCommand(
            new_order=trading_pb2.NewOrder(
                order_id="trading-1." + "b" * 32, client_order_id="wrong-shard", account_id="acct-x",
                symbol=ON_ZERO, side=common_pb2.SIDE_BUY, price_ticks=100, quantity_lots=1,
            )
        )  # fmt: skip
        answers = list(
            stub.StreamOrders(
                iter([trading_pb2.StreamOrdersRequest(sequence=1, commands=[command])]), timeout=10
            )
        )
        (report,) = answers[0].results[0].reports
        assert report.execution_type == common_pb2.EXECUTION_TYPE_REJECTED
        assert report.reject_reason == common_pb2.REJECT_REASON_SYMBOL_NOT_OWNED
        after = stub.GetEngineState(trading_pb2.GetEngineStateRequest(), timeout=10)
        assert (after.journal_sequence, after.state_hash) == (before.journal_sequence, before.state_hash)


def test_one_shard_killed_under_load_the_other_keeps_trading(gateway: Gateway, system: System) -> None:
    keys = [trader(gateway)[1] for _ in range(4)]
    services = system.services
    with OrderFlow(gateway, keys, threads=4, symbols=(ON_ZERO, ON_ONE)) as flow:
        flow.wait_more(20)
        services.kill("trading-1")
        # trading-0's symbol keeps trading while trading-1 is down (and restarting).
        during: list[str] = []
        deadline = time.monotonic() + 30
        while len(during) < 10 and time.monotonic() < deadline:
            response = gateway.public.SubmitOrder(order(ON_ZERO, BUY, "1.00", "1"), metadata=key(keys[0]))
            during.append(response.order.order_id)
        assert len(during) == 10
        down = refused(
            lambda: gateway.public.SubmitOrder(order(ON_ONE, BUY, "1.00", "1"), metadata=key(keys[0]))
        )
        assert down.code == grpc.StatusCode.UNAVAILABLE
        services.start("trading-1")
        services.wait_healthy("trading-1")
        # The recovered shard trades again.
        wait_for(
            lambda: _accepted(gateway, keys[1], ON_ONE), timeout_seconds=30, what="trading-1 accepting again"
        )
        flow.wait_more(20)
    assert {flow.symbol_of[order_id] for order_id in flow.accepted} == {ON_ZERO, ON_ONE}
    for order_id, api_key in list(flow.accepted.items())[-20:]:
        got = gateway.public.GetOrder(gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key))
        assert SHARD_OF[got.order.symbol] == shard_of_order_id(order_id)
    invariants_hold(system.database_url, system.redis_url, trading_addresses(system))


def _accepted(gateway: Gateway, api_key: str, symbol: str) -> bool:
    try:
        gateway.public.SubmitOrder(order(symbol, BUY, "1.00", "1"), metadata=key(api_key))
    except grpc.RpcError:
        return False
    return True


def test_orders_of_a_down_shard_do_not_hold_up_the_other_shards(gateway: Gateway, system: System) -> None:
    """Orders of a killed shard wait (set aside) to see whether it comes back, then are refused; an
    order of the other shard sent after them is answered first. Placed in the batches, each of
    those orders held a batch slot while its wait lasted, and the fifth and later ones (and any
    order behind them) waited for the first to be refused."""
    _, api_key = trader(gateway)
    services = system.services
    services.kill("trading-1")
    try:
        # The gateway has seen the shard go: its channel is down.
        wait_for(lambda: not _accepted(gateway, api_key, ON_ONE), what="trading-1 refused as down")
        answered: list[tuple[str, grpc.StatusCode, RejectReason]] = []  # in the order of the answers
        lock = threading.Lock()

        def send(symbol: str) -> None:
            try:
                gateway.public.SubmitOrder(order(symbol, BUY, "1.00", "1"), metadata=key(api_key))
                outcome = (symbol, grpc.StatusCode.OK, RejectReason.UNSPECIFIED)
            except grpc.RpcError as error:
                failure = from_rpc_error(error)
                outcome = (symbol, failure.code, failure.reason)
            with lock:
                answered.append(outcome)

        threads = []
        for _ in range(6):  # one batch each: further apart than the batches' group commit wait
            threads.append(threading.Thread(target=send, args=(ON_ONE,)))
            threads[-1].start()
            time.sleep(0.08)
        threads.append(threading.Thread(target=send, args=(ON_ZERO,)))
        threads[-1].start()
        for thread in threads:
            thread.join(60)
        assert len(answered) == 7
        assert answered[0] == (ON_ZERO, grpc.StatusCode.OK, RejectReason.UNSPECIFIED)
        assert answered[1:] == [(ON_ONE, grpc.StatusCode.UNAVAILABLE, RejectReason.TRADING_UNAVAILABLE)] * 6
    finally:
        services.start("trading-1")
        services.wait_healthy("trading-1")
    wait_for(lambda: _accepted(gateway, api_key, ON_ONE), timeout_seconds=30, what="trading-1 back")
    invariants_hold(system.database_url, system.redis_url, trading_addresses(system))


def test_a_redis_flush_rebuilds_both_shards_holds(gateway: Gateway, system: System) -> None:
    _, api_key = trader(gateway)
    for symbol in (ON_ZERO, ON_ONE):
        gateway.public.SubmitOrder(order(symbol, BUY, "10.00", "3"), metadata=key(api_key))
    held = "60.120000"  # two buys of 30 USD, each with the larger (taker) fee rate held: 20 bps
    wait_for(lambda: balances(gateway, api_key)["USD"].reserved == held, what="both holds")
    with redis.Redis.from_url(system.redis_url) as cache:
        cache.flushdb()
    # Risk rebuilds from the ledger and both shards' open orders, then serves again by itself.
    wait_for(lambda: _accepted(gateway, api_key, ALSO_ON_ZERO), timeout_seconds=60, what="risk serving")
    # Both holds are back, and the probe's (1 USD and its 20 bps fee).
    wait_for(lambda: balances(gateway, api_key)["USD"].reserved == "61.122000", what="holds rebuilt")
    invariants_hold(system.database_url, system.redis_url, trading_addresses(system))


def test_market_data_and_controls_reach_each_symbols_shard(gateway: Gateway) -> None:
    _, api_key = trader(gateway)
    md = gateway.admin_metadata()
    # A shard restarted by an earlier test: its feed is refused (MARKET_DATA_INTERRUPTED) until the
    # gateway has subscribed to it again.
    wait_for(lambda: _market_data_served(gateway, api_key), timeout_seconds=30, what="both shards' books")
    follower = Follower(gateway, api_key, [ON_ZERO, ON_ONE], depth=DEPTH)
    try:
        follower.until(
            lambda: set(follower.book.sequence) == {ON_ZERO, ON_ONE}, "a snapshot of each shard's book"
        )
        # Each shard's book came, equal to what GetOrderBook (routed to the symbol's shard) says.
        for symbol in (ON_ZERO, ON_ONE):
            assert follower.book.view(symbol) == public_book(gateway, api_key, symbol)
        for symbol in (ON_ZERO, ON_ONE):
            gateway.public.SubmitOrder(
                order(symbol, BUY, "3.00", "1", time_in_force=DAY), metadata=key(api_key)
            )
        for symbol in (ON_ZERO, ON_ONE):
            follower.until(
                lambda symbol=symbol: follower.book.view(symbol) == public_book(gateway, api_key, symbol),  # type: ignore[misc]
                f"{symbol}'s book as its shard has it",
            )
    finally:
        follower.close()
    # A halt goes to the symbol's shard; the other shard's symbols trade on.
    halted = gateway.admin.SetInstrumentStatus(
        gateway_pb2.SetInstrumentStatusRequest(symbol=ON_ONE, status=common_pb2.INSTRUMENT_STATUS_HALTED),
        metadata=md,
    )
    assert halted.changed
    refusal = refused(
        lambda: gateway.public.SubmitOrder(order(ON_ONE, BUY, "3.00", "1"), metadata=key(api_key))
    )
    assert refusal.reason == RejectReason.INSTRUMENT_HALTED
    gateway.public.SubmitOrder(order(ON_ZERO, BUY, "3.00", "1"), metadata=key(api_key))
    gateway.admin.SetInstrumentStatus(
        gateway_pb2.SetInstrumentStatusRequest(symbol=ON_ONE, status=common_pb2.INSTRUMENT_STATUS_TRADING),
        metadata=md,
    )
    # The end of day of every symbol expires the DAY orders of both shards.
    expired = gateway.admin.ExpireDayOrders(gateway_pb2.ExpireDayOrdersRequest(), metadata=md)
    assert sorted(o.symbol for o in expired.orders if o.account_id == _account_of(gateway, api_key)) == [
        ON_ZERO, ON_ONE,
    ]  # fmt: skip


def _market_data_served(gateway: Gateway, api_key: str) -> bool:
    call = gateway.public.StreamMarketData(
        gateway_pb2.StreamMarketDataRequest(symbols=[ON_ZERO, ON_ONE], depth=1),
        metadata=key(api_key),
        timeout=10,
    )
    try:
        next(iter(call))
    except grpc.RpcError:
        return False
    finally:
        call.cancel()
    return True


def _account_of(gateway: Gateway, api_key: str) -> str:
    return gateway.public.GetBalances(gateway_pb2.GetBalancesRequest(), metadata=key(api_key)).account_id


def test_a_gateway_started_while_a_shard_is_down_serves_the_other_and_says_what_it_does_not_know(
    gateway: Gateway, system: System
) -> None:
    _, api_key = trader(gateway)
    set_claims_marker(system.redis_url)  # complete again since the flush test (not the subject here)
    services = system.services
    services.kill("trading-1")
    services.stop("gateway")
    services.start("gateway")
    services.wait_healthy("gateway")  # serving: trading-0 serves
    try:
        with grpc.insecure_channel(system.gateway) as channel:
            fresh = Gateway(channel, system.admin_key)
            placed = fresh.public.SubmitOrder(order(ON_ZERO, BUY, "2.00", "1"), metadata=key(api_key))
            assert shard_of_order_id(placed.order.order_id) == "trading-0"
            # It never heard of trading-1's instruments: not "unknown", but "cannot be reached".
            for call in (
                lambda: fresh.public.SubmitOrder(order(ON_ONE, BUY, "2.00", "1"), metadata=key(api_key)),
                lambda: fresh.public.ListInstruments(
                    gateway_pb2.ListInstrumentsRequest(), metadata=key(api_key)
                ),
            ):
                refusal = refused(call)
                assert (refusal.code, refusal.reason) == (
                    grpc.StatusCode.UNAVAILABLE,
                    RejectReason.TRADING_UNAVAILABLE,
                ), refusal
                assert "trading-1" in refusal.message
    finally:
        services.start("trading-1")
        services.wait_healthy("trading-1")
    with grpc.insecure_channel(system.gateway) as channel:
        fresh = Gateway(channel, system.admin_key)
        wait_for(
            lambda: _accepted(fresh, api_key, ON_ONE), timeout_seconds=30, what="trading-1's symbol again"
        )
        listed = fresh.public.ListInstruments(gateway_pb2.ListInstrumentsRequest(), metadata=key(api_key))
        assert sorted(i.symbol for i in listed.instruments) == sorted(SHARD_OF)
    invariants_hold(system.database_url, system.redis_url, trading_addresses(system))


def test_a_shards_restart_does_not_interrupt_an_order_stream_trading_on_the_other(
    gateway: Gateway, system: System
) -> None:
    """A StreamOrders session with an order resting on trading-0; trading-1 SIGKILLed. Meanwhile
    the session's resting order is filled by another account (its report comes once), its new
    order on trading-0 is answered filled, and the one for trading-1 is refused (UNAVAILABLE, a
    result like any). Once trading-1 is back the same session places and cancels an order there;
    it closes with OK, and `backbone check` holds for both shards."""
    _, api_key = trader(gateway)
    _, other_key = trader(gateway)
    set_claims_marker(system.redis_url)  # complete (not the subject here)
    services = system.services
    with grpc.insecure_channel(system.gateway) as channel:
        session, resting = with_resting_order(channel, api_key, order(ALSO_ON_ZERO, SELL, "700.00", "1"))
        services.kill("trading-1")
        try:
            taker = order(ALSO_ON_ZERO, BUY, "700.00", "1")
            taken = gateway.public.SubmitOrder(taker, metadata=key(other_key))
            assert taken.order.status == common_pb2.ORDER_STATUS_FILLED
            session.wait_reports(lambda reports: len(reports) >= 1)
            gateway.public.SubmitOrder(order(ALSO_ON_ZERO, SELL, "650.00", "1"), metadata=key(other_key))
            session.send(
                submit(order(ALSO_ON_ZERO, BUY, "650.00", "1")), submit(order(ON_ONE, BUY, "1.00", "1"))
            )
            session.wait_results(3)
            filled, down = session.results[(2, 0)], session.results[(2, 1)]
            assert (filled.code, filled.order.status) == (OK, common_pb2.ORDER_STATUS_FILLED), filled
            assert down.code == grpc.StatusCode.UNAVAILABLE.value[0], down
            assert not session.ended.is_set(), session.error
        finally:
            services.start("trading-1")
            services.wait_healthy("trading-1")
        # The same session trades on trading-1 again (sent again until the gateway reaches it).
        again = order(ON_ONE, BUY, "1.00", "1")
        number = 2
        while True:
            number += 1
            session.send(submit(again))
            session.wait_results(number + 1)
            placed = session.results[(number, 0)]
            if placed.code == OK:
                break
            assert placed.code == grpc.StatusCode.UNAVAILABLE.value[0] and number < 30, placed
            time.sleep(0.2)
        assert shard_of_order_id(placed.order.order_id) == "trading-1"
        session.send(cancel(placed.order.order_id))
        session.wait_results(number + 2)
        cancelled = session.results[(number + 1, 0)]
        assert (cancelled.code, cancelled.order.status) == (OK, common_pb2.ORDER_STATUS_CANCELLED), cancelled
        session.close()
        assert session.ended.wait(30)
    assert session.error is None, session.error  # trading-1's restart did not end it
    relayed = [(r.order.order_id, r.execution_type) for r in session.reports]
    assert relayed == [(resting.order.order_id, common_pb2.EXECUTION_TYPE_TRADE)], relayed
    invariants_hold(system.database_url, system.redis_url, trading_addresses(system))
