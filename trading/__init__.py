"""The trading service: instruments, order books, matching and the order lifecycle.

``book`` and ``engine`` are pure and deterministic; ``journal`` is the
PostgreSQL adapter (the journal is also the outbox to settlement and risk);
``servicer`` serves TradingService; ``app`` composes them.
"""
