"""The ledger's feed to risk: the balance changes risk must learn from the ledger itself.

Risk's balances are a cache of the ledger. Trades reach risk from trading's journal; every
other change of a customer's balance (a deposit now; withdrawals and adjustments later) is a
risk event of the ledger, numbered 1, 2, 3... in commit order (migration 002): the posting
transaction takes the next number from a counter row whose lock it holds until it commits, so
the feed never skips a number that is still in flight. Settlement sends the events to risk
through an outbox (StreamLedgerEvents); risk acknowledges what it applied and applies each
number once. When risk has lost its state it asks for a snapshot first: every customer
balance, the last risk event they include, and how far each trading shard's trades are in
them, all read in one REPEATABLE READ transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from backbone.risk.v1 import risk_pb2

SOURCE = "ledger"
# Balances per snapshot page: a page stays far below the gRPC message limit (~40 bytes each).
SNAPSHOT_PAGE_BALANCES = 20_000


async def _next_sequence(conn: psycopg.AsyncConnection[Any]) -> int:
    """The next risk event number; the counter row stays locked until the transaction ends."""
    cursor = await conn.execute(
        "UPDATE ledger.risk_event_counter SET last_sequence = last_sequence + 1 RETURNING last_sequence"
    )
    row = await cursor.fetchone()
    assert row is not None, "migration 002 creates the counter row"
    return int(row[0])


async def record_risk_event(
    conn: psycopg.AsyncConnection[Any], entry_id: int, account_id: str, asset: str, amount: int
) -> int:
    """Number a balance change for risk, inside the posting's transaction; returns its sequence.

    The counter row stays locked until the transaction ends, so events commit in number order.
    """
    sequence = await _next_sequence(conn)
    await conn.execute(
        "INSERT INTO ledger.risk_events (sequence, entry_id, account_id, asset, amount) "
        "VALUES (%s, %s, %s, %s, %s)",
        (sequence, entry_id, account_id, asset, amount),
    )
    return sequence


async def record_halt_events(
    conn: psycopg.AsyncConnection[Any], halted: list[str], resumed: list[str]
) -> None:
    """Number, inside the transaction that halts or lifts them, the accounts risk must refuse or free.

    An account the ledger does not have (a trade named it) has no orders risk could refuse: skipped.
    """
    cursor = await conn.execute(
        "SELECT account_id FROM ledger.accounts WHERE account_id = ANY(%s)", ([*halted, *resumed],)
    )
    known = {str(row[0]) for row in await cursor.fetchall()}
    for kind, accounts in (("halt", halted), ("resume", resumed)):
        for account_id in sorted(set(accounts) & known):
            await conn.execute(
                "INSERT INTO ledger.risk_events (sequence, kind, account_id, amount) VALUES (%s, %s, %s, 0)",
                (await _next_sequence(conn), kind, account_id),
            )


_KINDS = {
    "balance": risk_pb2.LEDGER_EVENT_KIND_BALANCE,
    "halt": risk_pb2.LEDGER_EVENT_KIND_HALT,
    "resume": risk_pb2.LEDGER_EVENT_KIND_RESUME,
}


async def events_after(
    pool: AsyncConnectionPool, sequence: int, limit: int
) -> list[tuple[int, risk_pb2.LedgerEvent]]:
    """Up to `limit` risk events after `sequence`, in order."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT sequence, entry_id, account_id, asset, amount, kind FROM ledger.risk_events "
            "WHERE sequence > %s ORDER BY sequence LIMIT %s",
            (sequence, limit),
        )
        rows = await cursor.fetchall()
    return [
        (
            int(seq),
            risk_pb2.LedgerEvent(
                sequence=int(seq),
                entry_id=int(entry or 0),
                account_id=account,
                asset=asset or "",
                amount=int(amount),
                kind=_KINDS[kind],
            ),
        )
        for seq, entry, account, asset, amount, kind in rows
    ]


async def snapshot(pool: AsyncConnectionPool) -> list[risk_pb2.StreamLedgerEventsRequest]:
    """Every customer balance at one ledger point, as StreamLedgerEvents pages (at least one)."""
    async with pool.connection() as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        try:
            async with conn.transaction():
                cursor = await conn.execute("SELECT last_sequence FROM ledger.risk_event_counter")
                row = await cursor.fetchone()
                sequence = 0 if row is None else int(row[0])
                cursor = await conn.execute("SELECT source, applied_sequence FROM ledger.stream_cursors")
                trade_cursors = [
                    risk_pb2.TradeCursor(source=source, applied_sequence=int(applied))
                    for source, applied in await cursor.fetchall()
                ]
                cursor = await conn.execute(
                    "SELECT b.account_id, b.asset, b.amount FROM ledger.balances b "
                    "JOIN ledger.accounts a ON a.account_id = b.account_id AND a.kind = 'customer' "
                    "WHERE b.amount <> 0 ORDER BY b.account_id, b.asset"
                )
                balances = [
                    risk_pb2.LedgerBalance(account_id=account, asset=asset, amount=int(amount))
                    for account, asset, amount in await cursor.fetchall()
                ]
                halted = await _halted_accounts(conn)
        finally:
            await conn.set_isolation_level(None)
    pages = [
        balances[i : i + SNAPSHOT_PAGE_BALANCES] for i in range(0, len(balances), SNAPSHOT_PAGE_BALANCES)
    ]
    pages = pages or [[]]
    return [
        risk_pb2.StreamLedgerEventsRequest(
            source=SOURCE,
            snapshot=risk_pb2.LedgerSnapshot(
                sequence=sequence,
                balances=page,
                trade_cursors=trade_cursors if number == 0 else [],
                halted_accounts=halted if number == 0 else [],
                last=number == len(pages) - 1,
            ),
        )
        for number, page in enumerate(pages)
    ]


async def _halted_accounts(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """The halted accounts (none before migration 003 made halts)."""
    cursor = await conn.execute("SELECT to_regclass('ledger.account_halts') IS NOT NULL")
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return []
    cursor = await conn.execute("SELECT account_id FROM ledger.account_halts ORDER BY account_id")
    return [str(account) for (account,) in await cursor.fetchall()]


def events_request(
    source: str, events: Sequence[tuple[int, risk_pb2.LedgerEvent]]
) -> risk_pb2.StreamLedgerEventsRequest:
    """One batch of events (none: the hello)."""
    return risk_pb2.StreamLedgerEventsRequest(source=source, events=[event for _, event in events])
