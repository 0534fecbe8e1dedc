-- Snapshots of a shard's engine (trading/snapshots.py): the state at a journal sequence, so a start
-- loads the newest readable one and replays only the journal after it. `format` names the engine
-- code that wrote it (a snapshot of another version is not loaded: the journal is replayed whole);
-- `state_hash` is the engine's digest at `sequence`, checked after loading.
CREATE TABLE trading.snapshots (
    shard       text        NOT NULL,
    sequence    bigint      NOT NULL CHECK (sequence >= 0),
    format      text        NOT NULL CHECK (octet_length(format) BETWEEN 1 AND 100),
    state_hash  text        NOT NULL CHECK (state_hash ~ '^[0-9a-f]{64}$'),
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, sequence, format)
);
