"""Risk state in Redis: atomic Lua scripts, pipelined per batch.

Keys are hashed per account (the account id is the hash tag), so every
script touches one slot and Redis Cluster works; risk/keys.py names them all.

Every batch is one pipeline of EVALSHA calls (one round trip). Scripts are
loaded with SCRIPT LOAD at start and loaded again when Redis answers NOSCRIPT
(after a restart or SCRIPT FLUSH).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import redis.asyncio as redis
import structlog
from google.protobuf import json_format
from redis.exceptions import NoScriptError

from backbone.common.v1 import common_pb2
from risk.exposure import LegOp, ReleaseOp, ReserveOp
from risk.keys import (
    INSTRUMENTS_APPLIED_KEY,
    INSTRUMENTS_KEY,
    applied_key,
    balances_key,
    cursor_key,
    deposits_key,
    order_key,
)

log = structlog.get_logger("backbone.risk")

SCRIPT_NAMES = ("reserve", "release", "leg", "cursor", "deposit", "instrument")

Call = tuple[str, Sequence[str], Sequence[str]]


def instrument_json(instrument: common_pb2.Instrument) -> str:
    """How risk stores an instrument in Redis: proto JSON on one line (readable with redis-cli)."""
    return json_format.MessageToJson(instrument, indent=None)


def script_sources() -> dict[str, str]:
    """Each script's full text: the shared helpers followed by the script."""
    folder = resources.files("risk") / "lua"
    helpers = (folder / "lib.lua").read_text(encoding="utf-8")
    return {
        name: helpers + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8") for name in SCRIPT_NAMES
    }


@dataclass(frozen=True)
class ReservationOutcome:
    """The store's answer to one reserve or release."""

    accepted: bool
    asset: str = ""
    amount: int = 0
    reason: str = ""


@dataclass(frozen=True)
class AssetFigures:
    """One asset of one account, in minor units."""

    asset: str
    total: int
    reserved: int

    @property
    def available(self) -> int:
        return self.total - self.reserved


class RiskStateError(RuntimeError):
    """A trading event's leg was refused: applying it would corrupt the state."""

    def __init__(self, leg: LegOp, reason: str, detail: Sequence[str]) -> None:
        self.leg = leg
        self.reason = reason
        self.detail = tuple(detail)
        super().__init__(
            f"{reason}: op {leg.op_id} (sequence {leg.sequence}) of account {leg.account_id} "
            f"order {leg.order_id} refused ({', '.join(self.detail)})"
        )


class AmountOverflowError(ValueError):
    """A total would leave the 64-bit range."""


