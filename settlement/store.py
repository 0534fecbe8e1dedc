"""The ledger in PostgreSQL (schema ``ledger``), through a psycopg 3 async pool.

Every write is one transaction: journal entries (unique by reference, so a
repeated trade or deposit is skipped), their postings (COPY), the balances
(missing rows made at zero, every row locked in (account, asset) order so
concurrent writers cannot deadlock, then amount + delta), and for trade
batches the source's cursor. A balance that would break its CHECK (a customer going below
zero) aborts the whole transaction: nothing is half-posted.

A trade batch judges its trades one by one (settlement/parking.py): a trade the ledger cannot
post (a customer balance would go below zero, an unknown account or asset) is parked with its
reason in ``ledger.parked_trades`` and its accounts halted in ``ledger.account_halts`` (their later
trades are parked behind it), while the rest of the batch posts and the cursor advances. Batches
take a shared advisory lock and an operator's retry of a parked trade the exclusive one, so a
retry sees no batch half-way; batches of one source take turns on the source's cursor row.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
import structlog
from google.protobuf import json_format
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    not_found,
    unavailable,
)
from settlement import ledger, parking
from settlement.ledger import Entry, Posting
from settlement.risk_feed import record_halt_events, record_risk_event

log = structlog.get_logger("backbone.settlement")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The most (account, asset) balance rows a store remembers as made (then it forgets them all).
_BALANCE_ROWS_REMEMBERED = 1_000_000

# Lists of ids go to PostgreSQL as one text of space-separated words (_words) and come apart there
# (string_to_array): psycopg's array dumping costs several times as much per element, in Python.

# Entries of one kind: the kind, then the references.
_INSERT_ENTRIES = """
INSERT INTO ledger.journal_entries (kind, reference)
SELECT %s, t.reference
FROM unnest(string_to_array(%s, ' ')) WITH ORDINALITY AS t(reference, n)
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

_ADD_TO_BALANCES = """
UPDATE ledger.balances AS b SET amount = b.amount + t.delta, updated_at = now()
FROM unnest(string_to_array(%s, ' '), string_to_array(%s, ' '), string_to_array(%s, ' ')::numeric[])
     AS t(account_id, asset, delta)
WHERE b.account_id = t.account_id AND b.asset = t.asset
RETURNING b.account_id, b.asset, b.amount
"""

# Trade entries are written with COPY under ids taken from the entries' sequence first (in batch
# order): nothing to sort, no ON CONFLICT, nothing to return (the batch has checked its references
# are new, under its locks; a reference journaled after all would break the unique key: nothing
# is posted).
_NEW_ENTRY_IDS = "SELECT nextval('ledger.journal_entries_entry_id_seq') FROM generate_series(1, %s)"
_COPY_ENTRIES = "COPY ledger.journal_entries (entry_id, kind, reference) FROM STDIN"
_COPY_POSTINGS = "COPY ledger.postings (entry_id, line, account_id, asset, amount) FROM STDIN"

# The balances a batch or a retry judges its trades on (or a deposit changes), read with their
# rows locked in (account, asset) byte order (after _ENSURE_BALANCES).
_LOCK_AND_READ_BALANCES = """
SELECT b.account_id, b.asset, b.amount FROM ledger.balances b
JOIN unnest(string_to_array(%s, ' '), string_to_array(%s, ' ')) AS t(account_id, asset)
  ON b.account_id = t.account_id AND b.asset = t.asset
ORDER BY b.account_id COLLATE "C", b.asset COLLATE "C"
FOR UPDATE OF b
"""

# Batches share this advisory lock; a retry of a parked trade holds it alone.
_PARKING_LOCK = int.from_bytes(hashlib.sha256(b"backbone-ledger-parking").digest()[:8], "big", signed=True)

# The parking lock (shared), then the source's cursor, moved (never backwards) and its row locked
# for the rest of the batch.
_LOCK_AND_ADVANCE_CURSOR = """
INSERT INTO ledger.stream_cursors AS c (source, applied_sequence)
SELECT %s, %s FROM (SELECT pg_advisory_xact_lock_shared(%s)) AS parking_lock
ON CONFLICT (source) DO UPDATE SET
  applied_sequence = GREATEST(c.applied_sequence, EXCLUDED.applied_sequence), updated_at = now()
RETURNING applied_sequence
"""

