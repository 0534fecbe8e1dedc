"""The market a run trades in, set up through the AdminService before anything is timed.

Names come from the run's prefix, so several runs can share one system: assets ``{PREFIX}{i}``
(and USD, shared), symbols ``{PREFIX}{i}-USD``, accounts ``{prefix}-{i}`` (lower case), each funded
with plenty of USD and of every base asset (a run never runs out of buying power, so no refusal
depends on how quickly risk applied an earlier fill: the same commands meet the same answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from backbone import ids
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from ops.perf import flow

QUOTE_FUNDING = "1000000000"  # USD per account
BASE_FUNDING = "10000000"  # of each base asset per account
SETUP_PARALLEL = 16
CALL_TIMEOUT_SECONDS = 30.0
Metadata = tuple[tuple[str, str], ...]
T = TypeVar("T")


class SetupError(RuntimeError):
    """The market could not be set up (the message says which call and why)."""


def check_prefix(prefix: str, symbols: int = 1) -> str:
    """The prefix, when every name made from it is valid (its assets are the strictest)."""
    longest = f"{prefix}{max(symbols - 1, 0)}"
    problem = ids.ASSET_CODE.problem(longest)
    if problem:
        raise ValueError(f"prefix {prefix!r} names the run's assets ({longest} ...): the name {problem}")
    return prefix


def mid_ticks(symbol: int) -> int:
    """The starting mid price of symbol `symbol`, in ticks: 100.00, 200.00, ..."""
    return 10_000 * (symbol + 1)


@dataclass
class Market:
    """The run's instruments and funded accounts."""

    prefix: str
    symbols: list[str]
    assets: list[str]  # USD first, then each symbol's base asset
    account_ids: list[str]
    api_keys: list[str]

    @property
    def mids(self) -> list[int]:
        return [mid_ticks(index) for index in range(len(self.symbols))]

    def metadata(self) -> list[Metadata]:
        return [(("x-api-key", key),) for key in self.api_keys]


async def _bounded(calls: Iterable[Awaitable[T]], parallel: int) -> list[T]:
    """Await `calls` (coroutines not started yet), at most `parallel` at once, in order."""
    gate = asyncio.Semaphore(parallel)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(call) for call in calls)))


async def create_market(
    channel: grpc.aio.Channel, admin_key: str, prefix: str, accounts: int, symbols: int
) -> Market:
    """Assets, instruments, accounts and deposits for one run; SetupError when a call fails."""
    check_prefix(prefix, symbols)
    admin = gateway_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
    md = (("x-admin-key", admin_key),)

    async def call(what: str, method: Any, request: Any, exists_ok: bool = False) -> Any:
        try:
            return await method(request, metadata=md, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            if exists_ok and error.code() == grpc.StatusCode.ALREADY_EXISTS:
                return None
            hint = ""
            if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                hint = " (an earlier run used this prefix: choose another with --prefix)"
            raise SetupError(f"{what}: {error.code().name}: {error.details()}{hint}") from None

    bases = [f"{prefix}{index}" for index in range(symbols)]
    names = [f"{base}-{flow.QUOTE_ASSET}" for base in bases]
    await call(
        f"CreateAsset {flow.QUOTE_ASSET}",
        admin.CreateAsset,
        gateway_pb2.CreateAssetRequest(code=flow.QUOTE_ASSET, scale=flow.QUOTE_SCALE),
        exists_ok=True,
    )
    for base, symbol in zip(bases, names, strict=True):
        await call(
            f"CreateAsset {base}",
            admin.CreateAsset,
            gateway_pb2.CreateAssetRequest(code=base, scale=flow.BASE_SCALE),
            exists_ok=True,
        )
        request = gateway_pb2.CreateInstrumentRequest(
            symbol=symbol,
            base_asset=base,
            quote_asset=flow.QUOTE_ASSET,
            tick_size=flow.TICK_SIZE,
            lot_size=flow.LOT_SIZE,
            max_quantity=flow.MAX_QUANTITY,
            max_price=flow.MAX_PRICE,
            maker_fee_bps=flow.MAKER_FEE_BPS,
            taker_fee_bps=flow.TAKER_FEE_BPS,
        )
        await call(f"CreateInstrument {symbol}", admin.CreateInstrument, request)
    account_ids = [f"{prefix.lower()}-{index}" for index in range(accounts)]
    created = await _bounded(
        [
            call(f"CreateAccount {a}", admin.CreateAccount, gateway_pb2.CreateAccountRequest(account_id=a))
            for a in account_ids
        ],
        SETUP_PARALLEL,
    )
    deposits = [
        (account, asset, QUOTE_FUNDING if asset == flow.QUOTE_ASSET else BASE_FUNDING)
        for account in account_ids
        for asset in (flow.QUOTE_ASSET, *bases)
    ]
    await _bounded(
        [
            call(
                f"Deposit {n} {s} to {a}",
                admin.Deposit,
                gateway_pb2.DepositRequest(deposit_id=f"{a}-{s}", account_id=a, asset=s, amount=n),
            )
            for a, s, n in deposits
        ],
        SETUP_PARALLEL,
    )
    return Market(prefix, names, [flow.QUOTE_ASSET, *bases], account_ids, [c.api_key for c in created])
