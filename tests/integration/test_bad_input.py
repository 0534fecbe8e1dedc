"""Every public call answers wrong input with the right status and a readable message, and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from backbone.gateway.v1 import gateway_pb2
from tests.conftest import System
from tests.integration.gateway_calls import (
    Gateway,
    balances,
    funded_account,
    invariants_hold,
    key,
    refused,
    setup_market,
)

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gw = Gateway(channel, system.admin_key)
        setup_market(gw, "BTC-USD", "BTC")
        yield gw


@pytest.fixture(scope="module")
def trader(gateway: Gateway) -> tuple[str, str]:
    return funded_account(gateway, {"USD": "500", "BTC": "1"})


def public_cases(gw: Gateway, api_key: str) -> list[tuple[str, Callable[[], object], grpc.StatusCode]]:
    md = key(api_key)
    p = gw.public
    return [
        (
            "cancel without order id",
            lambda: p.CancelOrder(gateway_pb2.CancelOrderRequest(), metadata=md),
            INVALID,
        ),
        (
            "cancel unknown order",
            lambda: p.CancelOrder(gateway_pb2.CancelOrderRequest(order_id="nope"), metadata=md),
            grpc.StatusCode.NOT_FOUND,
        ),
        ("get order without id", lambda: p.GetOrder(gateway_pb2.GetOrderRequest(), metadata=md), INVALID),
        (
            "get order with a huge id",
            lambda: p.GetOrder(gateway_pb2.GetOrderRequest(order_id="x" * 10_000), metadata=md),
            INVALID,
        ),
        (
            "book of no symbol",
            lambda: p.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol=""), metadata=md),
            INVALID,
        ),
        (
            "book too deep",
            lambda: p.GetOrderBook(
                gateway_pb2.GetOrderBookRequest(symbol="BTC-USD", depth=5000), metadata=md
            ),
            INVALID,
        ),
        (
            "book of an unknown symbol",
            lambda: p.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol="ZZZ-USD"), metadata=md),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "balances of a malformed account id",
            lambda: p.GetBalances(gateway_pb2.GetBalancesRequest(account_id="not an id!"), metadata=md),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            "executions of another account",
            lambda: next(
                iter(p.StreamExecutions(gateway_pb2.StreamExecutionsRequest(account_id="other"), metadata=md))
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ]


def admin_cases(gw: Gateway, account_id: str) -> list[tuple[str, Callable[[], object], grpc.StatusCode]]:
    md = gw.admin_metadata()
    a = gw.admin
    instrument = dict(
        symbol="ETH-USD", base_asset="BTC", quote_asset="USD", tick_size="0.01", lot_size="0.0001",
        max_quantity="10", max_price="1000",
    )  # fmt: skip
    return [
        (
            "asset code lower case",
            lambda: a.CreateAsset(gateway_pb2.CreateAssetRequest(code="usd", scale=2), metadata=md),
            INVALID,
        ),
        (
            "asset scale too large",
            lambda: a.CreateAsset(gateway_pb2.CreateAssetRequest(code="XYZ", scale=19), metadata=md),
            INVALID,
        ),
        (
            "asset redefined with another scale",
            lambda: a.CreateAsset(gateway_pb2.CreateAssetRequest(code="USD", scale=2), metadata=md),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        (
            "instrument tick too fine for the quote asset",
            lambda: a.CreateInstrument(
                gateway_pb2.CreateInstrumentRequest(**{**instrument, "tick_size": "0.0000001"}), metadata=md
            ),
            INVALID,
        ),
        (
            "instrument with a garbage lot",
            lambda: a.CreateInstrument(
                gateway_pb2.CreateInstrumentRequest(**{**instrument, "lot_size": "abc"}), metadata=md
            ),
            INVALID,
        ),
        (
            "instrument over an unknown asset",
            lambda: a.CreateInstrument(
                gateway_pb2.CreateInstrumentRequest(**{**instrument, "base_asset": "NOPE"}), metadata=md
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "instrument fee too high",
            lambda: a.CreateInstrument(
                gateway_pb2.CreateInstrumentRequest(**instrument, taker_fee_bps=5000), metadata=md
            ),
            INVALID,
        ),
        (
            "account id with spaces",
            lambda: a.CreateAccount(gateway_pb2.CreateAccountRequest(account_id="bad id"), metadata=md),
            INVALID,
        ),
        (
            "account that exists",
            lambda: a.CreateAccount(gateway_pb2.CreateAccountRequest(account_id=account_id), metadata=md),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        (
            "negative deposit",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(
                    deposit_id="d-neg", account_id=account_id, asset="USD", amount="-5"
                ),
                metadata=md,
            ),
            INVALID,
        ),
        (
            "deposit finer than the asset",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(
                    deposit_id="d-fine", account_id=account_id, asset="USD", amount="0.0000001"
                ),
                metadata=md,
            ),
            INVALID,
        ),
        (
            "deposit of an unknown asset",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(
                    deposit_id="d-unk", account_id=account_id, asset="DOGE", amount="1"
                ),
                metadata=md,
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "deposit to an unknown account",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(deposit_id="d-acc", account_id="ghost", asset="USD", amount="1"),
                metadata=md,
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "deposit without an id",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(account_id=account_id, asset="USD", amount="1"), metadata=md
            ),
            INVALID,
        ),
    ]


def test_every_public_and_admin_call_refuses_bad_input_and_changes_nothing(
    gateway: Gateway, trader: tuple[str, str], system: System
) -> None:
    account_id, api_key = trader
    before = balances(gateway, api_key)
    instruments_before = gateway.public.ListInstruments(
        gateway_pb2.ListInstrumentsRequest(), metadata=key(api_key)
    )
    failures = []
    for name, call, expected in public_cases(gateway, api_key) + admin_cases(gateway, account_id):
        error = refused(call)
        if error.code != expected or not error.message or not error.reason:
            failures.append(f"{name}: expected {expected.name}, got {error}")
    assert failures == [], "\n".join(failures)
    assert balances(gateway, api_key) == before
    after = gateway.public.ListInstruments(gateway_pb2.ListInstrumentsRequest(), metadata=key(api_key))
    assert after == instruments_before
    invariants_hold(system.database_url, system.redis_url)
