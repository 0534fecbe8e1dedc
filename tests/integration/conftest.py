"""Fixtures of the integration tests that talk to risk's store directly."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence

import pytest
import redis.asyncio as redis

from backbone.common.v1 import common_pb2
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from risk import exposure
from risk.exposure import EndReplaceOp, GrowOp, LegOp, ReleaseOp, ReserveOp
from risk.keys import EPOCH_KEY, READY_KEY
from risk.store import ReservationOutcome, RiskStore

# The epoch the tests of risk's arithmetic work in (the rebuild has tests of its own).
EPOCH = "test-epoch"
# Ledger event sequences for the deposits tests make: increasing across the session, as the
# ledger's are, so every account's "applied" marker moves up.
_ledger_sequences = itertools.count(1_000_000)


def next_ledger_sequence() -> int:
    return next(_ledger_sequences)


async def make_ready(client: redis.Redis, epoch: str = EPOCH) -> None:
    """Mark risk's state ready in `epoch` (as a completed rebuild would)."""
    await client.set(EPOCH_KEY, epoch)
    await client.set(READY_KEY, epoch)


class ReadyStore(RiskStore):
    """Risk's store used in one ready epoch, with deposits as the ledger's events bring them."""

    async def run_reservations(  # type: ignore[override]
        self, ops: Sequence[ReserveOp | ReleaseOp | GrowOp | EndReplaceOp], epoch: str = EPOCH
    ) -> list[ReservationOutcome]:
        return await super().run_reservations(ops, epoch)

    async def apply_legs(self, source: str, legs: Sequence[LegOp], epoch: str = EPOCH) -> int:  # type: ignore[override]
        return await super().apply_legs(source, legs, epoch)

    async def advance_cursor(self, source: str, sequence: int, epoch: str = EPOCH) -> int:  # type: ignore[override]
        return await super().advance_cursor(source, sequence, epoch)

    async def apply_instruments(  # type: ignore[override]
        self, source: str, instruments: Sequence[tuple[int, common_pb2.Instrument]], epoch: str = EPOCH
    ) -> list[bool]:
        return await super().apply_instruments(source, instruments, epoch)

    async def deposit(self, account_id: str, asset: str, amount: int, sequence: int | None = None) -> bool:
        """Apply a ledger deposit event (a fresh sequence unless given); False when applied before."""
        event = risk_pb2.LedgerEvent(
            sequence=next_ledger_sequence() if sequence is None else sequence,
            account_id=account_id,
            asset=asset,
            amount=amount,
        )
        return await self.apply_legs(exposure.LEDGER_SOURCE, [exposure.ledger_leg(event)]) == 1


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A client of the session's real Redis (decoded strings)."""
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    await connection.aclose()


@pytest.fixture
async def store(client: redis.Redis) -> ReadyStore:
    """Risk's store over that Redis, its scripts loaded, in a ready epoch."""
    await make_ready(client)
    risk_store = ReadyStore(client)
    await risk_store.load_scripts()
    return risk_store


async def deposit_through_ledger_stream(
    stub: risk_pb2_grpc.RiskServiceStub, account_id: str, asset: str, amount: int
) -> int:
    """Deposit as settlement's outbox delivers it: one ledger event after risk's cursor; the new cursor."""
    call = stub.StreamLedgerEvents()
    await call.write(risk_pb2.StreamLedgerEventsRequest(source="ledger"))
    cursor = (await call.read()).applied_sequence
    event = risk_pb2.LedgerEvent(sequence=cursor + 1, account_id=account_id, asset=asset, amount=amount)
    await call.write(risk_pb2.StreamLedgerEventsRequest(source="ledger", events=[event]))
    applied = int((await call.read()).applied_sequence)
    call.cancel()
    return applied
