-- The journal's record kinds are the JournalRecord oneof of trading.proto, which grows
-- (fences of orders whose outcome was unknown, risk's epoch after a rebuild, and the
-- order types to come); listing them again here made every new kind a migration. The
-- column keeps a format check; trading/journal.py names the kinds each outbox reads.

ALTER TABLE trading.journal DROP CONSTRAINT journal_kind_check;
ALTER TABLE trading.journal ADD CONSTRAINT journal_kind_format CHECK (kind ~ '^[a-z][a-z_]{0,39}$');
