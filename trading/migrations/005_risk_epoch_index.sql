-- Risk's outbox also carries the record where risk's rebuilt state starts
-- (risk_epoch_changed, RISK_KINDS in trading/journal.py): the partial index covers the
-- five kinds it reads, spelled as the outbox's query spells them.

CREATE INDEX journal_risk_kinds_epoch ON trading.journal (shard, sequence)
    WHERE kind IN ('trade', 'order_released', 'instrument_created', 'order_fenced', 'risk_epoch_changed');

DROP INDEX trading.journal_risk_kinds;
