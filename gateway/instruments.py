"""Reference data caches: instruments (from trading) and asset scales (from settlement).

Both are read-mostly and small. A miss refreshes the whole list once:
concurrent misses share one refresh, and a refresh is skipped when another
one started after the miss was seen (its answer is fresh enough) or less
than `min_refresh_interval_seconds` ago, so a stream of unknown symbols
cannot turn into a stream of calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic, TypeVar

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import unavailable

Item = TypeVar("Item")


class RefreshingCache(Generic[Item]):
    """Items by key, loaded as a whole list and refreshed on a miss."""

    def __init__(
        self,
        load: Callable[[], Awaitable[Sequence[Item]]],
        key_of: Callable[[Item], str],
        *,
        min_refresh_interval_seconds: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._key_of = key_of
        self._items: dict[str, Item] = {}
        self._lock = asyncio.Lock()
        self._min_interval = min_refresh_interval_seconds
        self._clock = clock
        self._last_refresh_started = float("-inf")
        self._loaded_once = False

    def peek(self, key: str) -> Item | None:
        """The cached item, without any call."""
        return self._items.get(key)

    def put(self, item: Item) -> None:
        """Remember an item this process just created."""
        self._items[self._key_of(item)] = item

    async def refresh(self) -> list[Item]:
        """Load the whole list now; returns it."""
        self._last_refresh_started = self._clock()
        items = list(await self._load())
        self._items = {self._key_of(item): item for item in items}
        self._loaded_once = True
        return items

    async def get(self, key: str) -> Item | None:
        """The item for `key`, refreshing once on a miss; None when it does not exist."""
        item = self._items.get(key)
        if item is not None:
            return item
        missed_at = self._clock()
        async with self._lock:
            item = self._items.get(key)
            if item is not None:
                return item
            started = self._last_refresh_started
            fresh_enough = started >= missed_at or (
                self._loaded_once and self._clock() - started < self._min_interval
            )
            if not fresh_enough:
                await self.refresh()
            return self._items.get(key)

    def values(self) -> Iterable[Item]:
        return self._items.values()


class InstrumentCache(RefreshingCache[common_pb2.Instrument]):
    """Instruments by symbol, from TradingService.ListInstruments (of every trading shard).

    A symbol it does not have is unknown only when every shard has listed its instruments: while
    one never has (it could not be reached since the gateway started), `get` answers UNAVAILABLE
    (TRADING_UNAVAILABLE) naming it rather than calling the symbol unknown.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[Sequence[common_pb2.Instrument]]],
        *,
        unlisted: Callable[[], Sequence[str]] = lambda: (),
        min_refresh_interval_seconds: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            load,
            lambda instrument: instrument.symbol,
            min_refresh_interval_seconds=min_refresh_interval_seconds,
            clock=clock,
        )
        self._unlisted = unlisted

    async def get(self, key: str) -> common_pb2.Instrument | None:
        instrument = await super().get(key)
        if instrument is None:
            unlisted = self._unlisted()
            if unlisted:
                raise unavailable(
                    RejectReason.TRADING_UNAVAILABLE,
                    f"{key[:40]!r} may be an instrument of trading shard {', '.join(unlisted)}, which "
                    "cannot be reached; retry",
                )
        return instrument


class AssetScales:
    """Asset scales by code, from SettlementService.ListAssets (scales never change)."""

    def __init__(
        self,
        load: Callable[[], Awaitable[Sequence[tuple[str, int]]]],
        *,
        min_refresh_interval_seconds: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: RefreshingCache[tuple[str, int]] = RefreshingCache(
            load,
            lambda asset: asset[0],
            min_refresh_interval_seconds=min_refresh_interval_seconds,
            clock=clock,
        )

    def put(self, code: str, scale: int) -> None:
        self._cache.put((code, scale))

    def peek(self, code: str) -> int | None:
        item = self._cache.peek(code)
        return None if item is None else item[1]

    async def scale_of(self, code: str) -> int | None:
        item = await self._cache.get(code)
        return None if item is None else item[1]
