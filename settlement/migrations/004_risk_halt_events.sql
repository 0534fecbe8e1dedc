-- Risk learns halts from the ledger too: a halted account (its trade is parked, see 003) must not
-- be given new orders, and one whose halt is lifted may trade again. Both are risk events of the
-- ledger, numbered with the balance changes (002), so risk applies them in commit order, once.
-- A halt or resume event has no journal entry, asset or amount.

ALTER TABLE ledger.risk_events ADD COLUMN kind text NOT NULL DEFAULT 'balance';
ALTER TABLE ledger.risk_events ALTER COLUMN entry_id DROP NOT NULL;
ALTER TABLE ledger.risk_events ALTER COLUMN asset DROP NOT NULL;
ALTER TABLE ledger.risk_events DROP CONSTRAINT risk_events_amount_check;
ALTER TABLE ledger.risk_events ADD CONSTRAINT risk_events_kind_check CHECK (
    (kind = 'balance' AND entry_id IS NOT NULL AND asset IS NOT NULL AND amount <> 0)
    OR (kind IN ('halt', 'resume') AND entry_id IS NULL AND asset IS NULL AND amount = 0)
);
