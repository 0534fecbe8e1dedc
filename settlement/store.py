"""The ledger in PostgreSQL (schema ``ledger``), through a psycopg 3 async pool.

Every write is one transaction: journal entries (unique by reference, so a
repeated trade or deposit is skipped), their postings (COPY), the balances
(missing rows made at zero, every row locked in (account, asset) order so
concurrent writers cannot deadlock, then amount + delta), and for trade
batches the source's cursor. A balance that would break its CHECK (a customer going below
zero) aborts the whole transaction: nothing is half-posted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from backbone.reasons import RejectReason
from backbone.runtime.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    not_found,
    unavailable,
)
from settlement import ledger
from settlement.ledger import Entry, Posting
from settlement.risk_feed import record_risk_event

log = structlog.get_logger("backbone.settlement")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_INSERT_ENTRIES = """
INSERT INTO ledger.journal_entries (kind, reference)
SELECT t.kind, t.reference
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(kind, reference, n)
ORDER BY t.n
ON CONFLICT (reference) DO NOTHING
RETURNING entry_id, reference
"""

# Balances change in three steps, because PostgreSQL checks a row's CHECK constraints
# before ON CONFLICT could turn an insert into an update: make missing rows (at zero),
# lock every row in (account, asset) byte order, then add the deltas.
_ENSURE_BALANCES = """
INSERT INTO ledger.balances (account_id, asset, amount, allow_negative)
SELECT t.account_id, t.asset, 0, t.allow_negative
FROM unnest(%s::text[], %s::text[], %s::boolean[]) WITH ORDINALITY AS t(account_id, asset, allow_negative, n)
ORDER BY t.n
ON CONFLICT (account_id, asset) DO NOTHING
"""

_LOCK_BALANCES = """
SELECT 1 FROM ledger.balances b
JOIN unnest(%s::text[], %s::text[]) AS t(account_id, asset)
  ON b.account_id = t.account_id AND b.asset = t.asset
