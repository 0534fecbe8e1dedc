"""Risk's state is a cache: whether it can be trusted now, and how it is rebuilt when it cannot.

Redis holds a cache of risk's state, never the only copy: balances are the ledger's, and what
open orders hold is what trading's open orders need. The state carries an epoch
(``risk:epoch``); every script that changes it checks the caller's epoch, and reservations are
made only once the epoch is ready (``risk:ready``). When the epoch is gone (Redis flushed or
replaced, or never built), risk reports NOT_SERVING, refuses reservations with UNAVAILABLE
(RISK_REBUILDING, never a wrong INSUFFICIENT_BALANCE), and rebuilds by itself:

1. One risk process takes a short lock, wipes what is left of the old state (writes of an
   older epoch that raced the flush), and starts a new epoch (not ready).
2. Settlement's ledger outbox connects; risk asks for a snapshot: every customer balance at one
   ledger point, the last ledger event it includes, and how far each trading shard's trades
   are in it (T per shard). Deposits after that point follow as events.
3. Each trading shard's outbox connects; risk asks for its open orders: trading journals the new
   epoch at sequence J (orders reserved in an older epoch are refused from then on: their
   reservation is not in the new state) and sends the open orders at J. Risk holds what each
   needs, then applies the shard's events after T: those at or below J change totals only (the
   open orders at J already reflect them), later ones apply in full.
4. When the ledger is in and every shard's events have reached its J, the epoch is ready.

Nothing is applied twice: the cursors start where the snapshots end. No money is invented:
balances come only from the ledger's own snapshot and events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

import structlog
from redis import exceptions as redis_errors

from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, unavailable
from risk.store import RiskStore, StaleEpochError

log = structlog.get_logger("backbone.risk")

T = TypeVar("T")

LEDGER_DONE = "ledger"
# How long the wiping process holds the rebuild lock at most (it releases it when done).
LOCK_SECONDS = 10.0


def snapshot_field(source: str) -> str:
    """The rebuild's record of a trading shard's open-orders snapshot (its journal sequence)."""
    return f"trading:{source}"


def caught_up_field(source: str) -> str:
    """The rebuild's record that a shard's events reached its snapshot's sequence."""
    return f"caught-up:{source}"


def expected_field(source: str) -> str:
    """A shard the rebuild waits for (named by the ledger's trade cursors)."""
    return f"expect:{source}"


def complete(progress: dict[str, str], shards: Iterable[str]) -> bool:
    """Whether a rebuild's progress covers the ledger and every shard it must wait for."""
    if LEDGER_DONE not in progress:
        return False
    expected = set(shards) | {f.removeprefix("expect:") for f in progress if f.startswith("expect:")}
    return all(caught_up_field(shard) in progress for shard in expected)


HealthSetter = Callable[[bool, str], Awaitable[None]]