class RiskStore:
    """The risk state of every account, in one Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._sources = script_sources()
        self._shas: dict[str, str] = {}

    async def load_scripts(self) -> None:
        """SCRIPT LOAD every script (again); cheap, and idempotent."""
        shas = {}
        for name, source in self._sources.items():
            shas[name] = str(await self.client.script_load(source))
        self._shas = shas

    async def _run(self, calls: Sequence[Call]) -> list[Any]:
        """Run `calls` as one pipeline of EVALSHA; results in order; errors raised."""
        if not calls:
            return []
        if not self._shas:
            await self.load_scripts()
        results = await self._pipeline(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            log.warning("redis lost the risk scripts, loading them again", calls=len(missing))
            await self.load_scripts()
            retried = await self._pipeline([calls[i] for i in missing])
            for i, result in zip(missing, retried, strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for name, keys, args in calls:
                pipe.evalsha(self._shas[name], len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    # Reservations ---------------------------------------------------------

    async def run_reservations(self, ops: Sequence[ReserveOp | ReleaseOp]) -> list[ReservationOutcome]:
        """Apply reserves and releases in order, in one round trip; one outcome each."""
        calls: list[Call] = []
        for op in ops:
            keys = (balances_key(op.account_id), order_key(op.account_id, op.order_id))
            if isinstance(op, ReserveOp):
                args = (op.asset, str(op.amount), op.side, op.symbol, str(op.price_ticks))
                calls.append(("reserve", keys, args))
            else:
                calls.append(("release", keys, ()))
        outcomes = []
        for op, result in zip(ops, await self._run(calls), strict=True):
            if isinstance(op, ReserveOp):
                if int(result[0]) == 1:
                    outcomes.append(ReservationOutcome(True, str(result[1]), int(result[2])))
                else:
                    outcomes.append(ReservationOutcome(False, op.asset, op.amount, reason=str(result[1])))
            else:
                outcomes.append(ReservationOutcome(True, str(result[0]), int(result[1])))
        return outcomes

    # Trading events -------------------------------------------------------

    async def apply_legs(self, source: str, legs: Sequence[LegOp]) -> int:
        """Apply every leg not applied before, in order, in one round trip.

        Returns how many were applied (the rest were skipped as already applied).
        Raises RiskStateError naming the first refused leg; legs of other
        accounts in the batch may have been applied, and a redelivery skips them.
        """
        calls: list[Call] = []
        for leg in legs:
            keys = (
                balances_key(leg.account_id),
                order_key(leg.account_id, leg.order_id),
                applied_key(leg.account_id),
            )
            args = [source, str(leg.op_id), str(leg.reservation_cap)]
            for asset, delta in leg.deltas:
                args += [asset, str(delta)]
            calls.append(("leg", keys, args))
        applied = 0
        refusals: list[RiskStateError] = []
        for leg, result in zip(legs, await self._run(calls), strict=True):
            status = int(result[0])
            if status == 1:
                applied += 1
            elif status < 0:
                refusals.append(RiskStateError(leg, str(result[1]), [str(r) for r in result[2:]]))
        if refusals:
            # A HALTED refusal is the consequence of another; report the cause when there is one.
            causes = [r for r in refusals if r.reason != "HALTED"]
            raise (causes or refusals)[0]
        return applied

    async def apply_instruments(
        self, source: str, instruments: Sequence[tuple[int, common_pb2.Instrument]]
    ) -> list[bool]:
        """Store each (sequence, instrument) of `source` not applied before, in order, in one round trip.

        Each instrument is written together with its sequence (one script), so a
        redelivered event is skipped. One answer each: True when stored, False
        when skipped as applied before.
        """
        calls: list[Call] = [
            (
                "instrument",
                (INSTRUMENTS_KEY, INSTRUMENTS_APPLIED_KEY),
                (source, str(sequence), instrument.symbol, instrument_json(instrument)),
            )
            for sequence, instrument in instruments
        ]
        return [int(result) == 1 for result in await self._run(calls)]

    async def instruments(self) -> list[common_pb2.Instrument]:
        """Every instrument risk has learned; an entry that does not parse is logged and left out."""
        stored = cast(dict[str, str], await self.client.hgetall(INSTRUMENTS_KEY))
        instruments = []
        for symbol, text in stored.items():
            try:
                instrument = json_format.Parse(text, common_pb2.Instrument(), ignore_unknown_fields=True)
            except json_format.ParseError as error:
                log.error("stored instrument does not parse; left out", symbol=symbol, error=str(error))
                continue
            instruments.append(instrument)
        return instruments

    async def cursor(self, source: str) -> int:
        """Highest sequence of `source` fully applied; 0 when none."""
        value = await self.client.get(cursor_key(source))
        return int(value) if value else 0

    async def advance_cursor(self, source: str, sequence: int) -> int:
        """Move the cursor of `source` up to `sequence` (never back); returns it."""
        (result,) = await self._run([("cursor", (cursor_key(source),), (str(sequence),))])
        return int(result)

    # Deposits and figures -------------------------------------------------

    async def apply_deposit(self, deposit_id: str, account_id: str, asset: str, amount: int) -> bool:
        """Credit `amount` once per `deposit_id`; False when it was credited before."""
        (result,) = await self._run(
            [
                (
                    "deposit",
                    (balances_key(account_id), deposits_key(account_id)),
                    (deposit_id, asset, str(amount)),
                )
            ]
        )
        if int(result) < 0:
            raise AmountOverflowError(
                f"crediting {amount} would take {account_id}'s {asset} total past 64 bits"
            )
        return int(result) == 1

    async def account_figures(self, account_id: str) -> list[AssetFigures]:
        """Every asset the account has touched, sorted by asset code."""
        fields = cast(dict[str, str], await self.client.hgetall(balances_key(account_id)))
        totals: dict[str, int] = {}
        reserved: dict[str, int] = {}
        for field, value in fields.items():
            asset, _, kind = field.rpartition(":")
            if kind == "total":
                totals[asset] = int(value)
            elif kind == "reserved":
                reserved[asset] = int(value)
        return [
            AssetFigures(asset, totals.get(asset, 0), reserved.get(asset, 0))
            for asset in sorted(totals.keys() | reserved.keys())
        ]

    async def order(self, account_id: str, order_id: str) -> dict[str, str]:
        """An order's reservation record; empty when it holds nothing."""
        return cast(dict[str, str], await self.client.hgetall(order_key(account_id, order_id)))
