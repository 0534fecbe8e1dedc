"""Closed orders leave the engine's memory once the report history holds them.

Which: every order that a committed batch's reports show closed (filled, cancelled, expired), noted
with the batch's last journal sequence (:meth:`Retention.note`, an ``EngineLoop.on_reports``
callback), and at start every closed order the snapshot and the replay rebuilt, noted at the
replay's last sequence (:meth:`Retention.note_closed`). When: once both the report history and the
fills projection (whose rows name each side's client order id, read from the engine's orders) have
written through that sequence. The engine loop forgets them at the start of a batch
(:meth:`Retention.forget_written`), never between a batch's look-up and its application.

A new order whose ids the engine no longer holds must still meet them: client order ids are unique
per account across history (trading is their authority; risk's Redis claim is a cache), and an
order id is never reused. So when a request's work is queued, its new orders whose client order id
and order id are not in memory, and that the engine's filter of every journaled id says may have
been journaled (trading/seen_ids.py: fresh ids, nearly all of them, make no query), are looked up
in the history (:meth:`Retention.look_up`: one query at a
time, each for every look-up made while the one before ran; it runs while the work waits), and before
its batch is applied what was found is taken back into memory (:meth:`Retention.recall`): the engine
then answers a retry of a closed order ACCEPTED with the original, a different order under its
client order id DUPLICATE_CLIENT_ORDER_ID, a reused order id DUPLICATE_ORDER_ID, exactly as
while it was held; the recalled orders are forgotten again at the next batch.

Memory is then bounded by the open orders plus the closed ones the history (or the fills
projection) has not written yet. Two kinds of order wait longer: the one the open-order index
(trading/open_orders.py) took in last (the index walks the engine's orders back to it), and those
closed after the history's mark when a look-up still unfinished started (one the engine held then
must not leave before that look-up's orders are applied: the look-up did not ask for it).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Sequence

from backbone.common.v1 import common_pb2
from backbone.runtime.tasks import stop_task
from backbone.trading.v1 import trading_pb2
from trading.engine import Engine, OrderState
from trading.history import ReportHistory
from trading.watermark import Watermark

_CLOSED = frozenset(
    (common_pb2.ORDER_STATUS_FILLED, common_pb2.ORDER_STATUS_CANCELLED, common_pb2.ORDER_STATUS_EXPIRED)
)
_OPEN = (common_pb2.ORDER_STATUS_NEW, common_pb2.ORDER_STATUS_PARTIALLY_FILLED)


class Retention:
    """Closed orders waiting to be written, and forgetting them once they are."""

    def __init__(
        self, history: ReportHistory, projections: Sequence[Watermark], kept: Callable[[], str | None]
    ) -> None:
        self._history = history
        # Every projection that must hold an order before the engine forgets it (the history itself
        # and the fills projection), and the order id that must stay for now (the open-order
        # index's newest).
        self._projections = (history, *projections)
        self._kept = kept
        # (journal sequence through which its reports are committed, order id), oldest first.
        self._closed: deque[tuple[int, str]] = deque()
        # The history's mark when each unfinished look-up started -> how many started then; the
        # look-ups gathered for the next query, and the task running queries.
        self._pending: Counter[int] = Counter()
        self._next: _Query | None = None
        self._querying: asyncio.Task[None] | None = None
        self.forgotten = 0
        self.recalled = 0
        # History queries run (each serves every look-up gathered while the one before ran).
        self.queries = 0

    @property
    def waiting(self) -> int:
        """Closed orders still in memory, waiting for the history to write them."""
        return len(self._closed)

    def note(
        self, records: list[trading_pb2.JournalRecord], reports: list[common_pb2.ExecutionReport]
    ) -> None:
        """A committed batch (an EngineLoop.on_reports callback): note the orders it closed."""
        sequence = records[-1].sequence
        closed = self._closed
        for report in reports:
            order = report.order  # read once: a submessage wrapper not kept is made again at each access
            if order.status in _CLOSED:
                closed.append((sequence, order.order_id))

    def note_closed(self, engine: Engine) -> None:
        """At start: every closed order the snapshot and the replay left in memory."""
        sequence = engine.last_sequence
        self._closed.extend(
            (sequence, order.order_id) for order in engine.orders.values() if order.status not in _OPEN
        )

    def forget_written(self, engine: Engine) -> int:
        """Forget the noted orders every projection has written; how many were forgotten."""
        through = min(projection.projected_sequence for projection in self._projections)
        if self._pending:
            through = min(through, min(self._pending))
        closed = self._closed
        kept = self._kept()
        ready: list[str] = []
        later: list[tuple[int, str]] = []
        while closed and closed[0][0] <= through:
            noted = closed.popleft()
            if noted[1] == kept:
                later.append(noted)
            else:
                ready.append(noted[1])
        closed.extendleft(reversed(later))
        forgotten = engine.forget(ready) if ready else 0
        self.forgotten += forgotten
        return forgotten

    def look_up(self, engine: Engine, new_orders: Sequence[trading_pb2.NewOrder]) -> Lookup:
        """Start looking up in the history, in one query, the new orders' ids that no open order of
        the engine holds now (none: no query). Until the look-up is released, no order closed after
        the history's present mark is forgotten: so an order that holds one of the ids when the
        batch is applied is either in memory then or in what the query read (an open order now
        closes after the mark; a closed one in memory closed before it, or after and stays).

        An id the engine's filter of journaled ids (``Engine.seen_ids``, trading/seen_ids.py) has
        never seen is not looked up: the filter has no false negatives, and the engine tells it
        each order as it applies the order, before the batch is journaled, so before the history
        can hold any report of it (the history writes committed batches only, and a snapshot plus
        replay rebuilds the filter before any work is taken). An id it has not seen now was
        therefore never journaled, and no order in the history holds it; an order that takes it
        after now is applied before this work's batch and is in memory then (the paragraph above).
        Only retries and reuses, and the filter's false positives (under 1% per id), are queried."""
        orders, client_orders, seen = engine.orders, engine.client_orders, engine.seen_ids
        order_ids: list[str] = []
        client_keys: list[tuple[str, str]] = []
        for new_order in new_orders:
            # A key look-up (FindClientOrders) names no order id: only its client order id is looked up.
            if new_order.order_id:
                held = orders.get(new_order.order_id)
                if (held is None or held.status not in _OPEN) and seen.may_hold_order_id(new_order.order_id):
                    order_ids.append(new_order.order_id)
            if new_order.client_order_id:
                key = (new_order.account_id, new_order.client_order_id)
                holder = orders.get(client_orders.get(key, ""))
                if (holder is None or holder.status not in _OPEN) and seen.may_hold_client_order_id(*key):
                    client_keys.append(key)
        mark = self._history.projected_sequence
        self._pending[mark] += 1
        if not order_ids and not client_keys:
            found: asyncio.Future[list[OrderState]] = asyncio.get_running_loop().create_future()
            found.set_result([])
            return Lookup(mark, found)
        # Joins the next query: the look-ups made while one query runs go together in the next
        # (under load one query serves many requests, as one engine batch serves many commands).
        if self._next is None:
            self._next = _Query(asyncio.get_running_loop().create_future())
        self._next.order_ids.update(order_ids)
        self._next.client_keys.update(client_keys)
        if self._querying is None:
            self._querying = asyncio.create_task(self._query(), name="trading-history-lookups")
        return Lookup(mark, self._next.found)

    async def stop(self) -> None:
        """Stop querying (the engine loop has stopped: no work waits for an answer)."""
        task, self._querying = self._querying, None
        await stop_task(task)

    async def _query(self) -> None:
        """Run the gathered look-ups, one query at a time, until none is waiting."""
        try:
            while self._next is not None:
                query, self._next = self._next, None
                self.queries += 1
                try:
                    found = await self._history.orders(sorted(query.order_ids), sorted(query.client_keys))
                except Exception as error:  # each look-up of it fails (its work is refused)
                    query.found.set_exception(error)
                else:
                    query.found.set_result(found)
        finally:
            self._querying = None

    async def recall(self, engine: Engine, lookup: Lookup) -> int:
        """Finish `lookup` and take what it found back into memory (for the batch about to be
        applied); how many were taken. Raises what the query raised (the look-up is released)."""
        try:
            found = await lookup.task
        finally:
            self.release(lookup)
        taken = engine.recall(found)
        self._closed.extendleft((0, order.order_id) for order in taken)  # written: forget next time
        self.recalled += len(taken)
        return len(taken)

    def release(self, lookup: Lookup) -> None:
        """The look-up's work is done or dropped: it no longer holds forgetting back."""
        if lookup.released:
            return
        lookup.released = True
        found = lookup.task
        if found.done() and not found.cancelled():
            found.exception()  # retrieved: a dropped work's failed look-up is not an error to report
        self._pending[lookup.mark] -= 1
        if not self._pending[lookup.mark]:
            del self._pending[lookup.mark]


class _Query:
    """The ids of the look-ups gathered for the next query, and its answer."""

    __slots__ = ("client_keys", "found", "order_ids")

    def __init__(self, found: asyncio.Future[list[OrderState]]) -> None:
        self.order_ids: set[str] = set()
        self.client_keys: set[tuple[str, str]] = set()
        self.found = found


class Lookup:
    """A look-up of new orders' ids in the history, started when their work was queued."""

    __slots__ = ("mark", "released", "task")

    def __init__(self, mark: int, task: asyncio.Future[list[OrderState]]) -> None:
        self.mark = mark
        self.task = task
        self.released = False