# Which trades of a batch are recorded already: posted (journal) or parked (by reference or sequence).
_RECORDED = """
SELECT reference, NULL::bigint FROM ledger.journal_entries
WHERE reference = ANY(string_to_array(%(references)s, ' '))
UNION ALL
SELECT reference, sequence FROM ledger.parked_trades
WHERE reference = ANY(string_to_array(%(references)s, ' '))
   OR (source = %(source)s AND sequence = ANY(string_to_array(%(sequences)s, ' ')::bigint[]))
"""

# The accounts and the assets a set of trades names that the ledger does not have.
_MISSING = """
SELECT 'account', a FROM unnest(%s::text[]) AS a
WHERE NOT EXISTS (SELECT 1 FROM ledger.accounts WHERE account_id = a)
UNION ALL
SELECT 'asset', x FROM unnest(%s::text[]) AS x WHERE NOT EXISTS (SELECT 1 FROM ledger.assets WHERE code = x)
"""

_HALTS_OF = """
SELECT h.account_id, p.reference, h.reason FROM ledger.account_halts h
JOIN ledger.parked_trades p USING (parked_id) WHERE h.account_id = ANY(%s)
"""

_INSERT_PARKED = """
INSERT INTO ledger.parked_trades (source, sequence, trade_id, reference, trade, reason, detail, account_ids)
SELECT %s, t.sequence, t.trade_id, t.reference, t.trade, t.reason, t.detail,
       ARRAY(SELECT jsonb_array_elements_text(t.accounts))
FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::jsonb[], %s::text[], %s::text[], %s::jsonb[])
     WITH ORDINALITY AS t(sequence, trade_id, reference, trade, reason, detail, accounts, n)
ORDER BY t.n
RETURNING parked_id, reference
"""

# A halt names the earliest parked trade of its account: the first one inserted wins.
_INSERT_HALTS = """
INSERT INTO ledger.account_halts (account_id, parked_id, reason)
SELECT t.account_id, p.parked_id, t.reason
FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(account_id, reference, reason)
JOIN ledger.parked_trades p ON p.reference = t.reference
ON CONFLICT (account_id) DO NOTHING
"""

_PARKED_COLUMNS = (
    "parked_id, source, sequence, trade, reference, reason, detail, account_ids, "
    "parked_at, resolved_at, resolution, entry_id"
)

_HALT_ROWS = """
SELECT h.account_id, h.reason, p.source, p.trade_id, p.reference, h.halted_at,
       (SELECT count(*) FROM ledger.parked_trades q
        WHERE q.resolved_at IS NULL AND h.account_id = ANY(q.account_ids))
FROM ledger.account_halts h JOIN ledger.parked_trades p USING (parked_id)
WHERE %(accounts)s::text[] IS NULL OR h.account_id = ANY(%(accounts)s)
ORDER BY h.account_id
"""


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


class TradeToPost(NamedTuple):
    """One trade of a batch: its sequence at the source, the trade as received, and its entry
    (a tuple: a batch makes one per trade)."""

    sequence: int
    trade: common_pb2.Trade
    entry: Entry


@dataclass(frozen=True)
class ParkedNotice:
    """A trade a batch parked: what the stream logs."""

    reference: str
    sequence: int
    reason: RejectReason
    detail: str
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class BatchResult:
    """What a trade batch did: the source's cursor after it, how many trades it posted and parked."""

    applied_sequence: int
    posted: int = 0
    parked: tuple[ParkedNotice, ...] = ()


@dataclass(frozen=True)
class ParkedTradeRow:
    """A parked trade as stored (resolved_ns, resolution and entry_id are empty while it is parked)."""

    parked_id: int
    source: str
    sequence: int
    trade: common_pb2.Trade
    reference: str
    reason: RejectReason
    detail: str
    account_ids: tuple[str, ...]
    parked_ns: int
    resolved_ns: int
    resolution: str
    entry_id: int

    @property
    def entry(self) -> Entry:
        return ledger.trade_entry(self.source, ledger.fill_of(self.trade))


