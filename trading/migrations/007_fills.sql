-- The fills projection (trading/fills.py): one row per side of each trade of the journal, so
-- ListFills can read one account's fills without walking the journal (whose rows are by shard
-- and sequence, their accounts inside the payload). It is derived: trading writes it from the
-- journal's trade records in the background after each commit, rows and high-water mark in one
-- transaction, and a missing or emptied projection is rebuilt from the journal (the mark at 0).
--
-- side and liquidity_side are backbone.common.v1 Side and LiquiditySide numbers; amounts are the
-- trade's scaled integers (price in ticks, quantity in lots, fee in quote minor units).

CREATE TABLE trading.fills (
    shard            text NOT NULL,
    account_id       text NOT NULL,
    trade_id         bigint NOT NULL CHECK (trade_id > 0),
    side             smallint NOT NULL CHECK (side IN (1, 2)),
    order_id         text NOT NULL,
    client_order_id  text NOT NULL,
    symbol           text NOT NULL,
    price_ticks      bigint NOT NULL,
    quantity_lots    bigint NOT NULL,
    fee              bigint NOT NULL,
    liquidity_side   smallint NOT NULL,
    timestamp_ns     bigint NOT NULL,
    sequence         bigint NOT NULL,
    -- A trade between two orders of one account is two rows (a buy and a sell).
    PRIMARY KEY (shard, account_id, trade_id, side)
);

-- ListFills by time: the first fill of an account at or after a moment (trading/fills.py turns a
-- time range into a trade id range with it, then reads along the primary key).
CREATE INDEX fills_by_time ON trading.fills (shard, account_id, timestamp_ns, trade_id);

-- How far each shard's projection has read its journal: every trade record at or below
-- `sequence` has its rows above. `last_timestamp_ns` is the time of the last trade projected and
-- `times_in_order` whether every trade so far was no earlier than the one before (the engine's
-- clock never goes back): only then does a time range map to a trade id range.
CREATE TABLE trading.fills_projection (
    shard              text PRIMARY KEY,
    sequence           bigint NOT NULL CHECK (sequence >= 0),
    last_timestamp_ns  bigint NOT NULL DEFAULT 0,
    times_in_order     boolean NOT NULL DEFAULT true
);