class RiskState:
    """Watches risk's epoch in Redis; starts and completes rebuilds; says whether to serve."""

    def __init__(
        self,
        store: RiskStore,
        shards: Iterable[str],
        *,
        poll_seconds: float = 0.1,
        on_health: HealthSetter | None = None,
    ) -> None:
        self.store = store
        self.shards = tuple(shards)
        self.poll_seconds = poll_seconds
        self.ready_epoch: str | None = None
        self.detail = "starting"
        self._owner = uuid.uuid4().hex
        self._on_health = on_health
        self._task: asyncio.Task[None] | None = None
        self._rebuild_started: float | None = None
        self._serving: bool | None = None
        # Per epoch a stream works in: set once that epoch is no longer the state's.
        self._gone: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        await self.check()
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="risk-state")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def require_ready(self) -> str:
        """The epoch reservations are made in; UNAVAILABLE while the state is being rebuilt."""
        if self.ready_epoch is None:
            raise unavailable(
                RejectReason.RISK_REBUILDING,
                f"risk is rebuilding its state from the ledger and trading ({self.detail}); "
                "nothing was done; retry shortly",
            )
        return self.ready_epoch

    def stale(self) -> ServiceError:
        """The error for a caller whose epoch is gone (it reconnects and learns the new one)."""
        self.ready_epoch = None
        return unavailable(
            RejectReason.RISK_REBUILDING,
            "risk's state changed under this call (flushed or rebuilt); nothing was done; retry shortly",
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.check()
            except (redis_errors.ConnectionError, redis_errors.TimeoutError) as error:
                self.ready_epoch = None
                self.detail = f"Redis unreachable: {error}"
                await self._health(False)
            except Exception:  # the watcher must outlive any one failure
                log.exception("risk state check failed")

    def gone(self, epoch: str) -> asyncio.Event:
        """An event set once `epoch` is no longer the state's (a stream in it must end)."""
        event = self._gone.get(epoch)
        if event is None:
            event = self._gone[epoch] = asyncio.Event()
        return event

    async def until_gone(self, epoch: str, requests: AsyncIterator[T]) -> AsyncIterator[T]:
        """The items of `requests` while `epoch` is the state's; UNAVAILABLE once it is gone.

        A stream that idles would otherwise keep its sender connected to a state that no
        longer exists: ended, the sender reconnects and learns the new epoch in its hello.
        """
        gone = self.gone(epoch)
        waiter = asyncio.ensure_future(gone.wait())
        try:
            while True:
                following = asyncio.ensure_future(anext(requests))
                await asyncio.wait({following, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                        await following
                    raise self.stale()
                try:
                    item = following.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            waiter.cancel()

    async def check(self) -> None:
        """One look at the epoch: adopt a ready one, start a rebuild, or complete one."""
        epoch, ready = await self.store.epochs()
        for watched, event in list(self._gone.items()):
            if watched != epoch:
                event.set()
                del self._gone[watched]
        if epoch is not None and ready == epoch:
            if self.ready_epoch != epoch:
                if self._rebuild_started is not None:
                    log.info(
                        "risk state ready",
                        epoch=epoch,
                        rebuild_seconds=round(time.monotonic() - self._rebuild_started, 3),
                    )
                    self._rebuild_started = None
                else:
                    log.info("risk state ready", epoch=epoch)
                self.ready_epoch = epoch
                self.detail = "ready"
            await self._health(True)
            return
        if self.ready_epoch is not None or self._rebuild_started is None:
            log.warning("risk state untrusted: rebuilding from the ledger and trading", epoch=epoch)
            self._rebuild_started = time.monotonic()
        self.ready_epoch = None
        await self._health(False)
        if epoch is None:
            self.detail = "starting a rebuild"
            if await self.store.take_rebuild_lock(self._owner, LOCK_SECONDS):
                new_epoch = uuid.uuid4().hex
                deleted = await self.store.start_epoch(new_epoch)
                await self.store.release_rebuild_lock()
                log.info("risk rebuild started", epoch=new_epoch, stale_keys_deleted=deleted)
            return
        progress = await self.store.rebuild_progress()
        if progress.get("epoch") != epoch:
            # An epoch that is neither ready nor being rebuilt (its ready mark or its rebuild's
            # progress was lost): nothing would ever complete it, so start over.
            log.warning("risk state epoch with no rebuild under way; starting a new rebuild", epoch=epoch)
            await self.store.drop_epoch(epoch)
            return
        self.detail = _describe(progress, self.shards)
        if complete(progress, self.shards):
            with contextlib.suppress(StaleEpochError):
                await self.store.finish_rebuild(epoch)

    async def _health(self, serving: bool) -> None:
        if self._on_health is not None and serving != self._serving:
            self._serving = serving
            await self._on_health(serving, self.detail)

    async def step_done(self, epoch: str, field: str, value: str) -> None:
        """Record a step of `epoch`'s rebuild and finish it when it was the last."""
        await self.store.mark_rebuild(epoch, field, value)
        progress = await self.store.rebuild_progress()
        if complete(progress, self.shards) and await self.store.finish_rebuild(epoch):
            await self.check()


def _describe(progress: dict[str, str], shards: Iterable[str]) -> str:
    """Where a rebuild stands, for health details and refusals."""
    if not progress:
        return "starting a rebuild"
    if LEDGER_DONE not in progress:
        return "waiting for the ledger's balances"
    waiting = [
        shard
        for shard in sorted(
            set(shards) | {f.removeprefix("expect:") for f in progress if f.startswith("expect:")}
        )
        if caught_up_field(shard) not in progress
    ]
    return f"waiting for trading's open orders and events of {', '.join(waiting)}" if waiting else "finishing"
