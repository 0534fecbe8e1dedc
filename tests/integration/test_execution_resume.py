"""StreamExecutions resumed from a report number: the past from trading's report history, then live,
every report once; the SDK resumes a dropped stream by itself.

On a running system: an account's reports are numbered 1..n (account_sequence). A stream opened
with from_sequence in the middle gets the rest of the past, then the next live report, without a
gap or a duplicate; at the end (n + 1) it gets the live ones only; beyond that it is OUT_OF_RANGE
(SEQUENCE_BEYOND_END) and negative is INVALID_ARGUMENT naming the field. A client that drops its
stream while its resting orders are filled and resumes from its last number + 1 sees those fills
once. With trading SIGKILLed mid-flow and restarted, open streams do not break: the gateway rides
through the feed break and reads what trading journaled before its feed was back from the report
history, so a live stream (raw, and the SDK's sync and asyncio ones) hands out every report once,
in order, equal to the history; so does a StreamOrders session, which stays open, relays its
resting order's fill once (from the history or the new feed) and goes on taking orders; across a
gateway restart the SDK's streams resume by themselves; `backbone check` finds the history
matching the journal.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import grpc
import pytest

from backbone.client import AsyncClient, Client, ExecutionReport, ExecutionType
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    funded_account,
    invariants_hold,
    key,
    order,
    refused,
    setup_market,
    wait_for,
)
from tests.integration.order_stream_calls import OK, submit, with_resting_order

pytestmark = pytest.mark.integration

SYMBOL = "ETH-USD"
# The order stream's test trades on a book of its own (the other tests leave orders on SYMBOL's).
OWN_SYMBOL = "SOL-USD"
TRADE = common_pb2.EXECUTION_TYPE_TRADE


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, SYMBOL, "ETH")
        yield gateway


def stream(gateway: Gateway, api_key: str, from_sequence: int) -> Any:
    """A StreamExecutions call once the gateway registered it (its headers came; bounded: it ends
    with DEADLINE_EXCEEDED at the latest). A refusal is raised by the first read."""
    call = gateway.public.StreamExecutions(
        gateway_pb2.StreamExecutionsRequest(from_sequence=from_sequence), metadata=key(api_key), timeout=60
    )
    call.initial_metadata()
    return call


def announced(call: Any) -> int:
    """The account's last report number the gateway said when it registered the stream."""
    return int(dict(call.initial_metadata())["backbone-account-sequence"])


def take(
    call: Iterator[gateway_pb2.StreamExecutionsResponse], count: int
) -> list[gateway_pb2.ExecutionReport]:
    return [next(call).report for _ in range(count)]


def rest(gateway: Gateway, api_key: str, side: int, price: str, quantity: str = "1") -> str:
    placed = gateway.public.SubmitOrder(order(SYMBOL, side, price, quantity), metadata=key(api_key))
    return str(placed.order.order_id)


def test_from_the_middle_the_end_beyond_and_negative(gateway: Gateway, system: System) -> None:
    _, maker = funded_account(gateway, {"ETH": "100"})
    _, taker = funded_account(gateway, {"USD": "100000"})
    for price in ("2000", "2001", "2002"):
        rest(gateway, maker, SELL, price)
    gateway.public.SubmitOrder(order(SYMBOL, BUY, "2000", "1"), metadata=key(taker))  # fills the first
    whole = stream(gateway, maker, 1)
    past = take(whole, 4)  # three ACCEPTED, one TRADE
    whole.cancel()
    assert [r.account_sequence for r in past] == [1, 2, 3, 4]
    assert [r.execution_type for r in past][-1] == common_pb2.EXECUTION_TYPE_TRADE
    assert {r.shard for r in past} == {"trading-0"}

    # From the middle: the rest of the past, then live, without a gap or a duplicate.
    middle = stream(gateway, maker, 3)
    assert announced(middle) == 4
    assert [r.account_sequence for r in take(middle, 2)] == [3, 4]
    rest(gateway, maker, SELL, "2003")
    (live,) = take(middle, 1)
    assert live.account_sequence == 5 and live.order.price == "2003.00"
    middle.cancel()

    # At the end (last + 1): live only, the next report first.
    end = stream(gateway, maker, 6)
    rest(gateway, maker, SELL, "2004")
    assert [r.account_sequence for r in take(end, 1)] == [6]
    end.cancel()

    # Beyond the end: OUT_OF_RANGE; negative: INVALID_ARGUMENT naming the field; both change nothing.
    beyond = refused(lambda: next(stream(gateway, maker, 8)))
    assert beyond.code == grpc.StatusCode.OUT_OF_RANGE and beyond.reason == RejectReason.SEQUENCE_BEYOND_END
    assert "(6) + 1" in beyond.message
    negative = refused(lambda: next(stream(gateway, maker, -1)))
    assert negative.code == grpc.StatusCode.INVALID_ARGUMENT and negative.reason == RejectReason.INVALID_RANGE
    assert [v.field for v in negative.violations] == ["from_sequence"]
    again = stream(gateway, maker, 7)
    rest(gateway, maker, SELL, "2005")
    assert [r.account_sequence for r in take(again, 1)] == [7]
    again.cancel()


