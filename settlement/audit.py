"""The ledger read back for an audit (`backbone check`, the tests): read-only and synchronous.

The only SQL on the ledger's tables outside the settlement service's own store. Every function
takes a synchronous psycopg connection and only reads; for figures that must agree with each
other, run them in one REPEATABLE READ, read-only transaction (what `backbone check` does).
Amounts are whole minor units.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from google.protobuf import json_format

from backbone.common.v1 import common_pb2
from settlement.ledger import Posting

Connection = psycopg.Connection[Any]

SCHEMA = "ledger"


@dataclass(frozen=True)
class EntryImbalance:
    """A journal entry whose postings in `asset` sum to `total`, not zero."""

    entry_id: int
    reference: str
    asset: str
    total: int


@dataclass(frozen=True)
class BalanceDifference:
    """A running balance that is not the sum of its postings."""

    account_id: str
    asset: str
    balance: int
    postings_total: int


@dataclass(frozen=True)
class PostedEntry:
    """One journal entry and its postings (in line order)."""

    entry_id: int
    kind: str
    reference: str
    postings: tuple[Posting, ...]


@dataclass(frozen=True)
class ParkedTrade:
    """A trade the ledger could not post and parked (not resolved yet): what, why, and whom it halts."""

    source: str
    sequence: int
    reference: str
    trade: common_pb2.Trade
    reason: str
    detail: str
    account_ids: tuple[str, ...]
    parked_at: datetime


@dataclass(frozen=True)
class AccountHalt:
    """An account whose postings wait behind a parked trade (`reference`, to retry first)."""

    account_id: str
    reference: str
    reason: str
    halted_at: datetime


def has_schema(connection: Connection) -> bool:
    """Whether the ledger exists yet (settlement creates it when it first starts)."""
    row = connection.execute("SELECT to_regnamespace(%s) IS NOT NULL", (SCHEMA,)).fetchone()
    return bool(row and row[0])


def entry_count(connection: Connection) -> int:
    row = connection.execute("SELECT count(*) FROM ledger.journal_entries").fetchone()
    return int(row[0]) if row else 0


def unbalanced_entries(connection: Connection) -> list[EntryImbalance]:
    """Entries whose postings do not sum to zero in some asset, by entry id."""
    rows = connection.execute(
        "SELECT e.entry_id, e.reference, p.asset, sum(p.amount) FROM ledger.journal_entries e "
        "JOIN ledger.postings p USING (entry_id) GROUP BY e.entry_id, e.reference, p.asset "
        "HAVING sum(p.amount) <> 0 ORDER BY e.entry_id, p.asset"
    ).fetchall()
    return [EntryImbalance(int(i), reference, asset, int(total)) for i, reference, asset, total in rows]


def entries_without_postings(connection: Connection) -> list[tuple[int, str]]:
    """(entry id, reference) of entries that have no posting at all."""
    rows = connection.execute(
        "SELECT e.entry_id, e.reference FROM ledger.journal_entries e "
        "WHERE NOT EXISTS (SELECT 1 FROM ledger.postings p WHERE p.entry_id = e.entry_id) "
        "ORDER BY e.entry_id"
    ).fetchall()
    return [(int(entry_id), reference) for entry_id, reference in rows]


def asset_sums(connection: Connection) -> dict[str, int]:
    """asset -> the sum of its postings over every account (system accounts included); zero when sound."""
    rows = connection.execute(
        "SELECT asset, sum(amount) FROM ledger.postings GROUP BY asset ORDER BY asset"
    ).fetchall()
    return {asset: int(total) for asset, total in rows}


def balances_differing_from_postings(connection: Connection) -> list[BalanceDifference]:
    """Running balances that differ from the sum of their postings (a missing row counts as zero)."""
    rows = connection.execute(
        "SELECT coalesce(b.account_id, p.account_id), coalesce(b.asset, p.asset), "
        "coalesce(b.amount, 0), coalesce(p.total, 0) FROM ledger.balances b "
        "FULL JOIN (SELECT account_id, asset, sum(amount) AS total FROM ledger.postings "
        "GROUP BY account_id, asset) p ON p.account_id = b.account_id AND p.asset = b.asset "
        "WHERE coalesce(b.amount, 0) <> coalesce(p.total, 0) ORDER BY 1, 2"
    ).fetchall()
    return [BalanceDifference(account, asset, int(b), int(p)) for account, asset, b, p in rows]


def customer_balances(connection: Connection) -> dict[tuple[str, str], int]:
    """(account id, asset) -> balance, for every customer (not system) account's balance row."""
    rows = connection.execute(
        "SELECT b.account_id, b.asset, b.amount FROM ledger.balances b "
        "JOIN ledger.accounts a USING (account_id) WHERE a.kind = 'customer' ORDER BY 1, 2"
    ).fetchall()
    return {(account, asset): int(amount) for account, asset, amount in rows}


