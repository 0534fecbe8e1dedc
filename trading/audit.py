"""Trading's journal read back for an audit (`backbone check`): read-only and synchronous.

trading/journal.py appends and reads the journal for the running service (async pool); this reads
the same table through a synchronous psycopg connection, for replay outside the service. Run it in
the same REPEATABLE READ, read-only transaction as any figure it is compared with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from backbone.trading.v1 import trading_pb2
from trading.journal import RISK_KINDS

Connection = psycopg.Connection[Any]

SCHEMA = "trading"


def has_schema(connection: Connection) -> bool:
    """Whether the journal exists yet (trading creates it when it first starts)."""
    row = connection.execute("SELECT to_regnamespace(%s) IS NOT NULL", (SCHEMA,)).fetchone()
    return bool(row and row[0])


def shards(connection: Connection) -> list[str]:
    """Every shard that has journaled anything, sorted."""
    rows = connection.execute("SELECT DISTINCT shard FROM trading.journal ORDER BY shard").fetchall()
    return [shard for (shard,) in rows]


def records(connection: Connection, shard: str) -> Iterator[trading_pb2.JournalRecord]:
    """Every record of `shard`, in sequence order (what a replay reads)."""
    cursor = connection.execute(
        "SELECT payload FROM trading.journal WHERE shard = %s ORDER BY sequence", (shard,)
    )
    for (payload,) in cursor:
        yield trading_pb2.JournalRecord.FromString(payload)


def delivery_heads(connection: Connection, shard: str) -> tuple[int, int, int]:
    """(the last trade's sequence, the last sequence risk is sent, how many trades) of `shard`:
    where settlement's and risk's cursors stand once they have everything (0 when none)."""
    row = connection.execute(
        "SELECT coalesce(max(sequence) FILTER (WHERE kind = 'trade'), 0), "
        "coalesce(max(sequence) FILTER (WHERE kind = ANY(%s)), 0), "
        "count(*) FILTER (WHERE kind = 'trade') FROM trading.journal WHERE shard = %s",
        (list(RISK_KINDS), shard),
    ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def fills_projection(connection: Connection, shard: str) -> tuple[int, list[tuple[Any, ...]]] | None:
    """The fills projection of `shard` (trading/fills.py): its mark (0 before its first pass) and all
    its rows as (account_id, trade_id, side, order_id, client_order_id, symbol, price_ticks,
    quantity_lots, fee, liquidity_side, timestamp_ns, sequence); None before trading created it."""
    row = connection.execute("SELECT to_regclass('trading.fills_projection') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return None
    row = connection.execute(
        "SELECT sequence FROM trading.fills_projection WHERE shard = %s", (shard,)
    ).fetchone()
    mark = int(row[0]) if row else 0
    rows = connection.execute(
        "SELECT account_id, trade_id, side, order_id, client_order_id, symbol, price_ticks, quantity_lots, "
        "fee, liquidity_side, timestamp_ns, sequence FROM trading.fills WHERE shard = %s",
        (shard,),
    ).fetchall()
    return mark, [tuple(r) for r in rows]


def report_history(
    connection: Connection, shard: str
) -> tuple[int, list[tuple[Any, ...]], list[tuple[Any, ...]]] | None:
    """The report history of `shard` (trading/history.py): its mark (0 before its first pass), its
    reports as (account_id, account_sequence, order_id, client_order_id, symbol, sequence, report)
    and its new orders as (order_id, account_id, client_order_id, sequence, new_order); None before
    trading created it."""
    row = connection.execute("SELECT to_regclass('trading.history_projection') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return None
    row = connection.execute(
        "SELECT sequence FROM trading.history_projection WHERE shard = %s", (shard,)
    ).fetchone()
    mark = int(row[0]) if row else 0
    reports = connection.execute(
        "SELECT account_id, account_sequence, order_id, client_order_id, symbol, sequence, report "
        "FROM trading.reports WHERE shard = %s",
        (shard,),
    ).fetchall()
    orders = connection.execute(
        "SELECT order_id, account_id, client_order_id, sequence, new_order FROM trading.history_orders "
        "WHERE shard = %s",
        (shard,),
    ).fetchall()
    return mark, [_plain(r) for r in reports], [_plain(r) for r in orders]


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row with its bytea columns as bytes (psycopg reads them as memoryview)."""
    return tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
