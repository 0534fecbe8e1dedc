-- The trading journal: every accepted command (instrument created, new order,
-- cancel) and every event it caused (trade, order released), one row each,
-- numbered 1, 2, 3... per shard with no gaps. payload is a serialized
-- backbone.trading.v1.JournalRecord. Startup replays a shard's rows in
-- sequence order; the rows are also the outbox to settlement (trades) and to
-- risk (trades and releases), read after a sequence through the partial
-- indexes below, so a far-behind receiver costs an index range scan, not a sort.

CREATE SCHEMA IF NOT EXISTS trading;

CREATE TABLE trading.journal (
    shard       text NOT NULL,
    sequence    bigint NOT NULL CHECK (sequence > 0),
    kind        text NOT NULL CHECK (kind IN ('instrument_created', 'new_order', 'cancel_order',
                                              'trade', 'order_released')),
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, sequence)
);

-- The settlement outbox: trades only.
CREATE INDEX journal_trades ON trading.journal (shard, sequence) WHERE kind = 'trade';

-- The risk outbox: trades and releases.
CREATE INDEX journal_trading_events ON trading.journal (shard, sequence)
    WHERE kind IN ('trade', 'order_released');