def test_a_dropped_stream_resumed_sees_every_report_once(gateway: Gateway) -> None:
    _, maker = funded_account(gateway, {"ETH": "100"})
    _, taker = funded_account(gateway, {"USD": "100000"})
    live = stream(gateway, maker, 0)
    assert announced(live) == 0
    resting = [rest(gateway, maker, SELL, str(1900 + n)) for n in range(5)]
    seen = take(live, 5)
    live.cancel()  # dropped
    # While it is away: every resting order is filled (two reports each for the maker: none,
    # one per fill) and new ones rest.
    gateway.public.SubmitOrder(order(SYMBOL, BUY, "1904", "5"), metadata=key(taker))
    later = [rest(gateway, maker, SELL, str(2200 + n)) for n in range(3)]
    resumed = stream(gateway, maker, seen[-1].account_sequence + 1)
    seen += take(resumed, 8)
    rest(gateway, maker, SELL, "2300")
    seen += take(resumed, 1)
    resumed.cancel()
    assert [r.account_sequence for r in seen] == list(range(1, 15))
    trades = [r for r in seen if r.execution_type == common_pb2.EXECUTION_TYPE_TRADE]
    assert sorted(r.order.order_id for r in trades) == sorted(resting)
    accepted = [r.order.order_id for r in seen if r.execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED]
    assert accepted[5:8] == later and len(accepted) == 9


