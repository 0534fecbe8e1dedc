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
order id is never reused. So before a batch is applied, its new orders whose client order id and
order id are not in memory are looked up in the history, in one query for the batch
(:meth:`Retention.recall`), and what is found is taken back into memory for that batch: the engine
then answers a retry of a closed order ACCEPTED with the original, a different order under its
client order id DUPLICATE_CLIENT_ORDER_ID, a reused order id DUPLICATE_ORDER_ID, exactly as
while it was held; the recalled orders are forgotten again at the next batch.

Memory is then bounded by the open orders plus the closed ones the history (or the fills
projection) has not written yet. The order the open-order index (trading/open_orders.py) took in
last is kept a while longer: the index walks the engine's orders back to it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from backbone.common.v1 import common_pb2
from backbone.trading.v1 import trading_pb2
from trading.engine import Engine
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
        self.forgotten = 0
        self.recalled = 0

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
            if report.order.status in _CLOSED:
                closed.append((sequence, report.order.order_id))

    def note_closed(self, engine: Engine) -> None:
        """At start: every closed order the snapshot and the replay left in memory."""
        sequence = engine.last_sequence
        self._closed.extend(
            (sequence, order.order_id) for order in engine.orders.values() if order.status not in _OPEN
        )

    def forget_written(self, engine: Engine) -> int:
        """Forget the noted orders every projection has written; how many were forgotten."""
        through = min(projection.projected_sequence for projection in self._projections)
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

    async def recall(self, engine: Engine, new_orders: Sequence[trading_pb2.NewOrder]) -> int:
        """Look up in the history, in one query, the new orders whose client order id and order id
        the engine does not hold, and take what is found back into memory; how many were. (An order
        to resolve comes as a NewOrder with its order id and account only.)"""
        orders, client_orders = engine.orders, engine.client_orders
        order_ids: list[str] = []
        client_keys: list[tuple[str, str]] = []
        for new_order in new_orders:
            if new_order.order_id not in orders:
                order_ids.append(new_order.order_id)
            key = (new_order.account_id, new_order.client_order_id)
            if new_order.client_order_id and key not in client_orders:
                client_keys.append(key)
        if not order_ids and not client_keys:
            return 0
        taken = engine.recall(await self._history.orders(order_ids, client_keys))
        self._closed.extendleft((0, order.order_id) for order in taken)  # written: forget next time
        self.recalled += len(taken)
        return len(taken)
