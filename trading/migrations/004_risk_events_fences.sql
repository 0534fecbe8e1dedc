-- Risk also reads fences (order_fenced: an order whose outcome was unknown, never journaled
-- and refused for good, whose reservation risk releases) from its outbox (RISK_KINDS in
-- trading/journal.py): its partial index covers the four kinds it reads, spelled as the
-- outbox's query spells them.

CREATE INDEX journal_risk_kinds ON trading.journal (shard, sequence)
    WHERE kind IN ('trade', 'order_released', 'instrument_created', 'order_fenced');

DROP INDEX trading.journal_risk_events;
