"""The risk service: pre-trade reservations and balances as risk sees them, in Redis."""