@dataclass(frozen=True)
class HaltRow:
    """A halted account: the parked trade it waits behind (the one to retry) and its reason."""

    account_id: str
    reason: RejectReason
    source: str
    trade_id: int
    reference: str
    halted_ns: int
    parked_trades: int


@dataclass(frozen=True)
class RetryResult:
    """What a retry did: the trades it posted (in order), the halts it lifted, the halts left."""

    posted: tuple[ParkedTradeRow, ...]
    halts_lifted: tuple[str, ...]
    halts: tuple[HaltRow, ...]


# How many halted accounts the parked-trades health detail names.
SUMMARY_ACCOUNTS = 20


@dataclass(frozen=True)
class ParkingSummary:
    """How many trades are parked and which accounts are halted (the health entry's detail)."""

    parked: int = 0
    halted_count: int = 0
    halted: tuple[str, ...] = ()  # the first SUMMARY_ACCOUNTS, by account id
    oldest: str = ""  # reference of the oldest parked trade
    oldest_reason: str = ""

    def describe(self) -> str:
        if not self.parked and not self.halted_count:
            return "no trade parked, no account halted"
        accounts = ", ".join(self.halted)
        if self.halted_count > len(self.halted):
            accounts += f" and {self.halted_count - len(self.halted)} more"
        return (
            f"{self.parked} trade(s) parked (oldest {self.oldest}: {self.oldest_reason}); "
            f"{self.halted_count} account(s) halted: {accounts}. "
            "ListParkedTrades shows them; fund the account, then RetryParkedTrade"
        )


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
        # Set when this process parked a trade or a retry posted some (the health entry re-reads).
        self.parking_changed = asyncio.Event()
        # (account, asset) balance rows seen in committed transactions: the ledger never deletes
        # one, so a batch need not make them again (a hint only: _lock_balances checks the rows).
        self._balance_rows: set[tuple[str, str]] = set()

    def _remember_balance_rows(self, rows: Collection[tuple[str, str]]) -> None:
        if len(self._balance_rows) + len(rows) > _BALANCE_ROWS_REMEMBERED:
            self._balance_rows.clear()
        self._balance_rows.update(rows)

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
                cursor = await conn.execute(_INSERT_ENTRIES, (entry.kind, _words([entry.reference])))
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

    async def post_trades(self, source: str, batch: Sequence[TradeToPost]) -> BatchResult:
        """Post a batch of trades from `source` in one transaction, parking those that cannot post.

        Trades already recorded (posted, or parked: by reference or by source + sequence) are
        skipped, and a trade id repeated within the batch counts once. The others are judged in
        sequence order (settlement/parking.py): a trade of a halted account is parked behind it;
        one that would take a customer balance below zero (or a balance past 2^63-1), or names
        an unknown account or asset, is parked and halts its accounts; the rest post. The cursor
        advances to the batch's highest sequence (never backwards): parked trades count as
        delivered. A CHECK violation (the judgement and the table disagree: a bug) still refuses
        the whole batch, NEGATIVE_BALANCE, with nothing posted.
        """
        if not batch:
            return BatchResult(await self.applied_sequence(source))
        last = max(item.sequence for item in batch)
        parked: list[ParkedNotice] = []
        posted: list[TradeToPost] = []
        locked: parking.Balances = {}
        try:
            async with self._pool().connection() as conn, conn.transaction():
                cursor = await conn.execute(_LOCK_AND_ADVANCE_CURSOR, (source, last, _PARKING_LOCK))
                row = await cursor.fetchone()
                assert row is not None
                applied = int(row[0])
                fresh = await _unrecorded(conn, source, batch)
                if fresh:
                    entries = [item.entry for item in fresh]
                    totals = ledger.pair_totals(entries)
                    missing_accounts, missing_assets = await _missing(
                        conn, {account for account, _ in totals}, {asset for _, asset in totals}
                    )
                    pairs = sorted(totals)
                    if missing_accounts or missing_assets:
                        pairs = _known_pairs(entries, missing_accounts, missing_assets)
                    locked = await _lock_balances(conn, pairs, self._balance_rows)
                    halts = await _halts_of(
                        conn, {account for account, _ in totals if account not in ledger.SYSTEM_ACCOUNTS}
                    )
                    plan = parking.plan_batch(
                        entries,
                        dict(locked),
                        halts,
                        missing_accounts=missing_accounts,
                        missing_assets=missing_assets,
                        totals=totals,
                    )
                    posted = [
                        item for item, verdict in zip(fresh, plan.verdicts, strict=True) if verdict.posts
                    ]
                    if posted:
                        await _post_entries(
                            conn,
                            [item.entry for item in posted],
                            ledger.deltas_of(totals, pairs) if len(posted) == len(fresh) else None,
                        )
                    parking_now = [
                        (item, verdict)
                        for item, verdict in zip(fresh, plan.verdicts, strict=True)
                        if not verdict.posts
                    ]
                    if parking_now:
                        await _park(conn, source, parking_now, plan.new_halts)
                        parked = [
                            ParkedNotice(
                                item.entry.reference,
                                item.sequence,
                                verdict.reason or RejectReason.UNSPECIFIED,
                                verdict.detail,
                                parking.halted_accounts(item.entry),
                            )
                            for item, verdict in parking_now
                        ]
        except psycopg.errors.CheckViolation as error:
            raise _negative_balance(error) from None
        self._remember_balance_rows(locked)
        if parked:
            self.parking_changed.set()
        log.debug(
            "trades posted",
            source=source,
            received=len(batch),
            posted=len(posted),
            parked=len(parked),
            applied_sequence=applied,
        )
        return BatchResult(applied, len(posted), tuple(parked))

    # ---- parked trades -------------------------------------------------------------------

    async def parked_trades(
        self, account_id: str | None = None, *, include_resolved: bool = False, limit: int = 100
    ) -> tuple[list[ParkedTradeRow], int]:
        """Parked trades, oldest first (with `account_id`, those involving it), and how many are parked."""
        async with self._pool().connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_PARKED_COLUMNS} FROM ledger.parked_trades "
                "WHERE (%(resolved)s OR resolved_at IS NULL) "
                "AND (%(account)s::text IS NULL OR %(account)s = ANY(account_ids)) "
                "ORDER BY parked_id LIMIT %(limit)s",
                {"resolved": include_resolved, "account": account_id, "limit": limit},
            )
            rows = [_parked_row(row) for row in await cursor.fetchall()]
            cursor = await conn.execute("SELECT count(*) FROM ledger.parked_trades WHERE resolved_at IS NULL")
            count = await cursor.fetchone()
            return rows, int(count[0]) if count else 0

    async def halts(self, accounts: Collection[str] | None = None) -> list[HaltRow]:
        """The halted accounts (all, or those of `accounts`), by account id."""
        async with self._pool().connection() as conn:
            return await _halt_rows(conn, accounts)

    async def parking_summary(self) -> ParkingSummary:
        """How many trades are parked and which accounts are halted."""
        async with self._pool().connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*), (SELECT reference || ' ' || reason FROM ledger.parked_trades "
                "  WHERE resolved_at IS NULL ORDER BY parked_id LIMIT 1) "
                "FROM ledger.parked_trades WHERE resolved_at IS NULL"
            )
            row = await cursor.fetchone()
            parked, oldest = (int(row[0]), str(row[1] or "")) if row else (0, "")
            cursor = await conn.execute(
                "SELECT account_id, count(*) OVER () FROM ledger.account_halts ORDER BY account_id LIMIT %s",
                (SUMMARY_ACCOUNTS,),
            )
            halted = await cursor.fetchall()
        reference, _, reason = oldest.partition(" ")
        return ParkingSummary(
            parked=parked,
            halted_count=int(halted[0][1]) if halted else 0,
            halted=tuple(account for account, _ in halted),
            oldest=reference,
            oldest_reason=reason,
        )

    async def retry_parked_trade(self, source: str, trade_id: int) -> RetryResult:
        """Post parked trade `trade_id` of `source`, then the trades that waited behind its accounts.

        In one transaction holding the parking lock alone (no batch is half-way): a trade that
        waits behind a halted account is refused (FAILED_PRECONDITION ACCOUNT_HALTED, naming the
        trade to retry first), and so is one that cannot be posted yet (FAILED_PRECONDITION with
        its reason); either way nothing changes. Once it posts, the trades that waited behind its
        accounts post in order as far as they can (settlement/parking.py plan_retry: one that
        cannot keeps its place with its own reason and halts its accounts), and every halt is
        set to its account's parked trade or lifted when none remains. A trade posted before
        (resolved) answers with nothing posted; an unknown one is NOT_FOUND (UNKNOWN_PARKED_TRADE).
        """
        reference = ledger.trade_reference(source, trade_id)
        async with self._pool().connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARKING_LOCK,))
            cursor = await conn.execute(
                "SELECT resolved_at IS NOT NULL, account_ids FROM ledger.parked_trades WHERE reference = %s",
                (reference,),
            )
            found = await cursor.fetchone()
            if found is None:
                raise not_found(
                    RejectReason.UNKNOWN_PARKED_TRADE,
                    f"no trade {trade_id} of source {source} was parked ({reference}); "
                    "ListParkedTrades lists the parked trades",
                    source=source,
                    trade_id=str(trade_id),
                )
            resolved, target_accounts = bool(found[0]), list(found[1])
            if resolved:
                return RetryResult((), (), tuple(await _halt_rows(conn, target_accounts)))
            cursor = await conn.execute(
                f"SELECT {_PARKED_COLUMNS} FROM ledger.parked_trades "
                "WHERE resolved_at IS NULL ORDER BY parked_id"
            )
            rows = [_parked_row(row) for row in await cursor.fetchall()]
            by_reference = {row.reference: row for row in rows}
            waiting = [parking.Parked(row.reference, row.entry, row.reason, row.detail) for row in rows]
            entries = [trade.entry for trade in waiting]
            missing_accounts, missing_assets = await _missing(
                conn,
                {p.account_id for e in entries for p in e.postings},
                {p.asset for e in entries for p in e.postings},
            )
            balances = await _lock_balances(conn, _known_pairs(entries, missing_accounts, missing_assets))
            try:
                plan = parking.plan_retry(
                    waiting,
                    reference,
                    balances,
                    missing_accounts=missing_accounts,
                    missing_assets=missing_assets,
                )
            except parking.RetryRefused as refusal:
                raise failed_precondition(
                    refusal.reason,
                    f"{reference} cannot be posted yet: {refusal.detail}; nothing changed",
                    reference=reference,
                ) from None
            entry_ids = await _post_entries(conn, [by_reference[ref].entry for ref in plan.posted])
            await conn.execute(
                "UPDATE ledger.parked_trades p SET resolved_at = now(), resolution = 'posted', "
                "entry_id = t.entry_id FROM unnest(%s::text[], %s::bigint[]) AS t(reference, entry_id) "
                "WHERE p.reference = t.reference",
                (plan.posted, entry_ids),
            )
            if plan.renewed:
                await conn.execute(
                    "UPDATE ledger.parked_trades p SET reason = t.reason, detail = t.detail "
                    "FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(reference, reason, detail) "
                    "WHERE p.reference = t.reference",
                    (
                        list(plan.renewed),
                        [str(v.reason) for v in plan.renewed.values()],
                        [v.detail for v in plan.renewed.values()],
                    ),
                )
            lifted = await _set_halts(
                conn, {a: (by_reference[h.reference].parked_id, h.reason) for a, h in plan.halts.items()}
            )
            cursor = await conn.execute(
                f"SELECT {_PARKED_COLUMNS} FROM ledger.parked_trades "
                "WHERE reference = ANY(%s) ORDER BY parked_id",
                (plan.posted,),
            )
            posted = tuple(_parked_row(row) for row in await cursor.fetchall())
            halts = tuple(await _halt_rows(conn, target_accounts))
        self.parking_changed.set()
        log.info(
            "parked trades posted by a retry",
            reference=reference,
            posted=[row.reference for row in posted],
            halts_lifted=lifted,
            still_halted=[h.account_id for h in halts],
        )
        return RetryResult(posted, tuple(lifted), halts)

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


