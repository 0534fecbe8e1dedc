"""gateway/views.py's report and order views: every field, the presence of the optional ones, and
the views written in place into a result (as the order stream writes them) equal to the views
made alone."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.ids import make_order_id
from backbone.reasons import RejectReason
from gateway import views
from gateway.views import add_report_views, order_view, report_view
from tests.instruments import btc_usd

INSTRUMENT = btc_usd()
SHARDED = make_order_id("trading-1")


def _order(**changes: Any) -> common_pb2.Order:
    fields: dict[str, Any] = {
        "order_id": SHARDED,
        "client_order_id": "c-1",
        "account_id": "acc-1",
        "symbol": "BTC-USD",
        "side": common_pb2.SIDE_SELL,
        "type": common_pb2.ORDER_TYPE_LIMIT,
        "time_in_force": common_pb2.TIME_IN_FORCE_DAY,
        "price_ticks": 10025,
        "quantity_lots": 5000,
        "filled_lots": 2000,
        "leaves_lots": 1000,
        "cancelled_lots": 1500,
        "expired_lots": 500,
        "filled_notional_ticks_lots": 10020 * 1000 + 10025 * 1000,
        "status": common_pb2.ORDER_STATUS_PARTIALLY_FILLED,
        "post_only": common_pb2.POST_ONLY_REPRICE,
        "self_trade_prevention": common_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH,
        "created_ns": 1_700_000_000_123_456_789,
        "updated_ns": 1_700_000_001_000_000_001,
    }
    fields.update(changes)
    return common_pb2.Order(**fields)


def _trade(**changes: Any) -> common_pb2.ExecutionReport:
    fields: dict[str, Any] = {
        "order": _order(),
        "execution_type": common_pb2.EXECUTION_TYPE_TRADE,
        "journal_sequence": 77,
        "account_sequence": 9,
        "trade_id": 42,
        "last_price_ticks": 10020,
        "last_quantity_lots": 1000,
        "last_fee": 200_400,
        "liquidity_side": common_pb2.LIQUIDITY_SIDE_MAKER,
        "timestamp_ns": 1_700_000_001_000_000_001,
    }
    fields.update(changes)
    return common_pb2.ExecutionReport(**fields)


def _as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_every_field_of_a_trade_report() -> None:
    assert _as_dict(report_view(_trade(), INSTRUMENT, "trading-0")) == {
        "shard": "trading-1",
        "order": {
            "order_id": SHARDED,
            "client_order_id": "c-1",
            "account_id": "acc-1",
            "symbol": "BTC-USD",
            "side": "SIDE_SELL",
            "type": "ORDER_TYPE_LIMIT",
            "time_in_force": "TIME_IN_FORCE_DAY",
            "price": "100.25",
            "quantity": "0.5000",
            "filled_quantity": "0.2000",
            "leaves_quantity": "0.1000",
            "cancelled_quantity": "0.1500",
            "expired_quantity": "0.0500",
            "average_price": "100.225",
            "status": "ORDER_STATUS_PARTIALLY_FILLED",
            "post_only": True,
            "self_trade_prevention": "SELF_TRADE_PREVENTION_CANCEL_BOTH",
            "created_at": "2023-11-14T22:13:20.123456789Z",
            "updated_at": "2023-11-14T22:13:21.000000001Z",
        },
        "execution_type": "EXECUTION_TYPE_TRADE",
        "trading_sequence": "77",
        "account_sequence": "9",
        "trade_id": "42",
        "last_price": "100.20",
        "last_quantity": "0.1000",
        "last_fee": "0.200400",
        "fee_asset": "USD",
        "liquidity_side": "LIQUIDITY_SIDE_MAKER",
        "timestamp": "2023-11-14T22:13:21.000000001Z",
    }


def test_an_accepted_report_has_zeros_and_leaves_the_optional_fields_unset() -> None:
    order = _order(
        order_id="bare-id-made-before-shards",
        type=common_pb2.ORDER_TYPE_MARKET,
        time_in_force=common_pb2.TIME_IN_FORCE_IOC,
        filled_lots=0,
        leaves_lots=5000,
        cancelled_lots=0,
        expired_lots=0,
        filled_notional_ticks_lots=0,
        status=common_pb2.ORDER_STATUS_NEW,
        post_only=common_pb2.POST_ONLY_UNSPECIFIED,
        self_trade_prevention=common_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED,
        quote_budget=1_250_000,
        created_ns=0,
        updated_ns=0,
    )
    report = common_pb2.ExecutionReport(
        order=order,
        execution_type=common_pb2.EXECUTION_TYPE_ACCEPTED,
        journal_sequence=5,
        trade_id=3,  # only a trade report shows its fill
        last_price_ticks=1,
    )
    view = report_view(report, INSTRUMENT, "trading-0")
    assert _as_dict(view) == {
        "shard": "trading-0",
        "order": {
            "order_id": "bare-id-made-before-shards",
            "client_order_id": "c-1",
            "account_id": "acc-1",
            "symbol": "BTC-USD",
            "side": "SIDE_SELL",
            "type": "ORDER_TYPE_MARKET",
            "time_in_force": "TIME_IN_FORCE_IOC",
            "price": "100.25",
            "quantity": "0.5000",
            "filled_quantity": "0.0000",
            "leaves_quantity": "0.5000",
            "cancelled_quantity": "0.0000",
            "expired_quantity": "0.0000",
            "status": "ORDER_STATUS_NEW",
            "self_trade_prevention": "SELF_TRADE_PREVENTION_NONE",
            "quote_budget": "1.250000",
        },
        "execution_type": "EXECUTION_TYPE_ACCEPTED",
        "trading_sequence": "5",
    }
    assert not view.HasField("timestamp")
    assert not view.order.HasField("created_at") and not view.order.HasField("updated_at")


@pytest.mark.parametrize(
    "instrument", [INSTRUMENT, btc_usd("ETH-USD", min_quantity="0.01", max_quantity="5")]
)
def test_views_written_into_a_result_are_the_views_made_alone(instrument: common_pb2.Instrument) -> None:
    reports = [
        _trade(execution_type=common_pb2.EXECUTION_TYPE_ACCEPTED, timestamp_ns=0),
        _trade(),
        _trade(order=_order(status=common_pb2.ORDER_STATUS_FILLED, leaves_lots=0), journal_sequence=78),
    ]
    result = gateway_pb2.OrderCommandResult(request_number=1)
    add_report_views(result.reports, reports, instrument, "trading-0")
    alone = [report_view(report, instrument, "trading-0") for report in reports]
    assert [view.SerializeToString(deterministic=True) for view in result.reports] == [
        view.SerializeToString(deterministic=True) for view in alone
    ]
    assert order_view(reports[-1].order, instrument) == alone[-1].order


def test_a_rejected_and_a_cancelled_report_show_their_reasons() -> None:
    rejected = common_pb2.ExecutionReport(
        order=_order(status=common_pb2.ORDER_STATUS_REJECTED),
        execution_type=common_pb2.EXECUTION_TYPE_REJECTED,
        reject_reason=RejectReason.INSUFFICIENT_BALANCE.number,
    )
    cancelled = common_pb2.ExecutionReport(
        order=_order(status=common_pb2.ORDER_STATUS_CANCELLED),
        execution_type=common_pb2.EXECUTION_TYPE_CANCELLED,
        cancel_reason=common_pb2.CANCEL_REASON_SELF_TRADE_PREVENTED,
    )
    rejected_view, cancelled_view = (report_view(r, INSTRUMENT, "trading-0") for r in (rejected, cancelled))
    assert (rejected_view.reject_reason, rejected_view.cancel_reason) == (
        RejectReason.INSUFFICIENT_BALANCE.number,
        0,
    )
    assert (cancelled_view.reject_reason, cancelled_view.cancel_reason) == (
        0,
        common_pb2.CANCEL_REASON_SELF_TRADE_PREVENTED,
    )


def test_the_texts_remembered_stay_bounded_and_exact() -> None:
    other = btc_usd("ETH-USD")
    for ticks in range(0, 3 * views.MAX_TEXTS_HELD, 3):
        instrument = other if ticks % 2 else INSTRUMENT
        assert order_view(_order(price_ticks=ticks), instrument).price == f"{ticks // 100}.{ticks % 100:02d}"
        assert views._texts_held <= views.MAX_TEXTS_HELD
    assert order_view(_order(), INSTRUMENT).price == "100.25"
