"""The SDK's local books: snapshots replace, changes apply, a skipped number is a gap, and a new
call starts numbering again from its snapshots."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backbone.client import BackboneError
from backbone.client._market_data import LocalBooks, MarketDataGap, market_data_request
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason


def message(
    sequence: int, *, snapshot: bool = False, bids: tuple[tuple[str, str], ...] = ()
) -> gateway_pb2.MarketDataUpdate:
    return gateway_pb2.MarketDataUpdate(
        symbol="BTC-USD",
        sequence=sequence,
        snapshot=snapshot,
        bids=[
            gateway_pb2.PriceLevel(price=p, quantity=q, order_count=1 if Decimal(q) else 0) for p, q in bids
        ],
    )


def test_changes_apply_to_the_snapshot_and_zero_removes_a_level() -> None:
    books = LocalBooks()
    books.apply(message(1, snapshot=True, bids=(("100.00", "1.5"), ("99.00", "2"))))
    event = books.apply(message(2, bids=(("101.00", "0.5"), ("100.00", "0"))))
    assert [(lv.price, lv.quantity) for lv in event.book.bids] == [
        (Decimal("101.00"), Decimal("0.5")),
        (Decimal("99.00"), Decimal("2")),
    ]
    assert not event.snapshot and event.sequence == 2


def test_a_skipped_number_or_a_change_before_any_snapshot_is_a_gap() -> None:
    books = LocalBooks()
    with pytest.raises(MarketDataGap):
        books.apply(message(1))  # a change with nothing to apply it to
    books = LocalBooks()
    books.apply(message(1, snapshot=True))
    with pytest.raises(MarketDataGap, match="expected message 2, got 3"):
        books.apply(message(3, bids=(("1.00", "1"),)))


def test_a_new_call_starts_again_from_its_snapshots() -> None:
    books = LocalBooks()
    books.apply(message(1, snapshot=True, bids=(("100.00", "1"),)))
    books.apply(message(2, bids=(("100.00", "2"),)))
    books.new_call()
    event = books.apply(message(1, snapshot=True, bids=(("98.00", "3"),)))
    assert [(lv.price, lv.quantity) for lv in event.book.bids] == [(Decimal("98.00"), Decimal("3"))]


@pytest.mark.parametrize(
    ("symbols", "depth", "reason"),
    [
        ([], 10, RejectReason.INVALID_SYMBOL),
        ("BTC-USD", 10, RejectReason.INVALID_SYMBOL),
        (["BTC-USD"], 0, RejectReason.INVALID_DEPTH),
        (["BTC-USD"], 51, RejectReason.INVALID_DEPTH),
        (["BTC-USD"], True, RejectReason.INVALID_DEPTH),
    ],
)
def test_plainly_wrong_requests_are_refused_before_sending(
    symbols: object, depth: object, reason: RejectReason
) -> None:
    with pytest.raises(BackboneError) as refused:
        market_data_request(symbols, depth)  # type: ignore[arg-type]
    assert refused.value.reason == reason
