"""SIGKILL mid-flow: services killed while orders stream in, restarted; nothing lost, nothing doubled.

Orders keep arriving from many accounts while settlement, risk and trading
are each killed with SIGKILL and started again. Afterwards every order the
gateway confirmed is known to trading, and `backbone check` finds every
invariant holding: entries balanced, assets netting to zero, the journal
replaying, every journaled trade posted exactly once as computed, risk's
totals equal to the ledger's, and every open order holding exactly what it
needs in risk.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import grpc
import pytest

from backbone.gateway.v1 import gateway_pb2
from ops.invariants import Report, check_once
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    funded_account,
    key,
    setup_market,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration

ACCOUNTS = 8


class OrderFlow:
    """Threads submitting random crossing orders until stopped; remembers what was accepted."""

    def __init__(self, gateway: Gateway, keys: list[str]) -> None:
        self.gateway = gateway
        self.keys = keys
        self.accepted: dict[str, str] = {}  # order id -> api key
        self.outcomes: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(seed,), daemon=True) for seed in range(6)]

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            api_key = rng.choice(self.keys)
            side = rng.choice((BUY, SELL))
            ticks = 10_000 + rng.randint(-5, 5)
            request = gateway_pb2.SubmitOrderRequest(
                client_order_id=unique("k"),
                symbol="BTC-USD",
                side=side,
                price=f"{ticks // 100}.{ticks % 100:02d}",
                quantity=f"0.{rng.randint(1, 9)}",
            )
            try:
                response = self.gateway.public.SubmitOrder(request, metadata=key(api_key), timeout=10)
                code = "OK"
                with self.lock:
                    self.accepted[response.order.order_id] = api_key
            except grpc.RpcError as error:
                code = error.code().name
                time.sleep(0.02)
            with self.lock:
                self.outcomes[code] = self.outcomes.get(code, 0) + 1

    def __enter__(self) -> OrderFlow:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def wait_more(self, count: int, timeout_seconds: float = 60.0) -> None:
        target = len(self.accepted) + count
        wait_for(lambda: len(self.accepted) >= target, timeout_seconds, what=f"{count} more accepted orders")


def test_sigkill_mid_flow_loses_and_doubles_nothing(system_factory: Callable[..., System]) -> None:
    system = system_factory()
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

    # Every invariant holds once the consumers catch up (`backbone check`), with one known exception:
    # an order whose submission failed while a service was being killed may leave its reservation
    # behind (releasing those is reconciliation, a later capability). Such an orphan must belong to
    # an order the client was not told was accepted, and there can be no more of them than failures.
    failures = sum(count for code, count in flow.outcomes.items() if code != "OK")

    def tolerable(report: Report) -> Report | None:
        for finding in report.findings:
            if finding.status == "ok":
                continue
            if finding.name != "reservations match open orders" or finding.status != "violated":
                return None
            orphans = [item for item in finding.items if item.endswith("but is not open")]
            if orphans != finding.items or len(orphans) > failures:
                return None
            if any(order_id in item for item in orphans for order_id in flow.accepted):
                return None
        return report

    report = wait_for(
        lambda: tolerable(check_once(system.database_url, system.redis_url)),
        60,
        what="the invariants after the kills",
    )
    assert report.finding("trades posted once").status == "ok"
    assert report.finding("journal replays").status == "ok"
