-- Ledger events risk must learn from the ledger itself (deposits now; withdrawals and
-- adjustments later), numbered 1, 2, 3... in commit order: each posting transaction
-- takes the next number from the counter row, whose row lock it holds until it commits,
-- so a reader that has seen number N has seen every number below it. Settlement sends
-- them to risk through an outbox (risk acknowledges what it applied), so a deposit
-- reaches risk exactly once, from the system of record, never as a second step of the
-- gateway. amount is the signed change of the customer's balance.

CREATE TABLE ledger.risk_events (
    sequence    bigint PRIMARY KEY CHECK (sequence > 0),
    entry_id    bigint NOT NULL UNIQUE REFERENCES ledger.journal_entries (entry_id),
    account_id  text NOT NULL REFERENCES ledger.accounts (account_id),
    asset       text NOT NULL REFERENCES ledger.assets (code),
    amount      numeric(38, 0) NOT NULL CHECK (amount <> 0)
);

CREATE TABLE ledger.risk_event_counter (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_sequence   bigint NOT NULL CHECK (last_sequence >= 0)
);

-- The deposits posted before this migration, in entry order.
INSERT INTO ledger.risk_events (sequence, entry_id, account_id, asset, amount)
SELECT row_number() OVER (ORDER BY e.entry_id, p.line), e.entry_id, p.account_id, p.asset, p.amount
FROM ledger.journal_entries e
JOIN ledger.postings p ON p.entry_id = e.entry_id
JOIN ledger.accounts a ON a.account_id = p.account_id AND a.kind = 'customer'
WHERE e.kind = 'deposit';

INSERT INTO ledger.risk_event_counter (singleton, last_sequence)
SELECT true, coalesce(max(sequence), 0) FROM ledger.risk_events;