def test_a_live_stream_stays_open_across_sigkills_of_trading_and_equals_the_history(
    gateway: Gateway, system: System
) -> None:
    """Orders flow from a thread while trading is SIGKILLed twice (reports journaled but not yet
    published die with it, and the restarted trading journals while the gateway's feed is still
    reconnecting). The live stream opened before stays open and gives every report of the account
    once, in order: exactly what a stream resumed from 1 reads from the history afterwards."""
    _, api_key = funded_account(gateway, {"ETH": "1000", "USD": "10000000"})
    live = stream(gateway, api_key, 0)
    start = announced(live)
    stop = threading.Event()
    placed: list[str] = []

    def place() -> None:
        side = BUY
        while not stop.is_set():
            side = SELL if side == BUY else BUY  # crossing its own orders: self-trade prevention off
            try:
                placed.append(rest(gateway, api_key, side, "1500.00"))
            except grpc.RpcError:
                time.sleep(0.05)  # trading is down: the refusal changed nothing

    placer = threading.Thread(target=place, daemon=True)
    placer.start()
    try:
        for _ in range(2):
            time.sleep(1.0)
            assert system.services.kill("trading") == -9
            system.services.start("trading")
            system.services.wait_healthy("trading")
        time.sleep(1.0)
    finally:
        stop.set()
        placer.join(30)
    assert len(placed) > 10
    # Nothing of this account's stays on the module's book (its cancels are reports too).
    gateway.public.CancelAllOrders(gateway_pb2.CancelAllOrdersRequest(), metadata=key(api_key))
    everything = stream(gateway, api_key, start + 1)
    last = announced(everything)
    history = take(everything, last - start)
    everything.cancel()
    seen = take(live, last - start)  # the live stream did not end (a break would raise here)
    live.cancel()
    assert [r.account_sequence for r in history] == list(range(start + 1, last + 1))
    assert [(r.account_sequence, r.order.order_id, r.execution_type) for r in seen] == [
        (r.account_sequence, r.order.order_id, r.execution_type) for r in history
    ]
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_the_sdks_streams_see_every_report_once_across_a_sigkill_of_trading(
    gateway: Gateway, system: System
) -> None:
    maker_id, maker_key = funded_account(gateway, {"ETH": "100"})
    _, taker_key = funded_account(gateway, {"USD": "100000"})
    maker = Client.connect(system.gateway, api_key=maker_key)
    received: list[ExecutionReport] = []
    async_received: list[ExecutionReport] = []
    # Three ACCEPTED before the kill; after it, two fills (the best asks of the module's book) and
    # one ACCEPTED.
    wanted = 6
    done = threading.Event()

    async def read_async() -> int:
        client = await AsyncClient.connect(system.gateway, api_key=maker_key)
        async with client, client.stream_executions() as reports:
            async for report in reports:
                async_received.append(report)
                if len(async_received) == wanted:
                    return reports.reconnects
        return -1

    async_reconnects: list[int] = []
    async_reader = threading.Thread(
        target=lambda: async_reconnects.append(asyncio.run(read_async())), daemon=True
    )
    with maker.stream_executions() as reports:

        def read() -> None:
            for report in reports:
                received.append(report)
                if len(received) == wanted:
                    done.set()
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        async_reader.start()
        time.sleep(0.5)  # the asyncio stream subscribes (it reads from the first report anyway)
        first = [maker.submit_order(SYMBOL, "sell", Decimal(1800 + n), Decimal("1")) for n in range(3)]
        assert system.services.kill("trading") == -9
        system.services.start("trading")
        system.services.wait_healthy("trading")
        taker = Client.connect(system.gateway, api_key=taker_key)
        taker.submit_order(SYMBOL, "buy", Decimal("1801"), Decimal("2"))
        maker.submit_order(SYMBOL, "sell", Decimal("2500"), Decimal("1"))
        assert done.wait(60), f"the sync stream saw {len(received)} of {wanted}: " + repr(
            [(r.account_sequence, r.execution_type, r.order.order_id) for r in received]
        )
        reader.join(10)
        reconnects = reports.reconnects
    async_reader.join(60)
    for seen in (received, async_received):
        assert [r.account_sequence for r in seen] == list(range(1, wanted + 1)), seen
        assert {r.order.account_id for r in seen} == {maker_id}
        fills = [r.order.order_id for r in seen if r.execution_type == ExecutionType.TRADE]
        assert sorted(fills) == sorted(o.order_id for o in first[:2])
    # Neither stream broke: the gateway rode through trading's feed break (what trading journaled
    # before the gateway's feed was back came from the report history).
    assert reconnects == 0 and async_reconnects == [0], (reconnects, async_reconnects)
    # The history the resumes read is the journal's (backbone check, the live engine included).
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def placed_once_up(gateway: Gateway, api_key: str, request: gateway_pb2.SubmitOrderRequest) -> Any:
    """SubmitOrder of `request`, sent again (the same client order id: never placed twice) while
    the services are still coming back after a restart; its answer."""

    def attempt() -> Any:
        try:
            return gateway.public.SubmitOrder(request, metadata=key(api_key))
        except grpc.RpcError:
            return None

    return wait_for(attempt, 30, f"order {request.client_order_id} placed")


