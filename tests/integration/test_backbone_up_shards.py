"""`backbone up` with two trading shards: both run, `backbone status` shows both, check covers both."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.ids import shard_of_order_id
from backbone.runtime.embedded import free_port
from tests.integration.gateway_calls import BUY, SELL, Gateway, funded_account, key, order, setup_market
from tests.integration.test_backbone_up import start_up, stop_up, wait_banner
from tests.integration.test_up_heals import backbone

pytestmark = pytest.mark.integration


def test_up_runs_each_shard_and_status_and_check_cover_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {name: free_port() for name in ("gateway", "risk", "trading", "settlement")}
    second = free_port()
    process = start_up(
        data_dir,
        ports,
        BACKBONE_TRADING_SHARDS=f"trading-0=127.0.0.1:{ports['trading']},trading-1=127.0.0.1:{second}",
        BACKBONE_UP_TRADING_SHARDS="trading-0=BTC-USD;trading-1=ETH-USD",
    )
    try:
        banner = wait_banner(process)
        assert f"trading-1 at 127.0.0.1:{second} owns ETH-USD" in banner
        admin_key = (data_dir / "admin-key").read_text().strip()
        with grpc.insecure_channel(f"127.0.0.1:{ports['gateway']}") as channel:
            gateway = Gateway(channel, admin_key)
            setup_market(gateway, "BTC-USD", "BTC")
            setup_market(gateway, "ETH-USD", "ETH")
            _, maker = funded_account(gateway, {"BTC": "1", "ETH": "1"})
            _, taker = funded_account(gateway, {"USD": "100000"})
            for symbol, shard in (("BTC-USD", "trading-0"), ("ETH-USD", "trading-1")):
                rest = gateway.public.SubmitOrder(order(symbol, SELL, "100.00", "0.5"), metadata=key(maker))
                assert shard_of_order_id(rest.order.order_id) == shard
                take = gateway.public.SubmitOrder(order(symbol, BUY, "100.00", "0.5"), metadata=key(taker))
                assert take.order.status == common_pb2.ORDER_STATUS_FILLED
        status = backbone(data_dir, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        health = {p["name"]: (p["health"], p["address"]) for p in json.loads(status.stdout)["processes"]}
        assert health["trading-0"] == ("SERVING", f"127.0.0.1:{ports['trading']}")
        assert health["trading-1"] == ("SERVING", f"127.0.0.1:{second}")
        assert "trading" not in health
        check = backbone(data_dir, "check", "--settle", "30", "--json")
        assert check.returncode == 0, check.stdout + check.stderr
        findings = {f["name"]: f for f in json.loads(check.stdout)["findings"]}
        live = findings["live engine matches journal"]
        assert "trading-0 sequence" in live["summary"] and "trading-1 sequence" in live["summary"], live
    finally:
        if process.poll() is None:
            stop_up(process)
