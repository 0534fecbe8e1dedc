"""Small helpers for tests that drive a running system through the public gRPC API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import psycopg
import redis

from backbone.claims import CLIENT_ORDER_ID_TTL_SECONDS
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.runtime.embedded import free_port
from backbone.runtime.errors import ServiceError, from_rpc_error
from gateway.client_order_ids import CLAIMS_COMPLETE_SINCE_KEY
from ops.invariants import Report, check
from settlement import audit as ledger_audit

T = TypeVar("T")

BUY = common_pb2.SIDE_BUY
SELL = common_pb2.SIDE_SELL


@dataclass
class Gateway:
    """Stubs for one gateway, with the admin key at hand."""

    channel: grpc.Channel
    admin_key: str

    @property
    def public(self) -> gateway_pb2_grpc.GatewayServiceStub:
        return gateway_pb2_grpc.GatewayServiceStub(self.channel)

    @property
    def admin(self) -> gateway_pb2_grpc.AdminServiceStub:
        return gateway_pb2_grpc.AdminServiceStub(self.channel)

    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-admin-key", self.admin_key),)


def key(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", api_key),)


def refused(call: Callable[[], object]) -> ServiceError:
    """Run `call`, which must fail; return the failure with its details."""
    try:
        call()
    except grpc.RpcError as error:
        return from_rpc_error(error)
    raise AssertionError("the call succeeded but should have been refused")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def order(symbol: str, side: int, price: str, quantity: str, **fields: Any) -> gateway_pb2.SubmitOrderRequest:
    return gateway_pb2.SubmitOrderRequest(
        client_order_id=fields.pop("client_order_id", unique("c")),
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        price=price,
        quantity=quantity,
        **fields,
    )


def setup_market(gateway: Gateway, symbol: str, base: str, quote: str = "USD") -> None:
    """Assets (base scale 8, quote scale 6) and an instrument with 10/20 bps maker/taker fees."""
    md = gateway.admin_metadata()
    gateway.admin.CreateAsset(gateway_pb2.CreateAssetRequest(code=quote, scale=6), metadata=md)
    gateway.admin.CreateAsset(gateway_pb2.CreateAssetRequest(code=base, scale=8), metadata=md)
    gateway.admin.CreateInstrument(
        gateway_pb2.CreateInstrumentRequest(
            symbol=symbol,
            base_asset=base,
            quote_asset=quote,
            tick_size="0.01",
            lot_size="0.0001",
            min_quantity="0.0001",
            max_quantity="1000",
            max_price="1000000",
            maker_fee_bps=10,
            taker_fee_bps=20,
        ),
        metadata=md,
    )


def funded_account(gateway: Gateway, deposits: dict[str, str]) -> tuple[str, str]:
    """A new account with the given deposits; returns (account_id, api_key)."""
    md = gateway.admin_metadata()
    account = gateway.admin.CreateAccount(
        gateway_pb2.CreateAccountRequest(account_id=unique("acct")), metadata=md
    )
    for asset, amount in deposits.items():
        gateway.admin.Deposit(
            gateway_pb2.DepositRequest(
                deposit_id=unique("dep"), account_id=account.account_id, asset=asset, amount=amount
            ),
            metadata=md,
        )
    return account.account_id, account.api_key


def balances(gateway: Gateway, api_key: str) -> dict[str, gateway_pb2.Balance]:
    response = gateway.public.GetBalances(gateway_pb2.GetBalancesRequest(), metadata=key(api_key))
    return {balance.asset: balance for balance in response.balances}


def two_shard_settings(zero: Sequence[str], one: Sequence[str]) -> dict[str, str]:
    """The settings of a system with two trading shards on free ports: trading-0 (the default)
    owning the symbols `zero`, trading-1 those of `one`."""
    return {
        "BACKBONE_TRADING_SHARDS": f"trading-0=127.0.0.1:{free_port()},trading-1=127.0.0.1:{free_port()}",
        "BACKBONE_UP_TRADING_SHARDS": f"trading-0={','.join(zero)};trading-1={','.join(one)}",
    }


def set_claims_marker(redis_url: str, since: float | None = None) -> None:
    """Say that every client order id claim made since `since` (Unix seconds) is in the system's Redis
    (gateway/client_order_ids.py); None: long enough ago that the claims are complete, as on a system
    that ran for longer than a claim's lifetime since Redis last lost them. While they may not be, a
    sharded gateway asks every other shard about each new order, so one shard down stops orders on
    all: tests not about a Redis loss start from complete claims."""
    if since is None:
        since = time.time() - CLIENT_ORDER_ID_TTL_SECONDS - 1
    with redis.Redis.from_url(redis_url) as cache:
        cache.set(CLAIMS_COMPLETE_SINCE_KEY, repr(since))


def wait_for(condition: Callable[[], T], timeout_seconds: float = 20.0, what: str = "condition") -> T:
    """Poll until `condition()` is truthy; return its value. Fails after the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout_seconds:g}s (last value: {value!r})")
        time.sleep(0.05)


def settles_to(
    read: Callable[[], T], expected: T, timeout_seconds: float = 20.0, what: str = "state"
) -> None:
    """Poll `read()` until it equals `expected`; fail with both values after the deadline.

    The ledger (settlement) and the reservations (risk) consume trading's events independently, so
    a view that combines them converges rather than changing in one step: compare the whole view.
    """
    deadline = time.monotonic() + timeout_seconds
    while (value := read()) != expected and time.monotonic() <= deadline:
        time.sleep(0.05)
    assert value == expected, f"{what} did not settle in {timeout_seconds:g}s"


def invariants_hold(
    database_url: str, redis_url: str, trading_address: str | Sequence[str] | None = None
) -> Report:
    """`backbone check` once the consumers have caught up: every invariant holds (and, given
    trading's address, or every shard's, each running engine's state equals its journal's replay)."""
    report = check(database_url, redis_url, settle_seconds=20, trading_address=trading_address)
    assert report.status == "ok", "\n".join(report.lines())
    return report


def trade_entries(database_url: str, account_id: str) -> list[tuple[int, str, str, int]]:
    """(entry_id, account_id, asset, amount) of the trade entries an account took part in."""
    with psycopg.connect(database_url) as connection:
        entries = ledger_audit.trade_entries(connection, account_id)
    return sorted((e.entry_id, p.account_id, p.asset, p.amount) for e in entries for p in e.postings)
