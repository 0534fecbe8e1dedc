"""ReplaceOrder, unary or a StreamOrders command: the public request in, the replaced order out.

The order is named by its order_id (what SubmitOrder answered, and what CancelOrder and GetOrder
take): a replace changes an order trading already has, which its order id names without the
extra Redis lookup a client order id would need. The order is looked up in trading (NOT_FOUND
for an unknown order or another account's), the new price and quantity are converted on its
instrument's grid (an empty one keeps the order's), and the order saga re-sizes the hold in risk
and replaces it in trading (gateway/order_saga.py OrderSaga.replace).
"""

from __future__ import annotations

from typing import NamedTuple

import structlog

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import not_found
from gateway.backends import Backends
from gateway.order_lookups import order_of
from gateway.order_saga import OrderSaga
from gateway.validation import validate_order_id, validate_replace, validate_replace_texts
from gateway.views import order_view, report_view


class Replaced(NamedTuple):
    """A replace done: the public answer, and trading's reports it shows (for StreamOrders)."""

    view: gateway_pb2.ReplaceOrderResponse
    raw_reports: list[common_pb2.ExecutionReport]


async def replace_order(
    backends: Backends, saga: OrderSaga, request: gateway_pb2.ReplaceOrderRequest, account_id: str
) -> Replaced:
    """Carry out `request` for `account_id`; the order after it and the reports it produced.
    Raises ServiceError."""
    validate_order_id(request.order_id)
    validate_replace_texts(request)
    with structlog.contextvars.bound_contextvars(order_id=request.order_id):
        order = await order_of(saga.lookups_for(backends), request.order_id, account_id)
        instrument = await backends.instruments.get(order.symbol)
        if instrument is None:
            raise not_found(RejectReason.UNKNOWN_SYMBOL, f"there is no instrument {order.symbol!r}")
        price_ticks, quantity_lots = validate_replace(request, order, instrument)
        reports = await saga.replace(backends, order, price_ticks, quantity_lots)
    views = [report_view(report, instrument, backends.trading_shards.default.name) for report in reports]
    view = gateway_pb2.ReplaceOrderResponse(
        order=views[-1].order if views else order_view(order, instrument), reports=views
    )
    return Replaced(view, reports)