def test_an_order_stream_stays_open_across_a_sigkill_of_trading_and_relays_each_later_report_once(
    gateway: Gateway, system: System
) -> None:
    """A resting order placed on a StreamOrders session; trading SIGKILLed and restarted; at once
    another account's order fills it (journaled before or after the gateway's feed is back: the
    session gets it from trading's report history or from the new feed). The session, still open,
    gets the fill once; it places a new order on the same stream and gets its answer, and that
    order's later fill comes once too; it closes with OK, and `backbone check` holds."""
    setup_market(gateway, OWN_SYMBOL, "SOL")  # a book of its own: nothing else rests there
    _, maker_key = funded_account(gateway, {"SOL": "10"})
    _, taker_key = funded_account(gateway, {"USD": "100000"})
    with grpc.insecure_channel(system.gateway) as channel:
        session, first = with_resting_order(channel, maker_key, order(OWN_SYMBOL, SELL, "150.00", "1"))
        assert system.services.kill("trading") == -9
        system.services.start("trading")
        system.services.wait_healthy("trading")
        placed_once_up(gateway, taker_key, order(OWN_SYMBOL, BUY, "150.00", "1"))

        def fills(order_id: str) -> Any:
            return lambda reports: [
                r for r in reports if r.order.order_id == order_id and r.execution_type == TRADE
            ]

        session.wait_reports(fills(first.order.order_id))
        assert not session.ended.is_set(), session.error
        session.send(submit(order(OWN_SYMBOL, SELL, "151.00", "1")))
        session.wait_results(2)
        second = session.results[(2, 0)]
        assert (second.code, second.order.status) == (OK, common_pb2.ORDER_STATUS_NEW), second
        gateway.public.SubmitOrder(order(OWN_SYMBOL, BUY, "151.00", "1"), metadata=key(taker_key))
        session.wait_reports(fills(second.order.order_id))
        session.close()
        assert session.ended.wait(30)
    assert session.error is None, session.error  # the kill did not end it
    # Each fill once (a report of the catch-up that the new feed brought too is not relayed again),
    # and nothing else: the results carried both orders' ACCEPTED reports.
    relayed = [(r.order.order_id, r.execution_type) for r in session.reports]
    assert relayed == [(first.order.order_id, TRADE), (second.order.order_id, TRADE)], relayed
    assert {r.order.status for r in session.reports} == {common_pb2.ORDER_STATUS_FILLED}
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))


def test_the_sdk_resumes_by_itself_across_a_gateway_restart(gateway: Gateway, system: System) -> None:
    """A gateway that stops ends its feeds with UNAVAILABLE (SERVICE_STOPPING), not OK: the SDK's
    stream opens again by itself once the gateway is back and misses nothing placed meanwhile
    (with OK it ended its iteration instead)."""
    _, api_key = funded_account(gateway, {"USD": "100000"})
    client = Client.connect(system.gateway, api_key=api_key)
    with client.stream_executions() as reports:
        first = client.submit_order(SYMBOL, "buy", Decimal("10"), Decimal("1"))
        assert next(reports).order.order_id == first.order_id
        system.services.stop("gateway")
        system.services.start("gateway")
        system.services.wait_healthy("gateway")
        with Client.connect(system.gateway, api_key=api_key) as other:
            second = other.submit_order(SYMBOL, "buy", Decimal("11"), Decimal("1"))
        resumed = next(reports)
        assert (resumed.order.order_id, resumed.account_sequence) == (second.order_id, 2)
        assert reports.reconnects >= 1
    client.close()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"account_id": "", "from_sequence": 1, "limit": 10}, "account_id"),
        ({"account_id": "bad id", "from_sequence": 1, "limit": 10}, "account_id"),
        ({"account_id": "a-1", "last_only": True}, None),
        ({"account_id": "a-1", "from_sequence": 0, "limit": 10}, "from_sequence"),
        ({"account_id": "a-1", "from_sequence": -(2**63), "limit": 10}, "from_sequence"),
        ({"account_id": "a-1", "from_sequence": 1, "through_sequence": -1, "limit": 10}, "through_sequence"),
        ({"account_id": "a-1", "from_sequence": 1, "limit": 0}, "limit"),
        ({"account_id": "a-1", "from_sequence": 1, "limit": 1001}, "limit"),
        ({"account_id": "a-1", "from_sequence": 2, "limit": 10}, "beyond"),
    ],
)
def test_tradings_list_executions_refuses_bad_input_naming_the_field(
    system: System, fields: dict[str, object], named: str | None
) -> None:
    with grpc.insecure_channel(system.services.address("trading")) as channel:
        trading = trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
        request = trading_pb2.ListExecutionsRequest(**fields)  # type: ignore[arg-type]
        if named is None:  # an account with no report: its last number is 0
            assert trading.ListExecutions(request, timeout=10).last_account_sequence == 0
            return
        error = refused(lambda: trading.ListExecutions(request, timeout=10))
    if named == "beyond":
        assert error.code == grpc.StatusCode.OUT_OF_RANGE and error.reason == RejectReason.SEQUENCE_BEYOND_END
    else:
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and [v.field for v in error.violations] == [
            named
        ]
