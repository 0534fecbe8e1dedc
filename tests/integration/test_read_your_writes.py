"""Balances read right after a fill reflect it: read your writes across trading's and risk's streams.

`reserved` and `available` come from risk, which applies trading's events asynchronously; before
this, a read right after a fill saw the old reservation in a few fills out of a hundred. The
gateway now asks risk to reflect the latest trading sequence the account was told about (and the
SDK sends the highest it saw), and risk waits for it, bounded. Every one of a few hundred reads,
each made right after the fill it follows, must show the fill.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import grpc
import pytest

from backbone.client import Client
from tests.conftest import System
from tests.integration.gateway_calls import Gateway, funded_account, setup_market

pytestmark = pytest.mark.integration

FILLS = 200


def test_balances_read_right_after_each_fill_reflect_it(system_factory: Callable[..., System]) -> None:
    system = system_factory()
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "BTC-USD", "BTC")
        _, maker_key = funded_account(gateway, {"BTC": "100"})
        _, taker_key = funded_account(gateway, {"USD": "1000000"})
    with (
        Client.connect(system.gateway, api_key=maker_key) as maker,
        Client.connect(system.gateway, api_key=taker_key) as taker,
    ):
        # One big resting sell; each taker buy fills part of it at once.
        maker.submit_order("BTC-USD", "sell", price=Decimal("100.00"), quantity=Decimal("50"))
        spent = Decimal(0)
        for fill in range(1, FILLS + 1):
            order = taker.submit_order("BTC-USD", "buy", price=Decimal("100.00"), quantity=Decimal("0.1"))
            assert order.status.name == "FILLED", order.status
            spent += Decimal("10.00") + Decimal("0.02")  # 0.1 at 100.00, 20 bps taker fee
            balances = taker.get_balances()
            # The buy is filled: nothing is held for it any more, and the fill is in available.
            assert balances["USD"].reserved == 0, f"fill {fill}: {balances['USD']}"
            assert balances["USD"].available == Decimal(1_000_000) - spent, f"fill {fill}: {balances['USD']}"
            assert balances["BTC"].available == Decimal("0.1") * fill, f"fill {fill}: {balances['BTC']}"
        # The maker, told of its fills on its own stream, reads them too.
        with maker.stream_executions() as stream:
            last = taker.submit_order("BTC-USD", "buy", price=Decimal("100.00"), quantity=Decimal("0.1"))
            assert last.status.name == "FILLED"
            report = next(r for r in stream if r.execution_type.name == "TRADE")
            assert report.trading_sequence > 0
            sold = Decimal("0.1") * (FILLS + 1)
            assert maker.get_balances()["BTC"].reserved == Decimal(50) - sold
