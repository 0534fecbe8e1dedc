"""Bytes trading puts together by hand: the journal's binary COPY stream and the outboxes' requests."""

from __future__ import annotations

import struct

import pytest

from backbone.common.v1 import common_pb2
from backbone.risk.v1 import risk_pb2
from backbone.settlement.v1 import settlement_pb2
from backbone.trading.v1 import trading_pb2
from trading.app import _varint, risk_request, settlement_request
from trading.journal import copy_data

# Each side of every varint length boundary an int64 sequence can reach, and the largest one.
EDGES = sorted(
    {0, 1, (1 << 63) - 1}
    | {bound + step for bits in range(7, 63, 7) for bound in [1 << bits] for step in (-1, 0)}
)


def test_varints_are_protobufs_own_encoding() -> None:
    assert _varint(0) == b"\x00"
    for value in [*EDGES[1:], 300, 123_456]:
        # int64 field 1 of SequencedTrade: its key (one byte), then the varint.
        assert _varint(value) == settlement_pb2.SequencedTrade(sequence=value).SerializeToString()[1:]


def _trade(trade_id: int, symbol: str = "BTC-USD") -> common_pb2.Trade:
    return common_pb2.Trade(trade_id=trade_id, symbol=symbol, price_ticks=100, quantity_lots=trade_id)


@pytest.mark.parametrize("symbol_length", [1, 100, 20_000])
def test_requests_carry_any_sequence_and_payload_size(symbol_length: int) -> None:
    trades = [
        (sequence, _trade(number + 1, "X" * symbol_length)) for number, sequence in enumerate(EDGES[1:])
    ]
    events = [(sequence, ("trade", trade.SerializeToString())) for sequence, trade in trades]
    settlement = settlement_pb2.StreamTradesRequest.FromString(settlement_request("shard-a", events))
    assert settlement.source == "shard-a"
    assert [(t.sequence, t.trade) for t in settlement.trades] == trades
    released = common_pb2.OrderReleased(order_id="o", account_id="a", symbol="BTC-USD", released_lots=3)
    events.append((1 << 40, ("order_released", released.SerializeToString())))
    risk = risk_pb2.StreamTradingEventsRequest.FromString(risk_request("shard-a", events))
    assert [(e.sequence, e.trade) for e in risk.events[:-1]] == trades
    assert (risk.events[-1].sequence, risk.events[-1].order_released) == (1 << 40, released)


def _rows(data: bytes) -> list[tuple[str, int, str, bytes]]:
    """The rows of a binary COPY stream of (text, int8, text, bytea)."""
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    at, rows = 19, []
    while True:
        (count,) = struct.unpack_from(">h", data, at)
        at += 2
        if count == -1:
            assert at == len(data)
            return rows
        assert count == 4
        fields = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", data, at)
            fields.append(data[at + 4 : at + 4 + length])
            at += 4 + length
        shard, sequence, kind, payload = fields
        rows.append((shard.decode(), struct.unpack(">q", sequence)[0], kind.decode(), payload))


def test_the_copy_stream_holds_one_row_per_record_of_any_kind() -> None:
    records = [
        trading_pb2.JournalRecord(sequence=1, timestamp_ns=5, new_order=trading_pb2.NewOrder(order_id="o1")),
        trading_pb2.JournalRecord(sequence=2, timestamp_ns=5, trade=_trade(1, "Y" * 70_000)),
        trading_pb2.JournalRecord(
            sequence=(1 << 62), timestamp_ns=6, new_order=trading_pb2.NewOrder(order_id="o2")
        ),
        trading_pb2.JournalRecord(
            sequence=(1 << 62) + 1, risk_epoch_changed=trading_pb2.RiskEpochChanged(epoch="e")
        ),
    ]
    rows = _rows(copy_data("trading-7", records))
    assert rows == [("trading-7", r.sequence, r.WhichOneof("record"), r.SerializeToString()) for r in records]
    assert _rows(copy_data("s", [])) == []
    with pytest.raises(ValueError, match="no record set"):
        copy_data("s", [trading_pb2.JournalRecord(sequence=3)])
