"""Instruments as risk knows them: a cache over the instruments risk keeps in Redis.

Risk learns instruments the way it learns fills: from trading's event stream
(an ``instrument_created`` event), stored in Redis with the event's sequence
(risk/store.py). Risk never asks trading. Only one replica receives the
stream, so every replica reads the instruments from Redis: all of them when it
starts, and again on a miss (concurrent misses share one refresh). A symbol
still unknown after the refresh is unknown (the caller is told UNKNOWN_SYMBOL
and may retry: trading has not delivered that instrument to risk yet). A Redis
error is raised as is; the servicer answers it with REDIS_UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation

import structlog

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.money import InstrumentMath

log = structlog.get_logger("backbone.risk")

Loader = Callable[[], Awaitable[Sequence[common_pb2.Instrument]]]


def instrument_problem(instrument: common_pb2.Instrument) -> str | None:
    """Why risk cannot size reservations or apply trades with `instrument`; None when it can."""
    for name, problem in (
        ("symbol", ids.symbol_problem(instrument.symbol)),
        ("base_asset", ids.asset_code_problem(instrument.base_asset)),
        ("quote_asset", ids.asset_code_problem(instrument.quote_asset)),
    ):
        if problem:
            return f"{name} {problem}"
    if instrument.base_minor_per_lot <= 0 or instrument.quote_minor_per_tick_lot <= 0:
        return "base_minor_per_lot and quote_minor_per_tick_lot must be positive"
    for name in ("tick_size", "lot_size"):
        try:
            if not Decimal(getattr(instrument, name)) > 0:
                return f"{name} must be positive"
        except InvalidOperation:
            return f"{name} is not a decimal"
    return None


class InstrumentCache:
    """Instruments by symbol, with their integer arithmetic; `loader` reads them all from Redis."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self._by_symbol: dict[str, InstrumentMath] = {}
        self._lock = asyncio.Lock()
        self._started = 0  # refreshes started
        self._fresh = 0  # the start number of the latest successful refresh

    def __len__(self) -> int:
        return len(self._by_symbol)

    def put(self, instrument: common_pb2.Instrument) -> None:
        """Add or replace one instrument (one this replica has just stored)."""
        self._by_symbol[instrument.symbol] = InstrumentMath.of(instrument)

    def cached(self, symbol: str) -> InstrumentMath | None:
        return self._by_symbol.get(symbol)

    async def refresh(self) -> None:
        """Read every instrument from Redis again (at start); Redis errors are raised."""
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_locked(self) -> None:
        self._started += 1
        ticket = self._started
        instruments = await self._loader()
        for instrument in instruments:
            problem = instrument_problem(instrument)
            if problem is not None:
                log.error("stored instrument unusable; left out", symbol=instrument.symbol, why=problem)
                continue
            self.put(instrument)
        self._fresh = ticket
        log.info("instruments refreshed", count=len(instruments))

    async def lookup(self, symbols: Iterable[str]) -> dict[str, InstrumentMath]:
        """The known instruments among `symbols`, after at most one refresh for the misses.

        Raises what the loader raises (a Redis error) when a refresh was needed and failed.
        """
        wanted = set(symbols)
        found = {s: m for s in wanted if (m := self._by_symbol.get(s)) is not None}
        if len(found) == len(wanted):
            return found
        started_before_miss = self._started
        async with self._lock:
            # Refresh unless a refresh that started after the miss has succeeded meanwhile.
            if self._fresh <= started_before_miss:
                await self._refresh_locked()
        return {s: m for s in wanted if (m := self._by_symbol.get(s)) is not None}

    async def get(self, symbol: str) -> InstrumentMath | None:
        """One instrument, refreshing on a miss; None when risk has not learned it."""
        return (await self.lookup((symbol,))).get(symbol)
