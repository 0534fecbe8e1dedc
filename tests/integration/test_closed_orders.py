"""Closed orders leave the engine's memory once the report history holds them, and nothing a caller
sees changes: GetOrder reads them from the history, a retry of a closed order's client order id is
answered with the original, a different order under it is refused naming it, a reused order id is
refused, ResolveOrders finds them (never fences them), and the state digest equals the journal's
replay (which forgets nothing) at the same sequence, also after a restart from a snapshot.

Trading runs in process here (its engine counted directly); on a running system the gateway's
retry after a flush of the client order id claims and GetEngineState's order count tell the same.
A figure: after 100,000 orders, most of them filled, the engine holds about its open orders.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable

import grpc
import pytest
import redis

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.database import open_pool
from backbone.runtime.errors import from_rpc_error
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from gateway.order_saga import client_order_id_key
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
from tests.integration.test_client_order_ids import _submit_until_served
from tests.integration.test_trading_journal import Trading, new, replayed
from tests.integration.test_trading_snapshots import SHARD, journaled, whole_journal_digest
from trading.journal import Journal

pytestmark = pytest.mark.integration

OPEN = (common_pb2.ORDER_STATUS_NEW, common_pb2.ORDER_STATUS_PARTIALLY_FILLED)


async def written(trading: Trading) -> None:
    """Wait until the history and the fills projection hold the whole journal, then let one batch
    run (closed orders are forgotten at the start of a batch)."""
    app = trading.app
    last = app.engine.last_sequence
    assert await app.history.wait_projected(last, 30.0) and await app.fills.wait_projected(last, 30.0)
    await trading.stub.GetEngineState(trading_pb2.GetEngineStateRequest(), timeout=10)


def retry_of(command: trading_pb2.OrderCommand, order_id: str) -> trading_pb2.OrderCommand:
    """The same NewOrder under another order id (what a client's retry becomes at the gateway)."""
    again = trading_pb2.OrderCommand()
    again.CopyFrom(command)
    again.new_order.order_id = order_id
    return again


async def test_closed_orders_leave_memory_and_answer_from_the_history(
    new_database: Callable[[], str],
) -> None:
    database_url = new_database()
    settings = await journaled(database_url)
    async with Trading(settings) as trading:
        engine = trading.app.engine
        assert set(engine.orders) == {"s1", "b1", "b2"}  # the replay rebuilt every order
        await written(trading)
        assert set(engine.orders) == {"b2"}  # the closed ones left memory
        assert trading.app.retention is not None and trading.app.retention.forgotten == 2
        digest = engine.state_hash()
        assert digest == await whole_journal_digest(settings)

        # GetOrder and GetOrders read closed orders from the history, in their final state.
        s1 = (await trading.stub.GetOrder(trading_pb2.GetOrderRequest(order_id="s1"), timeout=10)).order
        assert (s1.status, s1.filled_lots, s1.cancelled_lots) == (common_pb2.ORDER_STATUS_CANCELLED, 2, 3)
        lookups = (
            await trading.stub.GetOrders(
                trading_pb2.GetOrdersRequest(order_ids=["b1", "nope", "b2"]), timeout=10
            )
        ).lookups
        assert [lookup.order.status for lookup in lookups] == [
            common_pb2.ORDER_STATUS_FILLED,
            common_pb2.ORDER_STATUS_UNSPECIFIED,
            common_pb2.ORDER_STATUS_NEW,
        ]
        assert not lookups[1].HasField("order") and not lookups[1].fenced
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await trading.stub.GetOrder(trading_pb2.GetOrderRequest(order_id="nope"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        # A retry of the filled b1 (its client order id, its terms, a new order id) is answered with
        # the original; a different order under s1's client order id is refused naming s1; s1's
        # order id cannot be used again. Nothing is journaled.
        last = engine.last_sequence
        (response,) = await trading.send(
            [
                retry_of(new("b1", BUY, 100, 2), "b1-retry"),
                retry_of(new("s1", SELL, 101, 5), "s1-other"),
                trading_pb2.OrderCommand(
                    new_order=trading_pb2.NewOrder(
                        order_id="s1", client_order_id="fresh", account_id="acct-1", symbol="BTC-USD",
                        side=SELL, price_ticks=200, quantity_lots=1,
                    )
                ),
            ]
        )  # fmt: skip
        retried, different, reused = (result.reports[0] for result in response.results)
        assert retried.execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED
        assert (retried.order.order_id, retried.order.status) == ("b1", common_pb2.ORDER_STATUS_FILLED)
        assert different.reject_reason == RejectReason.DUPLICATE_CLIENT_ORDER_ID.number
        assert different.order.order_id == "s1"
        assert reused.reject_reason == RejectReason.DUPLICATE_ORDER_ID.number
        assert engine.last_sequence == last

        # A cancel and a replace of a forgotten closed order are refused as while it was held:
        # ORDER_NOT_OPEN, not UNKNOWN_ORDER (the history is asked for it too). Nothing journaled.
        (response,) = await trading.send(
            [
                trading_pb2.OrderCommand(
                    cancel_order=trading_pb2.CancelOrder(order_id="b1", account_id="acct-1")
                ),
                trading_pb2.OrderCommand(
                    replace_order=trading_pb2.ReplaceOrder(
                        order_id="s1", account_id="acct-1", price_ticks=102, quantity_lots=5
                    )
                ),
            ]
        )
        assert [result.reports[0].reject_reason for result in response.results] == [
            RejectReason.ORDER_NOT_OPEN.number,
            RejectReason.ORDER_NOT_OPEN.number,
        ]
        assert engine.last_sequence == last

        # ResolveOrders finds a forgotten order; it never fences it.
        resolved = await trading.stub.ResolveOrders(
            trading_pb2.ResolveOrdersRequest(
                orders=[trading_pb2.OrderToResolve(order_id="b1", account_id="acct-1")]
            ),
            timeout=10,
        )
        assert resolved.results[0].resolution == trading_pb2.RESOLUTION_FOUND
        assert resolved.results[0].order.status == common_pb2.ORDER_STATUS_FILLED
        assert engine.last_sequence == last and not engine.fences

        # The recalled orders leave again; the digest never saw them.
        await written(trading)
        assert set(engine.orders) == {"b2"} and engine.state_hash() == digest
        assert trading.app.snapshotter is not None
        await trading.app.snapshotter.take()

    # A restart from the snapshot holds what memory held, to the whole journal's digest.
    async with Trading(settings) as trading:
        assert trading.app.recovered_from == last
        assert set(trading.app.engine.orders) == {"b2"}
        assert trading.app.engine.state_hash() == digest == await whole_journal_digest(settings)


async def test_fresh_ids_make_no_history_query_and_retries_of_forgotten_orders_still_find_them(
    new_database: Callable[[], str],
) -> None:
    """The engine's filter of journaled ids (trading/seen_ids.py): new orders whose order id and
    client order id were never journaled are not looked up in the history (the queries counted);
    a retry of a forgotten order and a reuse of a forgotten order id are, and are answered as ever.
    """
    settings = await journaled(new_database())
    async with Trading(settings) as trading:
        engine, retention = trading.app.engine, trading.app.retention
        assert retention is not None
        await written(trading)
        assert set(engine.orders) == {"b2"}  # s1 and b1 are in the history only
        queries = retention.queries

        # Fresh ids, resting (sells above every buy): accepted, and no query was made for them.
        (response,) = await trading.send([new(f"fresh-{n}", SELL, 300 + n, 1) for n in range(50)])
        assert [result.reports[0].order.status for result in response.results] == [
            common_pb2.ORDER_STATUS_NEW
        ] * 50
        assert retention.queries == queries and retention.recalled == 0

        # The retry of the filled, forgotten b1 and a reuse of s1's order id: looked up, found.
        last = engine.last_sequence
        (response,) = await trading.send([retry_of(new("b1", BUY, 100, 2), "b1-again")])
        (reused,) = await trading.send(
            [retry_of(new("s1-fresh", SELL, 400, 1), "s1")]  # s1's order id, a fresh client order id
        )
        retried = response.results[0].reports[0]
        assert retried.execution_type == common_pb2.EXECUTION_TYPE_ACCEPTED
        assert (retried.order.order_id, retried.order.status) == ("b1", common_pb2.ORDER_STATUS_FILLED)
        assert reused.results[0].reports[0].reject_reason == RejectReason.DUPLICATE_ORDER_ID.number
        assert retention.queries == queries + 2 and engine.last_sequence == last
        assert trading.app.snapshotter is not None
        assert await trading.app.snapshotter.take() == last
        seen = pickle.dumps(engine.seen_ids)
        (response,) = await trading.send([new("after-snapshot", SELL, 500, 1)])  # replayed at the start

    # A restart from the snapshot: the filter came back in it, and the replay after it told it the
    # rest, to the bit what the whole journal's replay builds; it still spares and still finds.
    async with Trading(settings) as trading:
        engine, retention = trading.app.engine, trading.app.retention
        assert retention is not None and trading.app.recovered_from == last
        pool = await open_pool(settings, "trading-test")
        try:
            whole = await replayed(Journal(pool, SHARD))
        finally:
            await pool.close()
        assert pickle.loads(seen).orders == 3 + 50 and engine.seen_ids.orders == 3 + 50 + 1
        assert pickle.dumps(engine.seen_ids) == pickle.dumps(whole.seen_ids)
        await written(trading)
        queries = retention.queries
        await trading.send([new("fresh-after-restart", SELL, 600, 1)])
        assert retention.queries == queries
        (response,) = await trading.send([retry_of(new("b1", BUY, 100, 2), "b1-once-more")])
        assert response.results[0].reports[0].order.order_id == "b1"
        assert retention.queries == queries + 1


async def test_memory_holds_about_the_open_orders_after_100_000_orders(
    new_database: Callable[[], str],
) -> None:
    """The figure: 100,000 orders, nine in ten of them filled at once (a resting sell, then a buy
    that takes it), every tenth pair left resting; the engine's order count before the history wrote
    them and after. Counts, not times."""
    database_url = new_database()
    settings = await journaled(database_url)
    async with Trading(settings) as trading:
        engine = trading.app.engine
        batches: list[list[trading_pb2.OrderCommand]] = []
        for batch in range(100):
            commands = []
            for pair in range(500):
                number = batch * 500 + pair
                rests = number % 10 == 0
                # Resting pairs do not cross: a sell at 300, a buy at 50; the rest trade at 200.
                commands.append(new(f"m-s{number}", SELL, 300 if rests else 200, 1, account="acct-s"))
                commands.append(new(f"m-b{number}", BUY, 50 if rests else 200, 1, account="acct-b"))
            batches.append(commands)
        sent = sum(len(commands) for commands in batches)
        for start in range(0, len(batches), 10):
            await trading.send(*batches[start : start + 10])
        held_before = len(engine.orders)
        await written(trading)
        held_after = len(engine.orders)
        open_orders = sum(1 for o in engine.orders.values() if o.status in OPEN)
        print(
            f"orders sent {sent}; open {open_orders}; held by the engine: {held_before} before the "
            f"history wrote them, {held_after} after"
        )
        assert sent == 100_000 and open_orders == 10_000 + 1  # and small_journal's b2
        assert held_after <= open_orders + 1  # the open-order index's newest may wait a batch
        assert engine.state_hash() == await whole_journal_digest(settings)


@pytest.mark.parametrize("flush", ["claims", "everything"])
def test_a_closed_orders_client_id_after_a_redis_flush_gets_the_original(
    system: System, system_factory: Callable[..., System], flush: str
) -> None:
    """`claims`: the buyer's client order id claims are deleted (on the module's system);
    `everything`: FLUSHDB of a system of its own (risk rebuilds from the ledger and trading too)."""
    if flush == "everything":
        system = system_factory()
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "SOL-USD", "SOL")
        buyer, buyer_key = funded_account(gateway, {"USD": "1000"})
        _, seller_key = funded_account(gateway, {"SOL": "10"})
        gateway.public.SubmitOrder(order("SOL-USD", SELL, "20.00", "1"), metadata=key(seller_key))
        filled = gateway.public.SubmitOrder(
            order("SOL-USD", BUY, "20.00", "1", client_order_id="closed-id"), metadata=key(buyer_key)
        )
        assert filled.order.status == common_pb2.ORDER_STATUS_FILLED
        trading = trading_pb2_grpc.TradingServiceStub(  # type: ignore[no-untyped-call]
            grpc.insecure_channel(system.services.address("trading"))
        )

        def held() -> tuple[int, int]:
            state = trading.GetEngineState(trading_pb2.GetEngineStateRequest(), timeout=10)
            return state.orders, state.open_orders

        # Each GetEngineState is a batch: the closed orders leave as soon as the history holds them.
        for _ in range(200):
            orders, open_orders = held()
            if orders <= open_orders + 1:
                break
            asyncio.run(asyncio.sleep(0.05))
        assert orders <= open_orders + 1, (orders, open_orders)

        with redis.Redis.from_url(system.redis_url) as client:
            claims = list(client.scan_iter(match=client_order_id_key(buyer, "*")))
            assert claims
            if flush == "everything":
                client.flushdb()
            else:
                client.delete(*claims)
        again = _submit_until_served(
            gateway, order("SOL-USD", BUY, "20.00", "1", client_order_id="closed-id"), buyer_key
        )
        assert isinstance(again, gateway_pb2.SubmitOrderResponse), again
        assert again.order.order_id == filled.order.order_id
        assert again.order.status == common_pb2.ORDER_STATUS_FILLED
        different = _submit_until_served(
            gateway, order("SOL-USD", BUY, "19.00", "1", client_order_id="closed-id"), buyer_key
        )
        assert isinstance(different, grpc.RpcError), different
        error = from_rpc_error(different)
        assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE_CLIENT_ORDER_ID")
        assert error.metadata.get("order_id") == filled.order.order_id
        found = gateway.public.GetOrder(
            gateway_pb2.GetOrderRequest(order_id=filled.order.order_id), metadata=key(buyer_key)
        )
        assert found.order.status == common_pb2.ORDER_STATUS_FILLED
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))
