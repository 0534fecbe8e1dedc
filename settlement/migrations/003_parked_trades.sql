-- Trades the ledger cannot post are parked instead of refusing their batch, so
-- one account's trouble never stalls the postings of every other account.
--
-- A trade is parked when posting it would take a customer balance below zero
-- (NEGATIVE_BALANCE) or a balance past 2^63-1 minor units (BALANCE_TOO_LARGE),
-- or when it names an account or asset the ledger does not have
-- (UNKNOWN_ACCOUNT, UNKNOWN_ASSET). It is recorded once, by source + sequence
-- and by its journal reference (trade:<source>:<trade id>), and counts as
-- delivered: the stream's cursor passes it. Its accounts are halted: their
-- later trades are parked behind it, in order (ACCOUNT_HALTED), because
-- posting a later trade first would change the balance it needs.
-- RetryParkedTrade posts it once the cause is fixed (resolution 'posted', with
-- the journal entry), then the later ones; a halt is lifted when none of the
-- account's trades remain parked.

CREATE TABLE ledger.parked_trades (
    parked_id    bigserial PRIMARY KEY,           -- the order trades were parked in
    source       text NOT NULL,
    sequence     bigint NOT NULL CHECK (sequence > 0),
    trade_id     bigint NOT NULL CHECK (trade_id > 0),
    reference    text NOT NULL UNIQUE,            -- the journal reference it posts under
    trade        jsonb NOT NULL,                  -- the common.v1.Trade as received (proto JSON)
    reason       text NOT NULL,                   -- a RejectReason name
    detail       text NOT NULL DEFAULT '',
    account_ids  text[] NOT NULL CHECK (cardinality(account_ids) > 0),
    parked_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    resolution   text CHECK (resolution IN ('posted')),
    entry_id     bigint UNIQUE REFERENCES ledger.journal_entries (entry_id),
    UNIQUE (source, sequence),
    CHECK ((resolved_at IS NULL) = (resolution IS NULL)),
    CHECK ((resolution IS NOT DISTINCT FROM 'posted') = (entry_id IS NOT NULL))
);

CREATE INDEX parked_trades_unresolved ON ledger.parked_trades (parked_id) WHERE resolved_at IS NULL;

-- One row per halted account: the parked trade it waits behind (the earliest of
-- its parked trades, the one to retry) and that trade's reason. An unknown
-- account can be halted too (a trade named it), so there is no foreign key to
-- ledger.accounts.
CREATE TABLE ledger.account_halts (
    account_id  text PRIMARY KEY,
    parked_id   bigint NOT NULL REFERENCES ledger.parked_trades (parked_id),
    reason      text NOT NULL,
    halted_at   timestamptz NOT NULL DEFAULT now()
);
