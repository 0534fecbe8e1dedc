"""What the gateway told each account: the latest trading sequence of the reports it relayed.

A balance read that follows a fill the caller was told about must reflect it (read your
writes): the gateway remembers, per account, the highest trading journal sequence of the
execution reports it answered or streamed, and asks risk to reflect at least that sequence.
Bounded: the least recently told accounts are forgotten first (a forgotten account's read
simply does not wait; the SDK also sends the sequence it saw itself).

Each trading shard numbers its own journal, so the sequence is remembered per account and shard:
the shard of a report is the one its order id names (backbone/ids.py), the default shard for an
id made before sharding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from backbone.common.v1 import common_pb2
from backbone.ids import shard_of_order_id

MAX_ACCOUNTS = 100_000


class ReportedSequences:
    """Highest reported trading sequence per account, least recently told forgotten first."""

    def __init__(self, max_accounts: int = MAX_ACCOUNTS, default_shard: str = "trading-0") -> None:
        self._latest: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._max_accounts = max_accounts
        self._default_shard = default_shard

    def note(self, reports: Iterable[common_pb2.ExecutionReport]) -> None:
        """Remember the sequence of each journaled report for its order's account."""
        latest, default_shard = self._latest, self._default_shard
        for report in reports:
            sequence = report.journal_sequence
            if sequence <= 0:
                continue
            order = report.order
            account = (order.account_id, shard_of_order_id(order.order_id) or default_shard)
            if latest.get(account, 0) < sequence:
                latest[account] = sequence
            latest.move_to_end(account)
            if len(latest) > self._max_accounts:
                latest.popitem(last=False)

    def latest(self, account_id: str, shard: str | None = None) -> int:
        """The highest sequence of `shard` (the default shard when None) reported to `account_id`
        (0 when none is remembered)."""
        return self._latest.get((account_id, shard or self._default_shard), 0)
