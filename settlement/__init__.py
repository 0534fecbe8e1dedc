"""Settlement: the double-entry ledger in PostgreSQL (assets, accounts, deposits, trades, balances)."""
