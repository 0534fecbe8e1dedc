"""The asyncio client's market data stream: local books kept up to date, gaps healed by itself."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import grpc

from backbone.gateway.v1 import gateway_pb2

from ._errors import BackboneError, backoff_seconds, should_retry
from ._market_data import LocalBooks, MarketDataEvent
from ._models import OrderBook


class AsyncMarketDataStream(AsyncIterator[MarketDataEvent]):
    """Events of the followed symbols, each with the book after it (see ``client.market_data``).

    ``async with client.market_data([...]) as events:`` returns once the
    snapshots are in; ``async for event in events`` reads on. A lost message
    or a break worth retrying opens a new call by itself (``gaps``,
    ``reconnects``); a refusal, or ``max_attempts`` failures in a row, raises
    :class:`BackboneError`.
    """

    def __init__(self, open_call: Callable[[], Any], *, max_attempts: int = 3) -> None:
        self._open = open_call
        self._max_attempts = max(1, max_attempts)
        self._books = LocalBooks()
        self._pending: deque[MarketDataEvent] = deque()
        self._call: Any = None
        self._closed = False
        self._failures = 0
        self.gaps = 0
        self.reconnects = 0

    async def start(self) -> AsyncMarketDataStream:
        """Open the call and apply its first message (the snapshots); raises its refusal."""
        if self._call is None:
            self._call = self._open()
            await self._fill()
        return self

    def book(self, symbol: str) -> OrderBook | None:
        """The local book of `symbol` as of the last event handed out or queued."""
        return self._books.book(symbol)

    def __aiter__(self) -> AsyncMarketDataStream:
        return self

    async def __anext__(self) -> MarketDataEvent:
        await self.start()
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            await self._fill()
        return self._pending.popleft()

    async def _receive(self) -> gateway_pb2.StreamMarketDataResponse | None:
        response = await self._call.read()
        return response if isinstance(response, gateway_pb2.StreamMarketDataResponse) else None

    async def _fill(self) -> None:
        """Read one message into events, or heal the stream after a gap or a break."""
        try:
            response = await self._receive()
        except grpc.RpcError as rpc_error:
            if self._closed:
                return
            error = BackboneError.from_rpc_error(rpc_error)
            self._failures += 1
            if not should_retry(error) or self._failures >= self._max_attempts:
                self.close()
                raise error from None
            await asyncio.sleep(backoff_seconds(self._failures))
            self._reopen()
            return
        except asyncio.CancelledError:
            if self._closed:
                return
            raise
        if response is None:  # the gateway ended the call
            if not self._closed:
                self._reopen()
            return
        self._failures = 0
        events, gap = self._books.take(response)
        self._pending.extend(events)
        if gap:
            self.gaps += 1
            self._reopen()

    def _reopen(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self.reconnects += 1
        self._books.new_call()
        self._call = self._open()

    def close(self) -> None:
        """Stop following."""
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> AsyncMarketDataStream:
        try:
            return await self.start()
        except BaseException:
            self.close()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
