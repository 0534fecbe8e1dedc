-- Risk learns instruments from its outbox too (RISK_KINDS in trading/journal.py): its
-- partial index covers the three kinds it reads, so a far-behind risk still costs an
-- index range scan rather than a walk of every command along the primary key.

CREATE INDEX journal_risk_events ON trading.journal (shard, sequence)
    WHERE kind IN ('trade', 'order_released', 'instrument_created');

DROP INDEX trading.journal_trading_events;
