"""Instruments as risk knows them: a cache filled from TradingService.ListInstruments.

Risk needs an instrument's integer conversions to size reservations and to
apply trades. The cache is filled on first use and refreshed on a miss
(concurrent misses share one refresh); a symbol still unknown after the
refresh is unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.money import InstrumentMath
from backbone.runtime.config import Settings
from backbone.runtime.context import outgoing_metadata
from backbone.runtime.errors import ServiceError, from_rpc_error
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc

log = structlog.get_logger("backbone.risk")

Lister = Callable[[], Awaitable[Sequence[common_pb2.Instrument]]]


class InstrumentsUnavailableError(RuntimeError):
    """The instrument list could not be fetched from trading."""

    def __init__(self, error: ServiceError) -> None:
        self.error = error
        super().__init__(f"cannot list instruments from trading: {error}")


def trading_lister(channel: grpc.aio.Channel, settings: Settings) -> Lister:
    """A Lister calling TradingService.ListInstruments on `channel`."""
    stub = trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]

    async def list_instruments() -> Sequence[common_pb2.Instrument]:
        try:
            response = await stub.ListInstruments(
                trading_pb2.ListInstrumentsRequest(),
                timeout=settings.call_timeout_seconds,
                metadata=outgoing_metadata(),
            )
        except grpc.RpcError as error:
            raise InstrumentsUnavailableError(from_rpc_error(error)) from error
        return list(response.instruments)

    return list_instruments


class InstrumentCache:
    """Instruments by symbol, with their integer arithmetic."""

    def __init__(self, lister: Lister) -> None:
        self._lister = lister
        self._by_symbol: dict[str, InstrumentMath] = {}
        self._lock = asyncio.Lock()
        self._started = 0  # refreshes started
        self._fresh = 0  # the start number of the latest successful refresh

    def put(self, instrument: common_pb2.Instrument) -> None:
        """Add or replace one instrument."""
        self._by_symbol[instrument.symbol] = InstrumentMath.of(instrument)

    def cached(self, symbol: str) -> InstrumentMath | None:
        return self._by_symbol.get(symbol)

    async def refresh(self) -> None:
        """Fetch the whole list again; raises InstrumentsUnavailableError."""
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_locked(self) -> None:
        self._started += 1
        ticket = self._started
        instruments = await self._lister()
        for instrument in instruments:
            self.put(instrument)
        self._fresh = ticket
        log.info("instruments refreshed", count=len(instruments))

    async def lookup(self, symbols: Iterable[str]) -> dict[str, InstrumentMath]:
        """The known instruments among `symbols`, after at most one refresh for the misses.

        Raises InstrumentsUnavailableError when a refresh was needed and failed.
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
        """One instrument, refreshing on a miss; None when trading does not know it."""
        return (await self.lookup((symbol,))).get(symbol)
