-- The report history (trading/history.py): every execution report of a journaled command, by
-- account and its per-account number (ExecutionReport.account_sequence: 1, 2, 3... per account),
-- so StreamExecutions can resume from a number and GetOrder can answer for an order the engine no
-- longer holds (a closed one: its last report has its final state). Derived like the fills
-- projection: trading writes it in the background after each commit (and from its start's replay),
-- rows and high-water mark in one transaction; the engine regenerates every report deterministically,
-- so a missing or emptied history is rebuilt from the journal (the mark at 0).
--
-- `sequence` is the journal sequence of the command that produced the report; `report` is the
-- serialized backbone.common.v1.ExecutionReport.
CREATE TABLE trading.reports (
    shard             text   NOT NULL,
    account_id        text   NOT NULL,
    account_sequence  bigint NOT NULL CHECK (account_sequence > 0),
    order_id          text   NOT NULL,
    client_order_id   text   NOT NULL,
    symbol            text   NOT NULL,
    sequence          bigint NOT NULL CHECK (sequence > 0),
    report            bytea  NOT NULL,
    PRIMARY KEY (shard, account_id, account_sequence)
);

-- GetOrder of an order the engine forgot: its last report.
CREATE INDEX reports_by_order ON trading.reports (shard, order_id, account_sequence);

-- Every journaled new order (the serialized trading.v1.NewOrder as journaled, at the sequence it was
-- journaled): a new order whose client order id the engine does not hold is looked up here, so client
-- order ids stay unique per account across history, and a retry of a closed order is compared with
-- the order as it was sent.
CREATE TABLE trading.history_orders (
    shard            text   NOT NULL,
    order_id         text   NOT NULL,
    account_id       text   NOT NULL,
    client_order_id  text   NOT NULL,
    sequence         bigint NOT NULL CHECK (sequence > 0),
    new_order        bytea  NOT NULL,
    PRIMARY KEY (shard, order_id)
);

CREATE INDEX history_orders_by_client_id ON trading.history_orders (shard, account_id, client_order_id, sequence);

-- How far each shard's history has read its journal: the reports and new orders of every command at
-- or below `sequence` are above.
CREATE TABLE trading.history_projection (
    shard     text PRIMARY KEY,
    sequence  bigint NOT NULL CHECK (sequence >= 0)
);
