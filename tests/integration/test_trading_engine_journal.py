"""The engine's new record kinds in a real PostgreSQL journal: stored, read back, replayed.

A seeded flow of every order type, time in force, post-only, self-trade prevention, replace, mass
cancel, status change and expiry is appended to trading.journal, read back, and replayed into a
fresh engine, which must reach the same state hash. Risk's outbox does not read OrderReplaced
yet (risk does not understand it): its kinds leave it out, settlement's are trades only.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from tests.engine_against_model import Pair, random_command
from trading.engine import Engine
from trading.journal import RISK_KINDS, SETTLEMENT_KINDS, Journal

pytestmark = pytest.mark.integration


async def test_every_new_record_kind_is_stored_read_back_and_replayed(
    new_database: Callable[[], str],
) -> None:
    rng = random.Random(7)
    pair = Pair(check_refusals=False)
    for _ in range(3_000):
        random_command(pair, rng)
    records = pair.journal
    kinds = {record.WhichOneof("record") for record in records}
    assert kinds >= {
        "new_order",
        "cancel_order",
        "replace_order",
        "order_replaced",
        "mass_cancel",
        "expire_orders",
        "set_instrument_status",
        "trade",
        "order_released",
    }
    settings = Settings.from_env(
        {"BACKBONE_DATABASE_URL": new_database(), "BACKBONE_DATABASE_POOL_SIZE": "2"}
    )
    pool = await open_pool(settings, "trading-engine-journal")
    try:
        await migrate(pool, "trading")
        journal = Journal(pool, "shard-x", page_size=1_000)
        for start in range(0, len(records), 700):
            await journal.append(records[start : start + 700])
        assert await journal.load_all() == records
        engine = Engine()
        async for record in journal.records():
            engine.replay(record)
        engine.finish_replay()
        assert engine.state_hash() == pair.engine.state_hash()
        for kinds_read in (RISK_KINDS, SETTLEMENT_KINDS):
            read = await journal.load_after(0, len(records), kinds_read)
            assert {record.WhichOneof("record") for _, record in read} <= set(kinds_read)
            # Risk re-sizes a replaced order's hold from its OrderReplaced; settlement posts trades only.
            assert ("order_replaced" in {r.WhichOneof("record") for _, r in read}) == (
                kinds_read == RISK_KINDS
            )
    finally:
        await pool.close()