ORDER BY b.account_id COLLATE "C", b.asset COLLATE "C"
FOR UPDATE OF b
"""

_ADD_TO_BALANCES = """
UPDATE ledger.balances AS b SET amount = b.amount + t.delta, updated_at = now()
FROM unnest(%s::text[], %s::text[], %s::numeric[]) AS t(account_id, asset, delta)
WHERE b.account_id = t.account_id AND b.asset = t.asset
RETURNING b.account_id, b.asset, b.amount
"""

_COPY_POSTINGS = "COPY ledger.postings (entry_id, line, account_id, asset, amount) FROM STDIN"


@dataclass(frozen=True)
class AssetRow:
    code: str
    scale: int


@dataclass(frozen=True)
class BalanceRow:
    asset: str
    amount: int
    scale: int


@dataclass(frozen=True)
class EntryRow:
    entry_id: int
    kind: str
    reference: str
    created_ns: int
    postings: tuple[Posting, ...]


@dataclass(frozen=True)
class DepositResult:
    entry_id: int
    created: bool
    balance: int
    # The ledger risk-event sequence risk must have applied to know this deposit (0: unknown).
    risk_sequence: int = 0


def _nanoseconds(moment: datetime) -> int:
    return ((moment - _EPOCH) // timedelta(microseconds=1)) * 1000


def _negative_balance(error: psycopg.errors.CheckViolation) -> ServiceError:
    detail = error.diag.message_detail or ""
    return failed_precondition(
        RejectReason.NEGATIVE_BALANCE,
        "posting would take a customer balance below zero; nothing was posted"
        + (f" ({detail})" if detail else ""),
    )


class LedgerStore:
    """Reads and writes the ledger. The pool is bound once the app has opened it."""

    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool

    def _pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise unavailable(RejectReason.SERVICE_STARTING, "settlement is starting; retry shortly")
        return self.pool

    # ---- assets and accounts -------------------------------------------------------------

    async def create_asset(self, code: str, scale: int) -> tuple[AssetRow, bool]:
        """Define an asset; the same definition again is a no-op (created=False)."""
        async with self._pool().connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO ledger.assets (code, scale) VALUES (%s, %s) "
                "ON CONFLICT (code) DO NOTHING RETURNING code",
                (code, scale),
            )
            if await cursor.fetchone() is not None:
                log.info("asset created", asset=code, scale=scale)
                return AssetRow(code, scale), True
            cursor = await conn.execute("SELECT scale FROM ledger.assets WHERE code = %s", (code,))
            row = await cursor.fetchone()
            assert row is not None
            if row[0] != scale:
                raise already_exists(
                    RejectReason.ASSET_EXISTS,
                    f"asset {code} already exists with scale {row[0]}, not {scale}",
                    asset=code,
                )
            return AssetRow(code, scale), False

    async def list_assets(self) -> list[AssetRow]:
        async with self._pool().connection() as conn:
            cursor = await conn.execute("SELECT code, scale FROM ledger.assets ORDER BY code")
            return [AssetRow(code, scale) for code, scale in await cursor.fetchall()]

    async def create_account(self, account_id: str, api_key_sha256: bytes) -> None:
        """Open a customer account bound to an API key digest."""
        try:
            async with self._pool().connection() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO ledger.accounts (account_id, kind, api_key_sha256) "
                    "VALUES (%s, 'customer', %s)",
                    (account_id, api_key_sha256),
                )
        except psycopg.errors.UniqueViolation as error:
            if error.diag.constraint_name == "accounts_pkey":
                raise already_exists(
                    RejectReason.ACCOUNT_EXISTS, f"account {account_id} already exists", account_id=account_id
                ) from None
            raise already_exists(
                RejectReason.API_KEY_EXISTS, "this API key is already bound to another account"
            ) from None
        log.info("account created", account_id=account_id)

    async def account_of_api_key(self, api_key_sha256: bytes) -> str | None:
        async with self._pool().connection() as conn:
            cursor = await conn.execute(
                "SELECT account_id FROM ledger.accounts WHERE api_key_sha256 = %s",
                (api_key_sha256,),
            )
            row = await cursor.fetchone()
            return None if row is None else str(row[0])

    async def account_exists(self, account_id: str) -> bool:
        async with self._pool().connection() as conn:
            return await _account_exists(conn, account_id)

    # ---- deposits ------------------------------------------------------------------------

    async def deposit(self, deposit_id: str, entry: Entry) -> DepositResult:
        """Post a deposit entry (built by ledger.deposit_entry) once per deposit id."""
        credit = entry.postings[0]
        account_id, asset, amount = credit.account_id, credit.asset, credit.amount
        try:
            async with self._pool().connection() as conn, conn.transaction():
                if not await _account_exists(conn, account_id):
                    raise not_found(
                        RejectReason.UNKNOWN_ACCOUNT,
                        f"account {account_id} does not exist",
                        account_id=account_id,
                    )
                if await _missing_assets(conn, {asset}):
                    raise not_found(RejectReason.UNKNOWN_ASSET, f"asset {asset} does not exist", asset=asset)
                cursor = await conn.execute(_INSERT_ENTRIES, ([entry.kind], [entry.reference]))
                inserted = await cursor.fetchone()
                if inserted is None:
                    return await _repeated_deposit(conn, deposit_id, entry)
                entry_id = int(inserted[0])
                await _copy_postings(conn, [(entry_id, entry)])
                balances = await _apply_deltas(conn, ledger.balance_deltas([entry]))
                balance = balances[(account_id, asset)]
                if balance > ledger.INT64_MAX:
                    raise failed_precondition(
                        RejectReason.BALANCE_TOO_LARGE,
                        f"the deposit would take {account_id}'s {asset} balance past 2^63-1 minor units",
                    )
                risk_sequence = await record_risk_event(conn, entry_id, account_id, asset, amount)
        except psycopg.errors.CheckViolation as error:
            raise _negative_balance(error) from None
        log.info(
            "deposit posted",
            deposit_id=deposit_id,
            account_id=account_id,
            asset=asset,
            amount=amount,
            entry_id=entry_id,
        )
        return DepositResult(entry_id, True, balance, risk_sequence)

    # ---- trades --------------------------------------------------------------------------

    async def applied_sequence(self, source: str) -> int:
        """The highest sequence of `source` whose trades are all posted (0 when none)."""
        async with self._pool().connection() as conn:
            cursor = await conn.execute(
                "SELECT applied_sequence FROM ledger.stream_cursors WHERE source = %s", (source,)
            )
            row = await cursor.fetchone()
            return 0 if row is None else int(row[0])

    async def post_trades(self, source: str, batch: Sequence[tuple[int, Entry]]) -> int:
        """Post a batch of trade entries from `source` in one transaction; return the cursor.

        Entries whose reference is already in the journal are skipped. The
        cursor advances to the batch's highest sequence (never backwards).
        Raises FAILED_PRECONDITION (nothing posted) for an unknown account or
        asset or a balance that would go below zero.
        """
        if not batch:
            return await self.applied_sequence(source)
        last = max(sequence for sequence, _ in batch)
        entries: dict[str, Entry] = {}
        for _, entry in batch:
            entries.setdefault(entry.reference, entry)
        accounts = {p.account_id for e in entries.values() for p in e.postings}
        assets = {p.asset for e in entries.values() for p in e.postings}
        try:
            async with self._pool().connection() as conn, conn.transaction():
                missing = await _missing_accounts(conn, accounts)
                if missing:
                    raise failed_precondition(
                        RejectReason.UNKNOWN_ACCOUNT,
                        f"trades from {source} name accounts the ledger does not have: "
                        f"{', '.join(missing)}; nothing was posted",
                        source=source,
                    )
                missing = await _missing_assets(conn, assets)
                if missing:
                    raise failed_precondition(
                        RejectReason.UNKNOWN_ASSET,
                        f"trades from {source} name assets the ledger does not have: "
                        f"{', '.join(missing)}; nothing was posted",
                        source=source,
                    )
                cursor = await conn.execute(
                    _INSERT_ENTRIES,
                    ([e.kind for e in entries.values()], list(entries)),
                )
                new_ids = {reference: int(entry_id) for entry_id, reference in await cursor.fetchall()}
                fresh = sorted(((new_ids[ref], entries[ref]) for ref in new_ids), key=lambda item: item[0])
                if fresh:
                    await _copy_postings(conn, fresh)
                    await _apply_deltas(conn, ledger.balance_deltas(e for _, e in fresh))
                cursor = await conn.execute(
                    "INSERT INTO ledger.stream_cursors AS c (source, applied_sequence) VALUES (%s, %s) "
                    "ON CONFLICT (source) DO UPDATE SET "
                    "applied_sequence = GREATEST(c.applied_sequence, EXCLUDED.applied_sequence), "
                    "updated_at = now() RETURNING applied_sequence",
                    (source, last),
                )
                row = await cursor.fetchone()
                assert row is not None
                applied = int(row[0])
        except psycopg.errors.CheckViolation as error:
            raise _negative_balance(error) from None
        log.debug(
            "trades posted",
            source=source,
            received=len(batch),
            posted=len(fresh),
            applied_sequence=applied,
        )
        return applied

    # ---- reads ---------------------------------------------------------------------------

    async def balances(self, account_id: str) -> list[BalanceRow] | None:
        """The account's balances by asset, or None when the account does not exist."""
        async with self._pool().connection() as conn:
            if not await _account_exists(conn, account_id):
                return None
            cursor = await conn.execute(
                "SELECT b.asset, b.amount, a.scale FROM ledger.balances b "
                "JOIN ledger.assets a ON a.code = b.asset WHERE b.account_id = %s ORDER BY b.asset",
                (account_id,),
            )
            return [BalanceRow(asset, int(amount), scale) for asset, amount, scale in await cursor.fetchall()]

    async def entries(self, account_id: str, limit: int) -> list[EntryRow] | None:
        """The account's latest `limit` entries, newest first, or None for an unknown account."""
        async with self._pool().connection() as conn:
            if not await _account_exists(conn, account_id):
                return None
            cursor = await conn.execute(
                "SELECT e.entry_id, e.kind, e.reference, e.created_at FROM ledger.journal_entries e "
                "WHERE e.entry_id IN (SELECT p.entry_id FROM ledger.postings p "
                "  WHERE p.account_id = %s GROUP BY p.entry_id ORDER BY p.entry_id DESC LIMIT %s) "
                "ORDER BY e.entry_id DESC",
                (account_id, limit),
            )
            heads = await cursor.fetchall()
            if not heads:
                return []
            cursor = await conn.execute(
                "SELECT entry_id, account_id, asset, amount FROM ledger.postings "
                "WHERE entry_id = ANY(%s) ORDER BY entry_id, line",
                ([row[0] for row in heads],),
            )
            lines: dict[int, list[Posting]] = {}
            for entry_id, account, asset, amount in await cursor.fetchall():
                lines.setdefault(entry_id, []).append(Posting(account, asset, int(amount)))
            return [
                EntryRow(entry_id, kind, reference, _nanoseconds(created), tuple(lines.get(entry_id, ())))
                for entry_id, kind, reference, created in heads
            ]

    async def audit(self) -> list[str]:
        """Check the ledger's invariants; return one sentence per violation (empty when sound).

        Every entry balances per asset; every asset nets to zero over all
        accounts; every balance equals the sum of its account's postings.
        """
        problems: list[str] = []
        async with self._pool().connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cursor = await conn.execute(
                "SELECT entry_id, asset, sum(amount) FROM ledger.postings "
                "GROUP BY entry_id, asset HAVING sum(amount) <> 0 ORDER BY entry_id LIMIT 100"
            )
            for entry_id, asset, total in await cursor.fetchall():
                problems.append(f"entry {entry_id} does not balance in {asset} (off by {total})")
            cursor = await conn.execute(
                "SELECT asset, sum(amount) FROM ledger.balances GROUP BY asset "
                "HAVING sum(amount) <> 0 ORDER BY asset"
            )
            for asset, total in await cursor.fetchall():
                problems.append(f"balances of {asset} sum to {total}, not zero")
            cursor = await conn.execute(
                "SELECT coalesce(b.account_id, p.account_id), coalesce(b.asset, p.asset), "
                "       coalesce(b.amount, 0), coalesce(p.total, 0) "
                "FROM ledger.balances b FULL JOIN ("
                "  SELECT account_id, asset, sum(amount) AS total FROM ledger.postings "
                "  GROUP BY account_id, asset) p ON p.account_id = b.account_id AND p.asset = b.asset "
                "WHERE coalesce(b.amount, 0) <> coalesce(p.total, 0) ORDER BY 1, 2 LIMIT 100"
            )
            for account, asset, balance, total in await cursor.fetchall():
                problems.append(
                    f"balance of {account} in {asset} is {balance} but its postings sum to {total}"
                )
        return problems


