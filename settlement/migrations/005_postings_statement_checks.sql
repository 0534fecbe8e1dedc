-- Postings are written in batches: one COPY of five rows per trade, thousands of rows at a time.
-- Their three row-level foreign keys (to journal_entries, accounts, assets) ran one look-up
-- and one row lock per row and key, most of PostgreSQL's CPU for a trade batch (measured:
-- 113 -> 51 µs of PostgreSQL CPU per trade without them). They are replaced by the same rules
-- checked once per statement, on the statement's rows as a set (transition tables):
--
--   * a posting names an existing journal entry, account and asset (after INSERT or UPDATE
--     of postings: the statement is refused with foreign_key_violation, as the key was);
--   * a journal entry, account or asset that postings name cannot be deleted or re-keyed
--     (after DELETE or UPDATE of the referenced table: refused the same way).
--
-- What the row locks of a foreign key guarded against (a concurrent delete of the referenced
-- row between the check and the commit) cannot happen here: a posting's entry is written by
-- the same transaction, and the transaction holds the lock on the posting's balance row
-- (account, asset), whose own foreign keys keep the account and the asset.
--
-- The index on (account_id, asset, entry_id) is dropped: no query reads postings by account
-- and asset (account histories use (account_id, entry_id)), and it cost a third of the
-- postings' index writes.

DROP INDEX ledger.postings_account_asset;

ALTER TABLE ledger.postings
    DROP CONSTRAINT postings_entry_id_fkey,
    DROP CONSTRAINT postings_account_id_fkey,
    DROP CONSTRAINT postings_asset_fkey;

CREATE FUNCTION ledger.postings_reference_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wanted_entries bigint[];
    wanted_accounts text[];
    wanted_assets text[];
    missing text;
BEGIN
    SELECT array_agg(DISTINCT entry_id), array_agg(DISTINCT account_id), array_agg(DISTINCT asset)
    INTO wanted_entries, wanted_accounts, wanted_assets
    FROM new_postings;
    IF wanted_entries IS NULL THEN
        RETURN NULL;
    END IF;
    -- Each look-up goes through the referenced table's primary key (= ANY of the distinct keys);
    -- only when a key is missing is it looked for, to name it.
    IF (SELECT count(*) FROM ledger.journal_entries WHERE entry_id = ANY (wanted_entries))
       <> cardinality(wanted_entries) THEN
        SELECT format('journal entry %s', k) INTO missing FROM unnest(wanted_entries) AS k
        WHERE NOT EXISTS (SELECT 1 FROM ledger.journal_entries WHERE entry_id = k) LIMIT 1;
    ELSIF (SELECT count(*) FROM ledger.accounts WHERE account_id = ANY (wanted_accounts))
          <> cardinality(wanted_accounts) THEN
        SELECT format('account %s', k) INTO missing FROM unnest(wanted_accounts) AS k
        WHERE NOT EXISTS (SELECT 1 FROM ledger.accounts WHERE account_id = k) LIMIT 1;
    ELSIF (SELECT count(*) FROM ledger.assets WHERE code = ANY (wanted_assets)) <> cardinality(wanted_assets) THEN
        SELECT format('asset %s', k) INTO missing FROM unnest(wanted_assets) AS k
        WHERE NOT EXISTS (SELECT 1 FROM ledger.assets WHERE code = k) LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('a posting names %s, which does not exist', missing),
            TABLE = 'postings', SCHEMA = 'ledger';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER postings_references_on_insert
    AFTER INSERT ON ledger.postings REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.postings_reference_check();

CREATE TRIGGER postings_references_on_update
    AFTER UPDATE ON ledger.postings REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.postings_reference_check();

-- The referenced side: keys that left the table (deleted or changed) must not be named by a
-- posting. TG_ARGV[0] is the key column of the referenced table, TG_ARGV[1] the postings column.
CREATE FUNCTION ledger.postings_referenced_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    gone text;
BEGIN
    -- The keys that left the table (for an UPDATE, those no row has any more) and that a
    -- posting still names (through the postings index that starts with that column, if any).
    EXECUTE format(
        'SELECT o.k FROM (SELECT DISTINCT %1$I AS k FROM old_keys) o '
        'WHERE NOT EXISTS (SELECT 1 FROM ledger.%3$I t WHERE t.%1$I = o.k) '
        'AND EXISTS (SELECT 1 FROM ledger.postings p WHERE p.%2$I = o.k) LIMIT 1',
        TG_ARGV[0], TG_ARGV[1], TG_TABLE_NAME) INTO gone;
    IF gone IS NOT NULL THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('%s %s is still named by a posting', TG_TABLE_NAME, gone),
            TABLE = TG_TABLE_NAME, SCHEMA = 'ledger';
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    referenced record;
    operation text;
BEGIN
    FOR referenced IN
        SELECT * FROM (VALUES ('journal_entries', 'entry_id', 'entry_id'),
                              ('accounts', 'account_id', 'account_id'),
                              ('assets', 'code', 'asset')) AS t(name, key, posting_column)
    LOOP
        FOREACH operation IN ARRAY ARRAY['delete', 'update'] LOOP
            EXECUTE format(
                'CREATE TRIGGER %1$I AFTER %2$s ON ledger.%3$I REFERENCING OLD TABLE AS old_keys '
                'FOR EACH STATEMENT EXECUTE FUNCTION ledger.postings_referenced_check(%4$L, %5$L)',
                format('postings_reference_%s_on_%s', referenced.name, operation), upper(operation),
                referenced.name, referenced.key, referenced.posting_column);
        END LOOP;
    END LOOP;
END
$$;
