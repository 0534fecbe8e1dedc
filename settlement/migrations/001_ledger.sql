-- The settlement ledger: assets, accounts, balanced journal entries and their
-- postings, balances kept in step with the postings, and per-source cursors of
-- the trade streams. Amounts are whole minor units in numeric(38,0).
--
-- Growth: postings is the only table that grows with every trade. It is
-- indexed by entry (primary key) and by (account_id, entry_id) and
-- (account_id, asset, entry_id) for account histories. It is not partitioned
-- yet; when it must be, range-partition it by entry_id (every key here starts
-- with or includes entry_id, so the primary key carries over unchanged).

CREATE SCHEMA IF NOT EXISTS ledger;

CREATE TABLE ledger.assets (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Z0-9]{1,12}$'),
    scale       smallint NOT NULL CHECK (scale BETWEEN 0 AND 18),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger.accounts (
    account_id      text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('customer', 'system')),
    api_key_sha256  bytea UNIQUE CHECK (api_key_sha256 IS NULL OR octet_length(api_key_sha256) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'system' OR account_id ~ '^[A-Za-z0-9._-]{1,64}$')
);

INSERT INTO ledger.accounts (account_id, kind) VALUES
    ('system:external', 'system'),
    ('system:fees', 'system');

CREATE TABLE ledger.journal_entries (
    entry_id    bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('deposit', 'trade')),
    reference   text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger.postings (
    entry_id    bigint NOT NULL REFERENCES ledger.journal_entries (entry_id),
    line        smallint NOT NULL,
    account_id  text NOT NULL REFERENCES ledger.accounts (account_id),
    asset       text NOT NULL REFERENCES ledger.assets (code),
    amount      numeric(38, 0) NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (entry_id, line)
);

CREATE INDEX postings_account_entry ON ledger.postings (account_id, entry_id);
CREATE INDEX postings_account_asset ON ledger.postings (account_id, asset, entry_id);

CREATE TABLE ledger.balances (
    account_id      text NOT NULL REFERENCES ledger.accounts (account_id),
    asset           text NOT NULL REFERENCES ledger.assets (code),
    amount          numeric(38, 0) NOT NULL DEFAULT 0,
    allow_negative  boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, asset),
    CONSTRAINT balances_not_negative CHECK (allow_negative OR amount >= 0)
);

CREATE TABLE ledger.stream_cursors (
    source            text PRIMARY KEY,
    applied_sequence  bigint NOT NULL CHECK (applied_sequence >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