def negative_customer_balances(connection: Connection) -> list[tuple[str, str, int]]:
    """(account id, asset, amount) of customer balances below zero (the schema forbids them)."""
    rows = connection.execute(
        "SELECT b.account_id, b.asset, b.amount FROM ledger.balances b "
        "JOIN ledger.accounts a USING (account_id) WHERE a.kind = 'customer' AND b.amount < 0 "
        "ORDER BY 1, 2"
    ).fetchall()
    return [(account, asset, int(amount)) for account, asset, amount in rows]


def trade_entries(connection: Connection, account_id: str | None = None) -> list[PostedEntry]:
    """Every trade entry with its postings, by entry id; with `account_id`, those it took part in."""
    rows = connection.execute(
        "SELECT e.entry_id, e.kind, e.reference, p.account_id, p.asset, p.amount "
        "FROM ledger.journal_entries e JOIN ledger.postings p USING (entry_id) "
        "WHERE e.kind = 'trade' AND (%(account)s::text IS NULL OR e.entry_id IN "
        "(SELECT entry_id FROM ledger.postings WHERE account_id = %(account)s)) "
        "ORDER BY e.entry_id, p.line",
        {"account": account_id},
    ).fetchall()
    heads: dict[int, tuple[str, str]] = {}
    postings: dict[int, list[Posting]] = {}
    for entry_id, kind, reference, account, asset, amount in rows:
        heads[int(entry_id)] = (kind, reference)
        postings.setdefault(int(entry_id), []).append(Posting(account, asset, int(amount)))
    return [PostedEntry(i, kind, ref, tuple(postings[i])) for i, (kind, ref) in heads.items()]


def stream_cursors(connection: Connection) -> dict[str, int]:
    """trade stream source (a trading shard) -> the highest sequence posted from it."""
    rows = connection.execute("SELECT source, applied_sequence FROM ledger.stream_cursors").fetchall()
    return {source: int(sequence) for source, sequence in rows}


def last_risk_event(connection: Connection) -> int:
    """The newest ledger risk event (a deposit, a halt) risk must apply (0 before there are any)."""
    if not _has_table(connection, "ledger.risk_event_counter"):
        return 0
    row = connection.execute("SELECT last_sequence FROM ledger.risk_event_counter").fetchone()
    return int(row[0]) if row else 0


def _has_table(connection: Connection, table: str) -> bool:
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def parked_trades(connection: Connection) -> list[ParkedTrade]:
    """The trades parked and not resolved, oldest first (none before settlement's migration 003)."""
    if not _has_table(connection, "ledger.parked_trades"):
        return []
    rows = connection.execute(
        "SELECT source, sequence, reference, trade, reason, detail, account_ids, parked_at "
        "FROM ledger.parked_trades WHERE resolved_at IS NULL ORDER BY parked_id"
    ).fetchall()
    return [
        ParkedTrade(
            source,
            int(sequence),
            reference,
            json_format.ParseDict(payload, common_pb2.Trade(), ignore_unknown_fields=True),
            reason,
            detail,
            tuple(accounts),
            parked_at,
        )
        for source, sequence, reference, payload, reason, detail, accounts, parked_at in rows
    ]


def account_halts(connection: Connection) -> list[AccountHalt]:
    """The halted accounts, by account id, each with the parked trade it waits behind."""
    if not _has_table(connection, "ledger.account_halts"):
        return []
    rows = connection.execute(
        "SELECT h.account_id, p.reference, h.reason, h.halted_at FROM ledger.account_halts h "
        "JOIN ledger.parked_trades p USING (parked_id) ORDER BY h.account_id"
    ).fetchall()
    return [AccountHalt(account, reference, reason, at) for account, reference, reason, at in rows]
