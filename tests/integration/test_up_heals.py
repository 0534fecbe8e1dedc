"""`backbone up` heals itself: each process SIGKILLed comes back; the gateway says when it cannot serve.

The first test runs the real `backbone up` (embedded PostgreSQL and Redis, the four services, on
free ports in its own data folder), trades, then kills each service, PostgreSQL and Redis in turn
with SIGKILL, taking the pid from `backbone status --json`: each is back (restarts 1, SERVING,
a new pid) within a bounded wait, an order still goes through, and `backbone check` holds at the
end. The second kills risk, then settlement, under a plain set of service processes (nothing
restarts them): the gateway's standard health says NOT_SERVING and names what is missing, clients
are refused UNAVAILABLE with the missing service's reason within the call deadline, and all is
SERVING again once the service is back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.embedded import free_port
from ops.supervisor import health_check
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    funded_account,
    key,
    order,
    refused,
    setup_market,
    unique,
    wait_for,
)
from tests.integration.test_backbone_up import start_up, stop_up, wait_banner

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The order `backbone status` lists its processes in.
PROCESSES = ["postgres", "redis", "settlement", "trading", "risk", "gateway"]
# A process is back well within this: 0.5 s before the restart, a few seconds to start.
BACK_WITHIN_SECONDS = 30.0
# A call needing a service that is down is refused within the 5 s call deadline (plus scheduling).
ANSWERED_WITHIN_SECONDS = 7.0


def backbone(data_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The `backbone` command from another terminal: only BACKBONE_DATA_DIR set."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    environment["BACKBONE_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "ops", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def status(data_dir: Path) -> tuple[int, dict[str, Any]]:
    result = backbone(data_dir, "status", "--json")
    assert result.stdout.count("\n") == 1, result.stdout + result.stderr  # one JSON line
    return result.returncode, json.loads(result.stdout)


def processes(data_dir: Path) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in status(data_dir)[1]["processes"]}


def trade(gateway: Gateway, buyer_key: str, seller_key: str, symbol: str = "BTC-USD") -> None:
    """A resting sell and a buy that takes it: the buy is FILLED. UNAVAILABLE is retried (same ids)."""
    sell = order(symbol, SELL, "100.00", "0.01")
    buy = order(symbol, BUY, "100.00", "0.01")

    def place(
        request: gateway_pb2.SubmitOrderRequest, api_key: str
    ) -> gateway_pb2.SubmitOrderResponse | None:
        try:
            response: gateway_pb2.SubmitOrderResponse = gateway.public.SubmitOrder(
                request, metadata=key(api_key), timeout=10
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                return None
            raise
        return response

    wait_for(lambda: place(sell, seller_key), 20, what="the sell accepted")
    bought = wait_for(lambda: place(buy, buyer_key), 20, what="the buy accepted")
    assert bought is not None
    assert bought.order.filled_quantity == "0.0100", bought.order


def test_up_restarts_each_process_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {name: free_port() for name in ("gateway", "risk", "trading", "settlement")}
    process = start_up(data_dir, ports)
    output = ""
    try:
        wait_banner(process)
        code, first = status(data_dir)
        assert code == 0, first
        assert [p["name"] for p in first["processes"]] == PROCESSES
        assert all(p["health"] == "SERVING" and p["restarts"] == 0 for p in first["processes"]), first
        assert processes(data_dir)["gateway"]["address"] == f"127.0.0.1:{ports['gateway']}"
        table = backbone(data_dir, "status")
        assert table.returncode == 0 and "RESTARTS" in table.stdout and "risk" in table.stdout, table.stdout

        admin_key = (data_dir / "admin-key").read_text().strip()
        with grpc.insecure_channel(f"127.0.0.1:{ports['gateway']}") as channel:
            gateway = Gateway(channel, admin_key)
            setup_market(gateway, "BTC-USD", "BTC")
            _, buyer_key = funded_account(gateway, {"USD": "10000"})
            _, seller_key = funded_account(gateway, {"BTC": "10"})
            trade(gateway, buyer_key, seller_key)

            for victim in ("settlement", "trading", "risk", "gateway", "postgres", "redis"):
                before = processes(data_dir)[victim]
                os.kill(before["pid"], signal.SIGKILL)

                def back(victim: str = victim, old_pid: int = before["pid"]) -> dict[str, Any] | None:
                    entry = processes(data_dir)[victim]
                    restarted = entry["pid"] not in (None, old_pid) and entry["restarts"] == 1
                    return entry if restarted and entry["health"] == "SERVING" else None

                entry = wait_for(back, BACK_WITHIN_SECONDS, what=f"{victim} restarted and SERVING")
                assert entry is not None and entry["last_exit"] == "killed by SIGKILL", entry
                # The whole system serves again (the gateway sees all it needs), and answers.
                wait_for(
                    lambda: status(data_dir)[0] == 0, BACK_WITHIN_SECONDS, what=f"all SERVING after {victim}"
                )
                trade(gateway, buyer_key, seller_key)

        assert {name: p["restarts"] for name, p in processes(data_dir).items()}["gateway"] == 1
        checked = backbone(data_dir, "check", "--settle", "20")
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        if process.poll() is None:
            output = stop_up(process)
    for victim in ("settlement", "trading", "risk", "gateway", "postgres", "redis"):
        assert any(
            "process exited; restarting" in line and f'"process": "{victim}"' in line and "SIGKILL" in line
            for line in output.splitlines()
        ), f"no restart line for {victim}:\n{output}"
    code, gone = status(data_dir)
    assert code == 2 and gone["running"] is False and "nothing is running" in gone["message"], gone


def _gateway_health(address: str, entry: str = "") -> tuple[int, str]:
    return health_check(address, entry, 2.0)


def test_gateway_not_serving_while_a_dependency_is_down(system_factory: Callable[..., System]) -> None:
    system = system_factory()
    services, address = system.services, system.gateway
    with grpc.insecure_channel(address) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "ETH-USD", "ETH")
        buyer, buyer_key = funded_account(gateway, {"USD": "10000"})
        _, seller_key = funded_account(gateway, {"ETH": "10"})
        trade(gateway, buyer_key, seller_key, "ETH-USD")
        assert _gateway_health(address)[0] == SERVING

        services.kill("risk")
        wait_for(lambda: _gateway_health(address)[0] == NOT_SERVING, 10, what="the gateway NOT_SERVING")
        detail = _gateway_health(address)[1]
        assert detail.startswith("risk missing for ") and "trading" not in detail, detail
        for entry in ("backbone.gateway.v1.GatewayService", "backbone.gateway.v1.AdminService"):
            assert _gateway_health(address, entry)[0] == NOT_SERVING
        # Clients are told UNAVAILABLE, naming risk, in about the 2.5 s a restarting service is given
        # (bounded by the 5 s call deadline, with room for a loaded machine): never a hang.
        for call in (
            lambda: gateway.public.SubmitOrder(
                order("ETH-USD", BUY, "100.00", "0.01"), metadata=key(buyer_key), timeout=30
            ),
            lambda: gateway.public.GetBalances(
                gateway_pb2.GetBalancesRequest(), metadata=key(buyer_key), timeout=30
            ),
        ):
            started = time.monotonic()
            error = refused(call)
            assert (error.code, error.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                RejectReason.RISK_UNAVAILABLE,
            ), error
            assert time.monotonic() - started < ANSWERED_WITHIN_SECONDS

        services.start("risk")
        services.wait_healthy("risk")
        wait_for(lambda: _gateway_health(address)[0] == SERVING, 10, what="the gateway SERVING again")
        trade(gateway, buyer_key, seller_key, "ETH-USD")

        services.kill("settlement")
        wait_for(lambda: _gateway_health(address)[0] == NOT_SERVING, 10, what="the gateway NOT_SERVING")
        assert _gateway_health(address)[1].startswith("settlement missing for ")
        started = time.monotonic()
        error = refused(
            lambda: gateway.admin.Deposit(
                gateway_pb2.DepositRequest(
                    deposit_id=unique("dep"), account_id=buyer, asset="USD", amount="1"
                ),
                metadata=gateway.admin_metadata(),
                timeout=30,
            )
        )
        assert (error.code, error.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.SETTLEMENT_UNAVAILABLE,
        )
        assert time.monotonic() - started < ANSWERED_WITHIN_SECONDS

        services.start("settlement")
        services.wait_healthy("settlement")
        wait_for(lambda: _gateway_health(address)[0] == SERVING, 10, what="the gateway SERVING again")
        assert _gateway_health(address)[1] == "risk, trading and settlement serving"
        trade(gateway, buyer_key, seller_key, "ETH-USD")