def _words(values: Collection[str]) -> str:
    """`values` as one text for string_to_array(%s, ' '): ids (backbone.ids) hold no space."""
    text = " ".join(values)
    if values and (not text or text.count(" ") != len(values) - 1):
        raise ValueError("an id list holds an empty id or one with a space")
    return text


async def _account_exists(conn: psycopg.AsyncConnection[Any], account_id: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM ledger.accounts WHERE account_id = %s", (account_id,))
    return await cursor.fetchone() is not None


async def _missing_assets(conn: psycopg.AsyncConnection[Any], assets: Collection[str]) -> list[str]:
    cursor = await conn.execute("SELECT code FROM ledger.assets WHERE code = ANY(%s)", (list(assets),))
    found = {row[0] for row in await cursor.fetchall()}
    return sorted(set(assets) - found)


async def _copy_postings(conn: psycopg.AsyncConnection[Any], entries: Iterable[tuple[int, Entry]]) -> None:
    """Every posting of `entries` in one COPY, its text built here and written in one go.

    Account ids and asset codes are checked ids (backbone.ids: letters, digits, ".", "_", "-",
    and the system accounts' ":"), so no value needs COPY's escaping.
    """
    rows = [
        f"{entry_id}\t{line}\t{account}\t{asset}\t{amount}\n"
        for entry_id, entry in entries
        for line, (account, asset, amount) in enumerate(entry.postings, start=1)
    ]
    async with conn.cursor() as cursor, cursor.copy(_COPY_POSTINGS) as copy:
        await copy.write("".join(rows))


async def _apply_deltas(
    conn: psycopg.AsyncConnection[Any], deltas: Sequence[tuple[str, str, int]]
) -> dict[tuple[str, str], int]:
    """Add each delta to its balance (creating the row), locking rows in sorted order; the new balances."""
    if not deltas:
        return {}
    await _lock_balances(conn, [(account, asset) for account, asset, _ in deltas])
    cursor = await _add_to_balances(conn, deltas)
    return {(account, asset): int(amount) for account, asset, amount in await cursor.fetchall()}


async def _add_to_balances(
    conn: psycopg.AsyncConnection[Any], deltas: Sequence[tuple[str, str, int]]
) -> psycopg.AsyncCursor[Any]:
    """Add each delta to its balance row (locked already); the cursor of the new balances."""
    cursor = await conn.execute(
        _ADD_TO_BALANCES,
        (
            _words([account for account, _, _ in deltas]),
            _words([asset for _, asset, _ in deltas]),
            " ".join([str(delta) for _, _, delta in deltas]),
        ),
    )
    if cursor.rowcount != len(deltas):  # every row was made and locked first: a bug, so nothing is posted
        raise RuntimeError(f"balance update touched {cursor.rowcount} rows, expected {len(deltas)}")
    return cursor


async def _unrecorded(
    conn: psycopg.AsyncConnection[Any], source: str, batch: Sequence[TradeToPost]
) -> list[TradeToPost]:
    """The trades of `batch` not yet recorded (posted or parked), each trade id once, in batch order."""
    first: dict[str, TradeToPost] = {}
    for item in batch:
        first.setdefault(item.entry.reference, item)
    cursor = await conn.execute(
        _RECORDED,
        {
            "references": _words(first),
            "source": source,
            "sequences": " ".join([str(item.sequence) for item in batch]),
        },
    )
    references: set[str] = set()
    sequences: set[int] = set()
    for reference, sequence in await cursor.fetchall():
        references.add(reference)
        if sequence is not None:
            sequences.add(int(sequence))
    return [item for ref, item in first.items() if ref not in references and item.sequence not in sequences]


async def _missing(
    conn: psycopg.AsyncConnection[Any], accounts: Collection[str], assets: Collection[str]
) -> tuple[set[str], set[str]]:
    """Which of `accounts` and `assets` the ledger does not have."""
    cursor = await conn.execute(_MISSING, (sorted(accounts), sorted(assets)))
    missing: dict[str, set[str]] = {"account": set(), "asset": set()}
    for kind, name in await cursor.fetchall():
        missing[kind].add(name)
    return missing["account"], missing["asset"]


def _known_pairs(
    entries: Sequence[Entry], missing_accounts: Collection[str], missing_assets: Collection[str]
) -> list[tuple[str, str]]:
    """The (account, asset) balances of the entries that name no unknown account or asset."""
    return parking.entry_pairs(
        e
        for e in entries
        if not any(p.account_id in missing_accounts or p.asset in missing_assets for p in e.postings)
    )


async def _lock_balances(
    conn: psycopg.AsyncConnection[Any],
    pairs: Sequence[tuple[str, str]],
    made: Collection[tuple[str, str]] = frozenset(),
) -> parking.Balances:
    """The balances of `pairs` (sorted; missing rows made at zero), their rows locked in that order.

    Rows are made before any is locked (writers lock in one order, so none waits for another
    holding what it needs); those in `made` are known to exist and are not made again. Should one
    of those be missing after all, it is made and locked then.
    """
    if not pairs:
        return {}
    unmade = [pair for pair in pairs if pair not in made]
    if unmade:
        await _ensure_balance_rows(conn, unmade)
    balances = await _read_locked(conn, pairs)
    if len(balances) != len(pairs):
        await _ensure_balance_rows(conn, [pair for pair in pairs if pair not in balances])
        balances = await _read_locked(conn, pairs)
    return balances


async def _ensure_balance_rows(conn: psycopg.AsyncConnection[Any], pairs: Sequence[tuple[str, str]]) -> None:
    accounts = [account for account, _ in pairs]
    await conn.execute(
        _ENSURE_BALANCES,
        (accounts, [asset for _, asset in pairs], [a in ledger.NEGATIVE_ALLOWED for a in accounts]),
    )


async def _read_locked(
    conn: psycopg.AsyncConnection[Any], pairs: Sequence[tuple[str, str]]
) -> parking.Balances:
    cursor = await conn.execute(
        _LOCK_AND_READ_BALANCES,
        (_words([account for account, _ in pairs]), _words([asset for _, asset in pairs])),
    )
    return {(account, asset): int(amount) for account, asset, amount in await cursor.fetchall()}


async def _halts_of(conn: psycopg.AsyncConnection[Any], accounts: Collection[str]) -> dict[str, parking.Halt]:
    if not accounts:
        return {}
    cursor = await conn.execute(_HALTS_OF, (list(accounts),))
    return {
        account: parking.Halt(reference, RejectReason.from_name(reason))
        for account, reference, reason in await cursor.fetchall()
    }


async def _post_entries(
    conn: psycopg.AsyncConnection[Any],
    entries: Sequence[Entry],
    deltas: Sequence[tuple[str, str, int]] | None = None,
) -> list[int]:
    """Journal trade `entries` in order (their balance rows locked already); their entry ids, in order.

    Their references and postings are made of checked ids (backbone.ids), which need no COPY
    escaping. `deltas`: ledger.balance_deltas(entries), when the caller has them already.
    """
    if not entries:
        return []
    cursor = await conn.execute(_NEW_ENTRY_IDS, (len(entries),))
    entry_ids = [entry_id for (entry_id,) in await cursor.fetchall()]
    rows = [
        f"{entry_id}\t{entry.kind}\t{entry.reference}\n"
        for entry_id, entry in zip(entry_ids, entries, strict=True)
    ]
    async with conn.cursor() as copying, copying.copy(_COPY_ENTRIES) as copy:
        await copy.write("".join(rows))
    await _copy_postings(conn, zip(entry_ids, entries, strict=True))
    if deltas is None:
        deltas = ledger.balance_deltas(entries)
    if deltas:
        await _add_to_balances(conn, deltas)
    return entry_ids


async def _park(
    conn: psycopg.AsyncConnection[Any],
    source: str,
    parked: Sequence[tuple[TradeToPost, parking.Verdict]],
    new_halts: dict[str, parking.Halt],
) -> None:
    """Record `parked` trades (in order) and halt the accounts they halt first."""
    await conn.execute(
        _INSERT_PARKED,
        (
            source,
            [item.sequence for item, _ in parked],
            [item.trade.trade_id for item, _ in parked],
            [item.entry.reference for item, _ in parked],
            [
                Jsonb(json_format.MessageToDict(item.trade, preserving_proto_field_name=True))
                for item, _ in parked
            ],
            [str(verdict.reason) for _, verdict in parked],
            [verdict.detail for _, verdict in parked],
            [Jsonb(list(parking.halted_accounts(item.entry))) for item, _ in parked],
        ),
    )
    if new_halts:
        cursor = await conn.execute(
            _INSERT_HALTS + " RETURNING account_id",
            (
                list(new_halts),
                [h.reference for h in new_halts.values()],
                [str(h.reason) for h in new_halts.values()],
            ),
        )
        # Risk refuses the halted accounts' new orders: it learns the halt from the ledger.
        await record_halt_events(conn, [str(row[0]) for row in await cursor.fetchall()], [])


def _parked_row(row: Sequence[Any]) -> ParkedTradeRow:
    (
        parked_id,
        source,
        sequence,
        payload,
        reference,
        reason,
        detail,
        accounts,
        parked,
        resolved,
        how,
        entry,
    ) = row
    trade = json_format.ParseDict(payload, common_pb2.Trade(), ignore_unknown_fields=True)
    return ParkedTradeRow(
        parked_id=int(parked_id),
        source=source,
        sequence=int(sequence),
        trade=trade,
        reference=reference,
        reason=RejectReason.from_name(reason),
        detail=detail,
        account_ids=tuple(accounts),
        parked_ns=_nanoseconds(parked),
        resolved_ns=_nanoseconds(resolved) if resolved is not None else 0,
        resolution=how or "",
        entry_id=int(entry or 0),
    )


async def _halt_rows(conn: psycopg.AsyncConnection[Any], accounts: Collection[str] | None) -> list[HaltRow]:
    cursor = await conn.execute(_HALT_ROWS, {"accounts": None if accounts is None else list(accounts)})
    return [
        HaltRow(
            account,
            RejectReason.from_name(reason),
            source,
            int(trade_id),
            reference,
            _nanoseconds(at),
            int(n),
        )
        for account, reason, source, trade_id, reference, at, n in await cursor.fetchall()
    ]


async def _set_halts(
    conn: psycopg.AsyncConnection[Any], halts: dict[str, tuple[int, RejectReason]]
) -> list[str]:
    """Make ledger.account_halts exactly `halts` (account -> parked trade, reason); the accounts lifted."""
    cursor = await conn.execute("SELECT account_id FROM ledger.account_halts")
    before = {row[0] for row in await cursor.fetchall()}
    lifted = sorted(before - halts.keys())
    if lifted:
        await conn.execute("DELETE FROM ledger.account_halts WHERE account_id = ANY(%s)", (lifted,))
    await record_halt_events(conn, sorted(halts.keys() - before), lifted)
    if halts:
        await conn.execute(
            "INSERT INTO ledger.account_halts AS h (account_id, parked_id, reason) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[]) "
            "ON CONFLICT (account_id) DO UPDATE SET parked_id = EXCLUDED.parked_id, reason = EXCLUDED.reason "
            "WHERE (h.parked_id, h.reason) IS DISTINCT FROM (EXCLUDED.parked_id, EXCLUDED.reason)",
            (list(halts), [p for p, _ in halts.values()], [str(r) for _, r in halts.values()]),
        )
    return lifted


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