async def _account_exists(conn: psycopg.AsyncConnection[Any], account_id: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM ledger.accounts WHERE account_id = %s", (account_id,))
    return await cursor.fetchone() is not None


async def _missing_accounts(conn: psycopg.AsyncConnection[Any], accounts: Collection[str]) -> list[str]:
    cursor = await conn.execute(
        "SELECT account_id FROM ledger.accounts WHERE account_id = ANY(%s)", (list(accounts),)
    )
    found = {row[0] for row in await cursor.fetchall()}
    return sorted(set(accounts) - found)


async def _missing_assets(conn: psycopg.AsyncConnection[Any], assets: Collection[str]) -> list[str]:
    cursor = await conn.execute("SELECT code FROM ledger.assets WHERE code = ANY(%s)", (list(assets),))
    found = {row[0] for row in await cursor.fetchall()}
    return sorted(set(assets) - found)


async def _copy_postings(conn: psycopg.AsyncConnection[Any], entries: Iterable[tuple[int, Entry]]) -> None:
    async with conn.cursor() as cursor, cursor.copy(_COPY_POSTINGS) as copy:
        for entry_id, entry in entries:
            for line, posting in enumerate(entry.postings, start=1):
                await copy.write_row((entry_id, line, posting.account_id, posting.asset, posting.amount))


async def _apply_deltas(
    conn: psycopg.AsyncConnection[Any], deltas: Sequence[tuple[str, str, int]]
) -> dict[tuple[str, str], int]:
    """Add each delta to its balance (creating the row), locking rows in sorted order."""
    if not deltas:
        return {}
    accounts = [account for account, _, _ in deltas]
    assets = [asset for _, asset, _ in deltas]
    await conn.execute(_ENSURE_BALANCES, (accounts, assets, [a in ledger.NEGATIVE_ALLOWED for a in accounts]))
    await conn.execute(_LOCK_BALANCES, (accounts, assets))
    cursor = await conn.execute(_ADD_TO_BALANCES, (accounts, assets, [d for _, _, d in deltas]))
    updated = {(account, asset): int(amount) for account, asset, amount in await cursor.fetchall()}
    if len(updated) != len(deltas):
        raise RuntimeError(f"balance update touched {len(updated)} rows, expected {len(deltas)}")
    return updated


async def _repeated_deposit(
    conn: psycopg.AsyncConnection[Any], deposit_id: str, entry: Entry
) -> DepositResult:
    """A deposit id already posted: the same deposit again answers its entry, anything else is refused."""
    credit = entry.postings[0]
    cursor = await conn.execute(
        "SELECT e.entry_id, p.account_id, p.asset, p.amount FROM ledger.journal_entries e "
        "JOIN ledger.postings p ON p.entry_id = e.entry_id "
        "WHERE e.reference = %s AND p.account_id <> %s",
        (entry.reference, ledger.SYSTEM_EXTERNAL),
    )
    row = await cursor.fetchone()
    assert row is not None
    entry_id, account_id, asset, amount = int(row[0]), row[1], row[2], int(row[3])
    if (account_id, asset, amount) != (credit.account_id, credit.asset, credit.amount):
        raise failed_precondition(
            RejectReason.DEPOSIT_ID_REUSED,
            f"deposit {deposit_id} was already posted with a different account, asset or amount",
            deposit_id=deposit_id,
        )
    cursor = await conn.execute(
        "SELECT amount FROM ledger.balances WHERE account_id = %s AND asset = %s",
        (account_id, asset),
    )
    balance_row = await cursor.fetchone()
    balance = 0 if balance_row is None else int(balance_row[0])
    cursor = await conn.execute("SELECT sequence FROM ledger.risk_events WHERE entry_id = %s", (entry_id,))
    event_row = await cursor.fetchone()
    return DepositResult(entry_id, False, balance, 0 if event_row is None else int(event_row[0]))
