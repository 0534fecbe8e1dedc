"""SIGKILL mid-flow: services killed while orders stream in, restarted; nothing lost, nothing doubled.

Orders keep arriving from many accounts while settlement, risk and trading
are each killed with SIGKILL and started again. Afterwards every order the
gateway confirmed is known to trading, and `backbone check` finds every
invariant holding: entries balanced, assets netting to zero, the journal
replaying, every journaled trade posted exactly once as computed, risk's
totals equal to the ledger's, and every open order holding exactly what it
needs in risk, with no reservation left behind by an order whose outcome was
unknown (the gateway resolves each by itself: found in the journal, or fenced
and its reservation released). Each such order ends in one definite state:
GetOrder and a retry with its client order id agree. The same holds for orders
entered on StreamOrders: with trading killed under several streams, no stream
ends (the gateway reads what trading journaled while its feed was down from the
report history), every command is answered, those the kill caught with a
retryable refusal (UNAVAILABLE), and a client that resends those, with the same
client order ids, settles each order in one state, never placed twice.
Trading snapshots its engine every 100 journal records here, so each restart
loads a snapshot and replays the journal after it: the running engine's state
digest then equals the whole journal's replay (`backbone check`'s live
comparison), after 20 kills at random moments.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable

import grpc
import pytest

from backbone.gateway.v1 import gateway_pb2
from backbone.runtime.errors import from_rpc_error
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
    wait_for,
)
from tests.integration.order_flow import OrderFlow
from tests.integration.order_stream_calls import OK, OrderStream, submit

pytestmark = pytest.mark.integration

ACCOUNTS = 8
TRADING_KILLS = 20
STREAM_KILLS = 4
STREAM_BATCH = 20


# The tests run on the module's system (its services are restarted, never replaced), each with
# accounts of its own: a session has 15 Redis databases for systems.


@pytest.fixture(scope="module")
def system(system_factory: Callable[..., System]) -> System:
    """The module's system, its trading engine snapshotted every 100 journal records (at most
    every half second), so that each restart recovers from a snapshot and the journal after it."""
    return system_factory(BACKBONE_TRADING_SNAPSHOT_COMMANDS="100", BACKBONE_TRADING_SNAPSHOT_SECONDS="1")


def recovered_from_snapshots(system: System) -> list[int]:
    """The snapshot sequence each start of trading loaded, from its log (None: none loaded)."""
    log = (system.log_dir / "trading.log").read_text()
    starts = [json.loads(line) for line in log.splitlines() if '"event": "journal replayed"' in line]
    return [start["snapshot_sequence"] for start in starts]


def test_sigkill_mid_flow_loses_and_doubles_nothing(system: System) -> None:
    services = system.services
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "BTC-USD", "BTC")
        accounts = [funded_account(gateway, {"USD": "100000", "BTC": "100"}) for _ in range(ACCOUNTS)]
        keys = [api_key for _, api_key in accounts]

        with OrderFlow(gateway, keys) as flow:
            flow.wait_more(40)
            for victim in ("settlement", "risk", "trading"):
                assert services.kill(victim) == -9
                time.sleep(0.3)  # orders keep arriving while it is down
                services.start(victim)
                services.wait_healthy(victim)
                flow.wait_more(40)
        assert flow.outcomes.get("OK", 0) >= 160, flow.outcomes

        # Nothing accepted is lost: trading knows every order the gateway confirmed.
        for order_id, api_key in flow.accepted.items():
            found = gateway.public.GetOrder(
                gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key)
            )
            assert found.order.order_id == order_id

    # Every invariant holds once the consumers catch up (`backbone check`): no reservation is left
    # without its open order, not even by an order whose outcome was unknown.
    invariants_hold(system.database_url, system.redis_url)


def test_sigkill_of_trading_leaves_no_outcome_unknown_and_no_orphaned_reservation(system: System) -> None:
    services = system.services
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "BTC-USD", "BTC")
        accounts = [funded_account(gateway, {"USD": "1000000", "BTC": "1000"}) for _ in range(ACCOUNTS)]
        keys = [api_key for _, api_key in accounts]

        with OrderFlow(gateway, keys, threads=8) as flow:
            flow.wait_more(40)
            moments = random.Random(7)
            for _ in range(TRADING_KILLS):
                time.sleep(moments.uniform(0.0, 0.3))  # a random moment of the flow
                assert services.kill("trading") == -9  # mid-batch: orders are in flight
                time.sleep(0.2)
                services.start("trading")
                services.wait_healthy("trading")
                flow.wait_more(10)
        unknown = dict(flow.unknown)
        print(f"outcomes {flow.outcomes}; {len(unknown)} answered OUTCOME_UNKNOWN")
        assert unknown, f"no kill caught an order in flight: {flow.outcomes}"

        # The gateway resolves each by itself: nothing stays reserved for an order that is not open;
        # and the engine recovered from snapshot + journal holds what the whole journal replays to.
        invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))
        loaded = [sequence for sequence in recovered_from_snapshots(system) if sequence]
        assert len(loaded) >= TRADING_KILLS - 2, f"restarts from a snapshot: {loaded}"

        # Each ends in one definite state, on which GetOrder and a retry with its client order id agree.
        found = fenced = 0
        for order_id, (api_key, request) in unknown.items():
            asked = gateway_pb2.GetOrderRequest(order_id=order_id)
            try:
                state = gateway.public.GetOrder(asked, metadata=key(api_key)).order
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND, error
                state = None
            retry = gateway.public.SubmitOrder(request, metadata=key(api_key), timeout=10)
            if state is not None:
                found += 1
                assert retry.order.order_id == order_id  # the retry is answered with the order
                assert retry.order.client_order_id == state.client_order_id == request.client_order_id
            else:
                fenced += 1
                assert retry.order.order_id != order_id  # never placed: the retry places it now
                with pytest.raises(grpc.RpcError) as again:  # and it never will be placed
                    gateway.public.GetOrder(asked, metadata=key(api_key))
                assert again.value.code() == grpc.StatusCode.NOT_FOUND
            placed = gateway.public.GetOrder(
                gateway_pb2.GetOrderRequest(order_id=retry.order.order_id), metadata=key(api_key)
            )
            assert placed.order.client_order_id == request.client_order_id
        print(f"of those, {found} were journaled and {fenced} were fenced")

        # Nothing accepted is lost.
        for order_id, api_key in flow.accepted.items():
            gateway.public.GetOrder(gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key))
    invariants_hold(system.database_url, system.redis_url)


class _StreamClient:
    """One account's order entry on StreamOrders, as a careful client does it: when its stream
    ends it opens another and sends again, with the same client order ids, every command that
    got no answer or a retryable refusal (a kill of trading ends no stream: the refusals are sent
    again on the stream that the test's end closes, or a later one)."""

    def __init__(self, channel: grpc.Channel, api_key: str, seed: int) -> None:
        self.channel = channel
        self.api_key = api_key
        self.prices = random.Random(seed)
        self.answers: dict[str, list[gateway_pb2.OrderCommandResult]] = {}
        self.again: list[gateway_pb2.SubmitOrderRequest] = []
        self.sessions = 0
        self.stream: OrderStream | None = None
        self.earlier_results = 0

    def progress(self) -> int:
        """Results received so far, on every stream."""
        stream = self.stream
        return self.earlier_results + (len(stream.results) if stream is not None else 0)

    def new_orders(self) -> list[gateway_pb2.SubmitOrderRequest]:
        side, price = self.prices.choice((BUY, SELL)), self.prices.randint(95, 105)
        return [order("ETH-USD", side, f"{price}.00", "1") for _ in range(STREAM_BATCH)]

    def session(self, keep_going: threading.Event) -> None:
        """One stream: what must be sent again first, then new batches while `keep_going`."""
        stream = self.stream = OrderStream(self.channel, self.api_key)
        self.sessions += 1
        sent: list[list[gateway_pb2.SubmitOrderRequest]] = []
        again, self.again = self.again, []
        batches = [again[i : i + STREAM_BATCH] for i in range(0, len(again), STREAM_BATCH)]
        while not stream.ended.is_set() and (batches or keep_going.is_set()):
            batch = batches.pop(0) if batches else self.new_orders()
            sent.append(batch)
            stream.send(*[submit(request) for request in batch])
            time.sleep(0.05)
        for batch in batches:  # the stream ended before these were resent: the next one sends them
            self.again += batch
        stream.close()
        assert stream.ended.wait(60)
        # Closed by this client, never ended by the gateway: a kill of trading does not end it.
        assert stream.error is None, from_rpc_error(stream.error)
        answered_requests = {number for number, _ in stream.results}
        self.earlier_results += len(stream.results)
        self.stream = None
        for number, batch in enumerate(sent, start=1):
            for index, request in enumerate(batch):
                result = stream.results.get((number, index))
                if result is None:
                    # A request is answered in full or, when the gateway never read it, not at all.
                    assert number not in answered_requests, f"request {number} answered in part"
                    self.again.append(request)
                    continue
                assert result.client_order_id == request.client_order_id
                self.answers.setdefault(request.client_order_id, []).append(result)
                if result.code != OK:
                    # Only what a retry settles: never INTERNAL or UNKNOWN, never a refusal on the
                    # order's merits (the accounts are funded far beyond these orders).
                    assert result.code == grpc.StatusCode.UNAVAILABLE.value[0], result
                    self.again.append(request)

    def run(self, keep_going: threading.Event) -> None:
        while keep_going.is_set():
            self.session(keep_going)
        for _ in range(10):  # settle what is left, with the same client order ids
            if not self.again:
                return
            self.session(keep_going)
        raise AssertionError(f"{len(self.again)} orders still unsettled after 10 streams")


def test_sigkill_of_trading_under_order_streams_answers_every_command_and_loses_nothing(
    system: System,
) -> None:
    """Trading killed while StreamOrders batches cross: no stream ends, every command is answered,
    a resend of a refused one settles each order in one state (never placed twice), nothing
    acknowledged is lost."""
    services = system.services
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "ETH-USD", "ETH")
        accounts = [funded_account(gateway, {"USD": "10000000", "ETH": "100000"}) for _ in range(4)]
        clients = [_StreamClient(channel, api_key, seed) for seed, (_, api_key) in enumerate(accounts)]
        keep_going = threading.Event()
        keep_going.set()
        failures: list[BaseException] = []

        def run(client: _StreamClient) -> None:
            try:
                client.run(keep_going)
            except BaseException as error:  # reported by the test below
                failures.append(error)

        threads = [threading.Thread(target=run, args=(client,), daemon=True) for client in clients]
        for thread in threads:
            thread.start()
        # A client that failed stops making progress: the wait ends then, with its failure.
        wait_for(lambda: failures or all(client.progress() >= 2 * STREAM_BATCH for client in clients), 30)
        assert not failures, failures
        moments = random.Random(11)
        for _ in range(STREAM_KILLS):
            time.sleep(moments.uniform(0.05, 0.3))  # batches are in flight on every stream
            exit_code = services.kill("trading")
            assert exit_code == -9, f"trading had stopped by itself with exit code {exit_code}"
            time.sleep(0.2)
            services.start("trading")
            services.wait_healthy("trading")
            counts = [client.progress() for client in clients]
            wait_for(
                lambda counts=counts: (
                    failures
                    or all(
                        client.progress() >= count + STREAM_BATCH
                        for client, count in zip(clients, counts, strict=True)
                    )
                ),
                30,
            )
            assert not failures, failures
        # Each client is still on its first stream: the kills ended none.
        assert [client.sessions for client in clients] == [1] * len(clients)
        keep_going.clear()
        for thread in threads:
            thread.join(120)
            assert not thread.is_alive()
        assert not failures, failures

        retried = sum(1 for client in clients for results in client.answers.values() if len(results) > 1)
        print(f"orders refused by the kills and answered again: {retried}")
        for number, client in enumerate(clients):
            api_key = accounts[number][1]
            for number_of_order, (client_order_id, results) in enumerate(client.answers.items()):
                placed = {result.order.order_id for result in results if result.code == OK}
                # Settled in one state: every OK answer names the same order (a retry of a
                # journaled order is answered with it, never placed again).
                assert len(placed) == 1, (client_order_id, results)
                (order_id,) = placed
                if len(results) == 1 and number_of_order % 10:
                    continue  # every order answered more than once is looked up; of the rest, 1 in 10
                found = gateway.public.GetOrder(
                    gateway_pb2.GetOrderRequest(order_id=order_id), metadata=key(api_key)
                )
                assert found.order.client_order_id == client_order_id
    invariants_hold(system.database_url, system.redis_url)
