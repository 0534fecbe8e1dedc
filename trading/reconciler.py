"""No reservation outlives its order: trading reconciles risk's reservations against its journal.

A reservation is made by the gateway before trading sees the order. Normally trading's events
release it (a fill, a cancel, a fence of an order whose outcome was unknown), but an order can
be lost on its way with nobody left to resolve it (a gateway that crashed after its reserve, a
stream cut with the order in it). Every ``interval`` the reconciler pages through risk's
reservations older than ``grace`` (longer than any order can still be on its way: after it, a
late order would be refused by its fence anyway) whose symbol this shard trades, and looks each
up on the engine loop:

- open here: it needs its reservation; nothing to do;
- journaled and closed: trading's events release it; risk applies them (logged if it has not
  after the grace, which would be a fault of its own);
- never journaled: it is fenced (an ``order_fenced`` record, the same as ResolveOrders), so it
  can never be accepted later, and risk releases the reservation when the fence reaches it.

A hold marked for a replace (GrowForReplace) whose gateway died before trading answered it, so
that nobody asks ResolveReplaces, is settled the same way: a mark (order id, replace id) the
reconciler has kept seeing for ``grace`` (longer than any replace can still be on its way) is
resolved on the engine loop with Engine.resolve_replace: applied (risk is still to apply the
OrderReplaced, which unmarks it), the order gone (its close released the hold), or fenced (a
``replace_fenced`` record: risk gives the grow back and unmarks it; a replace still on its way
would be refused REPLACE_FENCED). Risk records no time for a mark, so the reconciler remembers
when it first saw each one (bounded: at most MAX_MARKS; marks no longer listed are forgotten).

Trading does this rather than risk because trading is the system of record for orders and the
only one that can fence one; it reads risk's reservations over the call it already makes to
risk, so no service gains a new direction of calls, and the release reaches risk exactly once,
through the journal and its outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.context import outgoing_metadata
from backbone.trading.v1 import trading_pb2
from trading.engine import Engine
from trading.engine_loop import EngineLoop

log = structlog.get_logger("backbone.trading")

PAGE_SIZE = 1000
# Replace marks remembered between passes (first seen); beyond it new marks wait for a later pass.
MAX_MARKS = 100_000
# Order ids fenced per engine-loop call (one journal batch).
FENCE_BATCH = 500


class ReservationReconciler:
    """Fences the orders risk holds reservations for that this shard never journaled."""

    def __init__(
        self,
        loop: EngineLoop,
        risk: risk_pb2_grpc.RiskServiceStub,
        *,
        interval_seconds: float,
        grace_seconds: float,
        call_timeout_seconds: float,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self._risk = risk
        self._interval = interval_seconds
        self._grace_ms = int(grace_seconds * 1000)
        self._timeout = call_timeout_seconds
        self._on_fenced = on_fenced
        self._task: asyncio.Task[None] | None = None
        # (order id, replace id) -> (account id, symbol, monotonic seconds when first listed).
        self._marks: dict[tuple[str, str], tuple[str, str, float]] = {}

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="trading-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.reconcile_once()
            except grpc.RpcError as error:  # risk away or rebuilding: next round
                log.info("reconciliation skipped: risk did not answer", why=f"{error.code().name}")
            except Exception:  # the reconciler must outlive any one failure
                log.exception("reconciliation failed")

    async def reconcile_once(self) -> int:
        """One pass over risk's reservations; returns how many orders and replaces it fenced."""
        token = ""
        fenced = 0
        marks: dict[tuple[str, str], tuple[str, str, float]] = {}
        now = time.monotonic()
        while True:
            page = await self._risk.ListReservations(
                risk_pb2.ListReservationsRequest(
                    page_token=token, page_size=PAGE_SIZE, older_than_ms=self._grace_ms
                ),
                timeout=self._timeout,
                metadata=outgoing_metadata(),
            )
            candidates = [(r.order_id, r.account_id, r.symbol) for r in page.reservations]
            for r in page.reservations:
                key = (r.order_id, r.replace_id)
                if r.replace_id and (key in self._marks or len(marks) < MAX_MARKS):
                    marks[key] = self._marks.get(key, (r.account_id, r.symbol, now))
            for start in range(0, len(candidates), FENCE_BATCH):
                fenced += await self._settle(candidates[start : start + FENCE_BATCH])
            token = page.next_page_token
            if not token:
                break
        self._marks = marks
        stale = [
            (o, a, r, s) for (o, r), (a, s, seen) in marks.items() if now - seen >= self._grace_ms / 1000
        ]
        replaces = 0
        for start in range(0, len(stale), FENCE_BATCH):
            replaces += await self._settle_marks(stale[start : start + FENCE_BATCH])
        if fenced:
            log.warning("reservations without an order fenced and released", orders=fenced)
        if (fenced or replaces) and self._on_fenced is not None:
            self._on_fenced()
        return fenced + replaces

    async def _settle(self, candidates: list[tuple[str, str, str]]) -> int:
        """Fence, on the engine loop, the candidates of this shard's symbols it never journaled."""
        engine: Engine = self._loop.engine

        def run(
            timestamp_ns: int,
            records: list[trading_pb2.JournalRecord],
            reports: list[common_pb2.ExecutionReport],
        ) -> tuple[int, list[str]]:
            fenced = 0
            closed_but_held: list[str] = []
            for order_id, account_id, symbol in candidates:
                if symbol not in engine.instruments:
                    continue  # another shard's order
                order = engine.orders.get(order_id)
                if order is not None:
                    if order.leaves_lots == 0:
                        closed_but_held.append(order_id)
                    continue
                found, fence = engine.resolve_order(order_id, account_id, timestamp_ns)
                if found is None and fence:
                    records += fence
                    fenced += 1
            return fenced, closed_but_held

        # An order the engine forgot (closed, in the report history) is taken back in first, so it is
        # held, never fenced.
        looked_up = [
            trading_pb2.NewOrder(order_id=order_id, account_id=account_id)
            for order_id, account_id, _ in candidates
        ]
        fenced, closed_but_held = await self._loop.call(run, looked_up)
        if closed_but_held:
            log.warning(
                "risk still holds reservations of closed orders after the grace period; "
                "trading's release events should have freed them",
                orders=len(closed_but_held),
                order_ids=closed_but_held[:20],
            )
        return int(fenced)

    async def _settle_marks(self, marks: list[tuple[str, str, str, str]]) -> int:
        """Resolve, on the engine loop, the long-standing replace marks (order id, account id, replace
        id, symbol) of this shard's symbols; returns how many replaces it fenced."""
        engine: Engine = self._loop.engine

        def run(
            timestamp_ns: int,
            records: list[trading_pb2.JournalRecord],
            reports: list[common_pb2.ExecutionReport],
        ) -> list[str]:
            fenced: list[str] = []
            for order_id, account_id, replace_id, symbol in marks:
                if symbol not in engine.instruments:
                    continue  # another shard's order
                _, _, fence = engine.resolve_replace(order_id, account_id, replace_id, timestamp_ns)
                if fence:
                    records += fence
                    fenced.append(order_id)
            return fenced

        fenced: list[str] = await self._loop.call(run)
        if fenced:
            log.warning(
                "replaces nobody resolved fenced: risk gives their grows back",
                replaces=len(fenced),
                order_ids=fenced[:20],
            )
        for order_id, _, replace_id, _ in marks:
            self._marks.pop((order_id, replace_id), None)
        return len(fenced)
