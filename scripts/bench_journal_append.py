"""What fencing the journal's appends with the shard lease costs per batch: prints one JSON line.

Three ways to append the same batches (binary COPY of `--records` rows each) to a real PostgreSQL:

- pooled: a pooled connection, the COPY alone in its transaction (the journal before the lease);
- lease: the lease's own session, the COPY alone in its transaction (what trading does: the lease
  lives exactly as long as that session, so an append that commits was made under it);
- checked: a pooled connection, BEGIN, a pg_locks lookup that the lease is still granted to its
  holder's session, the COPY, COMMIT (the alternative: the check in the same transaction).

The three run in interleaved rounds on one machine, each on a shard of its own; each way's figure
is its median round (ratios in the same run; these machines are noisy). Usage:

    python scripts/bench_journal_append.py [--batches 4000] [--records 1] [--no-fsync]

It starts an embedded PostgreSQL of its own in a temporary folder (durable, as `backbone up`
runs it, unless --no-fsync), removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from backbone.runtime.embedded import EmbeddedPostgres
from backbone.runtime.logging import configure_logging
from backbone.trading.v1 import trading_pb2
from trading.journal import _COPY, Journal, copy_data
from trading.lease import ShardLease, lease_key

ROUNDS = 10
_STILL_HELD = """
SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND pid = %s AND classid = %s::oid AND objid = %s::oid
"""


def batches(count: int, size: int, first_sequence: int) -> list[list[trading_pb2.JournalRecord]]:
    """`count` batches of `size` cancel records, numbered on from `first_sequence`."""
    out = []
    sequence = first_sequence
    for _ in range(count):
        batch = []
        for _ in range(size):
            record = trading_pb2.JournalRecord(sequence=sequence, timestamp_ns=sequence)
            record.cancel_order.order_id = f"order-{sequence}"
            record.cancel_order.account_id = "account-1"
            batch.append(record)
            sequence += 1
        out.append(batch)
    return out


async def measure(database_url: str, batch_count: int, batch_records: int) -> dict[str, object]:
    settings = Settings.from_env({"BACKBONE_DATABASE_URL": database_url, "BACKBONE_DATABASE_POOL_SIZE": "4"})
    pool = await open_pool(settings, "bench-journal")
    await migrate(pool, "trading")
    shards = {name: f"bench-{name}" for name in ("pooled", "lease", "checked")}
    leases = {
        name: await ShardLease.acquire(database_url, shards[name], wait_seconds=0)
        for name in ("lease", "checked")
    }
    pooled = Journal(pool, shards["pooled"])
    leased = Journal(pool, shards["lease"], lease=leases["lease"])
    holder = leases["checked"]
    unsigned = lease_key(shards["checked"]) & 0xFFFF_FFFF_FFFF_FFFF
    check = (holder.connection.info.backend_pid, unsigned >> 32, unsigned & 0xFFFF_FFFF)

    async def checked_append(records: list[trading_pb2.JournalRecord]) -> None:
        data = copy_data(shards["checked"], records)
        async with pool.connection() as connection, connection.transaction():
            cursor = await connection.execute(_STILL_HELD, check)
            if await cursor.fetchone() is None:
                raise RuntimeError("the lease is lost")
            async with connection.cursor().copy(_COPY) as copy:
                await copy.write(data)

    ways: dict[str, Callable[[list[trading_pb2.JournalRecord]], Awaitable[None]]] = {
        "pooled": pooled.append,
        "lease": leased.append,
        "checked": checked_append,
    }
    per_round = batch_count // ROUNDS
    next_sequence = dict.fromkeys(ways, 1)
    spent: dict[str, list[float]] = {name: [] for name in ways}
    order = list(ways)
    for round_number in range(ROUNDS):
        # Each way goes first in turn: a table that grows and a WAL that fills favour none.
        for name in order[round_number % len(order) :] + order[: round_number % len(order)]:
            append = ways[name]
            work = batches(per_round, batch_records, next_sequence[name])
            next_sequence[name] += per_round * batch_records
            started = time.perf_counter()
            for batch in work:
                await append(batch)
            spent[name].append((time.perf_counter() - started) / per_round)
    for lease in leases.values():
        await lease.close()
    await pool.close()
    # The median round of each way: a round that met another process's burst on these shared
    # machines moves it less than a mean.
    per_batch_us = {name: round(statistics.median(rounds) * 1e6, 1) for name, rounds in spent.items()}
    return {
        "batches": per_round * ROUNDS,
        "records_per_batch": batch_records,
        "us_per_batch": per_batch_us,
        "lease_vs_pooled": round(per_batch_us["lease"] / per_batch_us["pooled"], 3),
        "checked_vs_pooled": round(per_batch_us["checked"] / per_batch_us["pooled"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=4000)
    parser.add_argument("--records", type=int, default=1)
    parser.add_argument("--no-fsync", action="store_true", help="PostgreSQL without fsync: round trips alone")
    options = parser.parse_args()
    configure_logging("warning", "auto")  # stdout carries the JSON line alone
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedPostgres(Path(folder), durable=not options.no_fsync)
        url = server.start()
        try:
            print(json.dumps(asyncio.run(measure(url, options.batches, options.records))))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
