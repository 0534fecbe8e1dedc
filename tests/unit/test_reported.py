"""gateway/reported.py: the highest trading sequence reported to each account, per shard."""

from __future__ import annotations

from backbone.common.v1 import common_pb2
from backbone.ids import make_order_id
from gateway.reported import ReportedSequences


def _report(account_id: str, order_id: str, sequence: int) -> common_pb2.ExecutionReport:
    return common_pb2.ExecutionReport(
        order=common_pb2.Order(order_id=order_id, account_id=account_id), journal_sequence=sequence
    )


def test_the_highest_sequence_of_each_account_and_shard_is_kept() -> None:
    reported = ReportedSequences(default_shard="trading-0")
    on_one, on_zero = make_order_id("trading-1"), make_order_id("trading-0")
    reported.note(
        [
            _report("a", on_one, 7),
            _report("a", on_one, 5),  # an older one does not lower it
            _report("a", on_zero, 3),
            _report("a", "bare-id-made-before-shards", 4),  # the default shard's
            _report("b", on_one, 0),  # not journaled: nothing to wait for
        ]
    )
    assert reported.latest("a", "trading-1") == 7
    assert reported.latest("a") == reported.latest("a", "trading-0") == 4
    assert reported.latest("b", "trading-1") == 0
    assert reported.latest("c") == 0


def test_the_least_recently_told_account_is_forgotten_first() -> None:
    reported = ReportedSequences(max_accounts=2, default_shard="trading-0")
    reported.note([_report("a", "x", 1), _report("b", "x", 2)])
    reported.note([_report("a", "x", 3)])  # a is told again: b is now the least recent
    reported.note([_report("c", "x", 4)])
    assert (reported.latest("a"), reported.latest("b"), reported.latest("c")) == (3, 0, 4)
