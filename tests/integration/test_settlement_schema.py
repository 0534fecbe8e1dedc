"""The ledger's schema keeps postings tied to their entry, account and asset (migration 005).

Migration 005 replaced the postings' row-level foreign keys with checks run once per statement
(a trade batch writes thousands of postings in one COPY). These tests hold the checks to what the
keys did: a posting naming a missing entry, account or asset is refused, whether inserted (one
row, many rows, COPY) or updated; an entry, account or asset a posting names cannot be deleted or
re-keyed, while one no posting names can. A ledger made before the migration keeps its postings
and its audit passes after it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from backbone.runtime.database import migrate
from settlement import audit as ledger_audit

pytestmark = pytest.mark.integration

Connection = psycopg.Connection[Any]


def _migration_sql(prefix: str) -> str:
    folder = resources.files("settlement") / "migrations"
    (found,) = [entry for entry in folder.iterdir() if entry.name.startswith(prefix)]
    return found.read_text(encoding="utf-8")


async def _migrated(url: str) -> None:
    pool = AsyncConnectionPool(url, min_size=1, max_size=1, open=False)
    await pool.open(wait=True)
    try:
        await migrate(pool, "settlement")
    finally:
        await pool.close()


def _deposit(connection: Connection, reference: str, account: str, asset: str, amount: int) -> int:
    """A balanced deposit entry written by hand (entry, two postings, both balances)."""
    row = connection.execute(
        "INSERT INTO ledger.journal_entries (kind, reference) VALUES ('deposit', %s) RETURNING entry_id",
        (reference,),
    ).fetchone()
    assert row is not None
    entry = int(row[0])
    connection.execute(
        "INSERT INTO ledger.postings (entry_id, line, account_id, asset, amount) "
        "VALUES (%s, 1, %s, %s, %s), (%s, 2, 'system:external', %s, %s)",
        (entry, account, asset, amount, entry, asset, -amount),
    )
    connection.execute(
        "INSERT INTO ledger.balances (account_id, asset, amount, allow_negative) "
        "VALUES (%s, %s, %s, false), ('system:external', %s, %s, true) "
        "ON CONFLICT (account_id, asset) DO UPDATE SET amount = ledger.balances.amount + EXCLUDED.amount",
        (account, asset, amount, asset, -amount),
    )
    return entry


@pytest.fixture
async def ledger_url(new_database: Callable[[], str]) -> str:
    url = new_database()
    await _migrated(url)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("INSERT INTO ledger.assets (code, scale) VALUES ('USD', 6), ('BTC', 8)")
        connection.execute("INSERT INTO ledger.accounts (account_id, kind) VALUES ('alice', 'customer')")
    return url


def _refused(connection: Connection, sql: str, params: tuple[Any, ...] = ()) -> str:
    """Run `sql` expecting a foreign-key refusal; the message, with the transaction rolled back."""
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught:
        connection.execute(sql, params)
    connection.rollback()
    return str(caught.value)


def test_a_posting_naming_a_missing_entry_account_or_asset_is_refused(ledger_url: str) -> None:
    with psycopg.connect(ledger_url) as connection:
        entry = _deposit(connection, "deposit:one", "alice", "USD", 100)
        connection.commit()
        insert = "INSERT INTO ledger.postings (entry_id, line, account_id, asset, amount) VALUES "
        assert "journal entry 999999" in _refused(connection, insert + "(999999, 1, 'alice', 'USD', 5)")
        assert "account bob" in _refused(connection, insert + "(%s, 3, 'bob', 'USD', 5)", (entry,))
        assert "asset EUR" in _refused(connection, insert + "(%s, 3, 'alice', 'EUR', 5)", (entry,))
        # One bad row among good ones refuses the whole statement.
        assert "account bob" in _refused(
            connection,
            insert + "(%s, 3, 'alice', 'USD', 5), (%s, 4, 'bob', 'USD', -5)",
            (entry, entry),
        )
        copy_postings = "COPY ledger.postings (entry_id, line, account_id, asset, amount) FROM STDIN"
        with (
            pytest.raises(psycopg.errors.ForeignKeyViolation),
            connection.cursor().copy(copy_postings) as copy,
        ):
            copy.write(f"{entry}\t3\talice\tUSD\t5\n{entry}\t4\tnobody\tUSD\t-5\n")
        connection.rollback()
        assert "asset EUR" in _refused(
            connection, "UPDATE ledger.postings SET asset = 'EUR' WHERE entry_id = %s", (entry,)
        )
        rows = connection.execute(
            "SELECT line, account_id, asset, amount FROM ledger.postings ORDER BY line"
        ).fetchall()
        assert rows == [(1, "alice", "USD", 100), (2, "system:external", "USD", -100)]
        assert ledger_audit.balances_differing_from_postings(connection) == []


def test_what_a_posting_names_cannot_be_deleted_or_rekeyed(ledger_url: str) -> None:
    with psycopg.connect(ledger_url) as connection:
        entry = _deposit(connection, "deposit:two", "alice", "USD", 100)
        connection.execute("INSERT INTO ledger.assets (code, scale) VALUES ('EUR', 2)")
        connection.execute("INSERT INTO ledger.accounts (account_id, kind) VALUES ('carol', 'customer')")
        connection.commit()
        assert f"journal_entries {entry}" in _refused(
            connection, "DELETE FROM ledger.journal_entries WHERE entry_id = %s", (entry,)
        )
        assert f"journal_entries {entry}" in _refused(
            connection,
            "UPDATE ledger.journal_entries SET entry_id = entry_id + 1000 WHERE entry_id = %s",
            (entry,),
        )
        # With its balance rows gone first, the postings still keep the account and the asset.
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            connection.execute("DELETE FROM ledger.balances WHERE account_id = 'alice'")
            connection.execute("DELETE FROM ledger.accounts WHERE account_id = 'alice'")
        connection.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            connection.execute("DELETE FROM ledger.balances WHERE asset = 'USD'")
            connection.execute("DELETE FROM ledger.assets WHERE code = 'USD'")
        connection.rollback()
        # An account or asset no posting names goes; a key updated in place is still there.
        connection.execute("DELETE FROM ledger.accounts WHERE account_id = 'carol'")
        connection.execute("DELETE FROM ledger.assets WHERE code = 'EUR'")
        connection.execute("UPDATE ledger.accounts SET kind = kind WHERE account_id = 'alice'")
        # Postings removed first, their entry may go (what an operator's repair does).
        connection.execute("DELETE FROM ledger.postings WHERE entry_id = %s", (entry,))
        connection.execute("DELETE FROM ledger.journal_entries WHERE entry_id = %s", (entry,))
        connection.rollback()
        assert ledger_audit.entry_count(connection) == 1


async def test_a_ledger_made_before_the_migration_keeps_its_postings(
    new_database: Callable[[], str],
) -> None:
    url = new_database()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE backbone_migrations (service text NOT NULL, version integer NOT NULL, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (service, version))"
        )
        for version in range(1, 5):
            connection.execute(_migration_sql(f"{version:03d}_").encode())
            connection.execute(
                "INSERT INTO backbone_migrations (service, version, name) VALUES ('settlement', %s, 'old')",
                (version,),
            )
        connection.execute("INSERT INTO ledger.assets (code, scale) VALUES ('USD', 6)")
        connection.execute("INSERT INTO ledger.accounts (account_id, kind) VALUES ('alice', 'customer')")
        _deposit(connection, "deposit:before", "alice", "USD", 250)
    await _migrated(url)
    with psycopg.connect(url) as connection:
        assert ledger_audit.entry_count(connection) == 1
        assert ledger_audit.unbalanced_entries(connection) == []
        assert ledger_audit.balances_differing_from_postings(connection) == []
        assert ledger_audit.customer_balances(connection) == {("alice", "USD"): 250}
        keys = connection.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'ledger.postings'::regclass AND contype = 'f'"
        ).fetchall()
        assert keys == []
        assert "account bob" in _refused(
            connection,
            "INSERT INTO ledger.postings (entry_id, line, account_id, asset, amount) "
            "SELECT entry_id, 3, 'bob', 'USD', 1 FROM ledger.journal_entries",
        )
